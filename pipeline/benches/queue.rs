//! End-to-end throughput of no-op jobs through the queue: enqueue → fetch → start → result
//! written → acknowledged, with a producer and several consumers running at once.
//!
//! `cargo bench -p pipeline --bench queue` (Redis at $IMAGEPIPE_TEST_REDIS_URL or
//! 127.0.0.1:6379). Tune with JOBS, CONSUMERS, BATCH.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use pipeline::engine::SourceFormat;
use pipeline::job::{new_job_id, JobInput, NewJob};
use pipeline::queue::{Consumer, Outcome, Queue, QueueConfig, Started};
use pipeline::spec::Spec;

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn jobs(n: usize, spec: &Spec) -> Vec<NewJob> {
    (0..n)
        .map(|_| {
            let id = new_job_id();
            NewJob {
                input: JobInput::Image {
                    key: format!("originals/{id}"),
                    bytes: 100_000,
                    format: SourceFormat::Jpeg,
                    width: 768,
                    height: 512,
                },
                id,
                spec: spec.clone(),
                owner: None,
                request_id: None,
            }
        })
        .collect()
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for the list of benchmarks
    }
    let url = std::env::var("IMAGEPIPE_TEST_REDIS_URL")
        .unwrap_or_else(|_| "redis://127.0.0.1:6379/0".into());
    let total = env("JOBS", 100_000);
    let consumers = env("CONSUMERS", 4);
    let batch = env("BATCH", 256);
    let spec =
        Spec::from_json(r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256}]}]}"#)
            .unwrap();
    let name = format!("bench-{}", uuid::Uuid::new_v4().simple());
    let config = QueueConfig {
        name: name.clone(),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&url, config).await.expect("redis");
    let round_trips = Arc::new(AtomicU64::new(0));

    // Enqueue alone, for reference.
    let alone = jobs(total / 4, &spec);
    let t = Instant::now();
    for chunk in alone.chunks(batch) {
        queue.enqueue_many(chunk).await.unwrap();
    }
    let enqueue_rate = alone.len() as f64 / t.elapsed().as_secs_f64();
    drain(
        &queue,
        &url,
        consumers,
        batch,
        alone.len() as u64,
        &Arc::new(AtomicU64::new(0)),
    )
    .await;

    // End to end: producer and consumers at once.
    let work = jobs(total, &spec);
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
    drain(&queue, &url, consumers, batch, total as u64, &round_trips).await;
    producer.await.unwrap();
    maintenance.abort();
    let elapsed = started.elapsed();
    let totals = queue.outcome_totals().await.unwrap();
    assert_eq!(
        totals.succeeded,
        (total + total / 4) as u64,
        "every job succeeded once"
    );

    println!("queue benchmark: {total} no-op jobs, {consumers} consumers, batches of {batch}");
    println!("  enqueue alone:               {enqueue_rate:>10.0} jobs/s");
    println!(
        "  end to end (with results):   {:>10.0} jobs/s  ({:.2} s)",
        total as f64 / elapsed.as_secs_f64(),
        elapsed.as_secs_f64()
    );
    println!(
        "  round trips per job:         {:>10.3}  (producer + fetch + start + complete)",
        round_trips.load(Ordering::Relaxed) as f64 / total as f64
    );
    queue.purge().await.ok();
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
            while done.load(Ordering::Relaxed) < expected {
                let deliveries = consumer
                    .fetch(batch, Duration::from_millis(20))
                    .await
                    .unwrap();
                round_trips.fetch_add(1, Ordering::Relaxed);
                if deliveries.is_empty() {
                    continue;
                }
                let started = consumer.start(&deliveries).await.unwrap();
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
                round_trips.fetch_add(2, Ordering::Relaxed);
                done.fetch_add(finished.len() as u64, Ordering::Relaxed);
            }
        }));
    }
    for task in tasks {
        task.await.unwrap();
    }
}
