//! The `worker` command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::gc::{self, GcArgs};
use crate::transform::{self, TransformArgs};

#[derive(Debug, Parser)]
#[command(name = "worker", version, about = "imagepipe worker: runs image jobs")]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
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
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Transform(args) => transform::run(args),
        Command::Gc(args) => gc::run(args),
    }
}
