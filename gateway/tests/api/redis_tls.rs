//! Redis over TLS (API.md § Redis deployments): `rediss://` with rustls, a private CA
//! (`--redis-ca`) and a client certificate (`--redis-client-cert`, `--redis-client-key`),
//! against Debian's redis-server started with `--tls-port` and certificates made by `openssl`.

use std::time::{Duration, Instant};

use fixtures::servers::TlsRedisServer;
use gateway::{Application, Settings};

use crate::helpers::{corpus, spawn_app, AppOptions, THUMB_SPEC};

/// Gateway settings for `redis` with the CA `ca` and the test's client certificate.
fn tls_settings(settings: &mut Settings, redis: &TlsRedisServer, ca: &str) {
    settings.connection.redis_url = redis.url();
    settings.connection.redis_ca = Some(redis.file(ca));
    settings.connection.redis_client_cert = Some(redis.file("client.pem"));
    settings.connection.redis_client_key = Some(redis.file("client.key"));
}

#[tokio::test]
async fn a_job_goes_through_a_redis_that_speaks_only_tls() {
    let redis = TlsRedisServer::start();
    let (url, ca, cert, key) = (
        redis.url(),
        redis.file("ca.pem"),
        redis.file("client.pem"),
        redis.file("client.key"),
    );
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        redis_url: url.clone(),
        tweak: Some(Box::new(move |settings| {
            settings.connection.redis_url = url;
            settings.connection.redis_ca = Some(ca);
            settings.connection.redis_client_cert = Some(cert);
            settings.connection.redis_client_key = Some(key);
        })),
        ..AppOptions::default()
    })
    .await;
    let id = app.submit_ok(corpus("jpeg/kodim12.jpg"), THUMB_SPEC).await;
    let job = app.wait_for(&id, Duration::from_secs(30)).await;
    assert_eq!(job["status"], "succeeded", "{job}");
    // Events (pub/sub) and outputs over the same TLS connection settings.
    assert_eq!(job["outputs"].as_array().unwrap().len(), 2);
    let thumb = app.bytes(job["outputs"][0]["url"].as_str().unwrap()).await;
    assert!(!thumb.is_empty());
    app.stop().await;
}

#[tokio::test]
async fn a_wrong_ca_or_no_client_certificate_is_a_clear_start_up_error_not_a_hang() {
    let redis = TlsRedisServer::start();
    let mut wrong_ca = Settings::defaults();
    tls_settings(&mut wrong_ca, &redis, "other-ca.pem");
    let mut no_client_cert = Settings::defaults();
    tls_settings(&mut no_client_cert, &redis, "ca.pem");
    no_client_cert.connection.redis_client_cert = None;
    no_client_cert.connection.redis_client_key = None;
    for (case, mut settings) in [
        ("wrong CA", wrong_ca),
        ("no client certificate", no_client_cert),
    ] {
        settings.listen = "127.0.0.1:0".into();
        let started = Instant::now();
        let error = match Application::build(settings).await {
            Ok(_) => panic!("{case}: the gateway started"),
            Err(e) => pipeline::text::error_chain(&e),
        };
        let took = started.elapsed();
        println!("TLS {case}: refused in {took:?}: {error}");
        assert!(took < Duration::from_secs(15), "{case}: {took:?}");
        assert!(!error.contains('\n'), "{case}: one line: {error}");
        assert!(
            error.contains("cannot use Redis at rediss://"),
            "{case}: {error}"
        );
    }
}
