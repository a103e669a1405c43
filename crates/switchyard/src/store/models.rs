//! Models: API-based (OpenAI, Anthropic, Google, Azure) or self-hosted servers
//! that deployments route to.
//!
//! A model is visible to its owner and, when its scope is `org`, to every user
//! of the installation. Only the owner changes or deletes it (checked by the
//! API). Deletion is soft (`deleted_at`) and is refused while a running
//! deployment uses the model, in the same statement that marks it deleted.
//! The credentials (`api_config`) are stored only encrypted.

use sqlx::any::AnyRow;
use sqlx::Row;

use super::{Store, StoreError};
use crate::domain::{now_ms, wire_enum};

wire_enum!(
    /// What a model does.
    ModelType { Llm => "llm", Embedding => "embedding" }
);

wire_enum!(
    /// Where a model runs: behind a provider's API or on the user's own server.
    DeploymentType { ApiBased => "api-based", SelfHosted => "self-hosted" }
);

wire_enum!(
    /// Who sees a model: its owner only, or every user of the installation.
    ModelScope { User => "user", Org => "org" }
);

/// A stored model.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Model {
    pub id: String,
    pub user_id: String,
    pub name: String,
    pub description: String,
    pub model_type: ModelType,
    pub deployment_type: DeploymentType,
    pub provider: String,
    pub api_endpoint: String,
    pub model_identifier: String,
    /// The `api_config` object as JSON, encrypted; never rendered.
    pub api_config_encrypted: String,
    /// The names of the `api_config` entries, rendered instead of the values.
    pub api_config_keys: Vec<String>,
    pub scope: ModelScope,
    pub is_active: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

const MODEL_COLUMNS: &str =
    "id, user_id, name, description, model_type, deployment_type, provider, \
    api_endpoint, model_identifier, api_config_encrypted, api_config_keys, scope, is_active, \
    created_at, updated_at";

impl Store {
    /// Inserts a model; a live model of the same user with the same name is a conflict.
    pub async fn create_model(&self, model: &Model) -> Result<(), StoreError> {
        sqlx::query(
            "INSERT INTO models (id, user_id, name, description, model_type, deployment_type, provider, \
             api_endpoint, model_identifier, api_config_encrypted, api_config_keys, scope, is_active, \
             created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&model.id)
        .bind(&model.user_id)
        .bind(&model.name)
        .bind(&model.description)
        .bind(model.model_type.as_str())
        .bind(model.deployment_type.as_str())
        .bind(&model.provider)
        .bind(&model.api_endpoint)
        .bind(&model.model_identifier)
        .bind(&model.api_config_encrypted)
        .bind(keys_json(&model.api_config_keys))
        .bind(model.scope.as_str())
        .bind(i64::from(model.is_active))
        .bind(model.created_at)
        .bind(model.updated_at)
        .execute(&self.pool)
        .await
        .map_err(|error| {
            StoreError::from_write(error, &format!("a model named `{}` already exists", model.name))
        })?;
        Ok(())
    }

    /// Loads a live model the user may see (their own or an `org` model).
    pub async fn get_visible_model(
        &self,
        user_id: &str,
        model_id: &str,
    ) -> Result<Model, StoreError> {
        let query = format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE id = $1 AND deleted_at IS NULL \
             AND (user_id = $2 OR scope = 'org')"
        );
        let row = sqlx::query(&query)
            .bind(model_id)
            .bind(user_id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or(StoreError::NotFound)?;
        model(&row)
    }

    /// Lists the live models the user may see, newest first, with their total.
    pub async fn list_visible_models(
        &self,
        user_id: &str,
        limit: i64,
        offset: i64,
    ) -> Result<(Vec<Model>, i64), StoreError> {
        let query = format!(
            "SELECT {MODEL_COLUMNS} FROM models WHERE deleted_at IS NULL AND (user_id = $1 OR scope = 'org') \
             ORDER BY created_at DESC, id DESC LIMIT $2 OFFSET $3"
        );
        let rows = sqlx::query(&query)
            .bind(user_id)
            .bind(limit)
            .bind(offset)
            .fetch_all(&self.pool)
            .await?;
        let total: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM models WHERE deleted_at IS NULL AND (user_id = $1 OR scope = 'org')",
        )
        .bind(user_id)
        .fetch_one(&self.pool)
        .await?;
        let models = rows.iter().map(model).collect::<Result<Vec<_>, _>>()?;
        Ok((models, total))
    }

    /// Writes the mutable fields of one of the owner's live models.
    pub async fn update_model(&self, model: &Model) -> Result<(), StoreError> {
        let result = sqlx::query(
            "UPDATE models SET name = $1, description = $2, api_endpoint = $3, model_identifier = $4, \
             api_config_encrypted = $5, api_config_keys = $6, scope = $7, is_active = $8, updated_at = $9 \
             WHERE id = $10 AND user_id = $11 AND deleted_at IS NULL",
        )
        .bind(&model.name)
        .bind(&model.description)
        .bind(&model.api_endpoint)
        .bind(&model.model_identifier)
        .bind(&model.api_config_encrypted)
        .bind(keys_json(&model.api_config_keys))
        .bind(model.scope.as_str())
        .bind(i64::from(model.is_active))
        .bind(model.updated_at)
        .bind(&model.id)
        .bind(&model.user_id)
        .execute(&self.pool)
        .await
        .map_err(|error| {
            StoreError::from_write(error, &format!("a model named `{}` already exists", model.name))
        })?;
        if result.rows_affected() == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    /// Soft-deletes one of the owner's models unless a running deployment uses it.
    pub async fn delete_model(&self, user_id: &str, model_id: &str) -> Result<(), StoreError> {
        let now = now_ms();
        let result = sqlx::query(
            "UPDATE models SET deleted_at = $1, updated_at = $1, is_active = 0 \
             WHERE id = $2 AND user_id = $3 AND deleted_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM deployments WHERE model_id = $2 AND status = 'running' AND deleted_at IS NULL)",
        )
        .bind(now)
        .bind(model_id)
        .bind(user_id)
        .execute(&self.pool)
        .await?;
        if result.rows_affected() == 1 {
            return Ok(());
        }
        let running: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM deployments WHERE model_id = $1 AND status = 'running' AND deleted_at IS NULL",
        )
        .bind(model_id)
        .fetch_one(&self.pool)
        .await?;
        if running > 0 {
            Err(StoreError::Conflict(format!(
                "the model is used by {running} running deployment(s); stop or delete them first"
            )))
        } else {
            Err(StoreError::NotFound)
        }
    }
}

fn keys_json(keys: &[String]) -> String {
    serde_json::to_string(keys).unwrap_or_else(|_| "[]".to_owned())
}

fn model(row: &AnyRow) -> Result<Model, StoreError> {
    let model_type: String = row.try_get("model_type")?;
    let deployment_type: String = row.try_get("deployment_type")?;
    let scope: String = row.try_get("scope")?;
    let keys: String = row.try_get("api_config_keys")?;
    let corrupt = |column: &str, text: &str| {
        StoreError::Corrupt(format!("column {column} has unknown value `{text}`"))
    };
    Ok(Model {
        id: row.try_get("id")?,
        user_id: row.try_get("user_id")?,
        name: row.try_get("name")?,
        description: row.try_get("description")?,
        model_type: ModelType::parse(&model_type)
            .ok_or_else(|| corrupt("model_type", &model_type))?,
        deployment_type: DeploymentType::parse(&deployment_type)
            .ok_or_else(|| corrupt("deployment_type", &deployment_type))?,
        provider: row.try_get("provider")?,
        api_endpoint: row.try_get("api_endpoint")?,
        model_identifier: row.try_get("model_identifier")?,
        api_config_encrypted: row.try_get("api_config_encrypted")?,
        api_config_keys: serde_json::from_str(&keys)
            .map_err(|_| corrupt("api_config_keys", &keys))?,
        scope: ModelScope::parse(&scope).ok_or_else(|| corrupt("scope", &scope))?,
        is_active: row.try_get::<i64, _>("is_active")? != 0,
        created_at: row.try_get("created_at")?,
        updated_at: row.try_get("updated_at")?,
    })
}
