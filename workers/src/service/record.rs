//! Recording how attempts ended, and taking the next jobs in the same round trip: a busy
//! worker's finished jobs make room, so the call that records them also takes their
//! replacements (one Redis round trip per batch instead of a complete and a take).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use pipeline::job::JobRecord;
use pipeline::queue::{Completed, Lease, Outcome, Started, Taken};
use pipeline::shutdown::Shutdown;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit};

use super::Shared;

/// The most results one call records.
const MAX_BATCH: usize = 64;

/// A finished attempt waiting to be recorded, who to tell what became of it, and its place
/// among the jobs in hand (passed on to a job taken in its stead, else freed).
pub(super) struct Completion {
    pub(super) lease: Lease,
    pub(super) outcome: Outcome,
    pub(super) recorded: oneshot::Sender<Completed>,
    pub(super) permit: OwnedSemaphorePermit,
}

/// A job started by the call that recorded others, for the fetch loop to run.
pub(super) struct TakenAlong {
    pub(super) lease: Lease,
    pub(super) record: JobRecord,
    pub(super) permit: OwnedSemaphorePermit,
}

/// Records finished attempts, as many at a time as have ended, and takes as many new jobs
/// along (unless stopping, the queue was found drained, or a look for abandoned jobs is due:
/// then the fetch loop takes, with the freed permits). An outage delays results, it does not
/// drop them: the batch is retried until Redis takes it, or until the worker has stopped (then
/// another worker redoes the jobs after the visibility timeout). Ends when every sender is gone.
pub(super) async fn record_results(
    shared: Arc<Shared>,
    mut completions: mpsc::UnboundedReceiver<Completion>,
    taken_along: mpsc::UnboundedSender<TakenAlong>,
    shutdown: Shutdown,
    drained: Shutdown,
) {
    while let Some(first) = completions.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match completions.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let mut done = Vec::with_capacity(batch.len());
        let mut told = Vec::with_capacity(batch.len());
        let mut permits = Vec::with_capacity(batch.len());
        for c in batch {
            done.push((c.lease, c.outcome));
            told.push(c.recorded);
            permits.push(c.permit);
        }
        let take_along = !shutdown.is_triggered()
            && !shared.drained.load(Ordering::Relaxed)
            && !shared.reclaim.lock().expect("reclaim clock").is_due();
        let (results, taken) = if take_along {
            record_and_take(&shared, &done).await
        } else {
            (None, None)
        };
        let results = match results {
            Some(results) => results,
            None => match record(&shared, &done, &drained).await {
                Some(results) => results,
                None => return,
            },
        };
        for (recorded, result) in told.into_iter().zip(results) {
            let _ = recorded.send(result);
        }
        if let Some(taken) = taken {
            pass_on(&shared, taken, permits, &taken_along).await;
        }
    }
}

/// One round trip: the results recorded and as many new jobs taken. `None` results: not
/// recorded (the caller retries on its own); `None` taken: nothing to run.
async fn record_and_take(
    shared: &Shared,
    done: &[(Lease, Outcome)],
) -> (Option<Vec<Completed>>, Option<Taken>) {
    match shared.consumer.complete_and_take(done, done.len()).await {
        Ok((Ok(results), taken)) => {
            let taken = match taken {
                Ok(taken) => {
                    shared.drained.store(taken.drained, Ordering::Relaxed);
                    Some(taken)
                }
                Err(e) => {
                    tracing::warn!(error = %e, "could not take jobs along with results");
                    None
                }
            };
            (Some(results), taken)
        }
        Ok((Err(e), taken)) => {
            tracing::warn!(error = %e, jobs = done.len(), "cannot record results yet; retrying");
            // Started though their places are not free yet: given back for any worker.
            if let Ok(taken) = taken {
                give_back(shared, &runs(taken.started)).await;
            }
            (None, None)
        }
        Err(e) => {
            tracing::warn!(error = %e, jobs = done.len(), "cannot record results yet; retrying");
            (None, None)
        }
    }
}

/// Records `done`, retrying with backoff; `None` once the worker has stopped.
async fn record(
    shared: &Shared,
    done: &[(Lease, Outcome)],
    drained: &Shutdown,
) -> Option<Vec<Completed>> {
    let mut backoff = Duration::from_millis(100);
    loop {
        match shared.consumer.complete(done).await {
            Ok(results) => return Some(results),
            Err(e) => {
                tracing::warn!(error = %e, jobs = done.len(), "cannot record results yet; retrying in {backoff:?}")
            }
        }
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = drained.triggered() => return None,
        }
        backoff = (backoff * 2).min(Duration::from_secs(5));
    }
}

/// Hands what the recording call started to the fetch loop, each with a freed permit (the
/// take asked for no more than there were); what the loop can no longer run is given back.
async fn pass_on(
    shared: &Shared,
    taken: Taken,
    mut permits: Vec<OwnedSemaphorePermit>,
    taken_along: &mpsc::UnboundedSender<TakenAlong>,
) {
    let mut unrun = Vec::new();
    for started in taken.started {
        match started {
            Started::Run(lease, record) => {
                let Some(permit) = permits.pop() else {
                    unrun.push(lease);
                    continue;
                };
                let along = TakenAlong {
                    lease,
                    record: *record,
                    permit,
                };
                if let Err(mpsc::error::SendError(along)) = taken_along.send(along) {
                    unrun.push(along.lease);
                }
            }
            Started::Dropped { job_id, reason } => {
                tracing::info!(job_id, reason, "dropped a delivery without running it");
            }
        }
    }
    give_back(shared, &unrun).await;
}

/// The leases of the jobs a take started to run.
fn runs(started: Vec<Started>) -> Vec<Lease> {
    started
        .into_iter()
        .filter_map(|s| match s {
            Started::Run(lease, _) => Some(lease),
            Started::Dropped { .. } => None,
        })
        .collect()
}

/// Gives started jobs this worker will not run back to the queue at once (without counting the
/// attempt), for any worker to take.
pub(super) async fn give_back(shared: &Shared, leases: &[Lease]) {
    if leases.is_empty() {
        return;
    }
    if let Err(e) = shared.consumer.hand_back(leases).await {
        tracing::warn!(error = %e, jobs = leases.len(), "could not hand back jobs; they return after the visibility timeout");
    }
}
