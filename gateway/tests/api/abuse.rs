//! Abuse over real HTTP: slow clients, uploads past the concurrency limit, oversized headers,
//! path traversal in every id and name position, and a spec asking for 16 huge outputs.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::helpers::{corpus, spawn_app, AppOptions, THUMB_SPEC};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_clients_are_cut_off_and_do_not_block_others() {
    let app = spawn_app(AppOptions::default()).await;
    let address = app.address.trim_start_matches("http://").to_owned();
    // 100 connections that send half a request line and then nothing (slowloris).
    let slow: Vec<TcpStream> = (0..100)
        .map(|_| {
            let mut s = TcpStream::connect(&address).unwrap();
            s.write_all(b"POST /v1/jobs HTTP/1.1\r\nHost: x\r\nContent-Le")
                .unwrap();
            s
        })
        .collect();
    // Meanwhile a normal upload goes through.
    let id = app.submit_ok(corpus("jpeg/kodim15.jpg"), THUMB_SPEC).await;
    assert!(!id.is_empty());
    // Each slow connection is closed by the server, within a bounded time.
    let started = Instant::now();
    let readers: Vec<_> = slow
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 512];
                // Cut off = a 408 answer or the connection closed; still open after 20 s is not.
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => return true,
                        Ok(n) => {
                            answer.extend_from_slice(&buf[..n]);
                            if answer.starts_with(b"HTTP/1.1 408") {
                                return true;
                            }
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                            ) =>
                        {
                            return false
                        }
                        Err(_) => return true,
                    }
                }
            })
        })
        .collect();
    let closed = tokio::task::spawn_blocking(move || {
        readers
            .into_iter()
            .map(|r| r.join().unwrap())
            .filter(|cut| *cut)
            .count()
    })
    .await
    .unwrap();
    assert_eq!(closed, 100);
    assert!(started.elapsed() < Duration::from_secs(20));
    println!(
        "ABUSE slowloris: 100 slow connections closed within {:.1} s; a normal upload went through meanwhile",
        started.elapsed().as_secs_f64()
    );

    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn uploads_past_the_concurrency_limit_get_429_with_retry_after() {
    let app = spawn_app(AppOptions {
        max_concurrent_uploads: Some(8),
        ..Default::default()
    })
    .await;
    let address = app.address.trim_start_matches("http://").to_owned();
    let photo = corpus("jpeg/kodim03.jpg");
    // 40 uploads at once, each sending its head and 64 KB of a 1 MB body, then stalling.
    let uploads: Vec<TcpStream> = (0..40)
        .map(|_| {
            let mut s = TcpStream::connect(&address).unwrap();
            s.write_all(
                b"POST /v1/jobs?w=64 HTTP/1.1\r\nHost: x\r\nContent-Type: image/jpeg\r\nContent-Length: 1000000\r\n\r\n",
            )
            .unwrap();
            s.write_all(&photo[..64 << 10]).unwrap();
            s
        })
        .collect();
    // Each either gets an answer at once or stays waiting for the rest of its body.
    let readers: Vec<_> = uploads
        .into_iter()
        .map(|mut s| {
            std::thread::spawn(move || {
                s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                let mut answer = Vec::new();
                let mut buf = [0u8; 1024];
                while !answer.windows(4).any(|w| w == b"\r\n\r\n") {
                    match s.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => answer.extend_from_slice(&buf[..n]),
                    }
                }
                (String::from_utf8_lossy(&answer).to_lowercase(), s)
            })
        })
        .collect();
    let answers: Vec<(String, TcpStream)> =
        readers.into_iter().map(|r| r.join().unwrap()).collect();
    let refused = answers
        .iter()
        .filter(|(a, _)| a.starts_with("http/1.1 429") && a.contains("retry-after: 1"))
        .count();
    let waiting = answers.iter().filter(|(a, _)| a.is_empty()).count();
    assert_eq!(
        (refused, waiting),
        (32, 8),
        "{:?}",
        answers
            .iter()
            .map(|(a, _)| a.lines().next())
            .collect::<Vec<_>>()
    );
    // When the stalled uploads go, their places come back.
    drop(answers);
    let started = Instant::now();
    loop {
        let response = app
            .submit(corpus("jpeg/kodim03.jpg"), Some(THUMB_SPEC))
            .await;
        match response.status().as_u16() {
            202 => break,
            429 => assert!(started.elapsed() < Duration::from_secs(10), "still 429"),
            other => panic!("{other}"),
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    println!(
        "ABUSE 40 concurrent uploads past a limit of 8: 32 answered 429 (Retry-After: 1) at once, \
         8 held; a new upload was accepted {:.2} s after they went",
        started.elapsed().as_secs_f64()
    );
    app.stop().await;
}

#[tokio::test]
async fn oversized_headers_get_a_4xx() {
    let app = spawn_app(AppOptions::default()).await;
    let response = app
        .http
        .get(app.url("/v1/jobs"))
        .header("x-padding", "a".repeat(256 * 1024))
        .send()
        .await;
    match response {
        Ok(r) => assert!(r.status().is_client_error(), "{}", r.status()),
        // Refusing to read it at all is fine too; the server must still answer others.
        Err(e) => assert!(e.is_request() || e.is_connect() || e.is_body(), "{e}"),
    }
    let many = {
        let mut request = app.http.get(app.url("/healthz"));
        for i in 0..200 {
            request = request.header(format!("x-h{i}"), "v");
        }
        request.send().await
    };
    if let Ok(r) = many {
        assert!(r.status().is_success() || r.status().is_client_error());
    }
    let ok = app.http.get(app.url("/healthz")).send().await.unwrap();
    assert_eq!(ok.status(), 200);
    app.stop().await;
}

#[tokio::test]
async fn path_traversal_in_every_id_and_name_position_is_a_404() {
    let app = spawn_app(AppOptions::default()).await;
    let id = app.submit_ok(corpus("jpeg/kodim16.jpg"), THUMB_SPEC).await;
    let evil = [
        "..%2F..%2F..%2Fetc%2Fpasswd",
        "..%2f..%2fobjects",
        "%2e%2e%2f%2e%2e%2f",
        "....%2F%2F",
        "..%5C..%5Cwindows",
        "%00",
        "a%00.jpg",
    ];
    for bad in evil {
        for (method, path) in [
            ("GET", format!("/v1/jobs/{bad}")),
            ("DELETE", format!("/v1/jobs/{bad}")),
            ("GET", format!("/v1/jobs/{bad}/events")),
            ("GET", format!("/v1/jobs/{bad}/outputs/default")),
            ("GET", format!("/v1/jobs/{id}/outputs/{bad}")),
            ("POST", format!("/v1/dead-letter/{bad}/replay")),
            ("PUT", format!("/v1/uploads/{bad}")),
        ] {
            let method: reqwest::Method = method.parse().unwrap();
            let response = app
                .http
                .request(method.clone(), app.url(&path))
                .body("x")
                .send()
                .await
                .unwrap();
            let status = response.status().as_u16();
            assert!(
                status == 404 || status == 400,
                "{method} {path}: {status} {:?}",
                response.text().await
            );
        }
    }
    // Nothing was written outside the storage directory.
    let outside = app.storage_dir.parent().unwrap();
    for entry in std::fs::read_dir(outside).unwrap() {
        let name = entry.unwrap().file_name();
        assert_eq!(name, "objects", "unexpected {name:?} beside the storage");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sixteen_huge_outputs_are_bounded_work() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        ..Default::default()
    })
    .await;
    // Over the pixel limit per output, then each just under it (99 MP, 1.6 GP together): both
    // refused before any work.
    for side in [16384, 9949] {
        let outputs: Vec<String> = (0..16)
            .map(|i| {
                format!(
                    r#"{{"name":"o{i}","ops":[{{"op":"resize","width":{side},"height":{side},"fit":"fill","enlarge":true}}],"format":"jpeg"}}"#
                )
            })
            .collect();
        let spec = format!(r#"{{"outputs":[{}]}}"#, outputs.join(","));
        let started = Instant::now();
        let response = app.submit(corpus("jpeg/kodim18.jpg"), Some(&spec)).await;
        let status = response.status().as_u16();
        let body: serde_json::Value = response.json().await.unwrap();
        let ended = if status == 202 {
            let job = app
                .wait_for(body["id"].as_str().unwrap(), Duration::from_secs(60))
                .await;
            assert_eq!(job["status"], "failed", "{job}");
            job["error"]["code"].as_str().unwrap().to_owned()
        } else {
            assert!((400..500).contains(&status), "{status} {body}");
            body["code"].as_str().unwrap().to_owned()
        };
        assert!(
            ended == "pixel_limit" || ended == "unprocessable_image" || ended == "bad_spec",
            "{ended}"
        );
        println!(
            "ABUSE 16 outputs of {side}x{side}: {status} / {ended} in {:.2} s",
            started.elapsed().as_secs_f64()
        );
    }
    app.stop().await;
}
