//! `/v1/dead-letter`: jobs that exhausted their retries, and putting one back on the queue.

use actix_web::{web, HttpRequest, HttpResponse};
use pipeline::view::{rfc3339, JobView};
use serde::{Deserialize, Serialize};

use super::{page_cursor, page_limit, VisibleJob};
use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

#[derive(Deserialize)]
pub struct DeadQuery {
    /// 1–100 (default 20)
    limit: Option<usize>,
    /// from the previous page's `next_cursor`
    cursor: Option<String>,
}

#[derive(Serialize, Deserialize)]
pub struct DeadLetterView {
    /// RFC 3339.
    pub failed_at: String,
    pub job: JobView,
}

#[derive(Serialize, Deserialize)]
pub struct DeadLetterList {
    pub jobs: Vec<DeadLetterView>,
    pub next_cursor: Option<String>,
}

/// `GET /v1/dead-letter`: newest first; each key sees its own.
pub async fn list(
    req: HttpRequest,
    query: web::Query<DeadQuery>,
    state: web::Data<AppState>,
    caller: Caller,
) -> Result<HttpResponse, ApiError> {
    let limit = page_limit(query.limit)?;
    let cursor = page_cursor(query.cursor.as_deref(), pipeline::queue::is_stream_cursor)?;
    let links = state.links(&req);
    let mut jobs = Vec::new();
    let mut cursor = cursor.map(str::to_owned);
    // Other keys' entries are skipped, so a page may take several reads.
    loop {
        let (letters, next) = state.queue.dead_letters(limit, cursor.as_deref()).await?;
        for letter in letters {
            if caller.may_see(letter.job.owner.as_deref()) && jobs.len() < limit {
                jobs.push(DeadLetterView {
                    failed_at: rfc3339(letter.failed_at),
                    job: JobView::new(&letter.job, &links),
                });
            }
        }
        cursor = next;
        if jobs.len() >= limit || cursor.is_none() {
            break;
        }
    }
    Ok(HttpResponse::Ok().json(DeadLetterList {
        jobs,
        next_cursor: cursor,
    }))
}

/// `POST /v1/dead-letter/{id}/replay`: back on the queue with a fresh set of attempts.
pub async fn replay(job: VisibleJob) -> Result<HttpResponse, ApiError> {
    if !job.state.queue.replay(&job.record.id).await? {
        return Err(ApiError::NotFound(format!(
            "job {} is not in the dead-letter list",
            job.record.id
        )));
    }
    Ok(HttpResponse::Accepted().json(job.reread().await?))
}
