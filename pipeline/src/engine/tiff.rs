//! TIFFs the `image` crate's wrapper refuses but the `tiff` crate reads: 8-bit YCbCr (what
//! cameras and scanners write, JPEG-compressed), turned into RGB here with the full-range
//! BT.601 matrix JPEG uses.

use std::io::Cursor;

use image::{DynamicImage, RgbImage};
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::ColorType;

/// The stored size of an 8-bit YCbCr TIFF; `None` for any other TIFF.
pub(super) fn ycbcr_dimensions(bytes: &[u8]) -> Option<(u32, u32)> {
    let mut decoder = Decoder::new(Cursor::new(bytes)).ok()?;
    match decoder.colortype().ok()? {
        ColorType::YCbCr(8) => decoder.dimensions().ok(),
        _ => None,
    }
}

/// Decodes an 8-bit YCbCr TIFF to RGB, allocating at most `max_alloc` bytes for its pixels.
pub(super) fn decode_ycbcr(bytes: &[u8], max_alloc: u64) -> Result<DynamicImage, String> {
    let mut limits = Limits::default();
    limits.decoding_buffer_size = usize::try_from(max_alloc).unwrap_or(usize::MAX);
    let mut decoder = Decoder::new(Cursor::new(bytes))
        .map_err(|e| e.to_string())?
        .with_limits(limits);
    let (width, height) = decoder.dimensions().map_err(|e| e.to_string())?;
    let DecodingResult::U8(mut pixels) = decoder.read_image().map_err(|e| e.to_string())? else {
        return Err("not 8 bits per sample".into());
    };
    for pixel in pixels.chunks_exact_mut(3) {
        let [y, cb, cr] = [pixel[0], pixel[1], pixel[2]].map(f32::from);
        let (cb, cr) = (cb - 128.0, cr - 128.0);
        pixel[0] = (y + 1.402 * cr).round().clamp(0.0, 255.0) as u8;
        pixel[1] = (y - 0.344_136 * cb - 0.714_136 * cr)
            .round()
            .clamp(0.0, 255.0) as u8;
        pixel[2] = (y + 1.772 * cb).round().clamp(0.0, 255.0) as u8;
    }
    RgbImage::from_raw(width, height, pixels)
        .map(DynamicImage::ImageRgb8)
        .ok_or_else(|| "fewer pixels than the size says".to_owned())
}
