//! `POST /v1/frames`: a batch of video frames as one job.

use actix_multipart::Multipart;
use actix_web::{web, HttpMessage, HttpRequest, HttpResponse};
use futures::StreamExt;
use pipeline::engine::{EngineError, RawLayout, RawPixelFormat};
use pipeline::job::{new_job_id, JobInput};
use pipeline::spec::{Spec, SpecError};
use pipeline::storage::ObjectKey;

use super::jobs::{content_length, read_small, submit, MAX_SPEC_LEN};
use super::{check_spec, idempotency_key, query_pairs, spec_from_query};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;
use crate::upload::{chunks, store_image, store_raw, Budget};

/// Multipart with repeated `frame` parts (encoded images) and an optional `spec` part, or a raw
/// buffer with `?pixel_format=rgb24|rgba|gray|yuv420p|nv12&width=W&height=H`.
#[utoipa::path(
    post,
    path = "/v1/frames",
    tag = "jobs",
    request_body(content = Vec<u8>, description = "multipart (repeated `frame` parts, optional `spec`) or a raw frame buffer"),
    params(("pixel_format" = Option<String>, Query, description = "raw buffers: rgb24, rgba, gray, yuv420p or nv12"),
           ("width" = Option<u32>, Query, description = "raw buffers: frame width"),
           ("height" = Option<u32>, Query, description = "raw buffers: frame height"),
           ("spec" = Option<String>, Query, description = "the spec as JSON")),
    responses((status = 202, body = super::Accepted), (status = 400), (status = 401), (status = 413), (status = 415), (status = 422), (status = 429), (status = 503))
)]
pub async fn create(
    req: HttpRequest,
    payload: web::Payload,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let _upload = state.admit().await?;
    let limit = state.settings.max_upload;
    if content_length(&req).is_some_and(|length| length > limit + (64 << 10)) {
        return Err(ApiError::TooLarge { limit });
    }
    let idempotency = idempotency_key(&req)?;
    let pairs = query_pairs(&req);
    let job_id = new_job_id();
    let mut budget = Budget::new(limit, idempotency.is_some());
    let multipart = req
        .content_type()
        .to_ascii_lowercase()
        .starts_with("multipart/form-data");

    let (spec, input) = if multipart {
        let query_spec = spec_from_query(&pairs, &[])?;
        let mut parts = Multipart::new(req.headers(), payload);
        let mut spec_text = None;
        let mut keys: Vec<ObjectKey> = Vec::new();
        let result = async {
            while let Some(field) = parts.next().await {
                let field =
                    field.map_err(|e| ApiError::BadRequest(format!("bad multipart body: {e}")))?;
                match field.name() {
                    Some("spec") => {
                        if spec_text
                            .replace(read_small(field, MAX_SPEC_LEN, "spec").await?)
                            .is_some()
                        {
                            return Err(ApiError::BadSpec(SpecError::new(
                                "spec",
                                "is given twice",
                            )));
                        }
                    }
                    Some("frame") => {
                        if keys.len() >= state.settings.max_frames {
                            return Err(ApiError::BadRequest(format!(
                                "more than {} frames in one job",
                                state.settings.max_frames
                            )));
                        }
                        let key = ObjectKey::original_frame(&job_id, keys.len() as u32)
                            .map_err(|e| ApiError::Internal(e.to_string()))?;
                        store_image(
                            &state.storage,
                            &key,
                            chunks(Box::pin(field)),
                            &mut budget,
                            &state.limits,
                        )
                        .await
                        .map_err(|e| frame_error(keys.len(), e))?;
                        keys.push(key);
                    }
                    Some(other) => {
                        return Err(ApiError::BadRequest(format!(
                            "unknown multipart part `{other}` (expected `frame` parts and `spec`)"
                        )))
                    }
                    None => {
                        return Err(ApiError::BadRequest(
                            "a multipart part without a name".into(),
                        ))
                    }
                }
            }
            if keys.is_empty() {
                return Err(ApiError::BadRequest("no `frame` parts".into()));
            }
            let spec = match (spec_text.take(), query_spec) {
                (Some(_), Some(_)) => {
                    return Err(ApiError::BadSpec(SpecError::new(
                        "spec",
                        "give the spec as a part or in the query, not both",
                    )))
                }
                (Some(text), None) => Spec::from_json(&text)?,
                (None, Some(spec)) => spec,
                (None, None) => return Err(no_spec()),
            };
            check_spec(&state, &spec, true)?;
            Ok(spec)
        }
        .await;
        match result {
            Ok(spec) => {
                let input = JobInput::Frames {
                    keys: keys.iter().map(ToString::to_string).collect(),
                    bytes: budget.used,
                };
                (spec, input)
            }
            Err(e) => {
                for key in &keys {
                    let _ = state.storage.delete(key).await;
                }
                return Err(e);
            }
        }
    } else {
        let spec =
            spec_from_query(&pairs, &["pixel_format", "width", "height"])?.ok_or_else(no_spec)?;
        check_spec(&state, &spec, true)?;
        let layout = raw_layout(&pairs)?;
        pipeline::engine::EngineError::check_pixels(
            u64::from(layout.width),
            u64::from(layout.height),
            state.limits.max_pixels,
        )
        .map_err(crate::error::from_probe)?;
        let key = ObjectKey::original(&job_id).map_err(|e| ApiError::Internal(e.to_string()))?;
        let bytes = store_raw(&state.storage, &key, chunks(payload), &mut budget).await?;
        let frames = match layout.frame_count(bytes, state.limits.max_pixels) {
            Ok(frames) if frames as usize <= state.settings.max_frames => frames as u32,
            Ok(frames) => {
                let _ = state.storage.delete(&key).await;
                return Err(ApiError::BadRequest(format!(
                    "{frames} frames, over the limit of {}",
                    state.settings.max_frames
                )));
            }
            Err(e) => {
                let _ = state.storage.delete(&key).await;
                return Err(match e {
                    EngineError::BadFrames(why) => ApiError::BadRequest(why),
                    other => crate::error::from_probe(other),
                });
            }
        };
        (
            spec,
            JobInput::RawFrames {
                key: key.to_string(),
                bytes,
                layout,
                frames,
            },
        )
    };
    budget.add_to_fingerprint(spec.to_json().as_bytes());
    state.metrics.uploaded(budget.used);
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

fn no_spec() -> ApiError {
    ApiError::BadSpec(SpecError::new(
        "spec",
        "is required: a `spec` part, ?spec=<JSON>, or the shorthand",
    ))
}

fn frame_error(index: usize, e: ApiError) -> ApiError {
    match e {
        ApiError::UnsupportedMediaType(why) => {
            ApiError::UnsupportedMediaType(format!("frame {index}: {why}"))
        }
        ApiError::Unprocessable(why) => ApiError::Unprocessable(format!("frame {index}: {why}")),
        other => other,
    }
}

/// `pixel_format`, `width` and `height` from the query; each refusal names its parameter.
fn raw_layout(pairs: &[(String, String)]) -> Result<RawLayout, ApiError> {
    let get = |name: &str| {
        pairs
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    let bad = |field: &str, why: String| ApiError::BadSpec(SpecError::new(field, why));
    let pixel_format = get("pixel_format").ok_or_else(|| {
        bad(
            "pixel_format",
            format!("is required for raw frames ({})", RawPixelFormat::NAMES),
        )
    })?;
    let pixel_format = RawPixelFormat::parse(pixel_format).ok_or_else(|| {
        bad(
            "pixel_format",
            format!("must be one of {}", RawPixelFormat::NAMES),
        )
    })?;
    let dimension = |name: &str| -> Result<u32, ApiError> {
        get(name)
            .ok_or_else(|| bad(name, "is required for raw frames".into()))?
            .parse::<u32>()
            .ok()
            .filter(|v| (1..=65535).contains(v))
            .ok_or_else(|| bad(name, "must be an integer in 1..=65535".into()))
    };
    Ok(RawLayout {
        pixel_format,
        width: dimension("width")?,
        height: dimension("height")?,
    })
}
