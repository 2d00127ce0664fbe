//! Webhooks: when a job with `webhook.url` ends, its final record is POSTed there, signed with
//! HMAC-SHA256 of the body (`X-Imagepipe-Signature: sha256=HEX`), retried with backoff. Delivery
//! runs in its own task in every worker, reading a stream of finished jobs through a consumer
//! group, so it never holds up image work.
//!
//! Server-side request forgery is refused: a URL whose host is, or resolves to, a loopback,
//! private, link-local, unspecified, shared, multicast or cloud-metadata address (IPv4 or IPv6,
//! mapped and embedded forms included) is not called, on the first hop or any redirect, unless
//! `allow_private` is set or the host is one the operator listed as trusted
//! (`--webhook-allow-hosts`). The address checked is the address connected to (the resolver
//! filters), so DNS rebinding cannot slip past the check.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use redis::Value;
use sha2::Sha256;
use tokio::sync::watch;

use crate::queue::{Queue, QueueError};
use crate::view::JobView;

/// The consumer group webhook dispatchers read through.
pub const GROUP: &str = "webhooks";
/// Deliveries before giving up (backoff 2 s, 4 s, ... about 8.5 minutes in all).
pub const MAX_ATTEMPTS: u32 = 9;

/// Whether connecting to `ip` could reach something private to the deployment.
pub fn is_forbidden(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_forbidden_v4(v4),
        IpAddr::V6(v6) => {
            if let Some(v4) = v6.to_ipv4_mapped() {
                return is_forbidden_v4(v4);
            }
            let s = v6.segments();
            // IPv4-compatible (::a.b.c.d), NAT64 (64:ff9b::/96) and 6to4 (2002::/16) carry an
            // IPv4 address that may be private; Teredo (2001::/32) hides one obfuscated.
            let embedded = if s[..6] == [0; 6] || s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
                Some(Ipv4Addr::new(
                    (s[6] >> 8) as u8,
                    s[6] as u8,
                    (s[7] >> 8) as u8,
                    s[7] as u8,
                ))
            } else if s[0] == 0x2002 {
                Some(Ipv4Addr::new(
                    (s[1] >> 8) as u8,
                    s[1] as u8,
                    (s[2] >> 8) as u8,
                    s[2] as u8,
                ))
            } else {
                None
            };
            if embedded.is_some_and(is_forbidden_v4) {
                return true;
            }
            v6.is_loopback()
                || v6.is_unspecified()
                || v6.is_multicast()
                || (s[0] & 0xfe00) == 0xfc00 // unique local (incl. AWS fd00:ec2::254)
                || (s[0] & 0xffc0) == 0xfe80 // link-local
                || (s[0] & 0xffc0) == 0xfec0 // site-local (deprecated)
                || (s[0] == 0x2001 && s[1] == 0) // Teredo
                || (s[0] == 0x2001 && s[1] == 0xdb8) // documentation
        }
    }
}

fn is_forbidden_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local() // 169.254/16: AWS, GCP and Azure metadata
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (b & 0xc0) == 64) // 100.64/10 shared (Alibaba metadata 100.100.100.200)
        || (a == 192 && b == 0 && c == 0) // 192.0.0/24 protocol assignments (Oracle metadata)
        || (a == 198 && (b & 0xfe) == 18) // benchmarking
        || a >= 240 // reserved
}

/// Which webhook targets may be called.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    /// Any address at all (`IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE=1`).
    pub allow_private: bool,
    /// `host` or `host:port` entries called even when private: a deployment's own receivers.
    pub allow_hosts: Arc<[String]>,
}

impl TargetPolicy {
    pub fn from_args(args: &WebhookArgs) -> TargetPolicy {
        TargetPolicy {
            allow_private: args.webhook_allow_private,
            allow_hosts: args
                .webhook_allow_hosts
                .iter()
                .map(|h| h.trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// Whether `host` (as a URL spells it, IPv6 in brackets) on `port` is listed as trusted.
    fn trusts(&self, host: &str, port: Option<u16>) -> bool {
        let host = host.to_ascii_lowercase();
        self.allow_hosts.iter().any(|entry| {
            *entry == host || port.is_some_and(|port| *entry == format!("{host}:{port}"))
        })
    }

    /// Why a webhook URL is refused before any request (and before following a redirect).
    pub fn check(&self, url: &str) -> Result<(), String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("not a URL: {e}"))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err("only http and https URLs".into());
        }
        let Some(host) = parsed.host_str() else {
            return Err("no host".into());
        };
        if self.allow_private || self.trusts(host, parsed.port_or_known_default()) {
            return Ok(());
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            // Names are checked by the resolver, at connection time.
            _ => return Ok(()),
        };
        if is_forbidden(ip) {
            return Err(format!(
                "{ip} is a private, loopback, link-local or metadata address (set \
                 IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE=1 or list it in IMAGEPIPE_WEBHOOK_ALLOW_HOSTS)"
            ));
        }
        Ok(())
    }
}

/// Resolves names and refuses any whose addresses include a forbidden one, unless the name is
/// a trusted host (its port is checked by [`TargetPolicy::check`] before every hop).
struct GuardedResolver {
    policy: TargetPolicy,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        let trusted = self.policy.allow_hosts.iter().any(|entry| {
            let entry_host = entry.rsplit_once(':').map_or(entry.as_str(), |(h, _)| h);
            entry.eq_ignore_ascii_case(&host) || entry_host.eq_ignore_ascii_case(&host)
        });
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            if !trusted {
                if let Some(bad) = addrs.iter().find(|a| is_forbidden(a.ip())) {
                    let refusal: Box<dyn std::error::Error + Send + Sync> = format!(
                        "{host} resolves to {}, a private or metadata address",
                        bad.ip()
                    )
                    .into();
                    return Err(refusal);
                }
            }
            let addrs: reqwest::dns::Addrs = Box::new(addrs.into_iter());
            Ok(addrs)
        })
    }
}

/// An HTTP client for webhooks: guarded resolver (unless private targets are allowed), every
/// redirect re-checked, short timeouts.
pub fn client(policy: &TargetPolicy) -> reqwest::Client {
    let redirect_policy = policy.clone();
    let mut builder = reqwest::Client::builder()
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(10))
        .user_agent(concat!("imagepipe-webhooks/", env!("CARGO_PKG_VERSION")))
        .redirect(reqwest::redirect::Policy::custom(move |attempt| {
            if attempt.previous().len() >= 5 {
                return attempt.error("too many redirects");
            }
            match redirect_policy.check(attempt.url().as_str()) {
                Ok(()) => attempt.follow(),
                Err(why) => attempt.error(format!("redirect refused: {why}")),
            }
        }));
    if !policy.allow_private {
        builder = builder.dns_resolver(Arc::new(GuardedResolver {
            policy: policy.clone(),
        }));
    }
    builder.build().expect("webhook client")
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    format!(
        "sha256={}",
        digest
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    )
}

/// How one delivery went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delivery {
    Delivered(u16),
    /// Worth another try (timeouts, 5xx, 429, connection errors).
    Transient(String),
    /// Never worth another try (refused URL, 4xx).
    Permanent(String),
}

/// POSTs `body` to `url`.
pub async fn deliver(
    client: &reqwest::Client,
    url: &str,
    body: Vec<u8>,
    secret: Option<&[u8]>,
    policy: &TargetPolicy,
) -> Delivery {
    if let Err(why) = policy.check(url) {
        return Delivery::Permanent(why);
    }
    let mut request = client.post(url).header("content-type", "application/json");
    if let Some(secret) = secret {
        request = request.header("x-imagepipe-signature", signature(secret, &body));
    }
    match request.body(body).send().await {
        Ok(response) => {
            let status = response.status();
            if status.is_success() {
                Delivery::Delivered(status.as_u16())
            } else if status.is_server_error() || status.as_u16() == 429 || status.as_u16() == 408 {
                Delivery::Transient(format!("HTTP {status}"))
            } else {
                Delivery::Permanent(format!("HTTP {status}"))
            }
        }
        Err(e) => {
            let text = error_chain(&e);
            if text.contains("private or metadata address") || text.contains("redirect refused") {
                Delivery::Permanent(text)
            } else {
                Delivery::Transient(text)
            }
        }
    }
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(": ");
        text.push_str(&e.to_string());
        source = e.source();
    }
    text
}

/// Settings of a dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherSettings {
    /// Signs bodies when set (`IMAGEPIPE_WEBHOOK_SECRET`).
    pub secret: Option<Vec<u8>>,
    /// Which targets may be called.
    pub policy: TargetPolicy,
    /// The public origin output URLs in payloads start with (empty: relative URLs).
    pub public_url: String,
    /// First retry delay; doubles per attempt.
    pub retry_base: Duration,
}

/// The webhook flags both binaries take.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct WebhookArgs {
    /// Signs webhook bodies: `X-Imagepipe-Signature: sha256=HMAC-SHA256(body)`.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_SECRET", hide_env_values = true)]
    pub webhook_secret: Option<String>,
    /// Allow webhooks to loopback, private, link-local and metadata addresses.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE", value_parser = clap::builder::BoolishValueParser::new(), default_value_t = false)]
    pub webhook_allow_private: bool,
    /// Webhook hosts (`host` or `host:port`, comma-separated) called even when they are
    /// private: a deployment's own receivers.
    #[arg(long, env = "IMAGEPIPE_WEBHOOK_ALLOW_HOSTS", value_delimiter = ',')]
    pub webhook_allow_hosts: Vec<String>,
    /// The public origin of the gateway (`https://img.example.com`): output URLs in webhook
    /// payloads start with it. Unset: relative URLs.
    #[arg(long, env = "IMAGEPIPE_PUBLIC_URL")]
    pub public_url: Option<String>,
}

impl DispatcherSettings {
    pub fn from_args(args: &WebhookArgs) -> DispatcherSettings {
        DispatcherSettings {
            secret: args
                .webhook_secret
                .clone()
                .filter(|s| !s.is_empty())
                .map(String::into_bytes),
            policy: TargetPolicy::from_args(args),
            public_url: args
                .public_url
                .clone()
                .unwrap_or_default()
                .trim_end_matches('/')
                .to_owned(),
            retry_base: Duration::from_secs(2),
        }
    }
}

/// Delivers webhooks of finished jobs until `stop` turns true. `redis_url` gives it a
/// connection of its own for its blocking reads.
pub async fn run_dispatcher(
    queue: Queue,
    redis_url: String,
    consumer: String,
    settings: DispatcherSettings,
    mut stop: watch::Receiver<bool>,
) {
    let client = client(&settings.policy);
    let blocking = loop {
        match crate::queue::RedisConn::connect(&redis_url, Duration::from_secs(3)).await {
            Ok(conn) => break conn,
            Err(e) => {
                tracing::warn!(error = %e, "webhook dispatcher cannot reach Redis yet");
                tokio::select! {
                    () = tokio::time::sleep(Duration::from_secs(2)) => {}
                    _ = stop.changed() => return,
                }
            }
        }
    };
    let stream = queue.keys().webhooks();
    let delayed = queue.keys().webhooks_delayed();
    let _: Result<(), QueueError> = queue
        .redis()
        .query(
            redis::cmd("XGROUP")
                .arg("CREATE")
                .arg(&stream)
                .arg(GROUP)
                .arg("0")
                .arg("MKSTREAM"),
        )
        .await;
    let mut last_reclaim = std::time::Instant::now();
    while !*stop.borrow() {
        let _ = promote(&queue, &stream, &delayed).await;
        let mut entries = Vec::new();
        if last_reclaim.elapsed() > Duration::from_secs(30) {
            last_reclaim = std::time::Instant::now();
            // Deliveries a dead dispatcher held for over a minute.
            let reply: Result<Value, _> = queue
                .redis()
                .query(
                    redis::cmd("XAUTOCLAIM")
                        .arg(&stream)
                        .arg(GROUP)
                        .arg(&consumer)
                        .arg(60_000)
                        .arg("0-0")
                        .arg("COUNT")
                        .arg(16),
                )
                .await;
            if let Ok(Value::Array(parts)) = reply {
                if let Some(Value::Array(claimed)) = parts.get(1) {
                    entries.extend(claimed.iter().filter_map(parse_entry));
                }
            }
        }
        let mut read_cmd = redis::cmd("XREADGROUP");
        read_cmd
            .arg("GROUP")
            .arg(GROUP)
            .arg(&consumer)
            .arg("COUNT")
            .arg(16)
            .arg("BLOCK")
            .arg(500)
            .arg("STREAMS")
            .arg(&stream)
            .arg(">");
        let read: Result<Value, _> = tokio::select! {
            read = blocking.query(&read_cmd) => read,
            _ = stop.changed() => break,
        };
        match read {
            Ok(Value::Array(streams)) => {
                for s in streams {
                    if let Value::Array(pair) = s {
                        if let Some(Value::Array(list)) = pair.get(1) {
                            entries.extend(list.iter().filter_map(parse_entry));
                        }
                    }
                }
            }
            Ok(Value::Map(streams)) => {
                for (_, list) in streams {
                    if let Value::Array(list) = list {
                        entries.extend(list.iter().filter_map(parse_entry));
                    }
                }
            }
            Ok(_) => {}
            Err(e) => {
                if e.to_string().to_ascii_lowercase().contains("nogroup") {
                    let _: Result<(), QueueError> = queue
                        .redis()
                        .query(
                            redis::cmd("XGROUP")
                                .arg("CREATE")
                                .arg(&stream)
                                .arg(GROUP)
                                .arg("0")
                                .arg("MKSTREAM"),
                        )
                        .await;
                }
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
        }
        let deliveries = entries.into_iter().map(|(entry, job_id, attempt)| {
            let (queue, client, settings, stream, delayed) = (
                queue.clone(),
                client.clone(),
                settings.clone(),
                stream.clone(),
                delayed.clone(),
            );
            async move {
                deliver_one(
                    &queue, &client, &settings, &stream, &delayed, &entry, &job_id, attempt,
                )
                .await
            }
        });
        futures::future::join_all(deliveries).await;
    }
}

#[allow(clippy::too_many_arguments)]
async fn deliver_one(
    queue: &Queue,
    client: &reqwest::Client,
    settings: &DispatcherSettings,
    stream: &str,
    delayed: &str,
    entry: &str,
    job_id: &str,
    attempt: u32,
) {
    let record = match queue.get(job_id).await {
        Ok(Some(record)) => record,
        Ok(None) => {
            let _: Result<i64, _> = queue
                .redis()
                .query(redis::cmd("XACK").arg(stream).arg(GROUP).arg(entry))
                .await;
            return;
        }
        Err(_) => return, // Redis trouble: the entry stays pending and is retried later
    };
    let Some(webhook) = &record.spec.webhook else {
        let _: Result<i64, _> = queue
            .redis()
            .query(redis::cmd("XACK").arg(stream).arg(GROUP).arg(entry))
            .await;
        return;
    };
    let body =
        serde_json::to_vec(&JobView::new(&record, &settings.public_url)).expect("view serializes");
    let outcome = deliver(
        client,
        &webhook.url,
        body,
        settings.secret.as_deref(),
        &settings.policy,
    )
    .await;
    let job_key = queue.keys().job(job_id);
    let mut pipe = redis::pipe();
    pipe.atomic();
    let status = match &outcome {
        Delivery::Delivered(code) => format!("delivered (HTTP {code}, attempt {attempt})"),
        Delivery::Permanent(why) => format!("refused: {why}"),
        Delivery::Transient(why) if attempt >= MAX_ATTEMPTS => {
            format!("failed after {attempt} attempts: {why}")
        }
        Delivery::Transient(why) => {
            let delay = settings
                .retry_base
                .saturating_mul(1 << (attempt - 1).min(16));
            let due = crate::job::now_ms() + delay.as_millis() as u64;
            pipe.cmd("ZADD")
                .arg(delayed)
                .arg(due)
                .arg(format!("{}:{job_id}", attempt + 1))
                .ignore();
            format!("retrying (attempt {attempt} failed: {why})")
        }
    };
    tracing::info!(job_id, attempt, status = %status, "webhook");
    pipe.cmd("HSET")
        .arg(&job_key)
        .arg("webhook")
        .arg(&status)
        .ignore();
    pipe.cmd("XACK").arg(stream).arg(GROUP).arg(entry).ignore();
    pipe.cmd("XDEL").arg(stream).arg(entry).ignore();
    let _: Result<(), _> = queue.redis().pipeline(&pipe).await;
}

/// Moves due retries back onto the webhook stream.
async fn promote(queue: &Queue, stream: &str, delayed: &str) -> Result<(), QueueError> {
    static PROMOTE: std::sync::LazyLock<redis::Script> = std::sync::LazyLock::new(|| {
        redis::Script::new(
            r#"
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local due = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'LIMIT', 0, 100)
for _, member in ipairs(due) do
  local sep = string.find(member, ':', 1, true)
  redis.call('XADD', KEYS[2], '*', 'id', string.sub(member, sep + 1), 'attempt', string.sub(member, 1, sep - 1))
  redis.call('ZREM', KEYS[1], member)
end
return #due
"#,
        )
    });
    let mut invocation = PROMOTE.prepare_invoke();
    invocation.key(delayed).key(stream);
    let _: i64 = queue.redis().script(&invocation).await?;
    Ok(())
}

/// `[entry id, [id, JOB, attempt, N]]` → (entry, job, attempt).
fn parse_entry(entry: &Value) -> Option<(String, String, u32)> {
    let Value::Array(parts) = entry else {
        return None;
    };
    let text = |v: &Value| match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    };
    let entry_id = text(parts.first()?)?;
    let Some(Value::Array(fields)) = parts.get(1) else {
        return None;
    };
    let mut job = None;
    let mut attempt = 1;
    for kv in fields.chunks_exact(2) {
        match text(&kv[0]).as_deref() {
            Some("id") => job = text(&kv[1]),
            Some("attempt") => attempt = text(&kv[1]).and_then(|a| a.parse().ok()).unwrap_or(1),
            _ => {}
        }
    }
    Some((entry_id, job?, attempt))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_and_metadata_addresses_are_forbidden() {
        for bad in [
            "127.0.0.1",
            "127.8.9.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.100.100.200",
            "192.0.0.192",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd00:ec2::254",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::127.0.0.1",
            "64:ff9b::a00:1",
            "2002:7f00:1::",
            "2001:0:4136:e378:8000:63bf:3fff:fdd2",
        ] {
            assert!(is_forbidden(bad.parse().unwrap()), "{bad}");
        }
        for good in [
            "93.184.216.34",
            "8.8.8.8",
            "2606:4700:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_forbidden(good.parse().unwrap()), "{good}");
        }
    }

    #[test]
    fn urls_with_forbidden_literals_are_refused_unless_allowed() {
        let strict = TargetPolicy::default();
        assert!(strict.check("http://127.0.0.1:8080/hook").is_err());
        assert!(strict.check("http://[::ffff:10.0.0.1]/hook").is_err());
        assert!(strict
            .check("http://169.254.169.254/latest/meta-data")
            .is_err());
        assert!(strict.check("ftp://example.com/x").is_err());
        assert!(strict.check("https://example.com/hook").is_ok());
        let open = TargetPolicy {
            allow_private: true,
            ..TargetPolicy::default()
        };
        assert!(open.check("http://127.0.0.1:8080/hook").is_ok());
        let listed = TargetPolicy {
            allow_private: false,
            allow_hosts: vec!["127.0.0.1:8080".to_owned(), "hooks.internal".to_owned()].into(),
        };
        assert!(listed.check("http://127.0.0.1:8080/hook").is_ok());
        assert!(listed.check("http://127.0.0.1:8081/hook").is_err());
        assert!(listed.check("http://HOOKS.internal:9000/x").is_ok());
        assert!(listed.check("http://10.0.0.1:8080/hook").is_err());
    }

    #[test]
    fn signatures_are_hmac_sha256_hex() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
