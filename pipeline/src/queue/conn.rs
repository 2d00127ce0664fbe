//! Connections to Redis that survive restarts and failovers: every call has a timeout, and a
//! lost connection is re-established with backoff on the next call instead of failing the
//! process.
//!
//! URLs: `redis://[:password@]host:port/db` (and `rediss://`) for one server;
//! `redis+sentinel://[user:password@]host:port,…/MASTER[/DB]` for a primary Sentinel names (asked
//! again whenever a call fails, so a failover is followed); `redis+cluster://host:port,…` (and
//! `rediss+…`) for Redis Cluster (every queue key carries the queue's hash tag, so multi-key
//! scripts stay on one slot).

use std::future::Future;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, RoutingInfo, SingleNodeRoutingInfo, SlotAddr};
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
    redis::Client::build_with_tls(url, certificates(tls)?)
}

/// The TLS files, read now (so a renewed certificate is used by the next connection).
fn certificates(tls: &RedisTls) -> redis::RedisResult<redis::TlsCertificates> {
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
    Ok(redis::TlsCertificates {
        client_tls,
        root_cert,
    })
}

/// A cloneable handle on Redis (one server, a Sentinel-managed primary, or a cluster).
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
    Sentinel(Arc<SentinelPrimary>),
}

/// One connection to talk over: what a call uses for its whole length.
#[derive(Clone)]
enum Handle {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl std::fmt::Debug for RedisConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.inner {
            Backend::Single(_) => "single",
            Backend::Cluster(_) => "cluster",
            Backend::Sentinel(_) => "sentinel",
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
        let inner = if let Some(sentinels) = SentinelUrl::parse(url) {
            let sentinels = sentinels.map_err(|e| QueueError::BadUrl(format!("{url}: {e}")))?;
            Backend::Sentinel(Arc::new(
                SentinelPrimary::connect(sentinels, tls.clone(), call_timeout).await?,
            ))
        } else if let Some(nodes) = cluster_nodes(url) {
            let mut builder = ClusterClient::builder(nodes)
                .connection_timeout(Duration::from_secs(5))
                .response_timeout(call_timeout);
            if url.starts_with("rediss+cluster://") {
                builder = builder.certs(certificates(tls).map_err(bad_url)?);
            }
            let client = builder.build().map_err(bad_url)?;
            let connection = with_timeout(call_timeout, client.get_async_connection()).await?;
            Backend::Cluster(connection)
        } else {
            Backend::Single(manager(url, tls, call_timeout).await?)
        };
        let conn = RedisConn {
            inner,
            call_timeout,
        };
        let _: String = conn.query(&redis::cmd("PING")).await?;
        Ok(conn)
    }

    /// The connection a call goes over now (a Sentinel-managed primary's changes on failover).
    fn handle(&self) -> Handle {
        match &self.inner {
            Backend::Single(c) => Handle::Single(c.clone()),
            Backend::Cluster(c) => Handle::Cluster(c.clone()),
            Backend::Sentinel(s) => Handle::Single(s.manager()),
        }
    }

    /// After a failed call: with Sentinel, a connection error or a READONLY answer may mean the
    /// primary moved, so ask the sentinels where it is now.
    async fn after<T>(&self, result: Result<T, QueueError>) -> Result<T, QueueError> {
        if let (Backend::Sentinel(sentinel), Err(e)) = (&self.inner, &result) {
            if e.is_unavailable() {
                sentinel.rediscover().await;
            }
        }
        result
    }

    pub async fn query<T: FromRedisValue>(&self, cmd: &Cmd) -> Result<T, QueueError> {
        let mut conn = self.handle();
        let result = with_timeout(self.call_timeout, cmd.query_async(&mut conn)).await;
        self.after(result).await
    }

    pub async fn pipeline<T: FromRedisValue>(&self, pipe: &Pipeline) -> Result<T, QueueError> {
        let mut conn = self.handle();
        let result = with_timeout(self.call_timeout, pipe.query_async(&mut conn)).await;
        self.after(result).await
    }

    /// Loads a script into the server's script cache.
    pub async fn load_script(&self, script: &redis::Script) -> Result<(), QueueError> {
        let mut conn = self.handle();
        let load = script.prepare_invoke();
        let result = with_timeout(self.call_timeout, load.load_async(&mut conn)).await;
        self.after(result.map(drop)).await
    }

    /// Redis `WAIT`: succeeds once `replicas` replicas hold this connection's writes so far,
    /// else [`QueueError::NotReplicated`] after `limit`. On a cluster it goes to the primary of
    /// `route_key`'s slot (where the queue's writes went), over the same connection as those
    /// writes. With Sentinel it waits for every replica the sentinels call healthy (at least
    /// `replicas`): while a promoted replica has left the old primary, another replica may still
    /// confirm writes there that the failover then discards; all of them never can.
    pub async fn wait(
        &self,
        route_key: &str,
        replicas: u32,
        limit: Duration,
    ) -> Result<(), QueueError> {
        let wanted = match &self.inner {
            Backend::Sentinel(sentinel) => replicas.max(sentinel.healthy_replicas()),
            _ => replicas,
        };
        let mut cmd = redis::cmd("WAIT");
        let bound = limit + self.call_timeout;
        cmd.arg(wanted).arg(limit.as_millis() as u64);
        let acked: Result<i64, QueueError> = match self.handle() {
            Handle::Single(mut c) => with_timeout(bound, cmd.query_async(&mut c)).await,
            Handle::Cluster(mut c) => {
                let route = Route::with_key(route_key, SlotAddr::Master);
                let routing = RoutingInfo::SingleNode(SingleNodeRoutingInfo::SpecificNode(route));
                match with_timeout(bound, c.route_command(cmd, routing)).await {
                    Ok(reply) => redis::from_redis_value(reply)
                        .map_err(|e| QueueError::Refused(format!("WAIT answered oddly: {e}"))),
                    Err(e) => Err(e),
                }
            }
        };
        let acked = u32::try_from(self.after(acked).await?).unwrap_or(0);
        if acked < wanted {
            return self
                .after(Err(QueueError::NotReplicated { acked, wanted }))
                .await;
        }
        Ok(())
    }

    /// Runs a script (EVALSHA, loading it when the server does not know it yet).
    pub async fn script<T: FromRedisValue>(
        &self,
        invocation: &ScriptInvocation<'_>,
    ) -> Result<T, QueueError> {
        let mut conn = self.handle();
        let result = with_timeout(self.call_timeout, invocation.invoke_async(&mut conn)).await;
        self.after(result).await
    }
}

/// A connection manager for one server (it reconnects by itself, with backoff).
async fn manager(
    url: &str,
    tls: &RedisTls,
    call_timeout: Duration,
) -> Result<ConnectionManager, QueueError> {
    let client = client(url, tls).map_err(|e| QueueError::BadUrl(format!("{url}: {e}")))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(5)))
        .set_response_timeout(Some(call_timeout))
        .set_min_delay(Duration::from_millis(50))
        .set_max_delay(Duration::from_secs(2))
        .set_number_of_retries(4);
    with_timeout(
        call_timeout,
        ConnectionManager::new_with_config(client, config),
    )
    .await
}

/// The node URLs of `redis+cluster://a:p,b:p` (`rediss://` nodes for `rediss+cluster://`).
pub(crate) fn cluster_nodes(url: &str) -> Option<Vec<String>> {
    let (scheme, nodes) = if let Some(nodes) = url.strip_prefix("redis+cluster://") {
        ("redis", nodes)
    } else {
        ("rediss", url.strip_prefix("rediss+cluster://")?)
    };
    Some(
        nodes
            .trim_end_matches('/')
            .split(',')
            .map(|node| format!("{scheme}://{node}"))
            .collect(),
    )
}

/// Where a subscriber connects for its `attempt`-th try: the primary Sentinel names now; on a
/// cluster, each seed node in turn (published messages reach every node, and a dead node must
/// not hold a subscriber up); otherwise the URL itself.
pub(crate) async fn subscriber_url(
    url: &str,
    tls: &RedisTls,
    attempt: usize,
) -> redis::RedisResult<String> {
    if let Some(sentinels) = SentinelUrl::parse(url) {
        let sentinels = sentinels.map_err(|e| {
            redis::RedisError::from((redis::ErrorKind::InvalidClientConfig, "bad url", e))
        })?;
        return sentinels.discover(tls).await;
    }
    if let Some(nodes) = cluster_nodes(url) {
        return Ok(nodes[attempt % nodes.len()].clone());
    }
    Ok(url.to_owned())
}

/// The primary a set of sentinels names, re-asked when calls fail (a failover).
struct SentinelPrimary {
    sentinels: SentinelUrl,
    tls: RedisTls,
    call_timeout: Duration,
    /// The primary's URL and a connection to it.
    current: std::sync::RwLock<(String, ConnectionManager)>,
    /// When the sentinels were last asked (asked at most every 250 ms).
    asked: tokio::sync::Mutex<Instant>,
    /// How many replicas the sentinels last called healthy, and when they were asked.
    replicas: std::sync::Mutex<(u32, Instant)>,
    /// A recount is under way (one at a time, off the callers' path).
    counting: std::sync::atomic::AtomicBool,
}

impl SentinelPrimary {
    async fn connect(
        sentinels: SentinelUrl,
        tls: RedisTls,
        call_timeout: Duration,
    ) -> Result<SentinelPrimary, QueueError> {
        let url = sentinels.discover(&tls).await?;
        let connection = manager(&url, &tls, call_timeout).await?;
        let replicas = sentinels.healthy_replicas(&tls).await.unwrap_or(0);
        Ok(SentinelPrimary {
            sentinels,
            tls,
            call_timeout,
            current: std::sync::RwLock::new((url, connection)),
            asked: tokio::sync::Mutex::new(Instant::now()),
            replicas: std::sync::Mutex::new((replicas, Instant::now())),
            counting: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// The replicas the sentinels last called healthy. A count older than a second is
    /// refreshed by a task of its own, so no caller ever waits on the sentinels (which may be
    /// slow or down); the last count stands meanwhile.
    fn healthy_replicas(self: &Arc<Self>) -> u32 {
        use std::sync::atomic::Ordering;
        let (count, at) = *self.replicas.lock().expect("replica count lock");
        let stale = at.elapsed() >= Duration::from_secs(1);
        if stale && !self.counting.swap(true, Ordering::AcqRel) {
            let primary = self.clone();
            tokio::spawn(async move {
                match primary.sentinels.healthy_replicas(&primary.tls).await {
                    Ok(count) => {
                        *primary.replicas.lock().expect("replica count lock") =
                            (count, Instant::now());
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot count the replicas"),
                }
                primary.counting.store(false, Ordering::Release);
            });
        }
        count
    }

    fn manager(&self) -> ConnectionManager {
        self.current.read().expect("sentinel lock").1.clone()
    }

    async fn rediscover(&self) {
        let mut asked = self.asked.lock().await;
        if asked.elapsed() < Duration::from_millis(250) {
            return;
        }
        *asked = Instant::now();
        let url = match self.sentinels.discover(&self.tls).await {
            Ok(url) => url,
            Err(e) => return tracing::warn!(error = %e, "no sentinel names a primary"),
        };
        if self.current.read().expect("sentinel lock").0 == url {
            return;
        }
        match manager(&url, &self.tls, self.call_timeout).await {
            Ok(connection) => {
                tracing::warn!(primary = %redacted(&url), "the Redis primary moved; now using it");
                *self.current.write().expect("sentinel lock") = (url, connection);
            }
            Err(e) => tracing::warn!(error = %e, "cannot connect to the new Redis primary yet"),
        }
    }
}

/// `redis+sentinel://[user:password@]host:port[,host:port…]/MASTER_NAME[/DB]` (and
/// `rediss+sentinel://`, TLS to the sentinels and the data nodes alike).
#[derive(Debug, Clone)]
struct SentinelUrl {
    tls: bool,
    /// `user:password@` for the data nodes, or empty.
    credentials: String,
    sentinels: Vec<String>,
    master: String,
    db: u32,
}

impl SentinelUrl {
    /// `None` when `url` is not a Sentinel URL.
    fn parse(url: &str) -> Option<Result<SentinelUrl, String>> {
        let (tls, rest) = if let Some(rest) = url.strip_prefix("redis+sentinel://") {
            (false, rest)
        } else {
            (true, url.strip_prefix("rediss+sentinel://")?)
        };
        Some((|| {
            let (credentials, rest) = match rest.rsplit_once('@') {
                Some((credentials, rest)) => (format!("{credentials}@"), rest),
                None => (String::new(), rest),
            };
            let mut parts = rest.split('/');
            let hosts = parts.next().unwrap_or_default();
            let master = parts.next().filter(|m| !m.is_empty());
            let master = master.ok_or("the URL names no master (…/MASTER_NAME[/DB])")?;
            let db = match parts.next().filter(|d| !d.is_empty()) {
                Some(db) => db
                    .parse()
                    .map_err(|_| format!("bad database number {db:?}"))?,
                None => 0,
            };
            let sentinels: Vec<String> = hosts
                .split(',')
                .filter(|h| !h.is_empty())
                .map(str::to_owned)
                .collect();
            if sentinels.is_empty() || parts.next().is_some() {
                return Err("expected host:port[,host:port…]/MASTER_NAME[/DB]".to_owned());
            }
            Ok(SentinelUrl {
                tls,
                credentials,
                sentinels,
                master: master.to_owned(),
                db,
            })
        })())
    }

    /// The replicas of the master the first sentinel that answers calls healthy (not down, not
    /// disconnected, their link to the primary up).
    async fn healthy_replicas(&self, tls: &RedisTls) -> redis::RedisResult<u32> {
        let replicas: Vec<Vec<String>> = self
            .ask(
                tls,
                redis::cmd("SENTINEL").arg("replicas").arg(&self.master),
            )
            .await?;
        let healthy = replicas.iter().filter(|fields| {
            let field = |name: &str| {
                fields
                    .chunks_exact(2)
                    .find(|kv| kv[0] == name)
                    .map_or("", |kv| kv[1].as_str())
            };
            // A replica still syncing (an old primary just demoted) holds nothing to wait for.
            field("master-link-status") == "ok"
                && !field("flags")
                    .split(',')
                    .any(|f| matches!(f, "s_down" | "o_down" | "disconnected"))
        });
        Ok(healthy.count() as u32)
    }

    /// `cmd`'s answer from the first sentinel that gives one within 2 s.
    async fn ask<T: FromRedisValue>(&self, tls: &RedisTls, cmd: &Cmd) -> redis::RedisResult<T> {
        let scheme = if self.tls { "rediss" } else { "redis" };
        let mut last = String::new();
        for sentinel in &self.sentinels {
            let asked = async {
                let client = client(&format!("{scheme}://{sentinel}"), tls)?;
                let mut conn = client.get_multiplexed_async_connection().await?;
                cmd.query_async::<T>(&mut conn).await
            };
            match tokio::time::timeout(Duration::from_secs(2), asked).await {
                Ok(Ok(answer)) => return Ok(answer),
                Ok(Err(e)) => last = format!("{sentinel}: {e}"),
                Err(_) => last = format!("{sentinel}: no answer within 2 s"),
            }
        }
        Err(redis::RedisError::from((
            redis::ErrorKind::Io,
            "no sentinel answered",
            last,
        )))
    }

    /// The URL of the primary the first sentinel that answers names.
    async fn discover(&self, tls: &RedisTls) -> redis::RedisResult<String> {
        let mut cmd = redis::cmd("SENTINEL");
        cmd.arg("get-master-addr-by-name").arg(&self.master);
        let Some((host, port)) = self.ask::<Option<(String, u16)>>(tls, &cmd).await? else {
            return Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "the sentinels know no such master",
                self.master.clone(),
            )));
        };
        let scheme = if self.tls { "rediss" } else { "redis" };
        let host = if host.contains(':') {
            format!("[{host}]")
        } else {
            host
        };
        let (credentials, db) = (&self.credentials, self.db);
        Ok(format!("{scheme}://{credentials}{host}:{port}/{db}"))
    }
}

/// A URL without its password, for logs.
fn redacted(url: &str) -> String {
    match (url.split_once("://"), url.rsplit_once('@')) {
        (Some((scheme, _)), Some((_, host))) => format!("{scheme}://…@{host}"),
        _ => url.to_owned(),
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

impl ConnectionLike for Handle {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Handle::Single(c) => c.req_packed_command(cmd),
            Handle::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Handle::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Handle::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Handle::Single(c) => c.get_db(),
            Handle::Cluster(c) => c.get_db(),
        }
    }
}
