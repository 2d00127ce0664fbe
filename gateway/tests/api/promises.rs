//! Behaviours README.md or API.md promise that had no test of their own: keys from a file, the
//! public URL and presign TTL in answers, readiness with storage down, one-line start-up errors,
//! an upload finished across SIGTERM, and `worker gc` on real processes.

use std::process::Command;
use std::time::{Duration, Instant};

use fixtures::servers::{unique, S3Server, TempDir};
use serde_json::Value;

use crate::helpers::{
    corpus, problem, redis_url, spawn_app, use_test_s3_credentials, AppOptions, JsonBody,
    THUMB_SPEC,
};
use crate::processes::{binary, Cluster};

#[tokio::test]
async fn api_keys_can_come_from_a_file() {
    let dir = TempDir::new("imagepipe-keys");
    let file = dir.path().join("keys.txt");
    std::fs::write(
        &file,
        "# one key per line\nalpha-key-from-file-0001\n\nbeta-key-from-file-00002\n",
    )
    .unwrap();
    let app = spawn_app(AppOptions {
        api_keys: Some(file.display().to_string()),
        ..Default::default()
    })
    .await;
    let open = app.http.get(app.url("/v1/jobs")).send().await.unwrap();
    problem(open, 401, "unauthorized").await;
    for key in ["alpha-key-from-file-0001", "beta-key-from-file-00002"] {
        let listed = app
            .http
            .get(app.url("/v1/jobs"))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert_eq!(listed.status(), 200, "{key}");
    }
    let comment = app
        .http
        .get(app.url("/v1/jobs"))
        .bearer_auth("# one key per line")
        .send()
        .await
        .unwrap();
    problem(comment, 401, "unauthorized").await;
    app.stop().await;
}

#[tokio::test]
async fn the_public_url_and_the_presign_ttl_show_in_answers() {
    let app = spawn_app(AppOptions {
        public_url: Some("https://img.example.com/".into()),
        presign_ttl: Some(Duration::from_secs(120)),
        ..Default::default()
    })
    .await;
    let accepted = app
        .submit(corpus("jpeg/kodim03.jpg"), Some(THUMB_SPEC))
        .await;
    let location = accepted.headers()["location"].to_str().unwrap().to_owned();
    let body: Value = accepted.json().await.unwrap();
    let id = body["id"].as_str().unwrap();
    let job_url = format!("https://img.example.com/v1/jobs/{id}");
    assert_eq!(location, job_url);
    assert_eq!(body["links"]["self"], job_url.as_str());
    assert_eq!(body["links"]["events"], format!("{job_url}/events"));
    let job: Value = app.job(id).await;
    assert_eq!(job["links"]["self"], job_url.as_str());

    let before = std::time::SystemTime::now();
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    assert!(
        ticket["url"]
            .as_str()
            .unwrap()
            .starts_with("https://img.example.com/v1/uploads/"),
        "{ticket}"
    );
    let expires = humantime::parse_rfc3339(ticket["expires_at"].as_str().unwrap()).unwrap();
    let ttl = expires.duration_since(before).unwrap();
    assert!(
        ttl > Duration::from_secs(118) && ttl < Duration::from_secs(125),
        "{ttl:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn readiness_answers_503_while_storage_is_down() {
    use_test_s3_credentials();
    let s3 = S3Server::start();
    let bucket = unique("ready");
    s3.create_bucket(&bucket);
    let app = spawn_app(AppOptions {
        storage: Some(format!("s3://{bucket}")),
        s3_endpoint: Some(s3.endpoint.clone()),
        ..Default::default()
    })
    .await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 200);
    s3.signal("STOP");
    let started = Instant::now();
    let down = app.http.get(app.url("/readyz")).send().await.unwrap();
    let took = started.elapsed();
    s3.signal("CONT");
    assert_eq!(down.status(), 503);
    assert!(down.headers().contains_key("retry-after"));
    let body: Value = down.json().await.unwrap();
    assert_eq!(
        (
            body["status"].as_str(),
            body["storage"].as_str(),
            body["redis"].as_str()
        ),
        (Some("unavailable"), Some("unavailable"), Some("ok"))
    );
    assert!(took < Duration::from_secs(5), "readiness took {took:?}");
    let again = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(again.status(), 200, "ready again once storage answers");
    app.stop().await;
}

/// Runs `name` with `args` to its end: exit code and standard error.
fn run(name: &str, args: &[&str]) -> (Option<i32>, String) {
    let dir = TempDir::new("imagepipe-start");
    let output = Command::new(binary(name))
        .args(args)
        .current_dir(dir.path())
        .env("RUST_LOG", "off")
        .output()
        .expect("run");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn the_binaries_exit_1_with_one_line_for_unusable_redis_or_storage() {
    let dead_redis = format!("redis://127.0.0.1:{}/0", fixtures::servers::free_port());
    let cases: [(&str, Vec<&str>, &str); 4] = [
        (
            "gateway",
            vec!["--redis-url", &dead_redis],
            "cannot use Redis at",
        ),
        (
            "worker",
            vec!["--redis-url", &dead_redis],
            "cannot use Redis at",
        ),
        (
            "gateway",
            vec!["--storage", "ftp://nowhere"],
            "cannot use storage ftp://nowhere",
        ),
        (
            "worker",
            vec!["--storage", "ftp://nowhere"],
            "cannot use storage ftp://nowhere",
        ),
    ];
    let redis = redis_url();
    for (name, mut args, expected) in cases {
        if !args.contains(&"--redis-url") {
            args.extend(["--redis-url", redis.as_str()]);
        }
        if name == "gateway" {
            args.extend(["--listen", "127.0.0.1:0"]);
        }
        let started = Instant::now();
        let (code, stderr) = run(name, &args);
        assert_eq!(code, Some(1), "{name} {args:?}: {stderr}");
        let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
        assert_eq!(lines.len(), 1, "{name} {args:?}: one line, got {stderr:?}");
        assert!(
            lines[0].starts_with(&format!("{name}: ")) && lines[0].contains(expected),
            "{name} {args:?}: {stderr}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "{name} took {:?} to give up",
            started.elapsed()
        );
    }
}

#[tokio::test]
async fn sigterm_lets_an_upload_in_flight_finish_and_its_job_runs() {
    let cluster = Cluster::start().await;
    let photo = corpus("jpeg/kodim05.jpg");
    let (tx, rx) = tokio::sync::mpsc::channel::<Result<Vec<u8>, std::io::Error>>(4);
    let body = reqwest::Body::wrap_stream(tokio_stream_of(rx));
    let url = format!("{}/v1/jobs?w=64&format=webp", cluster.address);
    let request = tokio::spawn(
        cluster
            .http
            .post(url)
            .header("content-length", photo.len())
            .body(body)
            .send(),
    );
    let half = photo.len() / 2;
    tx.send(Ok(photo[..half].to_vec())).await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    cluster.gateway.signal("TERM");
    tokio::time::sleep(Duration::from_millis(300)).await;
    tx.send(Ok(photo[half..].to_vec())).await.unwrap();
    drop(tx);
    let response = request.await.unwrap().unwrap();
    assert_eq!(response.status(), 202, "the upload in flight is finished");
    let id = response.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let record = cluster
        .queue
        .get(&id)
        .await
        .unwrap()
        .expect("the job is queued");
    assert_eq!(record.status, pipeline::job::JobStatus::Queued);
    // The job runs: a worker takes it though the gateway is gone.
    let mut worker = cluster.worker(&[]);
    let started = Instant::now();
    loop {
        let record = cluster.queue.get(&id).await.unwrap().unwrap();
        if record.status == pipeline::job::JobStatus::Succeeded {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{record:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(10));
    cluster.queue.purge().await.ok();
}

/// A stream of the chunks sent on `rx`.
fn tokio_stream_of(
    rx: tokio::sync::mpsc::Receiver<Result<Vec<u8>, std::io::Error>>,
) -> impl futures::Stream<Item = Result<Vec<u8>, std::io::Error>> {
    futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|c| (c, rx)) })
}

#[tokio::test]
async fn worker_gc_deletes_orphans_spares_live_outputs_and_dry_run_deletes_nothing() {
    let cluster = Cluster::start().await;
    let mut worker = cluster.worker(&[]);
    let id = cluster.submit(corpus("jpeg/kodim07.jpg"), THUMB_SPEC).await;
    let done = cluster
        .wait_all(std::slice::from_ref(&id), Duration::from_secs(30))
        .await;
    assert_eq!(done[0]["status"], "succeeded");
    worker.signal("TERM");
    worker.wait_exit(Duration::from_secs(10));
    // Orphans: objects of a job whose record is gone, and an upload nobody made a job of.
    let objects = cluster.dir.path().join("objects");
    let orphan_job = pipeline::job::new_job_id();
    for path in [
        format!("originals/{orphan_job}"),
        format!("outputs/{orphan_job}/thumb.webp"),
        format!("uploads/{}", uuid::Uuid::new_v4()),
    ] {
        let file = objects.join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, b"orphan").unwrap();
    }
    let count = || walk(&objects);
    let before = count();
    let gc = |extra: &[&str]| {
        let mut args = vec!["gc".to_owned(), "--grace".into(), "0s".into()];
        args.extend(cluster.connection_args());
        args.extend(extra.iter().map(|s| s.to_string()));
        let output = Command::new(binary("worker"))
            .args(&args)
            .output()
            .expect("worker gc");
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        serde_json::from_slice::<Value>(&output.stdout).expect("one JSON report")
    };
    let dry = gc(&["--dry-run"]);
    assert_eq!(dry["deleted"], 3, "{dry}");
    assert_eq!(count(), before, "a dry run deletes nothing");
    let swept = gc(&[]);
    assert_eq!(swept["deleted"], 3, "{swept}");
    assert_eq!(count(), before - 3);
    // The live job's original and outputs are all still served.
    let job = cluster.job(&id).await;
    for output in job["outputs"].as_array().unwrap() {
        let fetched = cluster
            .http
            .get(output["url"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(fetched.status(), 200, "{output}");
    }
    assert!(objects.join("originals").join(&id).exists());
    cluster.queue.purge().await.ok();
}

/// How many files lie under `dir`.
fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    let path = e.path();
                    if path.is_dir() {
                        walk(&path)
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}
