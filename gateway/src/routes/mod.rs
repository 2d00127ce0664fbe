//! The HTTP API of API.md, one module per feature. Handlers stay thin: how a request becomes a
//! job is `crate::intake`'s business.

pub mod dashboard;
pub mod dead_letter;
mod frames;
pub mod jobs;
pub mod ops;
mod uploads;

use actix_web::web;
use pipeline::job::{is_job_id, JobRecord};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::scope("/v1")
            .route("/jobs", web::post().to(jobs::create))
            .route("/jobs", web::get().to(jobs::list))
            .route("/jobs/{id}", web::get().to(jobs::get))
            .route("/jobs/{id}", web::delete().to(jobs::cancel))
            .route("/jobs/{id}/events", web::get().to(jobs::events))
            .route("/jobs/{id}/outputs/{name}", web::get().to(jobs::output))
            .route("/frames", web::post().to(frames::create))
            .route("/uploads", web::post().to(uploads::create))
            .route("/uploads/{id}", web::put().to(uploads::put))
            .route("/stats", web::get().to(dashboard::stats))
            .route("/events", web::get().to(dashboard::events))
            .route("/dead-letter", web::get().to(dead_letter::list))
            .route(
                "/dead-letter/{id}/replay",
                web::post().to(dead_letter::replay),
            ),
    )
    .route("/", web::get().to(dashboard::page))
    .route("/healthz", web::get().to(ops::healthz))
    .route("/readyz", web::get().to(ops::readyz))
    .route("/metrics", web::get().to(ops::metrics))
    .route("/openapi.json", web::get().to(ops::openapi));
}

/// A job the caller may see, or 404 (also for another key's job: existence is not revealed).
pub(crate) async fn load_job(
    state: &AppState,
    caller: &Caller,
    id: &str,
) -> Result<JobRecord, ApiError> {
    if !is_job_id(id) {
        return Err(ApiError::not_found());
    }
    match state.queue.get(id).await? {
        Some(record) if caller.may_see(record.owner.as_deref()) => Ok(record),
        _ => Err(ApiError::not_found()),
    }
}

/// Whether a request body is a multipart form.
fn is_multipart(req: &actix_web::HttpRequest) -> bool {
    use actix_web::HttpMessage as _;
    req.content_type()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}
