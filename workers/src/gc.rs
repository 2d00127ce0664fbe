//! `worker gc`: deletes objects whose job record expired (see `pipeline::gc`).

use std::process::ExitCode;
use std::time::Duration;

use pipeline::config::parse_duration;
use pipeline::queue::QueueConfig;

use crate::args::ConnectionArgs;
use crate::connect::connect;

#[derive(Debug, clap::Args)]
pub struct GcArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Keep orphans younger than this (an upload may be on its way to becoming a job).
    #[arg(long, default_value = "1h", value_parser = parse_duration)]
    pub grace: Duration,
    /// Count what would be deleted, delete nothing.
    #[arg(long)]
    pub dry_run: bool,
}

pub fn run(args: GcArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("worker gc: cannot start: {e}");
            return ExitCode::from(1);
        }
    };
    runtime.block_on(async {
        let c = &args.connection;
        let config = QueueConfig {
            name: c.queue.clone(),
            tls: c.redis_tls(),
            ..QueueConfig::default()
        };
        let connected = connect(
            &c.redis_url,
            config,
            &c.storage,
            c.s3_endpoint.as_deref(),
            None,
        )
        .await;
        let (queue, storage) = match connected {
            Ok(both) => both,
            Err(e) => {
                eprintln!("worker gc: {}", pipeline::text::error_chain(&e));
                return ExitCode::from(1);
            }
        };
        match pipeline::gc::sweep(&storage, &queue, args.grace, args.dry_run).await {
            Ok(report) => {
                println!(
                    "{}",
                    serde_json::to_string(&report).expect("report serializes")
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("worker gc: {e}");
                ExitCode::from(1)
            }
        }
    })
}
