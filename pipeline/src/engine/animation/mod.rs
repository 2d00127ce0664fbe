//! Animated outputs (API.md § Formats in, colour, animation): an animated GIF, WebP or APNG
//! through an output's ops frame by frame into an animated GIF or WebP, timing and plays kept.
//! Source frames are decoded one batch at a time (the decoder composites each onto the
//! canvas); only the outputs' frames, inside the pixel budget, are held until encoding.

mod container;
mod write;

use image::{AnimationDecoder, DynamicImage, RgbaImage};
use rayon::prelude::*;

use crate::spec::{Format, OutputSpec, Spec};

pub(super) use container::Container;
use container::Plays;
use write::Frame;

use super::decode::{Decoded, Header};
use super::error::EngineError;
use super::ops::SmartPins;
use super::sniff::SourceFormat;
use super::{
    checkpoint, output_format, shape, to_srgb_for, Limits, Media, Progress, Rendition, Shaping,
    Stage,
};

/// Source frames decoded before their outputs' ops run on them in parallel: up to this many,
/// and no more than [`BATCH_BYTES`] of them.
const BATCH: usize = 16;
const BATCH_BYTES: u64 = 256 << 20;

/// Whether `output` is made as an animation when its source is animated.
pub(super) fn wants_animation(output: &OutputSpec, source: SourceFormat) -> bool {
    output.animated && matches!(output_format(output, source), Format::Gif | Format::Webp)
}

/// The source's animation when some output of `spec` keeps it, refused over `--max-frames`.
pub(super) fn inspect(
    bytes: &[u8],
    format: SourceFormat,
    spec: &Spec,
    limits: &Limits,
) -> Result<Option<Container>, EngineError> {
    if !spec.outputs.iter().any(|o| wants_animation(o, format)) {
        return Ok(None);
    }
    let Some(found) = container::read(bytes, format) else {
        return Ok(None);
    };
    check_frames(found.frames as usize, limits)?;
    Ok(Some(found))
}

fn check_frames(frames: usize, limits: &Limits) -> Result<(), EngineError> {
    if frames > limits.max_frames {
        return Err(EngineError::FrameLimit {
            frames: frames as u64,
            limit: limits.max_frames as u64,
        });
    }
    Ok(())
}

/// One animated output on its way: its ops' settings and the frames made so far.
struct Animated<'a> {
    shaping: Shaping<'a>,
    /// Smart-gravity choices of the first frame, replayed on the rest.
    pins: SmartPins,
    frames: Vec<Frame>,
}

/// Renders the outputs of `spec` that keep the animation from every frame of `bytes`.
pub(super) fn render(
    bytes: &[u8],
    header: &Header,
    decoded: &Decoded,
    spec: &Spec,
    animation: &Container,
    limits: &Limits,
    progress: &Progress<'_>,
) -> Result<Vec<Rendition>, EngineError> {
    let mut animated: Vec<Animated<'_>> = spec
        .outputs
        .iter()
        .filter(|output| wants_animation(output, header.format))
        .map(|output| {
            let format = output_format(output, decoded.info.format);
            // The animated WebP container carries the profile; GIF cannot.
            let keeps_profile = spec.keeps_metadata(output) && super::encode::embeds_icc(format);
            Animated {
                shaping: Shaping {
                    output,
                    format,
                    to_srgb: to_srgb_for(decoded, keeps_profile),
                    observer: progress.observer,
                },
                pins: SmartPins::Record(Vec::new()),
                frames: Vec::new(),
            }
        })
        .collect();
    let mut source = source_frames(bytes, header.format, limits)?;
    let canvas_bytes = u64::from(header.stored.0) * u64::from(header.stored.1) * 4;
    let batch_len = (BATCH_BYTES / canvas_bytes.max(1)).clamp(1, BATCH as u64) as usize;
    let mut decoded_frames = 0;
    loop {
        let batch: Vec<(DynamicImage, u32)> = source
            .by_ref()
            .take(batch_len)
            .map(|frame| frame.map(|frame| upright(frame, header)))
            .collect::<Result<_, _>>()
            .map_err(|e| EngineError::decode(header.format.name(), e))?;
        if batch.is_empty() {
            break;
        }
        decoded_frames += batch.len();
        if decoded_frames > animation.frames as usize {
            // The limits were judged on the declared count.
            return Err(EngineError::decode(
                header.format.name(),
                format!("more frames than the {} it declares", animation.frames),
            ));
        }
        checkpoint(progress.observer, Stage::Step)?;
        for output in &mut animated {
            shape_batch(output, &batch)?;
        }
    }
    let plays = animation.plays;
    animated
        .into_par_iter()
        .map(|output| encode(output, spec, decoded, plays, progress))
        .collect()
}

/// The source's frames as the decoder composites them, with their delays in milliseconds.
fn source_frames<'a>(
    bytes: &'a [u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<image::Frames<'a>, EngineError> {
    use image::codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
    use image::ImageDecoder;
    let failed = |e: image::ImageError| EngineError::decode(format.name(), e);
    let reader = std::io::Cursor::new(bytes);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(super::decode::max_alloc(limits));
    Ok(match format {
        SourceFormat::Gif => {
            let mut decoder = GifDecoder::new(reader).map_err(failed)?;
            decoder.set_limits(decoder_limits).map_err(failed)?;
            decoder.into_frames()
        }
        SourceFormat::Webp => WebPDecoder::new(reader).map_err(failed)?.into_frames(),
        SourceFormat::Png => {
            let mut decoder = PngDecoder::new(reader).map_err(failed)?;
            decoder.set_limits(decoder_limits).map_err(failed)?;
            decoder.apng().map_err(failed)?.into_frames()
        }
        other => {
            return Err(EngineError::Internal(format!(
                "{} has no animation decoder",
                other.name()
            )))
        }
    })
}

/// A composited source frame, turned as the still image is, with its delay in milliseconds.
fn upright(frame: image::Frame, header: &Header) -> (DynamicImage, u32) {
    let (numer, denom) = frame.delay().numer_denom_ms();
    let delay = numer.checked_div(denom).unwrap_or(0);
    let mut image = DynamicImage::ImageRgba8(frame.into_buffer());
    image.apply_orientation(header.orientation);
    (image, delay)
}

/// Runs one output's ops on a batch of source frames: the very first frame alone (its smart
/// crops are recorded), the rest in parallel replaying them.
fn shape_batch(
    output: &mut Animated<'_>,
    batch: &[(DynamicImage, u32)],
) -> Result<(), EngineError> {
    let mut rest = batch;
    if output.frames.is_empty() {
        let (image, delay) = &batch[0];
        let logical = (image.width(), image.height());
        let shaped = shape(image, logical, &output.shaping, &mut output.pins)?;
        output.frames.push(Frame::new(shaped.into_owned(), *delay));
        output.pins = output.pins.replay();
        rest = &batch[1..];
    }
    let shaping = &output.shaping;
    let pins = &output.pins;
    let shaped: Vec<Frame> = rest
        .par_iter()
        .map(|(image, delay)| {
            let logical = (image.width(), image.height());
            let shaped = shape(image, logical, shaping, &mut pins.clone())?;
            Ok(Frame::new(shaped.into_owned(), *delay))
        })
        .collect::<Result<_, EngineError>>()?;
    output.frames.extend(shaped);
    Ok(())
}

/// Encodes one animated output's frames.
fn encode(
    output: Animated<'_>,
    spec: &Spec,
    decoded: &Decoded,
    plays: Plays,
    progress: &Progress<'_>,
) -> Result<Rendition, EngineError> {
    let Animated {
        shaping, frames, ..
    } = output;
    let spec_output = shaping.output;
    let format = shaping.format;
    let quality = spec_output
        .quality
        .unwrap_or_else(|| format.default_quality());
    let started = std::time::Instant::now();
    let (width, height) = frames
        .first()
        .map_or((0, 0), |f| (f.image.width(), f.image.height()));
    let data = match format {
        Format::Gif => write::gif(&frames, plays, quality)?,
        _ => {
            let icc = spec
                .keeps_metadata(spec_output)
                .then_some(decoded.metadata.icc.as_deref())
                .flatten();
            write::webp(&frames, plays, quality, spec_output.lossless, icc)?
        }
    };
    progress
        .observer
        .on_timing(super::Step::Encode, started.elapsed());
    progress.rendered(&spec_output.name)?;
    Ok(Rendition {
        name: spec_output.name.clone(),
        frame: None,
        media: Media::Image(format),
        width,
        height,
        data,
    })
}

/// Pixels of one frame, whole: outputs' frames are RGBA for the encoders.
pub(super) fn rgba(image: DynamicImage) -> RgbaImage {
    match image {
        DynamicImage::ImageRgba8(rgba) => rgba,
        other => other.to_rgba8(),
    }
}
