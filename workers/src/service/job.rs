//! One attempt at one job: download the input, run the engine on the rayon pool, upload the
//! outputs, and say how it ended. Failures are classified once, by their type.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use std::path::{Path, PathBuf};

use pipeline::engine::{
    self, Container, EngineError, FrameSource, Interrupt, Limits, Observer, Rendition, Stage,
};
use pipeline::failure::{Disposition, FailureCode};
use pipeline::job::{JobError, JobInput, JobRecord, Media, OutputRecord};
use pipeline::queue::{Lease, Outcome};
use pipeline::spec::Spec;
use pipeline::storage::{ObjectKey, StorageError};
use pipeline::video::{process_video, VideoLimits};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;
use tokio::sync::{oneshot, watch};

use super::Shared;

/// Why an attempt stopped short.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Storage(#[from] StorageError),
    /// The input is gone (deleted, or expired before the job ran): failing again would not help.
    #[error("the job's input {0} is gone from storage")]
    InputGone(String),
    #[error("the job ran past its {0:?} deadline")]
    Deadline(std::time::Duration),
}

impl AttemptError {
    fn outcome(&self) -> Outcome {
        let (code, disposition) = match self {
            AttemptError::Engine(EngineError::Cancelled) => return Outcome::Cancelled,
            AttemptError::Engine(e) => (e.code(), e.disposition()),
            AttemptError::Storage(e) => (e.code(), e.disposition()),
            AttemptError::InputGone(_) => (FailureCode::StorageError, Disposition::Abort),
            AttemptError::Deadline(_) => (FailureCode::Timeout, Disposition::Retry),
        };
        Outcome::Failed {
            error: JobError {
                code,
                message: self.to_string(),
            },
            disposition,
        }
    }
}

/// Checks a running job's cancel flag and deadline at the engine's stage boundaries, and
/// reports progress.
struct JobObserver {
    cancel: Arc<AtomicBool>,
    deadline: Instant,
    progress: watch::Sender<u8>,
    metrics: crate::metrics::Metrics,
}

impl Observer for JobObserver {
    fn on_stage(&self, stage: Stage<'_>) -> Result<(), Interrupt> {
        if self.cancel.load(Ordering::Relaxed) {
            return Err(Interrupt::Cancelled);
        }
        if Instant::now() >= self.deadline {
            return Err(Interrupt::TimedOut);
        }
        // Decoding is the first tenth, rendering the next eight, uploading the last.
        let percent = match stage {
            Stage::Decoded => 10,
            Stage::Rendered { done, total, .. } => 10 + (80 * done / total.max(1)) as u8,
            Stage::Step => return Ok(()),
        };
        self.progress.send_if_modified(|p| {
            let advanced = percent > *p;
            *p = (*p).max(percent);
            advanced
        });
        Ok(())
    }

    fn on_timing(&self, step: engine::Step, took: Duration) {
        self.metrics.stage(step.as_str(), took);
    }
}

/// Runs one attempt and returns its outcome (never an error: every failure is an outcome).
pub(super) async fn execute(
    shared: &Arc<Shared>,
    lease: &Lease,
    record: &JobRecord,
    cancel: Arc<AtomicBool>,
) -> Outcome {
    let (progress_tx, progress_rx) = watch::channel(0u8);
    let reporter = tokio::spawn(report_progress(shared.clone(), lease.clone(), progress_rx));
    let result = attempt(shared, lease, record, cancel, progress_tx).await;
    reporter.abort();
    match result {
        Ok(made) => Outcome::Succeeded {
            outputs: made.outputs,
            placeholder: made.placeholder,
            media: made.media,
        },
        Err(e) => {
            let outcome = e.outcome();
            if !matches!(outcome, Outcome::Cancelled) {
                tracing::warn!(error = %e, "attempt failed");
            }
            outcome
        }
    }
}

/// The job timeout is a budget of time the attempt's stages spend: downloading, engine work,
/// uploading. Time spent waiting for a free engine thread does not count — a job queued behind
/// another is not running yet.
struct TimeBudget {
    total: Duration,
    spent: Duration,
}

impl TimeBudget {
    fn remaining(&self) -> Duration {
        self.total.saturating_sub(self.spent)
    }

    /// Runs an I/O stage within what is left of the budget.
    async fn io<T, E: Into<AttemptError>>(
        &mut self,
        stage: impl std::future::Future<Output = Result<T, E>>,
    ) -> Result<T, AttemptError> {
        let started = Instant::now();
        let result = tokio::time::timeout(self.remaining(), stage).await;
        self.spent += started.elapsed();
        match result {
            Ok(result) => result.map_err(Into::into),
            Err(_) => Err(AttemptError::Deadline(self.total)),
        }
    }
}

async fn attempt(
    shared: &Arc<Shared>,
    lease: &Lease,
    record: &JobRecord,
    cancel: Arc<AtomicBool>,
    progress: watch::Sender<u8>,
) -> Result<Made, AttemptError> {
    let mut budget = TimeBudget {
        total: shared.settings.job_timeout,
        spent: Duration::ZERO,
    };
    let started = Instant::now();
    let input = budget
        .io(download(shared, &record.input))
        .await
        .map_err(|e| match e {
            AttemptError::Storage(StorageError::NotFound(key)) => AttemptError::InputGone(key),
            other => other,
        })?;
    shared.metrics.stage("download", started.elapsed());

    let spec = record.spec.clone();
    let limits = Limits {
        max_pixels: shared.settings.max_pixels,
        max_frames: shared.settings.video.max_frames,
    };
    let video_limits = shared.settings.video.clone();
    let metrics = shared.metrics.clone();
    let engine_budget = budget.remaining();
    let engine_started = Instant::now();
    let cancelled = cancel.clone();
    let rendered = on_pool(shared, engine_budget, move |deadline| {
        // The engine checks the deadline (and a cancel) at every stage boundary.
        let observer = JobObserver {
            cancel,
            deadline,
            progress,
            metrics,
        };
        render(&input, &spec, &limits, &video_limits, &observer)
    })
    .await
    .map_err(|e| match e {
        EngineError::TimedOut => AttemptError::Deadline(budget.total),
        other => AttemptError::Engine(other),
    })?;
    shared.metrics.stage("engine", engine_started.elapsed());
    budget.spent += engine_budget.min(engine_started.elapsed());

    let upload_started = Instant::now();
    let outputs = budget
        .io(upload(
            shared,
            (&record.id, &attempt_segment(shared, lease)),
            rendered.outputs,
            &rendered.times,
        ))
        .await?;
    shared.metrics.stage("upload", upload_started.elapsed());
    if cancelled.load(Ordering::Relaxed) {
        // Cancelled while the outputs were being stored: none of them is left behind.
        delete_outputs(shared, &outputs).await;
        return Err(AttemptError::Engine(EngineError::Cancelled));
    }
    Ok(Made {
        outputs,
        placeholder: rendered.placeholder,
        media: rendered.media,
    })
}

/// What the engine made of an input.
struct Rendered {
    outputs: Vec<Rendition>,
    placeholder: Option<String>,
    /// For videos: each frame's time, by frame index.
    times: Vec<f64>,
    /// For videos: what the probe found.
    media: Option<Media>,
}

/// What an attempt made, stored.
pub(super) struct Made {
    pub outputs: Vec<OutputRecord>,
    pub placeholder: Option<String>,
    pub media: Option<Media>,
}

/// Runs the engine on an input (on an engine thread).
fn render(
    input: &Input,
    spec: &Spec,
    limits: &Limits,
    video_limits: &VideoLimits,
    observer: &JobObserver,
) -> Result<Rendered, EngineError> {
    let sprite_url = pipeline::spec::SPRITE_OUTPUT;
    let sources: Vec<FrameSource<'_>> = match input {
        Input::Image(bytes) => {
            let processed = engine::process(bytes, spec, limits, observer)?;
            return Ok(Rendered {
                outputs: processed.outputs,
                placeholder: processed.placeholder,
                times: Vec::new(),
                media: None,
            });
        }
        Input::Video(file, container) => {
            let mut video = process_video(
                file.path(),
                *container,
                spec,
                limits,
                video_limits,
                observer,
                sprite_url,
            )?;
            return Ok(Rendered {
                outputs: video.renditions(),
                placeholder: video.placeholder,
                times: video.times,
                media: Some(Media::Video(video.info)),
            });
        }
        Input::Frames(frames) => frames.iter().map(|f| FrameSource::Encoded(f)).collect(),
        Input::Raw(buffer, layout) => layout
            .split(buffer, limits.max_pixels)?
            .into_iter()
            .map(|f| FrameSource::Raw(f, *layout))
            .collect(),
    };
    let (outputs, placeholder) = frames_result(engine::process_frames(
        &sources, spec, limits, observer, sprite_url,
    ))?;
    Ok(Rendered {
        outputs,
        placeholder,
        times: Vec::new(),
        media: None,
    })
}

fn frames_result(
    result: Result<engine::ProcessedFrames, EngineError>,
) -> Result<(Vec<Rendition>, Option<String>), EngineError> {
    let processed = result?;
    let mut outputs = processed.outputs;
    if let Some((sheet, track)) = processed.sprite {
        outputs.push(sheet);
        outputs.push(track);
    }
    Ok((outputs, processed.placeholder))
}

/// Runs CPU work on the worker's rayon pool, never on the async runtime (which must stay free
/// to renew leases), inside the job's tracing span. The work gets `budget` from the moment a
/// pool thread starts it: it sees the deadline at its checkpoints, and past it (plus a grace
/// for the checkpoint to come) the attempt is given up — the abandoned work stops at its next
/// checkpoint.
async fn on_pool<T: Send + 'static>(
    shared: &Arc<Shared>,
    budget: Duration,
    work: impl FnOnce(Instant) -> Result<T, EngineError> + Send + 'static,
) -> Result<T, EngineError> {
    let (started_tx, started_rx) = oneshot::channel();
    let (tx, rx) = oneshot::channel();
    let span = tracing::Span::current();
    let busy = shared.metrics.clone();
    shared.pool.spawn(move || {
        let _entered = span.enter();
        let started = Instant::now();
        let _ = started_tx.send(());
        let deadline = started + budget;
        // The engine contains its own panics; this guards the glue around it.
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(deadline)))
            .unwrap_or_else(|_| Err(EngineError::Internal("the engine task panicked".into())));
        busy.pool_busy(started.elapsed());
        let _ = tx.send(result);
    });
    let lost = || EngineError::Internal("the engine task was lost".into());
    started_rx.await.map_err(|_| lost())?;
    match tokio::time::timeout(budget + Duration::from_secs(1), rx).await {
        Ok(result) => result.unwrap_or_else(|_| Err(lost())),
        Err(_) => Err(EngineError::TimedOut),
    }
}

enum Input {
    Image(Bytes),
    Frames(Vec<Bytes>),
    Raw(Bytes, engine::RawLayout),
    Video(TempFile, Container),
}

/// A local copy of an input, deleted when dropped (decoders read files, not streams).
struct TempFile(PathBuf);

impl TempFile {
    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Streams an object into a temporary file.
async fn download_to_file(shared: &Shared, key: &str) -> Result<TempFile, StorageError> {
    let key = ObjectKey::parse(key)?;
    let dir = std::env::temp_dir().join("imagepipe-inputs");
    let io = |e: std::io::Error| StorageError::Unavailable(format!("local copy: {e}"));
    tokio::fs::create_dir_all(&dir).await.map_err(io)?;
    let file = TempFile(dir.join(uuid::Uuid::new_v4().to_string()));
    let (_, mut stream) = shared.storage.get_stream(&key).await?;
    let mut out = tokio::fs::File::create(file.path()).await.map_err(io)?;
    while let Some(chunk) = stream.next().await {
        out.write_all(&chunk?).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    Ok(file)
}

async fn download(shared: &Shared, input: &JobInput) -> Result<Input, StorageError> {
    let get = |key: String| async move {
        let key = ObjectKey::parse(&key)?;
        shared.storage.get(&key).await
    };
    Ok(match input {
        JobInput::Image { key, .. } => Input::Image(get(key.clone()).await?),
        JobInput::RawFrames { key, layout, .. } => Input::Raw(get(key.clone()).await?, *layout),
        JobInput::Video { key, container, .. } => {
            Input::Video(download_to_file(shared, key).await?, *container)
        }
        JobInput::Frames { keys, .. } => Input::Frames(
            futures::stream::iter(keys.iter().cloned().map(get))
                .buffered(8)
                .try_collect()
                .await?,
        ),
    })
}

/// The key segment of one attempt's outputs: its lease token and its worker, so no two attempts
/// share an object, not even two that a failover gave the same token.
fn attempt_segment(shared: &Shared, lease: &Lease) -> String {
    let worker: String = shared.consumer.name().chars().take(8).collect();
    format!("{}-{worker}", lease.token)
}

/// Stores an attempt's outputs under its own keys (`attempt`: the job id and its segment).
async fn upload(
    shared: &Shared,
    (job_id, attempt): (&str, &str),
    renditions: Vec<Rendition>,
    times: &[f64],
) -> Result<Vec<OutputRecord>, StorageError> {
    futures::stream::iter(renditions.into_iter().map(|rendition| async move {
        let key = ObjectKey::output(
            job_id,
            attempt,
            &rendition.name,
            rendition.frame,
            rendition.media.extension(),
        )?;
        let digest = Sha256::digest(&rendition.data);
        let etag = format!("\"{}\"", pipeline::text::hex(&digest[..16]));
        let bytes = rendition.data.len() as u64;
        let content_type = rendition.media.content_type();
        shared
            .storage
            .put(&key, Bytes::from(rendition.data), content_type)
            .await?;
        Ok(OutputRecord {
            t: rendition.frame.and_then(|f| times.get(f as usize).copied()),
            name: rendition.name,
            frame: rendition.frame,
            content_type: content_type.to_owned(),
            width: rendition.width,
            height: rendition.height,
            bytes,
            key: key.to_string(),
            etag,
        })
    }))
    .buffered(4)
    .try_collect()
    .await
}

/// Deletes stored outputs of an attempt that will not be recorded (a failed delete is logged:
/// `worker gc` finds what is left).
pub(super) async fn delete_outputs(shared: &Shared, outputs: &[OutputRecord]) {
    for output in outputs {
        let deleted = match ObjectKey::parse(&output.key) {
            Ok(key) => shared.storage.delete(&key).await.map_err(|e| e.to_string()),
            Err(e) => Err(e.to_string()),
        };
        if let Err(error) = deleted {
            tracing::warn!(key = %output.key, %error, "cannot delete a cancelled job's output");
        }
    }
}

/// Forwards progress to the job record, at most every 200 ms, and not at all for jobs that end
/// within the first 200 ms (most thumbnails): their final state says it all.
async fn report_progress(shared: Arc<Shared>, lease: Lease, mut progress: watch::Receiver<u8>) {
    tokio::time::sleep(Duration::from_millis(200)).await;
    loop {
        let percent = *progress.borrow_and_update();
        if percent > 0 && shared.consumer.progress(&lease, percent).await == Ok(false) {
            shared.lose_lease(&lease.job_id);
            return;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        if progress.changed().await.is_err() {
            return;
        }
    }
}
