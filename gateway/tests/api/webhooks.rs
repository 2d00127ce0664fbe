//! Webhooks: the final record, HMAC-signed, to a receiver on loopback; SSRF targets refused,
//! on the first hop and behind redirects from a trusted host.

use std::collections::HashMap;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use serde_json::Value;
use sha2::Sha256;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::helpers::{corpus, problem, spawn_app, AppOptions};

struct Received {
    headers: HashMap<String, String>,
    body: Vec<u8>,
}

/// A minimal HTTP receiver on loopback that answers 200 to everything.
async fn receiver() -> (String, tokio::sync::mpsc::UnboundedReceiver<Received>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                let (head_end, length) = loop {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        return;
                    }
                    data.extend_from_slice(&buf[..n]);
                    if let Some(end) = data.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&data[..end]).to_lowercase();
                        let length = head
                            .lines()
                            .find_map(|l| l.strip_prefix("content-length:"))
                            .and_then(|v| v.trim().parse::<usize>().ok())
                            .unwrap_or(0);
                        break (end + 4, length);
                    }
                };
                while data.len() < head_end + length {
                    let n = socket.read(&mut buf).await.unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    data.extend_from_slice(&buf[..n]);
                }
                let head = String::from_utf8_lossy(&data[..head_end]).to_string();
                let headers = head
                    .lines()
                    .skip(1)
                    .filter_map(|l| l.split_once(':'))
                    .map(|(k, v)| (k.trim().to_lowercase(), v.trim().to_owned()))
                    .collect();
                let _ = socket
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
                let _ = tx.send(Received {
                    headers,
                    body: data[head_end..].to_vec(),
                });
            });
        }
    });
    (url, rx)
}

#[tokio::test]
async fn the_final_record_is_delivered_signed() {
    let secret = "webhook-secret-for-tests";
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        webhook_secret: Some(secret.into()),
        webhook_allow_private: true,
        ..Default::default()
    })
    .await;
    let (url, mut received) = receiver().await;
    let spec = format!(
        r#"{{"outputs":[{{"name":"t","ops":[{{"op":"resize","width":32}}]}}],"webhook":{{"url":"{url}"}}}}"#
    );
    let id = app.submit_ok(corpus("jpeg/kodim16.jpg"), &spec).await;
    let call = tokio::time::timeout(Duration::from_secs(30), received.recv())
        .await
        .expect("a webhook")
        .unwrap();
    assert_eq!(call.headers["content-type"], "application/json");
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&call.body);
    let expected = format!(
        "sha256={}",
        mac.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    );
    assert_eq!(
        call.headers["x-imagepipe-signature"], expected,
        "HMAC-SHA256 of the body under the secret"
    );
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(
        (body["id"].as_str(), body["status"].as_str()),
        (Some(id.as_str()), Some("succeeded"))
    );
    assert_eq!(body["outputs"][0]["width"], 32);
    // The record says how delivery went.
    let started = std::time::Instant::now();
    loop {
        let job = app.job(&id).await;
        if job["webhook"]
            .as_str()
            .is_some_and(|w| w.starts_with("delivered"))
        {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    app.stop().await;
}

#[tokio::test]
async fn webhooks_to_private_or_metadata_addresses_are_refused() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    for target in [
        "http://127.0.0.1:9/hook",
        "http://10.1.2.3/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]/hook",
        "http://[::ffff:127.0.0.1]/hook",
        "http://0.0.0.0/hook",
    ] {
        let spec = format!(r#"{{"outputs":[{{"name":"t"}}],"webhook":{{"url":"{target}"}}}}"#);
        let response = app.submit(corpus("jpeg/kodim17.jpg"), Some(&spec)).await;
        let body = problem(response, 400, "bad_spec").await;
        assert_eq!(body["field"], "webhook.url", "{target}");
    }
    // A name that resolves to loopback passes the literal check but is refused at delivery,
    // where the address connected to is checked.
    let (url, mut received) = receiver().await;
    let port = url.split(':').nth(2).unwrap().split('/').next().unwrap();
    let spec = format!(
        r#"{{"outputs":[{{"name":"t","ops":[{{"op":"resize","width":16}}]}}],"webhook":{{"url":"http://localhost:{port}/hook"}}}}"#
    );
    let id = app.submit_ok(corpus("jpeg/kodim17.jpg"), &spec).await;
    assert_eq!(
        app.wait_for(&id, Duration::from_secs(30)).await["status"],
        "succeeded"
    );
    let started = std::time::Instant::now();
    let status = loop {
        let job = app.job(&id).await;
        if let Some(status) = job["webhook"].as_str() {
            break status.to_owned();
        }
        assert!(started.elapsed() < Duration::from_secs(10), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        status.starts_with("refused:") && status.contains("private or metadata address"),
        "{status}"
    );
    assert!(
        received.try_recv().is_err(),
        "nothing reached the private address"
    );
    app.stop().await;
}

/// A server on loopback that answers every request with a 307 to `location`.
async fn redirector(location: String) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut socket, _)) = listener.accept().await {
            let location = location.clone();
            tokio::spawn(async move {
                let mut data = Vec::new();
                let mut buf = [0u8; 8192];
                while !data.windows(4).any(|w| w == b"\r\n\r\n") {
                    match socket.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => data.extend_from_slice(&buf[..n]),
                    }
                }
                let reply = format!(
                    "HTTP/1.1 307 Temporary Redirect\r\nlocation: {location}\r\ncontent-length: 0\r\nconnection: close\r\n\r\n"
                );
                let _ = socket.write_all(reply.as_bytes()).await;
            });
        }
    });
    address.to_string()
}

/// The job's webhook delivery status, once there is one.
async fn webhook_status(app: &crate::helpers::TestApp, id: &str) -> String {
    let started = std::time::Instant::now();
    loop {
        let job = app.job(id).await;
        if let Some(status) = job["webhook"].as_str() {
            if !status.starts_with("retrying") {
                return status.to_owned();
            }
        }
        assert!(started.elapsed() < Duration::from_secs(20), "{job}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn redirects_from_a_trusted_host_to_private_addresses_are_refused() {
    // The victim: a loopback service nobody listed as trusted.
    let (victim, mut victim_calls) = receiver().await;
    let victim_port = victim.split(':').nth(2).unwrap().split('/').next().unwrap();
    // A trusted receiver, to show redirects are followed where they may go.
    let (trusted, mut trusted_calls) = receiver().await;
    let trusted_host = trusted
        .trim_start_matches("http://")
        .trim_end_matches("/hook");
    let targets = [
        victim.clone(),
        format!("http://localhost:{victim_port}/hook"),
        format!("http://[::ffff:127.0.0.1]:{victim_port}/hook"),
        format!("http://[::1]:{victim_port}/hook"),
        "http://169.254.169.254/latest/meta-data/".to_owned(),
        "http://10.0.0.1/hook".to_owned(),
    ];
    let mut redirectors = Vec::new();
    for target in targets.iter().chain([&trusted]) {
        redirectors.push((target.clone(), redirector(target.clone()).await));
    }
    let mut allow_hosts: Vec<String> = redirectors.iter().map(|(_, r)| r.clone()).collect();
    allow_hosts.push(trusted_host.to_owned());
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        webhook_allow_hosts: allow_hosts,
        ..Default::default()
    })
    .await;
    // A trusted host on another port is still refused at submission.
    let spec = format!(
        r#"{{"outputs":[{{"name":"t"}}],"webhook":{{"url":"http://127.0.0.1:{victim_port}/hook"}}}}"#
    );
    let response = app.submit(corpus("jpeg/kodim17.jpg"), Some(&spec)).await;
    assert_eq!(
        problem(response, 400, "bad_spec").await["field"],
        "webhook.url"
    );

    for (target, redirector) in &redirectors {
        let spec = format!(
            r#"{{"outputs":[{{"name":"t","ops":[{{"op":"resize","width":16}}]}}],"webhook":{{"url":"http://{redirector}/hook"}}}}"#
        );
        let id = app.submit_ok(corpus("jpeg/kodim17.jpg"), &spec).await;
        assert_eq!(
            app.wait_for(&id, Duration::from_secs(30)).await["status"],
            "succeeded"
        );
        let status = webhook_status(&app, &id).await;
        println!("SSRF redirect to {target}: {status}");
        if target == &trusted {
            assert!(status.starts_with("delivered"), "{target}: {status}");
            let call = tokio::time::timeout(Duration::from_secs(5), trusted_calls.recv())
                .await
                .expect("the trusted receiver is called")
                .unwrap();
            let body: Value = serde_json::from_slice(&call.body).unwrap();
            assert_eq!(body["id"], id.as_str());
        } else {
            assert!(
                status.starts_with("refused:")
                    && (status.contains("redirect refused")
                        || status.contains("private or metadata address")),
                "{target}: {status}"
            );
        }
    }
    assert!(
        victim_calls.try_recv().is_err(),
        "no redirect reached the private service"
    );
    app.stop().await;
}

/// A receiver that fails its first calls — a 503, then a connection dropped without an answer —
/// and takes the third: the times calls arrived, and the third call.
async fn flaky_receiver() -> (
    String,
    tokio::sync::mpsc::UnboundedReceiver<(std::time::Instant, Option<Received>)>,
) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let (ok_url, mut ok_calls) = receiver().await;
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut calls = 0;
        while let Ok((mut socket, _)) = listener.accept().await {
            calls += 1;
            let arrived = std::time::Instant::now();
            let mut buf = [0u8; 4096];
            let _ = socket.read(&mut buf).await;
            match calls {
                1 => {
                    let _ = socket
                        .write_all(b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                        .await;
                    let _ = tx.send((arrived, None));
                }
                2 => {
                    drop(socket); // no answer at all
                    let _ = tx.send((arrived, None));
                }
                _ => {
                    // Forward the whole request to a receiver that reads it and answers 200.
                    let mut upstream = tokio::net::TcpStream::connect(
                        ok_url
                            .trim_start_matches("http://")
                            .trim_end_matches("/hook"),
                    )
                    .await
                    .unwrap();
                    let n = buf.iter().rposition(|b| *b != 0).map_or(0, |i| i + 1);
                    upstream.write_all(&buf[..n]).await.unwrap();
                    let (mut down, mut up) = (socket, upstream);
                    let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    let _ = tx.send((arrived, ok_calls.recv().await));
                }
            }
        }
    });
    (url, rx)
}

#[tokio::test]
async fn failed_deliveries_are_retried_with_backoff_and_the_receiver_can_check_the_signature() {
    let secret = "webhook-secret-for-retries";
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        webhook_secret: Some(secret.into()),
        webhook_allow_private: true,
        ..Default::default()
    })
    .await;
    let (url, mut calls) = flaky_receiver().await;
    let spec = format!(
        r#"{{"outputs":[{{"name":"t","ops":[{{"op":"resize","width":16}}]}}],"webhook":{{"url":"{url}"}}}}"#
    );
    let id = app.submit_ok(corpus("jpeg/kodim17.jpg"), &spec).await;
    let mut arrivals = Vec::new();
    let mut delivered = None;
    while delivered.is_none() {
        let (at, call) = tokio::time::timeout(Duration::from_secs(30), calls.recv())
            .await
            .expect("another attempt")
            .unwrap();
        arrivals.push(at);
        delivered = call;
    }
    assert_eq!(
        arrivals.len(),
        3,
        "a 503 and a dropped connection are retried"
    );
    let gaps: Vec<Duration> = arrivals.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(
        gaps[0] >= Duration::from_millis(1900) && gaps[1] >= Duration::from_millis(3900),
        "backoff doubles from 2 s: {gaps:?}"
    );
    let call = delivered.unwrap();
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(&call.body);
    let signature = call.headers["x-imagepipe-signature"]
        .strip_prefix("sha256=")
        .unwrap()
        .to_owned();
    let bytes: Vec<u8> = (0..signature.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&signature[i..i + 2], 16).unwrap())
        .collect();
    mac.verify_slice(&bytes)
        .expect("the receiver verifies the body against the signature");
    let body: Value = serde_json::from_slice(&call.body).unwrap();
    assert_eq!(body["id"], id.as_str());
    let status = webhook_status(&app, &id).await;
    assert!(
        status.starts_with("delivered (HTTP 200, attempt 3)"),
        "{status}"
    );
    app.stop().await;
}
