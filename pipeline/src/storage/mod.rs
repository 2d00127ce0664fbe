//! Object storage: a local directory (the one-command default) or S3 and S3-compatible servers
//! (MinIO, Garage, s3s...). One interface, one conformance suite for both.
//!
//! Storage faults are transient for the queue: a stalled or restarting store costs retries,
//! never a job.

mod key;
mod local;
mod s3;

use std::pin::Pin;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use futures::Stream;

use crate::failure::{Disposition, FailureCode};

pub use key::{InvalidKey, ObjectKey};
pub use local::LocalStore;
pub use s3::{S3Settings, S3Store};

/// An error from the body an upload streams from (the gateway's request body: too large,
/// client gone...). Storage hands it back unchanged in [`StorageError::Body`].
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

/// A stream of bytes being uploaded. Not `Send`: request bodies of thread-per-core servers
/// are not, and an upload is polled where it started.
pub type BodyStream<'a> = Pin<Box<dyn Stream<Item = Result<Bytes, BodyError>> + 'a>>;

/// A stream of bytes being downloaded.
pub type ObjectStream = Pin<Box<dyn Stream<Item = Result<Bytes, StorageError>> + Send>>;

#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("no object {0}")]
    NotFound(String),
    #[error(transparent)]
    InvalidKey(#[from] InvalidKey),
    /// Unreachable, slow, or failing on its side (5xx, I/O errors, timeouts): try again later.
    #[error("storage is unavailable: {0}")]
    Unavailable(String),
    /// Refused for good (credentials, missing bucket, permissions).
    #[error("storage refused: {0}")]
    Refused(String),
    #[error("bad storage setting: {0}")]
    Config(String),
    /// The upload's own body failed; the partial object was discarded.
    #[error("upload body failed: {0}")]
    Body(BodyError),
}

impl StorageError {
    /// Every storage fault is worth a retry except a body that failed (the client's doing), a
    /// key that can never be valid, and a missing object (a job whose input vanished would fail
    /// the same way every time). A refused call (credentials, missing bucket) is retried: it is
    /// fixed by an operator, not by the job.
    pub fn disposition(&self) -> Disposition {
        match self {
            StorageError::InvalidKey(_)
            | StorageError::Body(_)
            | StorageError::Config(_)
            | StorageError::NotFound(_) => Disposition::Abort,
            StorageError::Unavailable(_) | StorageError::Refused(_) => Disposition::Retry,
        }
    }

    pub fn code(&self) -> FailureCode {
        FailureCode::StorageError
    }
}

/// What storage knows about an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectMeta {
    pub key: String,
    pub size: u64,
    pub last_modified: Option<SystemTime>,
}

impl ObjectMeta {
    /// An object just stored.
    pub fn stored_now(key: &ObjectKey, size: u64) -> ObjectMeta {
        ObjectMeta {
            key: key.to_string(),
            size,
            last_modified: Some(SystemTime::now()),
        }
    }
}

/// What a presigned URL lets its holder do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presign {
    Get,
    Put,
}

/// Reads `body` into `part` until it holds [`PART_SIZE`] bytes; `true` when the body ended.
pub(crate) async fn fill_part(
    part: &mut bytes::BytesMut,
    body: &mut BodyStream<'_>,
) -> Result<bool, StorageError> {
    use futures::StreamExt;
    while part.len() < PART_SIZE {
        match body.next().await {
            Some(chunk) => part.extend_from_slice(&chunk.map_err(StorageError::Body)?),
            None => return Ok(true),
        }
    }
    Ok(false)
}

/// An object store. Cheap to clone.
#[derive(Debug, Clone)]
pub enum Storage {
    Local(LocalStore),
    S3(S3Store),
}

/// Objects moved through memory in one piece up to this size; larger ones stream (and go to S3
/// as multipart uploads).
pub const PART_SIZE: usize = 8 << 20;

impl Storage {
    /// Opens `file://DIR` or `s3://BUCKET[/PREFIX]` (with `endpoint` for S3-compatible servers)
    /// and checks it is usable: a clear error now beats a failing job later.
    pub async fn open(url: &str, endpoint: Option<&str>) -> Result<Storage, StorageError> {
        Storage::open_with(url, endpoint, None).await
    }

    /// [`Storage::open`], with the origin clients reach the S3 server at (`public_endpoint`)
    /// when it differs from the services' (`endpoint`): presigned URLs use it.
    pub async fn open_with(
        url: &str,
        endpoint: Option<&str>,
        public_endpoint: Option<&str>,
    ) -> Result<Storage, StorageError> {
        let storage = if let Some(dir) = url.strip_prefix("file://") {
            Storage::Local(LocalStore::open(dir).await?)
        } else if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(StorageError::Config(format!("{url}: no bucket")));
            }
            let settings = S3Settings {
                bucket: bucket.to_owned(),
                prefix: prefix.trim_matches('/').to_owned(),
                endpoint: endpoint.map(str::to_owned),
                public_endpoint: public_endpoint.map(str::to_owned),
                ..S3Settings::default()
            };
            Storage::S3(S3Store::open(settings).await?)
        } else {
            return Err(StorageError::Config(format!(
                "{url}: use file://DIR or s3://BUCKET[/PREFIX]"
            )));
        };
        storage.ping().await?;
        Ok(storage)
    }

    /// Stores `data` under `key`, replacing any object there.
    pub async fn put(
        &self,
        key: &ObjectKey,
        data: Bytes,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.put(key, data).await,
            Storage::S3(s) => s.put(key, data, content_type).await,
        }
    }

    /// Streams `body` into `key`, holding at most one part in memory. Nothing is left behind
    /// when the body or the store fails.
    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        body: BodyStream<'_>,
        content_type: &str,
    ) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.put_stream(key, body).await,
            Storage::S3(s) => s.put_stream(key, body, content_type).await,
        }
    }

    /// The whole object.
    pub async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        match self {
            Storage::Local(s) => s.get(key).await,
            Storage::S3(s) => s.get(key).await,
        }
    }

    /// The first `len` bytes of the object (all of it when shorter).
    pub async fn get_prefix(&self, key: &ObjectKey, len: usize) -> Result<Bytes, StorageError> {
        match self {
            Storage::Local(s) => s.get_prefix(key, len).await,
            Storage::S3(s) => s.get_prefix(key, len).await,
        }
    }

    /// Copies an object within the store (server-side on S3).
    pub async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        match self {
            Storage::Local(s) => s.copy(from, to).await,
            Storage::S3(s) => s.copy(from, to).await,
        }
    }

    /// The object as a stream, with its size.
    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<(ObjectMeta, ObjectStream), StorageError> {
        match self {
            Storage::Local(s) => s.get_stream(key).await,
            Storage::S3(s) => s.get_stream(key).await,
        }
    }

    /// The object's metadata, or `None` when there is no such object.
    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        match self {
            Storage::Local(s) => s.head(key).await,
            Storage::S3(s) => s.head(key).await,
        }
    }

    /// Deletes an object; deleting a missing one is not an error.
    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.delete(key).await,
            Storage::S3(s) => s.delete(key).await,
        }
    }

    /// Up to `limit` objects whose keys start with `prefix`, in key order, after `after`.
    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        match self {
            Storage::Local(s) => s.list(prefix, after, limit).await,
            Storage::S3(s) => s.list(prefix, after, limit).await,
        }
    }

    /// Deletes every object under `prefix`; returns how many went.
    pub async fn delete_prefix(&self, prefix: &str) -> Result<u64, StorageError> {
        let mut deleted = 0;
        loop {
            let batch = self.list(prefix, None, 1000).await?;
            if batch.is_empty() {
                return Ok(deleted);
            }
            for object in &batch {
                self.delete(&ObjectKey::parse(&object.key)?).await?;
                deleted += 1;
            }
        }
    }

    /// A URL anyone can GET (or PUT) the object with until `expires`; `None` where the backend
    /// cannot sign (a local directory: the gateway serves and takes those bytes itself).
    pub async fn presign(
        &self,
        key: &ObjectKey,
        method: Presign,
        expires: Duration,
    ) -> Result<Option<String>, StorageError> {
        match self {
            Storage::Local(_) => Ok(None),
            Storage::S3(s) => s.presign(key, method, expires).await.map(Some),
        }
    }

    /// Checks the store answers (readiness).
    pub async fn ping(&self) -> Result<(), StorageError> {
        match self {
            Storage::Local(s) => s.ping().await,
            Storage::S3(s) => s.ping().await,
        }
    }

    /// A short description for logs (`file:///abs/path`, `s3://bucket/prefix`).
    pub fn describe(&self) -> String {
        match self {
            Storage::Local(s) => format!("file://{}", s.root().display()),
            Storage::S3(s) => s.describe(),
        }
    }
}
