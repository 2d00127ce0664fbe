//! The `worker` command line: the service by default, or a command beside it.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::gc::{self, GcArgs};
use pipeline::shutdown::Shutdown;

use crate::service::Worker;
use crate::settings::{WorkerArgs, WorkerSettings};
use crate::transform::{self, TransformArgs};

#[derive(Debug, Parser)]
#[command(
    name = "worker",
    version,
    about = "imagepipe worker: runs image jobs from Redis (or, with `transform`, on local files)",
    args_conflicts_with_subcommands = true
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub service: WorkerArgs,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the engine on local files: no Redis, no storage. One JSON line per input.
    Transform(TransformArgs),
    /// Delete stored objects whose job record expired (orphans), older than a grace period.
    Gc(GcArgs),
}

pub fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_level = if cli.command.is_some() {
        "warn"
    } else {
        "info"
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| default_level.into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Some(Command::Transform(args)) => transform::run(args),
        Some(Command::Gc(args)) => gc::run(args),
        None => serve(&cli.service),
    }
}

fn serve(args: &WorkerArgs) -> ExitCode {
    let settings = WorkerSettings::from_args(args);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("worker: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let worker = match Worker::build(settings).await {
            Ok(worker) => worker,
            Err(e) => {
                eprintln!("worker: {}", pipeline::text::error_chain(&e));
                return ExitCode::from(1);
            }
        };
        match worker.run_until_stopped(Shutdown::on_signals()).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("worker: {e:#}");
                ExitCode::from(1)
            }
        }
    })
}
