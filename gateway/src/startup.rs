//! Building and running the gateway: `Application::build(settings)` connects to Redis and
//! storage (failing clearly when either is unusable), binds the listener (port 0 in tests),
//! and `run_until_stopped` serves until SIGTERM/SIGINT, then stops accepting and finishes the
//! requests in flight.

use std::future::Future;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::body::MessageBody;
use actix_web::dev::{Server, Service, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::{web, App, HttpMessage, HttpResponse, HttpServer};
use pipeline::queue::{Queue, QueueConfig};
use pipeline::storage::Storage;
use tracing::Instrument;

use crate::auth::ApiKeys;
use crate::error::ApiError;
use crate::events::EventHub;
use crate::local_redis::LocalRedis;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;

/// The id of a request: the client's `X-Request-Id` when it is sane, else a fresh one. It is
/// stored with the job, so the worker's logs carry it too.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Keys(String),
    #[error("cannot use Redis at {url}: {reason}")]
    Redis { url: String, reason: String },
    #[error("cannot use storage {url}: {reason}")]
    Storage { url: String, reason: String },
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
    #[error("cannot start the embedded workers: {0}")]
    Workers(String),
}

pub struct Application {
    port: u16,
    server: Server,
    worker: Option<workers::service::Worker>,
    local_redis: Option<LocalRedis>,
    state: web::Data<AppState>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let keys = ApiKeys::load(settings.api_keys.as_deref()).map_err(StartError::Keys)?;
        let url = settings.connection.redis_url.clone();
        let local_redis = if settings.embedded_workers > 0 {
            LocalRedis::start_if_needed(&url)
                .await
                .map_err(|reason| StartError::Redis {
                    url: url.clone(),
                    reason,
                })?
        } else {
            None
        };
        let queue_config = QueueConfig {
            name: settings.connection.queue.clone(),
            result_ttl: settings.result_ttl,
            visibility_timeout: settings.visibility_timeout,
            ..QueueConfig::default()
        };
        let queue = Queue::connect(&url, queue_config.clone())
            .await
            .map_err(|e| StartError::Redis {
                url: url.clone(),
                reason: e.to_string(),
            })?;
        for warning in queue.check_server().await {
            tracing::warn!("{warning}");
        }
        let storage_url = settings.connection.storage.clone();
        let storage = Storage::open(&storage_url, settings.connection.s3_endpoint.as_deref())
            .await
            .map_err(|e| StartError::Storage {
                url: storage_url.clone(),
                reason: e.to_string(),
            })?;
        if keys.is_open() {
            tracing::warn!(
                "no API keys configured: the API is open to anyone who can reach {}",
                settings.listen
            );
        }
        let listener = TcpListener::bind(&settings.listen).map_err(|e| StartError::Listen {
            addr: settings.listen.clone(),
            reason: e.to_string(),
        })?;
        let port = listener
            .local_addr()
            .map_err(|e| StartError::Listen {
                addr: settings.listen.clone(),
                reason: e.to_string(),
            })?
            .port();

        let worker = if settings.embedded_workers > 0 {
            let worker_settings = workers::settings::WorkerSettings {
                redis_url: url.clone(),
                storage: storage_url.clone(),
                s3_endpoint: settings.connection.s3_endpoint.clone(),
                queue: queue_config,
                max_pixels: settings.connection.max_pixels,
                threads: settings.embedded_workers,
                capacity: settings.embedded_workers * 2,
                job_timeout: settings.job_timeout,
                shutdown_timeout: settings.shutdown_timeout,
                metrics_listen: None,
                webhooks: pipeline::webhooks::DispatcherSettings::from_args(&settings.webhooks),
            };
            Some(
                workers::service::Worker::build(worker_settings)
                    .await
                    .map_err(|e| StartError::Workers(e.to_string()))?,
            )
        } else {
            None
        };

        let events = EventHub::start(&url, queue.keys().job_channel_prefix());
        let webhook_policy = pipeline::webhooks::TargetPolicy::from_args(&settings.webhooks);
        let settings = Arc::new(settings);
        let state = web::Data::new(AppState::new(
            queue,
            storage,
            settings.clone(),
            keys,
            events,
            webhook_policy,
        ));
        let server = {
            let state = state.clone();
            let mut server = HttpServer::new(move || {
                let metrics = state.metrics.clone();
                App::new()
                    .app_data(state.clone())
                    .app_data(web::QueryConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("bad query: {e}")).into()))
                    .app_data(web::PathConfig::default().error_handler(|e, _| ApiError::BadRequest(format!("bad path: {e}")).into()))
                    .wrap_fn(move |req, service| {
                        let started = Instant::now();
                        let id = req
                            .headers()
                            .get("x-request-id")
                            .and_then(|v| v.to_str().ok())
                            .filter(|v| !v.is_empty() && v.len() <= 64 && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
                            .map(str::to_owned)
                            .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
                        req.extensions_mut().insert(RequestId(id.clone()));
                        let method = req.method().to_string();
                        let span = tracing::info_span!("request", request_id = %id, method = %method, path = %req.path());
                        let call = service.call(req);
                        let metrics = metrics.clone();
                        async move {
                            let mut response: ServiceResponse<_> = call.await?;
                            if let Ok(value) = HeaderValue::from_str(&id) {
                                response.headers_mut().insert(HeaderName::from_static("x-request-id"), value);
                            }
                            let route = response.request().match_pattern().unwrap_or_else(|| "unmatched".into());
                            let status = response.status();
                            metrics.request(&route, &method, status.as_u16(), started.elapsed());
                            if status.is_server_error() {
                                tracing::warn!(status = status.as_u16(), "request failed");
                            } else {
                                tracing::debug!(status = status.as_u16(), "request");
                            }
                            Ok::<_, actix_web::Error>(response.map_body(|_, body| body.boxed()))
                        }
                        .instrument(span)
                    })
                    .configure(routes::configure)
                    .default_service(web::to(|| async {
                        Err::<HttpResponse, _>(ApiError::NotFound("no such route".into()))
                    }))
            })
            .listen(listener)
            .map_err(|e| StartError::Listen { addr: settings.listen.clone(), reason: e.to_string() })?
            .disable_signals()
            // Slow clients: 5 s to send the request head (then 408 and close); bodies are cut
            // after `upload::IDLE_TIMEOUT` without a byte.
            .client_request_timeout(Duration::from_secs(5))
            .client_disconnect_timeout(Duration::from_secs(1))
            .shutdown_timeout(settings.shutdown_timeout.as_secs().max(1));
            if let Some(workers) = settings.http_workers {
                server = server.workers(workers.max(1));
            }
            server.run()
        };
        tracing::info!(
            port,
            embedded_workers = settings.embedded_workers,
            "gateway listening"
        );
        Ok(Application {
            port,
            server,
            worker,
            local_redis,
            state,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(workers::service::shutdown_signal()).await
    }

    /// Serves until `stop` resolves; then stops accepting, finishes in-flight requests (and the
    /// embedded workers' jobs) within the shutdown timeout, and returns.
    pub async fn run_until(self, stop: impl Future<Output = ()>) -> anyhow::Result<()> {
        let handle = self.server.handle();
        let server = tokio::spawn(self.server);
        let (worker_stop, worker_stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = self.worker.map(|worker| {
            tokio::spawn(worker.run_until_stopped(async {
                let _ = worker_stopped.await;
            }))
        });
        stop.await;
        tracing::info!("stopping: no new connections; finishing requests in flight");
        let _ = worker_stop.send(());
        handle.stop(true).await;
        let served = server.await;
        if let Some(worker) = worker {
            worker.await??;
        }
        drop(self.state);
        drop(self.local_redis);
        served??;
        Ok(())
    }
}
