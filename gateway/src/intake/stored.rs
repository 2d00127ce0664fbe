//! The inputs an intake has stored so far. Whatever is not handed on to a job is deleted: on
//! an error, [`StoredInputs::discard`] deletes them before the answer goes out; if the request
//! is dropped midway (the client went away), dropping the guard deletes them in the background.

use pipeline::storage::{ObjectKey, Storage};

pub struct StoredInputs {
    storage: Storage,
    keys: Vec<ObjectKey>,
}

impl StoredInputs {
    pub fn new(storage: &Storage) -> StoredInputs {
        StoredInputs {
            storage: storage.clone(),
            keys: Vec::new(),
        }
    }

    /// Counts `key` as stored (call it before storing: a failed store may leave a part).
    pub fn add(&mut self, key: ObjectKey) {
        self.keys.push(key);
    }

    pub fn keys(&self) -> &[ObjectKey] {
        &self.keys
    }

    /// Deletes every input stored so far (best effort: the orphan sweep gets what is left).
    pub async fn discard(mut self) {
        for key in std::mem::take(&mut self.keys) {
            let _ = self.storage.delete(&key).await;
        }
    }

    /// The inputs now belong to a job: keep them.
    pub fn keep(mut self) {
        self.keys.clear();
    }
}

impl Drop for StoredInputs {
    fn drop(&mut self) {
        let keys = std::mem::take(&mut self.keys);
        if keys.is_empty() {
            return;
        }
        let storage = self.storage.clone();
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                for key in keys {
                    let _ = storage.delete(&key).await;
                }
            });
        }
    }
}
