//! Intake: how a request becomes a job. Admission (429 past the limits), the declared length
//! (413), the body — multipart or raw, an image or frames, or a presigned upload — streamed
//! into storage with its checks, the spec, and the submission with its idempotency key. Every
//! input stored on the way is deleted if the request ends without a job ([`StoredInputs`]).

mod body;
mod form;
mod frames;
mod image;
mod presigned;
pub mod spec;
mod stored;
mod submit;

use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use futures::future::LocalBoxFuture;
use pipeline::job::new_job_id;
use tokio::sync::OwnedSemaphorePermit;

pub use body::{chunks, store_image, store_raw, store_upload, RequestBytes, Upload, IDLE_TIMEOUT};
pub use presigned::{upload_ticket, TICKET_GRACE};
pub use stored::StoredInputs;
pub use submit::{accepted, Accepted};

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

/// Leeway over `--max-upload` for a declared length: multipart framing and the spec part.
const FRAMING_ALLOWANCE: u64 = 64 << 10;

/// One request being taken in. As an extractor it authenticates the caller and admits the
/// request before the handler runs.
pub struct Intake {
    req: HttpRequest,
    state: web::Data<AppState>,
    caller: Caller,
    /// The id the job will have.
    pub job_id: String,
    /// The request's bytes, counted against `--max-upload` (and hashed for an idempotency key).
    pub bytes: RequestBytes,
    pub idempotency: Option<String>,
    /// The upload's place among those in progress, held until the answer.
    _permit: OwnedSemaphorePermit,
}

impl Intake {
    /// Authenticates (401), admits the request (429 while too many uploads are in progress
    /// or the queue is full), refuses a declared length over the limit (413), and reads its
    /// `Idempotency-Key`.
    async fn begin(req: HttpRequest) -> Result<Intake, ApiError> {
        let state = AppState::of(&req)?;
        let caller = Caller::extract(&req).await?;
        let permit = state.admit(&caller).await?;
        let limit = state.settings.max_upload;
        if content_length(&req).is_some_and(|length| length > limit + FRAMING_ALLOWANCE) {
            return Err(ApiError::TooLarge { limit });
        }
        let idempotency = idempotency_key(&req)?;
        Ok(Intake {
            job_id: new_job_id(),
            bytes: RequestBytes::new(limit, idempotency.is_some()),
            idempotency,
            _permit: permit,
            req,
            state,
            caller,
        })
    }
}

impl FromRequest for Intake {
    type Error = ApiError;
    type Future = LocalBoxFuture<'static, Result<Intake, ApiError>>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        Box::pin(Intake::begin(req.clone()))
    }
}

fn content_length(req: &HttpRequest) -> Option<u64> {
    req.headers()
        .get(actix_web::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

/// The `Idempotency-Key` header, if any.
fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, ApiError> {
    match req.headers().get("idempotency-key") {
        None => Ok(None),
        Some(value) => {
            let key = value.as_bytes();
            let printable = |b: &u8| (b' '..=b'~').contains(b);
            let valid = (1..=255).contains(&key.len())
                && key.iter().all(printable)
                && key.first() != Some(&b' ')
                && key.last() != Some(&b' ');
            if !valid {
                return Err(ApiError::BadRequest(
                    "Idempotency-Key must be 1 to 255 printable ASCII characters".into(),
                ));
            }
            Ok(Some(String::from_utf8_lossy(key).into_owned()))
        }
    }
}
