//! Connections to Redis that survive restarts and failovers: every call has a timeout, and a
//! lost connection is re-established with backoff on the next call instead of failing the
//! process.
//!
//! URLs: `redis://[:password@]host:port/db` (and `rediss://`) for one server;
//! `redis+cluster://host:port,host:port` for Redis Cluster (every queue key carries the
//! queue's hash tag, so multi-key scripts stay on one slot).

use std::future::Future;
use std::path::PathBuf;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::{Cmd, FromRedisValue, Pipeline, RedisFuture, ScriptInvocation, Value};

use super::QueueError;

/// TLS files for `rediss://` beyond the system's trust store (PEM): the CA that signed the
/// server's certificate, and a client certificate and key for servers that ask for one. Read
/// at each connect, so a renewed certificate is picked up by the next reconnection.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RedisTls {
    pub ca: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
}

/// A client for `url`, trusting `tls.ca` (else the system's roots) for `rediss://`.
pub(crate) fn client(url: &str, tls: &RedisTls) -> redis::RedisResult<redis::Client> {
    if tls == &RedisTls::default() {
        return redis::Client::open(url);
    }
    let read = |path: &PathBuf| {
        std::fs::read(path).map_err(|e| {
            redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "cannot read a TLS file",
                format!("{}: {e}", path.display()),
            ))
        })
    };
    let client_tls = match (&tls.client_cert, &tls.client_key) {
        (Some(cert), Some(key)) => Some(redis::ClientTlsConfig {
            client_cert: read(cert)?,
            client_key: read(key)?,
        }),
        (None, None) => None,
        _ => {
            return Err(redis::RedisError::from((
                redis::ErrorKind::InvalidClientConfig,
                "a client certificate needs its key, and a key its certificate",
            )))
        }
    };
    let root_cert = tls.ca.as_ref().map(read).transpose()?;
    redis::Client::build_with_tls(
        url,
        redis::TlsCertificates {
            client_tls,
            root_cert,
        },
    )
}

/// A cloneable handle on Redis (one server or a cluster).
#[derive(Clone)]
pub struct RedisConn {
    inner: Backend,
    /// Longest a call may take before it fails with [`QueueError::Timeout`].
    call_timeout: Duration,
}

#[derive(Clone)]
enum Backend {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Backend::Single(_) => "single",
            Backend::Cluster(_) => "cluster",
        };
        f.debug_struct("RedisConn")
            .field("kind", &kind)
            .field("call_timeout", &self.call_timeout)
            .finish()
    }
}

impl RedisConn {
    /// Connects and checks the server answers. `call_timeout` bounds every later call (blocking
    /// reads need a timeout longer than the time they block).
    pub async fn connect(
        url: &str,
        call_timeout: Duration,
        tls: &RedisTls,
    ) -> Result<RedisConn, QueueError> {
        let bad_url = |e: redis::RedisError| QueueError::BadUrl(format!("{url}: {e}"));
        let inner = if let Some(nodes) = url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = nodes
                .trim_end_matches('/')
                .split(',')
                .map(|node| format!("redis://{node}"))
                .collect();
            let client = ClusterClient::builder(nodes)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(call_timeout)
                .build()
                .map_err(bad_url)?;
            let connection = with_timeout(call_timeout, client.get_async_connection()).await?;
            Backend::Cluster(connection)
        } else {
            let client = client(url, tls).map_err(bad_url)?;
            let config = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(Duration::from_secs(5)))
                .set_response_timeout(Some(call_timeout))
                .set_min_delay(Duration::from_millis(50))
                .set_max_delay(Duration::from_secs(2))
                .set_number_of_retries(4);
            let manager = with_timeout(
                call_timeout,
                ConnectionManager::new_with_config(client, config),
            )
            .await?;
            Backend::Single(manager)
        };
        let conn = RedisConn {
            inner,
            call_timeout,
        };
        let _: String = conn.query(&redis::cmd("PING")).await?;
        Ok(conn)
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueueError> {
        let mut conn = self.clone();
        with_timeout(self.call_timeout, cmd.query_async(&mut conn)).await
    }

    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, QueueError> {
        let mut conn = self.clone();
        with_timeout(self.call_timeout, pipe.query_async(&mut conn)).await
    }

    /// Runs a script (EVALSHA, loading it when the server does not know it yet).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let mut conn = self.clone();
        with_timeout(self.call_timeout, invocation.invoke_async(&mut conn)).await
    }
}

async fn with_timeout<T>(
    limit: Duration,
    call: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, QueueError> {
    match tokio::time::timeout(limit, call).await {
        Ok(result) => result.map_err(QueueError::from),
        Err(_) => Err(QueueError::Timeout(limit)),
    }
}

impl ConnectionLike for RedisConn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match &mut self.inner {
            Backend::Single(c) => c.req_packed_command(cmd),
            Backend::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match &mut self.inner {
            Backend::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Backend::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match &self.inner {
            Backend::Single(c) => c.get_db(),
            Backend::Cluster(c) => c.get_db(),
        }
    }
}
