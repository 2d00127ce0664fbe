//! HEIC/HEIF and AVIF through libheif (Debian's 1.15, with libde265 for HEVC and dav1d/libaom
//! for AV1), in-process as libvips, sharp and imgproxy run it: the primary image, grid tiles
//! assembled, `irot`/`imir` applied by libheif, EXIF orientation ignored (API.md).

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::{DynamicImage, ImageBuffer, RgbImage, RgbaImage};
use libheif_rs::{ColorSpace, HeifContext, ImageHandle, ItemId, RgbChroma};

use super::colour::{Cicp, SourceColour};
use super::decode::Metadata;
use super::error::EngineError;
use super::sniff::SourceFormat;
use super::tonemap;

/// A decoded HEIF primary image, with what it says about its colours.
pub(super) struct HeifImage {
    pub image: DynamicImage,
    pub metadata: Metadata,
    /// The `nclx` colour description, when the file has one instead of an ICC profile.
    pub cicp: Option<Cicp>,
}

fn failed(format: SourceFormat, e: impl std::fmt::Display) -> EngineError {
    EngineError::decode(format.name(), e)
}

fn primary(context: &HeifContext, format: SourceFormat) -> Result<ImageHandle, EngineError> {
    context
        .primary_image_handle()
        .map_err(|e| failed(format, e))
}

/// The displayed size of the primary image (after `irot`) and its colour description, from the
/// boxes alone.
pub(super) fn header(
    bytes: &[u8],
    format: SourceFormat,
) -> Result<((u32, u32), SourceColour), EngineError> {
    let context = HeifContext::read_from_bytes(bytes).map_err(|e| failed(format, e))?;
    let handle = primary(&context, format)?;
    let (icc, cicp) = colour_of(&handle);
    let colour = match (icc, cicp) {
        (Some(icc), _) => SourceColour::of_icc(&icc),
        (None, Some(cicp)) => SourceColour::of_cicp(cicp),
        (None, None) => SourceColour::SRGB,
    };
    Ok(((handle.width(), handle.height()), colour))
}

/// The primary image's ICC profile, or else its `nclx` description.
fn colour_of(handle: &ImageHandle) -> (Option<Vec<u8>>, Option<Cicp>) {
    let icc = handle
        .color_profile_raw()
        .filter(|p| !p.data.is_empty())
        .map(|p| p.data);
    let cicp = match icc {
        Some(_) => None,
        None => handle.color_profile_nclx().map(|nclx| Cicp {
            primaries: nclx.color_primaries() as u8,
            transfer: nclx.transfer_characteristics() as u8,
        }),
    };
    (icc, cicp)
}

/// Decodes the primary image to 8-bit RGB(A); call after [`dimensions`] passed the pixel limit.
/// HDR images (PQ or HLG in their `nclx`) are decoded at their bit depth and tone-mapped to
/// sRGB here.
///
/// When every output can be made from `min_scale` of the full size and the file carries a
/// thumbnail at least twice that size with the same aspect, the thumbnail is decoded instead
/// (as JPEG shrink-on-load does, and `heif-thumbnailer`): the result cannot be told apart.
pub(super) fn decode(
    bytes: &[u8],
    format: SourceFormat,
    min_scale: f64,
) -> Result<HeifImage, EngineError> {
    let context = HeifContext::read_from_bytes(bytes).map_err(|e| failed(format, e))?;
    let handle = primary(&context, format)?;
    // Colours and metadata are the primary image's; a thumbnail may not repeat them.
    let (icc, cicp) = colour_of(&handle);
    let metadata = Metadata {
        exif: exif(&handle),
        icc,
    };
    let source = usable_thumbnail(&handle, min_scale);
    let handle = source.as_ref().unwrap_or(&handle);
    let alpha = handle.has_alpha_channel();
    if let Some(hdr) = cicp.filter(|c| c.hdr().is_some()) {
        let image = decode_hdr(handle, format, alpha, hdr, min_scale)?;
        return Ok(HeifImage {
            image,
            metadata,
            // In sRGB now.
            cicp: None,
        });
    }
    let chroma = if alpha {
        RgbChroma::Rgba
    } else {
        RgbChroma::Rgb
    };
    // libheif converts 10- and 12-bit images to 8 bits itself when asked for interleaved RGB.
    let decoded = handle
        .decode(ColorSpace::Rgb(chroma), None)
        .map_err(|e| failed(format, e))?;
    let Packed {
        bytes: pixels,
        size: (width, height),
        ..
    } = interleaved(&decoded, format, if alpha { 4 } else { 3 })?;
    let image = if alpha {
        RgbaImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, pixels).map(DynamicImage::ImageRgb8)
    }
    .ok_or_else(|| failed(format, "plane size mismatch"))?;
    Ok(HeifImage {
        image,
        metadata,
        cicp,
    })
}

/// A thumbnail of the primary image big enough for `min_scale` (twice over, both sides) and of
/// the same aspect ratio (within 1 %), if the file has one.
fn usable_thumbnail(primary: &ImageHandle, min_scale: f64) -> Option<ImageHandle> {
    let (width, height) = (f64::from(primary.width()), f64::from(primary.height()));
    let count = primary.number_of_thumbnails();
    if count == 0 || min_scale >= 0.5 {
        return None;
    }
    let mut ids = vec![0 as ItemId; count];
    let found = primary.thumbnail_ids(&mut ids);
    ids.truncate(found);
    ids.into_iter()
        .filter_map(|id| primary.thumbnail(id).ok())
        .filter(|thumb| {
            let (w, h) = (f64::from(thumb.width()), f64::from(thumb.height()));
            w >= 2.0 * min_scale * width
                && h >= 2.0 * min_scale * height
                && ((w / h) / (width / height) - 1.0).abs() < 0.01
        })
        .min_by_key(|thumb| u64::from(thumb.width()) * u64::from(thumb.height()))
}

fn decode_hdr(
    handle: &ImageHandle,
    format: SourceFormat,
    alpha: bool,
    cicp: Cicp,
    min_scale: f64,
) -> Result<DynamicImage, EngineError> {
    let chroma = if alpha {
        RgbChroma::HdrRgbaLe
    } else {
        RgbChroma::HdrRgbLe
    };
    let decoded = handle
        .decode(ColorSpace::Rgb(chroma), None)
        .map_err(|e| failed(format, e))?;
    let channels = if alpha { 4 } else { 3 };
    let Packed { bytes, size, bits } = interleaved(&decoded, format, channels * 2)?;
    drop(decoded);
    let samples: Vec<u16> = bytes
        .chunks_exact(2)
        .map(|b| u16::from_le_bytes([b[0], b[1]]))
        .collect();
    drop(bytes);
    let (samples, size) = shrink_for(samples, size, alpha, min_scale)?;
    tonemap::to_sdr(&samples, bits, alpha, size, cicp)
        .ok_or_else(|| failed(format, "unsupported HDR colour description"))
}

/// Tone-mapping is per pixel: when every output is far smaller, the HDR samples are first
/// resized (Lanczos3, as outputs are) to twice what the outputs need.
fn shrink_for(
    samples: Vec<u16>,
    (width, height): (u32, u32),
    alpha: bool,
    min_scale: f64,
) -> Result<(Vec<u16>, (u32, u32)), EngineError> {
    let scale = (2.0 * min_scale).min(1.0);
    if scale > 0.75 {
        return Ok((samples, (width, height)));
    }
    let target = (
        ((f64::from(width) * scale).ceil() as u32).max(1),
        ((f64::from(height) * scale).ceil() as u32).max(1),
    );
    let mismatch = || EngineError::Internal("HDR plane size mismatch".into());
    let source = if alpha {
        DynamicImage::ImageRgba16(
            ImageBuffer::from_raw(width, height, samples).ok_or_else(mismatch)?,
        )
    } else {
        DynamicImage::ImageRgb16(
            ImageBuffer::from_raw(width, height, samples).ok_or_else(mismatch)?,
        )
    };
    let mut shrunk = DynamicImage::new(target.0, target.1, source.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Lanczos3));
    Resizer::new()
        .resize(&source, &mut shrunk, &options)
        .map_err(|e| EngineError::Internal(format!("HDR resize: {e}")))?;
    let samples = match shrunk {
        DynamicImage::ImageRgba16(image) => image.into_raw(),
        DynamicImage::ImageRgb16(image) => image.into_raw(),
        _ => return Err(mismatch()),
    };
    Ok((samples, target))
}

/// An interleaved plane's rows without their padding.
struct Packed {
    bytes: Vec<u8>,
    size: (u32, u32),
    /// Bits used of each sample (8, or 10–16 in 16-bit storage).
    bits: u8,
}

fn interleaved(
    decoded: &libheif_rs::Image,
    format: SourceFormat,
    bytes_per_pixel: usize,
) -> Result<Packed, EngineError> {
    let planes = decoded.planes();
    let plane = planes
        .interleaved
        .ok_or_else(|| failed(format, "no interleaved plane"))?;
    let (width, height) = (plane.width, plane.height);
    let row = width as usize * bytes_per_pixel;
    let mut pixels = Vec::with_capacity(row * height as usize);
    for line in plane.data.chunks(plane.stride).take(height as usize) {
        pixels.extend_from_slice(line.get(..row).ok_or_else(|| failed(format, "short row"))?);
    }
    let bits = decoded
        .bits_per_pixel(libheif_rs::Channel::Interleaved)
        .unwrap_or(8);
    Ok(Packed {
        bytes: pixels,
        size: (width, height),
        bits,
    })
}

/// The EXIF block without its 4-byte offset prefix (ISO/IEC 23008-12 A.2.1).
fn exif(handle: &ImageHandle) -> Option<Vec<u8>> {
    let mut ids: [ItemId; 1] = [0];
    if handle.metadata_block_ids(&mut ids, b"Exif") == 0 {
        return None;
    }
    let block = handle.metadata(ids[0]).ok()?;
    let offset = u32::from_be_bytes(block.get(..4)?.try_into().ok()?) as usize;
    block.get(4usize.checked_add(offset)?..).map(<[u8]>::to_vec)
}
