//! The image engine: one decode feeds every output of a spec, and outputs are rendered in
//! parallel on rayon. Callers run it on a rayon pool (or any thread that may block), never on an
//! async runtime.
//!
//! ```no_run
//! use pipeline::engine::{self, Limits};
//! use pipeline::spec::Spec;
//!
//! let spec = Spec::from_json(r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":256}]}]}"#)?;
//! let bytes = std::fs::read("photo.jpg")?;
//! let processed = engine::process(&bytes, &spec, &Limits::default(), &())?;
//! for output in &processed.outputs {
//!     println!("{} {}x{} {} bytes", output.name, output.width, output.height, output.data.len());
//! }
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod animation;
mod colour;
mod decode;
mod encode;
mod error;
mod frames;
mod geometry;
mod heif;
mod jpeg;
mod jxl;
mod ops;
mod riff;
mod smartcrop;
mod sniff;
mod tiff;
mod tonemap;

use std::borrow::Cow;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering};

use image::DynamicImage;
use rayon::prelude::*;

use crate::spec::{Format, OutputSpec, Placeholder, Spec, SPRITE_OUTPUT, SPRITE_TRACK_OUTPUT};

pub use colour::{ColourSpace, HdrTransfer};
pub use decode::SourceInfo;
pub use error::EngineError;
pub use frames::{sprite_track, RawLayout, RawPixelFormat, SpriteLayout};
pub use sniff::{sniff, Container, Sniffed, SourceFormat, SNIFF_LEN};

use colour::ToSrgb;
use decode::{Decoded, Header};
use encode::EncodeOptions;
use error::panic_message;
use ops::{SmartPins, Working};

/// Bounds on the work one job may cause.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Largest width × height of a source image, a frame, or any intermediate or output image.
    pub max_pixels: u64,
    /// Most frames in one frame job.
    pub max_frames: usize,
}

impl Limits {
    /// The most pixels all outputs of one image (or frame) together may pass through: their
    /// largest intermediate sizes summed. Twice the per-image limit, so one full-size copy plus
    /// its thumbnails always fits, while 16 outputs each just under the limit do not.
    pub fn output_budget(&self) -> u64 {
        self.max_pixels.saturating_mul(2)
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_pixels: 100_000_000,
            max_frames: 2_000,
        }
    }
}

/// A point where the engine reports progress and may be stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage<'a> {
    /// The source is decoded (for frames: every frame is decoded as it is rendered).
    Decoded,
    /// `done` of `total` outputs (or frames) are encoded; the last one was `name`.
    Rendered {
        name: &'a str,
        done: usize,
        total: usize,
    },
    /// Between two steps (ops, encoding) of an output: no progress to report, but a place to
    /// stop, so a cancelled or timed-out job frees its thread within one step.
    Step,
}

/// Why the engine was told to stop at a checkpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Interrupt {
    Cancelled,
    TimedOut,
}

/// A timed part of the engine's work, for stage metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Reading the header and decoding (once per image, once per frame).
    Decode,
    /// One output's ops.
    Ops,
    /// Encoding one output.
    Encode,
}

impl Step {
    pub fn as_str(self) -> &'static str {
        match self {
            Step::Decode => "decode",
            Step::Ops => "ops",
            Step::Encode => "encode",
        }
    }
}

/// Watches a job's progress; returning an [`Interrupt`] stops it at that stage boundary.
pub trait Observer: Sync {
    fn on_stage(&self, stage: Stage<'_>) -> Result<(), Interrupt>;

    /// How long a step took (outputs run in parallel: their steps overlap).
    fn on_timing(&self, _step: Step, _took: std::time::Duration) {}
}

/// No observer: never interrupts.
impl Observer for () {
    fn on_stage(&self, _: Stage<'_>) -> Result<(), Interrupt> {
        Ok(())
    }
}

fn checkpoint(observer: &dyn Observer, stage: Stage<'_>) -> Result<(), EngineError> {
    observer
        .on_stage(stage)
        .map_err(|interrupt| match interrupt {
            Interrupt::Cancelled => EngineError::Cancelled,
            Interrupt::TimedOut => EngineError::TimedOut,
        })
}

/// What an output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Media {
    Image(Format),
    /// A WebVTT thumbnail track.
    WebVtt,
}

impl Media {
    pub fn content_type(self) -> &'static str {
        match self {
            Media::Image(format) => format.content_type(),
            Media::WebVtt => "text/vtt",
        }
    }

    pub fn extension(self) -> &'static str {
        match self {
            Media::Image(format) => format.extension(),
            Media::WebVtt => "vtt",
        }
    }
}

/// One encoded output.
#[derive(Debug, Clone)]
pub struct Rendition {
    pub name: String,
    /// For frame jobs: the frame it was made from.
    pub frame: Option<u32>,
    pub media: Media,
    /// Pixel size (0 × 0 for a track).
    pub width: u32,
    pub height: u32,
    pub data: Vec<u8>,
}

/// The result of [`process`].
#[derive(Debug, Clone)]
pub struct Processed {
    pub source: SourceInfo,
    pub outputs: Vec<Rendition>,
    /// The BlurHash, when the spec asks for one.
    pub placeholder: Option<String>,
}

/// Reads the header only: the format and upright size, refusing what [`process`] would refuse
/// before decoding (not an image, unsupported format, over the pixel limit).
pub fn probe(bytes: &[u8], limits: &Limits) -> Result<SourceInfo, EngineError> {
    decode::read_header(bytes, limits).map(|header| header.info())
}

/// Decodes `bytes` once and renders every output of `spec`, in parallel. Panics anywhere in the
/// engine come back as errors; none escapes.
#[tracing::instrument(skip_all, fields(bytes = bytes.len(), outputs = spec.outputs.len()))]
pub fn process(
    bytes: &[u8],
    spec: &Spec,
    limits: &Limits,
    observer: &dyn Observer,
) -> Result<Processed, EngineError> {
    contain_panics(|| {
        let started = std::time::Instant::now();
        let header = decode::read_header(bytes, limits)?;
        let animation = animation::inspect(bytes, header.format, spec, limits)?;
        let decoded = decode_for(bytes, &header, spec, limits, animation.as_ref())?;
        observer.on_timing(Step::Decode, started.elapsed());
        checkpoint(observer, Stage::Decoded)?;
        let placeholder = match spec.placeholder {
            Some(Placeholder::Blurhash) => Some(blurhash(&decoded)?),
            None => None,
        };
        let progress = Progress::new(observer, spec.outputs.len());
        let is_still = |output: &&OutputSpec| {
            animation.is_none() || !animation::wants_animation(output, header.format)
        };
        let mut outputs = spec
            .outputs
            .par_iter()
            .filter(is_still)
            .map(|output| {
                let rendition = render(&decoded, spec, output, None, observer)?;
                progress.rendered(&output.name)?;
                Ok(rendition)
            })
            .collect::<Result<Vec<_>, EngineError>>()?;
        if let Some(animation) = &animation {
            let animated =
                animation::render(bytes, &header, &decoded, spec, animation, limits, &progress)?;
            outputs.extend(animated);
            // In the spec's order, as without animation.
            outputs.sort_by_key(|r| spec.outputs.iter().position(|o| o.name == r.name));
        }
        Ok(Processed {
            source: decoded.info,
            outputs,
            placeholder,
        })
    })
}

/// Counts finished outputs for [`Stage::Rendered`].
struct Progress<'a> {
    observer: &'a dyn Observer,
    done: AtomicUsize,
    total: usize,
}

impl<'a> Progress<'a> {
    fn new(observer: &'a dyn Observer, total: usize) -> Self {
        Progress {
            observer,
            done: AtomicUsize::new(0),
            total,
        }
    }

    /// Reports output `name` done; the observer may stop the job here.
    fn rendered(&self, name: &str) -> Result<(), EngineError> {
        let done = self.done.fetch_add(1, Ordering::Relaxed) + 1;
        checkpoint(
            self.observer,
            Stage::Rendered {
                name,
                done,
                total: self.total,
            },
        )
    }
}

/// Decodes at the smallest size every output can still be made from.
fn decode_for(
    bytes: &[u8],
    header: &Header,
    spec: &Spec,
    limits: &Limits,
    animation: Option<&animation::Container>,
) -> Result<Decoded, EngineError> {
    let source = header.info();
    let size = (source.width, source.height);
    let mut min_scale = plan_outputs(size, spec, source.format, limits, animation)?;
    if spec.placeholder.is_some() {
        // The placeholder is computed from a tiny copy: any decode scale serves it.
        min_scale =
            min_scale.max(f64::from(BLURHASH_SIZE) / f64::from(source.width.max(source.height)));
    }
    decode::decode(bytes, header, min_scale, limits)
}

/// Plans every output of `spec` from a source of `size` (refusing any over the limits, alone or
/// together; an animated output counts every frame) and returns the smallest decode scale all
/// of them can be made from.
fn plan_outputs(
    size: (u32, u32),
    spec: &Spec,
    source_format: SourceFormat,
    limits: &Limits,
    animation: Option<&animation::Container>,
) -> Result<f64, EngineError> {
    let mut min_scale: f64 = 0.0;
    let mut total: u64 = 0;
    for output in &spec.outputs {
        let format = output_format(output, source_format);
        let plan = geometry::plan_output(size, output, format, limits.max_pixels)?;
        min_scale = min_scale.max(plan.min_decode_scale);
        let frames = match animation {
            Some(animation) if animation::wants_animation(output, source_format) => {
                u64::from(animation.frames)
            }
            _ => 1,
        };
        total = total.saturating_add(plan.peak_pixels.saturating_mul(frames));
        if total > limits.output_budget() {
            let counted = if frames > 1 {
                format!(" ({frames} frames)")
            } else {
                String::new()
            };
            return Err(EngineError::OutputTooLarge {
                output: output.name.clone(),
                width: u64::from(plan.final_size.0),
                height: u64::from(plan.final_size.1),
                reason: format!(
                    "the outputs together{counted} would pass through {total} pixels, over the \
                     budget of {} pixels per image",
                    limits.output_budget()
                ),
            });
        }
    }
    Ok(min_scale)
}

/// Runs one output's ops and encodes it.
fn render(
    decoded: &Decoded,
    spec: &Spec,
    output: &OutputSpec,
    frame: Option<u32>,
    observer: &dyn Observer,
) -> Result<Rendition, EngineError> {
    let format = output_format(output, decoded.info.format);
    let keeps_metadata = spec.keeps_metadata(output);
    let keeps_profile = keeps_metadata && encode::embeds_icc(format);
    let shaping = Shaping {
        output,
        format,
        to_srgb: to_srgb_for(decoded, keeps_profile),
        observer,
    };
    let ops_started = std::time::Instant::now();
    let image = shape(
        &decoded.image,
        decoded.logical,
        &shaping,
        &mut SmartPins::Free,
    )?;
    observer.on_timing(Step::Ops, ops_started.elapsed());
    let encode_started = std::time::Instant::now();
    let data = encode::encode(
        &image,
        &EncodeOptions {
            format,
            quality: output.quality.unwrap_or_else(|| format.default_quality()),
            lossless: output.lossless,
            metadata: keeps_metadata.then_some(&decoded.metadata),
        },
    )?;
    observer.on_timing(Step::Encode, encode_started.elapsed());
    Ok(Rendition {
        name: output.name.clone(),
        frame,
        media: Media::Image(format),
        width: image.width(),
        height: image.height(),
        data,
    })
}

/// The format `output` is encoded in, from a source in `source`.
fn output_format(output: &OutputSpec, source: SourceFormat) -> Format {
    output.format.unwrap_or_else(|| source.default_output())
}

/// The conversion to sRGB an output needs: none for sRGB sources, none when the output embeds
/// the source's profile (it keeps metadata and its encoder can embed one).
fn to_srgb_for(decoded: &Decoded, keeps_profile: bool) -> Option<&ToSrgb> {
    decoded.colour.as_deref().filter(|_| !keeps_profile)
}

/// How one output's ops run.
struct Shaping<'a> {
    output: &'a OutputSpec,
    format: Format,
    /// Run on the output's pixels after its ops: a fraction of the source's.
    to_srgb: Option<&'a ToSrgb>,
    observer: &'a dyn Observer,
}

/// Runs an output's ops on `image` (which stands for `logical`, larger when shrunk on load)
/// and converts the result to sRGB when asked.
fn shape<'i>(
    image: &'i DynamicImage,
    logical: (u32, u32),
    shaping: &Shaping<'_>,
    pins: &mut SmartPins,
) -> Result<Cow<'i, DynamicImage>, EngineError> {
    let Shaping {
        output,
        format,
        to_srgb,
        observer,
    } = shaping;
    let mut work = Working {
        image: Cow::Borrowed(image),
        logical,
    };
    for op in &output.ops {
        checkpoint(*observer, Stage::Step)?;
        work = ops::apply(work, op, *format, pins)?;
    }
    checkpoint(*observer, Stage::Step)?;
    if work.logical != (work.image.width(), work.image.height()) {
        // No resize after a shrink-on-load decode (the spec had no ops): restore the full size.
        let full = crate::spec::Op::Resize(full_size_resize(logical));
        work = ops::apply(work, &full, *format, pins)?;
    }
    Ok(match to_srgb {
        Some(to_srgb) => Cow::Owned(to_srgb.apply(work.image.into_owned())),
        None => work.image,
    })
}

fn full_size_resize((width, height): (u32, u32)) -> crate::spec::Resize {
    crate::spec::Resize {
        width: Some(width),
        height: Some(height),
        fit: crate::spec::Fit::Fill,
        filter: crate::spec::Filter::Lanczos3,
        enlarge: true,
        background: None,
        gravity: crate::spec::Gravity::Center,
    }
}

/// Side of the copy a BlurHash is computed from: the hash keeps only a few frequencies.
const BLURHASH_SIZE: u32 = 32;

fn blurhash(decoded: &Decoded) -> Result<String, EngineError> {
    let image = &decoded.image;
    let (w, h) = (image.width(), image.height());
    let k = f64::from(BLURHASH_SIZE) / f64::from(w.max(h));
    let (sw, sh) = if k < 1.0 {
        (
            ((f64::from(w) * k).round() as u32).max(1),
            ((f64::from(h) * k).round() as u32).max(1),
        )
    } else {
        (w, h)
    };
    let mut small = DynamicImage::new(sw, sh, image.color());
    fast_image_resize::Resizer::new()
        .resize(image, &mut small, None)
        .map_err(|e| EngineError::Internal(format!("placeholder resize: {e}")))?;
    if let Some(to_srgb) = &decoded.colour {
        small = to_srgb.apply(small);
    }
    let rgba = small.to_rgba8();
    let (cx, cy) = if w >= h { (4, 3) } else { (3, 4) };
    blurhash::encode(cx, cy, sw, sh, rgba.as_raw())
        .map_err(|e| EngineError::Internal(format!("blurhash: {e}")))
}

/// One frame of a frame job.
#[derive(Debug, Clone, Copy)]
pub enum FrameSource<'a> {
    /// An encoded image (JPEG, PNG, WebP, GIF).
    Encoded(&'a [u8]),
    /// Raw pixels in the given layout.
    Raw(&'a [u8], RawLayout),
}

/// The result of [`process_frames`].
#[derive(Debug, Clone)]
pub struct ProcessedFrames {
    /// Every output of every frame, frame by frame, each tagged with its frame.
    pub outputs: Vec<Rendition>,
    /// The sprite sheet and its WebVTT track, when the spec asks for a sprite.
    pub sprite: Option<(Rendition, Rendition)>,
    /// The first frame's BlurHash, when the spec asks for one.
    pub placeholder: Option<String>,
}

/// Renders every output of `spec` for every frame, frames in parallel. With a sprite in the
/// spec, also lays out the sprite sheet and a WebVTT track whose cues point at `sprite_url`.
/// Only one decoded frame per thread is held at a time: the sheet keeps just the small cells.
#[tracing::instrument(skip_all, fields(frames = frames.len(), outputs = spec.outputs.len()))]
pub fn process_frames(
    frames: &[FrameSource<'_>],
    spec: &Spec,
    limits: &Limits,
    observer: &dyn Observer,
    sprite_url: &str,
) -> Result<ProcessedFrames, EngineError> {
    check_frame_count(frames.len(), limits)?;
    let mut renderer = FrameRenderer::new(&frames[0], frames.len(), spec, limits, observer)?;
    let indexed: Vec<(u32, FrameSource<'_>)> = (0u32..).zip(frames.iter().copied()).collect();
    renderer.render(&indexed)?;
    let interval = spec.sprite.as_ref().map_or(1.0, |s| f64::from(s.interval));
    let times: Vec<(u32, f64)> = (0u32..)
        .zip(0..frames.len())
        .map(|(index, i)| (index, i as f64 * interval))
        .collect();
    renderer.finish(sprite_url, &times, frames.len() as f64 * interval)
}

/// Renders frames into every output of a spec batch by batch, keeping only what the outputs
/// need (renditions and small sprite cells), so a video's frames never have to be held at once.
/// Frames carry an index that orders them; they may come in any order and with gaps (a video
/// time with no frame of its own): [`FrameRenderer::finish`] numbers them 0, 1, … in order.
pub struct FrameRenderer<'a> {
    spec: &'a Spec,
    limits: &'a Limits,
    observer: &'a dyn Observer,
    layout: Option<SpriteLayout>,
    total: usize,
    done: AtomicUsize,
    outputs: Vec<Rendition>,
    cells: Vec<(u32, DynamicImage)>,
    /// The placeholder of the earliest frame so far.
    placeholder: Option<(u32, String)>,
}

impl<'a> FrameRenderer<'a> {
    /// Ready for up to `total` frames like `first` (its size sizes the sprite's cells).
    pub fn new(
        first: &FrameSource<'_>,
        total: usize,
        spec: &'a Spec,
        limits: &'a Limits,
        observer: &'a dyn Observer,
    ) -> Result<FrameRenderer<'a>, EngineError> {
        contain_panics(|| {
            check_frame_count(total, limits)?;
            let logical = match (first, &spec.sprite) {
                (FrameSource::Raw(_, layout), _) => (layout.width, layout.height),
                (_, None) => (1, 1),
                (FrameSource::Encoded(_), Some(_)) => decode_frame(first, spec, limits)?.logical,
            };
            let layout = spec
                .sprite
                .as_ref()
                .map(|sprite| sprite_layout(sprite, logical, total, limits))
                .transpose()?;
            checkpoint(observer, Stage::Decoded)?;
            Ok(FrameRenderer {
                spec,
                limits,
                observer,
                layout,
                total,
                done: AtomicUsize::new(0),
                outputs: Vec::with_capacity(total * spec.outputs.len()),
                cells: Vec::new(),
                placeholder: None,
            })
        })
    }

    /// Renders `frames` (each with its index) in parallel, one decoded frame per thread at a
    /// time.
    pub fn render(&mut self, frames: &[(u32, FrameSource<'_>)]) -> Result<(), EngineError> {
        let (spec, limits, observer) = (self.spec, self.limits, self.observer);
        let (layout, done, total) = (self.layout.as_ref(), &self.done, self.total);
        // Only the earliest frame's placeholder can be kept: only it is computed.
        let earliest = frames.iter().map(|(index, _)| *index).min();
        let placeholder_of = earliest.filter(|index| {
            spec.placeholder.is_some() && self.placeholder.as_ref().is_none_or(|(p, _)| index < p)
        });
        let rendered = contain_panics(|| {
            frames
                .par_iter()
                .map(|(index, frame)| {
                    let wants_placeholder = placeholder_of == Some(*index);
                    let rendered = render_frame(
                        frame,
                        *index,
                        spec,
                        limits,
                        layout,
                        observer,
                        wants_placeholder,
                    )?;
                    let done = (done.fetch_add(1, Ordering::Relaxed) + 1).min(total);
                    checkpoint(
                        observer,
                        Stage::Rendered {
                            name: "frame",
                            done,
                            total,
                        },
                    )?;
                    Ok((*index, rendered))
                })
                .collect::<Result<Vec<_>, EngineError>>()
        })?;
        for (index, frame) in rendered {
            self.outputs.extend(frame.renditions);
            self.cells.extend(frame.cell.map(|cell| (index, cell)));
            if let Some(hash) = frame.placeholder {
                self.placeholder = Some((index, hash));
            }
        }
        Ok(())
    }

    /// Drops what the frames at `indices` gave (frames found to repeat others).
    pub fn forget(&mut self, indices: &[u32]) {
        if indices.is_empty() {
            return;
        }
        self.outputs
            .retain(|r| r.frame.is_none_or(|frame| !indices.contains(&frame)));
        self.cells.retain(|(index, _)| !indices.contains(index));
    }

    /// Every output, frame by frame and numbered 0, 1, … in index order, and the sprite whose
    /// cues start at the frames' times (`times`: index and seconds of every rendered frame, in
    /// order) and whose last cue ends at `end`.
    pub fn finish(
        mut self,
        sprite_url: &str,
        times: &[(u32, f64)],
        end: f64,
    ) -> Result<ProcessedFrames, EngineError> {
        let number = |index: u32| times.partition_point(|(i, _)| *i < index) as u32;
        self.outputs.sort_by_key(|r| r.frame);
        for output in &mut self.outputs {
            output.frame = output.frame.map(number);
        }
        self.cells.sort_by_key(|(index, _)| *index);
        let cells: Vec<DynamicImage> = self.cells.into_iter().map(|(_, cell)| cell).collect();
        let seconds: Vec<f64> = times.iter().map(|(_, t)| *t).collect();
        let sprite = match (&self.spec.sprite, self.layout) {
            (Some(sprite), Some(layout)) => Some(contain_panics(|| {
                // Laid out again for the frames there are (fewer than asked for, maybe).
                let layout = layout.for_frames(sprite.columns, cells.len() as u32);
                sprite_outputs(sprite, &layout, &cells, &seconds, end, sprite_url)
            })?),
            _ => None,
        };
        Ok(ProcessedFrames {
            outputs: self.outputs,
            sprite,
            placeholder: self.placeholder.map(|(_, hash)| hash),
        })
    }
}

fn check_frame_count(count: usize, limits: &Limits) -> Result<(), EngineError> {
    if count == 0 {
        return Err(EngineError::BadFrames("no frames".into()));
    }
    if count > limits.max_frames {
        return Err(EngineError::BadFrames(format!(
            "{count} frames, over the limit of {}",
            limits.max_frames
        )));
    }
    Ok(())
}

/// The sheet's layout for `count` frames of the first frame's size, refused when the sheet
/// would be over the pixel limit or the format's largest size.
fn sprite_layout(
    sprite: &crate::spec::SpriteSpec,
    frame: (u32, u32),
    count: usize,
    limits: &Limits,
) -> Result<SpriteLayout, EngineError> {
    let layout = SpriteLayout::new(sprite, frame, count as u32);
    let (w, h) = layout.size();
    let max = sprite.format.max_dimension();
    if w > u64::from(max) || h > u64::from(max) || w * h > limits.max_pixels {
        return Err(EngineError::OutputTooLarge {
            output: SPRITE_OUTPUT.into(),
            width: w,
            height: h,
            reason: format!(
                "over the limit of {} pixels or {max}x{max} for {}",
                limits.max_pixels, sprite.format
            ),
        });
    }
    Ok(layout)
}

/// What one frame gave: its renditions, its sprite cell and maybe its placeholder.
struct RenderedFrame {
    renditions: Vec<Rendition>,
    cell: Option<DynamicImage>,
    placeholder: Option<String>,
}

/// One frame: decoded, planned (frames may differ in size), every output rendered, and its
/// sprite cell when there is a sheet. Only this frame's pixels are held meanwhile.
fn render_frame(
    frame: &FrameSource<'_>,
    index: u32,
    spec: &Spec,
    limits: &Limits,
    layout: Option<&SpriteLayout>,
    observer: &dyn Observer,
    wants_placeholder: bool,
) -> Result<RenderedFrame, EngineError> {
    let started = std::time::Instant::now();
    let decoded = decode_frame(frame, spec, limits)?;
    observer.on_timing(Step::Decode, started.elapsed());
    plan_outputs(decoded.logical, spec, decoded.info.format, limits, None)?;
    let renditions = spec
        .outputs
        .iter()
        .map(|output| render(&decoded, spec, output, Some(index), observer))
        .collect::<Result<Vec<_>, _>>()?;
    let cell = layout
        .map(|layout| frames::sprite_cell(&decoded.image, layout))
        .transpose()?;
    let placeholder = wants_placeholder.then(|| blurhash(&decoded)).transpose()?;
    Ok(RenderedFrame {
        renditions,
        cell,
        placeholder,
    })
}

/// The sprite sheet from its cells, and its WebVTT track pointing at `sprite_url`, a cue per
/// frame from its time to the next frame's (the last to `end`).
fn sprite_outputs(
    sprite: &crate::spec::SpriteSpec,
    layout: &SpriteLayout,
    cells: &[DynamicImage],
    times: &[f64],
    end: f64,
    sprite_url: &str,
) -> Result<(Rendition, Rendition), EngineError> {
    let sheet = frames::assemble_sprite(cells, layout);
    let data = encode::encode(
        &sheet,
        &EncodeOptions {
            format: sprite.format,
            quality: sprite
                .quality
                .unwrap_or_else(|| sprite.format.default_quality()),
            lossless: false,
            metadata: None,
        },
    )?;
    let track = sprite_track(layout, times, end, sprite_url);
    Ok((
        Rendition {
            name: SPRITE_OUTPUT.into(),
            frame: None,
            media: Media::Image(sprite.format),
            width: sheet.width(),
            height: sheet.height(),
            data,
        },
        Rendition {
            name: SPRITE_TRACK_OUTPUT.into(),
            frame: None,
            media: Media::WebVtt,
            width: 0,
            height: 0,
            data: track.into_bytes(),
        },
    ))
}

fn decode_frame(
    frame: &FrameSource<'_>,
    spec: &Spec,
    limits: &Limits,
) -> Result<Decoded, EngineError> {
    match *frame {
        FrameSource::Encoded(bytes) => {
            let header = decode::read_header(bytes, limits)?;
            if spec.sprite.is_some() {
                // Sprite cells are scaled from the decoded frame: decode at full size.
                decode::decode(bytes, &header, 1.0, limits)
            } else {
                decode_for(bytes, &header, spec, limits, None)
            }
        }
        FrameSource::Raw(bytes, layout) => {
            EngineError::check_pixels(
                u64::from(layout.width),
                u64::from(layout.height),
                limits.max_pixels,
            )?;
            let image = layout.to_image(bytes)?;
            Ok(Decoded {
                logical: (image.width(), image.height()),
                image,
                // Raw frames have no format of their own: outputs default to JPEG.
                info: SourceInfo {
                    format: SourceFormat::Jpeg,
                    width: layout.width,
                    height: layout.height,
                    colour_space: ColourSpace::Srgb,
                    hdr: None,
                },
                metadata: Default::default(),
                // ffmpeg hands over sRGB-range RGB already.
                colour: None,
            })
        }
    }
}

/// Runs engine work so that a panic becomes [`EngineError::Internal`] (decoder panics are caught
/// closer and become decode errors).
fn contain_panics<T>(work: impl FnOnce() -> Result<T, EngineError>) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(work))
        .unwrap_or_else(|payload| Err(EngineError::Internal(panic_message(&*payload))))
}
