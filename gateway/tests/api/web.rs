//! Serving web products (API.md § Delivery to browsers, § Cancellation): signed output URLs in
//! `<img>` on another origin with API keys on, CORS from a real browser, sprite tracks with
//! signed sheet URLs, keep-alives on quiet event streams, presigned URLs for the public S3
//! origin, and a running job cancelled at once.

use std::time::{Duration, Instant};

use fixtures::servers::{unique, S3Server};
use futures::StreamExt;
use pipeline::signing::UrlSigner;
use serde_json::{json, Value};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::browser::Browser;
use crate::helpers::{corpus, spawn_app, use_test_s3_credentials, AppOptions, JsonBody, TestApp};

const KEY: &str = "alice-key-0123456789";
const SIGNING_KEY: &str = "test-url-signing-key";
const TWO_OUTPUTS: &str = r#"{"outputs":[
    {"name":"thumb","ops":[{"op":"resize","width":120}],"format":"png"},
    {"name":"small","ops":[{"op":"resize","width":60}],"format":"jpeg"}]}"#;

/// A web page on an origin of its own: every request gets the same empty HTML page.
struct PageServer {
    origin: String,
    task: tokio::task::JoinHandle<()>,
}

impl PageServer {
    async fn start() -> PageServer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let origin = format!("http://127.0.0.1:{}", listener.local_addr().unwrap().port());
        let task = tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                tokio::spawn(async move {
                    let mut head = [0u8; 4096];
                    let _ = socket.read(&mut head).await;
                    let page = "<!doctype html><title>a product page</title><body></body>";
                    let response = format!(
                        "HTTP/1.1 200 OK\r\ncontent-type: text/html\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{page}",
                        page.len()
                    );
                    let _ = socket.write_all(response.as_bytes()).await;
                });
            }
        });
        PageServer { origin, task }
    }
}

impl Drop for PageServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// A gateway with keys on, signed URLs, CORS for `cors`, and one embedded worker.
async fn web_app(cors: Vec<String>) -> TestApp {
    spawn_app(AppOptions {
        embedded_workers: 1,
        api_keys: Some(KEY.into()),
        tweak: Some(Box::new(move |settings| {
            settings.webhooks.url_signing_key = Some(SIGNING_KEY.into());
            settings.cors_origins = cors;
        })),
        ..AppOptions::default()
    })
    .await
}

/// Submits with the key and waits for the job to end; returns it.
async fn run_with_key(app: &TestApp, file: Vec<u8>, spec: &str) -> Value {
    let response = app.submit_as(file, Some(spec), Some(KEY)).await;
    let id = crate::helpers::accepted_id(response).await;
    let started = Instant::now();
    loop {
        let job: Value = app
            .http
            .get(app.url(&format!("/v1/jobs/{id}")))
            .bearer_auth(KEY)
            .json_body()
            .await;
        if matches!(job["status"].as_str(), Some("succeeded" | "failed")) {
            assert_eq!(job["status"], "succeeded", "{job}");
            return job;
        }
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn status_of(app: &TestApp, url: &str) -> u16 {
    app.http.get(url).send().await.unwrap().status().as_u16()
}

#[tokio::test]
async fn signed_output_urls_need_no_key_and_refuse_any_change() {
    let app = web_app(Vec::new()).await;
    let job = run_with_key(&app, corpus("jpeg/kodim03.jpg"), TWO_OUTPUTS).await;
    let thumb = job["outputs"][0]["url"].as_str().unwrap();
    let small = job["outputs"][1]["url"].as_str().unwrap();
    assert!(
        thumb.contains("?exp=") && thumb.contains("&sig="),
        "{thumb}"
    );
    // Whoever holds the URL reads the output, no key needed.
    let png = app.bytes(thumb).await;
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 120);
    // Unsigned, it still needs the key.
    let (unsigned, query) = thumb.split_once('?').unwrap();
    assert_eq!(status_of(&app, unsigned).await, 401);
    // Any change is refused: another output under the same signature, another expiry, a
    // flipped digit of the signature.
    let other_output = format!("{}?{query}", small.split_once('?').unwrap().0);
    let exp = query
        .split('&')
        .find_map(|p| p.strip_prefix("exp="))
        .unwrap();
    let later = thumb.replace(
        &format!("exp={exp}"),
        &format!("exp={}", exp.parse::<u64>().unwrap() + 1),
    );
    let last = thumb.chars().last().unwrap();
    let flipped = format!(
        "{}{}",
        &thumb[..thumb.len() - 1],
        if last == '0' { '1' } else { '0' }
    );
    for altered in [other_output, later, flipped] {
        let response = app.http.get(&altered).send().await.unwrap();
        assert_eq!(response.status(), 401, "{altered}");
        let problem: Value = response.json().await.unwrap();
        assert_eq!(problem["code"], "unauthorized", "{problem}");
    }
    // Expired: signed with the same key long ago.
    let signer = UrlSigner::new(SIGNING_KEY, Duration::from_secs(60)).unwrap();
    let path = unsigned.trim_start_matches(&app.address);
    let now = pipeline::job::now_ms() / 1000;
    let expired = app.url(&signer.sign(path, now - 3600));
    assert_eq!(status_of(&app, &expired).await, 401);
    let fresh = app.url(&signer.sign(path, now));
    assert_eq!(status_of(&app, &fresh).await, 200);
    app.stop().await;
}

#[tokio::test]
async fn a_sprite_track_names_signed_sheet_urls() {
    let app = web_app(Vec::new()).await;
    let spec = r#"{"video":{"frames":{"count":4}},"sprite":{"columns":2,"width":64},
        "outputs":[{"name":"f","ops":[{"op":"resize","width":64}],"format":"jpeg"}]}"#;
    let job = run_with_key(&app, corpus("video/slideshow-vp8.webm"), spec).await;
    let outputs = job["outputs"].as_array().unwrap();
    let track = outputs
        .iter()
        .find(|o| o["name"] == "sprite_vtt")
        .expect("a track");
    let vtt = String::from_utf8(app.bytes(track["url"].as_str().unwrap()).await).unwrap();
    assert!(vtt.starts_with("WEBVTT"), "{vtt}");
    let cues: Vec<&str> = vtt.lines().filter(|l| l.contains("#xywh=")).collect();
    assert_eq!(cues.len(), 4, "{vtt}");
    for cue in cues {
        let (url, _) = cue.split_once('#').unwrap();
        assert!(
            url.contains("/outputs/sprite?exp=") && url.contains("&sig="),
            "{cue}"
        );
        let sheet = app.bytes(url).await;
        assert_eq!(image::load_from_memory(&sheet).unwrap().width(), 128);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pages_on_other_origins_show_signed_outputs_and_call_the_api_only_when_listed() {
    let listed = PageServer::start().await;
    let unlisted = PageServer::start().await;
    let app = web_app(vec![listed.origin.clone()]).await;
    let job = run_with_key(&app, corpus("jpeg/kodim05.jpg"), TWO_OUTPUTS).await;
    let thumb = job["outputs"][0]["url"].as_str().unwrap().to_owned();
    let tampered = thumb.replace("/outputs/thumb?", "/outputs/small?");
    let job_url = app.url(&format!("/v1/jobs/{}", job["id"].as_str().unwrap()));

    let browser = Browser::start().await;
    let show = |src: &str| {
        format!(
            "const done = arguments[arguments.length - 1];
             const img = document.createElement('img');
             img.onload = () => done(img.naturalWidth);
             img.onerror = () => done(-1);
             img.src = {};
             document.body.appendChild(img);",
            json!(src)
        )
    };
    let call = format!(
        "const done = arguments[arguments.length - 1];
         fetch({}, {{ headers: {{ 'Authorization': 'Bearer {KEY}', 'Idempotency-Key': 'x' }} }})
           .then(r => r.json()).then(j => done(j.status)).catch(e => done('blocked: ' + e));",
        json!(job_url)
    );
    browser.open(&format!("{}/", listed.origin)).await;
    assert_eq!(browser.eval_async(&show(&thumb)).await, json!(120));
    assert_eq!(browser.eval_async(&show(&tampered)).await, json!(-1));
    assert_eq!(browser.eval_async(&call).await, json!("succeeded"));
    browser
        .screenshot("signed-output-on-another-origin.png")
        .await;

    // A page on an origin that is not listed still shows signed outputs (an <img> needs no
    // CORS), but cannot read the API's answers.
    browser.open(&format!("{}/", unlisted.origin)).await;
    assert_eq!(browser.eval_async(&show(&thumb)).await, json!(120));
    let blocked = browser.eval_async(&call).await;
    assert!(
        blocked.as_str().is_some_and(|s| s.starts_with("blocked")),
        "{blocked}"
    );
    browser.close().await;

    // The preflight as the browser sent it, answered for the listed origin only.
    for (origin, allowed) in [(&listed.origin, true), (&unlisted.origin, false)] {
        let response = app
            .http
            .request(reqwest::Method::OPTIONS, &job_url)
            .header("origin", origin.as_str())
            .header("access-control-request-method", "DELETE")
            .header(
                "access-control-request-headers",
                "authorization,idempotency-key",
            )
            .send()
            .await
            .unwrap();
        let allow_origin = response.headers().get("access-control-allow-origin");
        assert_eq!(allow_origin.is_some(), allowed, "{origin}: {response:?}");
    }
    app.stop().await;
}

/// Reads an SSE response for `long`, returning each chunk with when it came.
async fn read_for(response: reqwest::Response, long: Duration) -> Vec<(Duration, String)> {
    let started = Instant::now();
    let mut body = response.bytes_stream();
    let mut chunks = Vec::new();
    while let Ok(Some(Ok(chunk))) =
        tokio::time::timeout(long.saturating_sub(started.elapsed()), body.next()).await
    {
        chunks.push((
            started.elapsed(),
            String::from_utf8_lossy(&chunk).into_owned(),
        ));
    }
    chunks
}

#[tokio::test]
async fn quiet_event_streams_send_keep_alives() {
    // No workers: the job stays queued and its stream has nothing to say.
    let app = spawn_app(AppOptions::default()).await;
    let id = app
        .submit_ok(corpus("jpeg/kodim12.jpg"), crate::helpers::THUMB_SPEC)
        .await;
    let job_events = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .send();
    let dashboard = app.http.get(app.url("/v1/events")).send();
    let (job_events, dashboard) = tokio::join!(job_events, dashboard);
    let long = Duration::from_secs(17);
    let (job_chunks, dashboard_chunks) = tokio::join!(
        read_for(job_events.unwrap(), long),
        read_for(dashboard.unwrap(), long)
    );
    for chunks in [&job_chunks, &dashboard_chunks] {
        let mut last = Duration::ZERO;
        for (at, _) in chunks {
            assert!(
                *at - last <= Duration::from_secs(15),
                "a silence of {:?}: {chunks:?}",
                *at - last
            );
            last = *at;
        }
        assert!(long - last <= Duration::from_secs(15), "{chunks:?}");
    }
    assert!(job_chunks[0].1.starts_with("event: job"), "{job_chunks:?}");
    assert!(
        job_chunks
            .iter()
            .any(|(_, c)| c.starts_with(": keep-alive")),
        "{job_chunks:?}"
    );
    app.stop().await;
}

#[tokio::test]
async fn clients_are_given_presigned_urls_for_the_public_s3_origin() {
    use_test_s3_credentials();
    let s3 = S3Server::start();
    let bucket = unique("public");
    s3.create_bucket(&bucket);
    // The services reach the store at 127.0.0.1, clients at localhost: two origins, one server.
    let public = s3.endpoint.replace("127.0.0.1", "localhost");
    let public_endpoint = public.clone();
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        storage: Some(format!("s3://{bucket}")),
        s3_endpoint: Some(s3.endpoint.clone()),
        tweak: Some(Box::new(move |settings| {
            settings.connection.s3_public_endpoint = Some(public_endpoint);
        })),
        ..AppOptions::default()
    })
    .await;
    // Presigned uploads: the URL a client is given is the public one, and it works.
    let ticket: Value = app.http.post(app.url("/v1/uploads")).json_body().await;
    assert!(
        ticket["url"].as_str().unwrap().starts_with(&public),
        "{ticket}"
    );
    crate::uploads::presigned_round_trip(&app).await;
    // Output redirects too.
    let id = app
        .submit_ok(
            corpus("jpeg/kodim19.jpg"),
            r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":100}],"format":"png"}]}"#,
        )
        .await;
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    let redirect = app
        .http
        .get(job["outputs"][0]["url"].as_str().unwrap())
        .send()
        .await
        .unwrap();
    assert_eq!(redirect.status(), 307);
    let location = redirect.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with(&public), "{location}");
    let png = reqwest::get(&location).await.unwrap();
    assert_eq!(png.status(), 200, "{location}");
    let png = png.bytes().await.unwrap();
    assert_eq!(image::load_from_memory(&png).unwrap().width(), 100);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_running_job_is_cancelled_at_once_and_leaves_nothing_behind() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        // Lease renewals every 10 s: a prompt cancel cannot be their doing.
        tweak: Some(Box::new(|settings| {
            settings.queue.visibility_timeout = Duration::from_secs(30);
        })),
        ..AppOptions::default()
    })
    .await;
    // A long frame job: a hundred large PNG frames on one engine thread.
    let long = r#"{"video":{"frames":{"count":100}},
        "outputs":[{"name":"f","ops":[{"op":"resize","width":1280}],"format":"png"}]}"#;
    let id = app
        .submit_ok(corpus("video/slideshow-h264-aac.mp4"), long)
        .await;
    let started = Instant::now();
    loop {
        let job = app.job(&id).await;
        if job["status"] == "running" && job["progress"].as_u64().unwrap_or(0) > 10 {
            break;
        }
        assert!(
            matches!(job["status"].as_str(), Some("queued" | "running")),
            "{job}"
        );
        assert!(started.elapsed() < Duration::from_secs(60), "{job}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let asked = Instant::now();
    let response = app
        .http
        .delete(app.url(&format!("/v1/jobs/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    let took = asked.elapsed();
    println!("CANCEL running frame job: cancelled {took:?} after DELETE");
    assert_eq!(job["status"], "cancelled", "{job}");
    assert!(
        took < Duration::from_secs(1),
        "cancelled only after {took:?}"
    );
    assert!(job["outputs"].as_array().unwrap().is_empty(), "{job}");
    let left = walk(&app.storage_dir)
        .into_iter()
        .filter(|p| p.contains(&format!("/outputs/{id}")))
        .collect::<Vec<_>>();
    assert!(left.is_empty(), "outputs left in storage: {left:?}");
    // The same worker is free again at once.
    let next = Instant::now();
    let small = app
        .submit_ok(corpus("jpeg/kodim12.jpg"), crate::helpers::THUMB_SPEC)
        .await;
    let done = app.wait_for(&small, Duration::from_secs(30)).await;
    assert_eq!(done["status"], "succeeded");
    println!("CANCEL next small job done {:?} later", next.elapsed());
    assert!(
        next.elapsed() < Duration::from_secs(3),
        "{:?}",
        next.elapsed()
    );
    app.stop().await;
}

/// Every file under `dir`, as paths.
fn walk(dir: &std::path::Path) -> Vec<String> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path.display().to_string());
        }
    }
    files
}
