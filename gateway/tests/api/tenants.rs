//! Tenants over HTTP (API.md § Tenants): one key's backlog does not hold back another's jobs,
//! and a key past its quota or rate gets 429 while other keys are accepted.

use std::time::{Duration, Instant};

use futures::StreamExt;

use crate::helpers::{accepted_id, problem, spawn_app, AppOptions, TestApp};

const KEY_A: &str = "tenant-a-key-0123456789";
const KEY_B: &str = "tenant-b-key-0123456789";
const TINY: &str = r#"{"outputs":[{"name":"t","ops":[{"op":"resize","width":1}],"format":"png"}]}"#;

/// Uploads `n` tiny jobs as `key`, 8 at a time; returns their ids.
async fn upload(app: &TestApp, key: &str, n: usize) -> Vec<String> {
    futures::stream::iter(0..n)
        .map(|_| async {
            let response = app
                .submit_as(fixtures::one_by_one_png(), Some(TINY), Some(key))
                .await;
            accepted_id(response).await
        })
        .buffer_unordered(8)
        .collect()
        .await
}

/// When each job finished (ms since the epoch), once every one of them has.
async fn finish_times(app: &TestApp, ids: &[String]) -> Vec<u64> {
    let started = Instant::now();
    let mut times = Vec::with_capacity(ids.len());
    for id in ids {
        loop {
            let record = app.queue.get(id).await.unwrap().expect("the job exists");
            if let Some(finished) = record.finished_at {
                times.push(finished);
                break;
            }
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "{id} never finished"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    times
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_s_twenty_jobs_finish_while_another_key_s_backlog_is_still_almost_whole() {
    let app = spawn_app(AppOptions {
        embedded_workers: 1,
        api_keys: Some(format!("{KEY_A},{KEY_B}")),
        ..AppOptions::default()
    })
    .await;
    let a = upload(&app, KEY_A, 2000).await;
    let b_from = pipeline::job::now_ms();
    let b = upload(&app, KEY_B, 20).await;
    let b_done = *finish_times(&app, &b).await.iter().max().unwrap();
    let a_times = finish_times(&app, &a).await;
    let a_meanwhile = a_times
        .iter()
        .filter(|&&t| t >= b_from && t <= b_done)
        .count();
    let a_before = a_times.iter().filter(|&&t| t < b_from).count();
    println!(
        "FAIR over HTTP: key B's 20 jobs all done while key A finished {a_meanwhile} more \
         ({a_before} of A's 2000 were done when B started)"
    );
    assert!(
        a_meanwhile < 200,
        "A finished {a_meanwhile} jobs before B's 20"
    );
    app.stop().await;
}

#[tokio::test]
async fn a_key_past_its_quota_or_rate_gets_429_while_others_are_accepted() {
    let quota = spawn_app(AppOptions {
        api_keys: Some(format!("{KEY_A},{KEY_B}")),
        tweak: Some(Box::new(|settings| settings.max_queued_per_key = 3)),
        ..AppOptions::default()
    })
    .await;
    upload(&quota, KEY_A, 3).await;
    let refused = quota
        .submit_as(fixtures::one_by_one_png(), Some(TINY), Some(KEY_A))
        .await;
    assert!(refused.headers().contains_key("retry-after"));
    let body = problem(refused, 429, "rate_limited").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("max-queued-per-key"),
        "{body}"
    );
    upload(&quota, KEY_B, 1).await;
    quota.stop().await;

    let rate = spawn_app(AppOptions {
        api_keys: Some(format!("{KEY_A},{KEY_B}")),
        tweak: Some(Box::new(|settings| settings.rate_limit_per_key = Some(1.0))),
        ..AppOptions::default()
    })
    .await;
    upload(&rate, KEY_A, 1).await;
    let refused = rate
        .submit_as(fixtures::one_by_one_png(), Some(TINY), Some(KEY_A))
        .await;
    let retry_after: u64 = refused.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=2).contains(&retry_after), "{retry_after}");
    let body = problem(refused, 429, "rate_limited").await;
    assert!(
        body["detail"]
            .as_str()
            .unwrap()
            .contains("rate-limit-per-key"),
        "{body}"
    );
    upload(&rate, KEY_B, 1).await;
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    upload(&rate, KEY_A, 1).await;
    rate.stop().await;
}
