//! One image in: a multipart form (`file` and an optional `spec` part), or a raw body with the
//! spec in the query.

use actix_web::{web, HttpResponse};
use pipeline::engine::SourceInfo;
use pipeline::job::JobInput;
use pipeline::spec::Spec;
use pipeline::storage::ObjectKey;

use super::form::Form;
use super::spec::{check, missing, query_pairs, spec_from_query};
use super::{chunks, store_image, Intake, StoredInputs};
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
                    "no `file` part: send the image as a part named `file`".into(),
                ));
            };
            let key = original_key(&self.job_id)?;
            stored.add(key.clone());
            let image = store_image(
                &state.storage,
                &key,
                chunks(Box::pin(field)),
                &mut self.bytes,
                &state.limits,
            )
            .await?;
            form.finish().await?;
            let spec = form.spec(query)?;
            check(state, &spec, false)?;
            Ok((spec, image_input(key, image)))
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

    /// `POST /v1/jobs` with the image as the body and the spec in the query (known before the
    /// body is read).
    pub async fn image_from_body(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let (state, req) = (self.state.clone(), self.req.clone());
        let state: &AppState = &state;
        let spec: Spec = spec_from_query(&query_pairs(&req), &[])?.ok_or_else(missing)?;
        check(state, &spec, false)?;
        self.bytes.add_to_fingerprint(spec.to_json().as_bytes());
        let key = original_key(&self.job_id)?;
        let mut stored = StoredInputs::new(&state.storage);
        stored.add(key.clone());
        let image = match store_image(
            &state.storage,
            &key,
            chunks(payload),
            &mut self.bytes,
            &state.limits,
        )
        .await
        {
            Ok(image) => image,
            Err(e) => {
                stored.discard().await;
                return Err(e);
            }
        };
        let input = image_input(key, image);
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
    }
}
