//! `gateway` settings (API.md § Processes): flags with environment fallbacks. The flags shared
//! with `worker` (connection, queue, webhooks) are the very structs `worker` uses, so embedded
//! workers honour the same settings and environment as a separate worker.

use std::time::Duration;

use clap::Parser;
use pipeline::config::{parse_duration, parse_size};
use workers::args::{ConnectionArgs, MediaArgs, QueueArgs, WebhookArgs};
use workers::settings::WorkerSettings;

#[derive(Debug, Clone, Parser)]
#[command(name = "gateway", version, about = "imagepipe HTTP gateway")]
pub struct Settings {
    #[command(flatten)]
    pub connection: ConnectionArgs,
    /// How jobs are held, retried and kept, and how long a shutdown may take.
    #[command(flatten)]
    pub queue: QueueArgs,
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
    /// Frame and video bounds (shared with `worker`).
    #[command(flatten)]
    pub media: MediaArgs,
    /// Webhook signing and SSRF settings, and the public origin URLs start with (unset: taken
    /// from each request).
    #[command(flatten)]
    pub webhooks: WebhookArgs,
    /// How long presigned upload and download URLs stay valid.
    #[arg(long, env = "IMAGEPIPE_PRESIGN_TTL", default_value = "15m", value_parser = parse_duration)]
    pub presign_ttl: Duration,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

impl Settings {
    /// Settings for tests and embedding: defaults, as if started with no flags or environment.
    pub fn defaults() -> Settings {
        Settings::parse_from(["gateway"])
    }

    /// The embedded workers' settings (`None` without `--embedded-workers`).
    pub fn embedded_workers(&self) -> Option<WorkerSettings> {
        (self.embedded_workers > 0).then(|| {
            WorkerSettings::embedded(
                &self.connection,
                &self.queue,
                &self.media,
                &self.webhooks,
                self.embedded_workers,
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use workers::settings::WorkerArgs;

    #[derive(clap::Parser)]
    struct WorkerCommand {
        #[command(flatten)]
        args: WorkerArgs,
    }

    /// The only test in this binary that touches the environment.
    #[test]
    fn embedded_workers_honour_the_same_environment_as_worker() {
        let environment = [
            ("IMAGEPIPE_QUEUE", "env-queue"),
            ("IMAGEPIPE_MAX_ATTEMPTS", "2"),
            ("IMAGEPIPE_VISIBILITY_TIMEOUT", "200ms"),
            ("IMAGEPIPE_JOB_TIMEOUT", "42s"),
            ("IMAGEPIPE_RESULT_TTL", "3h"),
            ("IMAGEPIPE_SHUTDOWN_TIMEOUT", "7s"),
            ("IMAGEPIPE_MAX_PIXELS", "1234567"),
            ("IMAGEPIPE_MAX_FRAMES", "77"),
            ("IMAGEPIPE_MAX_VIDEO_DURATION", "10m"),
            ("IMAGEPIPE_VIDEO_MEMORY_LIMIT", "512MiB"),
            ("IMAGEPIPE_WEBHOOK_SECRET", "s3cret"),
            ("IMAGEPIPE_WEBHOOK_ALLOW_HOSTS", "hooks.internal:9000"),
            ("IMAGEPIPE_PUBLIC_URL", "https://img.example.com/"),
        ];
        for (key, value) in environment {
            std::env::set_var(key, value);
        }
        let gateway = Settings::try_parse_from(["gateway", "--embedded-workers", "3"]).unwrap();
        let worker = WorkerCommand::try_parse_from(["worker", "--threads", "3"]).unwrap();
        for (key, _) in environment {
            std::env::remove_var(key);
        }
        let embedded = gateway.embedded_workers().unwrap();
        assert_eq!(embedded, WorkerSettings::from_args(&worker.args));
        // The environment reached both, clamps included (a visibility timeout of 1 s at least).
        assert_eq!(embedded.queue.max_attempts, 2);
        assert_eq!(embedded.queue.visibility_timeout, Duration::from_secs(1));
        assert_eq!(embedded.queue.name, "env-queue");
        assert_eq!(embedded.job_timeout, Duration::from_secs(42));
        assert_eq!(embedded.webhooks.public_url, "https://img.example.com");
        assert_eq!(embedded.video.max_frames, 77);
        assert_eq!(embedded.video.max_duration, Duration::from_secs(600));
        assert_eq!(embedded.video.memory, 512 << 20);
        assert!(Settings::defaults().embedded_workers().is_none());
    }
}
