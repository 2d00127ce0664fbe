//! JPEG XL through jxl-oxide (pure Rust): the first keyframe, oriented as its header says, with
//! allocations bounded. SDR images are rendered in their own colour encoding (its ICC profile
//! goes through the engine's colour management like any other); HDR (PQ/HLG) ones are rendered
//! to sRGB by jxl-oxide, which tone-maps them.

use std::io::Cursor;

use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};
use jxl_oxide::{
    AllocTracker, EnumColourEncoding, JxlImage, JxlThreadPool, PixelFormat, RenderingIntent,
};

use super::colour::{HdrTransfer, SourceColour};
use super::decode::Metadata;
use super::error::EngineError;
use super::sniff::SourceFormat;

fn failed(e: impl std::fmt::Display) -> EngineError {
    EngineError::decode(SourceFormat::Jxl.name(), e)
}

fn open(bytes: &[u8], max_alloc: u64) -> Result<JxlImage, EngineError> {
    let limit = usize::try_from(max_alloc).unwrap_or(usize::MAX);
    JxlImage::builder()
        // One thread: jobs and outputs already run in parallel on the worker's pool.
        .pool(JxlThreadPool::none())
        .alloc_tracker(AllocTracker::with_limit(limit))
        .read(Cursor::new(bytes))
        .map_err(failed)
}

/// The displayed size (orientation applied) and the colour description, from the header.
pub(super) fn header(
    bytes: &[u8],
    max_alloc: u64,
) -> Result<((u32, u32), SourceColour), EngineError> {
    let image = open(bytes, max_alloc)?;
    let hdr = image.hdr_type().map(|hdr| match hdr {
        jxl_oxide::HdrType::Pq => HdrTransfer::Pq,
        jxl_oxide::HdrType::Hlg => HdrTransfer::Hlg,
    });
    let icc = image
        .original_icc()
        .map(<[u8]>::to_vec)
        .unwrap_or_else(|| image.rendered_icc());
    let space = SourceColour::of_icc(&icc).space;
    Ok(((image.width(), image.height()), SourceColour { space, hdr }))
}

/// Decodes the first keyframe to 8 bits; call after [`dimensions`] passed the pixel limit.
pub(super) fn decode(
    bytes: &[u8],
    max_alloc: u64,
) -> Result<(DynamicImage, Metadata), EngineError> {
    let mut image = open(bytes, max_alloc)?;
    if !image.is_loading_done() {
        return Err(failed("the file ends before its first frame does"));
    }
    let original_icc = image.original_icc().map(<[u8]>::to_vec);
    let hdr = image.hdr_type().is_some();
    if hdr {
        image.request_color_encoding(EnumColourEncoding::srgb(RenderingIntent::Relative));
    }
    // The profile the pixels come out in: the embedded one, or one made from the header's enum.
    let icc = (!hdr).then(|| original_icc.unwrap_or_else(|| image.rendered_icc()));
    let format = image.pixel_format();
    let render = image.render_frame(0).map_err(failed)?;
    let mut stream = render.stream();
    let (width, height, channels) = (stream.width(), stream.height(), stream.channels());
    let mut pixels = vec![0u8; width as usize * height as usize * channels as usize];
    stream.write_to_buffer::<u8>(&mut pixels);
    let decoded = match (format, channels) {
        (PixelFormat::Gray, 1) => GrayImage::from_raw(width, height, pixels).map(Into::into),
        (PixelFormat::Graya, 2) => GrayAlphaImage::from_raw(width, height, pixels).map(Into::into),
        (PixelFormat::Rgb, 3) => RgbImage::from_raw(width, height, pixels).map(Into::into),
        (PixelFormat::Rgba, 4) => RgbaImage::from_raw(width, height, pixels).map(Into::into),
        _ => return Err(failed(format!("{format:?} images are not supported"))),
    }
    .ok_or_else(|| failed("frame size mismatch"))?;
    Ok((decoded, Metadata { exif: None, icc }))
}
