//! From pixels to the bytes of an output format.

use image::codecs::avif::AvifEncoder;
use image::codecs::gif::GifEncoder;
use image::codecs::png::{CompressionType, FilterType, PngEncoder};
use image::codecs::webp::WebPEncoder;
use image::{DynamicImage, ImageEncoder};

use crate::spec::{Color, Format};

use super::decode::Metadata;
use super::error::EngineError;
use super::jpeg;
use super::ops::flatten;
use super::riff;

/// AVIF encoder speed (rav1e, 1 slowest – 10 fastest): 8 keeps a 1600 px photo around a second.
const AVIF_SPEED: u8 = 8;

pub(super) struct EncodeOptions<'a> {
    pub format: Format,
    pub quality: u8,
    pub lossless: bool,
    /// Metadata to embed, when the output keeps it.
    pub metadata: Option<&'a Metadata>,
}

/// Whether the encoder embeds an ICC profile (when the output keeps metadata). Outputs that
/// cannot are converted to sRGB instead, so they look right without one.
pub(super) fn embeds_icc(format: Format) -> bool {
    match format {
        Format::Jpeg | Format::Png | Format::Webp => true,
        Format::Avif | Format::Gif => false,
    }
}

pub(super) fn encode(
    image: &DynamicImage,
    options: &EncodeOptions<'_>,
) -> Result<Vec<u8>, EngineError> {
    let name = options.format.name();
    let failed = |e: image::ImageError| EngineError::encode(name, e);
    let mut out = Vec::new();
    match options.format {
        Format::Jpeg => {
            let opaque = flatten(image, Color::WHITE);
            out = jpeg::encode(&opaque, options.quality)?;
            if let Some(metadata) = options.metadata {
                out = jpeg::insert_metadata(out, metadata.exif.as_deref(), metadata.icc.as_deref());
            }
        }
        Format::Png => {
            // PNG is lossless: quality buys compression effort instead.
            let compression = match options.quality {
                0..=49 => CompressionType::Fast,
                50..=89 => CompressionType::Default,
                _ => CompressionType::Best,
            };
            let encoder = PngEncoder::new_with_quality(&mut out, compression, FilterType::Adaptive);
            write_with_metadata(encoder, image, options.metadata).map_err(failed)?;
        }
        Format::Webp if options.lossless => {
            let encoder = WebPEncoder::new_lossless(&mut out);
            write_with_metadata(encoder, &with_colour(image), options.metadata).map_err(failed)?;
        }
        Format::Webp => out = encode_lossy_webp(image, options.quality, options.metadata)?,
        Format::Avif => {
            // One thread per encode: the engine already runs outputs and jobs in parallel.
            let encoder =
                AvifEncoder::new_with_speed_quality(&mut out, AVIF_SPEED, options.quality)
                    .with_num_threads(Some(1));
            write_with_metadata(encoder, &with_colour(image), None).map_err(failed)?;
        }
        Format::Gif => {
            // NeuQuant speed 1 (best palette) .. 30 (fastest); quality 80 gives 7.
            let speed = (31 - i32::from(options.quality) * 30 / 100).clamp(1, 30);
            let rgba = image.to_rgba8();
            GifEncoder::new_with_speed(&mut out, speed)
                .encode(
                    rgba.as_raw(),
                    rgba.width(),
                    rgba.height(),
                    image::ExtendedColorType::Rgba8,
                )
                .map_err(failed)?;
        }
    }
    Ok(out)
}

/// Writes `image` through an `image` crate encoder, with the metadata kept (encoders that
/// cannot embed a kind of metadata skip it).
fn write_with_metadata<E: ImageEncoder>(
    mut encoder: E,
    image: &DynamicImage,
    metadata: Option<&Metadata>,
) -> Result<(), image::ImageError> {
    if let Some(metadata) = metadata {
        if let Some(icc) = &metadata.icc {
            let _ = encoder.set_icc_profile(icc.clone());
        }
        if let Some(exif) = &metadata.exif {
            let _ = encoder.set_exif_metadata(exif.clone());
        }
    }
    encoder.write_image(
        image.as_bytes(),
        image.width(),
        image.height(),
        image.color().into(),
    )
}

/// Lossy WebP needs libwebp; it takes RGB or RGBA. Kept metadata (ICC, EXIF) goes into the
/// extended container around libwebp's still.
fn encode_lossy_webp(
    image: &DynamicImage,
    quality: u8,
    metadata: Option<&Metadata>,
) -> Result<Vec<u8>, EngineError> {
    let failed = |e: String| EngineError::encode(Format::Webp.name(), e);
    let rgb = with_colour(image);
    let (w, h) = (rgb.width(), rgb.height());
    let encoder = match rgb.as_ref() {
        DynamicImage::ImageRgba8(img) => webp::Encoder::from_rgba(img.as_raw(), w, h),
        _ => webp::Encoder::from_rgb(rgb.as_bytes(), w, h),
    };
    let encoded = encoder
        .encode_simple(false, f32::from(quality))
        .map_err(|e| failed(format!("{e:?}")))?;
    match metadata {
        Some(m) => {
            riff::with_metadata(&encoded, w, h, m.icc.as_deref(), m.exif.as_deref()).map_err(failed)
        }
        None => Ok(encoded.to_vec()),
    }
}

/// Gray images become RGB(A) for encoders that only take colour.
fn with_colour(image: &DynamicImage) -> std::borrow::Cow<'_, DynamicImage> {
    use std::borrow::Cow;
    match image {
        DynamicImage::ImageLuma8(_) => Cow::Owned(DynamicImage::ImageRgb8(image.to_rgb8())),
        DynamicImage::ImageLumaA8(_) => Cow::Owned(DynamicImage::ImageRgba8(image.to_rgba8())),
        _ => Cow::Borrowed(image),
    }
}
