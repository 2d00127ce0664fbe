//! `/v1/jobs`: submit, read, list, cancel, fetch outputs, follow events.

use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use bytes::Bytes;
use futures::StreamExt;
use pipeline::job::{JobRecord, JobStatus};
use pipeline::queue::CancelOutcome;
use pipeline::spec::SpecError;
use pipeline::storage::{ObjectKey, Presign};
use pipeline::view::{JobView, Links};
use serde::Deserialize;

use super::{is_multipart, load_job, page_cursor, page_limit, VisibleJob};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::intake::Intake;
use crate::state::AppState;

/// The largest spec accepted in a multipart part or a JSON body.
pub const MAX_SPEC_LEN: usize = 64 << 10;
/// A job's event stream sends a comment after this long without an event (API.md: at least
/// every 15 s).
const KEEP_ALIVE: Duration = Duration::from_secs(10);
/// How often a job's event stream re-reads the job, in case a pub/sub message was missed.
const EVENTS_POLL: Duration = Duration::from_secs(5);

/// `POST /v1/jobs`: multipart (`file` and optional `spec` parts), a raw image body with the spec
/// in the query, or JSON `{"upload_id", "spec"}` for a presigned upload.
pub async fn create(
    req: HttpRequest,
    intake: Intake,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if is_multipart(&req) {
        intake.image_from_form(payload).await
    } else if req.content_type().eq_ignore_ascii_case("application/json") {
        intake.image_from_upload(payload).await
    } else {
        intake.image_from_body(payload).await
    }
}

/// `GET /v1/jobs/{id}`.
pub async fn get(job: VisibleJob) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok().json(JobView::new(&job.record, &job.links)))
}

#[derive(Deserialize)]
pub struct ListQuery {
    /// queued, running, succeeded, failed or cancelled
    status: Option<String>,
    /// 1–100 (default 20)
    limit: Option<usize>,
    /// from the previous page's `next_cursor`
    cursor: Option<String>,
}

#[derive(serde::Serialize)]
pub struct JobList {
    pub jobs: Vec<JobView>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/jobs?status=&limit=&cursor=`: recent jobs, newest first.
pub async fn list(
    req: HttpRequest,
    query: web::Query<ListQuery>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let status = match &query.status {
        None => None,
        Some(text) => Some(JobStatus::parse(text).ok_or_else(|| {
            ApiError::BadSpec(SpecError::new(
                "status",
                "must be queued, running, succeeded, failed or cancelled",
            ))
        })?),
    };
    let limit = page_limit(query.limit)?;
    let cursor = page_cursor(query.cursor.as_deref(), pipeline::queue::is_list_cursor)?;
    let page = state
        .queue
        .list(caller.owner.as_deref(), status, limit, cursor)
        .await?;
    let links = state.links(&req);
    Ok(HttpResponse::Ok().json(JobList {
        jobs: page.jobs.iter().map(|r| JobView::new(r, &links)).collect(),
        next_cursor: page.next_cursor,
    }))
}

/// `DELETE /v1/jobs/{id}`: a queued job is never run; a running one stops at its next
/// checkpoint. Answers the job as it stands.
pub async fn cancel(job: VisibleJob) -> Result<HttpResponse, ApiError> {
    if job.state.queue.cancel(&job.record.id).await? == CancelOutcome::Missing {
        return Err(ApiError::not_found());
    }
    Ok(HttpResponse::Ok().json(job.reread().await?))
}

#[derive(Deserialize)]
pub struct OutputQuery {
    /// which frame's output, for frame jobs
    frame: Option<u32>,
    /// a signed URL's signature: with `exp` (checked from the raw query, with the rest), the
    /// URL works without an API key
    sig: Option<String>,
}

/// `GET /v1/jobs/{id}/outputs/{name}`: the bytes (local storage) or a redirect to a presigned
/// URL (S3); `ETag`, `Cache-Control` and conditional GET either way. A signed URL (`exp` and
/// `sig`) needs no API key.
pub async fn output(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    query: web::Query<OutputQuery>,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let (id, name) = path.into_inner();
    let record = output_job(&req, &state, &id, query.sig.is_some()).await?;
    let output = find_output(&record, &name, query.frame)?;
    // Outputs never change once written: clients and caches may keep them.
    let cache = if state.keys.is_open() {
        "public, max-age=31536000, immutable"
    } else {
        "private, max-age=31536000, immutable"
    };
    if not_modified(&req, &output.etag) {
        return Ok(HttpResponse::NotModified()
            .insert_header((header::ETAG, output.etag.clone()))
            .insert_header((header::CACHE_CONTROL, cache))
            .finish());
    }
    let key = ObjectKey::parse(&output.key).map_err(|e| ApiError::Internal(e.to_string()))?;
    if output.content_type.starts_with("text/vtt") {
        // A track's cues name the sprite relative to the track: served from here (never a
        // presigned redirect, against which they would not resolve), signed when signing is on.
        let vtt = state.storage.get(&key).await.map_err(gone(&name))?;
        let vtt = sign_cues(&String::from_utf8_lossy(&vtt), &record, &state.links(&req));
        return Ok(HttpResponse::Ok()
            .content_type(output.content_type.clone())
            .insert_header((header::ETAG, output.etag.clone()))
            .insert_header((header::CACHE_CONTROL, cache))
            .body(vtt));
    }
    if let Some(url) = state
        .storage
        .presign(&key, Presign::Get, state.settings.presign_ttl)
        .await?
    {
        return Ok(HttpResponse::TemporaryRedirect()
            .insert_header((header::LOCATION, url))
            .insert_header((header::ETAG, output.etag.clone()))
            .insert_header((header::CACHE_CONTROL, "private, max-age=60"))
            .finish());
    }
    let (meta, stream) = state.storage.get_stream(&key).await.map_err(gone(&name))?;
    Ok(HttpResponse::Ok()
        .content_type(output.content_type.clone())
        .insert_header((header::ETAG, output.etag.clone()))
        .insert_header((header::CACHE_CONTROL, cache))
        .no_chunking(meta.size)
        .streaming(stream.map(|chunk| {
            chunk.map_err(|e| actix_web::error::ErrorServiceUnavailable(e.to_string()))
        })))
}

/// The job an output request names: with a signature (and signing on), whoever holds the URL
/// may read it; otherwise the caller's key must see the job.
async fn output_job(
    req: &HttpRequest,
    state: &AppState,
    id: &str,
    signed: bool,
) -> Result<JobRecord, ApiError> {
    match (&state.url_signer, signed) {
        (Some(signer), true) => {
            let now = pipeline::job::now_ms() / 1000;
            signer
                .verify(req.path(), req.query_string(), now)
                .map_err(ApiError::BadSignature)?;
            load_job(state, &Caller { owner: None }, id).await
        }
        _ => {
            let caller = crate::auth::authenticate(&state.keys, req)?;
            load_job(state, &caller, id).await
        }
    }
}

/// Output `name` (of `frame`, for frame jobs) of `record`, or 404 saying what is missing.
fn find_output<'a>(
    record: &'a JobRecord,
    name: &str,
    frame: Option<u32>,
) -> Result<&'a pipeline::job::OutputRecord, ApiError> {
    record
        .outputs
        .iter()
        .find(|o| o.name == name && o.frame == frame)
        .ok_or_else(|| {
            let id = &record.id;
            ApiError::NotFound(format!(
                "job {id} has no output `{name}`{}",
                match frame {
                    Some(frame) => format!(" for frame {frame}"),
                    None if record.outputs.iter().any(|o| o.name == name) =>
                        " without ?frame=N (a frame job)".to_owned(),
                    None => String::new(),
                }
            ))
        })
}

/// Whether the request's `If-None-Match` names `etag` (or `*`).
fn not_modified(req: &HttpRequest, etag: &str) -> bool {
    req.headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|tags| tags.split(',').any(|t| t.trim() == etag || t.trim() == "*"))
}

/// A storage error reading output `name`: gone from storage is a 404.
fn gone(name: &str) -> impl FnOnce(pipeline::storage::StorageError) -> ApiError + '_ {
    move |e| match e {
        pipeline::storage::StorageError::NotFound(_) => {
            ApiError::NotFound(format!("the output `{name}` is gone from storage"))
        }
        other => other.into(),
    }
}

/// A WebVTT track whose cues name another output of the job by its bare name (`sprite#xywh=…`,
/// relative to the track's URL), with those names replaced by the output's URL — signed when
/// signing is on, so the sheet loads in a `<track>` without an API key.
fn sign_cues(vtt: &str, record: &JobRecord, links: &Links) -> String {
    if links.signer.is_none() {
        return vtt.to_owned();
    }
    let mut out = String::with_capacity(vtt.len() + 256);
    for line in vtt.split_inclusive('\n') {
        let target = line.split('#').next().unwrap_or_default();
        let names_an_output = !target.is_empty()
            && record
                .outputs
                .iter()
                .any(|o| o.name == target && o.frame.is_none());
        if names_an_output {
            out.push_str(&links.output(&record.id, target, None));
            out.push_str(&line[target.len()..]);
        } else {
            out.push_str(line);
        }
    }
    out
}

/// `GET /v1/jobs/{id}/events`: Server-Sent Events — the job at once, then an event per status or
/// progress change, ending after the final status; a keep-alive comment every 15 s.
pub async fn events(
    req: HttpRequest,
    path: web::Path<String>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    // Subscribe before reading, so no change between the read and the subscription is missed.
    let id = path.into_inner();
    let subscription = state.events.subscribe(&id);
    let record = load_job(&state, &caller, &id).await?;
    let links = state.links(&req);
    let state = state.into_inner();
    let stream = async_stream(state, record, links, subscription);
    Ok(HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(stream))
}

/// The SSE body: emits on every pub/sub event and on a 5 s poll (a pub/sub gap costs latency,
/// not events); a keep-alive comment when nothing was sent for `KEEP_ALIVE`, so proxies and load
/// balancers keep a quiet stream open; ends after a final status.
fn async_stream(
    state: std::sync::Arc<AppState>,
    first: JobRecord,
    links: Links,
    subscription: crate::events::Subscription,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
    struct Cursor {
        id: String,
        state: std::sync::Arc<AppState>,
        links: Links,
        subscription: crate::events::Subscription,
        last: Option<(JobStatus, u8)>,
        pending: Option<JobRecord>,
        done: bool,
        /// When bytes were last sent.
        sent_at: tokio::time::Instant,
    }
    let cursor = Cursor {
        id: first.id.clone(),
        state,
        links,
        subscription,
        last: None,
        pending: Some(first),
        done: false,
        sent_at: tokio::time::Instant::now(),
    };
    futures::stream::unfold(cursor, |mut c| async move {
        if c.done {
            return None;
        }
        loop {
            if let Some(record) = c.pending.take() {
                let key = (record.status, record.progress);
                if c.last != Some(key) {
                    c.last = Some(key);
                    c.done = record.status.is_terminal();
                    c.sent_at = tokio::time::Instant::now();
                    let view = JobView::new(&record, &c.links);
                    let json = serde_json::to_string(&view).unwrap_or_default();
                    let event = format!("event: job\nid: {}\ndata: {json}\n\n", record.progress);
                    return Some((Ok(Bytes::from(event)), c));
                }
            }
            let keep_alive_at = c.sent_at + KEEP_ALIVE;
            if tokio::time::Instant::now() >= keep_alive_at {
                c.sent_at = tokio::time::Instant::now();
                return Some((Ok(Bytes::from_static(b": keep-alive\n\n")), c));
            }
            let poll_at = (tokio::time::Instant::now() + EVENTS_POLL).min(keep_alive_at);
            tokio::select! {
                _ = c.subscription.receiver.recv() => {}
                () = tokio::time::sleep_until(poll_at) => {}
            }
            match c.state.queue.get(&c.id).await {
                Ok(Some(record)) => c.pending = Some(record),
                Ok(None) => return None,
                // Redis trouble: keep the stream open and try again.
                Err(_) => {
                    c.sent_at = tokio::time::Instant::now();
                    return Some((
                        Ok(Bytes::from_static(b": redis unavailable, retrying\n\n")),
                        c,
                    ));
                }
            }
        }
    })
}
