//! Video frames: raw pixel buffers turned into images, and the sprite sheet with its WebVTT
//! thumbnail track.

use std::fmt::Write as _;

use fast_image_resize::{ResizeOptions, Resizer};
use image::{DynamicImage, GrayImage, RgbImage, RgbaImage};
use serde::{Deserialize, Serialize};

use crate::spec::SpriteSpec;

use super::error::EngineError;
use super::ops::paste;

/// Layouts of raw frame buffers (ffmpeg's `-pix_fmt` names).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RawPixelFormat {
    /// Packed R, G, B.
    Rgb24,
    /// Packed R, G, B, A.
    Rgba,
    /// One luma byte per pixel.
    Gray,
    /// Planar Y, then U and V at half resolution in both directions (I420).
    Yuv420p,
    /// Planar Y, then interleaved U,V at half resolution.
    Nv12,
}

impl RawPixelFormat {
    pub const NAMES: &'static str = "rgb24, rgba, gray, yuv420p, nv12";

    pub fn parse(name: &str) -> Option<Self> {
        Some(match name {
            "rgb24" => RawPixelFormat::Rgb24,
            "rgba" => RawPixelFormat::Rgba,
            "gray" => RawPixelFormat::Gray,
            "yuv420p" => RawPixelFormat::Yuv420p,
            "nv12" => RawPixelFormat::Nv12,
            _ => return None,
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            RawPixelFormat::Rgb24 => "rgb24",
            RawPixelFormat::Rgba => "rgba",
            RawPixelFormat::Gray => "gray",
            RawPixelFormat::Yuv420p => "yuv420p",
            RawPixelFormat::Nv12 => "nv12",
        }
    }

    /// Bytes in one frame of `width` × `height` (chroma planes round odd sizes up).
    pub fn frame_len(self, width: u32, height: u32) -> u64 {
        let (w, h) = (u64::from(width), u64::from(height));
        let chroma = w.div_ceil(2) * h.div_ceil(2);
        match self {
            RawPixelFormat::Rgb24 => w * h * 3,
            RawPixelFormat::Rgba => w * h * 4,
            RawPixelFormat::Gray => w * h,
            RawPixelFormat::Yuv420p | RawPixelFormat::Nv12 => w * h + 2 * chroma,
        }
    }
}

/// The shape of a raw frame buffer: every frame has the same layout and size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RawLayout {
    pub pixel_format: RawPixelFormat,
    pub width: u32,
    pub height: u32,
}

impl RawLayout {
    /// Checks the size against the pixel limit and the buffer length against whole frames, and
    /// returns the number of frames.
    pub fn frame_count(&self, buffer_len: u64, max_pixels: u64) -> Result<u64, EngineError> {
        if self.width == 0 || self.height == 0 {
            return Err(EngineError::BadFrames(
                "width and height must be at least 1".into(),
            ));
        }
        EngineError::check_pixels(u64::from(self.width), u64::from(self.height), max_pixels)?;
        let frame_len = self.pixel_format.frame_len(self.width, self.height);
        if buffer_len == 0 || !buffer_len.is_multiple_of(frame_len) {
            return Err(EngineError::BadFrames(format!(
                "{buffer_len} bytes is not a whole number of {}x{} {} frames ({frame_len} bytes each)",
                self.width,
                self.height,
                self.pixel_format.name()
            )));
        }
        Ok(buffer_len / frame_len)
    }

    /// Splits a buffer into frames; the buffer must hold a whole number of them.
    pub fn split<'a>(
        &self,
        buffer: &'a [u8],
        max_pixels: u64,
    ) -> Result<Vec<&'a [u8]>, EngineError> {
        self.frame_count(buffer.len() as u64, max_pixels)?;
        let frame_len = self.pixel_format.frame_len(self.width, self.height) as usize;
        Ok(buffer.chunks_exact(frame_len).collect())
    }

    /// One frame as an image: gray stays gray, RGBA keeps alpha, everything else becomes RGB.
    pub fn to_image(&self, frame: &[u8]) -> Result<DynamicImage, EngineError> {
        let (w, h) = (self.width, self.height);
        if frame.len() as u64 != self.pixel_format.frame_len(w, h) {
            return Err(EngineError::BadFrames("frame has the wrong length".into()));
        }
        let short = || EngineError::BadFrames("frame has the wrong length".into());
        Ok(match self.pixel_format {
            RawPixelFormat::Rgb24 => {
                DynamicImage::ImageRgb8(RgbImage::from_raw(w, h, frame.to_vec()).ok_or_else(short)?)
            }
            RawPixelFormat::Rgba => DynamicImage::ImageRgba8(
                RgbaImage::from_raw(w, h, frame.to_vec()).ok_or_else(short)?,
            ),
            RawPixelFormat::Gray => DynamicImage::ImageLuma8(
                GrayImage::from_raw(w, h, frame.to_vec()).ok_or_else(short)?,
            ),
            RawPixelFormat::Yuv420p | RawPixelFormat::Nv12 => DynamicImage::ImageRgb8(
                yuv420_to_rgb(frame, w, h, self.pixel_format == RawPixelFormat::Nv12),
            ),
        })
    }
}

/// 4:2:0 YUV (BT.601, limited range: what ffmpeg assumes for untagged SD video) to RGB.
fn yuv420_to_rgb(frame: &[u8], width: u32, height: u32, interleaved: bool) -> RgbImage {
    let (w, h) = (width as usize, height as usize);
    let cw = w.div_ceil(2);
    let ch = h.div_ceil(2);
    let (luma, chroma) = frame.split_at(w * h);
    let mut rgb = vec![0u8; w * h * 3];
    for y in 0..h {
        for x in 0..w {
            let c = (y / 2) * cw + x / 2;
            let (u, v) = if interleaved {
                (chroma[2 * c], chroma[2 * c + 1])
            } else {
                (chroma[c], chroma[cw * ch + c])
            };
            // Fixed point, 8 fractional bits: 1.164, 1.596, 0.392, 0.813, 2.017.
            let yy = (i32::from(luma[y * w + x]) - 16) * 298;
            let (u, v) = (i32::from(u) - 128, i32::from(v) - 128);
            let px = &mut rgb[(y * w + x) * 3..(y * w + x) * 3 + 3];
            px[0] = ((yy + 409 * v + 128) >> 8).clamp(0, 255) as u8;
            px[1] = ((yy - 100 * u - 208 * v + 128) >> 8).clamp(0, 255) as u8;
            px[2] = ((yy + 516 * u + 128) >> 8).clamp(0, 255) as u8;
        }
    }
    RgbImage::from_raw(width, height, rgb).expect("sized above")
}

/// Sprite geometry: every cell has the first frame's aspect ratio at the spec's width.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SpriteLayout {
    pub cell: (u32, u32),
    pub columns: u32,
    pub rows: u32,
}

impl SpriteLayout {
    pub fn new(spec: &SpriteSpec, first_frame: (u32, u32), frames: u32) -> SpriteLayout {
        let cell_w = spec.width;
        let cell_h = ((f64::from(first_frame.1) * f64::from(cell_w) / f64::from(first_frame.0))
            .round() as u32)
            .max(1);
        let columns = spec.columns.min(frames.max(1));
        SpriteLayout {
            cell: (cell_w, cell_h),
            columns,
            rows: frames.div_ceil(columns).max(1),
        }
    }

    /// The same cells laid out for `frames` frames in at most `columns` columns.
    pub fn for_frames(&self, columns: u32, frames: u32) -> SpriteLayout {
        let columns = columns.min(frames.max(1)).max(1);
        SpriteLayout {
            cell: self.cell,
            columns,
            rows: frames.div_ceil(columns).max(1),
        }
    }

    pub fn size(&self) -> (u64, u64) {
        (
            u64::from(self.cell.0) * u64::from(self.columns),
            u64::from(self.cell.1) * u64::from(self.rows),
        )
    }

    /// Top-left corner of frame `index`'s cell.
    pub fn origin(&self, index: u32) -> (u32, u32) {
        (
            (index % self.columns) * self.cell.0,
            (index / self.columns) * self.cell.1,
        )
    }
}

/// A frame scaled to fill one sprite cell (RGB: sprites have no transparency).
pub(super) fn sprite_cell(
    frame: &DynamicImage,
    layout: &SpriteLayout,
) -> Result<DynamicImage, EngineError> {
    let rgb = match frame {
        DynamicImage::ImageRgb8(_) => std::borrow::Cow::Borrowed(frame),
        _ => std::borrow::Cow::Owned(DynamicImage::ImageRgb8(frame.to_rgb8())),
    };
    let mut cell = DynamicImage::new(layout.cell.0, layout.cell.1, image::ColorType::Rgb8);
    Resizer::new()
        .resize(
            rgb.as_ref(),
            &mut cell,
            &ResizeOptions::new().fit_into_destination(None),
        )
        .map_err(|e| EngineError::Internal(format!("sprite resize: {e}")))?;
    Ok(cell)
}

/// Lays the cells out in frame order.
pub(super) fn assemble_sprite(cells: &[DynamicImage], layout: &SpriteLayout) -> DynamicImage {
    let (w, h) = layout.size();
    let mut sheet = DynamicImage::new(w as u32, h as u32, image::ColorType::Rgb8);
    for (i, cell) in cells.iter().enumerate() {
        paste(&mut sheet, cell, layout.origin(i as u32));
    }
    sheet
}

/// The WebVTT track: one cue per frame, from its time to the next frame's (the last to `end`),
/// pointing at its cell.
pub fn sprite_track(layout: &SpriteLayout, times: &[f64], end: f64, sprite_url: &str) -> String {
    let mut vtt = String::from("WEBVTT\n");
    let ms = |t: f64| (t.max(0.0) * 1000.0).round() as u64;
    for (i, start) in times.iter().enumerate() {
        let stop = times.get(i + 1).copied().unwrap_or(end).max(*start);
        let (x, y) = layout.origin(i as u32);
        let _ = write!(
            vtt,
            "\n{} --> {}\n{sprite_url}#xywh={x},{y},{},{}\n",
            timestamp(ms(*start)),
            timestamp(ms(stop)),
            layout.cell.0,
            layout.cell.1
        );
    }
    vtt
}

fn timestamp(ms: u64) -> String {
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        ms / 3_600_000,
        ms / 60_000 % 60,
        ms / 1000 % 60,
        ms % 1000
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_format_as_webvtt() {
        assert_eq!(timestamp(0), "00:00:00.000");
        assert_eq!(timestamp(3_723_004), "01:02:03.004");
    }
}
