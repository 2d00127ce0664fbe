//! Liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process answers.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis and storage answer.
pub async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let limit = Duration::from_secs(3);
    let redis = matches!(
        tokio::time::timeout(limit, state.queue.ping()).await,
        Ok(Ok(()))
    );
    let storage = matches!(
        tokio::time::timeout(limit, state.storage.ping()).await,
        Ok(Ok(()))
    );
    let body = json!({
        "status": if redis && storage { "ready" } else { "unavailable" },
        "redis": if redis { "ok" } else { "unavailable" },
        "storage": if storage { "ok" } else { "unavailable" },
    });
    if redis && storage {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable()
            .insert_header((actix_web::http::header::RETRY_AFTER, "5"))
            .json(body)
    }
}

/// `GET /metrics`: Prometheus text format.
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render(&state.queue).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

/// The API as the server enforces it: parameters, bodies, constraints and every answer. Kept
/// by hand next to the handlers; `tests/api/contract.rs` checks the two agree, and CI runs
/// schemathesis against it.
const OPENAPI: &str = include_str!("../../openapi.json");

/// `GET /openapi.json`.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}
