//! The flags both binaries take, declared once (API.md § Processes): `worker` flattens them
//! into its command line and `gateway` into its own, so embedded workers read exactly the same
//! settings and environment as a separate `worker`.

use std::path::PathBuf;
use std::time::Duration;

use pipeline::config::{parse_duration, parse_size};
use pipeline::queue::{QueueConfig, RedisTls};
use pipeline::signing::UrlSigner;
use pipeline::video::VideoLimits;
use pipeline::webhooks::TargetPolicy;

/// Where the queue and the objects live.
#[derive(Debug, Clone, clap::Args)]
pub struct ConnectionArgs {
    /// Redis (standalone, Sentinel- or Cluster-managed) holding the queue and the results.
    #[arg(
        long,
        env = "IMAGEPIPE_REDIS_URL",
        default_value = "redis://127.0.0.1:6379/0"
    )]
    pub redis_url: String,
    /// Object storage: file://DIR for a local directory, s3://BUCKET[/PREFIX] for S3.
    #[arg(
        long,
        env = "IMAGEPIPE_STORAGE",
        default_value = "file://./data/objects"
    )]
    pub storage: String,
    /// Endpoint of an S3-compatible server (MinIO, Garage...); path-style addressing is used.
    #[arg(long, env = "IMAGEPIPE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    /// The S3 server's origin as clients reach it, when it differs from `--s3-endpoint` (under
    /// docker compose: the host's published port): presigned upload and output URLs use it.
    #[arg(long, env = "IMAGEPIPE_S3_PUBLIC_ENDPOINT")]
    pub s3_public_endpoint: Option<String>,
    /// For `rediss://`: the CA certificate (PEM) that signed the server's, instead of the
    /// system's trust store.
    #[arg(long, env = "IMAGEPIPE_REDIS_CA")]
    pub redis_ca: Option<PathBuf>,
    /// For `rediss://` servers that ask for one: a client certificate (PEM), with
    /// `--redis-client-key`.
    #[arg(long, env = "IMAGEPIPE_REDIS_CLIENT_CERT")]
    pub redis_client_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, env = "IMAGEPIPE_REDIS_CLIENT_KEY")]
    pub redis_client_key: Option<PathBuf>,
    /// Answer an upload 202, and acknowledge a job's end, only once this many replicas hold it
    /// (Redis `WAIT`): with 1, a failover of the primary loses no accepted job.
    #[arg(long, env = "IMAGEPIPE_REDIS_WAIT_REPLICAS", default_value_t = 0)]
    pub redis_wait_replicas: u32,
    /// How long `--redis-wait-replicas` waits for the replicas (then 503 for an upload, a
    /// retry for a job's end).
    #[arg(long, env = "IMAGEPIPE_REDIS_WAIT_TIMEOUT", default_value = "1s", value_parser = parse_duration)]
    pub redis_wait_timeout: Duration,
    /// Names the Redis keys, so several deployments can share one Redis.
    #[arg(long, env = "IMAGEPIPE_QUEUE", default_value = "imagepipe")]
    pub queue: String,
    /// Refuse images (and frames) with more pixels than this, judged from the header.
    #[arg(long, env = "IMAGEPIPE_MAX_PIXELS", default_value_t = 100_000_000)]
    pub max_pixels: u64,
}

/// Bounds on frame and video jobs.
#[derive(Debug, Clone, clap::Args)]
pub struct MediaArgs {
    /// Most frames in one frame job, taken from one video, or in one animation kept animated.
    #[arg(long, env = "IMAGEPIPE_MAX_FRAMES", default_value_t = 2000)]
    pub max_frames: usize,
    /// Longest video taken (then `duration_limit`).
    #[arg(long, env = "IMAGEPIPE_MAX_VIDEO_DURATION", default_value = "4h", value_parser = parse_duration)]
    pub max_video_duration: Duration,
    /// Address space of each video decoder process.
    #[arg(long, env = "IMAGEPIPE_VIDEO_MEMORY_LIMIT", default_value = "2GiB", value_parser = parse_size)]
    pub video_memory_limit: u64,
}

impl ConnectionArgs {
    /// The queue's settings: `queue`'s, with this connection's queue name and TLS files.
    pub fn queue_config(&self, queue: &QueueArgs) -> QueueConfig {
        QueueConfig {
            tls: self.redis_tls(),
            wait_replicas: self.redis_wait_replicas,
            wait_timeout: self.redis_wait_timeout,
            ..queue.queue_config(&self.queue)
        }
    }

    /// The TLS files for `rediss://`.
    pub fn redis_tls(&self) -> RedisTls {
        RedisTls {
            ca: self.redis_ca.clone(),
            client_cert: self.redis_client_cert.clone(),
            client_key: self.redis_client_key.clone(),
        }
    }
}

impl MediaArgs {
    pub fn video_limits(&self, max_pixels: u64) -> VideoLimits {
        VideoLimits {
            max_pixels,
            max_duration: self.max_video_duration,
            memory: self.video_memory_limit,
            max_frames: self.max_frames.max(1),
            ..VideoLimits::default()
        }
    }
}

/// How jobs are held, retried, kept and stopped.
#[derive(Debug, Clone, clap::Args)]
pub struct QueueArgs {
    /// A job held this long by a worker that stopped renewing it is taken over by another
    /// (1 s at least).
    #[arg(long, env = "IMAGEPIPE_VISIBILITY_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub visibility_timeout: Duration,
    /// A job running longer than this fails with `timeout` (and is retried).
    #[arg(long, env = "IMAGEPIPE_JOB_TIMEOUT", default_value = "5m", value_parser = parse_duration)]
    pub job_timeout: Duration,
    /// Attempts before a job that keeps failing transiently is dead-lettered.
    #[arg(long, env = "IMAGEPIPE_MAX_ATTEMPTS", default_value_t = 5)]
    pub max_attempts: u32,
    /// How long job records are kept after they are created or finish.
    #[arg(long, env = "IMAGEPIPE_RESULT_TTL", default_value = "7d", value_parser = parse_duration)]
    pub result_ttl: Duration,
    /// On SIGTERM/SIGINT: how long requests in flight and jobs in hand may take to finish
    /// (then unfinished jobs are handed back).
    #[arg(long, env = "IMAGEPIPE_SHUTDOWN_TIMEOUT", default_value = "25s", value_parser = parse_duration)]
    pub shutdown_timeout: Duration,
}

impl QueueArgs {
    /// The queue's settings for queue `name`.
    pub fn queue_config(&self, name: &str) -> QueueConfig {
        QueueConfig {
            name: name.to_owned(),
            result_ttl: self.result_ttl,
            max_attempts: self.max_attempts.max(1),
            visibility_timeout: self.visibility_timeout.max(Duration::from_secs(1)),
            ..QueueConfig::default()
        }
    }
}

/// Webhook signing and SSRF settings, and how the URLs handed out look: the public origin they
/// start with and whether output URLs are signed.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Signs webhook bodies: `X-Imagepipe-Signature: sha256=HMAC-SHA256(body)`.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Allow webhooks to loopback, private, link-local and metadata addresses.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub webhook_allow_private: bool,
    /// Webhook hosts (`host` or `host:port`, comma-separated) called even when they are
    /// private: a deployment's own receivers.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    pub webhook_allow_hosts: Vec<String>,
    /// The public origin of the gateway (`https://img.example.com`): URLs in responses and
    /// webhook payloads start with it. Unset: taken from each request (relative in webhooks).
    #[arg(long, env = "IMAGEPIPE_PUBLIC_URL")]
    pub public_url: Option<String>,
    /// Signs output URLs (in job records, sprite tracks and webhook bodies) with `exp` and
    /// `sig`, so they work without an API key: for `<img>`, `<video poster>`, `<track>`.
    #[arg(long, env = "IMAGEPIPE_URL_SIGNING_KEY", hide_env_values = true)]
    pub url_signing_key: Option<String>,
    /// How long a signed output URL stays valid.
    #[arg(long, env = "IMAGEPIPE_SIGNED_URL_TTL", default_value = "24h", value_parser = parse_duration)]
    pub signed_url_ttl: Duration,
}

impl WebhookArgs {
    pub fn target_policy(&self) -> TargetPolicy {
        TargetPolicy::new(self.webhook_allow_private, &self.webhook_allow_hosts)
    }

    /// The signing secret, unless unset or empty.
    pub fn secret(&self) -> Option<Vec<u8>> {
        self.webhook_secret
            .clone()
            .filter(|s| !s.is_empty())
            .map(String::into_bytes)
    }

    /// The output URL signer, when `--url-signing-key` is set.
    pub fn url_signer(&self) -> Option<UrlSigner> {
        UrlSigner::new(
            self.url_signing_key.as_deref().unwrap_or_default(),
            self.signed_url_ttl,
        )
    }

    /// The public origin without a trailing slash, or empty (relative URLs).
    pub fn public_origin(&self) -> String {
        self.public_url
            .as_deref()
            .unwrap_or_default()
            .trim_end_matches('/')
            .to_owned()
    }
}
