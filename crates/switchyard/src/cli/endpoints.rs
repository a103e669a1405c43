//! `switchyard endpoints ls|show|rm`: the caller's endpoints on a running
//! server, one endpoint with its latest deployment, and termination.

use clap::{Args, Subcommand};
use serde_json::{json, Value};

use super::client::{
    confirm, interactive, print_json, print_text, segment, short_time, table, text, Client,
};
use super::ClientArgs;

/// Flags of `switchyard endpoints`.
#[derive(Debug, Clone, Args)]
pub struct EndpointsArgs {
    #[command(subcommand)]
    pub command: EndpointsCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The `endpoints` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum EndpointsCommand {
    /// List your endpoints.
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Show one endpoint and its latest deployment.
    Show(ShowArgs),
    /// Terminate an endpoint: its keys stop working at once and its provider resource is deleted.
    #[command(alias = "delete")]
    Rm(RmArgs),
}

/// Flags of `endpoints ls`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// Only endpoints of this modality (llm, embedding, image, video, audio).
    #[arg(long)]
    pub modality: Option<String>,
    /// Only endpoints in this status (provisioning, active, idle, error, …).
    #[arg(long)]
    pub status: Option<String>,
    /// Only endpoints on this provider.
    #[arg(long)]
    pub provider: Option<String>,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `endpoints show`.
#[derive(Debug, Clone, Args)]
pub struct ShowArgs {
    /// The endpoint id.
    pub id: String,
    /// Print JSON (`endpoint`, `deployment`, `api_key`).
    #[arg(long)]
    pub json: bool,
}

/// Flags of `endpoints rm`.
#[derive(Debug, Clone, Args)]
pub struct RmArgs {
    /// The endpoint id.
    pub id: String,
    /// Do not ask for confirmation (required without a terminal).
    #[arg(long, short = 'y')]
    pub yes: bool,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: EndpointsArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        EndpointsCommand::Ls(list) => ls(&client, &list).await,
        EndpointsCommand::Show(show) => self::show(&client, &show).await,
        EndpointsCommand::Rm(rm) => self::rm(&client, &rm).await,
    }
}

async fn ls(client: &Client, args: &ListArgs) -> anyhow::Result<()> {
    let mut query = Vec::new();
    for (name, value) in [
        ("modality", &args.modality),
        ("status", &args.status),
        ("provider", &args.provider),
    ] {
        if let Some(value) = value {
            query.push((name, value.clone()));
        }
    }
    let list = client.get_query("/api/v1/endpoints", &query).await?;
    if args.json {
        return print_json(&list);
    }
    print_text(&render_list(&list))
}

/// The table of `endpoints ls`.
pub fn render_list(list: &Value) -> String {
    let endpoints = list["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if endpoints.is_empty() {
        return "No endpoints.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = endpoints
        .iter()
        .map(|endpoint| {
            vec![
                text(&endpoint["id"]),
                text(&endpoint["name"]),
                text(&endpoint["modality"]),
                text(&endpoint["provider"]),
                text(&endpoint["gpu_type"]),
                text(&endpoint["status"]),
                short_time(&endpoint["created_at"]),
            ]
        })
        .collect();
    table(
        &[
            "ID", "NAME", "MODALITY", "PROVIDER", "GPU", "STATUS", "CREATED",
        ],
        &rows,
    )
}

async fn show(client: &Client, args: &ShowArgs) -> anyhow::Result<()> {
    let path = format!("/api/v1/endpoints/{}", segment(&args.id));
    let endpoint = client.get(&path).await?;
    // A registered (not deployed) endpoint has no deployment: a 404 here.
    let status = match client.get(&format!("{path}/deployment")).await {
        Ok(status) => status,
        Err(error) if error.status() == Some(404) => json!({"deployment": null, "api_key": null}),
        Err(error) => return Err(error.into()),
    };
    let document = json!({
        "endpoint": endpoint["endpoint"],
        "deployment": status["deployment"],
        "api_key": status["api_key"],
    });
    if args.json {
        return print_json(&document);
    }
    print_text(&render_show(&document))
}

/// The text of `endpoints show`.
pub fn render_show(document: &Value) -> String {
    let endpoint = &document["endpoint"];
    let mut out = format!("Endpoint {}\n", text(&endpoint["id"]));
    let mut field = |label: &str, value: String| {
        out.push_str(&format!("  {:<17}{value}\n", format!("{label}:")));
    };
    field("Name", text(&endpoint["name"]));
    field("Status", text(&endpoint["status"]));
    field("Modality", text(&endpoint["modality"]));
    field("Provider", text(&endpoint["provider"]));
    field("GPU", text(&endpoint["gpu_type"]));
    field(
        "Workers",
        format!(
            "{}..{}, idle timeout {} s",
            text(&endpoint["min_workers"]),
            text(&endpoint["max_workers"]),
            text(&endpoint["idle_timeout_seconds"])
        ),
    );
    if let Some(source) = endpoint["hf_repo_url"].as_str() {
        field("Source", source.to_owned());
    }
    field(
        "OpenAI base URL",
        format!(
            "{} (model \"{}\")",
            text(&endpoint["openai_base_url"]),
            text(&endpoint["name"])
        ),
    );
    field("Created", short_time(&endpoint["created_at"]));
    field("Last active", short_time(&endpoint["last_active_at"]));
    if !endpoint["error_message"].is_null() {
        field("Error", text(&endpoint["error_message"]));
    }
    let deployment = &document["deployment"];
    if deployment.is_object() {
        out.push_str(&format!(
            "Deployment {} ({}): {}, stage {}, {}%\n",
            text(&deployment["job_id"]),
            text(&deployment["kind"]),
            text(&deployment["state"]),
            text(&deployment["stage"]),
            text(&deployment["percent"])
        ));
        out.push_str(&format!(
            "  {:<17}{} on {}\n",
            "Option:",
            text(&deployment["gpu_type"]),
            text(&deployment["provider"])
        ));
        out.push_str(&format!(
            "  {:<17}{}\n",
            "Updated:",
            short_time(&deployment["updated_at"])
        ));
        if !deployment["error"].is_null() {
            out.push_str(&format!(
                "  {:<17}{}\n",
                "Error:",
                text(&deployment["error"])
            ));
        }
        if let Some(attempts) = deployment["attempts"]
            .as_array()
            .filter(|list| !list.is_empty())
        {
            out.push_str("  Attempts:\n");
            for (index, attempt) in attempts.iter().enumerate() {
                out.push_str(&format!(
                    "    {}. {} on {}: {} ({})\n",
                    index + 1,
                    text(&attempt["gpu"]),
                    text(&attempt["provider"]),
                    text(&attempt["message"]),
                    text(&attempt["code"])
                ));
            }
        }
    }
    if let Some(key) = document["api_key"].as_str() {
        out.push_str(&format!(
            "API key: {key}\nThe API key of this deploy is shown only this once: store it now.\n"
        ));
    }
    out
}

async fn rm(client: &Client, args: &RmArgs) -> anyhow::Result<()> {
    if !args.yes && !interactive() {
        anyhow::bail!(
            "refusing to terminate endpoint {} without confirmation: pass --yes",
            args.id
        );
    }
    let path = format!("/api/v1/endpoints/{}", segment(&args.id));
    let endpoint = client.get(&path).await?;
    let name = text(&endpoint["endpoint"]["name"]);
    if !args.yes {
        let question = format!(
            "Terminate endpoint {name} ({})? Its API keys stop working at once and its provider resource is deleted.",
            args.id
        );
        if !confirm(&question)? {
            anyhow::bail!("not terminated");
        }
    }
    let answer = client.delete(&path).await?;
    if args.json {
        return print_json(&answer);
    }
    let mut out = format!(
        "Terminated endpoint {name} ({}); its API keys were revoked.\n",
        args.id
    );
    if answer["provider_cleanup"] == "queued" {
        out.push_str(&format!(
            "The provider resource is being deleted (job {}).\n",
            text(&answer["cleanup_job_id"])
        ));
    }
    print_text(&out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_is_a_table() {
        let list = json!({"data": [{
            "id": "0190-e1", "name": "smol", "modality": "llm", "provider": "self-hosted",
            "gpu_type": null, "status": "active", "created_at": "2026-01-02T03:04:05.6Z",
        }], "total": 1});
        assert_eq!(
            render_list(&list),
            "ID       NAME  MODALITY  PROVIDER     GPU  STATUS  CREATED\n\
             0190-e1  smol  llm       self-hosted  -    active  2026-01-02 03:04:05\n"
        );
        assert_eq!(render_list(&json!({"data": []})), "No endpoints.\n");
    }

    #[test]
    fn show_includes_the_deployment_and_a_pending_key() {
        let document = json!({
            "endpoint": {"id": "e1", "name": "smol", "status": "error", "error_message": "no capacity",
                         "openai_base_url": "http://h/v1", "min_workers": 0, "max_workers": 1,
                         "idle_timeout_seconds": 300},
            "deployment": {"job_id": "j1", "kind": "deploy", "state": "failed", "stage": "failed",
                           "percent": 35, "provider": "runpod", "gpu_type": "A10G", "error": "every option failed",
                           "attempts": [{"provider": "runpod", "gpu": "A10G", "code": "no_capacity", "message": "none"}]},
            "api_key": "sy_live_abc",
        });
        let text = render_show(&document);
        assert!(text.contains("  Error:           no capacity\n"), "{text}");
        assert!(
            text.contains("Deployment j1 (deploy): failed, stage failed, 35%\n"),
            "{text}"
        );
        assert!(
            text.contains("    1. A10G on runpod: none (no_capacity)\n"),
            "{text}"
        );
        assert!(
            text.contains("OpenAI base URL: http://h/v1 (model \"smol\")"),
            "{text}"
        );
        assert!(text.contains("API key: sy_live_abc\n"), "{text}");
    }
}
