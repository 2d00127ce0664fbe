//! Webhooks: when a job with `webhook.url` ends, its final record is POSTed there, signed with
//! HMAC-SHA256 of the body (`X-Imagepipe-Signature: sha256=HEX`), retried with backoff. Every
//! worker runs a dispatcher task reading the queue's webhook feed, so delivery never holds up
//! image work.

mod delivery;

use std::time::{Duration, Instant};

use pipeline::queue::{Queue, WebhookDue, WebhookFeed};
use pipeline::shutdown::Shutdown;
use pipeline::view::{JobView, Links};
use pipeline::webhooks::{TargetPolicy, MAX_ATTEMPTS};

use crate::args::WebhookArgs;
pub use delivery::{client, deliver, Delivery};

/// Deliveries a dead dispatcher held this long are taken over.
const RECLAIM_IDLE: Duration = Duration::from_secs(60);
/// How long one read waits for a delivery (also how soon a shutdown is seen).
const READ_BLOCK: Duration = Duration::from_millis(500);

/// Settings of a dispatcher.
#[derive(Debug, Clone, PartialEq)]
pub struct DispatcherSettings {
    /// Signs bodies when set (`IMAGEPIPE_WEBHOOK_SECRET`).
    pub secret: Option<Vec<u8>>,
    /// Which targets may be called.
    pub policy: TargetPolicy,
    /// How output URLs in payloads are made (the public origin, empty for relative URLs, and
    /// the URL signer).
    pub links: Links,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
}

impl DispatcherSettings {
    pub fn from_args(args: &WebhookArgs) -> DispatcherSettings {
        DispatcherSettings {
            secret: args.secret(),
            policy: args.target_policy(),
            links: Links::new(&args.public_origin(), args.url_signer()),
            retry_base: Duration::from_secs(2),
        }
    }
}

/// Delivers webhooks of finished jobs until the shutdown starts. `consumer` names this
/// dispatcher in the feed's consumer group.
pub async fn run_dispatcher(
    queue: Queue,
    redis_url: String,
    consumer: String,
    settings: DispatcherSettings,
    shutdown: Shutdown,
) {
    let Some(feed) = open_feed(&queue, &redis_url, &consumer, &shutdown).await else {
        return;
    };
    let client = client(&settings.policy);
    let mut last_reclaim = Instant::now();
    while !shutdown.is_triggered() {
        let _ = feed.promote_due().await;
        let mut due = Vec::new();
        if last_reclaim.elapsed() > RECLAIM_IDLE / 2 {
            last_reclaim = Instant::now();
            due.extend(feed.reclaim(RECLAIM_IDLE, 16).await.unwrap_or_default());
        }
        let read = tokio::select! {
            read = feed.read(16, READ_BLOCK) => read,
            () = shutdown.triggered() => break,
        };
        match read {
            Ok(more) => due.extend(more),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read webhooks");
                tokio::time::sleep(READ_BLOCK).await;
            }
        }
        let deliveries = due
            .iter()
            .map(|due| deliver_one(&feed, &client, &settings, due));
        futures::future::join_all(deliveries).await;
    }
}

/// The feed, once Redis answers (or `None` when the shutdown comes first).
async fn open_feed(
    queue: &Queue,
    redis_url: &str,
    consumer: &str,
    shutdown: &Shutdown,
) -> Option<WebhookFeed> {
    loop {
        match queue
            .webhook_feed(redis_url, consumer, READ_BLOCK + Duration::from_secs(2))
            .await
        {
            Ok(feed) => return Some(feed),
            Err(e) => tracing::warn!(error = %e, "webhook dispatcher cannot reach Redis yet"),
        }
        tokio::select! {
            () = tokio::time::sleep(Duration::from_secs(2)) => {}
            () = shutdown.triggered() => return None,
        }
    }
}

/// Delivers one webhook and records how it went. Redis trouble leaves the entry pending: it is
/// tried again later.
async fn deliver_one(
    feed: &WebhookFeed,
    client: &reqwest::Client,
    settings: &DispatcherSettings,
    due: &WebhookDue,
) {
    let record = match feed.queue().get(&due.job_id).await {
        Ok(record) => record,
        Err(_) => return,
    };
    let Some((record, webhook)) = record.and_then(|r| {
        let url = r.spec.webhook.as_ref()?.url.clone();
        Some((r, url))
    }) else {
        // The job expired, or never had a webhook: nothing to deliver.
        let _ = feed.discard(due).await;
        return;
    };
    let body =
        serde_json::to_vec(&JobView::new(&record, &settings.links)).expect("view serializes");
    let outcome = deliver(
        client,
        &webhook,
        body,
        settings.secret.as_deref(),
        &settings.policy,
    )
    .await;
    let attempt = due.attempt;
    let (status, retry_at) = match &outcome {
        Delivery::Delivered(code) => (format!("delivered (HTTP {code}, attempt {attempt})"), None),
        Delivery::Permanent(why) => (format!("refused: {why}"), None),
        Delivery::Transient(why) if attempt >= MAX_ATTEMPTS => {
            (format!("failed after {attempt} attempts: {why}"), None)
        }
        Delivery::Transient(why) => {
            let delay = settings
                .retry_base
                .saturating_mul(1 << (attempt - 1).min(16));
            let at = pipeline::job::now_ms() + delay.as_millis() as u64;
            (
                format!("retrying (attempt {attempt} failed: {why})"),
                Some(at),
            )
        }
    };
    tracing::info!(job_id = %due.job_id, attempt, status = %status, "webhook");
    let _ = feed.record(due, &status, retry_at).await;
}
