//! Building and running the gateway: `Application::build(settings)` connects to Redis and
//! storage (failing clearly when either is unusable), binds the listener (port 0 in tests),
//! and `run_until(shutdown)` serves until the shutdown starts, then stops accepting and
//! finishes the requests in flight (and the embedded workers' jobs).

use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::Server;
use actix_web::{middleware, web, App, HttpResponse, HttpServer};
use pipeline::queue::Queue;
use pipeline::shutdown::Shutdown;
use pipeline::storage::Storage;
use workers::connect::ConnectError;

use crate::auth::ApiKeys;
use crate::cors::CorsOrigins;
use crate::error::ApiError;
use crate::local_redis::LocalRedis;
use crate::routes;
use crate::settings::Settings;
use crate::state::AppState;

/// Why the gateway cannot start. The causes stay attached: the binary prints the whole chain.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("bad --api-keys: {0}")]
    Keys(String),
    #[error("bad --cors-origins: {0}")]
    Cors(String),
    #[error("cannot start a local Redis for {url}: {reason}")]
    LocalRedis { url: String, reason: String },
    #[error(transparent)]
    Connect(#[from] ConnectError),
    #[error("cannot listen on {addr}")]
    Listen {
        addr: String,
        #[source]
        source: std::io::Error,
    },
    #[error("cannot start the embedded workers")]
    Workers(#[source] workers::service::StartError),
}

pub struct Application {
    port: u16,
    listener: TcpListener,
    state: web::Data<AppState>,
    cors: CorsOrigins,
    worker: Option<workers::service::Worker>,
    local_redis: Option<LocalRedis>,
}

impl Application {
    pub async fn build(settings: Settings) -> Result<Application, StartError> {
        let keys = ApiKeys::load(settings.api_keys.as_deref()).map_err(StartError::Keys)?;
        let cors = CorsOrigins::parse(&settings.cors_origins).map_err(StartError::Cors)?;
        let local_redis = start_local_redis(&settings).await?;
        let (queue, storage) = connect(&settings).await?;
        if keys.is_open() {
            tracing::warn!(
                "no API keys configured: the API is open to anyone who can reach {}",
                settings.listen
            );
        }
        let listen_error = |source| StartError::Listen {
            addr: settings.listen.clone(),
            source,
        };
        let listener = TcpListener::bind(&settings.listen).map_err(listen_error)?;
        let port = listener.local_addr().map_err(listen_error)?.port();
        let worker = match settings.embedded_workers() {
            Some(worker_settings) => Some(
                workers::service::Worker::build(worker_settings)
                    .await
                    .map_err(StartError::Workers)?,
            ),
            None => None,
        };
        let state = web::Data::new(AppState::new(queue, storage, Arc::new(settings), keys));
        Ok(Application {
            port,
            listener,
            state,
            cors,
            worker,
            local_redis,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    /// Serves until SIGTERM or SIGINT.
    pub async fn run_until_stopped(self) -> anyhow::Result<()> {
        self.run_until(Shutdown::on_signals()).await
    }

    /// Serves until `shutdown` starts; then stops accepting, finishes in-flight requests (and
    /// the embedded workers' jobs) within the shutdown timeout, and returns.
    pub async fn run_until(self, shutdown: Shutdown) -> anyhow::Result<()> {
        let settings = self.state.settings.clone();
        let events = tokio::spawn(self.state.events.clone().follow(
            self.state.queue.clone(),
            settings.connection.redis_url.clone(),
            shutdown.clone(),
        ));
        let server = serve(self.listener, self.state.clone(), self.cors)?;
        tracing::info!(
            port = self.port,
            embedded_workers = settings.embedded_workers,
            "gateway listening"
        );
        let handle = server.handle();
        let served = tokio::spawn(server);
        let worker = self
            .worker
            .map(|worker| tokio::spawn(worker.run_until_stopped(shutdown.clone())));
        shutdown.triggered().await;
        tracing::info!("stopping: no new connections; finishing requests in flight");
        handle.stop(true).await;
        let served = served.await;
        if let Some(worker) = worker {
            worker.await??;
        }
        events.await?;
        drop(self.state);
        drop(self.local_redis);
        served??;
        Ok(())
    }
}

/// With embedded workers and nothing answering at a local Redis URL: a `redis-server` child.
async fn start_local_redis(settings: &Settings) -> Result<Option<LocalRedis>, StartError> {
    if settings.embedded_workers == 0 {
        return Ok(None);
    }
    let url = &settings.connection.redis_url;
    LocalRedis::start_if_needed(url)
        .await
        .map_err(|reason| StartError::LocalRedis {
            url: url.clone(),
            reason,
        })
}

/// The queue and the object store.
async fn connect(settings: &Settings) -> Result<(Queue, Storage), StartError> {
    let connection = &settings.connection;
    Ok(workers::connect::connect(
        &connection.redis_url,
        connection.queue_config(&settings.queue),
        &connection.storage,
        connection.s3_endpoint.as_deref(),
        connection.s3_public_endpoint.as_deref(),
    )
    .await?)
}

/// The HTTP server on `listener`, with its own signal handling off (one shutdown signal drives
/// everything).
fn serve(
    listener: TcpListener,
    state: web::Data<AppState>,
    cors: CorsOrigins,
) -> std::io::Result<Server> {
    let settings = state.settings.clone();
    let keys = web::Data::new(state.keys.clone());
    let metrics = web::Data::new(state.metrics.clone());
    let mut server = HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(keys.clone())
            .app_data(metrics.clone())
            .app_data(
                web::QueryConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(format!("bad query: {e}")).into()),
            )
            .app_data(
                web::PathConfig::default()
                    .error_handler(|e, _| ApiError::BadRequest(format!("bad path: {e}")).into()),
            )
            .wrap(middleware::from_fn(crate::middleware::observe))
            .configure(|cfg| routes::configure(cfg, cors.middleware()))
            .default_service(web::to(|| async {
                Err::<HttpResponse, _>(ApiError::NotFound("no such route".into()))
            }))
    })
    .listen(listener)?
    .disable_signals()
    // Slow clients: 5 s to send the request head (then 408 and close); bodies are cut after
    // `intake::IDLE_TIMEOUT` without a byte.
    .client_request_timeout(Duration::from_secs(5))
    .client_disconnect_timeout(Duration::from_secs(1))
    .shutdown_timeout(settings.queue.shutdown_timeout.as_secs().max(1));
    if let Some(workers) = settings.http_workers {
        server = server.workers(workers.max(1));
    }
    Ok(server.run())
}
