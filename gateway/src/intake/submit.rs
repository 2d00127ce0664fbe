//! Submitting a job whose input is stored, honouring its idempotency key: the same key and
//! request give the same job; the same key with another request is a conflict.

use actix_web::{HttpRequest, HttpResponse};
use pipeline::job::{JobInput, NewJob};
use pipeline::queue::IdempotencyClaim;
use pipeline::spec::Spec;
use pipeline::view::JobLinks;

use super::{Intake, StoredInputs};
use crate::error::ApiError;
use crate::middleware::RequestId;
use crate::state::AppState;

/// A claim whose job never appeared (its gateway died before queueing it) is stale after this.
const STALE_CLAIM_MS: u64 = 60_000;

impl Intake {
    /// Records and queues the job. Its inputs (`stored`) stay with the job; they are deleted
    /// when the request turns out to repeat an earlier one, or when queueing fails.
    pub(super) async fn submit(
        self,
        (spec, input): (Spec, JobInput),
        stored: StoredInputs,
    ) -> Result<HttpResponse, ApiError> {
        let Intake {
            req,
            state,
            caller,
            job_id,
            bytes,
            idempotency,
            _permit,
        } = self;
        let (state, req) = (&*state, &req);
        let job = NewJob {
            id: job_id,
            spec,
            input,
            owner: caller.owner.clone(),
            request_id: RequestId::get(req),
        };
        let owner = caller.owner.as_deref();
        let idempotency = idempotency.map(|key| (key, bytes.fingerprint()));
        if let Some((key, fingerprint)) = &idempotency {
            if let Some(earlier) = claim(state, owner, key, &job.id, fingerprint).await? {
                stored.discard().await;
                return earlier.answer(state, req, fingerprint).await;
            }
        }
        match state.enqueuer.enqueue(job.clone()).await {
            Ok(_) => {
                stored.keep();
                Ok(accepted(state, req, &job.id, "queued"))
            }
            Err(e) => {
                stored.discard().await;
                if let Some((key, _)) = &idempotency {
                    let _ = state.queue.release_idempotency(owner, key).await;
                }
                Err(e.into())
            }
        }
    }
}

/// The job an idempotency key already stands for.
struct Earlier {
    job_id: String,
    fingerprint: String,
}

impl Earlier {
    /// The earlier job's answer, or 409 when the key came with another request.
    async fn answer(
        self,
        state: &AppState,
        req: &HttpRequest,
        fingerprint: &str,
    ) -> Result<HttpResponse, ApiError> {
        if self.fingerprint != fingerprint {
            return Err(ApiError::Conflict(
                "this Idempotency-Key was used with a different request".into(),
            ));
        }
        let status = match state.queue.get(&self.job_id).await? {
            Some(record) => record.status.as_str(),
            None => "queued",
        };
        Ok(accepted(state, req, &self.job_id, status))
    }
}

/// Claims `key` for job `id`; the earlier job when the key is taken (a stale claim, whose job
/// never appeared, is taken over).
async fn claim(
    state: &AppState,
    owner: Option<&str>,
    key: &str,
    id: &str,
    fingerprint: &str,
) -> Result<Option<Earlier>, ApiError> {
    let mut claim = state
        .queue
        .claim_idempotency(owner, key, id, fingerprint)
        .await?;
    if let IdempotencyClaim::Existing {
        job_id, claimed_at, ..
    } = &claim
    {
        let stale = pipeline::job::now_ms().saturating_sub(*claimed_at) > STALE_CLAIM_MS
            && state.queue.get(job_id).await?.is_none();
        if stale {
            state.queue.release_idempotency(owner, key).await?;
            claim = state
                .queue
                .claim_idempotency(owner, key, id, fingerprint)
                .await?;
        }
    }
    Ok(match claim {
        IdempotencyClaim::New => None,
        IdempotencyClaim::Existing {
            job_id,
            fingerprint,
            ..
        } => Some(Earlier {
            job_id,
            fingerprint,
        }),
    })
}

/// The answer to an accepted job.
#[derive(serde::Serialize, serde::Deserialize)]
pub struct Accepted {
    pub id: String,
    pub status: String,
    pub links: JobLinks,
}

/// `202 Accepted` with `Location` and the job's links.
pub fn accepted(state: &AppState, req: &HttpRequest, id: &str, status: &str) -> HttpResponse {
    let self_url = format!("{}/v1/jobs/{id}", state.links(req).base);
    HttpResponse::Accepted()
        .insert_header((actix_web::http::header::LOCATION, self_url.clone()))
        .json(Accepted {
            id: id.to_owned(),
            status: status.to_owned(),
            links: JobLinks {
                events: format!("{self_url}/events"),
                self_: self_url,
            },
        })
}
