//! Ready-to-paste connection details and code samples for an endpoint.

use axum::extract::{Path, State};
use axum::Json;
use http::HeaderMap;
use serde_json::{json, Value};

use super::endpoints::owned_endpoint;
use super::{views, Caller};
use crate::domain::{Endpoint, Modality};
use crate::error::HttpError;
use crate::state::SharedState;

/// `GET /api/v1/endpoints/{id}/connection`.
pub async fn connection(
    State(state): State<SharedState>,
    Caller(user): Caller,
    headers: HeaderMap,
    Path(endpoint_id): Path<String>,
) -> Result<Json<Value>, HttpError> {
    let endpoint = owned_endpoint(&state, &user.id, &endpoint_id).await?;
    let public = views::public_url(&state, &headers);
    Ok(Json(connection_info(&endpoint, &public)))
}

/// Connection info and samples for an endpoint reachable at `public_url`.
pub fn connection_info(endpoint: &Endpoint, public_url: &str) -> Value {
    let base_url = format!("{public_url}/v1");
    let endpoint_url = format!("{public_url}/api/v1/inference/{}", endpoint.id);
    let model = &endpoint.name;
    let samples = if endpoint.modality == Modality::Embedding {
        embedding_samples(&base_url, model)
    } else {
        chat_samples(&base_url, model)
    };
    json!({
        "endpoint_id": endpoint.id,
        "base_url": base_url,
        "openai_base_url": base_url,
        "endpoint_url": endpoint_url,
        "model": model,
        "modality": endpoint.modality,
        "status": endpoint.status,
        "auth": {
            "header": "Authorization",
            "scheme": "Bearer",
            "env_var": "SWITCHYARD_API_KEY",
            "note": "use an API key of this endpoint (sy_live_...); keys are shown once when created",
        },
        "openai_config": { "baseUrl": base_url, "model": model },
        "samples": samples,
    })
}

/// The "OpenAI SDK compatible" sample: the two settings every OpenAI client reads.
fn openai_compatible(base_url: &str, model: &str) -> String {
    format!(
        "# Any OpenAI-compatible client or framework (OpenAI SDKs, LangChain, LlamaIndex,
# Vercel AI SDK, ...) reads these two variables; pass the model name per request.
export OPENAI_BASE_URL=\"{base_url}\"
export OPENAI_API_KEY=\"$SWITCHYARD_API_KEY\"
# model: {model}"
    )
}

fn chat_samples(base_url: &str, model: &str) -> Value {
    json!({
        "openai_compatible": openai_compatible(base_url, model),
        "curl": format!(
    "curl {base_url}/chat/completions \\
    -H \"Authorization: Bearer $SWITCHYARD_API_KEY\" \\
    -H \"Content-Type: application/json\" \\
    -d '{{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}}'"),
        "python": format!(
"import os
from openai import OpenAI

client = OpenAI(base_url=\"{base_url}\", api_key=os.environ[\"SWITCHYARD_API_KEY\"])
response = client.chat.completions.create(
    model=\"{model}\",
    messages=[{{\"role\": \"user\", \"content\": \"Hello!\"}}],
)
print(response.choices[0].message.content)"),
        "typescript": format!(
"import OpenAI from \"openai\";

const client = new OpenAI({{ baseURL: \"{base_url}\", apiKey: process.env.SWITCHYARD_API_KEY }});
const response = await client.chat.completions.create({{
  model: \"{model}\",
  messages: [{{ role: \"user\", content: \"Hello!\" }}],
}});
console.log(response.choices[0].message.content);"),
        "python_requests": format!(
"import os
import requests

response = requests.post(
    \"{base_url}/chat/completions\",
    headers={{\"Authorization\": f\"Bearer {{os.environ['SWITCHYARD_API_KEY']}}\"}},
    json={{\"model\": \"{model}\", \"messages\": [{{\"role\": \"user\", \"content\": \"Hello!\"}}]}},
    timeout=60,
)
response.raise_for_status()
print(response.json()[\"choices\"][0][\"message\"][\"content\"])"),
    })
}

fn embedding_samples(base_url: &str, model: &str) -> Value {
    json!({
        "openai_compatible": openai_compatible(base_url, model),
        "curl": format!(
    "curl {base_url}/embeddings \\
    -H \"Authorization: Bearer $SWITCHYARD_API_KEY\" \\
    -H \"Content-Type: application/json\" \\
    -d '{{\"model\": \"{model}\", \"input\": \"Hello!\"}}'"),
        "python": format!(
"import os
from openai import OpenAI

client = OpenAI(base_url=\"{base_url}\", api_key=os.environ[\"SWITCHYARD_API_KEY\"])
response = client.embeddings.create(model=\"{model}\", input=\"Hello!\")
print(len(response.data[0].embedding))"),
        "typescript": format!(
"import OpenAI from \"openai\";

const client = new OpenAI({{ baseURL: \"{base_url}\", apiKey: process.env.SWITCHYARD_API_KEY }});
const response = await client.embeddings.create({{ model: \"{model}\", input: \"Hello!\" }});
console.log(response.data[0].embedding.length);"),
        "python_requests": format!(
"import os
import requests

response = requests.post(
    \"{base_url}/embeddings\",
    headers={{\"Authorization\": f\"Bearer {{os.environ['SWITCHYARD_API_KEY']}}\"}},
    json={{\"model\": \"{model}\", \"input\": \"Hello!\"}},
    timeout=60,
)
response.raise_for_status()
print(len(response.json()[\"data\"][0][\"embedding\"]))"),
    })
}
