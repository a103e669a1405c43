//! `switchyard deploy <model-id>`: deploys a Hugging Face model through a
//! running server and follows the deploy on the event stream with a live
//! progress bar until the endpoint is ready (then prints its API key, which
//! the server hands out once) or the deploy failed.

use std::io::IsTerminal;
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::client::{
    print_json, print_text, segment, text, Client, ClientError, EventStream, SseEvent,
};
use super::ClientArgs;
use crate::domain::Modality;
use crate::selector::{parse_parameters, Budget, Latency, Precision};

/// Pauses between attempts to reopen a lost event stream.
const RECONNECT_PAUSE: Duration = Duration::from_secs(2);
/// How long a reopened stream is read for the key of a deploy that finished
/// while the stream was down.
const KEY_GRACE: Duration = Duration::from_secs(3);

/// Flags of `switchyard deploy`.
#[derive(Debug, Clone, Args)]
pub struct DeployArgs {
    /// Hugging Face model id, e.g. Qwen/Qwen2.5-7B-Instruct (or its huggingface.co URL).
    pub model_id: String,
    /// Endpoint name, which is also the `model` clients send [default: from the model id].
    #[arg(long)]
    pub name: Option<String>,
    /// Provider to deploy to (runpod, huggingface, replicate, together, modal, self-hosted, external) [default: the recommendation].
    #[arg(long)]
    pub provider: Option<String>,
    /// GPU to use (a name from the price table) [default: the recommendation].
    #[arg(long)]
    pub gpu: Option<String>,
    /// What to optimise: minimum_cost, balanced, performance.
    #[arg(long)]
    pub budget: Option<String>,
    /// How much cold starts matter: critical, low, medium, high.
    #[arg(long)]
    pub latency: Option<String>,
    /// Parameter count, e.g. 7B, when the Hub does not tell.
    #[arg(long)]
    pub params: Option<String>,
    /// Weight precision or quantisation: fp32, fp16, bf16, fp8, int8, int4.
    #[arg(long)]
    pub precision: Option<String>,
    /// What the model does: llm, embedding, image, video, audio [default: from the Hub].
    #[arg(long)]
    pub modality: Option<String>,
    /// Hub revision (branch, tag or commit).
    #[arg(long)]
    pub revision: Option<String>,
    /// Expected requests per day, for the choice and the estimate.
    #[arg(long)]
    pub requests_per_day: Option<u64>,
    /// Smallest number of workers (0 scales to zero).
    #[arg(long)]
    pub min_workers: Option<i64>,
    /// Largest number of workers.
    #[arg(long)]
    pub max_workers: Option<i64>,
    /// Seconds without requests before a worker stops.
    #[arg(long)]
    pub idle_timeout_seconds: Option<i64>,
    /// Description of the endpoint.
    #[arg(long)]
    pub description: Option<String>,
    /// With `--provider external`: the base URL of the server that already runs.
    #[arg(long)]
    pub source_url: Option<String>,
    /// Longest wait for the deploy to finish, in seconds.
    #[arg(long, default_value_t = 3600)]
    pub timeout_seconds: u64,
    /// Print the accepted deploy and return at once instead of waiting.
    #[arg(long)]
    pub no_wait: bool,
    /// Print machine-readable JSON instead of text and a progress bar.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// A flag value that is not one of the accepted words.
fn invalid(flag: &str, value: &str, expected: &str) -> anyhow::Error {
    anyhow::anyhow!("--{flag} `{value}` is not valid; expected one of {expected}")
}

/// The body of `POST /api/v1/endpoints/deploy` from the flags (validated).
pub fn request_body(args: &DeployArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    let model_id = args.model_id.trim();
    if model_id.is_empty() {
        anyhow::bail!("the model id is empty");
    }
    body.insert("model_id".to_owned(), json!(model_id));
    let mut put = |field: &str, value: Option<Value>| {
        if let Some(value) = value {
            body.insert(field.to_owned(), value);
        }
    };
    put("model_name", args.name.clone().map(Value::String));
    put("provider", args.provider.clone().map(Value::String));
    put("gpu_type", args.gpu.clone().map(Value::String));
    put("revision", args.revision.clone().map(Value::String));
    put("description", args.description.clone().map(Value::String));
    put("source_url", args.source_url.clone().map(Value::String));
    if let Some(budget) = &args.budget {
        let parsed =
            Budget::parse(budget).ok_or_else(|| invalid("budget", budget, &Budget::expected()))?;
        put("budget", Some(json!(parsed.as_str())));
    }
    if let Some(latency) = &args.latency {
        let parsed = Latency::parse(latency)
            .ok_or_else(|| invalid("latency", latency, &Latency::expected()))?;
        put("latency", Some(json!(parsed.as_str())));
    }
    if let Some(precision) = &args.precision {
        let parsed = Precision::parse(precision)
            .ok_or_else(|| invalid("precision", precision, &Precision::expected()))?;
        put("precision", Some(json!(parsed.as_str())));
    }
    if let Some(modality) = &args.modality {
        let parsed = Modality::parse(modality)
            .ok_or_else(|| invalid("modality", modality, &Modality::expected()))?;
        put("modality", Some(json!(parsed.as_str())));
    }
    if let Some(params) = &args.params {
        if parse_parameters(params).is_none() {
            anyhow::bail!("--params `{params}` is not a parameter count such as 7B or 135M");
        }
        put("params", Some(json!(params)));
    }
    put("requests_per_day", args.requests_per_day.map(|n| json!(n)));
    put("min_workers", args.min_workers.map(|n| json!(n)));
    put("max_workers", args.max_workers.map(|n| json!(n)));
    put(
        "idle_timeout_seconds",
        args.idle_timeout_seconds.map(|n| json!(n)),
    );
    if args.timeout_seconds == 0 {
        anyhow::bail!("--timeout-seconds must be at least 1");
    }
    Ok(Value::Object(body))
}

/// Runs the command.
pub async fn run(args: DeployArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    let body = request_body(&args)?;
    if args.provider.is_none() && !args.json {
        if let Some(line) = recommendation_line(&client, &body).await {
            print_text(&line)?;
        }
    }
    let accepted = client.post("/api/v1/endpoints/deploy", &body).await?;
    let endpoint_id = accepted["endpoint_id"]
        .as_str()
        .context("the server's answer has no endpoint_id")?
        .to_owned();
    if args.no_wait {
        return if args.json {
            print_json(&accepted)
        } else {
            print_text(&format!(
                "Deploying endpoint {endpoint_id} (job {}); follow it with `switchyard endpoints show {endpoint_id}`.\n",
                text(&accepted["job_id"])
            ))
        };
    }
    // Only this endpoint's events, replayed from the start: nothing published
    // since the POST is missed, and another deploy's key is never taken.
    let events = client.events(Some("0"), Some(&endpoint_id)).await?;
    let deadline = Instant::now() + Duration::from_secs(args.timeout_seconds);
    let mut progress = Progress::new(args.json)?;
    let outcome = follow(&client, events, &endpoint_id, deadline, &mut progress).await;
    progress.finish(matches!(outcome, Ok(Outcome::Ready(_))));
    match outcome? {
        Outcome::Ready(event) => report_ready(&client, &endpoint_id, &event, args.json).await,
        Outcome::Failed { error, attempts } => {
            if args.json {
                print_json(&json!({
                    "status": "failed",
                    "endpoint_id": endpoint_id,
                    "job_id": accepted["job_id"],
                    "error": error,
                    "attempts": attempts,
                }))?;
            }
            Err(anyhow::anyhow!(failure_message(
                &endpoint_id,
                &error,
                &attempts
            )))
        }
        Outcome::TimedOut => Err(anyhow::anyhow!(
            "no result after {} s; the deploy continues on the server: `switchyard endpoints show {endpoint_id}`",
            args.timeout_seconds
        )),
    }
}

/// The preview's recommendation as one line, or `None` when the preview fails
/// (the deploy then reports the problem itself).
async fn recommendation_line(client: &Client, body: &Value) -> Option<String> {
    let mut query = Vec::new();
    // The preview takes the deploy's fields of the same names as its query.
    for field in [
        "model_id",
        "gpu_type",
        "params",
        "precision",
        "modality",
        "budget",
        "latency",
        "requests_per_day",
    ] {
        match &body[field] {
            Value::String(value) => query.push((field, value.clone())),
            Value::Number(value) => query.push((field, value.to_string())),
            _ => {}
        }
    }
    let preview = client
        .get_query("/api/v1/endpoints/deploy/preview", &query)
        .await
        .ok()?;
    let recommendation = &preview["preview"]["recommendation"];
    let provider = recommendation["provider"].as_str()?;
    let gpu = recommendation["gpu_type"].as_str()?;
    let credits = text(&preview["preview"]["monthly_estimate"]["credits"]);
    let mut line = format!("Recommendation: {gpu} on {provider}, about {credits} credits a month");
    if preview["preview"]["deployable"] == Value::Bool(false) {
        line.push_str(" (no provider configured on this server can deploy it)");
    }
    line.push('\n');
    Some(line)
}

/// How the deploy ended.
#[derive(Debug)]
enum Outcome {
    /// `DEPLOYMENT_COMPLETE` (or a succeeded job seen after a reconnect).
    Ready(Value),
    /// `DEPLOYMENT_FAILED`, a failed job, or the endpoint was terminated.
    Failed { error: String, attempts: Value },
    /// The deadline passed first.
    TimedOut,
}

/// Reads the event stream until the endpoint's deploy ends. A lost stream is
/// reopened with `Last-Event-ID`, and the job is read once so that an end
/// missed in between is still seen.
async fn follow(
    client: &Client,
    mut events: EventStream,
    endpoint_id: &str,
    deadline: Instant,
    progress: &mut Progress,
) -> anyhow::Result<Outcome> {
    let mut last_id: Option<String> = None;
    loop {
        let next = match tokio::time::timeout_at(deadline, events.next()).await {
            Err(_) => return Ok(Outcome::TimedOut),
            Ok(next) => next,
        };
        match next {
            Ok(Some(event)) => {
                if event.id.is_some() {
                    last_id.clone_from(&event.id);
                }
                if let Some(outcome) = handle(&event, endpoint_id, progress) {
                    return Ok(outcome);
                }
            }
            Ok(None) | Err(_) => {
                let Some(reopened) =
                    reconnect(client, endpoint_id, last_id.as_deref(), deadline).await?
                else {
                    return Ok(Outcome::TimedOut);
                };
                events = reopened;
                match job_outcome(client, endpoint_id).await {
                    Ok(Some(Outcome::Ready(status))) if status["api_key"].is_null() => {
                        // The reopened stream may have received the completion
                        // (and with it the key) just before the status was read.
                        let until = (Instant::now() + KEY_GRACE).min(deadline);
                        let event = completion_with_key(&mut events, endpoint_id, until).await;
                        return Ok(Outcome::Ready(event.unwrap_or(status)));
                    }
                    Ok(Some(outcome)) => return Ok(outcome),
                    Ok(None) => {}
                    Err(error) if error.status() == Some(404) => {
                        return Ok(Outcome::Failed {
                            error: "the endpoint no longer exists".to_owned(),
                            attempts: Value::Null,
                        })
                    }
                    // The stream is open again; it reports the end.
                    Err(_) => {}
                }
            }
        }
    }
}

/// Reads the stream until `until` for the endpoint's `DEPLOYMENT_COMPLETE`
/// carrying the key.
async fn completion_with_key(
    events: &mut EventStream,
    endpoint_id: &str,
    until: Instant,
) -> Option<Value> {
    while let Ok(Ok(Some(event))) = tokio::time::timeout_at(until, events.next()).await {
        let Ok(document) = serde_json::from_str::<Value>(&event.data) else {
            continue;
        };
        if document["endpoint_id"].as_str() == Some(endpoint_id)
            && document["type"] == "DEPLOYMENT_COMPLETE"
            && document["api_key"].is_string()
        {
            return Some(document);
        }
    }
    None
}

/// Reopens the event stream until it works or the deadline passes; an
/// authentication error ends the wait.
async fn reconnect(
    client: &Client,
    endpoint_id: &str,
    last_id: Option<&str>,
    deadline: Instant,
) -> Result<Option<EventStream>, ClientError> {
    loop {
        if Instant::now() + RECONNECT_PAUSE >= deadline {
            return Ok(None);
        }
        tokio::time::sleep(RECONNECT_PAUSE).await;
        match tokio::time::timeout_at(
            deadline,
            client.events(last_id.or(Some("0")), Some(endpoint_id)),
        )
        .await
        {
            Ok(Ok(events)) => return Ok(Some(events)),
            Ok(Err(error)) if matches!(error.status(), Some(401 | 403)) => return Err(error),
            Ok(Err(_)) | Err(_) => {}
        }
    }
}

/// The outcome from the job itself, when it has finished.
async fn job_outcome(client: &Client, endpoint_id: &str) -> Result<Option<Outcome>, ClientError> {
    let status = client
        .get(&format!(
            "/api/v1/endpoints/{}/deployment",
            segment(endpoint_id)
        ))
        .await?;
    let deployment = &status["deployment"];
    Ok(match deployment["state"].as_str() {
        Some("succeeded") => {
            let mut event = deployment.clone();
            event["api_key"] = status["api_key"].clone();
            Some(Outcome::Ready(event))
        }
        Some("failed") => Some(Outcome::Failed {
            error: text(&deployment["error"]),
            attempts: deployment["attempts"].clone(),
        }),
        _ => None,
    })
}

/// Applies one event; returns the outcome when it ends the deploy.
fn handle(event: &SseEvent, endpoint_id: &str, progress: &mut Progress) -> Option<Outcome> {
    let document: Value = serde_json::from_str(&event.data).ok()?;
    if document["endpoint_id"].as_str() != Some(endpoint_id) {
        return None;
    }
    let kind = document["type"]
        .as_str()
        .or(event.event.as_deref())
        .unwrap_or_default();
    match kind {
        "DEPLOYMENT_PROGRESS" => {
            progress.update(
                document["stage"].as_str().unwrap_or("deploying"),
                document["percent"].as_u64().unwrap_or(0),
                document["message"].as_str(),
            );
            None
        }
        "DEPLOYMENT_COMPLETE" => Some(Outcome::Ready(document)),
        "DEPLOYMENT_FAILED" => Some(Outcome::Failed {
            error: text(&document["error"]),
            attempts: document["attempts"].clone(),
        }),
        "ENDPOINT_STATUS_CHANGED" if document["status"] == "terminated" => Some(Outcome::Failed {
            error: "the endpoint was terminated during the deploy".to_owned(),
            attempts: Value::Null,
        }),
        _ => None,
    }
}

/// Prints the ready endpoint and its key (from the event, else from the
/// deployment status, which hands it out once).
async fn report_ready(
    client: &Client,
    endpoint_id: &str,
    event: &Value,
    json_output: bool,
) -> anyhow::Result<()> {
    let path = format!("/api/v1/endpoints/{}", segment(endpoint_id));
    let mut api_key = event["api_key"].as_str().map(str::to_owned);
    if api_key.is_none() {
        if let Ok(status) = client.get(&format!("{path}/deployment")).await {
            api_key = status["api_key"].as_str().map(str::to_owned);
        }
    }
    // Best effort: the key in hand is printed even if the server is gone now;
    // the event has the same fields as seen from the server's public URL.
    let endpoint = client
        .get(&path)
        .await
        .map(|document| document["endpoint"].clone())
        .unwrap_or(Value::Null);
    let endpoint = &endpoint;
    let pick = |field: &str| {
        Some(&endpoint[field])
            .filter(|value| !value.is_null())
            .unwrap_or(&event[field])
            .clone()
    };
    let model_name = endpoint["name"]
        .as_str()
        .or(event["model_name"].as_str())
        .unwrap_or_default()
        .to_owned();
    let result = json!({
        "status": "ready",
        "endpoint_id": endpoint_id,
        "job_id": event["job_id"],
        "model_name": model_name,
        "provider": event["provider"],
        "gpu_type": event["gpu_type"],
        "openai_base_url": pick("openai_base_url"),
        "endpoint_url": pick("endpoint_url"),
        "api_key": api_key,
    });
    if json_output {
        return print_json(&result);
    }
    let mut out = format!("Endpoint {model_name} is ready: {endpoint_id}\n");
    out.push_str(&format!(
        "  Provider:        {} (GPU {})\n",
        text(&result["provider"]),
        text(&result["gpu_type"])
    ));
    out.push_str(&format!(
        "  OpenAI base URL: {}\n",
        text(&result["openai_base_url"])
    ));
    out.push_str(&format!("  Model:           {model_name}\n"));
    match &api_key {
        Some(key) => {
            out.push_str(&format!("  API key:         {key}\n"));
            out.push_str("The API key is shown only this once: store it now.\n");
        }
        None => out.push_str(&format!(
            "  API key:         already delivered to another connection; create one with `switchyard keys create {endpoint_id} --name NAME`\n"
        )),
    }
    print_text(&out)
}

/// The error text of a failed deploy, with every failed attempt.
pub fn failure_message(endpoint_id: &str, error: &str, attempts: &Value) -> String {
    let mut message = format!("the deploy of endpoint {endpoint_id} failed: {error}");
    if let Some(attempts) = attempts.as_array().filter(|list| !list.is_empty()) {
        message.push_str("\nattempts:");
        for (index, attempt) in attempts.iter().enumerate() {
            message.push_str(&format!(
                "\n  {}. {} on {}: {} ({})",
                index + 1,
                text(&attempt["gpu"]),
                text(&attempt["provider"]),
                text(&attempt["message"]),
                text(&attempt["code"]),
            ));
        }
    }
    message.push_str(&format!(
        "\nthe endpoint stays in status `error`; remove it with `switchyard endpoints rm {endpoint_id} --yes`"
    ));
    message
}

/// How progress is shown: a live bar on a terminal, one line per change
/// otherwise, nothing with `--json`.
struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
    last: Option<(String, Option<String>)>,
}

impl Progress {
    /// The display for this run: none with `--json`, else by whether stdout is a terminal.
    fn new(json_output: bool) -> anyhow::Result<Self> {
        if json_output {
            return Ok(Self {
                bar: None,
                lines: false,
                last: None,
            });
        }
        if !std::io::stdout().is_terminal() {
            return Ok(Self {
                bar: None,
                lines: true,
                last: None,
            });
        }
        let bar = ProgressBar::with_draw_target(Some(100), ProgressDrawTarget::stdout());
        bar.set_style(
            ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:30}] {pos:>3}% {prefix} {wide_msg}",
            )
            .context("the progress bar template")?
            .progress_chars("=> "),
        );
        bar.set_prefix("queued");
        bar.enable_steady_tick(Duration::from_millis(120));
        Ok(Self {
            bar: Some(bar),
            lines: false,
            last: None,
        })
    }

    /// Shows a `DEPLOYMENT_PROGRESS` event.
    fn update(&mut self, stage: &str, percent: u64, message: Option<&str>) {
        let percent = percent.min(100);
        if let Some(bar) = &self.bar {
            bar.set_position(percent);
            bar.set_prefix(stage.to_owned());
            bar.set_message(message.unwrap_or_default().to_owned());
            return;
        }
        let current = (stage.to_owned(), message.map(str::to_owned));
        if !self.lines || self.last.as_ref() == Some(&current) {
            return;
        }
        let line = match message {
            Some(message) => format!("[{percent:>3}%] {stage}: {message}\n"),
            None => format!("[{percent:>3}%] {stage}\n"),
        };
        // A closed stdout must not stop the deploy from being followed.
        let _ = print_text(&line);
        self.last = Some(current);
    }

    /// Clears the bar after a success (the summary follows); otherwise
    /// leaves it where the deploy stopped.
    fn finish(&self, ready: bool) {
        if let Some(bar) = &self.bar {
            if ready {
                bar.finish_and_clear();
            } else {
                bar.abandon();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Wrapper {
        #[command(flatten)]
        args: DeployArgs,
    }

    fn parse(line: &[&str]) -> DeployArgs {
        let mut argv = vec!["deploy"];
        argv.extend_from_slice(line);
        Wrapper::parse_from(argv).args
    }

    #[test]
    fn flags_become_the_deploy_body() {
        let body = request_body(&parse(&[
            "Qwen/Qwen2.5-7B-Instruct",
            "--name",
            "qwen",
            "--provider",
            "runpod",
            "--gpu",
            "A10G",
            "--budget",
            "minimum_cost",
            "--latency",
            "low",
            "--params",
            "7B",
            "--precision",
            "int4",
            "--min-workers",
            "0",
            "--max-workers",
            "2",
            "--idle-timeout-seconds",
            "120",
        ]))
        .unwrap();
        assert_eq!(
            body,
            json!({
                "model_id": "Qwen/Qwen2.5-7B-Instruct", "model_name": "qwen", "provider": "runpod",
                "gpu_type": "A10G", "budget": "minimum_cost", "latency": "low", "params": "7B",
                "precision": "int4", "min_workers": 0, "max_workers": 2, "idle_timeout_seconds": 120,
            })
        );
        assert_eq!(
            request_body(&parse(&["org/model"])).unwrap(),
            json!({"model_id": "org/model"})
        );
    }

    #[test]
    fn bad_flags_are_refused_before_calling_the_server() {
        let error = request_body(&parse(&["m/x", "--budget", "cheap"])).unwrap_err();
        assert!(error.to_string().contains("--budget `cheap`"), "{error}");
        let error = request_body(&parse(&["m/x", "--params", "lots"])).unwrap_err();
        assert!(error.to_string().contains("--params `lots`"), "{error}");
        let error = request_body(&parse(&["m/x", "--timeout-seconds", "0"])).unwrap_err();
        assert!(error.to_string().contains("--timeout-seconds"), "{error}");
    }

    fn event(data: Value) -> SseEvent {
        SseEvent {
            id: Some("1".to_owned()),
            event: data["type"].as_str().map(str::to_owned),
            data: data.to_string(),
        }
    }

    #[test]
    fn events_of_the_endpoint_drive_the_outcome() {
        let mut progress = Progress {
            bar: None,
            lines: false,
            last: None,
        };
        let other = event(json!({"type": "DEPLOYMENT_COMPLETE", "endpoint_id": "e2"}));
        assert!(handle(&other, "e1", &mut progress).is_none());
        let step = event(
            json!({"type": "DEPLOYMENT_PROGRESS", "endpoint_id": "e1", "stage": "provisioning", "percent": 35}),
        );
        assert!(handle(&step, "e1", &mut progress).is_none());
        let done = event(
            json!({"type": "DEPLOYMENT_COMPLETE", "endpoint_id": "e1", "api_key": "sy_live_x"}),
        );
        assert!(
            matches!(handle(&done, "e1", &mut progress), Some(Outcome::Ready(event)) if event["api_key"] == "sy_live_x")
        );
        let failed = event(
            json!({"type": "DEPLOYMENT_FAILED", "endpoint_id": "e1", "error": "no capacity", "attempts": []}),
        );
        assert!(
            matches!(handle(&failed, "e1", &mut progress), Some(Outcome::Failed { error, .. }) if error == "no capacity")
        );
        let terminated = event(
            json!({"type": "ENDPOINT_STATUS_CHANGED", "endpoint_id": "e1", "status": "terminated"}),
        );
        assert!(matches!(
            handle(&terminated, "e1", &mut progress),
            Some(Outcome::Failed { .. })
        ));
    }

    #[test]
    fn failures_list_every_attempt() {
        let message = failure_message(
            "e1",
            "every option failed",
            &json!([
                {"provider": "runpod", "gpu": "A10G", "code": "no_capacity", "message": "no workers", "at": 1},
                {"provider": "modal", "gpu": "L4", "code": "provider_error", "message": "quota", "at": 2},
            ]),
        );
        assert!(
            message.contains("failed: every option failed\nattempts:\n  1. A10G on runpod: no workers (no_capacity)\n  2. L4 on modal: quota (provider_error)"),
            "{message}"
        );
        assert!(message.contains("switchyard endpoints rm e1 --yes"));
    }
}
