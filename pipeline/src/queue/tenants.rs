//! Tenants (one API key = one tenant, API.md § Tenants): admission against a key's quota of
//! unfinished jobs and its rate (a token bucket in Redis, so every gateway shares it), and the
//! busiest keys for the dashboard. Fair scheduling itself lives in the enqueue and fetch
//! scripts (`feed` in `lua/helpers.lua`).

use std::collections::HashMap;
use std::time::Duration;

use super::{scripts, Queue, Result};

/// Jobs of API keys fed onto a priority's stream ahead of any fetch, so blocked workers wake
/// when such jobs arrive; the rest wait in their keys' lists and are fed in turn.
pub const FAIR_WINDOW: u64 = 4;

/// Limits on one key's uploads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TenantLimits {
    /// Unfinished (queued or running) jobs a key may have; 0: no limit.
    pub max_unfinished: u64,
    /// Uploads a second, `None`: no limit. The bucket holds one second's worth (at least 1).
    pub rate_per_second: Option<f64>,
}

/// Whether a key may submit one more job now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    Admitted,
    /// The key has `--max-queued-per-key` unfinished jobs.
    OverQuota {
        retry_after: Duration,
    },
    /// The key submits faster than `--rate-limit-per-key`.
    OverRate {
        retry_after: Duration,
    },
}

/// One key's load, for the dashboard (by owner id, never the key).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct TenantLoad {
    pub key_id: String,
    /// Jobs queued or running.
    pub unfinished: u64,
}

impl Queue {
    /// Checks (and, for the rate, spends) `owner`'s allowance for one more job.
    pub async fn admit_tenant(&self, owner: &str, limits: TenantLimits) -> Result<Admission> {
        let rate = limits.rate_per_second.unwrap_or(0.0).max(0.0);
        if limits.max_unfinished == 0 && rate == 0.0 {
            return Ok(Admission::Admitted);
        }
        let mut invocation = scripts::ADMIT.prepare_invoke();
        invocation
            .key(self.keys.tenants())
            .key(self.keys.rate_bucket(owner))
            .arg(owner)
            .arg(limits.max_unfinished)
            .arg(rate)
            .arg(rate.max(1.0));
        let (verdict, retry_ms): (u8, u64) = self.redis.script(&invocation).await?;
        let retry_after = Duration::from_millis(retry_ms);
        Ok(match verdict {
            1 => Admission::OverQuota { retry_after },
            2 => Admission::OverRate { retry_after },
            _ => Admission::Admitted,
        })
    }

    /// The `n` keys with the most unfinished jobs, busiest first.
    pub async fn busiest_tenants(&self, n: usize) -> Result<Vec<TenantLoad>> {
        let counts: HashMap<String, i64> = self
            .redis
            .query(redis::cmd("HGETALL").arg(self.keys.tenants()))
            .await?;
        let mut loads: Vec<TenantLoad> = counts
            .into_iter()
            .filter_map(|(field, count)| {
                let key_id = field.strip_prefix("unfinished:")?.to_owned();
                (count > 0).then_some(TenantLoad {
                    key_id,
                    unfinished: count as u64,
                })
            })
            .collect();
        loads.sort_by(|a, b| {
            b.unfinished
                .cmp(&a.unfinished)
                .then(a.key_id.cmp(&b.key_id))
        });
        loads.truncate(n);
        Ok(loads)
    }
}
