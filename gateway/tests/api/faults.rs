//! The fault suite, as real processes under load: workers SIGKILLed in a loop, Redis killed and
//! restarted from its append-only file, the S3 server frozen and thawed, the gateway restarted
//! during uploads. Each reports jobs accepted, lost (must be 0), duplicates (attempts beyond
//! the first, i.e. work done twice) and time to recover, as one `FAULT` line in the output.

use std::time::{Duration, Instant};

use fixtures::servers::{unique, RedisServer, S3Server};
use serde_json::Value;

use crate::helpers::{corpus, use_test_s3_credentials};
use crate::processes::{upload, Cluster, HEAVY, LIGHT};

/// Uploads `image` until one is accepted (retrying 503s and refused connections, as a client
/// would), or gives up after `limit`. Returns the job id and how many tries it took.
async fn submit_retrying(cluster: &Cluster, image: &[u8], limit: Duration) -> Option<String> {
    let started = Instant::now();
    while started.elapsed() < limit {
        let sent = upload(
            &cluster.http,
            &cluster.address,
            image.to_vec(),
            LIGHT,
            Duration::from_secs(10),
        )
        .await;
        if let Ok(response) = sent {
            let status = response.status().as_u16();
            if status == 202 {
                let body: Value = response.json().await.unwrap();
                return Some(body["id"].as_str().unwrap().to_owned());
            }
            assert!(
                status == 503 || status == 429,
                "only 503/429 are acceptable during a fault, got {status}: {:?}",
                response.text().await
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    None
}

struct Report {
    accepted: usize,
    lost: usize,
    duplicates: u64,
    recovered: Duration,
}

/// Waits for every accepted job; lost = not `succeeded` in the end.
async fn settle(cluster: &Cluster, ids: &[String], since: Instant) -> Report {
    let jobs = cluster.wait_all(ids, Duration::from_secs(180)).await;
    let recovered = since.elapsed();
    let lost = jobs.iter().filter(|j| j["status"] != "succeeded").count();
    let duplicates = jobs
        .iter()
        .map(|j| j["attempts"].as_u64().unwrap_or(1).saturating_sub(1))
        .sum();
    Report {
        accepted: ids.len(),
        lost,
        duplicates,
        recovered,
    }
}

fn print(fault: &str, report: &Report, jobs: &[Value]) {
    println!(
        "FAULT {fault}: accepted {}, lost {}, duplicates {}, recovered in {:.1} s",
        report.accepted,
        report.lost,
        report.duplicates,
        report.recovered.as_secs_f64()
    );
    assert_eq!(report.lost, 0, "{fault}: jobs lost: {jobs:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn workers_sigkilled_in_a_loop_under_load_lose_nothing() {
    let cluster = Cluster::start().await;
    // Heavy jobs (a photo, three outputs), so the kills land in the middle of work.
    let image = corpus("jpeg/kodim10.jpg");
    let mut workers = vec![cluster.worker(&[]), cluster.worker(&[])];
    let mut ids = Vec::new();
    for _ in 0..24 {
        ids.push(cluster.submit(image.clone(), HEAVY).await);
    }
    // Kill the oldest worker every 500 ms and start a fresh one, five times, while more
    // work arrives.
    for _ in 0..5 {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let victim = workers.remove(0);
        victim.signal("KILL");
        drop(victim);
        workers.push(cluster.worker(&[]));
        for _ in 0..4 {
            ids.push(cluster.submit(image.clone(), HEAVY).await);
        }
    }
    let last_kill = Instant::now();
    let report = settle(&cluster, &ids, last_kill).await;
    let jobs = cluster.wait_all(&ids, Duration::from_secs(5)).await;
    print("worker SIGKILL x5 under load", &report, &jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn redis_killed_and_restarted_from_its_aof_loses_no_accepted_job() {
    let mut redis = RedisServer::start();
    let cluster = Cluster::start_on(redis.url(), None).await;
    let _worker = cluster.worker(&[]);
    let image = corpus("jpeg/kodim11.jpg");
    let mut ids = Vec::new();
    for _ in 0..20 {
        ids.push(cluster.submit(image.clone(), LIGHT).await);
    }
    redis.kill();
    // During the outage uploads are refused with 503 (never accepted and lost).
    let during = upload(
        &cluster.http,
        &cluster.address,
        image.clone(),
        LIGHT,
        Duration::from_secs(30),
    )
    .await
    .unwrap();
    assert_eq!(during.status(), 503);
    tokio::time::sleep(Duration::from_secs(2)).await;
    redis.restart();
    let restarted = Instant::now();
    // The first upload accepted after the restart: the gateway recovered by itself.
    let first = submit_retrying(&cluster, &image, Duration::from_secs(30))
        .await
        .expect("the gateway accepts uploads again after Redis restarts");
    let accepting = restarted.elapsed();
    ids.push(first);
    for _ in 0..10 {
        ids.push(cluster.submit(image.clone(), LIGHT).await);
    }
    let report = settle(&cluster, &ids, restarted).await;
    let jobs = cluster.wait_all(&ids, Duration::from_secs(5)).await;
    println!(
        "FAULT redis kill+restart: uploads accepted again {:.1} s after the restart",
        accepting.as_secs_f64()
    );
    print("redis SIGKILL + restart (AOF)", &report, &jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_frozen_s3_server_delays_jobs_but_loses_none() {
    use_test_s3_credentials();
    let s3 = S3Server::start();
    let bucket = unique("faults").to_lowercase().replace('_', "-");
    s3.create_bucket(&bucket);
    let cluster = Cluster::start_on(
        crate::helpers::redis_url(),
        Some((format!("s3://{bucket}"), s3.endpoint.clone())),
    )
    .await;
    let _worker = cluster.worker(&[]);
    let image = corpus("jpeg/kodim12.jpg");
    let mut ids = Vec::new();
    for _ in 0..10 {
        ids.push(cluster.submit(image.clone(), LIGHT).await);
    }
    s3.signal("STOP");
    // Uploads during the freeze: refused (503) or accepted later; never accepted and lost.
    let during = tokio::spawn({
        let (http, address, image) = (cluster.http.clone(), cluster.address.clone(), image.clone());
        async move {
            let response = upload(&http, &address, image, LIGHT, Duration::from_secs(60))
                .await
                .unwrap();
            let status = response.status().as_u16();
            let body: Value = response.json().await.unwrap_or(Value::Null);
            (status, body)
        }
    });
    tokio::time::sleep(Duration::from_secs(4)).await;
    s3.signal("CONT");
    let thawed = Instant::now();
    let (status, body) = during.await.unwrap();
    assert!(status == 202 || status == 503, "{status} {body}");
    if status == 202 {
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for _ in 0..5 {
        ids.push(cluster.submit(image.clone(), LIGHT).await);
    }
    let report = settle(&cluster, &ids, thawed).await;
    let jobs = cluster.wait_all(&ids, Duration::from_secs(5)).await;
    print("S3 server frozen 4 s", &report, &jobs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_restarted_during_uploads_loses_no_accepted_job() {
    let mut cluster = Cluster::start().await;
    let _worker = cluster.worker(&[]);
    let image = corpus("jpeg/kodim14.jpg");
    let mut ids = Vec::new();
    // Uploads keep coming from a client task while the gateway is stopped and started.
    let (http, address) = (cluster.http.clone(), cluster.address.clone());
    let uploads = tokio::spawn(async move {
        let mut accepted = Vec::new();
        let mut failed = 0;
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(6) {
            match upload(
                &http,
                &address,
                image.clone(),
                LIGHT,
                Duration::from_secs(10),
            )
            .await
            {
                Ok(r) if r.status() == 202 => {
                    let body: Value = r.json().await.unwrap();
                    accepted.push(body["id"].as_str().unwrap().to_owned());
                }
                Ok(r) => assert!(r.status() == 503, "{}", r.status()),
                // The connection was refused or cut: not accepted, so the client retries.
                Err(_) => failed += 1,
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        (accepted, failed)
    });
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart_gateway("TERM").await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    cluster.restart_gateway("KILL").await;
    let restarted = Instant::now();
    let (accepted, failed) = uploads.await.unwrap();
    ids.extend(accepted);
    let report = settle(&cluster, &ids, restarted).await;
    let jobs = cluster.wait_all(&ids, Duration::from_secs(5)).await;
    println!("FAULT gateway restarts: {failed} uploads not accepted (connection refused or cut)");
    print("gateway SIGTERM + SIGKILL during uploads", &report, &jobs);
}
