//! Job events for Server-Sent Events: one pub/sub subscription per gateway (a pattern over
//! every job's channel), fanned out in-process to the streams that wait on each job. Lost
//! connections are re-established; SSE streams also poll, so a gap costs latency, not events.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::StreamExt;
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
    /// Starts the hub's pub/sub task on `redis_url`, listening to `channel_prefix*`.
    pub fn start(redis_url: &str, channel_prefix: String) -> Arc<EventHub> {
        let hub = Arc::new(EventHub {
            subscribers: Mutex::new(HashMap::new()),
            firehose: broadcast::channel(4096).0,
        });
        // Pub/sub goes to one node: on a cluster, published messages reach every node.
        let url = match redis_url.strip_prefix("redis+cluster://") {
            Some(nodes) => format!("redis://{}", nodes.split(',').next().unwrap_or("")),
            None => redis_url.to_owned(),
        };
        tokio::spawn(listen(Arc::downgrade(&hub), url, channel_prefix));
        hub
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

async fn listen(hub: std::sync::Weak<EventHub>, url: String, prefix: String) {
    let pattern = format!("{prefix}*");
    loop {
        if hub.strong_count() == 0 {
            return;
        }
        let connected = async {
            let client = redis::Client::open(url.as_str())?;
            let mut pubsub = client.get_async_pubsub().await?;
            pubsub.psubscribe(&pattern).await?;
            Ok::<_, redis::RedisError>(pubsub)
        };
        match tokio::time::timeout(Duration::from_secs(5), connected).await {
            Ok(Ok(mut pubsub)) => {
                let mut messages = pubsub.on_message();
                while let Some(message) = messages.next().await {
                    let Some(hub) = hub.upgrade() else { return };
                    let channel = message.get_channel_name();
                    if let (Some(job_id), Ok(payload)) = (
                        channel.strip_prefix(prefix.as_str()),
                        message.get_payload::<String>(),
                    ) {
                        hub.publish(job_id, payload);
                    }
                }
                tracing::warn!("job events subscription ended; reconnecting");
            }
            Ok(Err(e)) => tracing::warn!(error = %e, "cannot subscribe to job events; retrying"),
            Err(_) => tracing::warn!("subscribing to job events timed out; retrying"),
        }
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}
