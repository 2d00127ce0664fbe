//! The worker service: pulls jobs from Redis, runs them, writes results, and keeps its leases
//! alive from tasks the engine can never starve (engine work is on a rayon pool, not on the
//! async runtime).
//!
//! ```no_run
//! # async fn demo(settings: workers::settings::WorkerSettings) -> anyhow::Result<()> {
//! let worker = workers::service::Worker::build(settings).await?;
//! worker.run_until_stopped(pipeline::shutdown::Shutdown::on_signals()).await?;
//! # Ok(()) }
//! ```

mod job;
mod record;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use pipeline::job::JobRecord;
use pipeline::queue::{
    Completed, Consumer, HeldFrom, Lease, LeaseState, Outcome, Queue, QueueError, Started,
    WorkerInfo,
};
use pipeline::shutdown::Shutdown;
use pipeline::storage::Storage;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;

use crate::connect::{connect, ConnectError};
use crate::metrics::Metrics;
use crate::settings::WorkerSettings;
use record::{record_results, Completion, TakenAlong};

/// Why a worker cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot start the engine pool")]
    Pool(#[source] rayon::ThreadPoolBuildError),
    #[error("cannot serve metrics on {addr}")]
    Metrics {
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// How long a blocking fetch waits for work (also bounds how fast a stop is noticed).
const FETCH_BLOCK: Duration = Duration::from_secs(1);

/// Job streams, one per priority.
const PRIORITIES: usize = pipeline::spec::Priority::ALL.len();

const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// After the shutdown deadline, how long jobs told to stop get to reach their next checkpoint.
const STOP_GRACE: Duration = Duration::from_secs(5);

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
    /// The last read found every stream empty: the next take blocks for new entries first.
    drained: AtomicBool,
    reclaim: Mutex<ReclaimClock>,
}

/// A job this worker holds.
struct InHand {
    lease: Lease,
    cancel: Arc<AtomicBool>,
    /// Given back at shutdown: whatever the attempt ends with is not recorded.
    handed_back: Arc<AtomicBool>,
    /// Another worker took the job over (this one stalled or was cut off past its visibility
    /// timeout): the attempt stops at its next checkpoint and changes nothing.
    lease_lost: Arc<AtomicBool>,
}

/// A running worker, ready to [`Worker::run_until_stopped`].
pub struct Worker {
    shared: Arc<Shared>,
    metrics_listener: Option<tokio::net::TcpListener>,
}

impl Worker {
    /// Connects to Redis and storage (failing clearly when either is unusable), warns about a
    /// Redis that could lose jobs, and starts the engine pool.
    pub async fn build(settings: WorkerSettings) -> Result<Worker, StartError> {
        let (queue, storage) = connect(
            &settings.redis_url,
            settings.queue.clone(),
            &settings.storage,
            settings.s3_endpoint.as_deref(),
            // Workers hand no URLs to clients.
            None,
        )
        .await?;
        let name = uuid::Uuid::new_v4().to_string();
        let consumer = Consumer::new(&queue, &settings.redis_url, name.clone(), FETCH_BLOCK)
            .await
            .map_err(|source| ConnectError::Redis {
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
            .map_err(StartError::Pool)?;
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
        let visibility_timeout = settings.queue.visibility_timeout;
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
                drained: AtomicBool::new(false),
                reclaim: Mutex::new(ReclaimClock::new(visibility_timeout)),
            }),
            metrics_listener,
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

    /// Runs until `shutdown` starts, then stops taking jobs, finishes the ones in hand within
    /// the shutdown timeout, hands back the rest, and returns once every task has ended.
    pub async fn run_until_stopped(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let shared = self.shared;
        // Background tasks outlive the jobs: they stop once the last job is recorded.
        let (drained_trigger, drained) = Shutdown::new();
        let (completions, completions_rx) = mpsc::unbounded_channel();
        let (taken_along, taken_along_rx) = mpsc::unbounded_channel();
        let mut background = JoinSet::new();
        background.spawn(record_results(
            shared.clone(),
            completions_rx,
            taken_along,
            shutdown.clone(),
            drained.clone(),
        ));
        background.spawn(renew_leases(shared.clone(), drained.clone()));
        background.spawn(hear_cancels(shared.clone(), drained.clone()));
        background.spawn(heartbeat(shared.clone(), drained.clone()));
        background.spawn(maintenance(shared.clone(), drained.clone()));
        background.spawn(crate::webhooks::run_dispatcher(
            shared.queue.clone(),
            shared.settings.redis_url.clone(),
            shared.info.id.clone(),
            shared.settings.webhooks.clone(),
            drained.clone(),
        ));
        if let Some(listener) = self.metrics_listener {
            background.spawn(crate::metrics::serve(
                listener,
                shared.metrics.clone(),
                drained.clone(),
            ));
        }

        let jobs = fetch_loop(shared.clone(), shutdown, completions, taken_along_rx).await;
        tracing::info!("stopping: no new jobs; finishing the ones in hand");
        finish_jobs(&shared, jobs).await;
        drained_trigger.trigger();
        while background.join_next().await.is_some() {}
        if let Err(e) = shared.queue.deregister(&shared.info.id).await {
            tracing::warn!(error = %e, "could not deregister");
        }
        tracing::info!("worker stopped");
        Ok(())
    }
}

/// Waits for the jobs in hand within the shutdown timeout; past it, hands the rest back (they
/// stop at their next checkpoint, their results unrecorded) and waits a little more for them.
async fn finish_jobs(shared: &Shared, mut jobs: JoinSet<()>) {
    let deadline = tokio::time::sleep(shared.settings.shutdown_timeout);
    tokio::pin!(deadline);
    loop {
        tokio::select! {
            next = jobs.join_next() => if next.is_none() { return },
            () = &mut deadline => break,
        }
    }
    hand_back(shared).await;
    let stopped = tokio::time::timeout(STOP_GRACE, async {
        while jobs.join_next().await.is_some() {}
    })
    .await;
    if stopped.is_err() {
        tracing::warn!(
            jobs = jobs.len(),
            "jobs still busy after being handed back; leaving them"
        );
    }
}

/// Takes jobs while there is room: at most `capacity` in hand (running plus prefetched), so a
/// worker never holds work it cannot start soon. Jobs that finished ones took along when their
/// results were recorded (see `record`) arrive on `taken_along` with the permits they use.
/// Returns the jobs still running when the shutdown starts; each job task holds a sender of
/// `completions` until its result is recorded.
async fn fetch_loop(
    shared: Arc<Shared>,
    shutdown: Shutdown,
    completions: mpsc::UnboundedSender<Completion>,
    mut taken_along: mpsc::UnboundedReceiver<TakenAlong>,
) -> JoinSet<()> {
    let mut jobs = JoinSet::new();
    let run = |jobs: &mut JoinSet<()>, lease, record, permit| {
        jobs.spawn(run_job(
            shared.clone(),
            lease,
            record,
            permit,
            completions.clone(),
        ));
    };
    let permits = Arc::new(Semaphore::new(shared.settings.capacity));
    let mut backoff = Duration::from_millis(100);
    while !shutdown.is_triggered() {
        while jobs.try_join_next().is_some() {}
        let first = tokio::select! {
            permit = permits.clone().acquire_owned() => permit.expect("never closed"),
            Some(along) = taken_along.recv() => {
                run(&mut jobs, along.lease, along.record, along.permit);
                continue;
            }
            Some(_) = jobs.join_next(), if !jobs.is_empty() => continue,
            () = shutdown.triggered() => break,
        };
        let mut held = vec![first];
        while let Ok(permit) = permits.clone().try_acquire_owned() {
            held.push(permit);
        }
        let reclaim = shared.reclaim.lock().expect("reclaim clock").due();
        let take = take_jobs(&shared, held.len(), reclaim);
        tokio::pin!(take);
        // Jobs taken along meanwhile run at once, not after a blocking read ends.
        let taken = loop {
            tokio::select! {
                taken = &mut take => break taken,
                Some(along) = taken_along.recv() => {
                    run(&mut jobs, along.lease, along.record, along.permit);
                }
            }
        };
        match taken {
            Ok(started) => {
                backoff = Duration::from_millis(100);
                for started in started {
                    match started {
                        Started::Run(lease, record) => {
                            let permit = held.pop().expect("one permit per delivery");
                            run(&mut jobs, lease, *record, permit);
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
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = shutdown.triggered() => break,
                }
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
    // Jobs taken along as the stop came: never run here, so given straight back.
    taken_along.close();
    let mut late = Vec::new();
    while let Ok(along) = taken_along.try_recv() {
        late.push(along.lease);
    }
    record::give_back(&shared, &late).await;
    jobs
}

/// When to look for jobs abandoned by dead workers: twice per visibility timeout.
struct ReclaimClock {
    every: Duration,
    last: Instant,
}

impl ReclaimClock {
    fn new(visibility_timeout: Duration) -> ReclaimClock {
        let every = (visibility_timeout / 2).max(Duration::from_secs(1));
        ReclaimClock {
            every,
            last: Instant::now() - every,
        }
    }

    /// Whether a look is due, without taking it.
    fn is_due(&self) -> bool {
        self.last.elapsed() >= self.every
    }

    /// Whether a look is due; if so, it counts as taken now.
    fn due(&mut self) -> bool {
        let due = self.is_due();
        if due {
            self.last = Instant::now();
        }
        due
    }
}

/// Up to `room` jobs started: abandoned ones first when `reclaim`, then new ones. One take
/// script call reads and starts them; when the last read found the queue drained, the worker
/// blocks for new entries first and starts them with whatever else has come by then. Either
/// way a woken worker costs one script call, not a fetch and a start.
async fn take_jobs(
    shared: &Shared,
    room: usize,
    reclaim: bool,
) -> Result<Vec<Started>, QueueError> {
    let (mut held, mut from) = (Vec::new(), HeldFrom::Reclaim);
    if reclaim {
        held = shared.consumer.reclaim(room).await?;
        if !held.is_empty() {
            tracing::info!(
                count = held.len(),
                "took over jobs abandoned by another worker"
            );
        }
    }
    if held.is_empty() && shared.drained.swap(false, Ordering::Relaxed) {
        // Whatever happens now, the next round reads (and feeds) first: after nothing came
        // for a while, in case jobs of API keys wait that no enqueue fed ahead; after an
        // error, so an outage is met by the take script's own recovery.
        // A blocking read takes up to its count from each priority's stream.
        let per_stream = (room / PRIORITIES).max(1);
        held = shared
            .consumer
            .wait_for_new(per_stream, FETCH_BLOCK)
            .await?;
        from = HeldFrom::Read;
        if held.is_empty() {
            return Ok(Vec::new());
        }
    }
    let taken = shared
        .consumer
        .take(&held, from, room.saturating_sub(held.len()))
        .await?;
    shared.drained.store(taken.drained, Ordering::Relaxed);
    let (started, extra) = within_room(taken.started, room);
    // More came than there is room for (a blocking read with little room, entries on several
    // streams): given straight back for any worker to take.
    record::give_back(shared, &extra).await;
    Ok(started)
}

/// The first `room` jobs to run (and every dropped delivery), and the leases of the rest.
fn within_room(started: Vec<Started>, room: usize) -> (Vec<Started>, Vec<Lease>) {
    let mut kept = Vec::with_capacity(started.len());
    let mut extra = Vec::new();
    let mut runs = 0;
    for s in started {
        match s {
            Started::Run(lease, _) if runs == room => extra.push(lease),
            Started::Run(..) => {
                runs += 1;
                kept.push(s);
            }
            dropped => kept.push(dropped),
        }
    }
    (kept, extra)
}

/// One job, from start to its recorded result. Its `permit` (its place among the jobs in hand)
/// goes with its result, so the call that records it can take the next job in its place.
#[tracing::instrument(skip_all, fields(job_id = %lease.job_id, attempt = lease.attempt, request_id = record.request_id.as_deref().unwrap_or("-")))]
async fn run_job(
    shared: Arc<Shared>,
    lease: Lease,
    record: JobRecord,
    permit: OwnedSemaphorePermit,
    completions: mpsc::UnboundedSender<Completion>,
) {
    let cancel = Arc::new(AtomicBool::new(record.cancel_requested));
    let handed_back = Arc::new(AtomicBool::new(false));
    let lease_lost = Arc::new(AtomicBool::new(false));
    shared.hold(InHand {
        lease: lease.clone(),
        cancel: cancel.clone(),
        handed_back: handed_back.clone(),
        lease_lost: lease_lost.clone(),
    });
    let started = Instant::now();
    let outcome = job::execute(&shared, &lease, &record, cancel).await;
    shared.metrics.stage("total", started.elapsed());
    let (label, code) = match &outcome {
        Outcome::Succeeded { outputs, .. } => {
            let out: u64 = outputs.iter().map(|o| o.bytes).sum();
            shared.metrics.bytes(record.input.bytes(), out);
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

    // The result must reach Redis before the job leaves our hands (unless it was handed back
    // or its lease was lost: then another worker runs it, and this attempt's end means nothing).
    let written = match &outcome {
        Outcome::Succeeded { outputs, .. } => outputs.clone(),
        _ => Vec::new(),
    };
    let mut fenced = lease_lost.load(Ordering::Relaxed);
    if !handed_back.load(Ordering::Relaxed) && !fenced {
        let (recorded, wait) = oneshot::channel();
        let completion = Completion {
            lease: lease.clone(),
            outcome,
            recorded,
            permit,
        };
        if completions.send(completion).is_ok() {
            fenced = wait.await == Ok(Completed::Fenced);
        }
    }
    if fenced {
        // The outputs are this attempt's own objects: the job's record never links them.
        job::delete_outputs(&shared, &written).await;
        shared.metrics.lease_lost();
        tracing::warn!(
            token = lease.token,
            "lease lost: another worker took the job over; this attempt changed nothing"
        );
    }
    shared.release(&lease.job_id);
}

impl Shared {
    fn hold(&self, job: InHand) {
        let mut in_hand = self.in_hand.lock().expect("in-hand lock");
        in_hand.insert(job.lease.job_id.clone(), job);
        self.metrics.set_in_hand(in_hand.len());
    }

    /// Stops a job whose lease another worker now holds, at its next checkpoint.
    pub(crate) fn lose_lease(&self, job_id: &str) {
        let in_hand = self.in_hand.lock().expect("in-hand lock");
        if let Some(held) = in_hand.get(job_id) {
            held.lease_lost.store(true, Ordering::Relaxed);
            held.cancel.store(true, Ordering::Relaxed);
        }
    }

    fn release(&self, job_id: &str) {
        let mut in_hand = self.in_hand.lock().expect("in-hand lock");
        in_hand.remove(job_id);
        self.metrics.set_in_hand(in_hand.len());
    }
}

/// Renews every lease in hand a few times per visibility timeout, and passes cancel requests
/// to the jobs they concern. Ends once the worker has drained.
async fn renew_leases(shared: Arc<Shared>, drained: Shutdown) {
    let every = (shared.settings.queue.visibility_timeout / 3)
        .clamp(Duration::from_millis(200), Duration::from_secs(10));
    while !drained.is_triggered() {
        tokio::select! {
            () = tokio::time::sleep(every) => {}
            () = drained.triggered() => return,
        }
        let held: Vec<(Lease, Arc<AtomicBool>)> = {
            let in_hand = shared.in_hand.lock().expect("in-hand lock");
            in_hand
                .values()
                .map(|h| (h.lease.clone(), h.cancel.clone()))
                .collect()
        };
        if held.is_empty() {
            continue;
        }
        let leases: Vec<Lease> = held.iter().map(|(l, _)| l.clone()).collect();
        match shared.consumer.renew(&leases).await {
            Ok(states) => {
                for ((lease, cancel), state) in held.iter().zip(states) {
                    match state {
                        LeaseState::CancelRequested => cancel.store(true, Ordering::Relaxed),
                        LeaseState::Lost => {
                            tracing::warn!(job_id = %lease.job_id, "lease lost: another worker took the job over; stopping it");
                            shared.lose_lease(&lease.job_id);
                        }
                        LeaseState::Held => {}
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "cannot renew leases"),
        }
    }
}

/// Passes cancels of jobs in hand to them the moment they are published (the lease renewal
/// catches any this misses).
async fn hear_cancels(shared: Arc<Shared>, drained: Shutdown) {
    let redis_url = shared.settings.redis_url.clone();
    let on_cancel = |job_id: &str| {
        let in_hand = shared.in_hand.lock().expect("in-hand lock");
        if let Some(held) = in_hand.get(job_id) {
            tracing::info!(job_id, "cancel requested: stopping at the next checkpoint");
            held.cancel.store(true, Ordering::Relaxed);
        }
    };
    pipeline::queue::follow_cancels(&shared.queue, &redis_url, on_cancel, drained).await;
}

async fn heartbeat(shared: Arc<Shared>, drained: Shutdown) {
    while !drained.is_triggered() {
        let mut info = shared.info.clone();
        info.jobs_in_hand = shared.in_hand.lock().expect("in-hand lock").len() as u32;
        if let Err(e) = shared.queue.heartbeat(&info, HEARTBEAT_EVERY * 5).await {
            tracing::debug!(error = %e, "heartbeat failed");
        }
        tokio::select! {
            () = tokio::time::sleep(HEARTBEAT_EVERY) => {}
            () = drained.triggered() => {}
        }
    }
}

/// Promotes due retries, trims acknowledged stream entries, prunes dead consumers.
async fn maintenance(shared: Arc<Shared>, drained: Shutdown) {
    let mut tick = 0u64;
    loop {
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
            () = drained.triggered() => return,
        }
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

/// Past the shutdown deadline: stop the jobs still running at their next checkpoint, leave
/// their results unrecorded, and give them back so another worker starts them at once.
async fn hand_back(shared: &Shared) {
    let leases: Vec<Lease> = {
        let in_hand = shared.in_hand.lock().expect("in-hand lock");
        for held in in_hand.values() {
            held.handed_back.store(true, Ordering::Relaxed);
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
