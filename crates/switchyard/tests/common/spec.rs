//! Contract checking for provider fakes: loads an official OpenAPI document
//! from `../shared/specs/` (or a fixture written from `PROVIDERS.md` where the
//! provider publishes none), matches every request to an operation (exact
//! path template and method), checks the auth header, and validates the JSON
//! body against the operation's request schema with a JSON Schema validator.
//! Violations are answered with a 400 and recorded, so a test can assert that
//! the provisioner sent nothing the spec does not allow.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use http::StatusCode;
use serde_json::{json, Value};

/// Where the shared specs live: `SWITCHYARD_SPECS_DIR`, or `../shared/specs`
/// beside the repository.
pub fn specs_dir() -> PathBuf {
    std::env::var_os("SWITCHYARD_SPECS_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../shared/specs"))
}

/// Fixture specs written from `shared/specs/PROVIDERS.md` for providers that
/// publish no machine-readable file.
pub fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/specs")
}

/// An OpenAPI document ready for validation.
pub struct OpenApi {
    pub document: Value,
    uri: String,
    registry: jsonschema::Registry<'static>,
    validators: Mutex<HashMap<String, Arc<jsonschema::Validator>>>,
    /// `(method, template segments, operation pointer)`.
    operations: Vec<(String, Vec<String>, String)>,
}

impl OpenApi {
    /// Loads `shared/specs/<relative>` (JSON or YAML).
    pub fn load_shared(relative: &str) -> Self {
        Self::load(specs_dir().join(relative))
    }

    /// Loads `tests/fixtures/specs/<relative>`.
    pub fn load_fixture(relative: &str) -> Self {
        Self::load(fixture_dir().join(relative))
    }

    /// Loads a spec file.
    pub fn load(path: PathBuf) -> Self {
        let text = std::fs::read_to_string(&path).unwrap_or_else(|error| {
            panic!(
                "cannot read the spec {} ({error}); the contract tests need ../shared/specs beside the repository or SWITCHYARD_SPECS_DIR",
                path.display()
            )
        });
        let document: Value = if path.extension().is_some_and(|ext| ext == "json") {
            serde_json::from_str(&text).expect("spec is JSON")
        } else {
            serde_yaml_ng::from_str::<YamlJson>(&text)
                .expect("spec is YAML")
                .0
        };
        let uri = format!(
            "urn:switchyard-spec:{}",
            path.file_name().unwrap().to_string_lossy()
        );
        let registry = jsonschema::Registry::new()
            .draft(jsonschema::Draft::Draft202012)
            .add(&uri, document.clone())
            .expect("spec URI")
            .prepare()
            .expect("spec registry");
        let mut operations = Vec::new();
        if let Some(paths) = document.get("paths").and_then(Value::as_object) {
            for (template, item) in paths {
                let segments = template
                    .trim_matches('/')
                    .split('/')
                    .map(str::to_owned)
                    .collect::<Vec<_>>();
                for method in ["get", "post", "put", "patch", "delete"] {
                    if item.get(method).is_some() {
                        let pointer = format!("/paths/{}/{method}", escape_pointer(template));
                        operations.push((method.to_uppercase(), segments.clone(), pointer));
                    }
                }
            }
        }
        Self {
            document,
            uri,
            registry,
            validators: Mutex::new(HashMap::new()),
            operations,
        }
    }

    /// The JSON pointer of the operation that serves `method path`, if the spec has one.
    /// Literal segments win over `{param}` segments (as OpenAPI requires).
    pub fn operation(&self, method: &str, path: &str) -> Option<String> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let mut best: Option<(usize, &String)> = None;
        for (op_method, template, pointer) in &self.operations {
            if op_method != method || template.len() != segments.len() {
                continue;
            }
            let mut literals = 0;
            let matches = template.iter().zip(&segments).all(|(part, actual)| {
                if part.starts_with('{') && part.ends_with('}') {
                    !actual.is_empty()
                } else if part == actual {
                    literals += 1;
                    true
                } else {
                    // e.g. `models/{model}:generateContent`-style mixed segments are not used here.
                    false
                }
            });
            if matches && best.is_none_or(|(count, _)| literals > count) {
                best = Some((literals, pointer));
            }
        }
        best.map(|(_, pointer)| pointer.clone())
    }

    /// The pointer of an operation's JSON request body schema.
    pub fn request_schema(&self, operation: &str) -> Option<String> {
        let pointer = format!("{operation}/requestBody/content/application~1json/schema");
        self.resolve_pointer(&pointer).map(|_| pointer)
    }

    /// Follows a pointer (and one `$ref` at the end of it, if the operation's
    /// `requestBody` is itself a reference).
    fn resolve_pointer(&self, pointer: &str) -> Option<&Value> {
        if let Some(value) = self.document.pointer(pointer) {
            return Some(value);
        }
        let (head, tail) = pointer.split_once("/requestBody")?;
        let reference = self
            .document
            .pointer(&format!("{head}/requestBody/$ref"))?
            .as_str()?;
        let target = reference.strip_prefix('#')?;
        self.document.pointer(&format!("{target}{}", &tail[0..]))
    }

    /// Validates `instance` against the schema at `pointer` (`/components/schemas/X`).
    pub fn validate(&self, pointer: &str, instance: &Value) -> Result<(), Vec<String>> {
        let validator = {
            let mut cache = self.validators.lock().unwrap();
            match cache.get(pointer) {
                Some(validator) => validator.clone(),
                None => {
                    let schema = json!({ "$ref": format!("{}#{}", self.uri, fragment(pointer)) });
                    let validator = Arc::new(
                        jsonschema::options()
                            .with_draft(jsonschema::Draft::Draft202012)
                            .with_registry(&self.registry)
                            .build(&schema)
                            .unwrap_or_else(|error| {
                                panic!("schema {pointer} does not compile: {error}")
                            }),
                    );
                    cache.insert(pointer.to_owned(), validator.clone());
                    validator
                }
            }
        };
        let errors: Vec<String> = validator
            .iter_errors(instance)
            .map(|error| format!("{} at {}", error, error.instance_path()))
            .collect();
        if errors.is_empty() {
            Ok(())
        } else {
            Err(errors)
        }
    }

    /// Validates a body against the request schema of `method path`.
    pub fn validate_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&Value>,
    ) -> Result<(), Vec<String>> {
        let Some(operation) = self.operation(method, path) else {
            return Err(vec![format!(
                "{method} {path} is not an operation of the spec"
            )]);
        };
        match (self.request_schema(&operation), body) {
            (Some(schema), Some(body)) => {
                // A requestBody that is a $ref is resolved by hand above; validate via its target.
                let schema = if self.document.pointer(&schema).is_some() {
                    schema
                } else {
                    let reference = self
                        .document
                        .pointer(&format!("{operation}/requestBody/$ref"))
                        .and_then(Value::as_str)
                        .unwrap_or_default()
                        .trim_start_matches('#')
                        .to_owned();
                    format!("{reference}/content/application~1json/schema")
                };
                self.validate(&schema, body)
            }
            (Some(_), None) => {
                let required = self
                    .document
                    .pointer(&format!("{operation}/requestBody/required"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                if required {
                    Err(vec![format!("{method} {path} needs a JSON body")])
                } else {
                    Ok(())
                }
            }
            (None, Some(body)) if !body.is_null() => Err(vec![format!(
                "{method} {path} takes no JSON body but got one"
            )]),
            (None, _) => Ok(()),
        }
    }
}

fn escape_pointer(segment: &str) -> String {
    segment.replace('~', "~0").replace('/', "~1")
}

/// A YAML document read as JSON. Integers beyond 64 bits (the OpenAI spec's
/// `seed` bounds, ±9223372036854776000) become floats instead of failing.
struct YamlJson(Value);

impl<'de> serde::Deserialize<'de> for YamlJson {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(YamlJsonVisitor).map(YamlJson)
    }
}

struct YamlJsonVisitor;

impl<'de> serde::de::Visitor<'de> for YamlJsonVisitor {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a YAML value")
    }
    fn visit_bool<E>(self, value: bool) -> Result<Value, E> {
        Ok(Value::Bool(value))
    }
    fn visit_i64<E>(self, value: i64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_u64<E>(self, value: u64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_i128<E>(self, value: i128) -> Result<Value, E> {
        Ok(i64::try_from(value).map_or_else(|_| Value::from(value as f64), Value::from))
    }
    fn visit_u128<E>(self, value: u128) -> Result<Value, E> {
        Ok(u64::try_from(value).map_or_else(|_| Value::from(value as f64), Value::from))
    }
    fn visit_f64<E>(self, value: f64) -> Result<Value, E> {
        Ok(Value::from(value))
    }
    fn visit_str<E>(self, value: &str) -> Result<Value, E> {
        Ok(Value::String(value.to_owned()))
    }
    fn visit_string<E>(self, value: String) -> Result<Value, E> {
        Ok(Value::String(value))
    }
    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }
    fn visit_some<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<Value, D::Error> {
        deserializer.deserialize_any(self)
    }
    fn visit_seq<A: serde::de::SeqAccess<'de>>(self, mut seq: A) -> Result<Value, A::Error> {
        let mut items = Vec::new();
        while let Some(YamlJson(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(Value::Array(items))
    }
    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut object = serde_json::Map::new();
        while let Some((YamlJson(key), YamlJson(value))) = map.next_entry()? {
            let key = match key {
                Value::String(text) => text,
                other => other.to_string(),
            };
            object.insert(key, value);
        }
        Ok(Value::Object(object))
    }
}

/// A JSON pointer as a URI fragment: characters a URI does not allow (the
/// `{}` of path templates, spaces, ...) are percent-encoded (RFC 6901 §6).
fn fragment(pointer: &str) -> String {
    let mut encoded = String::with_capacity(pointer.len());
    for byte in pointer.bytes() {
        if byte.is_ascii_alphanumeric() || b"/~-._!$&'()*+,;=:@".contains(&byte) {
            encoded.push(char::from(byte));
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// Requests the fake saw and every contract violation.
#[derive(Default)]
pub struct Journal {
    /// `(method, path, body)` of every request, in order.
    pub requests: Mutex<Vec<(String, String, Value)>>,
    pub violations: Mutex<Vec<String>>,
}

impl Journal {
    /// Panics with the list of violations, if any.
    pub fn assert_clean(&self) {
        let violations = self.violations.lock().unwrap();
        assert!(
            violations.is_empty(),
            "the provisioner broke the provider's contract:\n{}",
            violations.join("\n")
        );
    }

    /// How many requests matched `method` and a path starting with `prefix`.
    pub fn count(&self, method: &str, prefix: &str) -> usize {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.starts_with(prefix))
            .count()
    }

    /// Bodies of requests matching `method` and a path starting with `prefix`.
    pub fn bodies(&self, method: &str, prefix: &str) -> Vec<Value> {
        self.requests
            .lock()
            .unwrap()
            .iter()
            .filter(|(m, p, _)| m == method && p.starts_with(prefix))
            .map(|(_, _, body)| body.clone())
            .collect()
    }
}

/// What the guard checks besides the schema.
pub struct Contract {
    pub spec: OpenApi,
    /// Header that must carry the credential, e.g. `authorization`.
    pub auth_header: &'static str,
    /// Its exact expected value, e.g. `Bearer rp_test`.
    pub auth_value: String,
    /// Path prefix the spec's paths are relative to (e.g. `/v1` when the
    /// spec's server URL ends in `/v1` and its paths do not).
    pub strip_prefix: &'static str,
    /// How a contract violation is answered (the provider's own error shape).
    pub error_body: fn(&str) -> Value,
    pub journal: Arc<Journal>,
}

/// Axum middleware: checks auth, operation and body; records the request.
pub async fn guard(
    State(contract): State<Arc<Contract>>,
    request: Request,
    next: Next,
) -> Response {
    let method = request.method().as_str().to_owned();
    let full_path = request.uri().path().to_owned();
    let (parts, body) = request.into_parts();
    let bytes = axum::body::to_bytes(body, 16 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let json_body: Option<Value> = if bytes.is_empty() {
        None
    } else {
        match serde_json::from_slice(&bytes) {
            Ok(value) => Some(value),
            Err(error) => {
                let message = format!("{method} {full_path}: body is not JSON: {error}");
                contract
                    .journal
                    .violations
                    .lock()
                    .unwrap()
                    .push(message.clone());
                return (
                    StatusCode::BAD_REQUEST,
                    axum::Json((contract.error_body)(&message)),
                )
                    .into_response();
            }
        }
    };
    contract.journal.requests.lock().unwrap().push((
        method.clone(),
        full_path.clone(),
        json_body.clone().unwrap_or(Value::Null),
    ));
    let presented = parts
        .headers
        .get(contract.auth_header)
        .and_then(|value| value.to_str().ok());
    if presented != Some(contract.auth_value.as_str()) {
        // Not a contract violation: tests send wrong keys on purpose. The
        // provider answers 401 as documented.
        return (
            StatusCode::UNAUTHORIZED,
            axum::Json((contract.error_body)("invalid or missing API key")),
        )
            .into_response();
    }
    if json_body.is_some()
        && !parts
            .headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|value| value.starts_with("application/json"))
    {
        let message =
            format!("{method} {full_path}: JSON body without Content-Type: application/json");
        contract
            .journal
            .violations
            .lock()
            .unwrap()
            .push(message.clone());
        return (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            axum::Json((contract.error_body)(&message)),
        )
            .into_response();
    }
    let spec_path = full_path
        .strip_prefix(contract.strip_prefix)
        .unwrap_or(&full_path);
    if let Err(errors) = contract
        .spec
        .validate_request(&method, spec_path, json_body.as_ref())
    {
        let message = format!("{method} {full_path}: {}", errors.join("; "));
        contract
            .journal
            .violations
            .lock()
            .unwrap()
            .push(message.clone());
        return (
            StatusCode::BAD_REQUEST,
            axum::Json((contract.error_body)(&message)),
        )
            .into_response();
    }
    let request = Request::from_parts(parts, Body::from(bytes));
    next.run(request).await
}
