//! End-to-end throughput of no-op jobs through the queue: enqueue → fetch → start → result
//! written → acknowledged, with a producer and several consumers running at once.
//!
//! `cargo bench -p pipeline --bench queue` (Redis at $IMAGEPIPE_TEST_REDIS_URL or
//! 127.0.0.1:6379). Tune with JOBS, CONSUMERS, BATCH, KEYS (key counts, `1,100`); COMMANDS=1
//! prints the Redis commands each job cost and their server time (`INFO commandstats`);
//! ROUNDS=n runs the scenarios n times, interleaved, and adds their medians; WINDOWS (fair
//! windows to compare, default the queue's `FAIR_WINDOW`); TAKE=0 has consumers fetch and
//! start in two calls, as workers did before the take script. Runs in one: jobs without API keys
//! (straight onto the stream), then jobs of 1 and of 100 keys first come, first served and
//! scheduled fairly.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::engine::SourceFormat;
use pipeline::job::{new_job_id, JobInput, NewJob};
use pipeline::queue::{Consumer, HeldFrom, Outcome, Queue, QueueConfig, Started, FAIR_WINDOW};
use pipeline::spec::Spec;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// `n` jobs, spread in turn over `owners` API keys (none when 0).
fn jobs(n: usize, spec: &Spec, owners: usize) -> Vec<NewJob> {
    (0..n)
        .map(|i| {
            let id = new_job_id();
            NewJob {
                input: JobInput::Image {
                    key: format!("originals/{id}"),
                    bytes: 100_000,
                    format: SourceFormat::Jpeg,
                    width: 768,
                    height: 512,
                    colour_space: None,
                    hdr: None,
                },
                id,
                spec: spec.clone(),
                owner: (owners > 0).then(|| format!("key{}", i % owners)),
                request_id: None,
            }
        })
        .collect()
}

struct Setup {
    url: String,
    total: usize,
    consumers: usize,
    batch: usize,
    spec: Spec,
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let setup = Setup {
        url: std::env::var("IMAGEPIPE_TEST_REDIS_URL")
            .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into()),
        total: env("JOBS", 100_000),
        consumers: env("CONSUMERS", 4),
        batch: env("BATCH", 256),
        spec: Spec::from_json(
            r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256}]}]}"#,
        )
        .unwrap(),
    };
    println!(
        "queue benchmark: {} no-op jobs, {} consumers, batches of {}",
        setup.total, setup.consumers, setup.batch
    );
    // Jobs without a key take the stream directly; jobs of API keys are scheduled fairly (or
    // first come, first served, for comparison).
    let keys: Vec<usize> = std::env::var("KEYS")
        .unwrap_or_else(|_| "1,100".into())
        .split(',')
        .filter_map(|k| k.trim().parse().ok())
        .collect();
    // Rounds interleave the scenarios, so a slow spell of this shared machine hits them all;
    // the summary takes each one's median.
    let windows: Vec<u64> = std::env::var("WINDOWS")
        .unwrap_or_else(|_| FAIR_WINDOW.to_string())
        .split(',')
        .filter_map(|w| w.trim().parse().ok())
        .filter(|&w| w > 0)
        .collect();
    let rounds = env("ROUNDS", 1).max(1);
    let mut rates: Vec<Vec<f64>> = Vec::new();
    for round in 1..=rounds {
        println!("round {round} of {rounds}");
        let mut this_round = vec![scenario(&setup, 0, 0).await];
        for &owners in &keys {
            this_round.push(scenario(&setup, owners, 0).await);
            for &window in &windows {
                this_round.push(scenario(&setup, owners, window).await);
            }
        }
        print_rates(&keys, &windows, &this_round);
        rates.push(this_round);
    }
    if rounds > 1 {
        println!("medians of {rounds} rounds");
        let medians: Vec<f64> = (0..rates[0].len())
            .map(|i| median(rates.iter().map(|r| r[i]).collect()))
            .collect();
        print_rates(&keys, &windows, &medians);
    }
}

/// Prints the rates of one round (or their medians): no keys, then FIFO and fair (per window)
/// per key count.
fn print_rates(keys: &[usize], windows: &[u64], rates: &[f64]) {
    let none = rates[0];
    println!("  end to end, no API keys              {none:>10.0} jobs/s");
    for (owners, row) in keys.iter().zip(rates[1..].chunks(1 + windows.len())) {
        let fifo = row[0];
        println!(
            "  end to end, {owners:>3} API key(s), FIFO     {fifo:>10.0} jobs/s  ({:.2}× no keys)",
            fifo / none
        );
        for (window, fair) in windows.iter().zip(&row[1..]) {
            println!(
                "  end to end, {owners:>3} API key(s), fair {window:>3} {fair:>10.0} jobs/s  ({:.2}× FIFO, {:.2}× no keys)",
                fair / fifo,
                fair / none
            );
        }
    }
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    }
}

/// Enqueues (alone, for reference, then with consumers running at once) and drains; returns
/// the end-to-end rate in jobs a second.
async fn scenario(setup: &Setup, owners: usize, fair_window: u64) -> f64 {
    let Setup {
        url,
        total,
        consumers,
        batch,
        spec,
    } = setup;
    let (total, consumers, batch) = (*total, *consumers, *batch);
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = QueueConfig {
        name,
        fair_window,
        ..QueueConfig::default()
    };
    let queue = Queue::connect(url, config).await.expect("redis");
    let round_trips = Arc::new(AtomicU64::new(0));

    // Enqueue alone, for reference.
    let alone = jobs(total / 4, spec, owners);
    let t = Instant::now();
    for chunk in alone.chunks(batch) {
        queue.enqueue_many(chunk).await.unwrap();
    }
    let enqueue_rate = alone.len() as f64 / t.elapsed().as_secs_f64();
    drain(
        &queue,
        url,
        consumers,
        batch,
        alone.len() as u64,
        &Arc::new(AtomicU64::new(0)),
    )
    .await;

    // End to end: producer and consumers at once.
    let work = jobs(total, spec, owners);
    let cpu_before = redis_cpu_seconds(url).await;
    let commands_before = commandstats(url).await;
    let started = Instant::now();
    let producer = {
        let (queue, round_trips) = (queue.clone(), round_trips.clone());
        tokio::spawn(async move {
            for chunk in work.chunks(batch) {
                queue.enqueue_many(chunk).await.unwrap();
                round_trips.fetch_add(1, Ordering::Relaxed);
            }
        })
    };
    // What workers do every few seconds: promote due retries, trim acknowledged entries.
    let maintenance = {
        let queue = queue.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_secs(1)).await;
                let _ = queue.promote_due().await;
                let _ = queue.trim_acknowledged().await;
            }
        })
    };
    drain(&queue, url, consumers, batch, total as u64, &round_trips).await;
    producer.await.unwrap();
    maintenance.abort();
    let elapsed = started.elapsed();
    let redis_us = (redis_cpu_seconds(url).await - cpu_before) * 1e6 / total as f64;
    if std::env::var("COMMANDS").is_ok_and(|v| v == "1") {
        print_commands(&commands_before, &commandstats(url).await, total);
    }
    let totals = queue.outcome_totals().await.unwrap();
    assert_eq!(
        totals.succeeded,
        (total + total / 4) as u64,
        "every job succeeded once"
    );
    let rate = total as f64 / elapsed.as_secs_f64();
    println!("  [{owners} keys, fair window {fair_window}] Redis CPU {redis_us:.1} µs per job");
    println!("  [{owners} keys, fair window {fair_window}] enqueue alone {enqueue_rate:.0} jobs/s; end to end {rate:.0} jobs/s ({:.2} s); round trips per job {:.3}",
        elapsed.as_secs_f64(),
        round_trips.load(Ordering::Relaxed) as f64 / total as f64
    );
    queue.purge().await.ok();
    rate
}

/// Runs `consumers` consumers until `expected` jobs have succeeded.
async fn drain(
    queue: &Queue,
    url: &str,
    consumers: usize,
    batch: usize,
    expected: u64,
    round_trips: &Arc<AtomicU64>,
) {
    let done = Arc::new(AtomicU64::new(0));
    let mut tasks = Vec::new();
    for _ in 0..consumers {
        let consumer = Consumer::new(
            queue,
            url,
            uuid::Uuid::new_v4().to_string(),
            Duration::from_millis(50),
        )
        .await
        .unwrap();
        let (done, round_trips) = (done.clone(), round_trips.clone());
        tasks.push(tokio::spawn(async move {
            let mut drained = false;
            while done.load(Ordering::Relaxed) < expected {
                let Some(started) = take(&consumer, batch, &mut drained, &round_trips).await else {
                    continue;
                };
                let finished: Vec<_> = started
                    .into_iter()
                    .filter_map(|s| match s {
                        Started::Run(lease, _) => Some((
                            lease,
                            Outcome::Succeeded {
                                outputs: vec![],
                                placeholder: None,
                                media: None,
                            },
                        )),
                        Started::Dropped { .. } => None,
                    })
                    .collect();
                consumer.complete(&finished).await.unwrap();
                round_trips.fetch_add(1, Ordering::Relaxed);
                done.fetch_add(finished.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}

/// Up to `batch` jobs started, as the worker takes them (one take call, blocking first when
/// the last take found the queue drained) — or, with TAKE=0, as it did before the take
/// script (a fetch, then a start). `None` when nothing came.
async fn take(
    consumer: &Consumer,
    batch: usize,
    drained: &mut bool,
    round_trips: &AtomicU64,
) -> Option<Vec<Started>> {
    let block = Duration::from_millis(20);
    if std::env::var("TAKE").is_ok_and(|v| v == "0") {
        let deliveries = consumer.fetch(batch, block).await.unwrap();
        round_trips.fetch_add(1, Ordering::Relaxed);
        if deliveries.is_empty() {
            return None;
        }
        round_trips.fetch_add(1, Ordering::Relaxed);
        return Some(consumer.start(&deliveries).await.unwrap());
    }
    let mut held = Vec::new();
    if *drained {
        held = consumer.wait_for_new(batch, block).await.unwrap();
        round_trips.fetch_add(1, Ordering::Relaxed);
        if held.is_empty() {
            *drained = false;
            return None;
        }
    }
    let taken = consumer
        .take(&held, HeldFrom::Read, batch.saturating_sub(held.len()))
        .await
        .unwrap();
    round_trips.fetch_add(1, Ordering::Relaxed);
    *drained = taken.drained;
    (!taken.started.is_empty()).then_some(taken.started)
}

/// One section of the Redis server's `INFO`.
async fn info(url: &str, section: &str) -> String {
    let client = redis::Client::open(url).expect("redis url");
    let mut conn = client
        .get_multiplexed_async_connection()
        .await
        .expect("redis");
    redis::cmd("INFO")
        .arg(section)
        .query_async(&mut conn)
        .await
        .expect("INFO")
}

/// The Redis server's CPU time so far (user + system, seconds): the steadiest measure of what
/// the queue costs Redis, where jobs/s move with whatever else the machine does.
async fn redis_cpu_seconds(url: &str) -> f64 {
    info(url, "cpu")
        .await
        .lines()
        .filter(|l| l.starts_with("used_cpu_user:") || l.starts_with("used_cpu_sys:"))
        .filter_map(|l| l.split(':').nth(1)?.trim().parse::<f64>().ok())
        .sum()
}

/// Calls and server microseconds per command so far (commands run by scripts counted one by
/// one; a script's own time includes theirs).
async fn commandstats(url: &str) -> HashMap<String, (u64, f64)> {
    let field = |fields: &str, name: &str| -> Option<f64> {
        let value = fields.split(',').find_map(|f| f.strip_prefix(name))?;
        value.trim_start_matches('=').parse().ok()
    };
    info(url, "commandstats")
        .await
        .lines()
        .filter_map(|l| {
            let (name, fields) = l.strip_prefix("cmdstat_")?.split_once(':')?;
            let calls = field(fields, "calls")? as u64;
            Some((name.to_owned(), (calls, field(fields, "usec")?)))
        })
        .collect()
}

fn print_commands(
    before: &HashMap<String, (u64, f64)>,
    after: &HashMap<String, (u64, f64)>,
    jobs: usize,
) {
    let mut rows: Vec<(&String, f64, f64)> = after
        .iter()
        .map(|(name, (calls, usec))| {
            let (c0, u0) = before.get(name).copied().unwrap_or((0, 0.0));
            let per_job = |v: f64| v / jobs as f64;
            (name, per_job((calls - c0) as f64), per_job(usec - u0))
        })
        .filter(|(name, calls, _)| *calls > 0.0 && !matches!(name.as_str(), "info" | "ping"))
        .collect();
    rows.sort_by(|a, b| b.2.total_cmp(&a.2));
    let calls: f64 = rows.iter().map(|r| r.1).sum();
    println!("    Redis commands per job {calls:.2}:");
    for (name, calls, usec) in rows {
        println!("      {name:<18} {calls:7.3} per job {usec:7.2} µs");
    }
}
