//! `gateway` settings (API.md § Processes): flags with environment fallbacks.

use std::time::Duration;

use clap::Parser;
use pipeline::config::{parse_duration, parse_size, ConnectionArgs};

#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about = "imagepipe HTTP gateway")]
pub struct Settings {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// Address to listen on (port 0: any free port).
    #[arg(long, env = "IMAGEPIPE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: String,
    /// API keys: KEY1,KEY2 or a file with one key per line. Unset: the API is open.
    #[arg(long, env = "IMAGEPIPE_API_KEYS")]
    pub api_keys: Option<String>,
    /// Largest accepted upload (one image, or all the frames of one request).
    #[arg(long, env = "IMAGEPIPE_MAX_UPLOAD", default_value = "50MB", value_parser = parse_size)]
    pub max_upload: u64,
    /// Run worker loops in-process with this many engine threads: the one-command local setup.
    #[arg(long, env = "IMAGEPIPE_EMBEDDED_WORKERS", default_value_t = 0)]
    pub embedded_workers: usize,
    /// Refuse new jobs (429) while this many are waiting.
    #[arg(long, env = "IMAGEPIPE_MAX_QUEUE_DEPTH", default_value_t = 100_000)]
    pub max_queue_depth: u64,
    /// Uploads (`POST /v1/jobs`, `POST /v1/frames`) in progress at once; beyond, 429 with
    /// `Retry-After`. Each holds at most a 256 KB head in memory, so this bounds upload memory.
    #[arg(long, env = "IMAGEPIPE_MAX_CONCURRENT_UPLOADS", default_value_t = 256)]
    pub max_concurrent_uploads: usize,
    /// How long job records are kept.
    #[arg(long, env = "IMAGEPIPE_RESULT_TTL", default_value = "7d", value_parser = parse_duration)]
    pub result_ttl: Duration,
    /// Most frames in one frame job.
    #[arg(long, env = "IMAGEPIPE_MAX_FRAMES", default_value_t = 2000)]
    pub max_frames: usize,
    /// Webhook signing and SSRF settings, and the public origin URLs start with (unset: taken
    /// from each request).
    #[command(flatten)]
    pub webhooks: pipeline::webhooks::WebhookArgs,
    /// How long presigned upload and download URLs stay valid.
    #[arg(long, env = "IMAGEPIPE_PRESIGN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub presign_ttl: Duration,
    /// With embedded workers: a job held this long by a worker that stopped renewing it is
    /// taken over.
    #[arg(long, env = "IMAGEPIPE_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub visibility_timeout: Duration,
    /// With embedded workers: a job running longer than this fails with `timeout`.
    #[arg(long, env = "IMAGEPIPE_JOB_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// On SIGTERM: how long in-flight requests (and embedded workers' jobs) may take to finish.
    #[arg(long, env = "IMAGEPIPE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

impl Settings {
    /// Settings for tests and embedding: defaults, as if started with no flags or environment.
    pub fn defaults() -> Settings {
        Settings::parse_from(["gateway"])
    }
}
