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
        Command::Recommend(args) => exit_code(switchyard::cli::recommend::run(&args)),
        Command::Deploy(args) => exit_code(switchyard::cli::deploy::run(args).await),
        Command::Endpoints(args) => exit_code(switchyard::cli::endpoints::run(args).await),
        Command::Keys(args) => exit_code(switchyard::cli::keys::run(args).await),
        Command::Usage(args) => exit_code(switchyard::cli::usage::run(args).await),
    }
}

/// Exit status of a client command; errors go to stderr.
fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(error) => {
            let _ = writeln!(std::io::stderr(), "switchyard: {error:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn serve(args: switchyard::config::ServeArgs) -> anyhow::Result<()> {
    let config = Config::resolve(args)?;
    init_tracing(config.log_format);
    let signal = shutdown_signal()?;
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
        signal.await;
        shutdown.cancel();
    });
    let totals = server.wait().await?;
    tracing::info!(usage_rows = totals.usage_rows, "switchyard stopped cleanly");
    Ok(())
}

/// Listens for SIGTERM and SIGINT; created before the socket opens so an
/// early signal still shuts down cleanly.
fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let mut terminate = signal(SignalKind::terminate())?;
        let mut interrupt = signal(SignalKind::interrupt())?;
        Ok(async move {
            tokio::select! {
                _ = terminate.recv() => tracing::info!("SIGTERM received"),
                _ = interrupt.recv() => tracing::info!("SIGINT received"),
            }
        })
    }
    #[cfg(not(unix))]
    {
        Ok(async move {
            let _ = tokio::signal::ctrl_c().await;
        })
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
