//! Enqueueing for many concurrent requests in few round trips: each request hands its job to
//! one task, which sends whatever has gathered while its previous call was out as one batch
//! (one ENQUEUE script call). Nothing waits for a batch to fill, so a lone upload goes out at
//! once; every caller still returns only once its own job is in Redis.

use tokio::sync::{mpsc, oneshot};

use super::{Queue, QueueError, Result};
use crate::job::NewJob;

/// The most jobs one call enqueues.
const MAX_BATCH: usize = 64;

/// A job on its way, and who to tell whether it was created.
struct Pending {
    job: NewJob,
    created: oneshot::Sender<Result<bool>>,
}

/// A handle to the batching task; the task ends when the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Enqueuer {
    pending: mpsc::UnboundedSender<Pending>,
}

impl Enqueuer {
    /// Starts the batching task on the current Tokio runtime.
    pub fn spawn(queue: Queue) -> Enqueuer {
        let (pending, rx) = mpsc::unbounded_channel();
        tokio::spawn(run(queue, rx));
        Enqueuer { pending }
    }

    /// Creates a job and queues it, as [`Queue::enqueue`] does: `false` when a job with this
    /// id already exists.
    pub async fn enqueue(&self, job: NewJob) -> Result<bool> {
        let stopped = || QueueError::Unavailable("the enqueueing task has stopped".into());
        let (created, reply) = oneshot::channel();
        self.pending
            .send(Pending { job, created })
            .map_err(|_| stopped())?;
        reply.await.map_err(|_| stopped())?
    }
}

async fn run(queue: Queue, mut pending: mpsc::UnboundedReceiver<Pending>) {
    while let Some(first) = pending.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match pending.try_recv() {
                Ok(next) => batch.push(next),
                Err(_) => break,
            }
        }
        let (jobs, told): (Vec<NewJob>, Vec<_>) =
            batch.into_iter().map(|p| (p.job, p.created)).unzip();
        match queue.enqueue_many(&jobs).await {
            Ok(created) => {
                for (tell, created) in told.into_iter().zip(created) {
                    let _ = tell.send(Ok(created));
                }
            }
            Err(e) => {
                for tell in told {
                    let _ = tell.send(Err(e.clone()));
                }
            }
        }
    }
}
