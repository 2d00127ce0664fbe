//! Redis key names. Every key of a queue starts with `{QUEUE}:` — the braces make the queue name
//! the Redis Cluster hash tag, so all of a queue's keys live on one slot and multi-key scripts
//! work there as on a single server.

use crate::spec::Priority;

/// The consumer group every worker reads through.
pub const GROUP: &str = "workers";

#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(queue: &str) -> Keys {
        Keys {
            prefix: format!("{{{queue}}}"),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The job streams, in priority order.
    pub fn streams(&self) -> [String; 3] {
        Priority::ALL.map(|p| self.stream(p))
    }

    pub fn stream(&self, priority: Priority) -> String {
        format!("{}:jobs:{}", self.prefix, priority.as_str())
    }

    pub fn job(&self, id: &str) -> String {
        format!("{}{id}", self.job_prefix())
    }

    /// What every job's key starts with (scripts that read job ids make their keys with it).
    pub fn job_prefix(&self) -> String {
        format!("{}:job:", self.prefix)
    }

    /// The pub/sub channel of one job's events.
    pub fn job_channel(&self, id: &str) -> String {
        format!("{}{id}", self.job_channel_prefix())
    }

    pub fn job_channel_prefix(&self) -> String {
        format!("{}:job:", self.prefix)
    }

    /// The pub/sub channel workers hear cancels of running jobs on (payload: the job id).
    pub fn cancel_channel(&self) -> String {
        format!("{}:cancels", self.prefix)
    }

    /// Per API key and priority: counts for quotas and fair scheduling (hash: `unfinished:<owner>`
    /// jobs not yet finished, `waiting:<i>` jobs in keys' waiting lists, `fed:<i>` entries fed
    /// ahead onto stream i).
    pub fn tenants(&self) -> String {
        format!("{}:tenants", self.prefix)
    }

    /// The rings of API keys with jobs waiting, per priority (lists of owner ids).
    pub fn rings(&self) -> [String; 3] {
        Priority::ALL.map(|p| format!("{}:ring:{}", self.prefix, p.as_str()))
    }

    /// What a key's waiting list is named after: `<this><stream index>:<owner>`.
    pub fn wait_prefix(&self) -> String {
        format!("{}:wait:", self.prefix)
    }

    /// A key's token bucket for `--rate-limit-per-key`.
    pub fn rate_bucket(&self, owner: &str) -> String {
        format!("{}:rate:{owner}", self.prefix)
    }

    /// Retries waiting for their time (sorted set, score = due time in ms).
    pub fn delayed(&self) -> String {
        format!("{}:delayed", self.prefix)
    }

    /// Jobs that exhausted their attempts (stream).
    pub fn dead(&self) -> String {
        format!("{}:dead", self.prefix)
    }

    /// Recent jobs, newest last (sorted set, score = creation time in ms).
    pub fn recent(&self, owner: Option<&str>) -> String {
        match owner {
            Some(owner) => format!("{}:recent:{owner}", self.prefix),
            None => format!("{}:recent", self.prefix),
        }
    }

    pub fn idempotency(&self, owner: Option<&str>, key_digest: &str) -> String {
        format!("{}:idem:{}:{key_digest}", self.prefix, owner.unwrap_or("-"))
    }

    /// Capped stream of every status change, for dashboards.
    pub fn events(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// Finished jobs whose webhook is due (stream).
    pub fn webhooks(&self) -> String {
        format!("{}:webhooks", self.prefix)
    }

    /// Webhook retries waiting for their time (sorted set).
    pub fn webhooks_delayed(&self) -> String {
        format!("{}:webhooks:delayed", self.prefix)
    }

    /// Presigned uploads not yet made into a job (string, expiring).
    pub fn upload(&self, upload_id: &str) -> String {
        format!("{}:upload:{upload_id}", self.prefix)
    }

    /// Outcome counters since the queue began (hash).
    pub fn stats(&self) -> String {
        format!("{}:stats", self.prefix)
    }

    /// Outcome counters of one minute (hash, kept two hours).
    pub fn stats_minute(&self, minute: u64) -> String {
        format!("{}:stats:{minute}", self.prefix)
    }

    /// Run times (ms) of the last jobs that succeeded, newest first (capped list).
    pub fn durations(&self) -> String {
        format!("{}:durations", self.prefix)
    }

    /// Workers by last heartbeat (sorted set).
    pub fn workers(&self) -> String {
        format!("{}:workers", self.prefix)
    }

    pub fn worker(&self, id: &str) -> String {
        format!("{}:worker:{id}", self.prefix)
    }
}

/// Index of a priority's stream in [`Keys::streams`], 1-based as the scripts use it.
pub fn stream_index(priority: Priority) -> usize {
    match priority {
        Priority::High => 1,
        Priority::Normal => 2,
        Priority::Low => 3,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_carries_the_hash_tag() {
        let keys = Keys::new("photos");
        for key in [
            keys.job("x"),
            keys.delayed(),
            keys.dead(),
            keys.recent(None),
            keys.recent(Some("k1")),
            keys.idempotency(Some("k1"), "abc"),
            keys.events(),
            keys.stats(),
            keys.stats_minute(1),
            keys.durations(),
            keys.workers(),
            keys.worker("w"),
            keys.webhooks(),
            keys.webhooks_delayed(),
            keys.upload("u"),
        ]
        .into_iter()
        .chain(keys.streams())
        {
            assert!(key.starts_with("{photos}:"), "{key}");
        }
        assert_eq!(keys.stream(Priority::High), "{photos}:jobs:high");
    }
}
