//! The HTTP API of API.md, one module per feature. Handlers stay thin: how a request becomes a
//! job is `crate::intake`'s business.

pub mod dashboard;
pub mod dead_letter;
mod frames;
pub mod jobs;
pub mod ops;
mod uploads;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use pipeline::job::{is_job_id, JobRecord};
use pipeline::view::JobView;

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

/// The job the path's `{id}` names, when the caller may see it (404 otherwise, also for
/// another key's job), with what answering about it takes.
pub struct VisibleJob {
    pub record: JobRecord,
    pub state: web::Data<AppState>,
    /// The origin URLs in answers start with.
    pub base: String,
}

impl VisibleJob {
    async fn extract(req: HttpRequest) -> Result<VisibleJob, ApiError> {
        let state = AppState::of(&req)?;
        let caller = Caller::extract(&req).await?;
        let id = req.match_info().get("id").unwrap_or_default();
        let record = load_job(&state, &caller, id).await?;
        let base = state.base_url(&req);
        Ok(VisibleJob {
            record,
            state,
            base,
        })
    }

    /// The job as it stands now (after a change made to it), as API.md shows it.
    async fn reread(&self) -> Result<JobView, ApiError> {
        let record = self
            .state
            .queue
            .get(&self.record.id)
            .await?
            .ok_or_else(ApiError::not_found)?;
        Ok(JobView::new(&record, &self.base))
    }
}

impl FromRequest for VisibleJob {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<VisibleJob, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(VisibleJob::extract(req.clone()))
    }
}

/// Whether a request body is a multipart form.
fn is_multipart(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage as _;
    req.content_type()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}
