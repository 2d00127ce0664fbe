//! `/metrics`: this gateway's request counters, plus what Redis knows about the whole
//! deployment (queue depth, jobs by outcome, job durations, live workers), read at scrape time.

use std::fmt::Write as _;
use std::time::Duration;

use pipeline::queue::Queue;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Request metrics of this gateway process.
#[derive(Clone)]
pub struct GatewayMetrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    upload_bytes: IntCounter,
}

impl Default for GatewayMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl GatewayMetrics {
    pub fn new() -> GatewayMetrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "imagepipe_http_requests_total",
                "HTTP requests by route, method and status",
            ),
            &["route", "method", "status"],
        )
        .expect("metric");
        let latency = HistogramVec::new(
            HistogramOpts::new(
                "imagepipe_http_request_duration_seconds",
                "HTTP request latency by route",
            )
            .buckets(vec![
                0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0,
            ]),
            &["route"],
        )
        .expect("metric");
        let upload_bytes = IntCounter::new(
            "imagepipe_upload_bytes_total",
            "Bytes of images and frames accepted",
        )
        .expect("metric");
        registry
            .register(Box::new(requests.clone()))
            .expect("unique");
        registry
            .register(Box::new(latency.clone()))
            .expect("unique");
        registry
            .register(Box::new(upload_bytes.clone()))
            .expect("unique");
        GatewayMetrics {
            registry,
            requests,
            latency,
            upload_bytes,
        }
    }

    pub fn request(&self, route: &str, method: &str, status: u16, took: Duration) {
        self.requests
            .with_label_values(&[route, method, &status.to_string()])
            .inc();
        self.latency
            .with_label_values(&[route])
            .observe(took.as_secs_f64());
    }

    pub fn uploaded(&self, bytes: u64) {
        self.upload_bytes.inc_by(bytes);
    }

    /// The text exposition: this process's metrics, then the deployment's from Redis (left out,
    /// with a comment, when Redis does not answer).
    pub async fn render(&self, queue: &Queue) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut out);
        let mut text = String::from_utf8(out).unwrap_or_default();
        match deployment_metrics(queue).await {
            Ok(more) => text.push_str(&more),
            Err(e) => {
                let _ = writeln!(text, "# deployment metrics unavailable: {e}");
            }
        }
        text
    }
}

async fn deployment_metrics(queue: &Queue) -> Result<String, pipeline::queue::QueueError> {
    let depth = queue.depth().await?;
    let counters = queue.counters().await?;
    let (totals, durations) = (counters.totals, counters.durations);
    let workers = queue.workers().await?;
    let mut text = String::new();
    let mut w = |line: String| {
        text.push_str(&line);
        text.push('\n');
    };
    w("# HELP imagepipe_queue_depth Jobs not yet finished, by priority and state".into());
    w("# TYPE imagepipe_queue_depth gauge".into());
    for (i, priority) in ["high", "normal", "low"].iter().enumerate() {
        w(format!(
            "imagepipe_queue_depth{{priority=\"{priority}\",state=\"waiting\"}} {}",
            depth.waiting[i]
        ));
        w(format!(
            "imagepipe_queue_depth{{priority=\"{priority}\",state=\"in_flight\"}} {}",
            depth.in_flight[i]
        ));
    }
    w("# HELP imagepipe_queue_delayed Jobs waiting for a retry".into());
    w("# TYPE imagepipe_queue_delayed gauge".into());
    w(format!("imagepipe_queue_delayed {}", depth.delayed));
    w("# HELP imagepipe_dead_letters Jobs in the dead-letter list".into());
    w("# TYPE imagepipe_dead_letters gauge".into());
    w(format!("imagepipe_dead_letters {}", depth.dead));
    w("# HELP imagepipe_jobs_total Jobs ended, by outcome (retried: attempts sent back for a retry)".into());
    w("# TYPE imagepipe_jobs_total counter".into());
    for (outcome, n) in [
        ("succeeded", totals.succeeded),
        ("failed", totals.failed),
        ("cancelled", totals.cancelled),
        ("retried", totals.retried),
        ("dead_lettered", totals.dead),
    ] {
        w(format!("imagepipe_jobs_total{{outcome=\"{outcome}\"}} {n}"));
    }
    w("# HELP imagepipe_job_duration_seconds Time from a job's first start to its end".into());
    w("# TYPE imagepipe_job_duration_seconds histogram".into());
    let mut cumulative = 0;
    for (bound, jobs) in &durations.buckets {
        cumulative += jobs;
        w(format!(
            "imagepipe_job_duration_seconds_bucket{{le=\"{bound}\"}} {cumulative}"
        ));
    }
    let count = durations.count;
    w(format!(
        "imagepipe_job_duration_seconds_bucket{{le=\"+Inf\"}} {count}"
    ));
    let sum = durations.sum_ms as f64 / 1000.0;
    w(format!("imagepipe_job_duration_seconds_sum {sum}"));
    w(format!("imagepipe_job_duration_seconds_count {count}"));
    let now = pipeline::job::now_ms();
    let alive = workers
        .iter()
        .filter(|w| now.saturating_sub(w.last_seen) < 10_000)
        .count();
    w("# HELP imagepipe_workers_alive Workers whose heartbeat is under 10 s old".into());
    w("# TYPE imagepipe_workers_alive gauge".into());
    w(format!("imagepipe_workers_alive {alive}"));
    Ok(text)
}
