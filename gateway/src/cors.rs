//! CORS for `/v1/…` (outputs included) when `--cors-origins` lists origins (API.md § Delivery
//! to browsers): preflights answered, `Authorization` and `Idempotency-Key` allowed, so a web
//! page on a listed origin can call the API with its key. Unlisted origins get no CORS headers
//! (the browser then blocks the page's read), never an error a non-browser client would see.

use actix_cors::Cors;
use actix_web::http::header::{self, HeaderName};
use actix_web::middleware::Condition;

/// The origins from `--cors-origins`, checked: `*`, or `scheme://host[:port]` each.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CorsOrigins {
    any: bool,
    listed: Vec<String>,
}

impl CorsOrigins {
    pub fn parse(setting: &[String]) -> Result<CorsOrigins, String> {
        let mut origins = CorsOrigins::default();
        for origin in setting.iter().map(|o| o.trim()).filter(|o| !o.is_empty()) {
            if origin == "*" {
                origins.any = true;
                continue;
            }
            let url = url::Url::parse(origin).map_err(|e| format!("{origin}: {e}"))?;
            let bare = matches!(url.scheme(), "http" | "https")
                && url.host().is_some()
                && url.path() == "/"
                && !origin.ends_with('/')
                && url.query().is_none()
                && url.username().is_empty();
            if !bare {
                return Err(format!(
                    "{origin} is not an origin (scheme://host[:port], no path)"
                ));
            }
            origins.listed.push(origin.to_owned());
        }
        Ok(origins)
    }

    pub fn is_empty(&self) -> bool {
        !self.any && self.listed.is_empty()
    }

    /// The middleware for `/v1`: off when no origin is listed.
    pub fn middleware(&self) -> Condition<Cors> {
        let mut cors = Cors::default()
            .allowed_methods(["GET", "POST", "PUT", "DELETE"])
            .allowed_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::IF_NONE_MATCH,
                HeaderName::from_static("idempotency-key"),
                HeaderName::from_static("x-request-id"),
            ])
            .expose_headers([
                header::ETAG,
                header::LOCATION,
                header::RETRY_AFTER,
                HeaderName::from_static("x-request-id"),
            ])
            .max_age(3600)
            .block_on_origin_mismatch(false);
        if self.any {
            cors = cors.allow_any_origin();
        } else {
            for origin in &self.listed {
                cors = cors.allowed_origin(origin);
            }
        }
        Condition::new(!self.is_empty(), cors)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(origins: &[&str]) -> Result<CorsOrigins, String> {
        CorsOrigins::parse(&origins.iter().map(|o| o.to_string()).collect::<Vec<_>>())
    }

    #[test]
    fn origins_are_checked() {
        assert!(parse(&[]).unwrap().is_empty());
        assert!(!parse(&["*"]).unwrap().is_empty());
        let listed = parse(&["https://app.example.com", "http://127.0.0.1:3000"]).unwrap();
        assert_eq!(listed.listed.len(), 2);
        for bad in [
            "app.example.com",
            "https://app.example.com/path",
            "ftp://x",
            "https://a/",
        ] {
            assert!(parse(&[bad]).is_err(), "{bad}");
        }
    }
}
