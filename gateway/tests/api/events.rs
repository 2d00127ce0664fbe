//! Server-Sent Events: the job at once, then every change, ending with the final status.

use std::time::Duration;

use futures::StreamExt;
use pipeline::queue::{Consumer, Outcome, Started};
use serde_json::Value;

use crate::helpers::{corpus, redis_url, spawn_app, AppOptions, THUMB_SPEC};

async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Value>) -> Value {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .expect("an event")
        .expect("open")
}

/// The `job` events of the SSE stream at `url`, as they come (the channel closes with the
/// stream).
pub(crate) async fn follow(
    http: &reqwest::Client,
    url: &str,
) -> tokio::sync::mpsc::UnboundedReceiver<Value> {
    let response = http.get(url).send().await.unwrap();
    assert_eq!(response.status(), 200, "{url}");
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(read_events(response, tx));
    rx
}

/// Reads SSE `job` events from a response until it ends.
pub(crate) async fn read_events(
    response: reqwest::Response,
    tx: tokio::sync::mpsc::UnboundedSender<Value>,
) {
    let mut body = response.bytes_stream();
    let mut buffer = String::new();
    while let Some(Ok(chunk)) = body.next().await {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                let _ = tx.send(serde_json::from_str(data).unwrap());
            }
        }
    }
}

#[tokio::test]
async fn the_event_stream_follows_a_job_to_its_end() {
    let app = spawn_app(AppOptions::default()).await;
    let id = app.submit_ok(corpus("jpeg/kodim12.jpg"), THUMB_SPEC).await;
    let response = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "text/event-stream");
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let reader = tokio::spawn(read_events(response, tx));
    let first = next(&mut rx).await;
    assert_eq!(
        (first["id"].as_str(), first["status"].as_str()),
        (Some(id.as_str()), Some("queued"))
    );

    // Play the worker, step by step.
    let consumer = Consumer::new(
        &app.queue,
        &redis_url(),
        "test-worker".into(),
        Duration::from_secs(1),
    )
    .await
    .unwrap();
    let deliveries = consumer.fetch(1, Duration::ZERO).await.unwrap();
    let Started::Run(lease, _) = consumer.start(&deliveries).await.unwrap().remove(0) else {
        panic!()
    };
    assert_eq!(next(&mut rx).await["status"], "running");
    consumer.progress(&lease, 40).await.unwrap();
    let progress = next(&mut rx).await;
    assert_eq!(
        (progress["status"].as_str(), progress["progress"].as_u64()),
        (Some("running"), Some(40))
    );
    consumer
        .complete(&[(
            lease,
            Outcome::Succeeded {
                outputs: vec![],
                placeholder: None,
                media: None,
            },
        )])
        .await
        .unwrap();
    let last = next(&mut rx).await;
    assert_eq!(
        (last["status"].as_str(), last["progress"].as_u64()),
        (Some("succeeded"), Some(100))
    );
    // And the stream ends after the final status.
    tokio::time::timeout(Duration::from_secs(5), reader)
        .await
        .expect("the stream ends")
        .unwrap();
    assert!(rx.recv().await.is_none());

    // A finished job's stream is one event and done.
    let ended = app
        .http
        .get(app.url(&format!("/v1/jobs/{id}/events")))
        .send()
        .await
        .unwrap();
    let text = tokio::time::timeout(Duration::from_secs(5), ended.text())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(text.matches("event: job").count(), 1);
    app.stop().await;
}
