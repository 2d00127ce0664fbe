//! The HTTP API of API.md, one module per feature. Handlers stay thin: how a request becomes a
//! job is `crate::intake`'s business.

pub mod dashboard;
pub mod dead_letter;
mod frames;
pub mod jobs;
pub mod ops;
mod uploads;

use actix_cors::Cors;
use actix_web::dev::Payload;
use actix_web::middleware::Condition;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use pipeline::job::{is_job_id, JobRecord};
use pipeline::spec::SpecError;
use pipeline::view::{JobView, Links};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// The routes; `cors` wraps everything under `/v1`.
pub fn configure(cfg: &mut web::ServiceConfig, cors: Condition<Cors>) {
    cfg.service(
        web::scope("/v1")
            .wrap(cors)
            .service(
                resource("/jobs", "GET, POST")
                    .route(web::post().to(jobs::create))
                    .route(web::get().to(jobs::list)),
            )
            .service(
                resource("/jobs/{id}", "GET, DELETE")
                    .route(web::get().to(jobs::get))
                    .route(web::delete().to(jobs::cancel)),
            )
            .service(resource("/jobs/{id}/events", "GET").route(web::get().to(jobs::events)))
            .service(
                resource("/jobs/{id}/outputs/{name}", "GET").route(web::get().to(jobs::output)),
            )
            .service(resource("/frames", "POST").route(web::post().to(frames::create)))
            .service(resource("/uploads", "POST").route(web::post().to(uploads::create)))
            .service(resource("/uploads/{id}", "PUT").route(web::put().to(uploads::put)))
            .service(resource("/stats", "GET").route(web::get().to(dashboard::stats)))
            .service(resource("/events", "GET").route(web::get().to(dashboard::events)))
            .service(resource("/dead-letter", "GET").route(web::get().to(dead_letter::list)))
            .service(
                resource("/dead-letter/{id}/replay", "POST")
                    .route(web::post().to(dead_letter::replay)),
            ),
    )
    .service(resource("/", "GET").route(web::get().to(dashboard::page)))
    .service(resource("/healthz", "GET").route(web::get().to(ops::healthz)))
    .service(resource("/readyz", "GET").route(web::get().to(ops::readyz)))
    .service(resource("/metrics", "GET").route(web::get().to(ops::metrics)))
    .service(resource("/openapi.json", "GET").route(web::get().to(ops::openapi)));
}

/// A path whose methods are `allow`: any other method gets 405 with `Allow` (HTTP's answer for
/// a known path), not 404.
fn resource(path: &str, allow: &'static str) -> actix_web::Resource {
    web::resource(path).default_service(web::to(move || async move {
        Err::<actix_web::HttpResponse, _>(ApiError::MethodNotAllowed { allow })
    }))
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
    /// How URLs in answers are made.
    pub links: Links,
}

impl VisibleJob {
    async fn extract(req: HttpRequest) -> Result<VisibleJob, ApiError> {
        let state = AppState::of(&req)?;
        let caller = Caller::extract(&req).await?;
        let id = req.match_info().get("id").unwrap_or_default();
        let record = load_job(&state, &caller, id).await?;
        let links = state.links(&req);
        Ok(VisibleJob {
            record,
            state,
            links,
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
        Ok(JobView::new(&record, &self.links))
    }
}

impl FromRequest for VisibleJob {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<VisibleJob, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(VisibleJob::extract(req.clone()))
    }
}

/// A list's `limit` (1–100, default 20), checked.
fn page_limit(limit: Option<usize>) -> Result<usize, ApiError> {
    let limit = limit.unwrap_or(20);
    if !(1..=100).contains(&limit) {
        return Err(ApiError::BadSpec(SpecError::new(
            "limit",
            "must be an integer in 1..=100",
        )));
    }
    Ok(limit)
}

/// A list's `cursor`, when it is one `valid` says this list hands out (400 otherwise).
fn page_cursor(cursor: Option<&str>, valid: fn(&str) -> bool) -> Result<Option<&str>, ApiError> {
    match cursor {
        Some(text) if !valid(text) => Err(ApiError::BadSpec(SpecError::new(
            "cursor",
            "is not a cursor this list handed out",
        ))),
        other => Ok(other),
    }
}

/// Whether a request body is a multipart form.
fn is_multipart(req: &HttpRequest) -> bool {
    use actix_web::HttpMessage as _;
    req.content_type()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data")
}
