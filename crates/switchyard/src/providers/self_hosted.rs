//! `self-hosted`: Switchyard starts an inference server process on this node
//! (llama.cpp's `llama-server`, vLLM, ...) from a command template, on a port
//! it allocates, waits for its health route, and keeps its log. The process
//! runs in its own process group and outlives a restart of Switchyard; a
//! state file per server (`<log_dir>/<name>.json`) lets a restarted server
//! find it again.
//!
//! Template placeholders: `{port}`, `{host}`, `{model_id}`, `{served_model_name}`,
//! `{revision}`, `{gpu_count}`, `{max_model_len}`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::config::SelfHostedConfig;
use super::{
    Availability, DeploySpec, ProviderError, ProviderHealth, ProviderKind, ProviderResource,
    Provisioner, ResourceState, ResourceStatus, Scaling, UpstreamTarget, Workers, MANAGED_PREFIX,
};
use crate::domain::{now_ms, UpstreamApi};

const KIND: ProviderKind = ProviderKind::SelfHosted;

/// What is kept about one started server.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct ServerState {
    name: String,
    pid: u32,
    port: u16,
    host: String,
    program: String,
    served_model_name: String,
    log: String,
    started_at: i64,
}

/// The self-hosted provisioner.
pub struct SelfHosted {
    config: SelfHostedConfig,
    client: reqwest::Client,
}

impl SelfHosted {
    /// Builds it; `client` reads the servers' health routes.
    pub fn new(config: SelfHostedConfig, client: reqwest::Client) -> Self {
        Self { config, client }
    }

    fn state_path(&self, name: &str) -> PathBuf {
        self.config.log_dir.join(format!("{name}.json"))
    }

    fn read_state(&self, name: &str) -> Option<ServerState> {
        let text = std::fs::read_to_string(self.state_path(name)).ok()?;
        serde_json::from_str(&text).ok()
    }

    fn all_states(&self) -> Vec<ServerState> {
        let Ok(entries) = std::fs::read_dir(&self.config.log_dir) else {
            return Vec::new();
        };
        entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let name = entry.file_name().to_string_lossy().to_string();
                let stem = name.strip_suffix(".json")?;
                stem.starts_with(MANAGED_PREFIX)
                    .then(|| self.read_state(stem))
                    .flatten()
            })
            .collect()
    }

    fn resource(state: &ServerState) -> ProviderResource {
        ProviderResource {
            provider: KIND,
            id: state.name.clone(),
            name: state.name.clone(),
            details: [
                ("pid".to_owned(), state.pid.to_string()),
                ("port".to_owned(), state.port.to_string()),
                ("host".to_owned(), state.host.clone()),
                ("log".to_owned(), state.log.clone()),
                ("base_url".to_owned(), base_url(state)),
            ]
            .into_iter()
            .collect(),
        }
    }

    /// A port in the range that nothing listens on and no server of ours holds.
    fn free_port(&self) -> Result<u16, ProviderError> {
        let taken: Vec<u16> = self.all_states().iter().map(|state| state.port).collect();
        let (low, high) = self.config.port_range;
        // Start at a random place in the range so servers started at the same
        // moment (by several Switchyard instances) rarely try the same port.
        let span = u32::from(high - low) + 1;
        let offset = rand::random::<u32>() % span;
        for step in 0..span {
            let port = low + u16::try_from((offset + step) % span).unwrap_or(0);
            if taken.contains(&port) {
                continue;
            }
            if std::net::TcpListener::bind((self.config.host.as_str(), port)).is_ok() {
                return Ok(port);
            }
        }
        Err(ProviderError::NoCapacity {
            provider: KIND,
            message: format!("no free port in {low}-{high} (SWITCHYARD_SELF_HOSTED_PORTS)"),
        })
    }

    async fn get(&self, url: &str) -> Result<(u16, Value), String> {
        let response = self
            .client
            .get(url)
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|error| error.to_string())?;
        let status = response.status().as_u16();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        Ok((status, body))
    }

    fn state_of(&self, resource: &ProviderResource) -> Option<ServerState> {
        self.read_state(&resource.name)
    }

    /// Writes a state file atomically (temporary file, then rename).
    fn write_state(&self, state: &ServerState) -> Result<(), ProviderError> {
        let path = self.state_path(&state.name);
        let temporary = path.with_extension("json.tmp");
        let text = serde_json::to_string_pretty(state).unwrap_or_default();
        std::fs::write(&temporary, text)
            .and_then(|()| std::fs::rename(&temporary, &path))
            .map_err(|error| ProviderError::Process {
                provider: KIND,
                message: format!("cannot write the server's state file: {error}"),
            })
    }

    /// Whether an environment variable of Switchyard reaches the servers.
    fn passes_env(&self, name: &str) -> bool {
        const ALWAYS: &[&str] = &[
            "PATH",
            "HOME",
            "USER",
            "LANG",
            "LC_ALL",
            "TZ",
            "TMPDIR",
            "LD_LIBRARY_PATH",
            "PYENV_ROOT",
            "PYENV_VERSION",
            "VIRTUAL_ENV",
            "XDG_CACHE_HOME",
            "HF_HOME",
            "HF_HUB_CACHE",
            "HF_HUB_OFFLINE",
            "TRANSFORMERS_CACHE",
        ];
        ALWAYS.contains(&name)
            || name.starts_with("CUDA_")
            || name.starts_with("NVIDIA_")
            || self.config.pass_env.iter().any(|allowed| allowed == name)
    }
}

fn base_url(state: &ServerState) -> String {
    format!("http://{}:{}/v1", state.host, state.port)
}

/// Whether `pid` runs `program` (and is not a zombie): guards against PID reuse.
fn is_running(pid: u32, program: &str) -> bool {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let zombie = stat
        .rsplit_once(')')
        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z'));
    if stat.is_empty() || zombie {
        return false;
    }
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if cmdline.is_empty() {
        // The command line reads empty while the process is between execs
        // (an interpreter shim starting the real program): it still runs.
        return true;
    }
    let program_name = Path::new(program)
        .file_name()
        .map(|name| name.to_string_lossy().to_string())
        .unwrap_or_default();
    String::from_utf8_lossy(&cmdline).contains(&program_name)
}

/// Splits a command line into words; single and double quotes group words.
pub fn split_command(line: &str) -> Result<Vec<String>, String> {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut quote: Option<char> = None;
    let mut in_word = false;
    for c in line.chars() {
        match (quote, c) {
            (Some(open), c) if c == open => quote = None,
            (Some(_), c) => current.push(c),
            (None, '\'' | '"') => {
                quote = Some(c);
                in_word = true;
            }
            (None, c) if c.is_whitespace() => {
                if in_word {
                    words.push(std::mem::take(&mut current));
                    in_word = false;
                }
            }
            (None, c) => {
                current.push(c);
                in_word = true;
            }
        }
    }
    if quote.is_some() {
        return Err("unbalanced quote in the command template".to_owned());
    }
    if in_word {
        words.push(current);
    }
    Ok(words)
}

/// Fills the template's placeholders for one server.
fn render(template: &str, spec: &DeploySpec, host: &str, port: u16) -> Result<Vec<String>, String> {
    let words = split_command(template)?;
    if words.is_empty() {
        return Err("the command template is empty".to_owned());
    }
    Ok(words
        .into_iter()
        .map(|word| {
            word.replace("{port}", &port.to_string())
                .replace("{host}", host)
                .replace("{model_id}", &spec.model_id)
                .replace("{served_model_name}", &spec.served_model_name)
                .replace("{revision}", spec.revision.as_deref().unwrap_or("main"))
                .replace("{gpu_count}", &spec.gpu.count.max(1).to_string())
                .replace(
                    "{max_model_len}",
                    &spec.max_model_len.unwrap_or(4096).to_string(),
                )
        })
        .collect())
}

/// The last lines of a log (at most its last 4 KiB are read).
fn log_tail(path: &str) -> String {
    use std::io::{Read, Seek, SeekFrom};
    let Ok(mut file) = std::fs::File::open(path) else {
        return String::new();
    };
    let length = file.metadata().map(|meta| meta.len()).unwrap_or(0);
    let _ = file.seek(SeekFrom::Start(length.saturating_sub(4096)));
    let mut bytes = Vec::new();
    let _ = file.take(4096).read_to_end(&mut bytes);
    let text = String::from_utf8_lossy(&bytes);
    let lines: Vec<&str> = text.lines().rev().take(5).collect();
    lines.into_iter().rev().collect::<Vec<_>>().join(" | ")
}

/// Sends a signal to a process group with `kill(1)`.
async fn signal(group: &str, name: &str) -> Result<(), ProviderError> {
    let status = tokio::process::Command::new("kill")
        .args([&format!("-{name}"), "--", group])
        .status()
        .await
        .map_err(|error| ProviderError::Process {
            provider: KIND,
            message: format!("cannot run kill: {error}"),
        })?;
    // A group that is already gone is fine; the caller checks the process.
    let _ = status;
    Ok(())
}

#[async_trait]
impl Provisioner for SelfHosted {
    fn kind(&self) -> ProviderKind {
        KIND
    }

    fn availability(&self) -> Availability {
        let available = self.config.command.is_some();
        Availability {
            provider: KIND,
            available,
            message: (!available).then(|| {
                "set SWITCHYARD_SELF_HOSTED_COMMAND (e.g. `llama-server -m /models/model.gguf --port {port} -a {served_model_name}` or `vllm serve {model_id} --port {port} --served-model-name {served_model_name}`) to start servers on this node".to_owned()
            }),
        }
    }

    async fn create(&self, spec: &DeploySpec) -> Result<ProviderResource, ProviderError> {
        let Some(template) = &self.config.command else {
            return Err(ProviderError::NotConfigured {
                provider: KIND,
                message: "SWITCHYARD_SELF_HOSTED_COMMAND is not set".to_owned(),
            });
        };
        std::fs::create_dir_all(&self.config.log_dir).map_err(|error| ProviderError::Process {
            provider: KIND,
            message: format!("cannot create {}: {error}", self.config.log_dir.display()),
        })?;
        let port = self.free_port()?;
        let words = render(template, spec, &self.config.host, port).map_err(|message| {
            ProviderError::Rejected {
                provider: KIND,
                status: 400,
                message,
            }
        })?;
        let log_path = self
            .config
            .log_dir
            .join(format!("{}.log", spec.resource_name));
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .map_err(|error| ProviderError::Process {
                provider: KIND,
                message: format!("cannot open the log {}: {error}", log_path.display()),
            })?;
        let log_err = log.try_clone().map_err(|error| ProviderError::Process {
            provider: KIND,
            message: error.to_string(),
        })?;
        let mut command = std::process::Command::new(&words[0]);
        command
            .args(&words[1..])
            .stdin(std::process::Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // Only what an inference server needs: Switchyard's own secrets
            // (master key, admin token, provider credentials) stay out of
            // a process that may run model code.
            .env_clear()
            .envs(std::env::vars().filter(|(name, _)| self.passes_env(name)))
            .env("SWITCHYARD_RESOURCE", &spec.resource_name);
        // Its own process group: signals to Switchyard's group do not reach
        // it, and it outlives a restart of Switchyard.
        std::os::unix::process::CommandExt::process_group(&mut command, 0);
        let mut state = ServerState {
            name: spec.resource_name.clone(),
            pid: 0,
            port,
            host: self.config.host.clone(),
            program: words[0].clone(),
            served_model_name: spec.served_model_name.clone(),
            log: log_path.display().to_string(),
            started_at: now_ms(),
        };
        // The state file exists before the process does (pid 0 until it
        // starts): a crash in between leaves a claim, never an unknown server.
        self.write_state(&state)?;
        let mut child = match command.spawn() {
            Ok(child) => child,
            Err(error) => {
                let _ = std::fs::remove_file(self.state_path(&state.name));
                return Err(ProviderError::Process {
                    provider: KIND,
                    message: format!("cannot start `{}`: {error}", words[0]),
                });
            }
        };
        state.pid = child.id();
        if let Err(error) = self.write_state(&state) {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_file(self.state_path(&state.name));
            return Err(error);
        }
        // The child is not waited on here; a reaper thread collects its exit
        // status so it does not stay a zombie.
        std::thread::spawn(move || {
            let _ = child.wait();
        });
        tracing::info!(pid = state.pid, port, log = %state.log, "self-hosted server started");
        Ok(Self::resource(&state))
    }

    async fn find(&self, resource_name: &str) -> Result<Option<ProviderResource>, ProviderError> {
        Ok(self
            .read_state(resource_name)
            .filter(|state| is_running(state.pid, &state.program))
            .map(|state| Self::resource(&state)))
    }

    async fn status(&self, resource: &ProviderResource) -> Result<ResourceStatus, ProviderError> {
        let Some(state) = self.state_of(resource) else {
            return Ok(ResourceStatus {
                state: ResourceState::Gone,
                message: Some("no such server on this node".to_owned()),
                workers: Workers::default(),
                upstream: None,
            });
        };
        if !is_running(state.pid, &state.program) {
            return Ok(ResourceStatus {
                state: ResourceState::Failed,
                message: Some(format!(
                    "the server process exited: {}",
                    log_tail(&state.log)
                )),
                workers: Workers::default(),
                upstream: None,
            });
        }
        let health = format!(
            "http://{}:{}{}",
            state.host, state.port, self.config.health_path
        );
        let ready = matches!(self.get(&health).await, Ok((200, _)));
        if !ready {
            return Ok(ResourceStatus {
                state: ResourceState::Initializing,
                message: Some("waiting for the server's health route".to_owned()),
                workers: Workers {
                    initializing: 1,
                    ..Workers::default()
                },
                upstream: None,
            });
        }
        // The served model id: the endpoint's name when the template sets it,
        // otherwise whatever the server lists first.
        let model = match self.get(&format!("{}/models", base_url(&state))).await {
            Ok((200, body)) => {
                let ids: Vec<String> = body["data"]
                    .as_array()
                    .map(|models| {
                        models
                            .iter()
                            .filter_map(|model| model["id"].as_str().map(str::to_owned))
                            .collect()
                    })
                    .unwrap_or_default();
                if ids.contains(&state.served_model_name) {
                    state.served_model_name.clone()
                } else {
                    ids.into_iter()
                        .next()
                        .unwrap_or_else(|| state.served_model_name.clone())
                }
            }
            _ => state.served_model_name.clone(),
        };
        Ok(ResourceStatus {
            state: ResourceState::Ready,
            message: None,
            workers: Workers {
                ready: 1,
                ..Workers::default()
            },
            upstream: Some(UpstreamTarget {
                base_url: base_url(&state),
                api: UpstreamApi::OpenAi,
                model,
                headers: Vec::new(),
            }),
        })
    }

    async fn update_scaling(
        &self,
        _resource: &ProviderResource,
        _scaling: &Scaling,
    ) -> Result<(), ProviderError> {
        Err(ProviderError::Unsupported {
            provider: KIND,
            message: "scale a self-hosted server: one process serves the endpoint".to_owned(),
        })
    }

    async fn delete(&self, resource: &ProviderResource) -> Result<(), ProviderError> {
        let Some(state) = self.state_of(resource) else {
            return Ok(());
        };
        if state.pid != 0 && is_running(state.pid, &state.program) {
            let group = format!("-{}", state.pid);
            signal(&group, "TERM").await?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while is_running(state.pid, &state.program) && tokio::time::Instant::now() < deadline {
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            if is_running(state.pid, &state.program) {
                signal(&group, "KILL").await?;
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            if is_running(state.pid, &state.program) {
                // Keep the state file: the server is still ours to stop.
                return Err(ProviderError::Process {
                    provider: KIND,
                    message: format!("process {} did not stop", state.pid),
                });
            }
        }
        let _ = std::fs::remove_file(self.state_path(&state.name));
        tracing::info!(pid = state.pid, log = %state.log, "self-hosted server stopped; its log is kept");
        Ok(())
    }

    async fn health(&self, resource: &ProviderResource) -> Result<ProviderHealth, ProviderError> {
        let Some(state) = self.state_of(resource) else {
            return Ok(ProviderHealth {
                reachable: false,
                message: Some("no such server on this node".to_owned()),
                ..ProviderHealth::default()
            });
        };
        if !is_running(state.pid, &state.program) {
            return Ok(ProviderHealth {
                reachable: false,
                message: Some(format!(
                    "the server process exited: {}",
                    log_tail(&state.log)
                )),
                ..ProviderHealth::default()
            });
        }
        let health = format!(
            "http://{}:{}{}",
            state.host, state.port, self.config.health_path
        );
        Ok(match self.get(&health).await {
            Ok((200, _)) => ProviderHealth {
                reachable: true,
                workers: Workers {
                    ready: 1,
                    ..Workers::default()
                },
                ..ProviderHealth::default()
            },
            Ok((status, _)) => ProviderHealth {
                reachable: false,
                message: Some(format!("health route answered {status}")),
                ..ProviderHealth::default()
            },
            Err(error) => ProviderHealth {
                reachable: false,
                message: Some(error),
                ..ProviderHealth::default()
            },
        })
    }

    async fn list_managed(&self) -> Result<Vec<ProviderResource>, ProviderError> {
        Ok(self
            .all_states()
            .iter()
            .filter(|state| is_running(state.pid, &state.program))
            .map(Self::resource)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_split_with_quotes() {
        assert_eq!(
            split_command(r#"llama-server -m "/models/my model.gguf" --port {port} -a 'x y'"#)
                .unwrap(),
            [
                "llama-server",
                "-m",
                "/models/my model.gguf",
                "--port",
                "{port}",
                "-a",
                "x y"
            ]
        );
        assert!(split_command("a 'b").is_err());
        assert_eq!(split_command("  ").unwrap(), Vec::<String>::new());
    }
}
