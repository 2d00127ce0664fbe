//! The worker service's settings (API.md § Processes), with their flags and environment names.

use std::time::Duration;

use pipeline::config::{parse_duration, ConnectionArgs};
use pipeline::queue::QueueConfig;
use pipeline::webhooks::{DispatcherSettings, WebhookArgs};

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Engine threads (the rayon pool) [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_WORKER_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// A job held this long by a worker that stopped renewing it is taken over by another.
    #[arg(long, env = "IMAGEPIPE_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub visibility_timeout: Duration,
    /// A job running longer than this fails with `timeout` (and is retried).
    #[arg(long, env = "IMAGEPIPE_JOB_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Attempts before a job that keeps failing transiently is dead-lettered.
    #[arg(long, env = "IMAGEPIPE_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// How long job records are kept after they finish.
    #[arg(long, env = "IMAGEPIPE_RESULT_TTL", default_value = "7d", value_parser = parse_duration)]
    pub result_ttl: Duration,
    /// Jobs held beyond the ones running, so downloads and uploads overlap engine work
    /// [default: the number of threads].
    #[arg(long, env = "IMAGEPIPE_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,
    /// On SIGTERM/SIGINT, finish jobs in hand for up to this long, then hand the rest back.
    #[arg(long, env = "IMAGEPIPE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "IMAGEPIPE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct WorkerSettings {
    pub redis_url: String,
    pub storage: String,
    pub s3_endpoint: Option<String>,
    pub queue: QueueConfig,
    pub max_pixels: u64,
    pub threads: usize,
    /// Most jobs in hand at once (running plus prefetched).
    pub capacity: usize,
    pub job_timeout: Duration,
    pub shutdown_timeout: Duration,
    pub metrics_listen: Option<String>,
    pub webhooks: DispatcherSettings,
}

impl WorkerSettings {
    pub fn from_args(args: &WorkerArgs) -> WorkerSettings {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let prefetch = args.prefetch.unwrap_or(threads);
        WorkerSettings {
            redis_url: args.connection.redis_url.clone(),
            storage: args.connection.storage.clone(),
            s3_endpoint: args.connection.s3_endpoint.clone(),
            queue: QueueConfig {
                name: args.connection.queue.clone(),
                result_ttl: args.result_ttl,
                max_attempts: args.max_attempts.max(1),
                visibility_timeout: args.visibility_timeout.max(Duration::from_secs(1)),
                ..QueueConfig::default()
            },
            max_pixels: args.connection.max_pixels,
            threads,
            capacity: threads + prefetch,
            job_timeout: args.job_timeout,
            shutdown_timeout: args.shutdown_timeout,
            metrics_listen: args.metrics_listen.clone(),
            webhooks: DispatcherSettings::from_args(&args.webhooks),
        }
    }
}
