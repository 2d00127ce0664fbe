//! Gateway and workers as real processes: shared load, SIGKILL and SIGTERM, job timeouts, and
//! the one-command embedded mode.

use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use fixtures::servers::{free_port, unique, TempDir};
use pipeline::queue::{Queue, QueueConfig};
use serde_json::Value;

use crate::helpers::JsonBody;
use crate::helpers::{corpus, redis_url};

/// A binary of this workspace, built beside the gateway (`cargo test --workspace` builds all).
pub(crate) fn binary(name: &str) -> PathBuf {
    let path = PathBuf::from(env!("CARGO_BIN_EXE_gateway")).with_file_name(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests with `cargo test --workspace`",
        path.display()
    );
    path
}

pub(crate) struct Process {
    pub(crate) child: Child,
}

impl Process {
    pub(crate) fn spawn(
        name: &str,
        args: &[String],
        cwd: &std::path::Path,
        env: &[(&str, String)],
    ) -> Process {
        // Set IMAGEPIPE_TEST_LOGS=DIR to keep each process's log there.
        let log = std::env::var_os("IMAGEPIPE_TEST_LOGS")
            .map(|dir| std::path::Path::new(&dir).join(format!("{name}-{}.log", unique("p"))));
        Process::spawn_logged(name, args, cwd, env, log.as_deref())
    }

    /// Like [`Process::spawn`], with the process's log (stderr) written to `log`.
    pub(crate) fn spawn_logged(
        name: &str,
        args: &[String],
        cwd: &std::path::Path,
        env: &[(&str, String)],
        log: Option<&std::path::Path>,
    ) -> Process {
        let mut command = Command::new(binary(name));
        command.args(args).current_dir(cwd).stdout(Stdio::null());
        match log {
            Some(log) => command.stderr(std::fs::File::create(log).expect("log file")),
            None => command.stderr(Stdio::null()),
        };
        for (key, value) in env {
            command.env(key, value);
        }
        Process {
            child: command.spawn().expect("spawn"),
        }
    }

    pub(crate) fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .unwrap();
        assert!(status.success());
    }

    pub(crate) fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        let started = Instant::now();
        while started.elapsed() < limit {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A gateway process and the workers a test adds to it, on one queue and one storage.
pub(crate) struct Cluster {
    /// The queue, storage and Redis flags every process of the cluster gets.
    connection: Vec<String>,
    port: u16,
    pub(crate) dir: TempDir,
    pub(crate) address: String,
    pub(crate) http: reqwest::Client,
    pub(crate) queue: Queue,
    pub(crate) gateway: Process,
}

impl Cluster {
    /// On the shared Redis, with a storage directory.
    pub(crate) async fn start() -> Cluster {
        Cluster::start_on(redis_url(), None).await
    }

    /// On `redis`, with S3 storage at `s3 = (bucket URL, endpoint)` or a directory.
    pub(crate) async fn start_on(redis: String, s3: Option<(String, String)>) -> Cluster {
        Cluster::start_with(redis, s3, &[]).await
    }

    /// Like [`Cluster::start_on`], every process also given `redis_args` (Redis flags such as
    /// `--redis-wait-replicas 1`).
    pub(crate) async fn start_with(
        redis: String,
        s3: Option<(String, String)>,
        redis_args: &[&str],
    ) -> Cluster {
        let dir = TempDir::new("imagepipe-cluster");
        let queue_name = unique("proc");
        let storage = match &s3 {
            Some((bucket, _)) => bucket.clone(),
            None => format!("file://{}", dir.path().join("objects").display()),
        };
        let mut connection = vec![
            "--queue".to_owned(),
            queue_name.clone(),
            "--storage".into(),
            storage,
            "--redis-url".into(),
            redis.clone(),
        ];
        if let Some((_, endpoint)) = s3 {
            connection.extend(["--s3-endpoint".to_owned(), endpoint]);
        }
        connection.extend(redis_args.iter().map(|a| a.to_string()));
        let port = free_port();
        let gateway = Cluster::spawn_gateway(port, &connection, &dir);
        let address = format!("http://127.0.0.1:{port}");
        let http = reqwest::Client::new();
        wait_healthy(&http, &address).await;
        let queue = Queue::connect(
            &redis,
            QueueConfig {
                name: queue_name.clone(),
                ..QueueConfig::default()
            },
        )
        .await
        .unwrap();
        Cluster {
            connection,
            port,
            dir,
            address,
            http,
            queue,
            gateway,
        }
    }

    fn spawn_gateway(port: u16, connection: &[String], dir: &TempDir) -> Process {
        let mut args = vec!["--listen".into(), format!("127.0.0.1:{port}")];
        args.extend(connection.iter().cloned());
        Process::spawn("gateway", &args, dir.path(), &[])
    }

    /// Stops the gateway with `signal` and starts a new one on the same port.
    pub(crate) async fn restart_gateway(&mut self, signal: &str) {
        self.gateway.signal(signal);
        self.gateway.wait_exit(Duration::from_secs(30));
        self.gateway = self.gateway_on(self.port).await;
    }

    /// Another gateway process on the same Redis, queue and storage (as behind one load
    /// balancer); returns it and its address.
    pub(crate) async fn second_gateway(&self) -> (Process, String) {
        let port = free_port();
        (
            self.gateway_on(port).await,
            format!("http://127.0.0.1:{port}"),
        )
    }

    /// A gateway process of this cluster on `port`, once it answers.
    async fn gateway_on(&self, port: u16) -> Process {
        let gateway = Cluster::spawn_gateway(port, &self.connection, &self.dir);
        wait_healthy(&self.http, &format!("http://127.0.0.1:{port}")).await;
        gateway
    }

    pub(crate) fn worker(&self, extra: &[&str]) -> Process {
        Process::spawn("worker", &self.worker_args(extra), self.dir.path(), &[])
    }

    /// The queue, storage and Redis flags of this cluster.
    pub(crate) fn connection_args(&self) -> Vec<String> {
        self.connection.clone()
    }

    /// The flags a worker of this cluster runs with.
    pub(crate) fn worker_args(&self, extra: &[&str]) -> Vec<String> {
        let mut args = self.connection_args();
        args.extend([
            "--threads".into(),
            "1".into(),
            "--prefetch".into(),
            "0".into(),
            "--visibility-timeout".into(),
            "2s".into(),
        ]);
        args.extend(extra.iter().map(|s| s.to_string()));
        args
    }

    pub(crate) async fn submit(&self, image: Vec<u8>, spec: &str) -> String {
        let response = upload(
            &self.http,
            &self.address,
            image,
            spec,
            Duration::from_secs(60),
        )
        .await
        .unwrap();
        crate::helpers::accepted_id(response).await
    }

    /// The body of a GET of `url` (an output).
    pub(crate) async fn bytes(&self, url: &str) -> bytes::Bytes {
        let response = self.http.get(url).send().await.unwrap();
        response.bytes().await.unwrap()
    }

    pub(crate) async fn job(&self, id: &str) -> Value {
        self.http
            .get(format!("{}/v1/jobs/{id}", self.address))
            .json_body()
            .await
    }

    /// Waits until every job ended; returns them.
    pub(crate) async fn wait_all(&self, ids: &[String], limit: Duration) -> Vec<Value> {
        let started = Instant::now();
        loop {
            let mut jobs = Vec::new();
            for id in ids {
                jobs.push(self.job(id).await);
            }
            let pending = jobs
                .iter()
                .filter(|j| {
                    !matches!(
                        j["status"].as_str(),
                        Some("succeeded" | "failed" | "cancelled")
                    )
                })
                .count();
            if pending == 0 {
                return jobs;
            }
            assert!(
                started.elapsed() < limit,
                "{pending} of {} jobs still pending after {limit:?}: {jobs:?}",
                ids.len()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

/// `POST /v1/jobs` of `image` as a multipart `file` part with `spec` beside it.
pub(crate) async fn upload(
    http: &reqwest::Client,
    address: &str,
    image: Vec<u8>,
    spec: &str,
    timeout: Duration,
) -> reqwest::Result<reqwest::Response> {
    let form = reqwest::multipart::Form::new()
        .part(
            "file",
            reqwest::multipart::Part::bytes(image).file_name("upload.jpg"),
        )
        .text("spec", spec.to_owned());
    http.post(format!("{address}/v1/jobs"))
        .multipart(form)
        .timeout(timeout)
        .send()
        .await
}

async fn wait_healthy(http: &reqwest::Client, address: &str) {
    let started = Instant::now();
    while http
        .get(format!("{address}/healthz"))
        .send()
        .await
        .map(|r| r.status().is_success())
        .ok()
        != Some(true)
    {
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "{address} never became healthy"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A spec that keeps a worker busy for a while (a big photo, several outputs).
pub(crate) const HEAVY: &str = r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":1600}],"format":"webp"},{"name":"b","ops":[{"op":"resize","width":800}],"format":"png"},{"name":"c","ops":[{"op":"resize","width":256}]}]}"#;
pub(crate) const LIGHT: &str = r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":64}]}]}"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_workers_share_the_load_and_the_outputs_are_right() {
    let cluster = Cluster::start().await;
    let _a = cluster.worker(&[]);
    let _b = cluster.worker(&[]);
    let mut ids = Vec::new();
    for name in [
        "kodim01", "kodim02", "kodim03", "kodim04", "kodim05", "kodim06", "kodim07", "kodim08",
    ] {
        ids.push(
            cluster
                .submit(corpus(&format!("jpeg/{name}.jpg")), HEAVY)
                .await,
        );
    }
    let jobs = cluster.wait_all(&ids, Duration::from_secs(120)).await;
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
    let mut workers = std::collections::HashSet::new();
    for id in &ids {
        workers.insert(
            cluster
                .queue
                .get(id)
                .await
                .unwrap()
                .unwrap()
                .worker
                .unwrap(),
        );
    }
    assert_eq!(workers.len(), 2, "both workers ran jobs");
    let url = jobs[0]["outputs"][0]["url"].as_str().unwrap();
    let bytes = cluster.bytes(url).await;
    assert_eq!(
        image::load_from_memory(&bytes).unwrap().width(),
        768,
        "1600 px asked, never enlarged"
    );
    cluster.queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_gateways_serve_one_queue_whichever_a_request_reaches() {
    let cluster = Cluster::start().await;
    let (_other, other) = cluster.second_gateway().await;
    // Uploaded through the first gateway; followed, read and cancelled through the second.
    let id = cluster.submit(corpus("jpeg/kodim05.jpg"), LIGHT).await;
    let doomed = cluster.submit(corpus("jpeg/kodim06.jpg"), LIGHT).await;
    let cancelled: Value = cluster
        .http
        .delete(format!("{other}/v1/jobs/{doomed}"))
        .json_body()
        .await;
    assert_eq!(cancelled["status"], "cancelled", "{cancelled}");
    let events = format!("{other}/v1/jobs/{id}/events");
    let mut rx = crate::events::follow(&cluster.http, &events).await;
    let first = rx.recv().await.expect("the job at once");
    assert_eq!(first["status"], "queued", "{first}");
    let _worker = cluster.worker(&[]);
    let last = loop {
        let event = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("events until the job ends")
            .expect("the stream stays open until the job ends");
        if event["status"] != "queued" && event["status"] != "running" {
            break event;
        }
    };
    assert_eq!(last["status"], "succeeded", "{last}");
    // Output URLs name the gateway that answered; each gateway serves the bytes.
    let url = last["outputs"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&other), "{url}");
    let bytes = cluster.bytes(url).await;
    let path = url.trim_start_matches(&other);
    let again = reqwest::get(format!("{}{path}", cluster.address))
        .await
        .unwrap();
    assert_eq!(again.bytes().await.unwrap(), bytes);
    assert!(image::load_from_memory(&bytes).is_ok());
    assert_eq!(cluster.job(&doomed).await["status"], "cancelled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_killed_under_load_loses_nothing() {
    let cluster = Cluster::start().await;
    let mut victim = cluster.worker(&[]);
    let _survivor = cluster.worker(&[]);
    let mut ids = Vec::new();
    for i in 0..16 {
        let photo = ["large/pixel1_IMG_20180725_163423.jpg", "jpeg/kodim23.jpg"][i % 2];
        ids.push(cluster.submit(corpus(photo), HEAVY).await);
    }
    // Kill one worker once work is under way, holding a job.
    let started = Instant::now();
    loop {
        let depth = cluster.queue.depth().await.unwrap();
        if depth.in_flight.iter().sum::<u64>() >= 2 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "workers never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    victim.signal("KILL");
    victim.wait_exit(Duration::from_secs(5)).expect("killed");
    let jobs = cluster.wait_all(&ids, Duration::from_secs(240)).await;
    let failed: Vec<&Value> = jobs.iter().filter(|j| j["status"] != "succeeded").collect();
    assert!(failed.is_empty(), "jobs lost or failed: {failed:?}");
    let retried = jobs
        .iter()
        .filter(|j| j["attempts"].as_u64() > Some(1))
        .count();
    assert!(
        retried >= 1,
        "the killed worker's job was taken over (and shows a second attempt)"
    );
    cluster.queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_stops_a_worker_within_its_deadline_and_loses_nothing() {
    let cluster = Cluster::start().await;
    let mut leaving = cluster.worker(&["--shutdown-timeout", "1s"]);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            cluster
                .submit(corpus("large/canon_eos1300d_canon-dslr.jpg"), HEAVY)
                .await,
        );
    }
    let started = Instant::now();
    while cluster
        .queue
        .depth()
        .await
        .unwrap()
        .in_flight
        .iter()
        .sum::<u64>()
        == 0
    {
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "the worker never started"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    leaving.signal("TERM");
    let status = leaving
        .wait_exit(Duration::from_secs(8))
        .expect("exited within the deadline");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        asked.elapsed() < Duration::from_secs(6),
        "took {:?}",
        asked.elapsed()
    );
    // What it did not finish, it handed back: another worker finishes everything.
    let _other = cluster.worker(&[]);
    let jobs = cluster.wait_all(&ids, Duration::from_secs(240)).await;
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
    cluster.queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_over_its_timeout_fails_with_timeout_and_the_worker_carries_on() {
    let cluster = Cluster::start().await;
    let _worker = cluster.worker(&["--job-timeout", "300ms", "--max-attempts", "1"]);
    // Many outputs, each a checkpoint: past the deadline, the job stops at the next one.
    let outputs: Vec<String> = (0..16)
        .map(|i| format!(r#"{{"name":"o{i}","ops":[{{"op":"resize","width":{}}},{{"op":"sharpen","sigma":2}}],"format":"png"}}"#, 1200 + i))
        .collect();
    let slow = cluster
        .submit(
            corpus("large/parrot_drone_issue-metadata-extractor-152.jpg"),
            &format!(r#"{{"outputs":[{}]}}"#, outputs.join(",")),
        )
        .await;
    let job = cluster
        .wait_all(std::slice::from_ref(&slow), Duration::from_secs(120))
        .await
        .remove(0);
    assert_eq!(
        (job["status"].as_str(), job["error"]["code"].as_str()),
        (Some("failed"), Some("timeout")),
        "{job}"
    );
    let quick = cluster.submit(corpus("jpeg/kodim24.jpg"), LIGHT).await;
    let job = cluster
        .wait_all(std::slice::from_ref(&quick), Duration::from_secs(120))
        .await
        .remove(0);
    assert_eq!(job["status"], "succeeded", "the worker carried on: {job}");
    cluster.queue.purge().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_embedded_mode_works_with_default_settings() {
    // Defaults everywhere but the two ports (so the suite can run beside a dev setup): Redis
    // is not running there, so the gateway starts one itself, with its data under ./data.
    let dir = TempDir::new("imagepipe-embedded");
    let (http_port, redis_port) = (free_port(), free_port());
    let mut gateway = Process::spawn(
        "gateway",
        &["--embedded-workers".into(), "1".into()],
        dir.path(),
        &[
            ("IMAGEPIPE_LISTEN", format!("127.0.0.1:{http_port}")),
            (
                "IMAGEPIPE_REDIS_URL",
                format!("redis://127.0.0.1:{redis_port}/0"),
            ),
        ],
    );
    let address = format!("http://127.0.0.1:{http_port}");
    let http = reqwest::Client::new();
    wait_healthy(&http, &address).await;
    // README's quickstart, as curl sends it.
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::bytes(corpus("jpeg/kodim01.jpg")).file_name("photo.jpg"),
    );
    let response = http
        .post(format!("{address}/v1/jobs?w=256&format=webp"))
        .multipart(form)
        .send()
        .await
        .unwrap();
    let id = crate::helpers::accepted_id(response).await;
    let started = Instant::now();
    let job = loop {
        let job: Value = http
            .get(format!("{address}/v1/jobs/{id}"))
            .json_body()
            .await;
        if job["status"] == "succeeded" {
            break job;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let bytes = http
        .get(job["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert_eq!(image::load_from_memory(&bytes).unwrap().width(), 256);
    assert!(
        dir.path().join("data/objects/originals").is_dir(),
        "storage under ./data/objects"
    );
    assert!(
        dir.path().join("data/redis").is_dir(),
        "Redis data under ./data/redis"
    );

    gateway.signal("TERM");
    let status = gateway
        .wait_exit(Duration::from_secs(15))
        .expect("the gateway exits on SIGTERM");
    assert!(status.success(), "{status:?}");
    // It stopped the Redis it started.
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", redis_port)).is_err(),
        "the child redis-server is still running"
    );
}
