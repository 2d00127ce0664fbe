//! The worker's side of the queue: fetching in priority order, starting (or both in one call),
//! renewing leases, taking over abandoned jobs, and recording how attempts ended.

use std::collections::HashMap;
use std::time::Duration;

use redis::Value;

use crate::failure::Disposition;
use crate::job::{JobError, JobRecord, Media, OutputRecord};

use super::conn::RedisConn;
use super::keys::GROUP;
use super::{evalsha, reply, scripts, Queue, QueueError, Result};

/// A stream entry handed to this consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// 1-based index into [`super::Keys::streams`] (its priority).
    pub stream: usize,
    pub entry: String,
    pub job_id: String,
}

/// A started job: the worker holds it until it completes it (or dies, and another worker
/// takes it over).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub stream: usize,
    pub entry: String,
    pub job_id: String,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// The lease token this hand-over got (see API.md, "Fencing"): what this worker may change
    /// of the job is checked against it, so a worker that lost the job changes nothing.
    pub token: u64,
    /// The job asks for a webhook when it ends.
    pub webhook: bool,
}

/// What [`Consumer::start`] made of a delivery.
#[derive(Debug, Clone)]
pub enum Started {
    Run(Lease, Box<JobRecord>),
    /// Acknowledged without running: `reason` is `gone` (expired), a final status (a late
    /// duplicate), or `exhausted` (its attempts all ended with a dead worker).
    Dropped {
        job_id: String,
        reason: String,
    },
}

/// Where the deliveries handed to [`Consumer::take`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeldFrom {
    /// A read of new entries ([`Consumer::wait_for_new`]).
    Read,
    /// Taken over from a dead worker ([`Consumer::reclaim`]).
    Reclaim,
}

/// What [`Consumer::take`] started.
#[derive(Debug, Clone, Default)]
pub struct Taken {
    /// The held deliveries first, then the new ones.
    pub started: Vec<Started>,
    /// The read came up short: every stream (and every API key's list) was empty just now, so
    /// the next take may block for new entries ([`Consumer::wait_for_new`]) straight away.
    pub drained: bool,
}

/// How an attempt ended.
#[derive(Debug, Clone)]
pub enum Outcome {
    Succeeded {
        outputs: Vec<OutputRecord>,
        placeholder: Option<String>,
        /// What a worker found the source to be (a video's probe).
        media: Option<Media>,
    },
    /// Retried later (with backoff) when the error is transient and attempts remain, else final.
    Failed {
        error: JobError,
        disposition: Disposition,
    },
    Cancelled,
}

/// The state of a lease after renewing it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeaseState {
    /// Another worker took the job over (this one stalled past the visibility timeout).
    Lost,
    Held,
    /// Held, and a cancel was asked for: stop at the next checkpoint.
    CancelRequested,
}

/// What [`Consumer::complete`] did with a result.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Completed {
    Written,
    /// The job had already ended (another attempt finished first, or it was cancelled).
    Stale,
    /// The job record no longer exists.
    Gone,
    /// Another worker holds the job now (this one lost its lease): nothing was changed.
    Fenced,
}

/// One worker process's consumer: a unique name in the group, and its own connection for
/// blocking reads (a blocked read must not hold up lease renewals).
#[derive(Debug, Clone)]
pub struct Consumer {
    queue: Queue,
    name: String,
    blocking: RedisConn,
}

impl Consumer {
    /// A consumer named `name` (unique per worker process: a UUID). `max_block` is the longest
    /// [`Consumer::fetch`] will be asked to block.
    pub async fn new(
        queue: &Queue,
        url: &str,
        name: String,
        max_block: Duration,
    ) -> Result<Consumer> {
        let blocking = RedisConn::connect(
            url,
            max_block + queue.config.call_timeout,
            &queue.config.tls,
        )
        .await?;
        Ok(Consumer {
            queue: queue.clone(),
            name,
            blocking,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn queue(&self) -> &Queue {
        &self.queue
    }

    /// Up to `max` new entries, high priority first; waits up to `block` when there are none
    /// (and may then return up to `max` of each priority).
    pub async fn fetch(&self, max: usize, block: Duration) -> Result<Vec<Delivery>> {
        if max == 0 {
            return Ok(Vec::new());
        }
        let keys = &self.queue.keys;
        let mut invocation = scripts::FETCH.prepare_invoke();
        for key in self.read_keys() {
            invocation.key(key);
        }
        invocation
            .arg(GROUP)
            .arg(&self.name)
            .arg(max)
            .arg(keys.wait_prefix());
        let flat: Vec<String> = self
            .or_start_over(self.queue.redis.script(&invocation).await)
            .await?;
        let found = deliveries_from_flat(&flat);
        if !found.is_empty() || block.is_zero() {
            return Ok(found);
        }
        self.wait_for_new(max, block).await
    }

    /// Up to `per_stream` new entries of each priority as they arrive, waiting up to `block`
    /// (zero: not at all). A plain read of the three streams: it does not feed jobs of API
    /// keys (enqueue feeds a few ahead, so that such a read wakes; [`Consumer::take`] and
    /// [`Consumer::fetch`] feed the rest).
    pub async fn wait_for_new(&self, per_stream: usize, block: Duration) -> Result<Vec<Delivery>> {
        let [high, normal, low] = self.queue.keys.streams();
        let mut read = redis::cmd("XREADGROUP");
        read.arg("GROUP")
            .arg(GROUP)
            .arg(&self.name)
            .arg("COUNT")
            .arg(per_stream);
        if !block.is_zero() {
            read.arg("BLOCK").arg(block.as_millis() as u64);
        }
        read.arg("STREAMS")
            .arg(&high)
            .arg(&normal)
            .arg(&low)
            .arg(">")
            .arg(">")
            .arg(">");
        // A read that blocks goes on its own connection, so it never holds up other calls.
        let conn = if block.is_zero() {
            &self.queue.redis
        } else {
            &self.blocking
        };
        let reply: Value = self.or_start_over(conn.query(&read).await).await?;
        Ok(deliveries_from_read(&reply, &[high, normal, low]))
    }

    /// The keys every read of new entries declares first: the streams, the tenants hash and
    /// the rings of keys with waiting jobs (`read_new` in `lua/helpers.lua`).
    fn read_keys(&self) -> Vec<String> {
        let keys = &self.queue.keys;
        let mut read = Vec::from(keys.streams());
        read.push(keys.tenants());
        read.extend(keys.rings());
        read
    }

    /// A read's result, or (when Redis lost its data: restarted without persistence, the
    /// consumer groups gone) the groups made again and nothing read.
    async fn or_start_over<T: Default>(&self, read: Result<T>) -> Result<T> {
        match read {
            Err(QueueError::MissingGroup(_)) => {
                self.queue.ensure_groups().await?;
                Ok(T::default())
            }
            other => other,
        }
    }

    /// Takes over up to `max` entries idle longer than the visibility timeout: their worker
    /// died or stalled. They are started like new deliveries.
    pub async fn reclaim(&self, max: usize) -> Result<Vec<Delivery>> {
        let idle = self.queue.config.visibility_timeout.as_millis() as u64;
        let mut found = Vec::new();
        for (i, stream) in self.queue.keys.streams().iter().enumerate() {
            if found.len() >= max {
                break;
            }
            let reply: Value = self
                .queue
                .redis
                .query(
                    redis::cmd("XAUTOCLAIM")
                        .arg(stream)
                        .arg(GROUP)
                        .arg(&self.name)
                        .arg(idle)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(max - found.len()),
                )
                .await?;
            found.extend(
                reply::claimed(&reply)
                    .iter()
                    .filter_map(|e| entry_to_delivery(i + 1, e)),
            );
        }
        Ok(found)
    }

    /// Starts delivered jobs in one round trip (see [`Started`]).
    pub async fn start(&self, deliveries: &[Delivery]) -> Result<Vec<Started>> {
        if deliveries.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.queue.keys;
        let config = &self.queue.config;
        let [high, normal, low] = keys.streams();
        let mut invocation = scripts::START.prepare_invoke();
        invocation
            .key(high)
            .key(normal)
            .key(low)
            .key(keys.events())
            .key(keys.dead())
            .key(keys.stats())
            .key(keys.tenants());
        for d in deliveries {
            invocation.key(keys.job(&d.job_id));
        }
        invocation
            .arg(GROUP)
            .arg(&self.name)
            .arg(config.events_max_len)
            .arg(keys.job_channel_prefix())
            .arg(config.max_attempts)
            .arg(config.result_ttl.as_millis() as u64);
        for d in deliveries {
            invocation.arg(d.stream).arg(&d.entry).arg(&d.job_id);
        }
        let replies: Vec<Vec<String>> = self.queue.redis.script(&invocation).await?;
        Ok(deliveries
            .iter()
            .zip(replies)
            .map(|(d, reply)| started_from_reply(d, &reply))
            .collect())
    }

    /// Starts `held` (deliveries from [`Consumer::wait_for_new`] or [`Consumer::reclaim`], as
    /// `from` says), then reads up to `more` new entries (as [`Consumer::fetch`] does, without
    /// blocking) and starts them too — one round trip instead of a fetch and a start.
    pub async fn take(&self, held: &[Delivery], from: HeldFrom, more: usize) -> Result<Taken> {
        if held.is_empty() && more == 0 {
            return Ok(Taken::default());
        }
        let mut pipe = redis::pipe();
        evalsha(&mut pipe, &scripts::TAKE, &self.take_call(held, from, more));
        let taken = self.queue.run_pipelined_scripts(&pipe).await;
        self.taken_from(taken.map(|(reply,): (Vec<Value>,)| reply))
            .await
    }

    /// The take script's keys and arguments (see `lua/take.lua`).
    fn take_call(
        &self,
        held: &[Delivery],
        from: HeldFrom,
        more: usize,
    ) -> (Vec<String>, Vec<String>) {
        let keys = &self.queue.keys;
        let config = &self.queue.config;
        let mut script_keys = self.read_keys();
        script_keys.extend([keys.events(), keys.dead(), keys.stats()]);
        script_keys.extend(held.iter().map(|d| keys.job(&d.job_id)));
        let mut args = vec![
            GROUP.to_owned(),
            self.name.clone(),
            more.to_string(),
            keys.wait_prefix(),
            config.events_max_len.to_string(),
            keys.job_channel_prefix(),
            config.max_attempts.to_string(),
            (config.result_ttl.as_millis() as u64).to_string(),
            keys.job_prefix(),
            u8::from(from == HeldFrom::Read).to_string(),
        ];
        for d in held {
            args.extend([d.stream.to_string(), d.entry.clone(), d.job_id.clone()]);
        }
        (script_keys, args)
    }

    /// A take script's reply (or error) → what it started; a lost consumer group is made again.
    async fn taken_from(&self, reply: Result<Vec<Value>>) -> Result<Taken> {
        let reply = self.or_start_over(reply).await?;
        if reply.is_empty() {
            return Ok(Taken::default()); // the groups were made again
        }
        taken_from_reply(reply)
    }

    /// Renews the leases of jobs in hand and reports lost leases and cancel requests.
    pub async fn renew(&self, leases: &[Lease]) -> Result<Vec<LeaseState>> {
        if leases.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.queue.keys;
        let [high, normal, low] = keys.streams();
        let mut invocation = scripts::RENEW.prepare_invoke();
        invocation.key(high).key(normal).key(low);
        for lease in leases {
            invocation.key(keys.job(&lease.job_id));
        }
        invocation.arg(GROUP).arg(&self.name);
        for lease in leases {
            invocation
                .arg(lease.stream)
                .arg(&lease.entry)
                .arg(lease.token);
        }
        let states: Vec<i64> = self.queue.redis.script(&invocation).await?;
        Ok(states
            .into_iter()
            .map(|s| match s {
                0 => LeaseState::Lost,
                2 => LeaseState::CancelRequested,
                _ => LeaseState::Held,
            })
            .collect())
    }

    /// Gives jobs back without finishing them (shutting down): any other worker can take them
    /// over at once, and this attempt does not count against their attempts.
    pub async fn hand_back(&self, leases: &[Lease]) -> Result<u64> {
        if leases.is_empty() {
            return Ok(0);
        }
        let keys = &self.queue.keys;
        let config = &self.queue.config;
        let [high, normal, low] = keys.streams();
        let mut invocation = scripts::HAND_BACK.prepare_invoke();
        invocation.key(high).key(normal).key(low).key(keys.events());
        for lease in leases {
            invocation.key(keys.job(&lease.job_id));
        }
        invocation
            .arg(GROUP)
            .arg(&self.name)
            .arg(config.visibility_timeout.as_millis() as u64 + 1000)
            .arg(config.events_max_len)
            .arg(keys.job_channel_prefix());
        for lease in leases {
            invocation
                .arg(lease.stream)
                .arg(&lease.entry)
                .arg(&lease.job_id)
                .arg(lease.token);
        }
        self.queue.redis.script(&invocation).await
    }

    /// Records a running job's progress (0–100) and tells its subscribers. `Ok(false)`: the
    /// lease is lost (another worker holds the job), and nothing was recorded.
    pub async fn progress(&self, lease: &Lease, percent: u8) -> Result<bool> {
        let keys = &self.queue.keys;
        let event = serde_json::json!({
            "id": lease.job_id,
            "status": "running",
            "progress": percent,
            "attempts": lease.attempt,
            "ts": crate::job::now_ms(),
        });
        let mut invocation = scripts::PROGRESS.prepare_invoke();
        invocation
            .key(keys.job(&lease.job_id))
            .arg(lease.token)
            .arg(&self.name)
            .arg(percent)
            .arg(keys.job_channel(&lease.job_id))
            .arg(event.to_string());
        let held: i64 = self.queue.redis.script(&invocation).await?;
        Ok(held == 1)
    }

    /// Records how attempts ended and acknowledges their entries, in one round trip (and with
    /// `wait_replicas`, waits until the replicas hold it). Retries
    /// get an exponential backoff with jitter; transient failures out of attempts go to the
    /// dead-letter list.
    pub async fn complete(&self, done: &[(Lease, Outcome)]) -> Result<Vec<Completed>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        evalsha(&mut pipe, &scripts::COMPLETE, &self.complete_call(done));
        let (results,): (Vec<String>,) = self.queue.run_pipelined_scripts(&pipe).await?;
        self.completed_from(results).await
    }

    /// Records how attempts ended (as [`Consumer::complete`]) and then takes up to `more` new
    /// jobs (as [`Consumer::take`] with nothing held), both in one round trip: a busy worker
    /// replaces the jobs it finished without a call of its own. The outer error means the
    /// round trip failed (neither outcome is known); otherwise each part says how it went.
    pub async fn complete_and_take(
        &self,
        done: &[(Lease, Outcome)],
        more: usize,
    ) -> Result<(Result<Vec<Completed>>, Result<Taken>)> {
        let mut pipe = redis::pipe();
        // Each script's reply on its own: a take that fails does not hide recorded results.
        pipe.ignore_errors();
        evalsha(&mut pipe, &scripts::COMPLETE, &self.complete_call(done));
        evalsha(
            &mut pipe,
            &scripts::TAKE,
            &self.take_call(&[], HeldFrom::Read, more),
        );
        type Replies = (
            redis::RedisResult<Vec<String>>,
            redis::RedisResult<Vec<Value>>,
        );
        let mut replies: Replies = self.queue.redis.pipeline(&pipe).await?;
        if unknown_script(&replies.0) && unknown_script(&replies.1) {
            // Redis restarted and forgot the scripts: neither ran.
            self.queue.load_scripts().await?;
            replies = self.queue.redis.pipeline(&pipe).await?;
        }
        let (completed, taken) = replies;
        let completed = match completed {
            Ok(results) => self.completed_from(results).await,
            Err(e) => Err(e.into()),
        };
        let taken = self.taken_from(taken.map_err(QueueError::from)).await;
        Ok((completed, taken))
    }

    /// The complete script's results, once replicated (with `wait_replicas`).
    async fn completed_from(&self, results: Vec<String>) -> Result<Vec<Completed>> {
        // Not replicated in time: the caller calls again (a written end then reads as stale).
        self.queue.replicate().await?;
        Ok(results
            .iter()
            .map(|r| match r.as_str() {
                "written" => Completed::Written,
                "stale" => Completed::Stale,
                "fenced" => Completed::Fenced,
                _ => Completed::Gone,
            })
            .collect())
    }

    /// The complete script's keys and arguments (see `lua/complete.lua`).
    fn complete_call(&self, done: &[(Lease, Outcome)]) -> (Vec<String>, Vec<String>) {
        let keys = &self.queue.keys;
        let config = &self.queue.config;
        let [high, normal, low] = keys.streams();
        let minute = crate::job::now_ms() / 60_000;
        let mut script_keys = vec![
            high,
            normal,
            low,
            keys.events(),
            keys.delayed(),
            keys.dead(),
            keys.stats(),
            keys.stats_minute(minute),
            keys.webhooks(),
            keys.durations(),
            keys.tenants(),
        ];
        script_keys.extend(done.iter().map(|(lease, _)| keys.job(&lease.job_id)));
        let mut args = vec![
            GROUP.to_owned(),
            config.events_max_len.to_string(),
            keys.job_channel_prefix(),
            (config.result_ttl.as_millis() as u64).to_string(),
            self.name.clone(),
        ];
        for (lease, outcome) in done {
            let plan = self.outcome_plan(lease, outcome);
            args.extend([
                lease.stream.to_string(),
                lease.entry.clone(),
                lease.job_id.clone(),
                lease.token.to_string(),
                plan.kind.to_owned(),
                plan.delay_ms.to_string(),
                format!("{}:{}", lease.stream, lease.job_id),
                plan.error_code.unwrap_or("").to_owned(),
                if plan.webhook { "1" } else { "0" }.to_owned(),
                (plan.set.len() * 2).to_string(),
            ]);
            for (field, value) in plan.set {
                args.push(field.to_owned());
                args.push(value);
            }
        }
        (script_keys, args)
    }

    /// How the COMPLETE script should record an outcome.
    fn outcome_plan(&self, lease: &Lease, outcome: &Outcome) -> OutcomePlan {
        let mut plan = OutcomePlan {
            kind: "cancelled",
            delay_ms: 0,
            error_code: None,
            webhook: lease.webhook,
            set: Vec::new(),
        };
        match outcome {
            Outcome::Succeeded {
                outputs,
                placeholder,
                media,
            } => {
                plan.kind = "succeeded";
                plan.set.push((
                    "outputs",
                    serde_json::to_string(outputs).expect("outputs serialize"),
                ));
                plan.set.push(("error", String::new()));
                if let Some(placeholder) = placeholder {
                    plan.set.push(("placeholder", placeholder.clone()));
                }
                if let Some(media) = media {
                    plan.set.push((
                        "media",
                        serde_json::to_string(media).expect("media serializes"),
                    ));
                }
            }
            Outcome::Cancelled => {}
            Outcome::Failed { error, disposition } => {
                plan.error_code = Some(error.code.as_str());
                plan.set.push((
                    "error",
                    serde_json::to_string(error).expect("error serializes"),
                ));
                plan.kind = match disposition {
                    Disposition::Abort => "failed",
                    Disposition::Retry if lease.attempt >= self.queue.config.max_attempts => "dead",
                    Disposition::Retry => {
                        plan.delay_ms =
                            retry_delay(&self.queue.config, lease.attempt).as_millis() as u64;
                        "retry"
                    }
                };
            }
        }
        plan
    }
}

struct OutcomePlan {
    kind: &'static str,
    delay_ms: u64,
    error_code: Option<&'static str>,
    /// The job has a webhook: a final outcome queues its delivery.
    webhook: bool,
    set: Vec<(&'static str, String)>,
}

/// Exponential backoff with equal jitter: attempt 1 waits base/2..base, attempt 2 base..2·base,
/// ... capped at the configured maximum.
pub fn retry_delay(config: &super::QueueConfig, attempt: u32) -> Duration {
    let exponent = attempt.saturating_sub(1).min(20);
    let full = config
        .retry_base
        .saturating_mul(1u32 << exponent)
        .min(config.retry_max);
    let half = full / 2;
    half + half.mul_f64(fastrand::f64())
}

/// Whether a script's reply says Redis does not know the script (it restarted).
fn unknown_script<T>(reply: &redis::RedisResult<T>) -> bool {
    matches!(reply, Err(e) if e.code() == Some("NOSCRIPT"))
}

/// A start script's reply for one delivery → what became of it.
fn started_from_reply(d: &Delivery, reply: &[String]) -> Started {
    let dropped = |reason: String| Started::Dropped {
        job_id: d.job_id.clone(),
        reason,
    };
    if reply.first().map(String::as_str) != Some("run") {
        return dropped(reply.get(1).cloned().unwrap_or_default());
    }
    let fields: HashMap<String, String> = reply[1..]
        .chunks_exact(2)
        .map(|kv| (kv[0].clone(), kv[1].clone()))
        .collect();
    let token = fields.get("lease").and_then(|t| t.parse().ok());
    match (JobRecord::from_fields(&d.job_id, &fields), token) {
        (Ok(Some(record)), Some(token)) => Started::Run(
            Lease {
                stream: d.stream,
                entry: d.entry.clone(),
                job_id: d.job_id.clone(),
                attempt: record.attempts,
                token,
                webhook: record.spec.webhook.is_some(),
            },
            Box::new(record),
        ),
        // Written by a newer gateway (a format this worker does not know): skip it and keep
        // the rest of the batch; once its lease expires a worker that can read it takes it
        // over.
        (Err(e), _) => dropped(format!("unreadable here: {}", e.reason)),
        _ => dropped("gone".into()),
    }
}

/// The take script's reply: `[drained, [stream, entry, job id, start reply...], ...]`.
fn taken_from_reply(reply: Vec<Value>) -> Result<Taken> {
    let malformed = || QueueError::Refused("malformed reply from the take script".into());
    let mut reply = reply.into_iter();
    let drained: i64 =
        redis::from_redis_value(reply.next().ok_or_else(malformed)?).map_err(|_| malformed())?;
    let started = reply
        .map(|job| {
            let parts: Vec<String> = redis::from_redis_value(job).map_err(|_| malformed())?;
            let [stream, entry, job_id, rest @ ..] = parts.as_slice() else {
                return Err(malformed());
            };
            let delivery = Delivery {
                stream: stream.parse().map_err(|_| malformed())?,
                entry: entry.clone(),
                job_id: job_id.clone(),
            };
            Ok(started_from_reply(&delivery, rest))
        })
        .collect::<Result<_>>()?;
    Ok(Taken {
        started,
        drained: drained == 1,
    })
}

fn deliveries_from_flat(flat: &[String]) -> Vec<Delivery> {
    flat.chunks_exact(3)
        .filter_map(|c| {
            Some(Delivery {
                stream: c[0].parse().ok()?,
                entry: c[1].clone(),
                job_id: c[2].clone(),
            })
        })
        .collect()
}

/// Parses an XREADGROUP reply (streams in any order) into deliveries.
fn deliveries_from_read(reply: &Value, streams: &[String; 3]) -> Vec<Delivery> {
    reply::streams(reply)
        .into_iter()
        .filter_map(|(name, entries)| {
            let index = streams.iter().position(|s| *s == name)?;
            Some(
                entries
                    .iter()
                    .filter_map(move |e| entry_to_delivery(index + 1, e)),
            )
        })
        .flatten()
        .collect()
}

/// A job stream entry → a delivery; `None` for entries deleted meanwhile.
fn entry_to_delivery(stream: usize, entry: &Value) -> Option<Delivery> {
    let (entry, fields) = reply::entry(entry)?;
    Some(Delivery {
        stream,
        entry,
        job_id: reply::field(&fields, "id")?.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_delays_grow_and_stay_capped() {
        let config = super::super::QueueConfig {
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(60),
            ..Default::default()
        };
        for attempt in 1..=12 {
            let delay = retry_delay(&config, attempt);
            let full = Duration::from_secs(1 << (attempt - 1)).min(Duration::from_secs(60));
            assert!(
                delay >= full / 2 && delay <= full,
                "attempt {attempt}: {delay:?}"
            );
        }
    }
}
