//! `switchyard keys create|ls|revoke`: API keys of an endpoint on a running
//! server. A new key is printed once; the server keeps only its hash.

use clap::{Args, Subcommand};
use serde_json::{json, Map, Value};

use super::client::{print_json, print_text, segment, short_time, table, text, Client};
use super::ClientArgs;
use crate::domain::parse_time;

/// Flags of `switchyard keys`.
#[derive(Debug, Clone, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    pub command: KeysCommand,
    #[command(flatten)]
    pub client: ClientArgs,
}

/// The `keys` subcommands.
#[derive(Debug, Clone, Subcommand)]
pub enum KeysCommand {
    /// Create an API key for an endpoint (printed once).
    Create(CreateArgs),
    /// List the keys of an endpoint (display prefixes only).
    #[command(alias = "list")]
    Ls(ListArgs),
    /// Revoke a key: requests with it are refused at once.
    Revoke(RevokeArgs),
}

/// Flags of `keys create`.
#[derive(Debug, Clone, Args)]
pub struct CreateArgs {
    /// The endpoint id.
    pub endpoint_id: String,
    /// A name for the key (1 to 100 characters).
    #[arg(long)]
    pub name: String,
    /// Requests per minute [server default: 60].
    #[arg(long)]
    pub per_minute: Option<i64>,
    /// Requests per UTC day [server default: 10000].
    #[arg(long)]
    pub per_day: Option<i64>,
    /// Expiry as an RFC 3339 time, e.g. 2027-01-01T00:00:00Z [default: never].
    #[arg(long)]
    pub expires_at: Option<String>,
    /// Print the server's JSON (with the key).
    #[arg(long)]
    pub json: bool,
}

/// Flags of `keys ls`.
#[derive(Debug, Clone, Args)]
pub struct ListArgs {
    /// The endpoint id.
    pub endpoint_id: String,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Flags of `keys revoke`.
#[derive(Debug, Clone, Args)]
pub struct RevokeArgs {
    /// The endpoint id.
    pub endpoint_id: String,
    /// The key id (from `keys ls`).
    pub key_id: String,
    /// Print the server's JSON.
    #[arg(long)]
    pub json: bool,
}

/// Runs the command.
pub async fn run(args: KeysArgs) -> anyhow::Result<()> {
    let client = Client::new(&args.client)?;
    match args.command {
        KeysCommand::Create(create) => self::create(&client, &create).await,
        KeysCommand::Ls(list) => ls(&client, &list).await,
        KeysCommand::Revoke(revoke) => self::revoke(&client, &revoke).await,
    }
}

/// The body of `POST /api/v1/endpoints/{id}/keys` from the flags.
pub fn create_body(args: &CreateArgs) -> anyhow::Result<Value> {
    let mut body = Map::new();
    body.insert("name".to_owned(), json!(args.name));
    if let Some(per_minute) = args.per_minute {
        body.insert("rate_limit_per_minute".to_owned(), json!(per_minute));
    }
    if let Some(per_day) = args.per_day {
        body.insert("rate_limit_per_day".to_owned(), json!(per_day));
    }
    if let Some(expires_at) = &args.expires_at {
        if parse_time(expires_at).is_none() {
            anyhow::bail!(
                "--expires-at `{expires_at}` is not an RFC 3339 time such as 2027-01-01T00:00:00Z"
            );
        }
        body.insert("expires_at".to_owned(), json!(expires_at));
    }
    Ok(Value::Object(body))
}

async fn create(client: &Client, args: &CreateArgs) -> anyhow::Result<()> {
    let body = create_body(args)?;
    let answer = client
        .post(
            &format!("/api/v1/endpoints/{}/keys", segment(&args.endpoint_id)),
            &body,
        )
        .await?;
    if args.json {
        return print_json(&answer);
    }
    let key = &answer["key"];
    let expires = match key["expires_at"].as_str() {
        Some(_) => short_time(&key["expires_at"]),
        None => "never".to_owned(),
    };
    print_text(&format!(
        "Created key {} ({}) for endpoint {}\n  Limits:  {}/minute, {}/day; expires {expires}\n  API key: {}\nStore it now: the key will not be shown again.\n",
        text(&key["id"]),
        text(&key["name"]),
        args.endpoint_id,
        text(&key["rate_limit_per_minute"]),
        text(&key["rate_limit_per_day"]),
        text(&answer["api_key"]),
    ))
}

async fn ls(client: &Client, args: &ListArgs) -> anyhow::Result<()> {
    let list = client
        .get(&format!(
            "/api/v1/endpoints/{}/keys",
            segment(&args.endpoint_id)
        ))
        .await?;
    if args.json {
        return print_json(&list);
    }
    print_text(&render_list(&list))
}

/// The table of `keys ls`.
pub fn render_list(list: &Value) -> String {
    let keys = list["data"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    if keys.is_empty() {
        return "No keys.\n".to_owned();
    }
    let rows: Vec<Vec<String>> = keys
        .iter()
        .map(|key| {
            vec![
                text(&key["id"]),
                text(&key["name"]),
                format!("{}…", text(&key["prefix"])),
                text(&key["status"]),
                text(&key["rate_limit_per_minute"]),
                text(&key["rate_limit_per_day"]),
                short_time(&key["last_used_at"]),
                short_time(&key["expires_at"]),
                short_time(&key["created_at"]),
            ]
        })
        .collect();
    table(
        &[
            "ID",
            "NAME",
            "PREFIX",
            "STATUS",
            "PER-MINUTE",
            "PER-DAY",
            "LAST USED",
            "EXPIRES",
            "CREATED",
        ],
        &rows,
    )
}

async fn revoke(client: &Client, args: &RevokeArgs) -> anyhow::Result<()> {
    let answer = client
        .delete(&format!(
            "/api/v1/endpoints/{}/keys/{}",
            segment(&args.endpoint_id),
            segment(&args.key_id)
        ))
        .await?;
    if args.json {
        return print_json(&answer);
    }
    print_text(&format!(
        "Revoked key {} ({}); requests with it are refused from now on.\n",
        text(&answer["key"]["id"]),
        text(&answer["key"]["name"]),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(expires_at: Option<&str>) -> CreateArgs {
        CreateArgs {
            endpoint_id: "e1".to_owned(),
            name: "ci".to_owned(),
            per_minute: Some(10),
            per_day: None,
            expires_at: expires_at.map(str::to_owned),
            json: false,
        }
    }

    #[test]
    fn create_flags_become_the_body() {
        assert_eq!(
            create_body(&args(Some("2027-01-01T00:00:00Z"))).unwrap(),
            json!({"name": "ci", "rate_limit_per_minute": 10, "expires_at": "2027-01-01T00:00:00Z"})
        );
        let error = create_body(&args(Some("tomorrow"))).unwrap_err();
        assert!(
            error.to_string().contains("--expires-at `tomorrow`"),
            "{error}"
        );
    }

    #[test]
    fn the_list_shows_prefixes_and_status() {
        let list = json!({"data": [{"id": "k1", "name": "ci", "prefix": "sy_live_ab12", "status": "revoked",
            "rate_limit_per_minute": 60, "rate_limit_per_day": 10000, "last_used_at": null,
            "expires_at": null, "created_at": "2026-01-02T03:04:05Z"}]});
        let rendered = render_list(&list);
        assert!(
            rendered.contains("k1  ci    sy_live_ab12…  revoked"),
            "{rendered}"
        );
        assert_eq!(render_list(&json!({"data": []})), "No keys.\n");
    }
}
