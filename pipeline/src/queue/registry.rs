//! The worker registry: heartbeats, so gateways and dashboards can show who is alive.

use std::collections::HashMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Queue, Result, GROUP};

/// What a worker says about itself in each heartbeat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WorkerInfo {
    /// Its consumer name (a UUID).
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub threads: u32,
    pub jobs_in_hand: u32,
    pub started_at: u64,
    pub version: String,
    /// Milliseconds since the epoch of the last heartbeat (set when read back).
    #[serde(default)]
    pub last_seen: u64,
}

impl Queue {
    /// Records a heartbeat. The record expires by itself after `ttl` without one.
    pub async fn heartbeat(&self, info: &WorkerInfo, ttl: Duration) -> Result<()> {
        let now = crate::job::now_ms();
        let key = self.keys.worker(&info.id);
        let body = serde_json::to_string(info).expect("worker info serializes");
        let mut pipe = redis::pipe();
        pipe.cmd("SET")
            .arg(&key)
            .arg(body)
            .arg("PX")
            .arg(ttl.as_millis() as u64)
            .ignore()
            .cmd("ZADD")
            .arg(self.keys.workers())
            .arg(now)
            .arg(&info.id)
            .ignore()
            // Forget workers silent for a day.
            .cmd("ZREMRANGEBYSCORE")
            .arg(self.keys.workers())
            .arg("-inf")
            .arg(now.saturating_sub(86_400_000))
            .ignore();
        self.redis.pipeline(&pipe).await
    }

    /// Removes a worker from the registry (on a clean shutdown).
    pub async fn deregister(&self, worker_id: &str) -> Result<()> {
        let mut pipe = redis::pipe();
        pipe.cmd("DEL").arg(self.keys.worker(worker_id)).ignore();
        pipe.cmd("ZREM")
            .arg(self.keys.workers())
            .arg(worker_id)
            .ignore();
        self.redis.pipeline(&pipe).await
    }

    /// Workers whose heartbeat is still fresh, newest heartbeat first.
    pub async fn workers(&self) -> Result<Vec<WorkerInfo>> {
        let seen: Vec<(String, u64)> = self
            .redis
            .query(
                redis::cmd("ZREVRANGE")
                    .arg(self.keys.workers())
                    .arg(0)
                    .arg(999)
                    .arg("WITHSCORES"),
            )
            .await?;
        if seen.is_empty() {
            return Ok(Vec::new());
        }
        let mut cmd = redis::cmd("MGET");
        for (id, _) in &seen {
            cmd.arg(self.keys.worker(id));
        }
        let bodies: Vec<Option<String>> = self.redis.query(&cmd).await?;
        Ok(seen
            .into_iter()
            .zip(bodies)
            .filter_map(|((_, last_seen), body)| {
                let mut info: WorkerInfo = serde_json::from_str(&body?).ok()?;
                info.last_seen = last_seen;
                Some(info)
            })
            .collect())
    }

    /// Removes consumers that hold nothing and have been idle longer than `idle` from the
    /// consumer group (dead workers' names would otherwise pile up). Returns how many went.
    pub async fn prune_consumers(&self, idle: Duration) -> Result<usize> {
        let mut removed = 0;
        for stream in self.keys.streams() {
            let consumers: Vec<HashMap<String, redis::Value>> = self
                .redis
                .query(redis::cmd("XINFO").arg("CONSUMERS").arg(&stream).arg(GROUP))
                .await?;
            for consumer in consumers {
                let int = |k: &str| match consumer.get(k) {
                    Some(redis::Value::Int(n)) => *n,
                    _ => -1,
                };
                let name = match consumer.get("name") {
                    Some(redis::Value::BulkString(b)) => String::from_utf8_lossy(b).into_owned(),
                    _ => continue,
                };
                if int("pending") == 0 && int("idle") > idle.as_millis() as i64 {
                    let _: i64 = self
                        .redis
                        .query(
                            redis::cmd("XGROUP")
                                .arg("DELCONSUMER")
                                .arg(&stream)
                                .arg(GROUP)
                                .arg(&name),
                        )
                        .await?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }
}
