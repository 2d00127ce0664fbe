//! `spawn_app()`: a gateway on a free port with its own queue and storage, real Redis, real HTTP.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use fixtures::servers::{unique, TempDir};
use gateway::{Application, Settings};
use pipeline::queue::{Queue, QueueConfig};
use pipeline::shutdown::{Shutdown, ShutdownTrigger};
use serde_json::Value;

/// The Redis the tests share; each app has its own queue name.
pub fn redis_url() -> String {
    std::env::var("IMAGEPIPE_TEST_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into())
}

pub fn corpus(relative: &str) -> Vec<u8> {
    std::fs::read(fixtures::servers::corpus(relative)).expect("corpus file")
}

/// The S3 credentials test servers accept, in the standard variables gateways read.
pub fn use_test_s3_credentials() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        std::env::set_var("AWS_ACCESS_KEY_ID", fixtures::servers::S3_ACCESS_KEY);
        std::env::set_var("AWS_SECRET_ACCESS_KEY", fixtures::servers::S3_SECRET_KEY);
        std::env::set_var("AWS_REGION", "us-east-1");
    });
}

/// A change to a gateway's settings before it is built.
pub type Tweak = Box<dyn FnOnce(&mut Settings) + Send>;

pub struct AppOptions {
    pub embedded_workers: usize,
    pub api_keys: Option<String>,
    pub redis_url: String,
    pub storage: Option<String>,
    pub s3_endpoint: Option<String>,
    pub max_upload: Option<u64>,
    pub max_queue_depth: Option<u64>,
    pub max_concurrent_uploads: Option<usize>,
    pub webhook_secret: Option<String>,
    pub webhook_allow_private: bool,
    pub webhook_allow_hosts: Vec<String>,
    pub public_url: Option<String>,
    pub presign_ttl: Option<Duration>,
    pub max_pixels: Option<u64>,
    pub max_video_duration: Option<Duration>,
    /// Any other setting, changed last.
    pub tweak: Option<Tweak>,
}

impl Default for AppOptions {
    fn default() -> Self {
        AppOptions {
            embedded_workers: 0,
            api_keys: None,
            redis_url: redis_url(),
            storage: None,
            s3_endpoint: None,
            max_upload: None,
            max_queue_depth: None,
            max_concurrent_uploads: None,
            webhook_secret: None,
            webhook_allow_private: false,
            webhook_allow_hosts: Vec::new(),
            public_url: None,
            presign_ttl: None,
            max_pixels: None,
            max_video_duration: None,
            tweak: None,
        }
    }
}

pub struct TestApp {
    pub address: String,
    pub http: reqwest::Client,
    /// A handle on the app's queue, to look behind the API.
    pub queue: Queue,
    pub storage_dir: PathBuf,
    _dir: TempDir,
    stop: Option<ShutdownTrigger>,
    task: Option<tokio::task::JoinHandle<anyhow::Result<()>>>,
}

pub async fn spawn_app(options: AppOptions) -> TestApp {
    let dir = TempDir::new("imagepipe-gateway");
    let queue_name = unique("gw");
    let mut settings = Settings::defaults();
    settings.listen = "127.0.0.1:0".into();
    settings.connection.redis_url = options.redis_url.clone();
    settings.connection.queue = queue_name.clone();
    settings.connection.storage = options
        .storage
        .unwrap_or_else(|| format!("file://{}", dir.path().join("objects").display()));
    settings.connection.s3_endpoint = options.s3_endpoint;
    settings.embedded_workers = options.embedded_workers;
    settings.api_keys = options.api_keys;
    settings.http_workers = Some(1);
    settings.queue.visibility_timeout = Duration::from_secs(5);
    settings.queue.shutdown_timeout = Duration::from_secs(5);
    settings.webhooks.webhook_secret = options.webhook_secret;
    settings.webhooks.webhook_allow_private = options.webhook_allow_private;
    settings.webhooks.webhook_allow_hosts = options.webhook_allow_hosts;
    settings.webhooks.public_url = options.public_url;
    if let Some(ttl) = options.presign_ttl {
        settings.presign_ttl = ttl;
    }
    if let Some(pixels) = options.max_pixels {
        settings.connection.max_pixels = pixels;
    }
    if let Some(duration) = options.max_video_duration {
        settings.media.max_video_duration = duration;
    }
    if let Some(limit) = options.max_upload {
        settings.max_upload = limit;
    }
    if let Some(depth) = options.max_queue_depth {
        settings.max_queue_depth = depth;
    }
    if let Some(uploads) = options.max_concurrent_uploads {
        settings.max_concurrent_uploads = uploads;
    }
    if let Some(tweak) = options.tweak {
        tweak(&mut settings);
    }
    let (redis_url, tls) = (
        settings.connection.redis_url.clone(),
        settings.connection.redis_tls(),
    );
    let app = Application::build(settings).await.expect("gateway builds");
    let address = format!("http://127.0.0.1:{}", app.port());
    let (stop, shutdown) = Shutdown::new();
    let task = tokio::spawn(app.run_until(shutdown));
    let queue = Queue::connect(
        &redis_url,
        QueueConfig {
            name: queue_name,
            tls,
            ..QueueConfig::default()
        },
    )
    .await
    .expect("queue handle");
    TestApp {
        address,
        http: reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap(),
        queue,
        storage_dir: dir.path().join("objects"),
        _dir: dir,
        stop: Some(stop),
        task: Some(task),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.address)
    }

    /// Uploads `image` as a multipart `file` part, with `spec` as a part when given.
    pub async fn submit(&self, image: Vec<u8>, spec: Option<&str>) -> reqwest::Response {
        self.submit_as(image, spec, None).await
    }

    pub async fn submit_as(
        &self,
        image: Vec<u8>,
        spec: Option<&str>,
        key: Option<&str>,
    ) -> reqwest::Response {
        let mut form = reqwest::multipart::Form::new().part(
            "file",
            reqwest::multipart::Part::bytes(image).file_name("photo.jpg"),
        );
        if let Some(spec) = spec {
            form = form.text("spec", spec.to_owned());
        }
        let mut request = self.http.post(self.url("/v1/jobs")).multipart(form);
        if let Some(key) = key {
            request = request.bearer_auth(key);
        }
        request.send().await.expect("request")
    }

    /// Submits and returns the new job's id (asserting 202).
    pub async fn submit_ok(&self, image: Vec<u8>, spec: &str) -> String {
        accepted_id(self.submit(image, Some(spec)).await).await
    }

    pub async fn job(&self, id: &str) -> Value {
        let response = self
            .http
            .get(self.url(&format!("/v1/jobs/{id}")))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        response.json().await.unwrap()
    }

    /// The body at `url` (an output, say), which must answer 200.
    pub async fn bytes(&self, url: &str) -> Vec<u8> {
        let response = self.http.get(url).send().await.unwrap();
        assert_eq!(response.status(), 200, "{url}");
        response.bytes().await.unwrap().to_vec()
    }

    /// Polls a job until it ends (or panics after `limit`).
    pub async fn wait_for(&self, id: &str, limit: Duration) -> Value {
        let started = Instant::now();
        loop {
            let job = self.job(id).await;
            if matches!(
                job["status"].as_str(),
                Some("succeeded" | "failed" | "cancelled")
            ) {
                return job;
            }
            assert!(
                started.elapsed() < limit,
                "job {id} still {} after {limit:?}",
                job["status"]
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Stops the app gracefully and waits for it.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            stop.trigger();
        }
        if let Some(task) = self.task.take() {
            task.await.expect("app task").expect("app stopped cleanly");
        }
        self.queue.purge().await.ok();
    }
}

/// The id of the job a `202 Accepted` answer names (asserting the 202, with the body if not).
pub async fn accepted_id(response: reqwest::Response) -> String {
    let status = response.status();
    let body = response.text().await.unwrap_or_default();
    assert_eq!(status, 202, "{body}");
    let answer: Value = serde_json::from_str(&body).expect("a JSON answer");
    answer["id"].as_str().expect("an id").to_owned()
}

/// Asserts a response is an `application/problem+json` error with this status and code, and
/// returns its body.
pub async fn problem(response: reqwest::Response, status: u16, code: &str) -> Value {
    assert_eq!(response.status(), status, "status");
    let content_type = response
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    assert_eq!(content_type, "application/problem+json");
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["status"], status);
    assert_eq!(body["code"], code, "{body}");
    assert!(body["type"].as_str().unwrap().ends_with(code));
    assert!(body["title"].is_string() && body["detail"].is_string());
    body
}

pub const THUMB_SPEC: &str = r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":128,"height":128,"fit":"cover"}],"format":"webp"},{"name":"large","ops":[{"op":"resize","width":400}],"format":"jpeg","quality":85}],"placeholder":"blurhash"}"#;

/// Sends a request that must answer with JSON, and returns the JSON.
pub(crate) trait JsonBody {
    async fn json_body(self) -> Value;
}

impl JsonBody for reqwest::RequestBuilder {
    async fn json_body(self) -> Value {
        self.send().await.unwrap().json().await.unwrap()
    }
}

/// Takes the app's next queued job with a worker that gives up after one transient failure,
/// so the job lands in the dead-letter list.
pub async fn dead_letter_next_job(app: &TestApp) {
    use pipeline::failure::{Disposition, FailureCode};
    use pipeline::job::JobError;
    use pipeline::queue::{Consumer, Outcome, Started};

    let strict = Queue::connect(
        &redis_url(),
        QueueConfig {
            name: app.queue.config().name.clone(),
            max_attempts: 1,
            ..QueueConfig::default()
        },
    )
    .await
    .unwrap();
    let consumer = Consumer::new(
        &strict,
        &redis_url(),
        "flaky".into(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let deliveries = consumer.fetch(1, Duration::ZERO).await.unwrap();
    let Started::Run(lease, _) = consumer.start(&deliveries).await.unwrap().remove(0) else {
        panic!("a job to fail")
    };
    let failure = Outcome::Failed {
        error: JobError {
            code: FailureCode::StorageError,
            message: "storage unavailable".into(),
        },
        disposition: Disposition::Retry,
    };
    consumer.complete(&[(lease, failure)]).await.unwrap();
}
