//! Liveness, readiness, metrics and the OpenAPI document.

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde_json::json;
use utoipa::OpenApi;

use crate::error::ApiError;
use crate::state::AppState;

/// `GET /healthz`: the process answers.
#[utoipa::path(get, path = "/healthz", tag = "ops", responses((status = 200)))]
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({ "status": "ok" }))
}

/// `GET /readyz`: Redis and storage answer.
#[utoipa::path(get, path = "/readyz", tag = "ops", responses((status = 200), (status = 503)))]
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
#[utoipa::path(get, path = "/metrics", tag = "ops", responses((status = 200, description = "Prometheus text")))]
pub async fn metrics(state: web::Data<AppState>) -> Result<HttpResponse, ApiError> {
    let text = state.metrics.render(&state.queue).await;
    Ok(HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4")
        .body(text))
}

#[derive(OpenApi)]
#[openapi(
    info(title = "imagepipe", description = "Background image processing: uploads in, transformed outputs out."),
    paths(
        super::jobs::create, super::jobs::get, super::jobs::list, super::jobs::cancel,
        super::jobs::output, super::jobs::events, super::frames::create,
        super::uploads::create, super::uploads::put,
        super::dead_letter::list, super::dead_letter::replay,
        super::dashboard::stats, super::dashboard::events,
        healthz, readyz, metrics,
    ),
    components(schemas(pipeline::view::JobView, pipeline::view::OutputView, pipeline::view::ErrorView,
        pipeline::view::JobLinks, crate::intake::Accepted, super::jobs::JobList,
        super::uploads::UploadTicket, super::dead_letter::DeadLetterView, super::dead_letter::DeadLetterList,
        super::dashboard::Stats, super::dashboard::DepthView, super::dashboard::WorkerView,
        super::dashboard::MinuteView, super::dashboard::DurationsView, super::dashboard::TotalsView)),
    tags((name = "jobs"), (name = "uploads"), (name = "dead-letter"), (name = "ops"))
)]
pub struct ApiDoc;

/// `GET /openapi.json`: the API, generated from the code.
pub async fn openapi() -> HttpResponse {
    HttpResponse::Ok().json(ApiDoc::openapi())
}
