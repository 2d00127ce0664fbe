//! What the queue knows about itself for dashboards and metrics: depth per priority, outcome
//! counters (in all and per minute), the job duration histogram, and run-time percentiles.

use std::collections::HashMap;

use super::{scripts, Queue, Result, GROUP};

/// Upper bounds (seconds) of the job duration histogram's buckets, as `lua/helpers.lua` counts
/// them into `dur_le_<bound>` fields of the stats hash.
pub const DURATION_BOUNDS: [&str; 12] = [
    "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "30", "60", "300", "1800",
];

/// Jobs waiting and in flight, per priority.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Depth {
    /// Waiting to be delivered, per priority (high, normal, low).
    pub waiting: [u64; 3],
    /// Delivered to a worker and not yet finished, per priority.
    pub in_flight: [u64; 3],
    /// Retries waiting for their time.
    pub delayed: u64,
    pub dead: u64,
}

impl Depth {
    /// Everything not yet finished.
    pub fn backlog(&self) -> u64 {
        self.waiting.iter().sum::<u64>() + self.delayed
    }
}

/// Run-time percentiles (milliseconds) over a sample of recent jobs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct DurationSummary {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

impl DurationSummary {
    /// Nearest-rank percentiles of an ascending sample.
    pub fn of_sorted(sorted: &[u64]) -> DurationSummary {
        let Some(&max_ms) = sorted.last() else {
            return DurationSummary::default();
        };
        let rank = |p: u64| {
            let n = sorted.len() as u64;
            let index = (p * n).div_ceil(100).clamp(1, n) - 1;
            sorted[index as usize]
        };
        DurationSummary {
            count: sorted.len() as u64,
            p50_ms: rank(50),
            p95_ms: rank(95),
            p99_ms: rank(99),
            max_ms,
        }
    }
}

/// Outcome counters.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct OutcomeCounts {
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retried: u64,
    pub dead: u64,
}

impl OutcomeCounts {
    fn from_hash(hash: &HashMap<String, u64>) -> Self {
        let get = |k: &str| hash.get(k).copied().unwrap_or(0);
        OutcomeCounts {
            succeeded: get("succeeded"),
            failed: get("failed"),
            cancelled: get("cancelled"),
            retried: get("retried"),
            dead: get("dead"),
        }
    }
}

/// How long the jobs that ended took, from their first start to their end.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DurationHistogram {
    /// Jobs per bucket of [`DURATION_BOUNDS`] (not cumulative), in bound order.
    pub buckets: Vec<(&'static str, u64)>,
    pub count: u64,
    pub sum_ms: u64,
}

/// Everything counted since the queue began.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counters {
    pub totals: OutcomeCounts,
    pub durations: DurationHistogram,
}

impl Queue {
    /// Queue depth per priority, cheaply (one script, a few O(1) reads).
    pub async fn depth(&self) -> Result<Depth> {
        let [high, normal, low] = self.keys.streams();
        let mut invocation = scripts::DEPTH.prepare_invoke();
        invocation
            .key(high)
            .key(normal)
            .key(low)
            .key(self.keys.delayed())
            .key(self.keys.dead())
            .key(self.keys.tenants())
            .arg(GROUP);
        let counts: Vec<i64> = self.redis.script(&invocation).await?;
        let at = |i: usize| counts.get(i).copied().unwrap_or(0).max(0) as u64;
        Ok(Depth {
            waiting: [at(0), at(2), at(4)],
            in_flight: [at(1), at(3), at(5)],
            delayed: at(6),
            dead: at(7),
        })
    }

    /// Outcome counters and the duration histogram since the queue began, in one read.
    pub async fn counters(&self) -> Result<Counters> {
        let hash: HashMap<String, u64> = self
            .redis
            .query(redis::cmd("HGETALL").arg(self.keys.stats()))
            .await?;
        let get = |k: &str| hash.get(k).copied().unwrap_or(0);
        Ok(Counters {
            totals: OutcomeCounts::from_hash(&hash),
            durations: DurationHistogram {
                buckets: DURATION_BOUNDS
                    .iter()
                    .map(|bound| (*bound, get(&format!("dur_le_{bound}"))))
                    .collect(),
                count: get("dur_count"),
                sum_ms: get("dur_sum_ms"),
            },
        })
    }

    /// Outcome counters since the queue began.
    pub async fn outcome_totals(&self) -> Result<OutcomeCounts> {
        Ok(self.counters().await?.totals)
    }

    /// Outcome counters per minute for the last `minutes` minutes, oldest first, with the
    /// summed run time (ms) of the jobs that succeeded in each.
    pub async fn outcome_minutes(&self, minutes: u64) -> Result<Vec<(u64, OutcomeCounts, u64)>> {
        let now_minute = crate::job::now_ms() / 60_000;
        let range: Vec<u64> = (now_minute.saturating_sub(minutes - 1)..=now_minute).collect();
        let mut pipe = redis::pipe();
        for minute in &range {
            pipe.cmd("HGETALL").arg(self.keys.stats_minute(*minute));
        }
        let hashes: Vec<HashMap<String, u64>> = self.redis.pipeline(&pipe).await?;
        Ok(range
            .into_iter()
            .zip(hashes)
            .map(|(minute, hash)| {
                let run_ms = hash.get("succeeded_ms").copied().unwrap_or(0);
                (minute, OutcomeCounts::from_hash(&hash), run_ms)
            })
            .collect())
    }

    /// Percentiles of the run times of the last (up to 1000) jobs that succeeded.
    pub async fn recent_durations(&self) -> Result<DurationSummary> {
        let mut took: Vec<u64> = self
            .redis
            .query(
                redis::cmd("LRANGE")
                    .arg(self.keys.durations())
                    .arg(0)
                    .arg(999),
            )
            .await?;
        took.sort_unstable();
        Ok(DurationSummary::of_sorted(&took))
    }
}

#[cfg(test)]
mod tests {
    use super::DurationSummary;

    #[test]
    fn duration_percentiles_are_nearest_rank() {
        assert_eq!(DurationSummary::of_sorted(&[]), DurationSummary::default());
        let sample: Vec<u64> = (1..=200).collect();
        let summary = DurationSummary::of_sorted(&sample);
        assert_eq!(
            (
                summary.count,
                summary.p50_ms,
                summary.p95_ms,
                summary.p99_ms,
                summary.max_ms
            ),
            (200, 100, 190, 198, 200)
        );
        assert_eq!(DurationSummary::of_sorted(&[7]).p99_ms, 7);
    }
}
