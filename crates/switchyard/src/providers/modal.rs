//! Modal: no HTTP deployment API exists (PROVIDERS.md 6.0), so this
//! provisioner renders a Python app file (vLLM behind `@modal.web_server`
//! with proxy auth), runs `modal deploy` as a subprocess, and reads the web
//! endpoint URL from its output. Scaling changes re-render and redeploy;
//! delete is `modal app stop`; find and list use `modal app list --json`.
//!
//! Status never wakes a scaled-down app: `modal app list` tells whether the
//! app is deployed and how many containers run. With none running it is
//! [`ResourceState::ScaledToZero`]; only with containers running is
//! `GET {url}/health` asked (200 = ready, anything else = starting).
//!
//! Each deploy also writes `<name>.json` (the resource) beside
//! `<name>.py` in `work_dir`, so `find` can return the URL after a crash.
//! Without that file `find` answers `None` and the retried create deploys
//! the same app name again, which Modal treats as an update, not a copy.

mod app;
mod cli;

use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use self::app::AppParams;
use self::cli::{AppEntry, Cli};
use super::config::ModalConfig;
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers, MANAGED_PREFIX,
};
use crate::domain::UpstreamApi;

const KIND: ProviderKind = ProviderKind::Modal;
/// Bound on one health probe; a container still loading holds the request.
const HEALTH_TIMEOUT: Duration = Duration::from_secs(10);

/// The `modal` provisioner.
pub struct Modal {
    config: ModalConfig,
    client: reqwest::Client,
}

/// What a health probe of a running app found.
enum Probe {
    Ready,
    Starting(String),
}

impl Modal {
    /// Builds it from its configuration and the shared HTTP client.
    pub fn new(config: ModalConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    /// The settings that are missing, as sentences naming the variables.
    fn missing(&self) -> Vec<&'static str> {
        let mut missing = Vec::new();
        if self.config.token_id.is_none() || self.config.token_secret.is_none() {
            missing.push("set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET to deploy to Modal");
        }
        if self.config.proxy_token_id.is_none() || self.config.proxy_token_secret.is_none() {
            missing.push(
                "set SWITCHYARD_MODAL_PROXY_TOKEN_ID and SWITCHYARD_MODAL_PROXY_TOKEN_SECRET (a Modal proxy auth token) so the gateway can call the private endpoints",
            );
        }
        missing
    }

    /// The CLI with the account's tokens, or why it cannot be used.
    fn cli(&self) -> Result<Cli<'_>, ProviderError> {
        let missing = self.missing();
        match (&self.config.token_id, &self.config.token_secret) {
            (Some(id), Some(secret)) if missing.is_empty() => Ok(Cli {
                program: &self.config.cli,
                token_id: id.expose(),
                token_secret: secret.expose(),
                environment: self.config.environment.as_deref(),
                timeout: self.config.cli_timeout,
            }),
            _ => Err(ProviderError::NotConfigured {
                provider: KIND,
                message: missing.join("; "),
            }),
        }
    }

    fn proxy_headers(&self) -> Vec<(String, String)> {
        match (&self.config.proxy_token_id, &self.config.proxy_token_secret) {
            (Some(id), Some(secret)) => vec![
                ("modal-key".to_owned(), id.expose().to_owned()),
                ("modal-secret".to_owned(), secret.expose().to_owned()),
            ],
            _ => Vec::new(),
        }
    }

    fn path(&self, app_name: &str, extension: &str) -> PathBuf {
        self.config.work_dir.join(format!("{app_name}.{extension}"))
    }

    /// Renders the app file, deploys it and records the resource beside it.
    async fn deploy(&self, params: &AppParams) -> Result<ProviderResource, ProviderError> {
        let cli = self.cli()?;
        check_app_name(&params.app_name)?;
        let file = self.path(&params.app_name, "py");
        write_file(&file, params.render().as_bytes()).await?;
        let url = cli.deploy(&file, &params.app_name).await?;
        // The app id is informative only: a failed list does not undo the deploy.
        let app_id = match cli.list().await {
            Ok(rows) => rows
                .into_iter()
                .find(|entry| entry.name == params.app_name && !entry.is_stopped())
                .map(|entry| entry.app_id),
            Err(error) => {
                tracing::warn!(provider = %KIND, app = %params.app_name, error = %error, "cannot read the app id after deploying");
                None
            }
        };
        let mut details = params.details();
        details.insert("url".to_owned(), url);
        details.insert("file".to_owned(), file.to_string_lossy().into_owned());
        if let Some(app_id) = app_id {
            details.insert("app_id".to_owned(), app_id);
        }
        let resource = ProviderResource {
            provider: KIND,
            id: params.app_name.clone(),
            name: params.app_name.clone(),
            details,
        };
        let record =
            serde_json::to_vec_pretty(&resource).map_err(|error| ProviderError::Process {
                provider: KIND,
                message: format!("cannot record the deployed resource: {error}"),
            })?;
        write_file(&self.path(&params.app_name, "json"), &record).await?;
        tracing::info!(provider = %KIND, app = %params.app_name, gpu = %params.gpu, "deployed a Modal app");
        Ok(resource)
    }

    /// The live (not stopped) list row of an app, if any.
    async fn entry(&self, app_name: &str) -> Result<Option<AppEntry>, ProviderError> {
        let rows = self.cli()?.list().await?;
        Ok(rows
            .into_iter()
            .filter(|entry| entry.name == app_name)
            .min_by_key(AppEntry::is_stopped))
    }

    /// The resource recorded by the last deploy of an app on this server.
    async fn recorded(&self, app_name: &str) -> Option<ProviderResource> {
        let bytes = tokio::fs::read(self.path(app_name, "json")).await.ok()?;
        serde_json::from_slice::<ProviderResource>(&bytes)
            .ok()
            .filter(|resource| resource.name == app_name)
    }

    fn url<'r>(&self, resource: &'r ProviderResource) -> Result<&'r str, ProviderError> {
        resource
            .details
            .get("url")
            .map(|url| url.trim_end_matches('/'))
            .ok_or_else(|| ProviderError::BadResponse {
                provider: KIND,
                message: format!("the stored resource {} has no web URL", resource.name),
            })
    }

    /// `GET {url}/health` with the proxy-auth headers.
    async fn probe(&self, url: &str) -> Result<Probe, ProviderError> {
        let mut request = self
            .client
            .get(format!("{url}/health"))
            .timeout(HEALTH_TIMEOUT);
        for (name, value) in self.proxy_headers() {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(error) => return Ok(Probe::Starting(format!("health check: {error}"))),
        };
        let status = response.status();
        if status.is_success() {
            return Ok(Probe::Ready);
        }
        let text = response.text().await.unwrap_or_default();
        if status == http::StatusCode::UNAUTHORIZED || status == http::StatusCode::FORBIDDEN {
            return Err(ProviderError::Unauthorized {
                provider: KIND,
                status: status.as_u16(),
                message: format!("the proxy auth token was refused: {}", text.trim()),
            });
        }
        Ok(Probe::Starting(format!(
            "health check answered {}",
            status.as_u16()
        )))
    }

    fn upstream(&self, resource: &ProviderResource, url: &str) -> UpstreamTarget {
        UpstreamTarget {
            base_url: format!("{url}/v1"),
            api: UpstreamApi::OpenAi,
            model: resource
                .details
                .get("served_model_name")
                .cloned()
                .unwrap_or_default(),
            headers: self.proxy_headers(),
        }
    }
}

#[async_trait]
impl Provisioner for Modal {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn availability(&self) -> Availability {
        let missing = self.missing();
        Availability {
            provider: KIND,
            available: missing.is_empty(),
            message: (!missing.is_empty()).then(|| missing.join("; ")),
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        self.cli()?;
        let params = AppParams::from_spec(spec, &self.config.vllm_version)?;
        self.deploy(&params).await
    }

    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        let Some(entry) = self.entry(resource_name).await? else {
            return Ok(None);
        };
        if entry.is_stopped() {
            return Ok(None);
        }
        Ok(self.recorded(resource_name).await)
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        let entry = self.entry(&resource.name).await?;
        let status = |state, message: Option<String>, workers, upstream| ResourceStatus {
            state,
            message,
            workers,
            upstream,
        };
        let Some(entry) = entry.filter(|entry| !entry.is_stopped()) else {
            return Ok(status(
                ResourceState::Gone,
                Some(format!("Modal has no deployed app named {}", resource.name)),
                Workers::default(),
                None,
            ));
        };
        let url = self.url(resource)?;
        match entry.state.as_str() {
            "deployed" if entry.tasks == 0 => Ok(status(
                ResourceState::ScaledToZero,
                None,
                Workers::default(),
                Some(self.upstream(resource, url)),
            )),
            "deployed" => Ok(match self.probe(url).await? {
                Probe::Ready => status(
                    ResourceState::Ready,
                    None,
                    Workers {
                        ready: entry.tasks,
                        running: entry.tasks,
                        ..Workers::default()
                    },
                    Some(self.upstream(resource, url)),
                ),
                Probe::Starting(message) => status(
                    ResourceState::Initializing,
                    Some(message),
                    Workers {
                        initializing: entry.tasks,
                        ..Workers::default()
                    },
                    None,
                ),
            }),
            "disabled" => Ok(status(
                ResourceState::Stopped,
                Some("the app is disabled on Modal".to_owned()),
                Workers::default(),
                None,
            )),
            other => Ok(status(
                ResourceState::Initializing,
                Some(format!("app state is {other}")),
                Workers::default(),
                None,
            )),
        }
    }

    async fn update_scaling(
        &self,
        resource: &ProviderResource,
        scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        self.cli()?;
        let params = AppParams::from_details(&resource.name, &resource.details, *scaling)?;
        self.deploy(&params).await.map(|_| ())
    }

    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError> {
        check_app_name(&resource.name)?;
        self.cli()?.stop(&resource.name).await?;
        for extension in ["py", "json"] {
            match tokio::fs::remove_file(self.path(&resource.name, extension)).await {
                Ok(()) => {}
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => {
                    tracing::warn!(provider = %KIND, app = %resource.name, error = %error, "cannot remove a generated file")
                }
            }
        }
        Ok(())
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        let Some(entry) = self
            .entry(&resource.name)
            .await?
            .filter(|entry| entry.state == "deployed")
        else {
            return Ok(ProviderHealth {
                reachable: false,
                message: Some(format!("Modal has no deployed app named {}", resource.name)),
                ..ProviderHealth::default()
            });
        };
        if entry.tasks == 0 {
            return Ok(ProviderHealth {
                reachable: true,
                message: Some("scaled to zero; the next request starts a container".to_owned()),
                ..ProviderHealth::default()
            });
        }
        Ok(match self.probe(self.url(resource)?).await? {
            Probe::Ready => ProviderHealth {
                reachable: true,
                workers: Workers {
                    ready: entry.tasks,
                    running: entry.tasks,
                    ..Workers::default()
                },
                ..ProviderHealth::default()
            },
            Probe::Starting(message) => ProviderHealth {
                reachable: false,
                workers: Workers {
                    initializing: entry.tasks,
                    ..Workers::default()
                },
                message: Some(message),
                ..ProviderHealth::default()
            },
        })
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        let mut names: Vec<AppEntry> = self
            .cli()?
            .list()
            .await?
            .into_iter()
            .filter(|entry| entry.name.starts_with(MANAGED_PREFIX) && !entry.is_stopped())
            .collect();
        names.sort_by(|a, b| a.name.cmp(&b.name));
        names.dedup_by(|a, b| a.name == b.name);
        let mut resources = Vec::with_capacity(names.len());
        for entry in names {
            let resource = match self.recorded(&entry.name).await {
                Some(resource) => resource,
                None => ProviderResource {
                    provider: KIND,
                    id: entry.name.clone(),
                    name: entry.name.clone(),
                    details: [("app_id".to_owned(), entry.app_id.clone())]
                        .into_iter()
                        .collect(),
                },
            };
            resources.push(resource);
        }
        Ok(resources)
    }
}

/// Modal app names (and our file names): letters, digits, `-`, `_`, `.`.
fn check_app_name(name: &str) -> Result<(), ProviderError> {
    let valid = !name.is_empty()
        && name.len() <= 64
        && !name.starts_with('.')
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if valid {
        Ok(())
    } else {
        Err(ProviderError::Unsupported {
            provider: KIND,
            message: format!(
                "name an app {name:?}: Modal app names take letters, digits, '-', '_' and '.'"
            ),
        })
    }
}

/// Writes a file atomically (temporary file, then rename) in `work_dir`.
async fn write_file(path: &std::path::Path, contents: &[u8]) -> Result<(), ProviderError> {
    let failed = |error: std::io::Error| ProviderError::Process {
        provider: KIND,
        message: format!("cannot write {}: {error}", path.display()),
    };
    if let Some(parent) = path.parent() {
        tokio::fs::create_dir_all(parent).await.map_err(failed)?;
    }
    let temporary = path.with_extension("tmp");
    tokio::fs::write(&temporary, contents)
        .await
        .map_err(failed)?;
    tokio::fs::rename(&temporary, path).await.map_err(failed)
}
