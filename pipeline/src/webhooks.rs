//! Webhook rules every process shares: which targets may be called, and how bodies are signed.
//! Delivery itself (the HTTP client and the dispatcher) lives in the worker.
//!
//! Server-side request forgery is refused: a URL whose host is, or resolves to, a loopback,
//! private, link-local, unspecified, shared, multicast or cloud-metadata address (IPv4 or IPv6,
//! mapped and embedded forms included) is not called, on the first hop or any redirect, unless
//! `allow_private` is set or the host is one the operator listed as trusted
//! (`--webhook-allow-hosts`). The worker checks the address it connects to (its resolver
//! filters through [`TargetPolicy::check_resolved`]), so DNS rebinding cannot slip past.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

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

/// Why a webhook target is not called.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("not a URL: {0}")]
    NotAUrl(String),
    #[error("only http and https URLs")]
    Scheme,
    #[error("no host")]
    NoHost,
    #[error(
        "{0} is a private, loopback, link-local or metadata address (set \
         IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE=1 or list it in IMAGEPIPE_WEBHOOK_ALLOW_HOSTS)"
    )]
    PrivateAddress(IpAddr),
    #[error("{host} resolves to {ip}, a private or metadata address")]
    ResolvesToPrivate { host: String, ip: IpAddr },
}

/// Which webhook targets may be called.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TargetPolicy {
    /// Any address at all (`IMAGEPIPE_WEBHOOK_ALLOW_PRIVATE=1`).
    pub allow_private: bool,
    /// `host` or `host:port` entries called even when private: a deployment's own receivers.
    pub allow_hosts: Arc<[String]>,
}

impl TargetPolicy {
    /// A policy from the settings (host entries are trimmed and lowercased; empty ones go).
    pub fn new(allow_private: bool, allow_hosts: &[String]) -> TargetPolicy {
        TargetPolicy {
            allow_private,
            allow_hosts: allow_hosts
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

    /// Whether a host name is listed, on any port (names are resolved before the port is
    /// known; [`TargetPolicy::check`] has checked the port of every hop).
    fn trusts_name(&self, host: &str) -> bool {
        self.allow_hosts.iter().any(|entry| {
            let entry_host = entry.rsplit_once(':').map_or(entry.as_str(), |(h, _)| h);
            entry.eq_ignore_ascii_case(host) || entry_host.eq_ignore_ascii_case(host)
        })
    }

    /// Why a webhook URL is refused before any request (and before following a redirect).
    /// Host names pass here: their addresses are checked when they are resolved.
    pub fn check(&self, url: &str) -> Result<(), Refusal> {
        let parsed = url::Url::parse(url).map_err(|e| Refusal::NotAUrl(e.to_string()))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Refusal::Scheme);
        }
        let Some(host) = parsed.host_str() else {
            return Err(Refusal::NoHost);
        };
        if self.allow_private || self.trusts(host, parsed.port_or_known_default()) {
            return Ok(());
        }
        let ip = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip),
            Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip),
            _ => return Ok(()),
        };
        if is_forbidden(ip) {
            return Err(Refusal::PrivateAddress(ip));
        }
        Ok(())
    }

    /// Whether the addresses `host` resolved to may be connected to.
    pub fn check_resolved(&self, host: &str, addrs: &[SocketAddr]) -> Result<(), Refusal> {
        if self.allow_private || self.trusts_name(host) {
            return Ok(());
        }
        match addrs.iter().find(|a| is_forbidden(a.ip())) {
            Some(bad) => Err(Refusal::ResolvesToPrivate {
                host: host.to_owned(),
                ip: bad.ip(),
            }),
            None => Ok(()),
        }
    }
}

/// `sha256=` and the hex HMAC-SHA256 of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
    mac.update(body);
    format!("sha256={}", crate::text::hex(&mac.finalize().into_bytes()))
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
    fn resolved_addresses_are_checked_unless_the_name_is_trusted() {
        let loopback: Vec<SocketAddr> = vec!["127.0.0.1:0".parse().unwrap()];
        let public: Vec<SocketAddr> = vec!["93.184.216.34:0".parse().unwrap()];
        let strict = TargetPolicy::default();
        assert!(matches!(
            strict.check_resolved("evil.example", &loopback),
            Err(Refusal::ResolvesToPrivate { .. })
        ));
        assert!(strict.check_resolved("example.com", &public).is_ok());
        let listed = TargetPolicy::new(false, &["hooks.internal:9000".to_owned()]);
        assert!(listed.check_resolved("HOOKS.internal", &loopback).is_ok());
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
