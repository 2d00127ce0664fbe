//! The webhook feed: finished jobs that asked for a webhook wait on a stream (written by the
//! COMPLETE script), read through a consumer group by every worker's dispatcher; retries wait
//! in a sorted set until they are due. Delivery itself (HTTP) is the worker's business.

use std::time::Duration;

use redis::Value;

use super::conn::RedisConn;
use super::{reply, scripts, Queue, QueueError, Result};

/// The consumer group webhook dispatchers read through.
pub const WEBHOOK_GROUP: &str = "webhooks";

/// One delivery due: the stream entry, its job and which attempt this is (from 1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WebhookDue {
    pub entry: String,
    pub job_id: String,
    pub attempt: u32,
}

/// One dispatcher's handle on the feed, with its own connection for blocking reads.
#[derive(Debug, Clone)]
pub struct WebhookFeed {
    queue: Queue,
    consumer: String,
    blocking: RedisConn,
}

impl Queue {
    /// Opens the feed for dispatcher `consumer` (unique per process), creating the group if
    /// needed. `max_block` is the longest [`WebhookFeed::read`] will be asked to block.
    pub async fn webhook_feed(
        &self,
        redis_url: &str,
        consumer: &str,
        max_block: Duration,
    ) -> Result<WebhookFeed> {
        let blocking = RedisConn::connect(
            redis_url,
            max_block + self.config.call_timeout,
            &self.config.tls,
        )
        .await?;
        self.ensure_group(&self.keys.webhooks(), WEBHOOK_GROUP)
            .await?;
        Ok(WebhookFeed {
            queue: self.clone(),
            consumer: consumer.to_owned(),
            blocking,
        })
    }
}

impl WebhookFeed {
    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Moves retries that are due back onto the stream.
    pub async fn promote_due(&self) -> Result<u64> {
        let keys = &self.queue.keys;
        let mut invocation = scripts::WEBHOOK_PROMOTE.prepare_invoke();
        invocation
            .key(keys.webhooks_delayed())
            .key(keys.webhooks())
            .arg(100);
        self.queue.redis.script(&invocation).await
    }

    /// Takes over up to `count` deliveries another dispatcher held for longer than `idle`
    /// (it died).
    pub async fn reclaim(&self, idle: Duration, count: usize) -> Result<Vec<WebhookDue>> {
        let reply: Value = self
            .queue
            .redis
            .query(
                redis::cmd("XAUTOCLAIM")
                    .arg(self.queue.keys.webhooks())
                    .arg(WEBHOOK_GROUP)
                    .arg(&self.consumer)
                    .arg(idle.as_millis() as u64)
                    .arg("0-0")
                    .arg("COUNT")
                    .arg(count),
            )
            .await?;
        Ok(reply::claimed(&reply).iter().filter_map(due).collect())
    }

    /// Up to `count` new deliveries, waiting up to `block` for one. A missing group (Redis
    /// lost its data) is made again, and nothing is returned this time.
    pub async fn read(&self, count: usize, block: Duration) -> Result<Vec<WebhookDue>> {
        let read = self
            .blocking
            .query::<Value>(
                redis::cmd("XREADGROUP")
                    .arg("GROUP")
                    .arg(WEBHOOK_GROUP)
                    .arg(&self.consumer)
                    .arg("COUNT")
                    .arg(count)
                    .arg("BLOCK")
                    .arg(block.as_millis() as u64)
                    .arg("STREAMS")
                    .arg(self.queue.keys.webhooks())
                    .arg(">"),
            )
            .await;
        let reply = match read {
            Err(QueueError::MissingGroup(_)) => {
                self.queue
                    .ensure_group(&self.queue.keys.webhooks(), WEBHOOK_GROUP)
                    .await?;
                return Ok(Vec::new());
            }
            other => other?,
        };
        Ok(reply::streams(&reply)
            .into_iter()
            .flat_map(|(_, entries)| entries.iter().filter_map(due))
            .collect())
    }

    /// Drops a delivery with nothing to deliver (its job expired, or has no webhook).
    pub async fn discard(&self, due: &WebhookDue) -> Result<()> {
        let _: i64 = self
            .queue
            .redis
            .query(
                redis::cmd("XACK")
                    .arg(self.queue.keys.webhooks())
                    .arg(WEBHOOK_GROUP)
                    .arg(&due.entry),
            )
            .await?;
        Ok(())
    }

    /// Records how a delivery went in the job's record (`webhook` field), schedules the next
    /// attempt at `retry_at` (ms since the epoch) when there is one, and removes the entry.
    pub async fn record(
        &self,
        due: &WebhookDue,
        status: &str,
        retry_at: Option<u64>,
    ) -> Result<()> {
        let keys = &self.queue.keys;
        let mut pipe = redis::pipe();
        pipe.atomic();
        if let Some(at) = retry_at {
            pipe.cmd("ZADD")
                .arg(keys.webhooks_delayed())
                .arg(at)
                .arg(format!("{}:{}", due.attempt + 1, due.job_id))
                .ignore();
        }
        pipe.cmd("HSET")
            .arg(keys.job(&due.job_id))
            .arg("webhook")
            .arg(status)
            .ignore();
        pipe.cmd("XACK")
            .arg(keys.webhooks())
            .arg(WEBHOOK_GROUP)
            .arg(&due.entry)
            .ignore();
        pipe.cmd("XDEL")
            .arg(keys.webhooks())
            .arg(&due.entry)
            .ignore();
        self.queue.redis.pipeline(&pipe).await
    }
}

/// A webhook stream entry (`id`, and `attempt` from the second attempt on) → a delivery.
fn due(entry: &Value) -> Option<WebhookDue> {
    let (entry, fields) = reply::entry(entry)?;
    Some(WebhookDue {
        entry,
        job_id: reply::field(&fields, "id")?.to_owned(),
        attempt: reply::field(&fields, "attempt")
            .and_then(|a| a.parse().ok())
            .unwrap_or(1),
    })
}
