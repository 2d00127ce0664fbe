//! The orphan sweep: job records expire after the result TTL, their objects do not. `worker gc`
//! deletes objects whose job no longer exists, so storage does not grow forever.

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use crate::job::is_job_id;
use crate::queue::{Queue, QueueError};
use crate::storage::{ObjectKey, Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum GcError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize)]
pub struct SweepReport {
    pub scanned: u64,
    pub deleted: u64,
    pub deleted_bytes: u64,
    /// Objects kept because their job still exists.
    pub kept: u64,
    /// Orphans kept because they are younger than the grace period (an upload may be on its way
    /// to becoming a job).
    pub too_young: u64,
}

/// Deletes objects under `originals/`, `outputs/` and `uploads/` that no job record refers to
/// any more and that are older than `grace`. With `dry_run`, only counts.
pub async fn sweep(
    storage: &Storage,
    queue: &Queue,
    grace: Duration,
    dry_run: bool,
) -> Result<SweepReport, GcError> {
    let mut report = SweepReport::default();
    let now = SystemTime::now();
    for prefix in ["originals/", "outputs/", "uploads/"] {
        let mut after: Option<String> = None;
        loop {
            let page = storage.list(prefix, after.as_deref(), 1000).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.key.clone());
            // Uploads belong to no job until one is made from them; their id is not a job id.
            let ids: Vec<String> = page
                .iter()
                .filter_map(|o| {
                    o.key
                        .split('/')
                        .nth(1)
                        .filter(|id| is_job_id(id))
                        .map(str::to_owned)
                })
                .collect::<HashSet<_>>()
                .into_iter()
                .collect();
            let alive = queue.existing_jobs(&ids).await?;
            for object in &page {
                report.scanned += 1;
                let job = object.key.split('/').nth(1).unwrap_or_default();
                if prefix != "uploads/" && alive.contains(job) {
                    report.kept += 1;
                    continue;
                }
                let age = object
                    .last_modified
                    .and_then(|t| now.duration_since(t).ok())
                    .unwrap_or_default();
                if age < grace {
                    report.too_young += 1;
                    continue;
                }
                if !dry_run {
                    let key = ObjectKey::parse(&object.key).map_err(StorageError::from)?;
                    storage.delete(&key).await?;
                }
                report.deleted += 1;
                report.deleted_bytes += object.size;
            }
        }
    }
    Ok(report)
}
