//! Running the `modal` CLI (`deploy`, `app list --json`, `app stop`) as a
//! bounded subprocess, and reading what it prints.

use std::path::Path;
use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;

use crate::providers::{ProviderError, ProviderKind};

const KIND: ProviderKind = ProviderKind::Modal;
/// Most of a failed run's output kept in the error message.
const TAIL_CHARS: usize = 800;

/// How to run the CLI.
pub struct Cli<'a> {
    pub program: &'a str,
    pub token_id: &'a str,
    pub token_secret: &'a str,
    pub environment: Option<&'a str>,
    pub timeout: Duration,
}

/// One row of `modal app list --json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppEntry {
    pub app_id: String,
    /// The app name (the CLI's `Description` column).
    pub name: String,
    /// `deployed`, `stopped`, `stopping...`, `initializing...`, `disabled`, ...
    pub state: String,
    /// Containers running now.
    pub tasks: u32,
}

impl AppEntry {
    /// Stopped or being stopped: only a new deploy brings it back.
    pub fn is_stopped(&self) -> bool {
        self.state.starts_with("stop")
    }
}

struct Output {
    success: bool,
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Cli<'_> {
    async fn run(&self, args: &[&str]) -> Result<Output, ProviderError> {
        let mut command = tokio::process::Command::new(self.program);
        command.args(args);
        if let Some(environment) = self.environment {
            command.args(["-e", environment]);
        }
        command
            .env("MODAL_TOKEN_ID", self.token_id)
            .env("MODAL_TOKEN_SECRET", self.token_secret)
            // A wide virtual terminal keeps `rich` from wrapping URLs.
            .env("COLUMNS", "400")
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let what = format!("modal {}", args.first().copied().unwrap_or_default());
        let child = command.spawn().map_err(|error| ProviderError::Process {
            provider: KIND,
            message: format!(
                "cannot run the modal CLI {:?}: {error} (install it with `pip install modal` or set SWITCHYARD_MODAL_CLI)",
                self.program
            ),
        })?;
        let output = tokio::time::timeout(self.timeout, child.wait_with_output())
            .await
            .map_err(|_| ProviderError::Process {
                provider: KIND,
                message: format!("{what} did not finish within {} s", self.timeout.as_secs()),
            })?
            .map_err(|error| ProviderError::Process {
                provider: KIND,
                message: format!("{what}: {error}"),
            })?;
        tracing::debug!(provider = %KIND, command = %what, code = ?output.status.code(), "modal CLI finished");
        Ok(Output {
            success: output.status.success(),
            code: output.status.code(),
            stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
        })
    }

    /// `modal deploy <file> --name <app>`: the web endpoint URL it printed.
    pub async fn deploy(&self, file: &Path, app_name: &str) -> Result<String, ProviderError> {
        let file = file.to_string_lossy();
        let output = self.run(&["deploy", &file, "--name", app_name]).await?;
        if !output.success {
            return Err(failure("modal deploy", &output));
        }
        let printed = format!("{}\n{}", output.stdout, output.stderr);
        web_url(&printed, app_name).ok_or_else(|| ProviderError::BadResponse {
            provider: KIND,
            message: format!(
                "modal deploy printed no web endpoint URL for {app_name}: {}",
                tail(&printed)
            ),
        })
    }

    /// `modal app list --json`.
    pub async fn list(&self) -> Result<Vec<AppEntry>, ProviderError> {
        let output = self.run(&["app", "list", "--json"]).await?;
        if !output.success {
            return Err(failure("modal app list", &output));
        }
        parse_app_list(&output.stdout)
    }

    /// `modal app stop <app>`; an app that does not exist is not an error.
    pub async fn stop(&self, app_name: &str) -> Result<(), ProviderError> {
        let output = self.run(&["app", "stop", app_name]).await?;
        if output.success {
            return Ok(());
        }
        let text = format!("{}\n{}", output.stdout, output.stderr).to_lowercase();
        if text.contains("not found") || text.contains("could not find") {
            return Ok(());
        }
        Err(failure("modal app stop", &output))
    }
}

/// A failed run: refused credentials, or the process error with the output tail.
fn failure(what: &str, output: &Output) -> ProviderError {
    let printed = format!("{}\n{}", output.stdout, output.stderr);
    let lower = printed.to_lowercase();
    let auth = [
        "token missing",
        "could not authenticate",
        "token validation failed",
        "invalid token",
        "unauthenticated",
        "token id is invalid",
    ];
    if auth.iter().any(|phrase| lower.contains(phrase)) {
        return ProviderError::Unauthorized {
            provider: KIND,
            status: 401,
            message: format!("{what}: {}", tail(&printed)),
        };
    }
    let code = output
        .code
        .map_or_else(|| "a signal".to_owned(), |code| code.to_string());
    let shown = if output.stderr.trim().is_empty() {
        &output.stdout
    } else {
        &output.stderr
    };
    ProviderError::Process {
        provider: KIND,
        message: format!("{what} exited with {code}: {}", tail(shown)),
    }
}

/// The last [`TAIL_CHARS`] characters of some output, trimmed.
fn tail(text: &str) -> String {
    let text = text.trim();
    let skip = text.chars().count().saturating_sub(TAIL_CHARS);
    let kept: String = text.chars().skip(skip).collect();
    if skip > 0 {
        format!("…{kept}")
    } else {
        kept
    }
}

fn parse_app_list(stdout: &str) -> Result<Vec<AppEntry>, ProviderError> {
    let start = stdout.find('[').unwrap_or(0);
    let rows: Vec<Value> = serde_json::from_str(stdout[start..].trim()).map_err(|error| {
        ProviderError::BadResponse {
            provider: KIND,
            message: format!("modal app list --json printed no JSON list: {error}"),
        }
    })?;
    let field = |row: &Value, key: &str| match row.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(Value::Number(number)) => number.to_string(),
        _ => String::new(),
    };
    Ok(rows
        .iter()
        .map(|row| AppEntry {
            app_id: field(row, "App ID"),
            name: field(row, "Description"),
            state: field(row, "State").to_lowercase(),
            tasks: field(row, "Tasks").trim().parse().unwrap_or(0),
        })
        .collect())
}

/// The box-drawing and tree glyphs `rich` prints around output lines.
fn strip_tree(line: &str) -> &str {
    line.trim_start_matches(|c: char| c.is_whitespace() || "│├└─┃┣┗━🔨✓".contains(c))
        .trim_end()
}

/// The web endpoint URL in `modal deploy` output.
///
/// Looks for the CLI's `Created web function <name> => <url>` line (the URL
/// may stand on the next line, and `rich` may wrap it mid-word), then for
/// any `https://…modal.run` URL, then builds the URL from the
/// `View Deployment: https://modal.com/apps/<workspace>/<env>/deployed/<app>`
/// line, since newer CLIs print only that.
pub fn web_url(output: &str, app_name: &str) -> Option<String> {
    let lines: Vec<&str> = output.lines().map(strip_tree).collect();
    for (index, line) in lines.iter().enumerate() {
        let lower = line.to_lowercase();
        let Some(arrow) = line.find("=>") else {
            continue;
        };
        if !(lower.contains("web function") || lower.contains("web endpoint")) {
            continue;
        }
        let mut words = lines[index + 1..]
            .iter()
            .filter_map(|next| next.split_whitespace().next());
        let mut url = match line[arrow + 2..].split_whitespace().next() {
            Some(first) => first.to_owned(),
            None => words.next()?.to_owned(),
        };
        // `rich` may wrap a long URL inside its host: join the next lines'
        // first words while that completes a `….modal.run` host.
        let mut joined = url.clone();
        for word in words.take(3) {
            if host(&url).ends_with(".modal.run") {
                break;
            }
            joined.push_str(word);
            if host(&joined).ends_with(".modal.run") {
                url.clone_from(&joined);
            }
        }
        if url.starts_with("http://") || url.starts_with("https://") {
            return Some(url.trim_end_matches('/').to_owned());
        }
    }
    let any_modal_run = output
        .split_whitespace()
        .filter(|word| word.starts_with("https://"))
        .find(|word| host(word).ends_with(".modal.run"));
    if let Some(url) = any_modal_run {
        return Some(url.trim_end_matches('/').to_owned());
    }
    let dashboard = output
        .split_whitespace()
        .find_map(|word| word.strip_prefix("https://modal.com/apps/"))?;
    let mut parts = dashboard.split('/');
    let workspace = parts.next()?;
    let environment = parts.next()?;
    if workspace.is_empty() || environment.is_empty() {
        return None;
    }
    let prefix = if environment == "main" {
        workspace.to_owned()
    } else {
        format!("{workspace}-{environment}")
    };
    Some(format!("https://{prefix}--{app_name}-serve.modal.run"))
}

fn host(url: &str) -> &str {
    let rest = url.split_once("://").map_or(url, |(_, rest)| rest);
    rest.split(['/', '?', '#']).next().unwrap_or(rest)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_web_url_in_each_output_shape() {
        let classic = "✓ Created objects.\n├── 🔨 Created mount /tmp/sy-a.py\n└── 🔨 Created web function serve => https://acme--sy-a-serve.modal.run\n✓ App deployed in 2.1s! 🎉\n\nView Deployment: https://modal.com/apps/acme/main/deployed/sy-a\n";
        assert_eq!(
            web_url(classic, "sy-a").as_deref(),
            Some("https://acme--sy-a-serve.modal.run")
        );
        let next_line =
            "└── 🔨 Created web function serve =>\n    https://acme--sy-a-serve.modal.run\n";
        assert_eq!(
            web_url(next_line, "sy-a").as_deref(),
            Some("https://acme--sy-a-serve.modal.run")
        );
        let wrapped = "Created Web Function URL for serve =>\n│ https://acme--sy-a-serve.moda\n│ l.run (label truncated)\nView Deployment: https://modal.com/apps/acme/main/deployed/sy-a\n";
        assert_eq!(
            web_url(wrapped, "sy-a").as_deref(),
            Some("https://acme--sy-a-serve.modal.run")
        );
        let wrapped_twice =
            "Created web function serve =>\n  https://acme--sy-\n  a-ser\n  ve.modal.run\n";
        assert_eq!(
            web_url(wrapped_twice, "sy-a").as_deref(),
            Some("https://acme--sy-a-serve.modal.run")
        );
        let local = "└── 🔨 Created web function serve => http://127.0.0.1:4000/sy-a\nView Deployment: https://modal.com/apps/acme/main/deployed/sy-a\n";
        assert_eq!(
            web_url(local, "sy-a").as_deref(),
            Some("http://127.0.0.1:4000/sy-a")
        );
        let dashboard_only = "✓ App deployed in 3s! 🎉\n\nView Deployment: https://modal.com/apps/acme/staging/deployed/sy-a\n";
        assert_eq!(
            web_url(dashboard_only, "sy-a").as_deref(),
            Some("https://acme-staging--sy-a-serve.modal.run")
        );
        assert_eq!(web_url("Error: nothing deployed", "sy-a"), None);
    }

    #[test]
    fn reads_app_list_rows() {
        let stdout = r#"[{"App ID": "ap-1", "Description": "sy-a", "State": "deployed", "Tasks": "2", "Created at": "2026-01-01 10:00:00+00:00", "Stopped at": null}]"#;
        let rows = parse_app_list(stdout).unwrap();
        assert_eq!(
            rows,
            vec![AppEntry {
                app_id: "ap-1".to_owned(),
                name: "sy-a".to_owned(),
                state: "deployed".to_owned(),
                tasks: 2
            }]
        );
        assert!(parse_app_list("Error").is_err());
    }

    #[test]
    fn failures_name_the_cause() {
        let output = |stderr: &str| Output {
            success: false,
            code: Some(1),
            stdout: String::new(),
            stderr: stderr.to_owned(),
        };
        assert!(matches!(
            failure(
                "modal deploy",
                &output("Token missing. Could not authenticate client.")
            ),
            ProviderError::Unauthorized { .. }
        ));
        let error = failure("modal deploy", &output("Error: image build failed"));
        assert_eq!(
            error.to_string(),
            "modal: modal deploy exited with 1: Error: image build failed"
        );
    }
}
