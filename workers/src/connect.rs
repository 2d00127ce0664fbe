//! Connecting to Redis and object storage at start-up, the same way in every binary: a clear
//! error now beats a failing job later, and a Redis that could lose jobs is warned about.

use pipeline::queue::{Queue, QueueConfig, QueueError};
use pipeline::storage::{Storage, StorageError};

#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    #[error("cannot use Redis at {url}")]
    Redis {
        url: String,
        #[source]
        source: QueueError,
    },
    #[error("cannot use storage {url}")]
    Storage {
        url: String,
        #[source]
        source: StorageError,
    },
}

/// The queue at `redis_url` and the store at `storage` (with `s3_endpoint` for S3-compatible
/// servers, and `s3_public_endpoint` for the URLs clients are given), both checked to answer.
pub async fn connect(
    redis_url: &str,
    config: QueueConfig,
    storage: &str,
    s3_endpoint: Option<&str>,
    s3_public_endpoint: Option<&str>,
) -> Result<(Queue, Storage), ConnectError> {
    let queue = Queue::connect(redis_url, config)
        .await
        .map_err(|source| ConnectError::Redis {
            url: redis_url.to_owned(),
            source,
        })?;
    for warning in queue.check_server().await {
        tracing::warn!("{warning}");
    }
    let store = Storage::open_with(storage, s3_endpoint, s3_public_endpoint)
        .await
        .map_err(|source| ConnectError::Storage {
            url: storage.to_owned(),
            source,
        })?;
    Ok((queue, store))
}
