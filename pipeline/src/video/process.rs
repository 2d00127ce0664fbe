//! A whole video job: probe, choose the frames, decode them a batch at a time (decoders in
//! parallel, one per engine thread), and render every output of every frame — plus the sprite
//! and its track with the frames' real times. Runs on an engine thread; decoders are stopped
//! at the observer's word (cancel, deadline).

use std::path::Path;

use rayon::prelude::*;

use super::{
    choose_times, poster, probe, Frame, FrameReader, Video, VideoError, VideoInfo, VideoLimits,
};
use crate::engine::{
    Container, EngineError, FrameRenderer, FrameSource, Limits, Observer, RawLayout,
    RawPixelFormat, Rendition, Stage,
};
use crate::spec::{FrameChoice, Spec};

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
    let stop = || observer.on_stage(Stage::Step).err();
    let info = probe(path, container, video_limits, &stop)?;
    let video = Video {
        path: path.to_owned(),
        info,
    };
    let reader = FrameReader::new(&video, video_limits);
    let wanted = spec.video.clone().unwrap_or_default();
    let budget = (wanted.max_frames as usize).min(limits.max_frames).max(1);
    let times = match wanted.frames {
        FrameChoice::Poster => Vec::new(),
        ref choice => choose_times(path, &video.info, choice, budget, video_limits, &stop)?,
    };
    let mut job = VideoRender::new(&video, spec, limits, observer, times.len().max(1));
    if wanted.frames == FrameChoice::Poster {
        job.render(vec![poster(&reader, &video.info, &stop)?])?;
    } else {
        // A batch (one decoder per engine thread) is decoded, then rendered and dropped: the
        // frames held are bounded by the threads, and progress moves frame by frame.
        for chunk in times.chunks(rayon::current_num_threads().max(1)) {
            let frames: Vec<Option<Frame>> = chunk
                .par_iter()
                .map(|t| reader.frame_at(*t, &stop))
                .collect::<Result<_, _>>()?;
            // A time with no frame (past the end, timestamps that jump) is skipped.
            job.render(frames.into_iter().flatten().collect())?;
        }
    }
    job.finish(sprite_url)
}

/// Renders decoded frames batch by batch into every output, then the sprite.
struct VideoRender<'a> {
    video: &'a Video,
    spec: &'a Spec,
    limits: &'a Limits,
    observer: &'a dyn Observer,
    total: usize,
    renderer: Option<FrameRenderer<'a>>,
    times: Vec<f64>,
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

    fn render(&mut self, batch: Vec<Frame>) -> Result<(), EngineError> {
        if batch.is_empty() {
            return Ok(());
        }
        let sources: Vec<FrameSource<'_>> = batch.iter().map(source).collect();
        let renderer = match &mut self.renderer {
            Some(renderer) => renderer,
            None => self.renderer.insert(FrameRenderer::new(
                &sources[0],
                self.total,
                self.spec,
                self.limits,
                self.observer,
            )?),
        };
        renderer.render(&sources, self.times.len() as u32)?;
        self.times.extend(batch.iter().map(|f| f.t));
        Ok(())
    }

    fn finish(self, sprite_url: &str) -> Result<ProcessedVideo, EngineError> {
        let renderer = self.renderer.ok_or_else(|| {
            EngineError::from(VideoError::Damaged(
                "no frame could be decoded at the chosen times".into(),
            ))
        })?;
        let end = self.video.info.duration.max(0.0);
        let processed = renderer.finish(sprite_url, &self.times, end)?;
        Ok(ProcessedVideo {
            info: self.video.info.clone(),
            outputs: processed.outputs,
            times: self.times,
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
