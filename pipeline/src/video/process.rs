//! A whole video job: probe, choose the frames, decode them, and render every output of every
//! frame — plus the sprite and its track with the frames' real times. Frames close together
//! are decoded in one pass per engine thread (the video cut into as many spans), frames far
//! apart by a seek each; either way frames are rendered as they arrive, so only a few are held
//! at once. Runs on an engine thread; decoders are stopped at the observer's word (cancel,
//! deadline).

use std::ops::Range;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, SyncSender, TrySendError};
use std::time::Duration;

use rayon::prelude::*;

use super::child::Flow;
use super::{
    choose_times, poster, probe, Frame, FrameReader, PrimedDecoders, Video, VideoError, VideoInfo,
    VideoLimits,
};
use crate::engine::{
    Container, EngineError, FrameRenderer, FrameSource, Interrupt, Limits, Observer, RawLayout,
    RawPixelFormat, Rendition, Stage,
};
use crate::spec::{Filter, FrameChoice, Op, Spec};

/// Chosen frames at most this far apart on average (seconds), or closer than keyframes are,
/// are decoded in one pass: a seek costs a decoder start and the frames from the keyframe
/// before.
const DENSE_SPACING: f64 = 2.0;

/// What a video job made.
#[derive(Debug, Clone)]
pub struct ProcessedVideo {
    pub info: VideoInfo,
    /// Every output of every frame, frame by frame (each tagged with its frame index).
    pub outputs: Vec<Rendition>,
    /// The time of each frame, seconds from the first frame, by frame index.
    pub times: Vec<f64>,
    pub sprite: Option<(Rendition, Rendition)>,
    pub placeholder: Option<String>,
}

impl ProcessedVideo {
    /// Every rendition: the frames' outputs, then the sprite and its track.
    pub fn renditions(&mut self) -> Vec<Rendition> {
        let mut all = std::mem::take(&mut self.outputs);
        all.extend(
            self.sprite
                .take()
                .into_iter()
                .flat_map(|(sheet, track)| [sheet, track]),
        );
        all
    }
}

/// Processes the video at `path` (a `container`, by its bytes) with `spec`.
pub fn process_video(
    path: &Path,
    container: Container,
    spec: &Spec,
    limits: &Limits,
    video_limits: &VideoLimits,
    observer: &dyn Observer,
    sprite_url: &str,
) -> Result<ProcessedVideo, EngineError> {
    let wanted = spec.video.clone().unwrap_or_default();
    if wanted.frames == FrameChoice::Poster {
        let (video, frame) = poster(path, container, video_limits, shrink(spec), observer)?;
        let mut job = VideoRender::new(&video, spec, limits, observer, 1);
        job.timed(0, frame.t);
        job.render(vec![(0, frame)])?;
        return job.finish(sprite_url);
    }
    let stop = || observer.on_stage(Stage::Step).err();
    // Decoders load while the probe runs; a refusal stops them unused.
    let primed = PrimedDecoders::start(primed_for(&wanted.frames), video_limits);
    let info = probe(path, container, video_limits, &stop)?;
    let video = Video {
        path: path.to_owned(),
        info,
    };
    let reader = FrameReader::new(&video, video_limits, shrink(spec)).with_primed(&primed);
    let budget = (wanted.max_frames as usize).min(limits.max_frames).max(1);
    let times = choose_times(
        path,
        &video.info,
        &wanted.frames,
        budget,
        video_limits,
        &stop,
    )?;
    let mut job = VideoRender::new(&video, spec, limits, observer, times.len().max(1));
    let keyframes = wanted.frames == FrameChoice::Keyframes;
    match plan(&times, &video.info, keyframes) {
        Some(spans) => {
            primed.keep(spans.len());
            decode_spans(&reader, &times, &spans, keyframes, observer, &mut job)?
        }
        None => seek_each(&reader, &times, &stop, &mut job)?,
    }
    drop(primed);
    job.finish(sprite_url)
}

/// How many decoders to start before the probe: one per engine thread for the choices whose
/// frames are decoded by time (the first passes take them), none for keyframes and scenes
/// (their own passes come first).
fn primed_for(choice: &FrameChoice) -> usize {
    let threads = rayon::current_num_threads().max(1);
    match choice {
        FrameChoice::Every(_) => threads,
        FrameChoice::Count(count) => (*count as usize).min(threads),
        FrameChoice::At(times) => times.len().min(threads),
        FrameChoice::Poster | FrameChoice::Keyframes | FrameChoice::Scenes(_) => 0,
    }
}

/// How small frames may come from the decoder (width, height; 0: any) and still give every
/// output as from a full-size frame: twice the size of the resize every output starts with,
/// and of the sprite's cells. `None` (full size) when an output starts otherwise (a crop in
/// pixels, say) or resizes with `nearest` (whose look a smooth shrink first would change).
fn shrink(spec: &Spec) -> Option<(u32, u32)> {
    let mut size = spec.sprite.as_ref().map_or((0, 0), |s| (s.width * 2, 0));
    for output in &spec.outputs {
        let Some(Op::Resize(resize)) = output.ops.first() else {
            return None;
        };
        if resize.filter == Filter::Nearest {
            return None;
        }
        size.0 = size.0.max(resize.width.unwrap_or(0).saturating_mul(2));
        size.1 = size.1.max(resize.height.unwrap_or(0).saturating_mul(2));
    }
    (size != (0, 0)).then_some(size)
}

/// The spans to decode in one pass each, or `None` to seek to each time. Keyframes are always
/// read in one pass (only they are decoded). The video is cut into as many spans as there are
/// engine threads, but no more than keyframes allow: a span decodes from the keyframe before
/// its first time, so spans shorter than the keyframe interval would decode the same frames.
fn plan(times: &[f64], info: &VideoInfo, keyframes: bool) -> Option<Vec<Range<usize>>> {
    let (first, last) = (times.first()?, times.last()?);
    let spacing = (last - first) / (times.len().max(2) - 1) as f64;
    let dense = spacing <= DENSE_SPACING.max(info.keyframe_interval);
    if times.len() < 2 || !(keyframes || dense) {
        return None;
    }
    let by_keyframes = if keyframes || info.keyframe_interval <= 0.0 {
        times.len()
    } else {
        ((last - first) / info.keyframe_interval) as usize
    };
    let spans = rayon::current_num_threads()
        .min(by_keyframes)
        .clamp(1, times.len());
    Some(
        (0..spans)
            .map(|i| i * times.len() / spans..(i + 1) * times.len() / spans)
            .collect(),
    )
}

/// A seek per time, a decoder per engine thread at once.
fn seek_each(
    reader: &FrameReader<'_>,
    times: &[f64],
    stop: &(dyn Fn() -> Option<Interrupt> + Sync),
    job: &mut VideoRender<'_>,
) -> Result<(), EngineError> {
    let indexed: Vec<(u32, f64)> = (0u32..).zip(times.iter().copied()).collect();
    for chunk in indexed.chunks(rayon::current_num_threads().max(1)) {
        let frames: Vec<(u32, Option<Frame>)> = chunk
            .par_iter()
            .map(|(index, t)| Ok((*index, reader.frame_at(*t, stop)?)))
            .collect::<Result<_, VideoError>>()?;
        // A time with no frame (past the end, timestamps that jump) is skipped.
        let batch: Vec<(u32, Frame)> = frames
            .into_iter()
            .filter_map(|(index, frame)| frame.map(|frame| (index, frame)))
            .collect();
        for (index, frame) in &batch {
            job.timed(*index, frame.t);
        }
        job.render(batch)?;
    }
    Ok(())
}

/// Each span of `times` decoded in one pass by a decoder of its own, all at once; frames are
/// rendered as they come, from whichever decoder.
fn decode_spans(
    reader: &FrameReader<'_>,
    times: &[f64],
    spans: &[Range<usize>],
    keyframes: bool,
    observer: &dyn Observer,
    job: &mut VideoRender<'_>,
) -> Result<(), EngineError> {
    let failed = AtomicBool::new(false);
    let stop = || {
        observer.on_stage(Stage::Step).err().or_else(|| {
            failed
                .load(Ordering::Relaxed)
                .then_some(Interrupt::Cancelled)
        })
    };
    let batch_size = rayon::current_num_threads().max(1);
    // One decoder alone may use every core; several share them.
    let threads = if spans.len() == 1 { 0 } else { 1 };
    let (tx, rx) = mpsc::sync_channel::<(u32, Frame)>(batch_size * 2);
    std::thread::scope(|scope| {
        let decoders: Vec<_> = spans
            .iter()
            .map(|span| {
                let (tx, stop) = (tx.clone(), &stop);
                scope.spawn(move || {
                    let first = span.start as u32;
                    let mut next = first;
                    let times = reader.frames_between(
                        &times[span.clone()],
                        (keyframes, threads),
                        stop,
                        &mut |frame| {
                            next += 1;
                            offer(&tx, (next - 1, frame), stop)
                        },
                    )?;
                    Ok::<_, VideoError>((first, times))
                })
            })
            .collect();
        drop(tx);
        let mut outcome = render_as_they_come(&rx, batch_size, job);
        if outcome.is_err() {
            failed.store(true, Ordering::Relaxed);
        }
        drop(rx);
        for decoder in decoders {
            match decoder.join() {
                Ok(Ok((first, times))) => {
                    for (index, t) in (first..).zip(times) {
                        job.timed(index, t);
                    }
                }
                Ok(Err(e)) => outcome = outcome.and(Err(e.into())),
                Err(panic) => std::panic::resume_unwind(panic),
            }
        }
        outcome
    })
}

/// Renders frames from `rx`, a batch (one per engine thread) at a time, until every decoder
/// is done.
fn render_as_they_come(
    rx: &mpsc::Receiver<(u32, Frame)>,
    batch_size: usize,
    job: &mut VideoRender<'_>,
) -> Result<(), EngineError> {
    let mut batch = Vec::with_capacity(batch_size);
    for frame in rx.iter() {
        batch.push(frame);
        // Whatever else has arrived joins the batch.
        batch.extend(rx.try_iter().take(batch_size - batch.len().min(batch_size)));
        if batch.len() >= batch_size {
            job.render(std::mem::take(&mut batch))?;
        }
    }
    job.render(batch)
}

/// Hands `item` on, waiting for room while the job is not stopped.
fn offer<T>(tx: &SyncSender<T>, item: T, stop: &dyn Fn() -> Option<Interrupt>) -> Flow {
    let mut item = item;
    loop {
        match tx.try_send(item) {
            Ok(()) => return Flow::More,
            Err(TrySendError::Full(back)) if stop().is_none() => {
                item = back;
                std::thread::sleep(Duration::from_millis(2));
            }
            Err(_) => return Flow::Enough,
        }
    }
}

/// Renders decoded frames batch by batch into every output, then the sprite.
struct VideoRender<'a> {
    video: &'a Video,
    spec: &'a Spec,
    limits: &'a Limits,
    observer: &'a dyn Observer,
    total: usize,
    renderer: Option<FrameRenderer<'a>>,
    /// Index and time of every frame rendered.
    times: Vec<(u32, f64)>,
}

impl<'a> VideoRender<'a> {
    fn new(
        video: &'a Video,
        spec: &'a Spec,
        limits: &'a Limits,
        observer: &'a dyn Observer,
        total: usize,
    ) -> VideoRender<'a> {
        VideoRender {
            video,
            spec,
            limits,
            observer,
            total,
            renderer: None,
            times: Vec::with_capacity(total),
        }
    }

    /// Frame `index` is at `t` seconds.
    fn timed(&mut self, index: u32, t: f64) {
        self.times.push((index, t));
    }

    fn render(&mut self, batch: Vec<(u32, Frame)>) -> Result<(), EngineError> {
        let Some((_, first)) = batch.first() else {
            return Ok(());
        };
        let renderer = match &mut self.renderer {
            Some(renderer) => renderer,
            None => self.renderer.insert(FrameRenderer::new(
                &source(first),
                self.total,
                self.spec,
                self.limits,
                self.observer,
            )?),
        };
        let sources: Vec<(u32, FrameSource<'_>)> =
            batch.iter().map(|(i, frame)| (*i, source(frame))).collect();
        renderer.render(&sources)
    }

    fn finish(mut self, sprite_url: &str) -> Result<ProcessedVideo, EngineError> {
        let renderer = self.renderer.take().ok_or_else(|| {
            EngineError::from(VideoError::Damaged(
                "no frame could be decoded at the chosen times".into(),
            ))
        })?;
        self.times.sort_by_key(|(index, _)| *index);
        // Two times on one frame (closer than a frame apart) give that frame once.
        let mut previous = f64::NAN;
        let mut repeated = Vec::new();
        self.times.retain(|(index, t)| {
            let again = *t == previous;
            previous = *t;
            if again {
                repeated.push(*index);
            }
            !again
        });
        let mut renderer = renderer;
        renderer.forget(&repeated);
        let end = self.video.info.duration.max(0.0);
        let processed = renderer.finish(sprite_url, &self.times, end)?;
        Ok(ProcessedVideo {
            info: self.video.info.clone(),
            outputs: processed.outputs,
            times: self.times.into_iter().map(|(_, t)| t).collect(),
            sprite: processed.sprite,
            placeholder: processed.placeholder,
        })
    }
}

fn source(frame: &Frame) -> FrameSource<'_> {
    FrameSource::Raw(
        &frame.rgb,
        RawLayout {
            pixel_format: RawPixelFormat::Rgb24,
            width: frame.width,
            height: frame.height,
        },
    )
}
