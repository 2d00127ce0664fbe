//! Signed output URLs (API.md § Delivery to browsers): an output URL that carries `exp` (Unix
//! seconds) and `sig` (lowercase hex HMAC-SHA256 over the path and every other query
//! parameter) works without an API key until `exp`, so `<img>`, `<video poster>` and `<track>`
//! can load outputs that otherwise need a Bearer header.

use std::time::Duration;

use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// Why a signed URL is refused (every case is a 401 to the client).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the URL is not signed (exp and sig are needed)")]
    Missing,
    #[error("the URL's exp or sig is malformed")]
    Malformed,
    #[error("the signed URL has expired")]
    Expired,
    #[error("the URL's signature does not match")]
    Mismatch,
}

/// Signs and checks URLs with one key.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlSigner {
    key: Vec<u8>,
    ttl: Duration,
}

impl std::fmt::Debug for UrlSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key.
        f.debug_struct("UrlSigner").field("ttl", &self.ttl).finish()
    }
}

impl UrlSigner {
    /// `None` for an empty key: signing is off.
    pub fn new(key: &str, ttl: Duration) -> Option<UrlSigner> {
        (!key.is_empty()).then(|| UrlSigner {
            key: key.as_bytes().to_vec(),
            ttl: ttl.max(Duration::from_secs(1)),
        })
    }

    /// When a URL signed at `now` (Unix seconds) expires: `ttl` later, rounded up to a step of
    /// an eighth of the TTL (at most an hour), so one output keeps one URL for a while and
    /// browsers and CDNs can cache it.
    pub fn expiry(&self, now: u64) -> u64 {
        let step = (self.ttl.as_secs() / 8).clamp(1, 3600);
        (now + self.ttl.as_secs()).div_ceil(step) * step
    }

    /// `path_and_query` (`/v1/jobs/J/outputs/thumb` or `…?frame=2`) with `exp` and `sig`
    /// appended.
    pub fn sign(&self, path_and_query: &str, now: u64) -> String {
        let separator = if path_and_query.contains('?') {
            '&'
        } else {
            '?'
        };
        let unsigned = format!("{path_and_query}{separator}exp={}", self.expiry(now));
        let sig = crate::text::hex(&self.mac(&unsigned).finalize().into_bytes());
        format!("{unsigned}&sig={sig}")
    }

    /// Checks a request's `path` and raw `query` at `now` (Unix seconds). The signed message
    /// is the path and the query without `sig`, parameters in the order given.
    pub fn verify(&self, path: &str, query: &str, now: u64) -> Result<(), SignatureError> {
        let mut sig = None;
        let mut exp = None;
        let mut rest = Vec::new();
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            if let Some(value) = pair.strip_prefix("sig=") {
                if sig.replace(value).is_some() {
                    return Err(SignatureError::Malformed);
                }
                continue;
            }
            if let Some(value) = pair.strip_prefix("exp=") {
                if exp.replace(value).is_some() {
                    return Err(SignatureError::Malformed);
                }
            }
            rest.push(pair);
        }
        let (Some(sig), Some(exp)) = (sig, exp) else {
            return Err(SignatureError::Missing);
        };
        let exp: u64 = exp.parse().map_err(|_| SignatureError::Malformed)?;
        let sig = decode_hex(sig).ok_or(SignatureError::Malformed)?;
        let message = format!("{path}?{}", rest.join("&"));
        // Constant time: `verify_slice` compares without an early exit.
        self.mac(&message)
            .verify_slice(&sig)
            .map_err(|_| SignatureError::Mismatch)?;
        if exp < now {
            return Err(SignatureError::Expired);
        }
        Ok(())
    }

    fn mac(&self, message: &str) -> Hmac<Sha256> {
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        mac.update(message.as_bytes());
        mac
    }
}

/// 32 bytes from 64 lowercase hex digits.
fn decode_hex(text: &str) -> Option<Vec<u8>> {
    if text.len() != 64 {
        return None;
    }
    let digit = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        _ => None,
    };
    text.as_bytes()
        .chunks(2)
        .map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn signer() -> UrlSigner {
        UrlSigner::new("k3y", Duration::from_secs(24 * 3600)).unwrap()
    }

    fn split(url: &str) -> (&str, &str) {
        url.split_once('?').unwrap()
    }

    #[test]
    fn a_signed_url_verifies_until_it_expires() {
        let now = 1_700_000_000;
        let url = signer().sign("/v1/jobs/j/outputs/thumb?frame=3", now);
        let (path, query) = split(&url);
        assert!(query.starts_with("frame=3&exp="), "{url}");
        assert_eq!(signer().verify(path, query, now), Ok(()));
        let exp = signer().expiry(now);
        assert!(
            exp >= now + 24 * 3600 && exp < now + 24 * 3600 + 3600,
            "{exp}"
        );
        assert_eq!(signer().verify(path, query, exp), Ok(()));
        assert_eq!(
            signer().verify(path, query, exp + 1),
            Err(SignatureError::Expired)
        );
        // The same output signed a little later keeps its URL (cacheable).
        assert_eq!(
            signer().sign("/v1/jobs/j/outputs/thumb?frame=3", now + 1),
            url
        );
    }

    #[test]
    fn altered_urls_are_refused() {
        let now = 1_700_000_000;
        let url = signer().sign("/v1/jobs/j/outputs/thumb?frame=3", now);
        let (path, query) = split(&url);
        let other_frame = query.replace("frame=3", "frame=4");
        let later = query.replace("exp=", "exp=9");
        for (path, query) in [
            ("/v1/jobs/j/outputs/large", query),
            (path, other_frame.as_str()),
            (path, later.as_str()),
        ] {
            assert_eq!(
                signer().verify(path, query, now),
                Err(SignatureError::Mismatch),
                "{path}?{query}"
            );
        }
        let other_key = UrlSigner::new("other", Duration::from_secs(60)).unwrap();
        assert_eq!(
            other_key.verify(path, query, now),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            signer().verify(path, "frame=3", now),
            Err(SignatureError::Missing)
        );
        let upper = query
            .to_uppercase()
            .replace("FRAME", "frame")
            .replace("EXP", "exp");
        let upper = upper.replace("SIG", "sig");
        assert_eq!(
            signer().verify(path, &upper, now),
            Err(SignatureError::Malformed)
        );
        let twice = format!("{query}&sig=00");
        assert_eq!(
            signer().verify(path, &twice, now),
            Err(SignatureError::Malformed)
        );
        assert!(UrlSigner::new("", Duration::from_secs(1)).is_none());
    }
}
