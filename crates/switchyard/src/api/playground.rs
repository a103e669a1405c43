//! `POST /api/v1/endpoints/{id}/playground`: one test prompt from the
//! dashboard playground, sent through the gateway's own request path.
//!
//! The browser holds no API key. Each endpoint gets an internal
//! "Dashboard playground" key on first use (its secret is thrown away, as
//! with deployments' keys; it is left out of the endpoint's key list), and
//! the prompt is served on that key's route by [`crate::gateway::playground_chat`]:
//! the same validation, rate limits, credit check (402), attempts, metering
//! and usage record as any client of the endpoint. Another user's endpoint is
//! a 404; with the session cookie the CSRF header is required (see `Caller`).

use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use super::endpoints::owned_endpoint;
use super::keys::{new_key, CreateKey};
use super::{ApiJson, Caller};
use crate::domain::{Endpoint, Modality};
use crate::error::HttpError;
use crate::registry::Route;
use crate::state::SharedState;
use crate::store::StoreError;

/// The name of every endpoint's playground key.
pub const PLAYGROUND_KEY_NAME: &str = "Dashboard playground";
/// Longest prompt (and system prompt) in characters.
const MAX_PROMPT_CHARS: usize = 32_000;
/// Largest `max_tokens` a test may ask for.
const MAX_TOKENS: u32 = 32_768;

/// A playground test.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlaygroundRequest {
    prompt: String,
    #[serde(default)]
    system: Option<String>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    temperature: Option<f64>,
    #[serde(default)]
    top_p: Option<f64>,
    #[serde(default)]
    stream: Option<bool>,
}

impl PlaygroundRequest {
    /// The OpenAI chat-completions body for the endpoint named `model`, after checking every field.
    fn chat_body(&self, model: &str) -> Result<Value, HttpError> {
        if self.prompt.trim().is_empty() {
            return Err(HttpError::invalid_field("prompt", "must not be empty"));
        }
        for (field, text) in [
            ("prompt", Some(&self.prompt)),
            ("system", self.system.as_ref()),
        ] {
            if text.is_some_and(|text| text.chars().count() > MAX_PROMPT_CHARS) {
                return Err(HttpError::invalid_field(
                    field,
                    format!("must be at most {MAX_PROMPT_CHARS} characters"),
                ));
            }
        }
        if self
            .max_tokens
            .is_some_and(|tokens| !(1..=MAX_TOKENS).contains(&tokens))
        {
            return Err(HttpError::invalid_field(
                "max_tokens",
                format!("must be between 1 and {MAX_TOKENS}"),
            ));
        }
        if self
            .temperature
            .is_some_and(|value| !(0.0..=2.0).contains(&value))
        {
            return Err(HttpError::invalid_field(
                "temperature",
                "must be between 0 and 2",
            ));
        }
        if self
            .top_p
            .is_some_and(|value| !(0.0..=1.0).contains(&value))
        {
            return Err(HttpError::invalid_field("top_p", "must be between 0 and 1"));
        }
        let mut messages = Vec::with_capacity(2);
        if let Some(system) = self.system.as_ref().filter(|text| !text.trim().is_empty()) {
            messages.push(json!({"role": "system", "content": system}));
        }
        messages.push(json!({"role": "user", "content": self.prompt}));
        let stream = self.stream.unwrap_or(true);
        let mut body = json!({"model": model, "messages": messages, "stream": stream});
        if let Some(tokens) = self.max_tokens {
            body["max_tokens"] = json!(tokens);
        }
        if let Some(temperature) = self.temperature {
            body["temperature"] = json!(temperature);
        }
        if let Some(top_p) = self.top_p {
            body["top_p"] = json!(top_p);
        }
        if stream {
            // The page shows the token counts, which come in the last chunk.
            body["stream_options"] = json!({"include_usage": true});
        }
        Ok(body)
    }
}

/// `POST /api/v1/endpoints/{id}/playground`: the gateway's answer, streamed
/// (SSE, the default) or whole, in OpenAI's chat-completions shape.
pub async fn playground(
    State(state): State<SharedState>,
    Caller(user): Caller,
    Path(endpoint_id): Path<String>,
    ApiJson(request): ApiJson<PlaygroundRequest>,
) -> Result<Response, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    if endpoint.modality != Modality::Llm {
        return Err(HttpError::new(
            StatusCode::BAD_REQUEST,
            "invalid_request_error",
            "unsupported_operation",
            format!(
                "the playground sends chat completions; this endpoint serves {}",
                endpoint.modality
            ),
        ));
    }
    let body = request.chat_body(&endpoint.name)?;
    let route = playground_route(&state, &endpoint).await?;
    let bytes = bytes::Bytes::from(body.to_string());
    Ok(
        crate::gateway::playground_chat(state, route, endpoint.id, bytes)
            .await
            .into_response(),
    )
}

/// The gateway route of the endpoint's playground key, made on first use.
async fn playground_route(state: &SharedState, endpoint: &Endpoint) -> Result<Route, HttpError> {
    let key_id = match state.store.playground_key_id(&endpoint.id).await? {
        Some(key_id) => key_id,
        None => {
            let (key, _secret) = new_key(
                endpoint,
                CreateKey::named(PLAYGROUND_KEY_NAME),
                &state.secrets,
            )?;
            match state.store.create_playground_key(&key).await {
                // Conflict: a concurrent first use made it; that one is used.
                Ok(()) | Err(StoreError::Conflict(_)) => {}
                Err(error) => return Err(error.into()),
            }
            state.registry.reload().await?;
            state
                .store
                .playground_key_id(&endpoint.id)
                .await?
                .ok_or_else(HttpError::internal)?
        }
    };
    if let Some(route) = state.registry.route_by_key_id(&key_id) {
        return Ok(route);
    }
    // Made through another instance since this one last reloaded.
    state.registry.reload().await?;
    state.registry.route_by_key_id(&key_id).ok_or_else(|| {
        HttpError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "server_error",
            "endpoint_stopped",
            format!("endpoint is {}", endpoint.status),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(value: Value) -> PlaygroundRequest {
        serde_json::from_value(value).unwrap()
    }

    #[test]
    fn builds_a_streamed_chat_body_with_usage() {
        let body = request(json!({"prompt": "Hi", "system": "Be brief", "max_tokens": 16, "temperature": 0.5, "top_p": 0.9}))
            .chat_body("chat-model")
            .unwrap();
        assert_eq!(body["model"], "chat-model");
        assert_eq!(body["stream"], true);
        assert_eq!(body["stream_options"]["include_usage"], true);
        assert_eq!(body["messages"][0]["role"], "system");
        assert_eq!(body["messages"][1]["content"], "Hi");
        assert_eq!(body["max_tokens"], 16);
        assert_eq!(body["top_p"], 0.9);
    }

    #[test]
    fn refuses_out_of_range_fields_by_name() {
        let cases = [
            (json!({"prompt": " "}), "prompt"),
            (json!({"prompt": "Hi", "max_tokens": 0}), "max_tokens"),
            (json!({"prompt": "Hi", "temperature": 2.5}), "temperature"),
            (json!({"prompt": "Hi", "top_p": 1.5}), "top_p"),
        ];
        for (value, field) in cases {
            let error = request(value).chat_body("chat-model").unwrap_err();
            assert_eq!(error.param.as_deref(), Some(field));
        }
        let whole = request(json!({"prompt": "Hi", "stream": false}))
            .chat_body("chat-model")
            .unwrap();
        assert!(whole.get("stream_options").is_none());
    }
}
