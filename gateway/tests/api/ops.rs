//! Health, readiness, metrics, the OpenAPI document; Redis going away and coming back.

use std::time::{Duration, Instant};

use fixtures::servers::RedisServer;
use serde_json::Value;

use crate::helpers::JsonBody;
use crate::helpers::{corpus, problem, spawn_app, AppOptions, THUMB_SPEC};

fn metric(text: &str, name: &str) -> Option<f64> {
    text.lines()
        .find(|l| l.starts_with(name) && l[name.len()..].starts_with(' '))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test]
async fn metrics_count_what_was_done() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(app.submit_ok(corpus("jpeg/kodim20.jpg"), THUMB_SPEC).await);
    }
    for id in &ids {
        app.wait_for(id, Duration::from_secs(30)).await;
    }
    let bad = app.submit(b"nope".to_vec(), Some(THUMB_SPEC)).await;
    assert_eq!(bad.status(), 415);
    let text = app
        .http
        .get(app.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        metric(&text, "imagepipe_jobs_total{outcome=\"succeeded\"}"),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "imagepipe_jobs_total{outcome=\"failed\"}"),
        Some(0.0)
    );
    assert_eq!(
        metric(&text, "imagepipe_job_duration_seconds_count"),
        Some(3.0)
    );
    assert_eq!(
        metric(&text, "imagepipe_job_duration_seconds_bucket{le=\"+Inf\"}"),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "imagepipe_queue_depth{priority=\"normal\",state=\"waiting\"}"
        ),
        Some(0.0)
    );
    assert_eq!(metric(&text, "imagepipe_workers_alive"), Some(1.0));
    assert_eq!(
        metric(
            &text,
            "imagepipe_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"202\"}"
        ),
        Some(3.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "imagepipe_http_requests_total{method=\"POST\",route=\"/v1/jobs\",status=\"415\"}"
        ),
        Some(1.0)
    );
    assert!(metric(&text, "imagepipe_upload_bytes_total").unwrap() > 3.0 * 70_000.0);
    app.stop().await;
}

#[tokio::test]
async fn probes_and_the_openapi_document() {
    let app = spawn_app(AppOptions::default()).await;
    assert_eq!(
        app.http
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    let ready: Value = app.http.get(app.url("/readyz")).json_body().await;
    assert_eq!(
        (ready["redis"].as_str(), ready["storage"].as_str()),
        (Some("ok"), Some("ok"))
    );
    let doc: Value = app.http.get(app.url("/openapi.json")).json_body().await;
    assert!(doc["openapi"].as_str().unwrap().starts_with('3'));
    for path in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/events",
        "/v1/jobs/{id}/outputs/{name}",
        "/v1/frames",
        "/v1/uploads",
        "/v1/dead-letter",
        "/v1/dead-letter/{id}/replay",
        "/readyz",
        "/metrics",
    ] {
        assert!(
            doc["paths"][path].is_object(),
            "{path} missing from the OpenAPI document"
        );
    }
    assert!(doc["components"]["schemas"]["JobView"].is_object());
    app.stop().await;
}

#[tokio::test]
async fn redis_down_gives_503_and_the_gateway_recovers_on_its_own() {
    let mut redis = RedisServer::start();
    let app = spawn_app(AppOptions {
        redis_url: redis.url(),
        ..Default::default()
    })
    .await;
    app.submit_ok(corpus("jpeg/kodim21.jpg"), THUMB_SPEC).await;

    redis.kill();
    tokio::time::sleep(Duration::from_millis(200)).await; // past the depth cache
    let down = app
        .submit(corpus("jpeg/kodim21.jpg"), Some(THUMB_SPEC))
        .await;
    let body = problem(down, 503, "unavailable").await;
    assert!(
        !body["detail"].as_str().unwrap().contains("127.0.0.1"),
        "no internals in a 5xx: {body}"
    );
    let listed = app.http.get(app.url("/v1/jobs")).send().await.unwrap();
    assert_eq!(listed.headers()["retry-after"], "5");
    problem(listed, 503, "unavailable").await;
    let ready = app.http.get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);

    redis.restart();
    let started = Instant::now();
    loop {
        let response = app
            .submit(corpus("jpeg/kodim21.jpg"), Some(THUMB_SPEC))
            .await;
        if response.status() == 202 {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(15),
            "still {} after Redis came back",
            response.status()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let jobs: Value = app.http.get(app.url("/v1/jobs")).json_body().await;
    assert_eq!(
        jobs["jobs"].as_array().unwrap().len(),
        2,
        "the job accepted before the outage survived (AOF)"
    );
    app.stop().await;
}
