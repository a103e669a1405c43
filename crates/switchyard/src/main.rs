//! The `switchyard` binary: parses the command line, sets up logging, runs the server until SIGTERM/SIGINT.

use std::io::Write;

/// mimalloc: cheaper small allocations than glibc malloc on the request path (see BENCHMARKS.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

use clap::Parser;
use switchyard::config::{Cli, Command, Config, LogFormat};
use tracing_subscriber::EnvFilter;

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
    let runtime = match build_runtime() {
        Ok(runtime) => runtime,
        Err(error) => {
            let _ = writeln!(
                std::io::stderr(),
                "switchyard: cannot start the async runtime: {error}"
            );
            return std::process::ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(cli))
}

/// One worker thread per CPU this process may run on. With a single CPU
/// (e.g. pinned with taskset or a 1-CPU container) a current-thread runtime
/// avoids the work-stealing scheduler's cross-thread wake-ups.
fn build_runtime() -> std::io::Result<tokio::runtime::Runtime> {
    let cpus = std::thread::available_parallelism().map_or(1, usize::from);
    if cpus == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(cpus)
            .enable_all()
            .build()
    }
}

async fn run(cli: Cli) -> std::process::ExitCode {
    match cli.command {
        Command::Serve(args) => match serve(args).await {
            Ok(()) => std::process::ExitCode::SUCCESS,
            Err(error) => {
                tracing::error!("{error:#}");
                let _ = writeln!(std::io::stderr(), "switchyard: {error:#}");
                std::process::ExitCode::FAILURE
            }
        },
    }
}

async fn serve(args: switchyard::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    init_tracing(config.log_format);
    let database = if config.database_url.is_some() {
        "postgresql"
    } else {
        "sqlite"
    };
    let server = switchyard::server::start(config.clone()).await?;
    if let Some(token) = &server.generated_admin_token {
        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "Admin token (shown once, store it now): {token}")?;
        writeln!(
            stdout,
            "Set SWITCHYARD_ADMIN_TOKEN to choose your own instead."
        )?;
        stdout.flush()?;
    }
    tracing::info!(
        address = %server.addr,
        database,
        data_dir = %config.data_dir.display(),
        "switchyard listening on http://{}",
        server.addr
    );
    let shutdown = server.shutdown_token();
    tokio::spawn(async move {
        wait_for_signal().await;
        shutdown.cancel();
    });
    let totals = server.wait().await?;
    tracing::info!(usage_rows = totals.usage_rows, "switchyard stopped cleanly");
    Ok(())
}

async fn wait_for_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut terminate) => {
                tokio::select! {
                    _ = ctrl_c => tracing::info!("SIGINT received"),
                    _ = terminate.recv() => tracing::info!("SIGTERM received"),
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

fn init_tracing(format: LogFormat) {
    let filter = EnvFilter::try_from_env("SWITCHYARD_LOG")
        .or_else(|_| EnvFilter::try_from_default_env())
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Json => builder.json().init(),
        LogFormat::Text => builder.init(),
    }
}
