//! Running an output's ops on pixels. Every image here is 8 bits per channel (gray, gray+alpha,
//! RGB or RGBA) and stays so.

use std::borrow::Cow;

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, GrayAlphaImage, GrayImage, RgbImage, RgbaImage};

use crate::spec::{
    Axis, Color, Crop, CropAnchor, Filter, Fit, Format, Gravity, Op, Resize, Rotation,
};

use super::error::EngineError;
use super::geometry::{crop_region, ResizePlan};
use super::smartcrop;

/// An image on its way through an output's ops.
pub(super) struct Working<'a> {
    pub image: Cow<'a, DynamicImage>,
    /// The full-resolution size the image stands for. Larger than the image only between a
    /// shrink-on-load decode and the first resize, with nothing resolution-dependent between.
    pub logical: (u32, u32),
}

/// Where smart gravity put its crops. The frames of an animation share the first frame's
/// choices, so the crop does not jump from frame to frame.
#[derive(Debug, Clone, Default)]
pub(super) enum SmartPins {
    /// Each image chooses for itself.
    #[default]
    Free,
    /// Choose, and remember the choices in order.
    Record(Vec<(f64, f64)>),
    /// Reuse recorded choices in order (the next one at the index).
    Replay(Vec<(f64, f64)>, usize),
}

impl SmartPins {
    fn choose(&mut self, best: impl FnOnce() -> (f64, f64)) -> (f64, f64) {
        match self {
            SmartPins::Free => best(),
            SmartPins::Record(chosen) => {
                let choice = best();
                chosen.push(choice);
                choice
            }
            SmartPins::Replay(chosen, next) => {
                let choice = chosen.get(*next).copied().unwrap_or_else(best);
                *next += 1;
                choice
            }
        }
    }

    /// The choices recorded so far, to replay on the following frames.
    pub fn replay(&self) -> SmartPins {
        match self {
            SmartPins::Record(chosen) => SmartPins::Replay(chosen.clone(), 0),
            other => other.clone(),
        }
    }
}

pub(super) fn apply(
    work: Working<'_>,
    op: &Op,
    format: Format,
    pins: &mut SmartPins,
) -> Result<Working<'static>, EngineError> {
    let Working { image, logical } = work;
    debug_assert!(
        matches!(op, Op::Resize(_)) || !is_shrunk(&image, logical) || is_scale_free(op),
        "the plan only shrinks on load when a resize comes first"
    );
    let image: DynamicImage = match op {
        Op::Resize(resize) => return resize_op(&image, logical, resize, format, pins),
        Op::Crop(crop) => crop_op(&image, crop, pins),
        Op::Rotate { degrees } => match degrees {
            Rotation::Quarter => image.rotate90(),
            Rotation::Half => image.rotate180(),
            Rotation::ThreeQuarters => image.rotate270(),
        },
        Op::Flip { axis } => match axis {
            Axis::Horizontal => image.fliph(),
            Axis::Vertical => image.flipv(),
        },
        Op::Grayscale => match image.as_ref() {
            DynamicImage::ImageRgb8(_) => DynamicImage::ImageLuma8(image.to_luma8()),
            DynamicImage::ImageRgba8(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
            _ => image.into_owned(),
        },
        Op::Blur { sigma } => blur(&image, *sigma),
        Op::Sharpen { sigma, amount } => sharpen(&image, *sigma, *amount),
        Op::Brightness { value } => map_colour(image.into_owned(), |v| v * value),
        Op::Contrast { value } => map_colour(image.into_owned(), |v| (v - 127.5) * value + 127.5),
    };
    let logical = match op {
        Op::Rotate {
            degrees: Rotation::Quarter | Rotation::ThreeQuarters,
        } => (logical.1, logical.0),
        Op::Flip { .. }
        | Op::Grayscale
        | Op::Brightness { .. }
        | Op::Contrast { .. }
        | Op::Rotate { .. } => logical,
        _ => (image.width(), image.height()),
    };
    Ok(Working {
        image: Cow::Owned(image),
        logical,
    })
}

fn is_shrunk(image: &DynamicImage, logical: (u32, u32)) -> bool {
    (image.width(), image.height()) != logical
}

fn is_scale_free(op: &Op) -> bool {
    matches!(
        op,
        Op::Rotate { .. }
            | Op::Flip { .. }
            | Op::Grayscale
            | Op::Brightness { .. }
            | Op::Contrast { .. }
    )
}

fn resize_op(
    image: &DynamicImage,
    logical: (u32, u32),
    resize: &Resize,
    format: Format,
    pins: &mut SmartPins,
) -> Result<Working<'static>, EngineError> {
    let mut plan = ResizePlan::new(logical, resize);
    if resize.fit == Fit::Cover {
        plan.place(logical, resize.gravity);
    }
    // The plan is in full-resolution pixels; the image may have been decoded smaller.
    let kx = f64::from(image.width()) / f64::from(logical.0);
    let ky = f64::from(image.height()) / f64::from(logical.1);
    let mut region = plan.source;
    region.left *= kx;
    region.top *= ky;
    region.width *= kx;
    region.height *= ky;
    if resize.fit == Fit::Cover && resize.gravity == Gravity::Smart {
        let (left, top) =
            pins.choose(|| smartcrop::best_region(image, region.width, region.height));
        region.left = left;
        region.top = top;
    }
    // Scaling to the decoded size can overshoot its edge by a rounding error (found by the
    // hostile suite: a 284x25 JPEG decoded at 1/4); the resampler refuses any overshoot.
    let (w, h) = (f64::from(image.width()), f64::from(image.height()));
    region.left = region.left.clamp(0.0, w);
    region.top = region.top.clamp(0.0, h);
    region.width = region.width.min(w - region.left).max(f64::MIN_POSITIVE);
    region.height = region.height.min(h - region.top).max(f64::MIN_POSITIVE);

    let mut scaled = DynamicImage::new(plan.scaled.0, plan.scaled.1, image.color());
    let algorithm = match resize.filter {
        Filter::Nearest => ResizeAlg::Nearest,
        Filter::Bilinear => ResizeAlg::Convolution(FilterType::Bilinear),
        Filter::CatmullRom => ResizeAlg::Convolution(FilterType::CatmullRom),
        Filter::Lanczos3 => ResizeAlg::Convolution(FilterType::Lanczos3),
    };
    let options = ResizeOptions::new().resize_alg(algorithm).crop(
        region.left,
        region.top,
        region.width,
        region.height,
    );
    Resizer::new()
        .resize(image, &mut scaled, &options)
        .map_err(|e| EngineError::Internal(format!("resize: {e}")))?;

    let image = if plan.canvas == plan.scaled {
        scaled
    } else {
        let background = resize.background.unwrap_or(if format.has_alpha() {
            Color::TRANSPARENT
        } else {
            Color::WHITE
        });
        pad(scaled, plan.canvas, plan.offset, background)
    };
    let logical = (image.width(), image.height());
    Ok(Working {
        image: Cow::Owned(image),
        logical,
    })
}

fn crop_op(image: &DynamicImage, crop: &Crop, pins: &mut SmartPins) -> DynamicImage {
    let size = (image.width(), image.height());
    let (mut x, mut y, w, h) = crop_region(size, crop);
    if let CropAnchor::Gravity {
        gravity: Gravity::Smart,
    } = crop.anchor
    {
        let (left, top) = pins.choose(|| smartcrop::best_region(image, f64::from(w), f64::from(h)));
        (x, y) = (left.round() as u32, top.round() as u32);
        x = x.min(size.0 - w);
        y = y.min(size.1 - h);
    }
    image.crop_imm(x, y, w, h)
}

/// Places `image` on a canvas of `canvas` size filled with `background`.
fn pad(
    image: DynamicImage,
    canvas: (u32, u32),
    offset: (u32, u32),
    background: Color,
) -> DynamicImage {
    let [r, g, b, a] = background.0;
    let gray = ((u32::from(r) * 2126 + u32::from(g) * 7152 + u32::from(b) * 722) / 10000) as u8;
    // Transparent padding needs an alpha channel the image may not have.
    let image = if a < 255 {
        match image {
            DynamicImage::ImageLuma8(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
            DynamicImage::ImageRgb8(_) => DynamicImage::ImageRgba8(image.to_rgba8()),
            other => other,
        }
    } else {
        image
    };
    let (w, h) = canvas;
    let mut out = match &image {
        DynamicImage::ImageLuma8(_) => {
            DynamicImage::ImageLuma8(GrayImage::from_pixel(w, h, [gray].into()))
        }
        DynamicImage::ImageLumaA8(_) => {
            DynamicImage::ImageLumaA8(GrayAlphaImage::from_pixel(w, h, [gray, a].into()))
        }
        DynamicImage::ImageRgb8(_) => {
            DynamicImage::ImageRgb8(RgbImage::from_pixel(w, h, [r, g, b].into()))
        }
        _ => DynamicImage::ImageRgba8(RgbaImage::from_pixel(w, h, [r, g, b, a].into())),
    };
    paste(&mut out, &image, offset);
    out
}

/// Copies `image` onto `canvas` at `at`, row by row; both have the same colour type.
pub(super) fn paste(canvas: &mut DynamicImage, image: &DynamicImage, at: (u32, u32)) {
    debug_assert_eq!(canvas.color(), image.color());
    let bpp = usize::from(image.color().bytes_per_pixel());
    let canvas_stride = canvas.width() as usize * bpp;
    let row_len = image.width().min(canvas.width().saturating_sub(at.0)) as usize * bpp;
    let rows = image.height().min(canvas.height().saturating_sub(at.1)) as usize;
    let src_stride = image.width() as usize * bpp;
    let src = image.as_bytes();
    let dst = bytes_mut(canvas);
    for row in 0..rows {
        let d = (at.1 as usize + row) * canvas_stride + at.0 as usize * bpp;
        let s = row * src_stride;
        dst[d..d + row_len].copy_from_slice(&src[s..s + row_len]);
    }
}

fn bytes_mut(image: &mut DynamicImage) -> &mut [u8] {
    match image {
        DynamicImage::ImageLuma8(i) => i,
        DynamicImage::ImageLumaA8(i) => i,
        DynamicImage::ImageRgb8(i) => i,
        DynamicImage::ImageRgba8(i) => i,
        _ => unreachable!("the engine only holds 8-bit images"),
    }
}

/// Number of colour channels (alpha excluded) and the channel count.
fn channels(image: &DynamicImage) -> (usize, usize) {
    match image {
        DynamicImage::ImageLuma8(_) => (1, 1),
        DynamicImage::ImageLumaA8(_) => (1, 2),
        DynamicImage::ImageRgb8(_) => (3, 3),
        _ => (3, 4),
    }
}

/// Applies `f` to every colour sample (never alpha) through a lookup table.
fn map_colour(mut image: DynamicImage, f: impl Fn(f32) -> f32) -> DynamicImage {
    let lut: Vec<u8> = (0..=255u16)
        .map(|v| f(f32::from(v)).round().clamp(0.0, 255.0) as u8)
        .collect();
    let (colour, total) = channels(&image);
    for px in bytes_mut(&mut image).chunks_exact_mut(total) {
        for c in &mut px[..colour] {
            *c = lut[usize::from(*c)];
        }
    }
    image
}

/// Gaussian blur; above a radius where the exact kernel gets slow, three box blurs approximate it.
fn blur(image: &DynamicImage, sigma: f32) -> DynamicImage {
    if sigma <= 6.0 {
        image.blur(sigma)
    } else {
        image.fast_blur(sigma)
    }
}

/// Unsharp mask: `image + amount × (image − blurred)`, on colour channels only.
fn sharpen(image: &DynamicImage, sigma: f32, amount: f32) -> DynamicImage {
    let blurred = blur(image, sigma);
    let mut out = image.clone();
    let (colour, total) = channels(image);
    let soft = blurred.as_bytes();
    for (px, soft_px) in bytes_mut(&mut out)
        .chunks_exact_mut(total)
        .zip(soft.chunks_exact(total))
    {
        for c in 0..colour {
            let v = f32::from(px[c]);
            let detail = v - f32::from(soft_px[c]);
            px[c] = (v + amount * detail).round().clamp(0.0, 255.0) as u8;
        }
    }
    out
}

/// Drops alpha for formats without it, compositing over `background`.
pub(super) fn flatten(image: &DynamicImage, background: Color) -> Cow<'_, DynamicImage> {
    let [br, bg, bb, _] = background.0.map(u32::from);
    let over = |c: u8, a: u32, b: u32| ((u32::from(c) * a + b * (255 - a) + 127) / 255) as u8;
    match image {
        DynamicImage::ImageRgba8(img) => {
            let mut rgb = RgbImage::new(img.width(), img.height());
            for (dst, src) in rgb.pixels_mut().zip(img.pixels()) {
                let a = u32::from(src[3]);
                *dst = [
                    over(src[0], a, br),
                    over(src[1], a, bg),
                    over(src[2], a, bb),
                ]
                .into();
            }
            Cow::Owned(DynamicImage::ImageRgb8(rgb))
        }
        DynamicImage::ImageLumaA8(img) => {
            let gray_bg = (br * 2126 + bg * 7152 + bb * 722) / 10000;
            let mut out = GrayImage::new(img.width(), img.height());
            for (dst, src) in out.pixels_mut().zip(img.pixels()) {
                *dst = [over(src[0], u32::from(src[1]), gray_bg)].into();
            }
            Cow::Owned(DynamicImage::ImageLuma8(out))
        }
        _ => Cow::Borrowed(image),
    }
}
