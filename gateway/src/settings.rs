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
    /// Unfinished (queued or running) jobs one API key may have; beyond, that key gets 429
    /// `rate_limited` while other keys are unaffected (0: no limit).
    #[arg(long, env = "IMAGEPIPE_MAX_QUEUED_PER_KEY", default_value_t = 10_000)]
    pub max_queued_per_key: u64,
    /// Uploads per API key per second, shared by every gateway through Redis (`50/s`, `600/m`,
    /// `1000/h`, or a bare number a second); beyond, 429 with `Retry-After`. Unset: no limit.
    #[arg(long, env = "IMAGEPIPE_RATE_LIMIT_PER_KEY", value_parser = parse_rate)]
    pub rate_limit_per_key: Option<f64>,
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
    /// Origins whose web pages may call the API and load outputs (CORS): comma-separated
    /// `scheme://host[:port]`, or `*`. Unset: none.
    #[arg(long, env = "IMAGEPIPE_CORS_ORIGINS", value_delimiter = ',')]
    pub cors_origins: Vec<String>,
    /// HTTP worker threads [default: number of cores].
    #[arg(long, env = "IMAGEPIPE_HTTP_WORKERS")]
    pub http_workers: Option<usize>,
}

/// `R/s`, `R/m`, `R/h` or a bare `R` (a second), as uploads a second.
fn parse_rate(text: &str) -> Result<f64, String> {
    let (count, per) = text.trim().split_once('/').unwrap_or((text.trim(), "s"));
    let seconds = match per.trim() {
        "s" | "sec" | "second" => 1.0,
        "m" | "min" | "minute" => 60.0,
        "h" | "hour" => 3600.0,
        other => return Err(format!("`{other}`: use R/s, R/m or R/h")),
    };
    let count: f64 = count
        .trim()
        .parse()
        .map_err(|_| format!("`{text}`: use R/s, R/m or R/h"))?;
    if !(count.is_finite() && count > 0.0) {
        return Err(format!("`{text}`: the rate must be above 0"));
    }
    Ok(count / seconds)
}

impl Settings {
    /// The per-key limits (`--max-queued-per-key`, `--rate-limit-per-key`).
    pub fn tenant_limits(&self) -> pipeline::queue::TenantLimits {
        pipeline::queue::TenantLimits {
            max_unfinished: self.max_queued_per_key,
            rate_per_second: self.rate_limit_per_key,
        }
    }

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

    #[test]
    fn rates_read_as_uploads_a_second() {
        assert_eq!(parse_rate("50/s"), Ok(50.0));
        assert_eq!(parse_rate("50"), Ok(50.0));
        assert_eq!(parse_rate("120/m"), Ok(2.0));
        assert_eq!(parse_rate("3600/h"), Ok(1.0));
        for bad in ["0/s", "-1", "ten/s", "5/day", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
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
        assert_eq!(embedded.webhooks.links.base, "https://img.example.com");
        assert_eq!(embedded.video.max_frames, 77);
        assert_eq!(embedded.video.max_duration, Duration::from_secs(600));
        assert_eq!(embedded.video.memory, 512 << 20);
        assert!(Settings::defaults().embedded_workers().is_none());
    }
}
