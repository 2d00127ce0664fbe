//! Frames in (`POST /v1/frames`): repeated `frame` parts (encoded images), or one raw buffer
//! of frames of one layout with `?pixel_format=…&width=…&height=…`.

use actix_web::{web, HttpResponse};
use pipeline::engine::{EngineError, RawLayout, RawPixelFormat};
use pipeline::job::JobInput;
use pipeline::spec::{Spec, SpecError};
use pipeline::storage::ObjectKey;

use super::form::Form;
use super::image::original_key;
use super::spec::{check, missing, query_pairs, spec_from_query};
use super::{chunks, store_image, store_raw, Intake, StoredInputs};
use crate::error::{from_probe, ApiError};
use crate::state::AppState;

/// Query parameters of raw frames (not the spec's).
const RAW_PARAMETERS: [&str; 3] = ["pixel_format", "width", "height"];

impl Intake {
    /// `POST /v1/frames` with `multipart/form-data`.
    pub async fn frames_from_form(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let (state, req) = (self.state.clone(), self.req.clone());
        let state: &AppState = &state;
        let (mut form, query) = Form::open(&req, payload, "frame", "`frame` parts and `spec`")?;
        let mut stored = StoredInputs::new(&state.storage);
        let taken = async {
            while let Some(field) = form.next_file().await? {
                let index = stored.keys().len();
                if index >= state.settings.media.max_frames {
                    return Err(ApiError::BadRequest(format!(
                        "more than {} frames in one job",
                        state.settings.media.max_frames
                    )));
                }
                let key = ObjectKey::original_frame(&self.job_id, index as u32)
                    .map_err(|e| ApiError::Internal(e.to_string()))?;
                stored.add(key.clone());
                store_image(
                    &state.storage,
                    &key,
                    chunks(Box::pin(field)),
                    &mut self.bytes,
                    &state.limits,
                )
                .await
                .map_err(|e| frame_error(index, e))?;
            }
            if stored.keys().is_empty() {
                return Err(ApiError::BadRequest("no `frame` parts".into()));
            }
            let spec = form.spec(query)?;
            check(state, &spec, true)?;
            Ok(spec)
        }
        .await;
        let spec = match taken {
            Ok(spec) => spec,
            Err(e) => {
                stored.discard().await;
                return Err(e);
            }
        };
        let input = JobInput::Frames {
            keys: stored.keys().iter().map(ToString::to_string).collect(),
            bytes: self.bytes.used,
        };
        self.submit_frames((spec, input), stored).await
    }

    /// `POST /v1/frames` with a raw buffer of frames.
    pub async fn frames_from_raw(
        mut self,
        payload: web::Payload,
    ) -> Result<HttpResponse, ApiError> {
        let (state, req) = (self.state.clone(), self.req.clone());
        let state: &AppState = &state;
        let pairs = query_pairs(&req);
        let spec = spec_from_query(&pairs, &RAW_PARAMETERS)?.ok_or_else(missing)?;
        check(state, &spec, true)?;
        let layout = raw_layout(&pairs)?;
        EngineError::check_pixels(
            u64::from(layout.width),
            u64::from(layout.height),
            state.limits.max_pixels,
        )
        .map_err(from_probe)?;
        let key = original_key(&self.job_id)?;
        let mut stored = StoredInputs::new(&state.storage);
        stored.add(key.clone());
        let taken = async {
            let bytes = store_raw(&state.storage, &key, chunks(payload), &mut self.bytes).await?;
            let frames = frame_count(state, &layout, bytes)?;
            Ok(JobInput::RawFrames {
                key: key.to_string(),
                bytes,
                layout,
                frames,
            })
        }
        .await;
        match taken {
            Ok(input) => self.submit_frames((spec, input), stored).await,
            Err(e) => {
                stored.discard().await;
                Err(e)
            }
        }
    }

    async fn submit_frames(
        mut self,
        (spec, input): (Spec, JobInput),
        stored: StoredInputs,
    ) -> Result<HttpResponse, ApiError> {
        self.bytes.add_to_fingerprint(spec.to_json().as_bytes());
        self.state.metrics.uploaded(self.bytes.used);
        self.submit((spec, input), stored).await
    }
}

/// How many frames of `layout` a buffer of `bytes` holds, within `--max-frames`.
fn frame_count(state: &AppState, layout: &RawLayout, bytes: u64) -> Result<u32, ApiError> {
    match layout.frame_count(bytes, state.limits.max_pixels) {
        Ok(frames) if frames as usize <= state.settings.media.max_frames => Ok(frames as u32),
        Ok(frames) => Err(ApiError::BadRequest(format!(
            "{frames} frames, over the limit of {}",
            state.settings.media.max_frames
        ))),
        Err(EngineError::BadFrames(why)) => Err(ApiError::BadRequest(why)),
        Err(other) => Err(from_probe(other)),
    }
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
