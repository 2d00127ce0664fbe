//! The dashboard: its data API (`/v1/stats`, `/v1/events`), and the page itself in a real
//! headless Chromium driven through ChromeDriver, against gateway and worker processes.

use std::time::{Duration, Instant};

use fixtures::servers::free_port;
use futures::StreamExt;
use serde_json::{json, Value};

use crate::browser::Browser;
use crate::helpers::JsonBody;
use crate::helpers::{corpus, spawn_app, AppOptions, THUMB_SPEC};
use crate::processes::{Cluster, LIGHT};

const ALICE: &str = "alice-key-0123456789abcdef";
const BOB: &str = "bob-key-0123456789abcdef0";

#[tokio::test]
async fn stats_count_what_was_done_and_survive_a_gateway_restart() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.submit_ok(corpus("jpeg/kodim21.jpg"), THUMB_SPEC).await);
    }
    for id in &ids {
        assert_eq!(
            app.wait_for(id, Duration::from_secs(30)).await["status"],
            "succeeded"
        );
    }
    let stats: Value = app.http.get(app.url("/v1/stats")).json_body().await;
    assert_eq!(stats["totals"]["succeeded"], 3, "{stats}");
    assert_eq!(stats["totals"]["failed"], 0);
    assert_eq!(stats["durations"]["count"], 3);
    assert!(
        stats["durations"]["p50_ms"].as_u64().unwrap()
            <= stats["durations"]["p99_ms"].as_u64().unwrap()
    );
    let minutes = stats["minutes"].as_array().unwrap();
    assert_eq!(minutes.len(), 15);
    let per_minute: u64 = minutes
        .iter()
        .map(|m| m["succeeded"].as_u64().unwrap())
        .sum();
    assert_eq!(per_minute, 3);
    assert_eq!(stats["depth"]["normal"], 0);
    assert_eq!(stats["depth"]["running"], 0);
    assert_eq!(stats["workers"].as_array().unwrap().len(), 1, "{stats}");

    // Everything comes from Redis: another gateway on the same queue (a restarted one, say)
    // shows the same history.
    let mut settings = gateway::Settings::defaults();
    settings.listen = "127.0.0.1:0".into();
    settings.connection.redis_url = crate::helpers::redis_url();
    settings.connection.queue = app.queue.config().name.clone();
    let dir = fixtures::servers::TempDir::new("imagepipe-restart");
    settings.connection.storage = format!("file://{}", dir.path().display());
    let again = gateway::Application::build(settings).await.unwrap();
    let address = format!("http://127.0.0.1:{}", again.port());
    let (_running, shutdown) = pipeline::shutdown::Shutdown::new();
    let server = tokio::spawn(again.run_until(shutdown));
    let seen: Value = reqwest::get(format!("{address}/v1/stats"))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["totals"], stats["totals"], "{seen}");
    assert_eq!(seen["durations"], stats["durations"]);
    assert_eq!(seen["minutes"], stats["minutes"]);
    server.abort();
    app.stop().await;
}

/// Reads SSE events from `response` until `done` says so (or 30 s pass).
async fn read_events(
    response: reqwest::Response,
    mut done: impl FnMut(&[(String, Value)]) -> bool,
) -> Vec<(String, Value)> {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    let mut events = Vec::new();
    let limit = Instant::now() + Duration::from_secs(30);
    while !done(&events) {
        let chunk = tokio::time::timeout_at(limit.into(), body.next())
            .await
            .unwrap_or_else(|_| panic!("events so far: {events:?}"))
            .expect("stream open")
            .unwrap();
        buffer.push_str(std::str::from_utf8(&chunk).unwrap());
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let mut name = String::new();
            let mut data = String::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = n.to_owned();
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push_str(d);
                }
            }
            if !data.is_empty() {
                events.push((name, serde_json::from_str(&data).unwrap()));
            }
        }
    }
    events
}

#[tokio::test]
async fn the_events_stream_carries_stats_and_only_the_callers_jobs() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        api_keys: Some(format!("{ALICE},{BOB}")),
        ..Default::default()
    })
    .await;
    let unauthorized = app.http.get(app.url("/v1/events")).send().await.unwrap();
    assert_eq!(unauthorized.status(), 401);
    assert_eq!(
        app.http
            .get(app.url("/v1/stats"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let alice_events = app
        .http
        .get(app.url("/v1/events"))
        .bearer_auth(ALICE)
        .send()
        .await
        .unwrap();
    assert_eq!(alice_events.status(), 200);
    assert_eq!(alice_events.headers()["content-type"], "text/event-stream");
    let submitted = app
        .submit_as(corpus("jpeg/kodim22.jpg"), Some(THUMB_SPEC), Some(BOB))
        .await;
    assert_eq!(submitted.status(), 202);
    let bobs: Value = submitted.json().await.unwrap();
    let submitted = app
        .submit_as(corpus("jpeg/kodim23.jpg"), Some(THUMB_SPEC), Some(ALICE))
        .await;
    let alices: Value = submitted.json().await.unwrap();
    let alice_id = alices["id"].as_str().unwrap().to_owned();
    let events = read_events(alice_events, |events| {
        events
            .iter()
            .any(|(name, e)| name == "job" && e["id"] == alice_id && e["status"] == "succeeded")
    })
    .await;
    assert_eq!(events[0].0, "stats", "stats come first: {events:?}");
    assert!(events[0].1["depth"]["normal"].is_u64());
    let statuses: Vec<&str> = events
        .iter()
        .filter(|(name, e)| name == "job" && e["id"] == alice_id)
        .map(|(_, e)| e["status"].as_str().unwrap())
        .collect();
    assert_eq!(statuses.first(), Some(&"queued"), "{events:?}");
    assert!(statuses.contains(&"running"), "{events:?}");
    for (name, event) in &events {
        if name == "job" {
            assert_ne!(
                event["id"], bobs["id"],
                "bob's job leaked to alice: {events:?}"
            );
            assert!(event.get("owner").is_none(), "{event}");
        }
    }
    app.stop().await;
}

fn metric_sum(text: &str, name: &str, label: &str) -> f64 {
    text.lines()
        .filter(|l| l.starts_with(name) && l.contains(label))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_shows_queue_depth_workers_and_jobs_live_in_a_browser() {
    let cluster = Cluster::start().await;
    let metrics_port = free_port();
    let worker = cluster.worker(&["--metrics-listen", &format!("127.0.0.1:{metrics_port}")]);
    let started = Instant::now();
    let worker_id = loop {
        if let Some(w) = cluster.queue.workers().await.unwrap().first() {
            break w.id.clone();
        }
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "the worker never registered"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let browser = Browser::start().await;
    browser.open(&format!("{}/", cluster.address)).await;
    let text = |id: &str| format!("return document.getElementById('{id}').textContent");
    let worker_row = format!("return !!document.querySelector('[data-worker=\"{worker_id}\"]')");
    browser.wait_for(&worker_row, json!(true)).await;
    browser.wait_for(&text("depth-normal"), json!("0")).await;
    browser.eval("window.__same_page = true; return null").await;

    // Freeze the worker (after its blocking read has timed out on the server), so the jobs
    // below stay queued while it is still in the registry; the page must follow on its own.
    worker.signal("STOP");
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let mut ids = Vec::new();
    // A video job shows its poster like an image job its thumbnail.
    for input in [
        "jpeg/kodim01.jpg",
        "jpeg/kodim02.jpg",
        "video/black-start.mp4",
    ] {
        ids.push(cluster.submit(corpus(input), LIGHT).await);
    }
    browser.wait_for(&text("depth-normal"), json!("3")).await;
    browser.wait_for(&text("depth-running"), json!("0")).await;
    browser
        .wait_for(
            "return document.querySelectorAll('#recent tr .status.queued').length",
            json!(3),
        )
        .await;
    browser.wait_for(&worker_row, json!(true)).await;
    browser.screenshot("dashboard-queued.png").await;

    // The worker wakes up: the page follows through the events stream, no reload.
    worker.signal("CONT");
    let jobs = cluster.wait_all(&ids, Duration::from_secs(60)).await;
    assert!(jobs.iter().all(|j| j["status"] == "succeeded"), "{jobs:?}");
    browser.wait_for(&text("depth-normal"), json!("0")).await;
    browser.wait_for(&text("total-succeeded"), json!("3")).await;
    browser
        .wait_for(
            "return document.querySelectorAll('#recent tr .status.succeeded').length",
            json!(3),
        )
        .await;
    // Thumbnails of the outputs loaded, the video's poster among them.
    browser
        .wait_for(
            "return [...document.querySelectorAll('#recent img.thumb')].filter(i => i.complete && i.naturalWidth > 0).length",
            json!(3),
        )
        .await;
    assert_eq!(
        browser.eval("return window.__same_page === true").await,
        json!(true)
    );
    let shot = browser.screenshot("dashboard-done.png").await;
    assert!(std::fs::metadata(shot).unwrap().len() > 10_000);
    browser.close().await;

    // The worker's own metrics agree with what it did.
    let text = cluster
        .http
        .get(format!("http://127.0.0.1:{metrics_port}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric_sum(
            &text,
            "imagepipe_worker_jobs_total{",
            "outcome=\"succeeded\""
        ),
        3.0,
        "{text}"
    );
    assert_eq!(
        metric_sum(
            &text,
            "imagepipe_worker_stage_seconds_count{",
            "stage=\"decode\""
        ),
        3.0,
        "{text}"
    );
    assert!(metric_sum(&text, "imagepipe_worker_bytes_in_total", "") > 3.0 * 50_000.0);
    assert!(metric_sum(&text, "imagepipe_worker_pool_busy_microseconds_total", "") > 0.0);
    drop(worker);
    let _ = &cluster.dir;
}
