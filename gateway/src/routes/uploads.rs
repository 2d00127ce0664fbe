//! Presigned uploads: `POST /v1/uploads` hands out a URL the client PUTs the file to (S3's own
//! presigned URL, or this gateway's `PUT /v1/uploads/{id}` with local storage); then
//! `POST /v1/jobs` with `{"upload_id", "spec"}` runs the same checks as an upload and queues.

use actix_web::{web, HttpRequest, HttpResponse};
use futures::StreamExt;
use pipeline::engine;
use pipeline::job::{new_job_id, JobInput};
use pipeline::spec::Spec;
use pipeline::storage::ObjectKey;
use pipeline::view::rfc3339;
use serde::{Deserialize, Serialize};

use super::jobs::{submit, MAX_SPEC_LEN};
use super::{check_spec, idempotency_key};
use crate::auth::Caller;
use crate::error::{from_probe, ApiError};
use crate::state::AppState;
use crate::upload::{chunks, store_raw, Budget};

#[derive(Serialize, utoipa::ToSchema)]
pub struct UploadTicket {
    pub upload_id: String,
    /// PUT the file's bytes here.
    pub url: String,
    pub method: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/uploads`.
#[utoipa::path(post, path = "/v1/uploads", tag = "uploads",
    responses((status = 200, body = UploadTicket), (status = 401), (status = 503)))]
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let upload_id = uuid::Uuid::new_v4().to_string();
    let key = ObjectKey::upload(&upload_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let ttl = state.settings.presign_ttl;
    // The ticket lives a little longer than its URL, so a PUT finishing late can still be used.
    let record_ttl = ttl + std::time::Duration::from_secs(300);
    let _: () = state
        .queue
        .redis()
        .query(
            redis::cmd("SET")
                .arg(state.queue.keys().upload(&upload_id))
                .arg(caller.owner.as_deref().unwrap_or("-"))
                .arg("PX")
                .arg(record_ttl.as_millis() as u64),
        )
        .await?;
    let url = match state.storage.presign_put(&key, ttl).await? {
        Some(url) => url,
        None => format!("{}/v1/uploads/{upload_id}", state.base_url(&req)),
    };
    Ok(HttpResponse::Ok().json(UploadTicket {
        upload_id,
        url,
        method: "PUT".into(),
        expires_at: rfc3339(pipeline::job::now_ms() + ttl.as_millis() as u64),
    }))
}

/// The owner a ticket was made for (`-` when the API is open), if the ticket is alive.
async fn ticket_owner(state: &AppState, upload_id: &str) -> Result<Option<String>, ApiError> {
    if uuid::Uuid::try_parse(upload_id).is_err() {
        return Ok(None);
    }
    let owner: Option<String> = state
        .queue
        .redis()
        .query(redis::cmd("GET").arg(state.queue.keys().upload(upload_id)))
        .await?;
    Ok(owner)
}

/// `PUT /v1/uploads/{id}`: where the file goes when storage cannot presign (a local
/// directory). Like a presigned URL, the unguessable upload id is the credential.
#[utoipa::path(put, path = "/v1/uploads/{id}", tag = "uploads",
    params(("id" = String, Path, description = "upload id")),
    request_body(content = Vec<u8>, description = "the file"),
    responses((status = 200, description = "stored"), (status = 404), (status = 413)))]
pub async fn put(
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let upload_id = path.into_inner();
    if ticket_owner(&state, &upload_id).await?.is_none() {
        return Err(ApiError::NotFound("no such upload (or it expired)".into()));
    }
    let key =
        ObjectKey::upload(&upload_id).map_err(|_| ApiError::NotFound("no such upload".into()))?;
    let mut budget = Budget::new(state.settings.max_upload, false);
    let bytes = store_raw(&state.storage, &key, chunks(payload), &mut budget).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "upload_id": upload_id, "bytes": bytes })))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromUpload {
    upload_id: String,
    spec: serde_json::Value,
}

/// `POST /v1/jobs` with `{"upload_id", "spec"}`.
pub(crate) async fn create_from_upload(
    req: HttpRequest,
    mut payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let mut body = Vec::new();
    while let Some(chunk) = payload.next().await {
        let chunk = chunk
            .map_err(|e| ApiError::BadRequest(format!("reading the request body failed: {e}")))?;
        body.extend_from_slice(&chunk);
        if body.len() > MAX_SPEC_LEN {
            return Err(ApiError::BadRequest(format!(
                "a JSON body is at most {MAX_SPEC_LEN} bytes"
            )));
        }
    }
    let request: FromUpload = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"upload_id\", \"spec\"}}: {e}")))?;
    let spec = match &request.spec {
        serde_json::Value::String(text) => Spec::from_json(text)?,
        value => Spec::from_json_value(value)?,
    };
    check_spec(&state, &spec, false)?;
    let owner = ticket_owner(&state, &request.upload_id).await?;
    if owner.as_deref() != Some(caller.owner.as_deref().unwrap_or("-")) {
        return Err(ApiError::NotFound("no such upload (or it expired)".into()));
    }
    let upload =
        ObjectKey::upload(&request.upload_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let meta = state.storage.head(&upload).await?.ok_or_else(|| {
        ApiError::BadRequest(
            "nothing was uploaded for this upload_id yet: PUT the file first".into(),
        )
    })?;
    let discard = |e: ApiError| async {
        let _ = state.storage.delete(&upload).await;
        e
    };
    if meta.size > state.settings.max_upload {
        return Err(discard(ApiError::TooLarge {
            limit: state.settings.max_upload,
        })
        .await);
    }
    // The same checks as an upload through the gateway, on the stored bytes.
    let head = state.storage.get_prefix(&upload, 8 << 20).await?;
    let info = match engine::probe(&head, &state.limits) {
        Ok(info) => info,
        Err(e) => return Err(discard(from_probe(e)).await),
    };
    let job_id = new_job_id();
    let original = ObjectKey::original(&job_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    state.storage.copy(&upload, &original).await?;
    let _ = state.storage.delete(&upload).await;
    let _: Result<i64, _> = state
        .queue
        .redis()
        .query(redis::cmd("DEL").arg(state.queue.keys().upload(&request.upload_id)))
        .await;
    let mut budget = Budget::new(u64::MAX, true);
    budget.add_to_fingerprint(request.upload_id.as_bytes());
    budget.add_to_fingerprint(spec.to_json().as_bytes());
    let input = JobInput::Image {
        key: original.to_string(),
        bytes: meta.size,
        format: info.format,
        width: info.width,
        height: info.height,
    };
    state.metrics.uploaded(meta.size);
    let idempotency = idempotency_key(&req)?;
    submit(
        &state,
        &req,
        &caller,
        (job_id, spec, input),
        budget,
        idempotency,
    )
    .await
}
