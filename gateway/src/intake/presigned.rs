//! A presigned upload made into a job: `POST /v1/jobs` with `{"upload_id", "spec"}` after the
//! client PUT its file to the ticket's URL. The stored bytes get the same checks as an upload
//! through the gateway.

use actix_web::{web, HttpResponse};
use futures::StreamExt;
use pipeline::engine;
use pipeline::queue::UploadTicket;
use pipeline::spec::Spec;
use pipeline::storage::{ObjectKey, ObjectMeta};
use serde::Deserialize;

use super::image::{original_key, refuse_sprite_for_images, upload_input};
use super::spec::{check, MAX_SPEC_LEN};
use super::{Intake, RequestBytes, StoredInputs, Upload};
use crate::error::{from_probe, ApiError};
use crate::state::AppState;

/// How much longer a ticket lives than its URL, so a PUT finishing late can still be used.
pub const TICKET_GRACE: std::time::Duration = std::time::Duration::from_secs(300);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct FromUpload {
    upload_id: String,
    spec: serde_json::Value,
}

impl Intake {
    /// `POST /v1/jobs` with a JSON body.
    pub async fn image_from_upload(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let state = self.state.clone();
        let state: &AppState = &state;
        let request = read_request(payload).await?;
        let spec = match &request.spec {
            serde_json::Value::String(text) => Spec::from_json(text)?,
            value => Spec::from_json_value(value)?,
        };
        check(state, &spec, true)?;
        // Spent at once, so of several requests racing with one upload id exactly one goes on.
        let owner = self.caller.owner.as_deref();
        let claimed = uuid::Uuid::try_parse(&request.upload_id).is_ok()
            && state
                .queue
                .claim_upload_ticket(&request.upload_id, owner)
                .await?;
        if !claimed {
            return Err(ApiError::NotFound("no such upload (or it expired)".into()));
        }
        let upload =
            ObjectKey::upload(&request.upload_id).map_err(|e| ApiError::Internal(e.to_string()))?;
        let original = original_key(&self.job_id)?;
        let mut stored = StoredInputs::new(&state.storage);
        stored.add(original.clone());
        let taken = async {
            let checked = check_upload(state, &upload).await?;
            state.storage.copy(&upload, &original).await?;
            Ok::<_, ApiError>(checked)
        }
        .await;
        let (meta, upload_kind) = match taken {
            Ok(checked) => checked,
            Err(e) => {
                stored.discard().await;
                if matches!(e, ApiError::Unavailable(_) | ApiError::BadRequest(_)) {
                    // Storage trouble, or nothing PUT yet: the ticket stays good for a retry.
                    let ttl = state.settings.presign_ttl + TICKET_GRACE;
                    let _ = state
                        .queue
                        .create_upload_ticket(&request.upload_id, owner, ttl)
                        .await;
                }
                return Err(e);
            }
        };
        let _ = state.storage.delete(&upload).await;
        // The fingerprint of a presigned upload is its id and spec: the bytes went elsewhere.
        self.bytes = RequestBytes::new(u64::MAX, true);
        self.bytes.add_to_fingerprint(request.upload_id.as_bytes());
        self.bytes.add_to_fingerprint(spec.to_json().as_bytes());
        state.metrics.uploaded(meta.size);
        let input = upload_input(original, (upload_kind, meta.size))?;
        refuse_sprite_for_images(&spec, &input)?;
        self.submit((spec, input), stored).await
    }
}

/// The live ticket of `upload_id` (`None` for anything that is not one).
pub async fn upload_ticket(
    state: &AppState,
    upload_id: &str,
) -> Result<Option<UploadTicket>, ApiError> {
    if uuid::Uuid::try_parse(upload_id).is_err() {
        return Ok(None);
    }
    Ok(state.queue.upload_ticket(upload_id).await?)
}

async fn read_request(mut payload: web::Payload) -> Result<FromUpload, ApiError> {
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
    serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("expected {{\"upload_id\", \"spec\"}}: {e}")))
}

/// The uploaded object's size and header, checked like an upload's; a refused upload is
/// deleted (the client uploads again).
async fn check_upload(
    state: &AppState,
    upload: &ObjectKey,
) -> Result<(ObjectMeta, Upload), ApiError> {
    let meta = state.storage.head(upload).await?.ok_or_else(|| {
        ApiError::BadRequest(
            "nothing was uploaded for this upload_id yet: PUT the file first".into(),
        )
    })?;
    let refused = if meta.size > state.settings.max_upload {
        ApiError::TooLarge {
            limit: state.settings.max_upload,
        }
    } else {
        let head = state.storage.get_prefix(upload, 8 << 20).await?;
        if let engine::Sniffed::Video(container) = engine::sniff(&head) {
            return Ok((meta, Upload::Video(container)));
        }
        match engine::probe(&head, &state.limits) {
            Ok(info) => return Ok((meta, Upload::Image(info))),
            Err(e) => from_probe(e),
        }
    };
    let _ = state.storage.delete(upload).await;
    Err(refused)
}
