//! A local directory as object storage. Writes are atomic (a temporary file in the same
//! directory tree, fsynced, then renamed, then the directory fsynced), so a crash leaves either
//! the old object or the new one, never half of one.

use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::{BodyStream, ObjectKey, ObjectMeta, ObjectStream, StorageError};

/// Temporary files live here, inside the root (same filesystem, so rename is atomic); object
/// keys cannot start with a dot, so no key can reach it.
const TMP_DIR: &str = ".tmp";

#[derive(Debug, Clone)]
pub struct LocalStore {
    root: Arc<PathBuf>,
}

fn io(e: std::io::Error) -> StorageError {
    StorageError::Unavailable(e.to_string())
}

impl LocalStore {
    /// Opens (creating) the directory and checks it is writable.
    pub async fn open(dir: &str) -> Result<LocalStore, StorageError> {
        if dir.is_empty() {
            return Err(StorageError::Config("file:// needs a directory".into()));
        }
        let root = PathBuf::from(dir);
        tokio::fs::create_dir_all(root.join(TMP_DIR))
            .await
            .map_err(|e| StorageError::Config(format!("cannot create {}: {e}", root.display())))?;
        let root = tokio::fs::canonicalize(&root)
            .await
            .map_err(|e| StorageError::Config(format!("{}: {e}", root.display())))?;
        Ok(LocalStore {
            root: Arc::new(root),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn path(&self, key: &ObjectKey) -> PathBuf {
        // ObjectKey guarantees relative, dot-free segments: the join stays under the root.
        self.root.join(key.as_str())
    }

    fn temp_path(&self) -> PathBuf {
        self.root
            .join(TMP_DIR)
            .join(uuid::Uuid::new_v4().to_string())
    }

    pub async fn put(&self, key: &ObjectKey, data: Bytes) -> Result<ObjectMeta, StorageError> {
        // One trip to the blocking pool for the whole write: create, write, fsync, rename,
        // fsync the directory.
        let temp = self.temp_path();
        let path = self.path(key);
        let size = data.len() as u64;
        let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
            use std::io::Write;
            let result = (|| {
                let mut file = std::fs::File::create(&temp)?;
                file.write_all(&data)?;
                file.sync_all()?;
                let parent = path.parent().expect("keys have a parent under the root");
                std::fs::create_dir_all(parent)?;
                std::fs::rename(&temp, &path)?;
                if let Ok(dir) = std::fs::File::open(parent) {
                    let _ = dir.sync_all();
                }
                Ok(())
            })();
            if result.is_err() {
                let _ = std::fs::remove_file(&temp);
            }
            result
        })
        .await
        .map_err(|e| StorageError::Unavailable(e.to_string()))?;
        written.map_err(io)?;
        Ok(ObjectMeta::stored_now(key, size))
    }

    pub async fn put_stream(
        &self,
        key: &ObjectKey,
        mut body: BodyStream<'_>,
    ) -> Result<ObjectMeta, StorageError> {
        // Most uploads fit in one part: gather it and write it in one go.
        let mut first = bytes::BytesMut::new();
        if super::fill_part(&mut first, &mut body).await? {
            return self.put(key, first.freeze()).await;
        }
        let temp = self.temp_path();
        let mut size = first.len() as u64;
        let written = async {
            let mut file = tokio::fs::File::create(&temp).await.map_err(io)?;
            file.write_all(&first).await.map_err(io)?;
            while let Some(chunk) = body.next().await {
                let chunk = chunk.map_err(StorageError::Body)?;
                size += chunk.len() as u64;
                file.write_all(&chunk).await.map_err(io)?;
            }
            Ok(file)
        }
        .await;
        self.commit(key, temp, written, size).await
    }

    /// Makes a written temporary file the object: fsync, rename, fsync the directory. On any
    /// failure (including the write's) the temporary file goes.
    async fn commit(
        &self,
        key: &ObjectKey,
        temp: PathBuf,
        written: Result<tokio::fs::File, StorageError>,
        size: u64,
    ) -> Result<ObjectMeta, StorageError> {
        let result = async {
            let mut file = written?;
            file.flush().await.map_err(io)?;
            drop(file);
            self.install(&temp, key).await
        }
        .await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result.map(|()| ObjectMeta::stored_now(key, size))
    }

    /// Moves a complete temporary file into place as `key`, durably: the file is fsynced
    /// (the object must survive a power cut once we say it is stored), renamed, and its
    /// directory fsynced.
    async fn install(&self, temp: &Path, key: &ObjectKey) -> Result<(), StorageError> {
        tokio::fs::File::open(temp)
            .await
            .map_err(io)?
            .sync_all()
            .await
            .map_err(io)?;
        let path = self.path(key);
        let parent = path
            .parent()
            .expect("keys have a parent under the root")
            .to_owned();
        tokio::fs::create_dir_all(&parent).await.map_err(io)?;
        tokio::fs::rename(temp, &path).await.map_err(io)?;
        sync_dir(&parent).await;
        Ok(())
    }

    pub async fn get(&self, key: &ObjectKey) -> Result<Bytes, StorageError> {
        match tokio::fs::read(self.path(key)).await {
            Ok(data) => Ok(Bytes::from(data)),
            Err(e) if e.kind() == ErrorKind::NotFound => {
                Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => Err(io(e)),
        }
    }

    pub async fn get_prefix(&self, key: &ObjectKey, len: usize) -> Result<Bytes, StorageError> {
        let file = match tokio::fs::File::open(self.path(key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => return Err(io(e)),
        };
        let mut buf = Vec::with_capacity(len.min(1 << 20));
        file.take(len as u64)
            .read_to_end(&mut buf)
            .await
            .map_err(io)?;
        Ok(Bytes::from(buf))
    }

    pub async fn copy(&self, from: &ObjectKey, to: &ObjectKey) -> Result<ObjectMeta, StorageError> {
        let temp = self.temp_path();
        let size = match tokio::fs::copy(self.path(from), &temp).await {
            Ok(size) => size,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::NotFound(from.to_string()))
            }
            Err(e) => return Err(io(e)),
        };
        let result = self.install(&temp, to).await;
        if result.is_err() {
            let _ = tokio::fs::remove_file(&temp).await;
        }
        result.map(|()| ObjectMeta::stored_now(to, size))
    }

    pub async fn get_stream(
        &self,
        key: &ObjectKey,
    ) -> Result<(ObjectMeta, ObjectStream), StorageError> {
        let file = match tokio::fs::File::open(self.path(key)).await {
            Ok(file) => file,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(StorageError::NotFound(key.to_string()))
            }
            Err(e) => return Err(io(e)),
        };
        let metadata = file.metadata().await.map_err(io)?;
        let meta = ObjectMeta {
            key: key.to_string(),
            size: metadata.len(),
            last_modified: metadata.modified().ok(),
        };
        let stream = futures::stream::try_unfold(file, |mut file| async move {
            let mut buf = BytesMut::with_capacity(64 << 10);
            let n = file.read_buf(&mut buf).await.map_err(io)?;
            Ok((n > 0).then(|| (buf.freeze(), file)))
        });
        Ok((meta, Box::pin(stream)))
    }

    pub async fn head(&self, key: &ObjectKey) -> Result<Option<ObjectMeta>, StorageError> {
        match tokio::fs::metadata(self.path(key)).await {
            Ok(metadata) if metadata.is_file() => Ok(Some(ObjectMeta {
                key: key.to_string(),
                size: metadata.len(),
                last_modified: metadata.modified().ok(),
            })),
            Ok(_) => Ok(None),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io(e)),
        }
    }

    pub async fn delete(&self, key: &ObjectKey) -> Result<(), StorageError> {
        let path = self.path(key);
        match tokio::fs::remove_file(&path).await {
            Ok(()) => {}
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(io(e)),
        }
        // Tidy emptied directories up to the root (best effort: another writer may race).
        let mut dir = path.parent().map(Path::to_path_buf);
        while let Some(d) = dir {
            if d == *self.root || tokio::fs::remove_dir(&d).await.is_err() {
                break;
            }
            dir = d.parent().map(Path::to_path_buf);
        }
        Ok(())
    }

    pub async fn list(
        &self,
        prefix: &str,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<ObjectMeta>, StorageError> {
        // Walk only the directory the prefix names, then filter by the full prefix.
        let base = match prefix.rfind('/') {
            Some(slash) => &prefix[..slash],
            None => "",
        };
        if !base.is_empty() && ObjectKey::parse(base).is_err() {
            return Ok(Vec::new());
        }
        let root = self.root.clone();
        let prefix = prefix.to_owned();
        let after = after.map(str::to_owned);
        let start = root.join(base);
        let mut found =
            tokio::task::spawn_blocking(move || walk(&root, &start, &prefix, after.as_deref()))
                .await
                .map_err(|e| StorageError::Unavailable(e.to_string()))??;
        found.sort_by(|a, b| a.key.cmp(&b.key));
        found.truncate(limit);
        Ok(found)
    }

    pub async fn ping(&self) -> Result<(), StorageError> {
        let probe = self.temp_path();
        tokio::fs::write(&probe, b"ping").await.map_err(io)?;
        tokio::fs::remove_file(&probe).await.map_err(io)
    }
}

/// Every file under `dir` whose key starts with `prefix` and sorts after `after`.
fn walk(
    root: &Path,
    dir: &Path,
    prefix: &str,
    after: Option<&str>,
) -> Result<Vec<ObjectMeta>, StorageError> {
    let mut found = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        for entry in entries {
            let entry = entry.map_err(io)?;
            let path = entry.path();
            let Ok(relative) = path.strip_prefix(root) else {
                continue;
            };
            let Some(key) = relative.to_str() else {
                continue;
            };
            if key.starts_with('.') {
                continue; // temporary files
            }
            let file_type = entry.file_type().map_err(io)?;
            if file_type.is_dir() {
                pending.push(path);
            } else if file_type.is_file()
                && key.starts_with(prefix)
                && after.is_none_or(|a| key > a)
            {
                let metadata = entry.metadata().map_err(io)?;
                found.push(ObjectMeta {
                    key: key.to_owned(),
                    size: metadata.len(),
                    last_modified: metadata.modified().ok(),
                });
            }
        }
    }
    Ok(found)
}

/// fsync a directory so a rename in it is durable. Best effort: not every filesystem allows it.
async fn sync_dir(dir: &Path) {
    if let Ok(handle) = tokio::fs::File::open(dir).await {
        let _ = handle.sync_all().await;
    }
}
