//! The client side of the `switchyard` binary: commands that work offline
//! (`recommend`) and commands that talk to a running server (`deploy`,
//! `endpoints`, `keys`, `usage`).

pub mod client;
pub mod deploy;
pub mod endpoints;
pub mod keys;
pub mod recommend;
pub mod usage;

use clap::Args;

/// Where the server is and the management token to call it with; shared by
/// every command that talks to a server.
#[derive(Debug, Clone, Args)]
pub struct ClientArgs {
    /// Base URL of the Switchyard server.
    #[arg(
        long,
        env = "SWITCHYARD_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    pub server: String,
    /// Management token (`sym_…`) of the user to act as.
    #[arg(long, env = "SWITCHYARD_TOKEN", hide_env_values = true, global = true)]
    pub token: Option<String>,
}
