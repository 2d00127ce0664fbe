//! API keys: `Authorization: Bearer KEY` on every `/v1` call when keys are configured (the app
//! registers its `web::Data<ApiKeys>`). A key sees only its own jobs. Keys are compared in constant time, and only a digest of a key (its
//! owner id) is ever stored or logged.

use std::future::{ready, Ready};

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use sha2::{Digest, Sha256};

use crate::error::ApiError;

/// The configured keys, as digests.
#[derive(Debug, Clone, Default)]
pub struct ApiKeys {
    digests: Vec<[u8; 32]>,
}

impl ApiKeys {
    /// `KEY1,KEY2`, or the path of a file with one key per line (`#` comments allowed).
    pub fn load(setting: Option<&str>) -> Result<ApiKeys, String> {
        let Some(setting) = setting.map(str::trim).filter(|s| !s.is_empty()) else {
            return Ok(ApiKeys::default());
        };
        let text = if std::path::Path::new(setting).is_file() {
            std::fs::read_to_string(setting)
                .map_err(|e| format!("cannot read API keys from {setting}: {e}"))?
        } else {
            setting.replace(',', "\n")
        };
        let keys: Vec<&str> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .collect();
        if keys.is_empty() {
            return Err(format!("no API keys in {setting}"));
        }
        if let Some(short) = keys.iter().find(|k| k.len() < 16) {
            return Err(format!(
                "API key of {} characters is too short (16 at least)",
                short.len()
            ));
        }
        Ok(ApiKeys {
            digests: keys
                .iter()
                .map(|k| Sha256::digest(k.as_bytes()).into())
                .collect(),
        })
    }

    pub fn is_open(&self) -> bool {
        self.digests.is_empty()
    }

    /// The owner id of a presented key, if it is one of ours. Every configured key is compared
    /// in full, so timing says nothing about which bytes matched.
    fn owner_of(&self, presented: &str) -> Option<String> {
        let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
        let mut found = None;
        for known in &self.digests {
            let difference = known
                .iter()
                .zip(&digest)
                .fold(0u8, |acc, (a, b)| acc | (a ^ b));
            if difference == 0 {
                found = Some(owner_id(known));
            }
        }
        found
    }
}

/// The owner id stored with jobs: a short digest of the key, never the key.
fn owner_id(digest: &[u8; 32]) -> String {
    pipeline::text::hex(&digest[..12])
}

/// Who is calling: the owner id of their key, or nobody when the API is open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub owner: Option<String>,
}

impl Caller {
    /// Whether this caller may see a job owned by `owner`.
    pub fn may_see(&self, owner: Option<&str>) -> bool {
        match &self.owner {
            None => true,
            Some(mine) => owner == Some(mine.as_str()),
        }
    }
}

impl FromRequest for Caller {
    type Error = ApiError;
    type Future = Ready<Result<Caller, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let Some(keys) = req.app_data::<web::Data<ApiKeys>>() else {
            return ready(Err(ApiError::Internal("no API keys registered".into())));
        };
        ready(authenticate(keys, req))
    }
}

pub fn authenticate(keys: &ApiKeys, req: &HttpRequest) -> Result<Caller, ApiError> {
    if keys.is_open() {
        return Ok(Caller { owner: None });
    }
    let presented = req
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    match presented.and_then(|key| keys.owner_of(key)) {
        Some(owner) => Ok(Caller { owner: Some(owner) }),
        None => Err(ApiError::Unauthorized),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_load_from_a_list_and_identify_owners() {
        let keys = ApiKeys::load(Some("alpha-key-0123456789, beta-key-0123456789")).unwrap();
        let a = keys.owner_of("alpha-key-0123456789").unwrap();
        let b = keys.owner_of("beta-key-0123456789").unwrap();
        assert_ne!(a, b);
        assert!(keys.owner_of("alpha-key-012345678").is_none());
        assert!(keys.owner_of("").is_none());
        assert!(ApiKeys::load(None).unwrap().is_open());
        assert!(ApiKeys::load(Some("short")).is_err());
    }
}
