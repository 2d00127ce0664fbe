//! What every request handler shares.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use pipeline::engine::Limits;
use pipeline::queue::{Admission, Depth, Enqueuer, Queue};
use pipeline::signing::UrlSigner;
use pipeline::storage::Storage;
use pipeline::view::Links;
use pipeline::webhooks::TargetPolicy;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use crate::auth::{ApiKeys, Caller};
use crate::error::ApiError;
use crate::events::EventHub;
use crate::metrics::GatewayMetrics;
use crate::settings::Settings;

pub struct AppState {
    pub queue: Queue,
    /// New jobs go through it: concurrent uploads share ENQUEUE calls.
    pub enqueuer: Enqueuer,
    pub storage: Storage,
    pub settings: Arc<Settings>,
    pub keys: ApiKeys,
    pub metrics: GatewayMetrics,
    pub events: Arc<EventHub>,
    pub limits: Limits,
    pub webhook_policy: TargetPolicy,
    /// Signs output URLs when `--url-signing-key` is set.
    pub url_signer: Option<UrlSigner>,
    depth: DepthCache,
    /// One permit per upload in progress.
    uploads: Arc<Semaphore>,
}

impl AppState {
    /// Needs a Tokio runtime (it starts the enqueueing task).
    pub fn new(queue: Queue, storage: Storage, settings: Arc<Settings>, keys: ApiKeys) -> AppState {
        AppState {
            enqueuer: Enqueuer::spawn(queue.clone()),
            limits: Limits {
                max_pixels: settings.connection.max_pixels,
                max_frames: settings.media.max_frames,
            },
            webhook_policy: settings.webhooks.target_policy(),
            url_signer: settings.webhooks.url_signer(),
            uploads: Arc::new(Semaphore::new(settings.max_concurrent_uploads.max(1))),
            queue,
            storage,
            settings,
            keys,
            metrics: GatewayMetrics::new(),
            events: EventHub::new(),
            depth: DepthCache::default(),
        }
    }

    /// The app's state, from a request (for extractors).
    pub fn of(req: &actix_web::HttpRequest) -> Result<actix_web::web::Data<AppState>, ApiError> {
        req.app_data::<actix_web::web::Data<AppState>>()
            .cloned()
            .ok_or_else(|| ApiError::Internal("no application state".into()))
    }

    /// Refuses new work (429) while the backlog is at its limit or too many uploads are in
    /// progress; the permit it returns is the upload's place until it is dropped. The depth is
    /// read from Redis at most every 100 ms: one read serves a burst of uploads.
    pub async fn admit(&self, caller: &Caller) -> Result<OwnedSemaphorePermit, ApiError> {
        let permit =
            self.uploads
                .clone()
                .try_acquire_owned()
                .map_err(|_| ApiError::RateLimited {
                    limit: self.settings.max_concurrent_uploads,
                    retry_after: 1,
                })?;
        let backlog = match self.depth.fresh() {
            Some(backlog) => backlog,
            None => {
                let depth: Depth = self.queue.depth().await?;
                self.depth.store(depth.backlog());
                depth.backlog()
            }
        };
        if backlog >= self.settings.max_queue_depth {
            return Err(ApiError::QueueFull {
                depth: backlog,
                retry_after: 2,
            });
        }
        if let Some(owner) = &caller.owner {
            self.admit_key(owner).await?;
        }
        Ok(permit)
    }

    /// The caller's key against its quota and rate (shared by every gateway through Redis).
    async fn admit_key(&self, owner: &str) -> Result<(), ApiError> {
        let limited = |reason, retry_after: std::time::Duration| ApiError::KeyLimited {
            reason,
            retry_after: retry_after.as_secs_f64().ceil().max(1.0) as u64,
        };
        match self
            .queue
            .admit_tenant(owner, self.settings.tenant_limits())
            .await?
        {
            Admission::Admitted => Ok(()),
            Admission::OverQuota { retry_after } => Err(limited(
                "this API key has --max-queued-per-key jobs waiting or running",
                retry_after,
            )),
            Admission::OverRate { retry_after } => Err(limited(
                "this API key is over its --rate-limit-per-key",
                retry_after,
            )),
        }
    }

    /// How URLs in responses are made: they start with the configured public URL, or the
    /// request's origin, and output URLs are signed when signing is on.
    pub fn links(&self, req: &actix_web::HttpRequest) -> Links {
        let base = match &self.settings.webhooks.public_url {
            Some(url) => url.trim_end_matches('/').to_owned(),
            None => {
                let info = req.connection_info();
                format!("{}://{}", info.scheme(), info.host())
            }
        };
        Links::new(&base, self.url_signer.clone())
    }
}

/// The last backlog read and when (ms since the epoch).
#[derive(Default)]
struct DepthCache {
    backlog: AtomicU64,
    read_at: AtomicU64,
}

impl DepthCache {
    fn fresh(&self) -> Option<u64> {
        let age = pipeline::job::now_ms().saturating_sub(self.read_at.load(Ordering::Relaxed));
        (age < 100).then(|| self.backlog.load(Ordering::Relaxed))
    }

    fn store(&self, backlog: u64) {
        self.backlog.store(backlog, Ordering::Relaxed);
        self.read_at
            .store(pipeline::job::now_ms(), Ordering::Relaxed);
    }
}
