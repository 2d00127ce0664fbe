//! From bytes to upright 8-bit pixels: the header first (format, size, orientation — enough to
//! refuse a pixel bomb before any allocation), then one decode at the smallest scale the spec
//! allows.

use std::io::Cursor;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;

use image::metadata::Orientation;
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use serde::Serialize;
use turbojpeg::Colorspace;

use super::colour::{self, ColourSpace, HdrTransfer, SourceColour, ToSrgb};
use super::error::{panic_message, EngineError};
use super::jpeg::{self, JpegHeader};
use super::sniff::{sniff, Sniffed, SourceFormat};
use super::Limits;
use super::{heif, jxl};

/// What the header says about a source image.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct SourceInfo {
    pub format: SourceFormat,
    /// Upright size: after the EXIF orientation is applied.
    pub width: u32,
    pub height: u32,
    /// The colour space its numbers are in (from its ICC profile or CICP).
    pub colour_space: ColourSpace,
    /// PQ or HLG, for HDR sources.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hdr: Option<HdrTransfer>,
}

/// A read header: what is needed to plan and then decode.
pub(super) struct Header {
    pub format: SourceFormat,
    /// Size as stored, before orientation.
    pub stored: (u32, u32),
    pub orientation: Orientation,
    pub colour: SourceColour,
    /// Set when libjpeg-turbo decodes it; `None` for other formats and for JPEGs left to the
    /// lenient decoder.
    pub jpeg: Option<JpegHeader>,
}

impl Header {
    pub fn info(&self) -> SourceInfo {
        let (width, height) = oriented(self.stored, self.orientation);
        SourceInfo {
            format: self.format,
            width,
            height,
            colour_space: self.colour.space,
            hdr: self.colour.hdr,
        }
    }
}

/// Metadata carried to outputs that keep it.
#[derive(Debug, Clone, Default)]
pub(super) struct Metadata {
    /// EXIF with its orientation reset to upright (the pixels are rotated already).
    pub exif: Option<Vec<u8>>,
    pub icc: Option<Vec<u8>>,
}

pub(super) struct Decoded {
    /// Upright, 8 bits per channel: gray, gray+alpha, RGB or RGBA, in the source's colours.
    pub image: DynamicImage,
    /// The upright full-resolution size `image` stands for (larger when shrunk on load).
    pub logical: (u32, u32),
    pub info: SourceInfo,
    pub metadata: Metadata,
    /// The conversion to sRGB outputs need, unless they keep the source's profile; `None` for
    /// sRGB sources.
    pub colour: Option<Arc<ToSrgb>>,
}

/// Reads the header and refuses what the engine will not decode: not an image, an unsupported
/// format, or more pixels than `limits` allow.
pub(super) fn read_header(bytes: &[u8], limits: &Limits) -> Result<Header, EngineError> {
    let format = match sniff(bytes) {
        Sniffed::Image(format) => format,
        Sniffed::Unsupported(name) => return Err(EngineError::UnsupportedFormat(name)),
        // Videos go through `crate::video`, not the image decoders.
        Sniffed::Video(_) => return Err(EngineError::UnsupportedFormat("video")),
        Sniffed::NotAnImage => return Err(EngineError::NotAnImage),
    };
    if let Some(screen) = gif_screen(bytes) {
        // A GIF's logical screen is allocated whole: judge it before any decoder runs.
        EngineError::check_pixels(u64::from(screen.0), u64::from(screen.1), limits.max_pixels)?;
    }
    let header = guard(format, || header_of(bytes, format, limits))?;
    let (w, h) = header.stored;
    EngineError::check_pixels(u64::from(w), u64::from(h), limits.max_pixels)?;
    Ok(header)
}

/// The header as the format's decoder reads it.
fn header_of(bytes: &[u8], format: SourceFormat, limits: &Limits) -> Result<Header, EngineError> {
    if format == SourceFormat::Jpeg {
        if let Some(header) = jpeg::read_header(bytes)? {
            return Ok(jpeg_header(header));
        }
    }
    // libheif and jxl-oxide turn the image upright themselves (`irot`/`imir`, the JXL
    // header's orientation); EXIF orientation is not applied on top (API.md).
    let own_decoder = match format {
        SourceFormat::Heif | SourceFormat::Avif => Some(heif::header(bytes, format)?),
        SourceFormat::Jxl => Some(jxl::header(bytes, max_alloc(limits))?),
        SourceFormat::Tiff => super::tiff::ycbcr_dimensions(bytes).map(|s| (s, SourceColour::SRGB)),
        _ => None,
    };
    if let Some((stored, colour)) = own_decoder {
        return Ok(Header {
            format,
            stored,
            orientation: Orientation::NoTransforms,
            colour,
            jpeg: None,
        });
    }
    let mut decoder = image_decoder(bytes, format, limits)?;
    let stored = decoder.dimensions();
    if stored.0 == 0 || stored.1 == 0 {
        return Err(EngineError::decode(format.name(), "zero width or height"));
    }
    let orientation = decoder.orientation().unwrap_or(Orientation::NoTransforms);
    let colour = match decoder.icc_profile().ok().flatten() {
        Some(icc) => SourceColour::of_icc(&icc),
        None if !decoder.color_type().has_color() => SourceColour::GRAY,
        None => SourceColour::SRGB,
    };
    Ok(Header {
        format,
        stored,
        orientation,
        colour,
        jpeg: None,
    })
}

/// A JPEG header libjpeg-turbo read: EXIF orientation, and the colours its profile (or, without
/// one, its colour transform) says.
fn jpeg_header(header: JpegHeader) -> Header {
    let orientation = header
        .exif
        .as_deref()
        .and_then(Orientation::from_exif_chunk)
        .unwrap_or(Orientation::NoTransforms);
    let colour = match (&header.icc, header.colorspace) {
        (Some(icc), _) => SourceColour::of_icc(icc),
        (None, Colorspace::Gray) => SourceColour::GRAY,
        (None, Colorspace::CMYK | Colorspace::YCCK) => SourceColour::CMYK,
        (None, _) => SourceColour::SRGB,
    };
    Header {
        format: SourceFormat::Jpeg,
        stored: (header.width, header.height),
        orientation,
        colour,
        jpeg: Some(header),
    }
}

/// Decodes at the smallest scale that keeps at least `min_scale` of the full size (JPEG only;
/// other formats decode at full size), applies the orientation and normalises to 8 bits.
pub(super) fn decode(
    bytes: &[u8],
    header: &Header,
    min_scale: f64,
    limits: &Limits,
) -> Result<Decoded, EngineError> {
    let format = header.format;
    let mut cicp = None;
    let (image, mut metadata) = guard(format, || match &header.jpeg {
        None if matches!(format, SourceFormat::Heif | SourceFormat::Avif) => {
            let decoded = heif::decode(bytes, format, min_scale)?;
            cicp = decoded.cicp;
            Ok((decoded.image, decoded.metadata))
        }
        None if format == SourceFormat::Jxl => jxl::decode(bytes, max_alloc(limits)),
        Some(jpeg_header) => {
            let scale = jpeg::pick_scale(jpeg_header, min_scale);
            let cmyk = jpeg_header.icc.as_deref().and_then(colour::cmyk_to_srgb);
            let image = jpeg::decode(bytes, jpeg_header, scale, cmyk.as_deref())?;
            let metadata = Metadata {
                exif: jpeg_header.exif.clone(),
                // A CMYK profile no longer describes the (RGB) pixels.
                icc: jpeg_header.icc.clone().filter(|_| cmyk.is_none()),
            };
            Ok((image, metadata))
        }
        None if format == SourceFormat::Tiff && super::tiff::ycbcr_dimensions(bytes).is_some() => {
            let image = super::tiff::decode_ycbcr(bytes, max_alloc(limits))
                .map_err(|e| EngineError::decode(format.name(), e))?;
            Ok((image, Metadata::default()))
        }
        None => {
            let mut decoder = image_decoder(bytes, format, limits)?;
            let metadata = Metadata {
                exif: decoder.exif_metadata().ok().flatten(),
                icc: decoder.icc_profile().ok().flatten(),
            };
            let image = DynamicImage::from_decoder(decoder)
                .map_err(|e| EngineError::decode(format.name(), e))?;
            Ok((image, metadata))
        }
    })?;
    if let Some(exif) = metadata.exif.as_mut() {
        let _ = Orientation::remove_from_exif_chunk(exif);
    }
    let mut image = to_8bit(image);
    image.apply_orientation(header.orientation);
    let colour = match (&metadata.icc, cicp) {
        (Some(icc), _) => colour::from_icc(icc),
        (None, Some(cicp)) => colour::from_cicp(cicp),
        (None, None) => None,
    };
    Ok(Decoded {
        image,
        logical: oriented(header.stored, header.orientation),
        info: header.info(),
        metadata,
        colour,
    })
}

fn image_decoder<'a>(
    bytes: &'a [u8],
    format: SourceFormat,
    limits: &Limits,
) -> Result<impl ImageDecoder + 'a, EngineError> {
    let image_format = match format {
        SourceFormat::Png => ImageFormat::Png,
        SourceFormat::Gif => ImageFormat::Gif,
        SourceFormat::Webp => ImageFormat::WebP,
        SourceFormat::Tiff => ImageFormat::Tiff,
        SourceFormat::Bmp => ImageFormat::Bmp,
        // JPEGs whose header libjpeg-turbo only warns about: zune-jpeg is more forgiving.
        SourceFormat::Jpeg => ImageFormat::Jpeg,
        SourceFormat::Heif | SourceFormat::Avif | SourceFormat::Jxl => {
            return Err(EngineError::Internal(format!(
                "{} has a decoder of its own",
                format.name()
            )))
        }
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), image_format);
    let mut decoder_limits = image::Limits::default();
    decoder_limits.max_alloc = Some(max_alloc(limits));
    reader.limits(decoder_limits);
    reader
        .into_decoder()
        .map_err(|e| EngineError::decode(format.name(), e))
}

/// Room for the largest image allowed at 16-bit RGBA plus a decoder's own buffers; the pixel
/// limit itself is checked from the header before decoding.
pub(super) fn max_alloc(limits: &Limits) -> u64 {
    limits.max_pixels.saturating_mul(8).max(64 << 20)
}

/// The logical screen size of a GIF (its header's first fields).
fn gif_screen(bytes: &[u8]) -> Option<(u16, u16)> {
    if bytes.len() < 10 || !(bytes.starts_with(b"GIF87a") || bytes.starts_with(b"GIF89a")) {
        return None;
    }
    Some((
        u16::from_le_bytes([bytes[6], bytes[7]]),
        u16::from_le_bytes([bytes[8], bytes[9]]),
    ))
}

/// Runs a decoder step, turning a panic inside the decoder into a decode error.
fn guard<T>(
    format: SourceFormat,
    step: impl FnOnce() -> Result<T, EngineError>,
) -> Result<T, EngineError> {
    catch_unwind(AssertUnwindSafe(step)).unwrap_or_else(|payload| {
        Err(EngineError::decode(
            format.name(),
            format!("decoder crashed: {}", panic_message(&*payload)),
        ))
    })
}

/// Every image the engine works on is 8 bits per channel: gray, gray+alpha, RGB or RGBA.
pub(super) fn to_8bit(image: DynamicImage) -> DynamicImage {
    match image {
        DynamicImage::ImageLuma8(_)
        | DynamicImage::ImageLumaA8(_)
        | DynamicImage::ImageRgb8(_)
        | DynamicImage::ImageRgba8(_) => image,
        DynamicImage::ImageLuma16(_) => DynamicImage::ImageLuma8(image.to_luma8()),
        DynamicImage::ImageLumaA16(_) => DynamicImage::ImageLumaA8(image.to_luma_alpha8()),
        DynamicImage::ImageRgb16(_) | DynamicImage::ImageRgb32F(_) => {
            DynamicImage::ImageRgb8(image.to_rgb8())
        }
        _ => DynamicImage::ImageRgba8(image.to_rgba8()),
    }
}

pub(super) fn oriented((w, h): (u32, u32), orientation: Orientation) -> (u32, u32) {
    match orientation {
        Orientation::Rotate90
        | Orientation::Rotate270
        | Orientation::Rotate90FlipH
        | Orientation::Rotate270FlipH => (h, w),
        _ => (w, h),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_decoder_panic_becomes_a_decode_error() {
        let result: Result<(), EngineError> =
            guard(SourceFormat::Png, || panic!("index out of bounds"));
        let e = result.unwrap_err();
        assert_eq!(e.code(), crate::failure::FailureCode::DecodeError);
        assert!(
            e.to_string()
                .contains("decoder crashed: index out of bounds"),
            "{e}"
        );
    }
}
