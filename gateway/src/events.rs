//! Job events for Server-Sent Events: one subscription per gateway to every job's events (the
//! queue re-establishes it when it drops), fanned out in-process to the streams that wait on
//! each job. SSE streams also poll, so a gap costs latency, not events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use pipeline::queue::{follow_job_events, Queue};
use pipeline::shutdown::Shutdown;
use tokio::sync::{broadcast, mpsc};

/// Fans pub/sub messages out to subscribers of one job each, and to dashboards that follow
/// every job.
pub struct EventHub {
    subscribers: Mutex<HashMap<String, Vec<mpsc::UnboundedSender<String>>>>,
    /// Every job's events. Bounded: a dashboard that falls behind skips events (it catches up
    /// from the stats it is sent every few seconds) rather than holding memory.
    firehose: broadcast::Sender<String>,
}

/// A subscription to one job's events; unsubscribes when dropped.
pub struct Subscription {
    hub: Arc<EventHub>,
    job_id: String,
    pub receiver: mpsc::UnboundedReceiver<String>,
}

impl Drop for Subscription {
    fn drop(&mut self) {
        let mut subscribers = self.hub.subscribers.lock().expect("hub lock");
        if let Some(list) = subscribers.get_mut(&self.job_id) {
            list.retain(|tx| !tx.is_closed());
            if list.is_empty() {
                subscribers.remove(&self.job_id);
            }
        }
    }
}

impl EventHub {
    pub fn new() -> Arc<EventHub> {
        Arc::new(EventHub {
            subscribers: Mutex::new(HashMap::new()),
            firehose: broadcast::channel(4096).0,
        })
    }

    /// Fans out the queue's job events until the shutdown starts.
    pub async fn follow(self: Arc<Self>, queue: Queue, redis_url: String, shutdown: Shutdown) {
        let publish = |job_id: &str, payload: String| {
            self.publish(job_id, payload);
            true
        };
        follow_job_events(&queue, &redis_url, publish, shutdown).await;
    }

    pub fn subscribe(self: &Arc<Self>, job_id: &str) -> Subscription {
        let (tx, rx) = mpsc::unbounded_channel();
        self.subscribers
            .lock()
            .expect("hub lock")
            .entry(job_id.to_owned())
            .or_default()
            .push(tx);
        Subscription {
            hub: self.clone(),
            job_id: job_id.to_owned(),
            receiver: rx,
        }
    }

    /// Every job's events, as published (JSON with `id`, `status`, `progress`, `attempts`,
    /// `ts`, and `error` and `owner` when there is one).
    pub fn subscribe_all(&self) -> broadcast::Receiver<String> {
        self.firehose.subscribe()
    }

    fn publish(&self, job_id: &str, payload: String) {
        if self.firehose.receiver_count() > 0 {
            let _ = self.firehose.send(payload.clone());
        }
        let subscribers = self.subscribers.lock().expect("hub lock");
        if let Some(list) = subscribers.get(job_id) {
            for tx in list {
                let _ = tx.send(payload.clone());
            }
        }
    }
}
