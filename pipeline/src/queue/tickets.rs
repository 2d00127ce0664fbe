//! Presigned-upload tickets: an upload id handed to a client, remembered (with the API key that
//! asked for it) until the upload becomes a job or the ticket expires.

use std::time::Duration;

use super::{scripts, Queue, Result};

/// Stored in place of an owner when the API is open (no keys).
const NO_OWNER: &str = "-";

/// A live ticket.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTicket {
    /// The owner id of the key that asked for it; `None` when the API is open.
    pub owner: Option<String>,
}

impl Queue {
    /// Remembers upload `upload_id` for `owner`, for `ttl`.
    pub async fn create_upload_ticket(
        &self,
        upload_id: &str,
        owner: Option<&str>,
        ttl: Duration,
    ) -> Result<()> {
        self.redis
            .query(
                redis::cmd("SET")
                    .arg(self.keys.upload(upload_id))
                    .arg(owner.unwrap_or(NO_OWNER))
                    .arg("PX")
                    .arg(ttl.as_millis() as u64),
            )
            .await
    }

    /// The ticket, while it lives.
    pub async fn upload_ticket(&self, upload_id: &str) -> Result<Option<UploadTicket>> {
        let owner: Option<String> = self
            .redis
            .query(redis::cmd("GET").arg(self.keys.upload(upload_id)))
            .await?;
        Ok(owner.map(|owner| UploadTicket {
            owner: (owner != NO_OWNER).then_some(owner),
        }))
    }

    /// Spends the ticket for `owner`, atomically: `true` for exactly one of several racing
    /// callers, `false` when it is gone or another owner's.
    pub async fn claim_upload_ticket(&self, upload_id: &str, owner: Option<&str>) -> Result<bool> {
        let mut invocation = scripts::CLAIM_TICKET.prepare_invoke();
        invocation
            .key(self.keys.upload(upload_id))
            .arg(owner.unwrap_or(NO_OWNER));
        let claimed: i64 = self.redis.script(&invocation).await?;
        Ok(claimed == 1)
    }
}
