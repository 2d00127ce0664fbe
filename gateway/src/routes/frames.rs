//! `POST /v1/frames`: a batch of video frames as one job.

use actix_web::{web, HttpRequest, HttpResponse};

use super::is_multipart;
use crate::error::ApiError;
use crate::intake::Intake;

/// Multipart with repeated `frame` parts (encoded images) and an optional `spec` part, or a raw
/// buffer with `?pixel_format=rgb24|rgba|gray|yuv420p|nv12&width=W&height=H`.
pub async fn create(
    req: HttpRequest,
    intake: Intake,
    payload: web::Payload,
) -> Result<HttpResponse, ApiError> {
    if is_multipart(&req) {
        intake.frames_from_form(payload).await
    } else {
        intake.frames_from_raw(payload).await
    }
}
