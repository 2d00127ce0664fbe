//! One image or video in: a multipart form (`file` and an optional `spec` part), or a raw body
//! with the spec in the query. What the bytes are decides: an image's header is checked now, a
//! video is probed by the worker's decoder.

use actix_web::{web, HttpResponse};
use pipeline::engine::SourceInfo;
use pipeline::job::JobInput;
use pipeline::spec::{Spec, SpecError};
use pipeline::storage::ObjectKey;

use super::body::Upload;
use super::form::Form;
use super::spec::{check, missing, query_pairs, spec_from_query};
use super::{chunks, store_upload, Intake, StoredInputs};
use crate::error::ApiError;
use crate::state::AppState;

impl Intake {
    /// `POST /v1/jobs` with `multipart/form-data`.
    pub async fn image_from_form(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let (state, req) = (self.state.clone(), self.req.clone());
        let state: &AppState = &state;
        let (mut form, query) = Form::open(&req, payload, "file", "`file` and `spec`")?;
        let mut stored = StoredInputs::new(&state.storage);
        let taken = async {
            let Some(field) = form.next_file().await? else {
                return Err(ApiError::BadRequest(
                    "no `file` part: send the image or video as a part named `file`".into(),
                ));
            };
            let key = original_key(&self.job_id)?;
            stored.add(key.clone());
            let upload = store_upload(
                &state.storage,
                &key,
                chunks(Box::pin(field)),
                &mut self.bytes,
                &state.limits,
            )
            .await?;
            form.finish().await?;
            let spec = form.spec(query)?;
            check(state, &spec, true)?;
            let input = upload_input(key, upload)?;
            refuse_sprite_for_images(&spec, &input)?;
            Ok((spec, input))
        }
        .await;
        match taken {
            Ok((spec, input)) => {
                self.bytes.add_to_fingerprint(spec.to_json().as_bytes());
                state.metrics.uploaded(input.bytes());
                self.submit((spec, input), stored).await
            }
            Err(e) => {
                stored.discard().await;
                Err(e)
            }
        }
    }

    /// `POST /v1/jobs` with the image or video as the body and the spec in the query (known
    /// before the body is read).
    pub async fn image_from_body(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let (state, req) = (self.state.clone(), self.req.clone());
        let state: &AppState = &state;
        let spec: Spec = spec_from_query(&query_pairs(&req), &[])?.ok_or_else(missing)?;
        check(state, &spec, true)?;
        self.bytes.add_to_fingerprint(spec.to_json().as_bytes());
        let key = original_key(&self.job_id)?;
        let mut stored = StoredInputs::new(&state.storage);
        stored.add(key.clone());
        let stored_upload = store_upload(
            &state.storage,
            &key,
            chunks(payload),
            &mut self.bytes,
            &state.limits,
        )
        .await;
        let input = match stored_upload.and_then(|upload| {
            let input = upload_input(key, upload)?;
            refuse_sprite_for_images(&spec, &input)?;
            Ok(input)
        }) {
            Ok(input) => input,
            Err(e) => {
                stored.discard().await;
                return Err(e);
            }
        };
        state.metrics.uploaded(input.bytes());
        self.submit((spec, input), stored).await
    }
}

pub(super) fn original_key(job_id: &str) -> Result<ObjectKey, ApiError> {
    ObjectKey::original(job_id).map_err(|e| ApiError::Internal(e.to_string()))
}

/// A stored image as the job's input.
pub(super) fn image_input(key: ObjectKey, (info, bytes): (SourceInfo, u64)) -> JobInput {
    JobInput::Image {
        key: key.to_string(),
        bytes,
        format: info.format,
        width: info.width,
        height: info.height,
        colour_space: Some(info.colour_space),
        hdr: info.hdr,
    }
}

/// A stored upload as the job's input.
pub(super) fn upload_input(
    key: ObjectKey,
    (upload, bytes): (Upload, u64),
) -> Result<JobInput, ApiError> {
    Ok(match upload {
        Upload::Image(info) => image_input(key, (info, bytes)),
        Upload::Video(container) => JobInput::Video {
            key: key.to_string(),
            bytes,
            container,
        },
    })
}

/// A sprite is made from frames: of a video or a frame job, never of one image.
pub(super) fn refuse_sprite_for_images(spec: &Spec, input: &JobInput) -> Result<(), ApiError> {
    if spec.sprite.is_some() && matches!(input, JobInput::Image { .. }) {
        return Err(ApiError::BadSpec(SpecError::new(
            "sprite",
            "only videos and frame jobs (POST /v1/frames) make sprites",
        )));
    }
    Ok(())
}
