//! Presigned uploads: `POST /v1/uploads` hands out a URL the client PUTs the file to (S3's own
//! presigned URL, or this gateway's `PUT /v1/uploads/{id}` with local storage); then
//! `POST /v1/jobs` with `{"upload_id", "spec"}` makes it a job (`intake::image_from_upload`).

use actix_web::{web, HttpRequest, HttpResponse};
use pipeline::storage::{ObjectKey, Presign};
use pipeline::view::rfc3339;
use serde::Serialize;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::intake::{chunks, store_raw, upload_ticket, RequestBytes, TICKET_GRACE};
use crate::state::AppState;

#[derive(Serialize)]
pub struct UploadTicket {
    pub upload_id: String,
    /// PUT the file's bytes here.
    pub url: String,
    pub method: String,
    /// RFC 3339.
    pub expires_at: String,
}

/// `POST /v1/uploads`.
pub async fn create(
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let upload_id = uuid::Uuid::new_v4().to_string();
    let key = ObjectKey::upload(&upload_id).map_err(|e| ApiError::Internal(e.to_string()))?;
    let ttl = state.settings.presign_ttl;
    let ticket_ttl = ttl + TICKET_GRACE;
    state
        .queue
        .create_upload_ticket(&upload_id, caller.owner.as_deref(), ticket_ttl)
        .await?;
    let url = match state.storage.presign(&key, Presign::Put, ttl).await? {
        Some(url) => url,
        None => format!("{}/v1/uploads/{upload_id}", state.links(&req).base),
    };
    Ok(HttpResponse::Ok().json(UploadTicket {
        upload_id,
        url,
        method: "PUT".into(),
        expires_at: rfc3339(pipeline::job::now_ms() + ttl.as_millis() as u64),
    }))
}

/// `PUT /v1/uploads/{id}`: where the file goes when storage cannot presign (a local
/// directory). Like a presigned URL, the unguessable upload id is the credential.
pub async fn put(
    path: web::Path<String>,
    payload: web::Payload,
    state: web::Data<AppState>,
) -> Result<HttpResponse, ApiError> {
    let upload_id = path.into_inner();
    if upload_ticket(&state, &upload_id).await?.is_none() {
        return Err(ApiError::NotFound("no such upload (or it expired)".into()));
    }
    let key =
        ObjectKey::upload(&upload_id).map_err(|_| ApiError::NotFound("no such upload".into()))?;
    let mut counted = RequestBytes::new(state.settings.max_upload, false);
    let bytes = store_raw(&state.storage, &key, chunks(payload), &mut counted).await?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "upload_id": upload_id, "bytes": bytes })))
}
