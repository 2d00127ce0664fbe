//! What every request passes through: a request id (the client's `X-Request-Id` when it is
//! sane, else a fresh one; echoed in the response and stored with the job, so the worker's logs
//! carry it too), a tracing span, and the request metrics.

use std::time::Instant;

use actix_web::body::{BoxBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use tracing::Instrument;

use crate::metrics::GatewayMetrics;

/// The id of a request.
#[derive(Debug, Clone)]
pub struct RequestId(pub String);

impl RequestId {
    /// The client's id when it is 1–64 letters, digits, `-` or `_`; else a fresh UUID.
    fn of_request(req: &ServiceRequest) -> RequestId {
        let sane = req
            .headers()
            .get("x-request-id")
            .and_then(|v| v.to_str().ok())
            .filter(|v| {
                !v.is_empty()
                    && v.len() <= 64
                    && v.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
            });
        RequestId(sane.map_or_else(|| uuid::Uuid::new_v4().to_string(), str::to_owned))
    }

    /// The id the middleware gave `req`.
    pub fn get(req: &HttpRequest) -> Option<String> {
        req.extensions().get::<RequestId>().map(|r| r.0.clone())
    }
}

/// Gives the request its id and span, and counts it in the metrics (the app's
/// `web::Data<GatewayMetrics>`) by route, method and status.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    let started = Instant::now();
    let id = RequestId::of_request(&req);
    req.extensions_mut().insert(id.clone());
    let metrics = req.app_data::<web::Data<GatewayMetrics>>().cloned();
    let method = req.method().to_string();
    let span =
        tracing::info_span!("request", request_id = %id.0, method = %method, path = %req.path());
    let mut response = next.call(req).instrument(span.clone()).await?;
    let _entered = span.enter();
    if let Ok(value) = HeaderValue::from_str(&id.0) {
        response
            .headers_mut()
            .insert(HeaderName::from_static("x-request-id"), value);
    }
    let route = response
        .request()
        .match_pattern()
        .unwrap_or_else(|| "unmatched".into());
    let status = response.status();
    if let Some(metrics) = metrics {
        metrics.request(&route, &method, status.as_u16(), started.elapsed());
    }
    if status.is_server_error() {
        tracing::warn!(status = status.as_u16(), "request failed");
    } else {
        tracing::debug!(status = status.as_u16(), "request");
    }
    Ok(response.map_into_boxed_body())
}
