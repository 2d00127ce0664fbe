//! The worker service's settings (API.md § Processes): the `worker` command line, and the one
//! constructor both it and the gateway's embedded workers resolve them with.

use std::time::Duration;

use pipeline::queue::QueueConfig;

use crate::args::{ConnectionArgs, MediaArgs, QueueArgs, WebhookArgs};
use crate::webhooks::DispatcherSettings;
use pipeline::video::VideoLimits;

#[derive(Debug, Clone, clap::Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    #[command(flatten)]
    pub queue: QueueArgs,
    #[command(flatten)]
    pub media: MediaArgs,
    /// Engine threads (the rayon pool) [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_WORKER_THREADS", value_name = "N")]
    pub threads: Option<usize>,
    /// Jobs held beyond the ones running, so downloads and uploads overlap engine work
    /// [default: the number of threads].
    #[arg(long, env = "IMAGEPIPE_PREFETCH", value_name = "N")]
    pub prefetch: Option<usize>,
    /// Serve Prometheus metrics on this address (e.g. 127.0.0.1:9100).
    #[arg(long, env = "IMAGEPIPE_METRICS_LISTEN")]
    pub metrics_listen: Option<String>,
    #[command(flatten)]
    pub webhooks: WebhookArgs,
}

/// Resolved settings.
#[derive(Debug, Clone, PartialEq)]
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
    /// Video decoding bounds (and the frame budget of frame and video jobs).
    pub video: VideoLimits,
}

impl WorkerSettings {
    /// The `worker` service's settings.
    pub fn from_args(args: &WorkerArgs) -> WorkerSettings {
        let threads = args
            .threads
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
            .max(1);
        let mut settings = WorkerSettings::embedded(
            &args.connection,
            &args.queue,
            &args.media,
            &args.webhooks,
            threads,
        );
        settings.capacity = threads + args.prefetch.unwrap_or(threads);
        settings.metrics_listen = args.metrics_listen.clone();
        settings
    }

    /// Settings of worker loops with `threads` engine threads, from the flags every binary
    /// shares: the gateway's `--embedded-workers` runs with exactly these.
    pub fn embedded(
        connection: &ConnectionArgs,
        queue: &QueueArgs,
        media: &MediaArgs,
        webhooks: &WebhookArgs,
        threads: usize,
    ) -> WorkerSettings {
        let threads = threads.max(1);
        WorkerSettings {
            redis_url: connection.redis_url.clone(),
            storage: connection.storage.clone(),
            s3_endpoint: connection.s3_endpoint.clone(),
            queue: connection.queue_config(queue),
            max_pixels: connection.max_pixels,
            threads,
            capacity: threads * 2,
            job_timeout: queue.job_timeout,
            shutdown_timeout: queue.shutdown_timeout,
            metrics_listen: None,
            webhooks: DispatcherSettings::from_args(webhooks),
            video: media.video_limits(connection.max_pixels),
        }
    }
}
