//! Code-sample tabs (Python, TypeScript, cURL, "OpenAI SDK compatible") for an
//! endpoint, generated from its real base URL and model name.

use askama::Template;
use serde_json::Value;

use crate::domain::Endpoint;

/// One tab of samples.
pub struct SampleTab {
    pub key: &'static str,
    pub label: &'static str,
    pub code: String,
}

/// The tab group; `prefix` keeps element ids unique when a page shows several.
#[derive(Template)]
#[template(path = "partials/samples.html")]
pub struct CodeSamples {
    pub prefix: String,
    pub model: String,
    pub tabs: Vec<SampleTab>,
}

/// The tabs in the order they are shown, with their keys in `connection_info`'s `samples`.
const TABS: [(&str, &str); 4] = [
    ("python", "Python"),
    ("typescript", "TypeScript"),
    ("curl", "cURL"),
    ("openai_compatible", "OpenAI SDK compatible"),
];

impl CodeSamples {
    /// The samples of `endpoint` as reached at `public_url`.
    pub fn for_endpoint(endpoint: &Endpoint, public_url: &str, prefix: &str) -> Self {
        let info = crate::api::connection_info(endpoint, public_url);
        let tabs = TABS
            .iter()
            .map(|(key, label)| SampleTab {
                key,
                label,
                code: info["samples"][key]
                    .as_str()
                    .map(str::to_owned)
                    .unwrap_or_default(),
            })
            .collect();
        Self {
            prefix: prefix.to_owned(),
            model: info["model"].as_str().unwrap_or_default().to_owned(),
            tabs,
        }
    }

    /// The rendered HTML (empty when the template fails, which is logged).
    pub fn html(&self) -> String {
        self.render().unwrap_or_else(|error| {
            tracing::error!(%error, "code samples template failed");
            String::new()
        })
    }
}

/// The JSON `samples` object of an endpoint (for scripts that show them).
pub fn samples_json(endpoint: &Endpoint, public_url: &str) -> Value {
    crate::api::connection_info(endpoint, public_url)["samples"].clone()
}
