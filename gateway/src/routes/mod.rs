//! The HTTP API of API.md, one module per feature.

pub mod dashboard;
mod dead_letter;
mod frames;
pub mod jobs;
pub mod ops;
mod uploads;

use actix_web::{web, HttpRequest, HttpResponse};
use pipeline::job::{is_job_id, JobRecord};
use pipeline::spec::{Spec, SpecError};
use serde::Serialize;

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

/// The query string as decoded pairs, in order.
pub(crate) fn query_pairs(req: &HttpRequest) -> Vec<(String, String)> {
    url::form_urlencoded::parse(req.query_string().as_bytes())
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

/// The spec a query carries: `?spec=<JSON>`, or the shorthand. `other` lists parameters that
/// belong to the route (not to the spec). `None` when the query holds neither.
pub(crate) fn spec_from_query(
    pairs: &[(String, String)],
    other: &[&str],
) -> Result<Option<Spec>, ApiError> {
    let mut json = None;
    let mut shorthand = Vec::new();
    for (key, value) in pairs {
        if key == "spec" {
            if json.replace(value.as_str()).is_some() {
                return Err(ApiError::BadSpec(SpecError::new("spec", "is given twice")));
            }
        } else if Spec::is_shorthand_key(key) {
            shorthand.push((key.as_str(), value.as_str()));
        } else if !other.contains(&key.as_str()) {
            return Err(ApiError::BadRequest(format!(
                "unknown query parameter `{key}`"
            )));
        }
    }
    match (json, shorthand.is_empty()) {
        (Some(_), false) => Err(ApiError::BadSpec(SpecError::new(
            "spec",
            "give either ?spec= or the shorthand parameters, not both",
        ))),
        (Some(text), true) => Ok(Some(Spec::from_json(text)?)),
        (None, false) => Ok(Some(Spec::from_shorthand(shorthand)?)),
        (None, true) => Ok(None),
    }
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

/// The answer to an accepted job.
#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct Accepted {
    pub id: String,
    pub status: String,
    pub links: pipeline::view::JobLinks,
}

pub(crate) fn accepted(
    state: &AppState,
    req: &HttpRequest,
    id: &str,
    status: &str,
) -> HttpResponse {
    let base = state.base_url(req);
    let self_url = format!("{base}/v1/jobs/{id}");
    HttpResponse::Accepted()
        .insert_header((actix_web::http::header::LOCATION, self_url.clone()))
        .json(Accepted {
            id: id.to_owned(),
            status: status.to_owned(),
            links: pipeline::view::JobLinks {
                events: format!("{self_url}/events"),
                self_: self_url,
            },
        })
}

/// Checks what a spec asks for that the engine's validation cannot know: where it is used,
/// and whether its webhook may be called.
pub(crate) fn check_spec(state: &AppState, spec: &Spec, frames: bool) -> Result<(), ApiError> {
    if !frames && spec.sprite.is_some() {
        return Err(ApiError::BadSpec(SpecError::new(
            "sprite",
            "only frame jobs (POST /v1/frames) make sprites",
        )));
    }
    if let Some(webhook) = &spec.webhook {
        state
            .webhook_policy
            .check(&webhook.url)
            .map_err(|why| ApiError::BadSpec(SpecError::new("webhook.url", why)))?;
    }
    Ok(())
}

/// The `Idempotency-Key` header, if any.
pub(crate) fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value
                .to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::BadRequest(
                        "Idempotency-Key must be 1 to 255 visible characters".into(),
                    )
                })?;
            Ok(Some(key.to_owned()))
        }
    }
}

/// The request id the middleware assigned.
pub(crate) fn request_id(req: &HttpRequest) -> Option<String> {
    req.extensions()
        .get::<crate::startup::RequestId>()
        .map(|r| r.0.clone())
}

use actix_web::HttpMessage as _;
