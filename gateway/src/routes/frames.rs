//! `POST /v1/frames`: a batch of video frames as one job.

use actix_web::{web, HttpRequest, HttpResponse};

use super::is_multipart;
use crate::error::ApiError;
use crate::intake::Intake;

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
    responses((status = 202, body = crate::intake::Accepted), (status = 400), (status = 401), (status = 413), (status = 415), (status = 422), (status = 429), (status = 503))
)]
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
