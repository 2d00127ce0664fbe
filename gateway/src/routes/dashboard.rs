//! The dashboard: a static page (embedded in the binary) and what it reads — `GET /v1/stats`
//! (queue depth, workers, outcome counters per minute, run-time percentiles, all read from
//! Redis, so nothing is lost when a gateway restarts) and `GET /v1/events`, a Server-Sent
//! Events stream of every job's changes with fresh stats every few seconds.

use std::sync::Arc;
use std::time::Duration;

use actix_web::http::header;
use actix_web::{web, HttpResponse};
use bytes::Bytes;
use pipeline::queue::{DurationSummary, OutcomeCounts, TenantLoad, WorkerInfo};
use serde::Serialize;
use tokio::sync::broadcast;

use crate::auth::Caller;
use crate::error::ApiError;
use crate::state::AppState;

const PAGE: &str = include_str!("../dashboard/index.html");

/// How often a dashboard stream carries fresh stats.
const STATS_EVERY: Duration = Duration::from_secs(2);
/// Minutes of history in the charts.
const CHART_MINUTES: u64 = 15;
/// How many of the busiest API keys the dashboard lists.
const BUSIEST_KEYS: usize = 10;

/// `GET /`: the dashboard page. It holds no data: it asks for an API key when the gateway has
/// keys and sends it with every call.
pub async fn page() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'self'; img-src * blob: data:; style-src 'unsafe-inline'; \
             script-src 'unsafe-inline'; connect-src *",
        ))
        .body(PAGE)
}

/// Queue depth per priority.
#[derive(Serialize)]
pub struct DepthView {
    pub high: u64,
    pub normal: u64,
    pub low: u64,
    /// Delivered to a worker and not finished yet.
    pub running: u64,
    /// Retries waiting for their time.
    pub delayed: u64,
    /// Jobs in the dead-letter list.
    pub dead: u64,
    /// Everything not started yet (waiting + delayed).
    pub backlog: u64,
}

/// A live worker, from its last heartbeat.
#[derive(Serialize)]
pub struct WorkerView {
    pub id: String,
    pub host: String,
    pub pid: u32,
    pub threads: u32,
    pub jobs_in_hand: u32,
    pub version: String,
    /// RFC 3339.
    pub started_at: String,
    /// Milliseconds since its last heartbeat.
    pub last_seen_ms_ago: u64,
}

/// Jobs that ended in one minute.
#[derive(Serialize)]
pub struct MinuteView {
    /// Start of the minute, RFC 3339.
    pub minute: String,
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retried: u64,
    /// Mean run time of the jobs that succeeded, in milliseconds.
    pub mean_ms: Option<u64>,
}

/// Run-time percentiles of the last (up to 1000) jobs that succeeded.
#[derive(Serialize)]
pub struct DurationsView {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub p99_ms: u64,
    pub max_ms: u64,
}

/// Counters since the queue began.
#[derive(Serialize)]
pub struct TotalsView {
    pub succeeded: u64,
    pub failed: u64,
    pub cancelled: u64,
    pub retried: u64,
    pub dead: u64,
}

/// What the dashboard shows, besides job lists.
#[derive(Serialize)]
pub struct Stats {
    pub queue: String,
    /// RFC 3339, when these figures were read.
    pub at: String,
    pub depth: DepthView,
    pub workers: Vec<WorkerView>,
    pub totals: TotalsView,
    /// The last 15 minutes, oldest first.
    pub minutes: Vec<MinuteView>,
    pub durations: DurationsView,
    /// The API keys with the most jobs queued or running (by key id, never the key).
    pub tenants: Vec<TenantLoad>,
}

impl From<OutcomeCounts> for TotalsView {
    fn from(c: OutcomeCounts) -> Self {
        TotalsView {
            succeeded: c.succeeded,
            failed: c.failed,
            cancelled: c.cancelled,
            retried: c.retried,
            dead: c.dead,
        }
    }
}

impl From<DurationSummary> for DurationsView {
    fn from(d: DurationSummary) -> Self {
        DurationsView {
            count: d.count,
            p50_ms: d.p50_ms,
            p95_ms: d.p95_ms,
            p99_ms: d.p99_ms,
            max_ms: d.max_ms,
        }
    }
}

fn worker_view(w: WorkerInfo, now: u64) -> WorkerView {
    WorkerView {
        started_at: pipeline::view::rfc3339(w.started_at),
        last_seen_ms_ago: now.saturating_sub(w.last_seen),
        id: w.id,
        host: w.host,
        pid: w.pid,
        threads: w.threads,
        jobs_in_hand: w.jobs_in_hand,
        version: w.version,
    }
}

/// Reads everything the stats hold, concurrently.
async fn read_stats(state: &AppState) -> Result<Stats, ApiError> {
    let queue = &state.queue;
    let (depth, workers, totals, minutes, durations, tenants) = tokio::try_join!(
        queue.depth(),
        queue.workers(),
        queue.outcome_totals(),
        queue.outcome_minutes(CHART_MINUTES),
        queue.recent_durations(),
        queue.busiest_tenants(BUSIEST_KEYS),
    )?;
    let now = pipeline::job::now_ms();
    Ok(Stats {
        queue: queue.config().name.clone(),
        at: pipeline::view::rfc3339(now),
        depth: DepthView {
            high: depth.waiting[0],
            normal: depth.waiting[1],
            low: depth.waiting[2],
            running: depth.in_flight.iter().sum(),
            delayed: depth.delayed,
            dead: depth.dead,
            backlog: depth.backlog(),
        },
        workers: workers.into_iter().map(|w| worker_view(w, now)).collect(),
        totals: totals.into(),
        minutes: minutes
            .into_iter()
            .map(|(minute, counts, run_ms)| MinuteView {
                minute: pipeline::view::rfc3339(minute * 60_000),
                mean_ms: run_ms.checked_div(counts.succeeded),
                succeeded: counts.succeeded,
                failed: counts.failed,
                cancelled: counts.cancelled,
                retried: counts.retried,
            })
            .collect(),
        durations: durations.into(),
        tenants,
    })
}

/// `GET /v1/stats`: queue depth, workers, outcome counters per minute and run-time
/// percentiles. Operational figures of the whole queue: any valid key may read them.
pub async fn stats(state: web::Data<AppState>, _caller: Caller) -> Result<HttpResponse, ApiError> {
    Ok(HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(read_stats(&state).await?))
}

/// `GET /v1/events`: Server-Sent Events for dashboards. `event: stats` (the body of
/// `GET /v1/stats`) at once and every 2 s; `event: job` (`{"id", "status", "progress",
/// "attempts", "ts", "error"?}`) for every change of a job the caller may see.
pub async fn events(state: web::Data<AppState>, caller: Caller) -> HttpResponse {
    let firehose = state.events.subscribe_all();
    let state = state.into_inner();
    HttpResponse::Ok()
        .content_type("text/event-stream")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .insert_header(("x-accel-buffering", "no"))
        .streaming(dashboard_stream(state, caller, firehose))
}

fn dashboard_stream(
    state: Arc<AppState>,
    caller: Caller,
    firehose: broadcast::Receiver<String>,
) -> impl futures::Stream<Item = Result<Bytes, actix_web::Error>> {
    struct Follow {
        state: Arc<AppState>,
        caller: Caller,
        firehose: broadcast::Receiver<String>,
        next_stats: tokio::time::Instant,
    }
    let follow = Follow {
        state,
        caller,
        firehose,
        next_stats: tokio::time::Instant::now(),
    };
    futures::stream::unfold(follow, |mut f| async move {
        loop {
            let event = tokio::select! {
                () = tokio::time::sleep_until(f.next_stats) => {
                    f.next_stats = tokio::time::Instant::now() + STATS_EVERY;
                    match read_stats(&f.state).await {
                        Ok(stats) => format!(
                            "event: stats\ndata: {}\n\n",
                            serde_json::to_string(&stats).unwrap_or_default()
                        ),
                        Err(_) => ": redis unavailable, retrying\n\n".to_owned(),
                    }
                }
                message = f.firehose.recv() => match message {
                    Ok(payload) => match job_event(&f.caller, &payload) {
                        Some(event) => event,
                        None => continue,
                    },
                    // Fell behind: the next stats catch the page up.
                    Err(broadcast::error::RecvError::Lagged(_)) => continue,
                    Err(broadcast::error::RecvError::Closed) => return None,
                },
            };
            return Some((Ok(Bytes::from(event)), f));
        }
    })
}

/// One job's event for this caller, without its owner; `None` when it is another key's job.
fn job_event(caller: &Caller, payload: &str) -> Option<String> {
    let mut value: serde_json::Value = serde_json::from_str(payload).ok()?;
    let object = value.as_object_mut()?;
    let owner = object.remove("owner");
    if !caller.may_see(owner.as_ref().and_then(|o| o.as_str())) {
        return None;
    }
    Some(format!("event: job\ndata: {value}\n\n"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn job_events_are_filtered_by_owner_and_lose_it() {
        let open = Caller { owner: None };
        let alice = Caller {
            owner: Some("a1".into()),
        };
        let payload =
            r#"{"id":"j","status":"queued","progress":0,"attempts":0,"ts":1,"owner":"b2"}"#;
        assert!(job_event(&alice, payload).is_none());
        let seen = job_event(&open, payload).unwrap();
        assert!(seen.starts_with("event: job\ndata: {"), "{seen}");
        assert!(!seen.contains("owner"), "{seen}");
        let mine = payload.replace("b2", "a1");
        assert!(job_event(&alice, &mine).unwrap().contains(r#""id":"j""#));
        assert!(job_event(&open, "not json").is_none());
    }
}
