//! The job queue and result store on Redis.
//!
//! - One stream per priority (`{Q}:jobs:high|normal|low`) read through one consumer group;
//!   entries carry only the job id.
//! - One hash per job (`{Q}:job:ID`): the record API.md shows, written before the stream entry
//!   is acknowledged, expiring after the result TTL.
//! - A worker holds a job as a pending entry of its own consumer and renews the lease from a
//!   task CPU work cannot starve; entries idle past the visibility timeout are taken over.
//! - Retries wait in a sorted set and are promoted atomically; exhausted jobs go to a
//!   dead-letter stream.
//! - Every transition is one Lua script ([`scripts`]), so no crash leaves a half-done state.

mod conn;
mod consumer;
mod enqueuer;
mod events;
mod keys;
mod registry;
mod reply;
pub mod scripts;
mod stats;
mod tenants;
mod tickets;
mod webhooks;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::failure::{Disposition, FailureCode};
use crate::job::{CorruptRecord, JobRecord, JobStatus, NewJob};
use crate::text::hex;

use conn::RedisConn;
pub use conn::RedisTls;
pub use consumer::{
    retry_delay, Completed, Consumer, Delivery, HeldFrom, Lease, LeaseState, Outcome, Started,
    Taken,
};
pub use enqueuer::Enqueuer;
pub use events::{follow_cancels, follow_job_events};
pub use keys::{stream_index, Keys, GROUP};
pub use registry::WorkerInfo;
pub use stats::{Counters, Depth, DurationHistogram, DurationSummary, OutcomeCounts};
pub use tenants::{Admission, TenantLimits, TenantLoad, FAIR_WINDOW};
pub use tickets::UploadTicket;
pub use webhooks::{WebhookDue, WebhookFeed, WEBHOOK_GROUP};

#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum QueueError {
    #[error("redis is unavailable: {0}")]
    Unavailable(String),
    #[error("a redis call took longer than {0:?}")]
    Timeout(Duration),
    #[error("redis refused a command: {0}")]
    Refused(String),
    #[error("bad redis url {0}")]
    BadUrl(String),
    #[error(transparent)]
    Corrupt(#[from] CorruptRecord),
    /// A stream's consumer group is gone: Redis lost its data (a restart without persistence).
    #[error("a consumer group is missing: {0}")]
    MissingGroup(String),
    /// Redis does not know a script (it restarted): load it and call again.
    #[error("a script is not loaded: {0}")]
    MissingScript(String),
    /// Creating a consumer group that exists already.
    #[error("the consumer group exists: {0}")]
    GroupExists(String),
    /// A write reached the primary but not `wanted` replicas within the wait timeout: a
    /// failover now could lose it, so it does not count yet.
    #[error("only {acked} of {wanted} redis replicas confirmed a write in time")]
    NotReplicated { acked: u32, wanted: u32 },
}

impl QueueError {
    /// Redis being down or slow is transient; a refused command or a corrupt record is not.
    pub fn disposition(&self) -> Disposition {
        match self {
            QueueError::Unavailable(_)
            | QueueError::Timeout(_)
            | QueueError::MissingGroup(_)
            | QueueError::MissingScript(_)
            | QueueError::NotReplicated { .. } => Disposition::Retry,
            QueueError::Refused(_)
            | QueueError::BadUrl(_)
            | QueueError::Corrupt(_)
            | QueueError::GroupExists(_) => Disposition::Abort,
        }
    }

    pub fn code(&self) -> FailureCode {
        match self {
            QueueError::Timeout(_) => FailureCode::Timeout,
            _ => FailureCode::Internal,
        }
    }

    /// Whether the error means Redis cannot be reached right now (503 material).
    pub fn is_unavailable(&self) -> bool {
        matches!(
            self,
            QueueError::Unavailable(_) | QueueError::Timeout(_) | QueueError::NotReplicated { .. }
        )
    }
}

impl From<redis::RedisError> for QueueError {
    fn from(e: redis::RedisError) -> Self {
        // Server states that pass: loading the AOF, a failover, a cluster resharding.
        // UNBLOCKED: a blocked read cut short because the primary became a replica.
        const TRANSIENT: [&str; 7] = [
            "LOADING",
            "READONLY",
            "MASTERDOWN",
            "TRYAGAIN",
            "CLUSTERDOWN",
            "BUSY",
            "UNBLOCKED",
        ];
        match e.code() {
            Some("NOGROUP") => return QueueError::MissingGroup(e.to_string()),
            Some("NOSCRIPT") => return QueueError::MissingScript(e.to_string()),
            Some("BUSYGROUP") => return QueueError::GroupExists(e.to_string()),
            _ => {}
        }
        let transient_code = e.code().is_some_and(|code| TRANSIENT.contains(&code));
        if e.is_io_error()
            || e.is_timeout()
            || e.is_connection_dropped()
            || e.is_connection_refusal()
            || e.is_cluster_error()
            || transient_code
        {
            QueueError::Unavailable(e.to_string())
        } else {
            QueueError::Refused(e.to_string())
        }
    }
}

type Result<T> = std::result::Result<T, QueueError>;

/// Queue settings; the defaults are API.md's.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// Names the keys (`--queue`).
    pub name: String,
    /// How long job records live after they are created or finish.
    pub result_ttl: Duration,
    /// Attempts before a job that keeps failing transiently is dead-lettered.
    pub max_attempts: u32,
    /// A job held this long by a worker that stopped renewing it is taken over.
    pub visibility_timeout: Duration,
    /// First retry delay; doubles per attempt, with jitter, up to `retry_max`.
    pub retry_base: Duration,
    pub retry_max: Duration,
    /// Length the global events stream is trimmed to (approximately).
    pub events_max_len: u64,
    /// Longest any single Redis call may take.
    pub call_timeout: Duration,
    /// TLS material for `rediss://` (default: the system's roots, no client certificate).
    pub tls: RedisTls,
    /// Jobs of API keys take turns by key within a priority, with this many fed ahead onto
    /// each priority's stream so that blocked workers wake ([`FAIR_WINDOW`]; 0: fair
    /// scheduling off, first come, first served, for comparisons).
    pub fair_window: u64,
    /// Replicas that must hold an enqueue or a job's end before it counts (Redis `WAIT`; 0:
    /// none, the primary's word is enough).
    pub wait_replicas: u32,
    /// How long to wait for them before the write counts as failed ([`QueueError::NotReplicated`]).
    pub wait_timeout: Duration,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            name: "imagepipe".into(),
            result_ttl: Duration::from_secs(7 * 24 * 3600),
            max_attempts: 5,
            visibility_timeout: Duration::from_secs(30),
            retry_base: Duration::from_secs(1),
            retry_max: Duration::from_secs(300),
            events_max_len: 10_000,
            call_timeout: Duration::from_secs(5),
            fair_window: FAIR_WINDOW,
            tls: RedisTls::default(),
            wait_replicas: 0,
            wait_timeout: Duration::from_secs(1),
        }
    }
}

/// What cancelling did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    Missing,
    /// It was queued: it will never run.
    Cancelled,
    /// It is running: it stops at its next checkpoint.
    Cancelling,
    /// It had already ended this way.
    AlreadyFinished(JobStatus),
}

/// A claimed idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum IdempotencyClaim {
    /// The key is new: it now belongs to this job.
    New,
    /// The key was used before, for this job with a request of this fingerprint, claimed at
    /// this time (ms since the epoch).
    Existing {
        job_id: String,
        fingerprint: String,
        claimed_at: u64,
    },
}

/// A page of jobs, newest first.
#[derive(Debug, Clone)]
pub struct JobPage {
    pub jobs: Vec<JobRecord>,
    /// Pass back to get the next page.
    pub next_cursor: Option<String>,
}

/// A dead-lettered job.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub failed_at: u64,
    pub job: JobRecord,
}

/// A handle on one queue; cheap to clone.
#[derive(Clone, Debug)]
pub struct Queue {
    redis: RedisConn,
    keys: Keys,
    config: Arc<QueueConfig>,
}

impl Queue {
    /// Connects, loads the scripts and creates the consumer group. Fails when Redis does not
    /// answer: a service should refuse to start rather than limp.
    pub async fn connect(url: &str, config: QueueConfig) -> Result<Queue> {
        let redis = RedisConn::connect(url, config.call_timeout, &config.tls).await?;
        let queue = Queue {
            keys: Keys::new(&config.name),
            redis,
            config: Arc::new(config),
        };
        queue.ensure_groups().await?;
        Ok(queue)
    }

    pub fn keys(&self) -> &Keys {
        &self.keys
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }

    /// Creates the workers' consumer group on each job stream (and the streams), if missing.
    /// Also run after Redis lost its data (a restart without persistence), when reads fail
    /// with [`QueueError::MissingGroup`].
    pub async fn ensure_groups(&self) -> Result<()> {
        for stream in self.keys.streams() {
            self.ensure_group(&stream, GROUP).await?;
        }
        Ok(())
    }

    /// Creates consumer group `group` on `stream` (and the stream), unless it exists.
    async fn ensure_group(&self, stream: &str, group: &str) -> Result<()> {
        let created: Result<()> = self
            .redis
            .query(
                redis::cmd("XGROUP")
                    .arg("CREATE")
                    .arg(stream)
                    .arg(group)
                    .arg("0")
                    .arg("MKSTREAM"),
            )
            .await;
        match created {
            Ok(()) | Err(QueueError::GroupExists(_)) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Warnings about a Redis that could lose jobs: an eviction policy other than
    /// `noeviction`, or no persistence at all. Empty when all is well.
    pub async fn check_server(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        match self
            .redis
            .query::<Vec<String>>(redis::cmd("CONFIG").arg("GET").arg("maxmemory-policy"))
            .await
        {
            Ok(reply) => {
                if let Some(policy) = reply.get(1) {
                    if policy != "noeviction" {
                        warnings.push(format!(
                            "Redis maxmemory-policy is {policy}: under memory pressure it can evict \
                             queued jobs and results; set it to noeviction"
                        ));
                    }
                }
            }
            Err(e) => warnings.push(format!(
                "could not read Redis maxmemory-policy ({e}); make sure it is noeviction"
            )),
        }
        let info: std::result::Result<String, _> = self
            .redis
            .query(redis::cmd("INFO").arg("persistence"))
            .await;
        let save: std::result::Result<Vec<String>, _> = self
            .redis
            .query(redis::cmd("CONFIG").arg("GET").arg("save"))
            .await;
        if let (Ok(info), Ok(save)) = (info, save) {
            let aof = info.lines().any(|l| l.trim() == "aof_enabled:1");
            let rdb = save.get(1).is_some_and(|s| !s.trim().is_empty());
            if !aof && !rdb {
                warnings.push(
                    "Redis has no persistence (no AOF, no RDB snapshots): a Redis restart loses every \
                     queued job; run it with appendonly yes"
                        .into(),
                );
            } else if !aof {
                warnings.push(
                    "Redis persists with RDB snapshots only: a crash loses jobs accepted since the last \
                     snapshot; run it with appendonly yes"
                        .into(),
                );
            }
        }
        warnings
    }

    /// Creates a job and queues it. `false` when a job with this id already exists.
    pub async fn enqueue(&self, job: &NewJob) -> Result<bool> {
        let created = self.enqueue_many(std::slice::from_ref(job)).await?;
        Ok(created.first() == Some(&true))
    }

    /// Creates and queues many jobs in one round trip; per job, whether it was created (`false`:
    /// a job with its id already existed).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<bool>> {
        if jobs.is_empty() {
            return Ok(Vec::new());
        }
        let keys = &self.keys;
        let now = crate::job::now_ms();
        let recent = keys.recent(None);
        let [high, normal, low] = keys.streams();
        let mut invocation = scripts::ENQUEUE.prepare_invoke();
        invocation
            .key(keys.events())
            .key(&recent)
            .key(high)
            .key(normal)
            .key(low)
            .key(keys.tenants());
        for ring in keys.rings() {
            invocation.key(ring);
        }
        invocation
            .arg(self.config.result_ttl.as_millis() as u64)
            .arg(now)
            .arg(self.config.events_max_len)
            .arg(keys.job_channel_prefix())
            .arg(keys.wait_prefix())
            .arg(self.config.fair_window);
        for job in jobs {
            let owner = job.owner.as_deref();
            invocation
                .key(keys.job(&job.id))
                .key(owner.map_or_else(|| recent.clone(), |o| keys.recent(Some(o))));
            let fields = record_fields(job, now);
            invocation
                .arg(&job.id)
                .arg(stream_index(job.spec.priority))
                .arg(owner.unwrap_or(""))
                .arg(fields.len() * 2);
            for (field, value) in fields {
                invocation.arg(field).arg(value);
            }
        }
        let created: Vec<i64> = self.redis.script(&invocation).await?;
        self.replicate().await?;
        Ok(created.into_iter().map(|c| c == 1).collect())
    }

    /// With `wait_replicas` set: waits until that many replicas hold this connection's writes so
    /// far (Redis `WAIT`), so the write just made survives a failover of the primary.
    pub(crate) async fn replicate(&self) -> Result<()> {
        let wanted = self.config.wait_replicas;
        if wanted == 0 {
            return Ok(());
        }
        self.redis
            .wait(self.keys.prefix(), wanted, self.config.wait_timeout)
            .await
    }

    /// Runs a pipeline of EVALSHA calls, loading the scripts first when Redis forgot them
    /// (after a restart).
    pub(crate) async fn run_pipelined_scripts<T: redis::FromRedisValue>(
        &self,
        pipe: &redis::Pipeline,
    ) -> Result<T> {
        match self.redis.pipeline(pipe).await {
            Err(QueueError::MissingScript(_)) => {
                self.load_scripts().await?;
                self.redis.pipeline(pipe).await
            }
            other => other,
        }
    }

    async fn load_scripts(&self) -> Result<()> {
        for script in scripts::all() {
            self.redis.load_script(script).await?;
        }
        Ok(())
    }

    /// The job's record; `None` when there is no such job (or it expired).
    pub async fn get(&self, id: &str) -> Result<Option<JobRecord>> {
        let fields: HashMap<String, String> = self
            .redis
            .query(redis::cmd("HGETALL").arg(self.keys.job(id)))
            .await?;
        Ok(JobRecord::from_fields(id, &fields)?)
    }

    async fn get_many(&self, ids: &[String]) -> Result<Vec<Option<JobRecord>>> {
        if ids.is_empty() {
            return Ok(Vec::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("HGETALL").arg(self.keys.job(id));
        }
        let hashes: Vec<HashMap<String, String>> = self.redis.pipeline(&pipe).await?;
        ids.iter()
            .zip(hashes)
            .map(|(id, fields)| JobRecord::from_fields(id, &fields).map_err(QueueError::from))
            .collect()
    }

    /// Cancels a job (see [`CancelOutcome`]).
    pub async fn cancel(&self, id: &str) -> Result<CancelOutcome> {
        let mut invocation = scripts::CANCEL.prepare_invoke();
        invocation
            .key(self.keys.job(id))
            .key(self.keys.events())
            .key(self.keys.tenants())
            .arg(self.config.events_max_len)
            .arg(self.keys.job_channel(id))
            .arg(self.config.result_ttl.as_millis() as u64)
            .arg(self.keys.cancel_channel());
        let reply: String = self.redis.script(&invocation).await?;
        Ok(match reply.as_str() {
            "missing" => CancelOutcome::Missing,
            "cancelled" => CancelOutcome::Cancelled,
            "cancelling" => CancelOutcome::Cancelling,
            other => CancelOutcome::AlreadyFinished(
                other
                    .strip_prefix("final:")
                    .and_then(JobStatus::parse)
                    .unwrap_or(JobStatus::Failed),
            ),
        })
    }

    /// Puts a dead-lettered job back on the queue with fresh attempts. `false` when the job is
    /// not in the dead-letter list (or no longer exists).
    pub async fn replay(&self, id: &str) -> Result<bool> {
        let [high, normal, low] = self.keys.streams();
        let mut invocation = scripts::REPLAY.prepare_invoke();
        invocation
            .key(self.keys.job(id))
            .key(self.keys.dead())
            .key(high)
            .key(normal)
            .key(low)
            .key(self.keys.events())
            .key(self.keys.tenants())
            .arg(self.config.events_max_len)
            .arg(self.keys.job_channel(id))
            .arg(self.config.result_ttl.as_millis() as u64);
        let reply: String = self.redis.script(&invocation).await?;
        Ok(reply == "replayed")
    }

    /// Dead-lettered jobs, newest first. `before` is the cursor a previous page returned.
    pub async fn dead_letters(
        &self,
        limit: usize,
        before: Option<&str>,
    ) -> Result<(Vec<DeadLetter>, Option<String>)> {
        let end = match before.map(stream_id) {
            None => "+".to_owned(),
            // Nothing comes before the first possible id (and Redis refuses that range).
            Some(Some((0, 0))) => return Ok((Vec::new(), None)),
            Some(Some((ms, seq))) => format!("({ms}-{seq}"),
            Some(None) => return Err(QueueError::Refused("not a stream id".into())),
        };
        let entries: Vec<(String, HashMap<String, String>)> = self
            .redis
            .query(
                redis::cmd("XREVRANGE")
                    .arg(self.keys.dead())
                    .arg(end)
                    .arg("-")
                    .arg("COUNT")
                    .arg(limit),
            )
            .await?;
        let ids: Vec<String> = entries
            .iter()
            .map(|(_, f)| f.get("id").cloned().unwrap_or_default())
            .collect();
        let records = self.get_many(&ids).await?;
        let next = (entries.len() == limit)
            .then(|| entries.last().map(|(e, _)| e.clone()))
            .flatten();
        let letters = entries
            .iter()
            .zip(records)
            .filter_map(|((_, fields), record)| {
                Some(DeadLetter {
                    failed_at: fields
                        .get("failed_at")
                        .and_then(|v| v.parse().ok())
                        .unwrap_or(0),
                    job: record?,
                })
            })
            .collect();
        Ok((letters, next))
    }

    /// Recent jobs, newest first, optionally of one owner and one status.
    pub async fn list(
        &self,
        owner: Option<&str>,
        status: Option<JobStatus>,
        limit: usize,
        cursor: Option<&str>,
    ) -> Result<JobPage> {
        let key = self.keys.recent(owner);
        let (mut max_score, mut after_id) = match cursor.and_then(parse_cursor) {
            Some((score, id)) => (score.to_string(), Some(id)),
            None => ("+inf".to_owned(), None),
        };
        let mut jobs = Vec::with_capacity(limit);
        let mut scanned = 0;
        let batch = (limit * 2).clamp(16, 500);
        loop {
            let page: Vec<(String, u64)> = self
                .redis
                .query(
                    redis::cmd("ZREVRANGEBYSCORE")
                        .arg(&key)
                        .arg(&max_score)
                        .arg("-inf")
                        .arg("WITHSCORES")
                        .arg("LIMIT")
                        .arg(0)
                        .arg(batch),
                )
                .await?;
            let exhausted = page.len() < batch;
            // Members with the score of the cursor come again: skip up to the cursor's id.
            let fresh: Vec<(String, u64)> = page
                .into_iter()
                .filter(|(id, score)| match &after_id {
                    Some(after) if score.to_string() == max_score => id < after,
                    _ => true,
                })
                .collect();
            if fresh.is_empty() {
                return Ok(JobPage {
                    jobs,
                    next_cursor: None,
                });
            }
            scanned += fresh.len();
            let ids: Vec<String> = fresh.iter().map(|(id, _)| id.clone()).collect();
            let records = self.get_many(&ids).await?;
            for ((id, score), record) in fresh.iter().zip(records) {
                max_score = score.to_string();
                after_id = Some(id.clone());
                let Some(record) = record else { continue };
                if status.is_some_and(|s| s != record.status) {
                    continue;
                }
                jobs.push(record);
                if jobs.len() == limit {
                    let next = format!("{score}-{id}");
                    return Ok(JobPage {
                        jobs,
                        next_cursor: Some(next),
                    });
                }
            }
            if exhausted || scanned >= limit * 20 + 500 {
                let next =
                    (!exhausted).then(|| format!("{max_score}-{}", after_id.unwrap_or_default()));
                return Ok(JobPage {
                    jobs,
                    next_cursor: next,
                });
            }
        }
    }

    /// Removes acknowledged entries from the job streams (never an unacknowledged or an
    /// undelivered one); returns how many went. Workers run it every few seconds.
    pub async fn trim_acknowledged(&self) -> Result<u64> {
        let [high, normal, low] = self.keys.streams();
        let mut invocation = scripts::TRIM.prepare_invoke();
        invocation.key(high).key(normal).key(low).arg(GROUP);
        self.redis.script(&invocation).await
    }

    /// Maps an idempotency key (per owner) to a job, unless it already maps to one.
    pub async fn claim_idempotency(
        &self,
        owner: Option<&str>,
        key: &str,
        job_id: &str,
        fingerprint: &str,
    ) -> Result<IdempotencyClaim> {
        let digest = hex(&Sha256::digest(key.as_bytes()));
        let redis_key = self.keys.idempotency(owner, &digest);
        let value = format!("{job_id} {fingerprint} {}", crate::job::now_ms());
        let set: Option<String> = self
            .redis
            .query(
                redis::cmd("SET")
                    .arg(&redis_key)
                    .arg(&value)
                    .arg("NX")
                    .arg("PX")
                    .arg(self.config.result_ttl.as_millis() as u64),
            )
            .await?;
        if set.is_some() {
            return Ok(IdempotencyClaim::New);
        }
        let existing: Option<String> = self.redis.query(redis::cmd("GET").arg(&redis_key)).await?;
        let existing = existing.unwrap_or_default();
        let mut parts = existing.split(' ');
        Ok(IdempotencyClaim::Existing {
            job_id: parts.next().unwrap_or_default().to_owned(),
            fingerprint: parts.next().unwrap_or_default().to_owned(),
            claimed_at: parts.next().and_then(|t| t.parse().ok()).unwrap_or(0),
        })
    }

    /// Gives up an idempotency key claimed for a job that was then never created.
    pub async fn release_idempotency(&self, owner: Option<&str>, key: &str) -> Result<()> {
        let digest = hex(&Sha256::digest(key.as_bytes()));
        let _: i64 = self
            .redis
            .query(redis::cmd("DEL").arg(self.keys.idempotency(owner, &digest)))
            .await?;
        Ok(())
    }

    /// Moves retries that are due back onto their streams; returns how many moved.
    pub async fn promote_due(&self) -> Result<u64> {
        let [high, normal, low] = self.keys.streams();
        let mut invocation = scripts::PROMOTE.prepare_invoke();
        invocation
            .key(self.keys.delayed())
            .key(high)
            .key(normal)
            .key(low)
            .arg(500);
        self.redis.script(&invocation).await
    }

    /// Which of `ids` still have a job record (the others expired).
    pub async fn existing_jobs(&self, ids: &[String]) -> Result<HashSet<String>> {
        if ids.is_empty() {
            return Ok(HashSet::new());
        }
        let mut pipe = redis::pipe();
        for id in ids {
            pipe.cmd("EXISTS").arg(self.keys.job(id));
        }
        let exists: Vec<bool> = self.redis.pipeline(&pipe).await?;
        Ok(ids
            .iter()
            .zip(exists)
            .filter(|(_, e)| *e)
            .map(|(id, _)| id.clone())
            .collect())
    }

    /// Deletes every key of this queue: jobs, streams, counters (tests and benchmarks clean up
    /// with it; a deployment uses it to start over). Returns how many keys went.
    pub async fn purge(&self) -> Result<u64> {
        let pattern = format!("{}:*", self.keys.prefix());
        let keys: Vec<String> = self.redis.query(redis::cmd("KEYS").arg(pattern)).await?;
        let mut deleted = 0;
        for chunk in keys.chunks(500) {
            deleted += self
                .redis
                .query::<u64>(redis::cmd("DEL").arg(chunk))
                .await?;
        }
        Ok(deleted)
    }

    /// Checks Redis answers (readiness).
    pub async fn ping(&self) -> Result<()> {
        let _: String = self.redis.query(&redis::cmd("PING")).await?;
        Ok(())
    }
}

/// The fields a new job's record starts with.
fn record_fields(job: &NewJob, now: u64) -> Vec<(&'static str, String)> {
    let mut fields = vec![
        ("id", job.id.clone()),
        ("status", "queued".to_owned()),
        ("attempts", "0".to_owned()),
        ("progress", "0".to_owned()),
        ("created_at", now.to_string()),
        ("priority", job.spec.priority.as_str().to_owned()),
        ("spec", job.spec.to_json()),
        (
            "input",
            serde_json::to_string(&job.input).expect("job input serializes"),
        ),
    ];
    if let Some(owner) = &job.owner {
        fields.push(("owner", owner.clone()));
    }
    if let Some(request_id) = &job.request_id {
        fields.push(("request_id", request_id.clone()));
    }
    fields
}

/// Adds an EVALSHA of `script` to a pipeline.
pub(crate) fn evalsha(
    pipe: &mut redis::Pipeline,
    script: &redis::Script,
    (keys, args): &(Vec<String>, Vec<String>),
) {
    let cmd = pipe.cmd("EVALSHA").arg(script.get_hash()).arg(keys.len());
    for key in keys {
        cmd.arg(key);
    }
    for arg in args {
        cmd.arg(arg);
    }
}

fn parse_cursor(cursor: &str) -> Option<(u64, String)> {
    let (score, id) = cursor.split_once('-')?;
    let score = score
        .parse()
        .ok()
        .filter(|_| score.bytes().all(|b| b.is_ascii_digit()))?;
    crate::job::is_job_id(id).then(|| (score, id.to_owned()))
}

/// Whether `cursor` is one [`Queue::list`] hands out (`<ms>-<job id>`).
pub fn is_list_cursor(cursor: &str) -> bool {
    parse_cursor(cursor).is_some()
}

/// A stream entry id (`<ms>-<seq>`), as numbers.
fn stream_id(text: &str) -> Option<(u64, u64)> {
    let number = |part: &str| {
        part.bytes()
            .all(|b| b.is_ascii_digit())
            .then(|| part.parse::<u64>().ok())
            .flatten()
    };
    let (ms, seq) = text.split_once('-')?;
    Some((number(ms)?, number(seq)?))
}

/// Whether `cursor` is a stream entry id, as [`Queue::dead_letters`] hands out (`<ms>-<seq>`).
pub fn is_stream_cursor(cursor: &str) -> bool {
    stream_id(cursor).is_some()
}
