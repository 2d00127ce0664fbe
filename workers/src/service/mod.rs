//! The worker service: pulls jobs from Redis, runs them, writes results, and keeps its leases
//! alive from tasks the engine can never starve (engine work is on a rayon pool, not on the
//! async runtime).
//!
//! ```no_run
//! # async fn demo(settings: workers::settings::WorkerSettings) -> anyhow::Result<()> {
//! let worker = workers::service::Worker::build(settings).await?;
//! worker.run_until_stopped(workers::service::shutdown_signal()).await?;
//! # Ok(()) }
//! ```

mod job;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::job::JobRecord;
use pipeline::queue::{
    Consumer, Lease, LeaseState, Outcome, Queue, QueueError, Started, WorkerInfo,
};
use pipeline::storage::{Storage, StorageError};
use tokio::sync::{watch, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::metrics::Metrics;
use crate::settings::WorkerSettings;

/// Why a worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("cannot use Redis at {url}: {source}")]
    Redis { url: String, source: QueueError },
    #[error("cannot use storage {url}: {source}")]
    Storage { url: String, source: StorageError },
    #[error("cannot start the engine pool: {0}")]
    Pool(String),
    #[error("cannot serve metrics on {addr}: {source}")]
    Metrics {
        addr: String,
        source: std::io::Error,
    },
}

/// How long a blocking fetch waits for work (also bounds how fast a stop is noticed).
const FETCH_BLOCK: Duration = Duration::from_secs(1);
const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// A finished attempt waiting to be recorded, and who to tell once it is.
type Completion = (Lease, Outcome, tokio::sync::oneshot::Sender<()>);

/// What every task of the worker shares.
pub(crate) struct Shared {
    pub(crate) queue: Queue,
    pub(crate) consumer: Consumer,
    pub(crate) storage: Storage,
    pub(crate) pool: rayon::ThreadPool,
    pub(crate) settings: WorkerSettings,
    pub(crate) metrics: Metrics,
    in_hand: Mutex<HashMap<String, InHand>>,
    info: WorkerInfo,
    /// Results go through one task that records them in batches: one Redis round trip for
    /// every attempt that ended meanwhile.
    completions: tokio::sync::mpsc::UnboundedSender<Completion>,
}

/// A job this worker holds.
struct InHand {
    lease: Lease,
    cancel: Arc<AtomicBool>,
}

/// A running worker, ready to [`Worker::run_until_stopped`].
pub struct Worker {
    shared: Arc<Shared>,
    metrics_listener: Option<tokio::net::TcpListener>,
    completions: Option<tokio::sync::mpsc::UnboundedReceiver<Completion>>,
}

impl Worker {
    /// Connects to Redis and storage (failing clearly when either is unusable), warns about a
    /// Redis that could lose jobs, and starts the engine pool.
    pub async fn build(settings: WorkerSettings) -> Result<Worker, StartError> {
        let queue = Queue::connect(&settings.redis_url, settings.queue.clone())
            .await
            .map_err(|source| StartError::Redis {
                url: settings.redis_url.clone(),
                source,
            })?;
        for warning in queue.check_server().await {
            tracing::warn!("{warning}");
        }
        let storage = Storage::open(&settings.storage, settings.s3_endpoint.as_deref())
            .await
            .map_err(|source| StartError::Storage {
                url: settings.storage.clone(),
                source,
            })?;
        let name = uuid::Uuid::new_v4().to_string();
        let consumer = Consumer::new(&queue, &settings.redis_url, name.clone(), FETCH_BLOCK)
            .await
            .map_err(|source| StartError::Redis {
                url: settings.redis_url.clone(),
                source,
            })?;
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(settings.threads)
            .thread_name(|i| format!("engine-{i}"))
            .panic_handler(|_| {
                tracing::error!("an engine task panicked outside the engine's guard")
            })
            .build()
            .map_err(|e| StartError::Pool(e.to_string()))?;
        let metrics_listener =
            match &settings.metrics_listen {
                Some(addr) => Some(tokio::net::TcpListener::bind(addr).await.map_err(
                    |source| StartError::Metrics {
                        addr: addr.clone(),
                        source,
                    },
                )?),
                None => None,
            };
        let info = WorkerInfo {
            id: name,
            host: hostname(),
            pid: std::process::id(),
            threads: settings.threads as u32,
            jobs_in_hand: 0,
            started_at: pipeline::job::now_ms(),
            version: env!("CARGO_PKG_VERSION").to_owned(),
            last_seen: 0,
        };
        tracing::info!(
            worker = %info.id,
            queue = %settings.queue.name,
            storage = %storage.describe(),
            threads = settings.threads,
            capacity = settings.capacity,
            "worker ready"
        );
        let (completions, completions_rx) = tokio::sync::mpsc::unbounded_channel();
        Ok(Worker {
            shared: Arc::new(Shared {
                queue,
                consumer,
                storage,
                pool,
                settings,
                metrics: Metrics::new(),
                in_hand: Mutex::new(HashMap::new()),
                info,
                completions,
            }),
            metrics_listener,
            completions: Some(completions_rx),
        })
    }

    /// The address metrics are served on, when they are.
    pub fn metrics_addr(&self) -> Option<std::net::SocketAddr> {
        self.metrics_listener
            .as_ref()
            .and_then(|l| l.local_addr().ok())
    }

    /// This worker's consumer name (its id in the registry).
    pub fn id(&self) -> &str {
        &self.shared.info.id
    }

    /// Runs until `stop` resolves, then stops taking jobs, finishes the ones in hand within the
    /// shutdown timeout, hands back the rest, and returns.
    pub async fn run_until_stopped(mut self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let completions = self.completions.take().expect("a worker runs once");
        let shared = self.shared;
        let recorder = tokio::spawn(record_results(shared.clone(), completions));
        let (stop_tx, stop_rx) = watch::channel(false);
        let mut background = JoinSet::new();
        background.spawn(renew_leases(shared.clone(), stop_rx.clone()));
        background.spawn(heartbeat(shared.clone(), stop_rx.clone()));
        background.spawn(maintenance(shared.clone()));
        background.spawn(pipeline::webhooks::run_dispatcher(
            shared.queue.clone(),
            shared.settings.redis_url.clone(),
            shared.info.id.clone(),
            shared.settings.webhooks.clone(),
            stop_rx.clone(),
        ));
        if let Some(listener) = self.metrics_listener {
            background.spawn(crate::metrics::serve(listener, shared.metrics.clone()));
        }

        let fetcher = fetch_loop(shared.clone(), stop_rx.clone());
        tokio::pin!(fetcher);
        let mut jobs = tokio::select! {
            jobs = &mut fetcher => jobs,
            () = stop => {
                tracing::info!("stopping: no new jobs; finishing the ones in hand");
                let _ = stop_tx.send(true);
                fetcher.await
            }
        };
        let _ = stop_tx.send(true);

        // Finish what is in hand, within the deadline; hand the rest back.
        let deadline = tokio::time::sleep(shared.settings.shutdown_timeout);
        tokio::pin!(deadline);
        loop {
            tokio::select! {
                next = jobs.join_next() => if next.is_none() { break },
                () = &mut deadline => {
                    hand_back(&shared).await;
                    jobs.abort_all();
                    break;
                }
            }
        }
        background.abort_all();
        recorder.abort();
        if let Err(e) = shared.queue.deregister(&shared.info.id).await {
            tracing::warn!(error = %e, "could not deregister");
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Resolves on SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
}

/// Takes jobs while there is room: at most `capacity` in hand (running plus prefetched), so a
/// worker never holds work it cannot start soon. Returns the jobs still running when told to
/// stop.
async fn fetch_loop(shared: Arc<Shared>, stop: watch::Receiver<bool>) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    let permits = Arc::new(Semaphore::new(shared.settings.capacity));
    let reclaim_every = (shared.settings.queue.visibility_timeout / 2).max(Duration::from_secs(1));
    let mut last_reclaim = Instant::now() - reclaim_every;
    let mut backoff = Duration::from_millis(100);
    while !*stop.borrow() {
        while jobs.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            Some(_) = jobs.join_next(), if !jobs.is_empty() => continue,
        };
        let mut held = vec![first];
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            held.push(permit);
        }
        let result = async {
            let mut deliveries = Vec::new();
            if last_reclaim.elapsed() >= reclaim_every {
                last_reclaim = Instant::now();
                deliveries = shared.consumer.reclaim(held.len()).await?;
                if !deliveries.is_empty() {
                    tracing::info!(
                        count = deliveries.len(),
                        "took over jobs abandoned by another worker"
                    );
                }
            }
            if deliveries.len() < held.len() {
                let more = shared
                    .consumer
                    .fetch(held.len() - deliveries.len(), FETCH_BLOCK)
                    .await?;
                deliveries.extend(more);
            }
            shared.consumer.start(&deliveries).await
        }
        .await;
        match result {
            Ok(started) => {
                backoff = Duration::from_millis(100);
                for started in started {
                    match started {
                        Started::Run(lease, record) => {
                            let permit = held.pop().expect("one permit per delivery");
                            jobs.spawn(run_job(shared.clone(), lease, *record, permit));
                        }
                        Started::Dropped { job_id, reason } => {
                            tracing::info!(job_id, reason, "dropped a delivery without running it");
                        }
                    }
                }
            }
            Err(e) => {
                // Redis is down or restarting: the connection reconnects by itself.
                tracing::warn!(error = %e, "cannot fetch jobs; retrying in {backoff:?}");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    jobs
}

/// One job, from start to its recorded result.
#[tracing::instrument(skip_all, fields(job_id = %lease.job_id, attempt = lease.attempt, request_id = record.request_id.as_deref().unwrap_or("-")))]
async fn run_job(
    shared: Arc<Shared>,
    lease: Lease,
    record: JobRecord,
    permit: OwnedSemaphorePermit,
) {
    let cancel = Arc::new(AtomicBool::new(record.cancel_requested));
    let in_hand = {
        let mut in_hand = shared.in_hand.lock().expect("in-hand lock");
        in_hand.insert(
            lease.job_id.clone(),
            InHand {
                lease: lease.clone(),
                cancel: cancel.clone(),
            },
        );
        in_hand.len()
    };
    shared.metrics.set_in_hand(in_hand);
    let started = Instant::now();
    let outcome = job::execute(&shared, &lease, &record, cancel).await;
    shared.metrics.stage("total", started.elapsed());
    let (label, code) = match &outcome {
        Outcome::Succeeded { outputs, .. } => {
            let out: u64 = outputs.iter().map(|o| o.bytes).sum();
            shared.metrics.bytes(input_bytes(&record), out);
            ("succeeded", "")
        }
        Outcome::Failed { error, .. } => ("failed", error.code.as_str()),
        Outcome::Cancelled => ("cancelled", ""),
    };
    shared.metrics.job(label, code);
    tracing::info!(
        outcome = label,
        code,
        took_ms = started.elapsed().as_millis() as u64,
        "attempt done"
    );

    // The result must reach Redis before the job leaves our hands.
    let (recorded, wait) = tokio::sync::oneshot::channel();
    if shared
        .completions
        .send((lease.clone(), outcome, recorded))
        .is_ok()
    {
        let _ = wait.await;
    }
    let in_hand = {
        let mut in_hand = shared.in_hand.lock().expect("in-hand lock");
        in_hand.remove(&lease.job_id);
        in_hand.len()
    };
    shared.metrics.set_in_hand(in_hand);
    drop(permit);
}

/// Records finished attempts, as many at a time as have ended. An outage delays results, it
/// does not drop them: the batch is retried until Redis takes it. (If this worker dies
/// meanwhile, another one redoes the jobs after the visibility timeout.)
async fn record_results(
    shared: Arc<Shared>,
    mut completions: tokio::sync::mpsc::UnboundedReceiver<Completion>,
) {
    while let Some(first) = completions.recv().await {
        let mut batch = vec![first];
        while batch.len() < 64 {
            match completions.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let done: Vec<(Lease, Outcome)> = batch
            .iter()
            .map(|(l, o, _)| (l.clone(), o.clone()))
            .collect();
        let mut backoff = Duration::from_millis(100);
        loop {
            match shared.consumer.complete(&done).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::warn!(error = %e, jobs = done.len(), "cannot record results yet; retrying in {backoff:?}");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
        }
        for (_, _, recorded) in batch {
            let _ = recorded.send(());
        }
    }
}

fn input_bytes(record: &JobRecord) -> u64 {
    match &record.input {
        pipeline::job::JobInput::Image { bytes, .. }
        | pipeline::job::JobInput::Frames { bytes, .. }
        | pipeline::job::JobInput::RawFrames { bytes, .. } => *bytes,
    }
}

/// Renews every lease in hand a few times per visibility timeout, and passes cancel requests
/// to the jobs they concern.
async fn renew_leases(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    let every = (shared.settings.queue.visibility_timeout / 3)
        .clamp(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            _ = stop.changed() => {}
        }
        let held: Vec<(Lease, Arc<AtomicBool>)> = {
            let in_hand = shared.in_hand.lock().expect("in-hand lock");
            in_hand
                .values()
                .map(|h| (h.lease.clone(), h.cancel.clone()))
                .collect()
        };
        if held.is_empty() {
            if *stop.borrow() {
                // Nothing left to renew and no more jobs coming.
                return;
            }
            continue;
        }
        let leases: Vec<Lease> = held.iter().map(|(l, _)| l.clone()).collect();
        match shared.consumer.renew(&leases).await {
            Ok(states) => {
                for ((lease, cancel), state) in held.iter().zip(states) {
                    match state {
                        LeaseState::CancelRequested => cancel.store(true, Ordering::Relaxed),
                        LeaseState::Lost => {
                            tracing::warn!(job_id = %lease.job_id, "lease lost: another worker took the job over")
                        }
                        LeaseState::Held => {}
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
        }
    }
}

async fn heartbeat(shared: Arc<Shared>, mut stop: watch::Receiver<bool>) {
    loop {
        let mut info = shared.info.clone();
        info.jobs_in_hand = shared.in_hand.lock().expect("in-hand lock").len() as u32;
        if let Err(e) = shared.queue.heartbeat(&info, HEARTBEAT_EVERY * 5).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            _ = stop.changed() => {}
        }
    }
}

/// Promotes due retries, trims acknowledged stream entries, prunes dead consumers.
async fn maintenance(shared: Arc<Shared>) {
    let mut tick = 0u64;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        tick += 1;
        if let Err(e) = shared.queue.promote_due().await {
            tracing::debug!(error = %e, "cannot promote retries");
        }
        if tick.is_multiple_of(10) {
            let _ = shared.queue.trim_acknowledged().await;
        }
        if tick.is_multiple_of(300) {
            let _ = shared
                .queue
                .prune_consumers(Duration::from_secs(3600))
                .await;
        }
    }
}

/// Past the shutdown deadline: stop the jobs still running at their next checkpoint and give
/// them back so another worker starts them at once.
async fn hand_back(shared: &Shared) {
    let leases: Vec<Lease> = {
        let in_hand = shared.in_hand.lock().expect("in-hand lock");
        for held in in_hand.values() {
            held.cancel.store(true, Ordering::Relaxed);
        }
        in_hand.values().map(|h| h.lease.clone()).collect()
    };
    if leases.is_empty() {
        return;
    }
    match shared.consumer.hand_back(&leases).await {
        Ok(n) => tracing::info!(jobs = n, "handed back unfinished jobs"),
        Err(e) => {
            tracing::warn!(error = %e, "could not hand back jobs; they return after the visibility timeout")
        }
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .or_else(|| std::env::var("HOSTNAME").ok())
        .unwrap_or_else(|| "unknown".to_owned())
}
