//! The worker's Prometheus metrics, served on `--metrics-listen` in the text format.

use std::sync::Arc;
use std::time::Duration;

use pipeline::shutdown::Shutdown;
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
    TextEncoder,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// Cheap to clone; every clone updates the same metrics.
#[derive(Clone)]
pub struct Metrics {
    inner: Arc<Inner>,
}

struct Inner {
    registry: Registry,
    jobs: IntCounterVec,
    stages: HistogramVec,
    pool_busy_micros: IntCounter,
    bytes_in: IntCounter,
    bytes_out: IntCounter,
    in_hand: IntGauge,
    leases_lost: IntCounter,
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let jobs = IntCounterVec::new(
            Opts::new(
                "imagepipe_worker_jobs_total",
                "Attempts this worker finished, by outcome and error code",
            ),
            &["outcome", "code"],
        )
        .expect("metric");
        let stages = HistogramVec::new(
            HistogramOpts::new("imagepipe_worker_stage_seconds", "Time spent per job stage")
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0, 60.0,
                ]),
            &["stage"],
        )
        .expect("metric");
        let pool_busy_micros = IntCounter::new(
            "imagepipe_worker_pool_busy_microseconds_total",
            "Time the engine pool's threads spent on job work",
        )
        .expect("metric");
        let bytes_in = IntCounter::new("imagepipe_worker_bytes_in_total", "Input bytes downloaded")
            .expect("metric");
        let bytes_out =
            IntCounter::new("imagepipe_worker_bytes_out_total", "Output bytes uploaded")
                .expect("metric");
        let in_hand = IntGauge::new(
            "imagepipe_worker_jobs_in_hand",
            "Jobs this worker holds right now",
        )
        .expect("metric");
        let leases_lost = IntCounter::new(
            "imagepipe_worker_leases_lost_total",
            "Attempts stopped because another worker took their job over (fenced off)",
        )
        .expect("metric");
        for collector in [
            Box::new(jobs.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(stages.clone()),
            Box::new(pool_busy_micros.clone()),
            Box::new(bytes_in.clone()),
            Box::new(bytes_out.clone()),
            Box::new(in_hand.clone()),
            Box::new(leases_lost.clone()),
        ] {
            registry.register(collector).expect("unique metric names");
        }
        Metrics {
            inner: Arc::new(Inner {
                registry,
                jobs,
                stages,
                pool_busy_micros,
                bytes_in,
                bytes_out,
                in_hand,
                leases_lost,
            }),
        }
    }

    pub fn job(&self, outcome: &str, code: &str) {
        self.inner.jobs.with_label_values(&[outcome, code]).inc();
    }

    pub fn stage(&self, stage: &str, took: Duration) {
        self.inner
            .stages
            .with_label_values(&[stage])
            .observe(took.as_secs_f64());
    }

    pub fn pool_busy(&self, took: Duration) {
        self.inner.pool_busy_micros.inc_by(took.as_micros() as u64);
    }

    pub fn bytes(&self, input: u64, output: u64) {
        self.inner.bytes_in.inc_by(input);
        self.inner.bytes_out.inc_by(output);
    }

    pub fn lease_lost(&self) {
        self.inner.leases_lost.inc();
    }

    pub fn set_in_hand(&self, jobs: usize) {
        self.inner.in_hand.set(jobs as i64);
    }

    /// The text exposition.
    pub fn render(&self) -> String {
        let mut out = Vec::new();
        let _ = TextEncoder::new().encode(&self.inner.registry.gather(), &mut out);
        String::from_utf8(out).unwrap_or_default()
    }
}

/// Serves `GET /metrics` (any path, in fact) until the shutdown starts. A minimal HTTP/1.1
/// responder: the worker needs no web framework for one read-only endpoint.
pub async fn serve(listener: TcpListener, metrics: Metrics, shutdown: Shutdown) {
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.triggered() => return,
        };
        let Ok((mut socket, _)) = accepted else {
            continue;
        };
        let metrics = metrics.clone();
        tokio::spawn(async move {
            let mut request = [0u8; 1024];
            // One read is enough for a GET; a slow or silent client gets two seconds.
            let _ = tokio::time::timeout(Duration::from_secs(2), socket.read(&mut request)).await;
            let body = metrics.render();
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = socket.write_all(head.as_bytes()).await;
            let _ = socket.write_all(body.as_bytes()).await;
            let _ = socket.shutdown().await;
        });
    }
}
