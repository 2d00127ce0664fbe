//! JPEG through libjpeg-turbo: header and metadata without decoding, decoding with DCT-domain
//! downscaling (shrink-on-load), and encoding.

use std::cell::RefCell;

use image::{DynamicImage, GrayImage, RgbImage};
use moxcms::Transform8BitExecutor;
use turbojpeg::{Colorspace, Compressor, Decompressor, Image, PixelFormat, ScalingFactor, Subsamp};

use super::error::EngineError;

const NAME: &str = "jpeg";

/// Progressive JPEGs with absurd scan counts are a known CPU bomb; real encoders stay far below.
const SCAN_LIMIT: u32 = 500;

thread_local! {
    // The compressor is reused per thread: creating one costs allocations and table set-up, and
    // every encode sets all the parameters it depends on.
    static COMPRESSOR: RefCell<Option<Compressor>> = const { RefCell::new(None) };
}

/// A fresh decompressor per image: TurboJPEG keeps the last header's fields, and a stream that
/// ends before its frame header would report the previous image's size from a reused handle.
fn decompressor() -> Result<Decompressor, EngineError> {
    Decompressor::new().map_err(|e| EngineError::Internal(e.to_string()))
}

/// What the header and the marker segments before the first scan say.
#[derive(Debug, Clone)]
pub(super) struct JpegHeader {
    pub width: u32,
    pub height: u32,
    pub colorspace: Colorspace,
    pub lossless: bool,
    /// The TIFF structure of the APP1 `Exif` segment.
    pub exif: Option<Vec<u8>>,
    /// The ICC profile, reassembled from its APP2 chunks.
    pub icc: Option<Vec<u8>>,
    /// An Adobe APP14 segment: CMYK samples are stored inverted.
    pub adobe: bool,
}

/// Reads the header. `Ok(None)`: libjpeg-turbo only warns about the header (stray bytes before a
/// marker, a damaged ICC segment); its wrapper cannot decode such files, the lenient decoder can.
pub(super) fn read_header(bytes: &[u8]) -> Result<Option<JpegHeader>, EngineError> {
    let header = match decompressor()?.read_header(bytes) {
        Ok(header) => header,
        Err(e) if is_warning(&e) => return Ok(None),
        Err(turbojpeg::Error::TurboJpegError(message)) => {
            return Err(EngineError::decode(NAME, message.trim()))
        }
        Err(_) => return Err(EngineError::decode(NAME, "no image header")),
    };
    let segments = Segments::scan(bytes);
    // TurboJPEG accepts a stream that ends before its frame header (tables only); the frame
    // header must be there and agree.
    let (Ok(width), Ok(height)) = (u32::try_from(header.width), u32::try_from(header.height))
    else {
        return Err(EngineError::decode(NAME, "no image header"));
    };
    if segments.frame != Some((width, height)) {
        return Err(EngineError::decode(NAME, "no image header"));
    }
    if width == 0 || height == 0 {
        return Err(EngineError::decode(NAME, "zero width or height"));
    }
    Ok(Some(JpegHeader {
        width,
        height,
        colorspace: header.colorspace,
        lossless: header.is_lossless,
        exif: segments.exif,
        icc: segments.icc,
        adobe: segments.adobe,
    }))
}

/// The scaling factors libjpeg-turbo applies in the DCT domain, smallest first. Powers of two
/// only: libjpeg-turbo has SIMD inverse DCTs for those, the other eighths run in plain C and
/// measured slower than decoding at the next power of two and resizing (see BENCHMARKS.md).
const SCALES: [(u32, u32); 4] = [(1, 8), (1, 4), (1, 2), (1, 1)];

/// The smallest scale at which the decoded image is still at least `min_scale` of full size.
pub(super) fn pick_scale(header: &JpegHeader, min_scale: f64) -> (u32, u32) {
    if header.lossless {
        return (1, 1);
    }
    SCALES
        .into_iter()
        .find(|&(num, denom)| f64::from(num) / f64::from(denom) >= min_scale - 1e-9)
        .unwrap_or((1, 1))
}

/// The size libjpeg-turbo produces for a dimension at `scale` (it rounds up).
pub(super) fn scaled_len(len: u32, (num, denom): (u32, u32)) -> u32 {
    (len * num).div_ceil(denom)
}

/// Decodes at `scale` into 8-bit gray or RGB (CMYK converted, through `cmyk` — the source's
/// CMYK profile — when it has one).
pub(super) fn decode(
    bytes: &[u8],
    header: &JpegHeader,
    scale: (u32, u32),
    cmyk: Option<&Transform8BitExecutor>,
) -> Result<DynamicImage, EngineError> {
    let width = scaled_len(header.width, scale) as usize;
    let height = scaled_len(header.height, scale) as usize;
    let format = match header.colorspace {
        Colorspace::Gray => PixelFormat::GRAY,
        Colorspace::CMYK | Colorspace::YCCK => PixelFormat::CMYK,
        _ => PixelFormat::RGB,
    };
    let mut pixels = vec![0u8; width * height * format.size()];
    let mut d = decompressor()?;
    d.set_scaling_factor(ScalingFactor::new(scale.0 as usize, scale.1 as usize))
        .map_err(|e| EngineError::decode(NAME, tj_message(&e)))?;
    d.set_scan_limit(SCAN_LIMIT)
        .map_err(|e| EngineError::Internal(e.to_string()))?;
    let image = Image {
        pixels: pixels.as_mut_slice(),
        width,
        pitch: width * format.size(),
        height,
        format,
    };
    match d.decompress(bytes, image) {
        Ok(()) => {}
        // libjpeg-turbo reports recoverable damage (a truncated file, stray bytes) as a warning
        // after decoding everything it could; libvips and Pillow accept such files too.
        Err(e) if is_warning(&e) => {
            tracing::debug!(warning = %tj_message(&e), "jpeg decoded with a warning");
        }
        Err(e) => return Err(EngineError::decode(NAME, tj_message(&e))),
    }
    let (w, h) = (width as u32, height as u32);
    let image = match format {
        PixelFormat::GRAY => GrayImage::from_raw(w, h, pixels).map(DynamicImage::ImageLuma8),
        PixelFormat::CMYK => {
            let rgb = match cmyk {
                Some(transform) => cmyk_through_profile(pixels, header.adobe, transform),
                None => cmyk_to_rgb(&pixels, header.adobe),
            };
            RgbImage::from_raw(w, h, rgb).map(DynamicImage::ImageRgb8)
        }
        _ => RgbImage::from_raw(w, h, pixels).map(DynamicImage::ImageRgb8),
    };
    image.ok_or_else(|| EngineError::Internal("jpeg buffer size mismatch".into()))
}

/// CMYK → sRGB as the profile says; the profile takes ink amounts, which Adobe stores inverted.
fn cmyk_through_profile(
    mut cmyk: Vec<u8>,
    adobe_inverted: bool,
    transform: &Transform8BitExecutor,
) -> Vec<u8> {
    if adobe_inverted {
        cmyk.iter_mut().for_each(|v| *v = 255 - *v);
    }
    let mut rgb = vec![0u8; cmyk.len() / 4 * 3];
    match transform.transform(&cmyk, &mut rgb) {
        Ok(()) => rgb,
        Err(_) => {
            if adobe_inverted {
                cmyk.iter_mut().for_each(|v| *v = 255 - *v);
            }
            cmyk_to_rgb(&cmyk, adobe_inverted)
        }
    }
}

/// Naive CMYK → RGB, as Pillow does: without a colour-managed conversion through the embedded
/// profile, colours are close but not exact.
fn cmyk_to_rgb(cmyk: &[u8], adobe_inverted: bool) -> Vec<u8> {
    let mut rgb = Vec::with_capacity(cmyk.len() / 4 * 3);
    for px in cmyk.chunks_exact(4) {
        let [c, m, y, k] = [px[0], px[1], px[2], px[3]].map(u32::from);
        // Adobe writes 255 - ink; other writers store the ink itself.
        let (c, m, y, k) = if adobe_inverted {
            (c, m, y, k)
        } else {
            (255 - c, 255 - m, 255 - y, 255 - k)
        };
        rgb.extend_from_slice(&[
            (c * k / 255) as u8,
            (m * k / 255) as u8,
            (y * k / 255) as u8,
        ]);
    }
    rgb
}

fn is_warning(e: &turbojpeg::Error) -> bool {
    // The TurboJPEG wrapper does not expose tj3GetErrorCode, but libjpeg's warning texts
    // (JWRN_* in jerror.h) are distinct from its fatal ones, and a fatal error after a warning
    // overwrites the text.
    const WARNINGS: [&str; 7] = [
        "Corrupt JPEG data",
        "Premature end of JPEG file",
        "Warning:",
        "Inconsistent progression sequence",
        "Invalid SOS parameters for sequential JPEG",
        "Unknown Adobe color transform",
        "Application transferred too many scanlines",
    ];
    let message = tj_message(e);
    WARNINGS.iter().any(|w| message.starts_with(w))
}

fn tj_message(e: &turbojpeg::Error) -> String {
    match e {
        turbojpeg::Error::TurboJpegError(message) => message.trim().to_owned(),
        other => other.to_string(),
    }
}

/// Encodes 8-bit gray or RGB. Chroma is subsampled 4:2:0 below quality 90, as libvips does.
pub(super) fn encode(image: &DynamicImage, quality: u8) -> Result<Vec<u8>, EngineError> {
    let (format, subsamp, bytes) = match image {
        DynamicImage::ImageLuma8(img) => (PixelFormat::GRAY, Subsamp::Gray, img.as_raw()),
        DynamicImage::ImageRgb8(img) => {
            let subsamp = if quality >= 90 {
                Subsamp::None
            } else {
                Subsamp::Sub2x2
            };
            (PixelFormat::RGB, subsamp, img.as_raw())
        }
        _ => return Err(EngineError::Internal("jpeg encoder given alpha".into())),
    };
    let width = image.width() as usize;
    let height = image.height() as usize;
    COMPRESSOR.with(|cell| {
        let mut slot = cell.borrow_mut();
        if slot.is_none() {
            *slot = Some(Compressor::new().map_err(|e| EngineError::Internal(e.to_string()))?);
        }
        let compressor = slot.as_mut().expect("just set");
        let encoded = compressor
            .set_quality(i32::from(quality))
            .and_then(|()| compressor.set_subsamp(subsamp))
            .and_then(|()| {
                compressor.compress_to_vec(Image {
                    pixels: bytes.as_slice(),
                    width,
                    pitch: width * format.size(),
                    height,
                    format,
                })
            });
        encoded.map_err(|e| {
            *slot = None;
            EngineError::encode(NAME, tj_message(&e))
        })
    })
}

/// Adds EXIF and ICC segments to an encoded JPEG, after SOI and the JFIF APP0 segment.
pub(super) fn insert_metadata(jpeg: Vec<u8>, exif: Option<&[u8]>, icc: Option<&[u8]>) -> Vec<u8> {
    let mut segments = Vec::new();
    if let Some(exif) = exif {
        let len = exif.len() + 2 + 6;
        if len <= usize::from(u16::MAX) {
            segments.extend_from_slice(&[0xFF, 0xE1]);
            segments.extend_from_slice(&(len as u16).to_be_bytes());
            segments.extend_from_slice(b"Exif\0\0");
            segments.extend_from_slice(exif);
        }
    }
    if let Some(icc) = icc {
        const CHUNK: usize = 65519 - 14;
        let chunks: Vec<&[u8]> = icc.chunks(CHUNK).collect();
        if !chunks.is_empty() && chunks.len() <= 255 {
            for (i, chunk) in chunks.iter().enumerate() {
                let len = chunk.len() + 2 + 14;
                segments.extend_from_slice(&[0xFF, 0xE2]);
                segments.extend_from_slice(&(len as u16).to_be_bytes());
                segments.extend_from_slice(b"ICC_PROFILE\0");
                segments.push(i as u8 + 1);
                segments.push(chunks.len() as u8);
                segments.extend_from_slice(chunk);
            }
        }
    }
    if segments.is_empty() || jpeg.len() < 4 {
        return jpeg;
    }
    // After SOI, and after APP0 (JFIF) if present.
    let mut at = 2;
    if jpeg[2..4] == [0xFF, 0xE0] && jpeg.len() >= 6 {
        at = 4 + usize::from(u16::from_be_bytes([jpeg[4], jpeg[5]]));
        at = at.min(jpeg.len());
    }
    let mut out = Vec::with_capacity(jpeg.len() + segments.len());
    out.extend_from_slice(&jpeg[..at]);
    out.extend_from_slice(&segments);
    out.extend_from_slice(&jpeg[at..]);
    out
}

/// Metadata segments found before the first scan. Best effort: a damaged segment list ends the
/// scan, it never fails the image.
#[derive(Default)]
struct Segments {
    /// Width and height from the first frame header (SOFn).
    frame: Option<(u32, u32)>,
    exif: Option<Vec<u8>>,
    icc: Option<Vec<u8>>,
    adobe: bool,
}

impl Segments {
    fn scan(bytes: &[u8]) -> Segments {
        let mut found = Segments::default();
        let mut icc_chunks: Vec<(u8, &[u8])> = Vec::new();
        let mut pos = 2;
        while pos + 4 <= bytes.len() {
            if bytes[pos] != 0xFF {
                break;
            }
            let marker = bytes[pos + 1];
            if marker == 0xFF {
                pos += 1; // fill byte
                continue;
            }
            if marker == 0xD8 || marker == 0x01 || (0xD0..=0xD7).contains(&marker) {
                pos += 2;
                continue;
            }
            if marker == 0xDA || marker == 0xD9 {
                break; // start of scan / end of image: no metadata after this matters
            }
            let len = usize::from(u16::from_be_bytes([bytes[pos + 2], bytes[pos + 3]]));
            if len < 2 || pos + 2 + len > bytes.len() {
                break;
            }
            let data = &bytes[pos + 4..pos + 2 + len];
            match marker {
                0xE1 if data.starts_with(b"Exif\0\0") && found.exif.is_none() => {
                    found.exif = Some(data[6..].to_vec());
                }
                0xE2 if data.starts_with(b"ICC_PROFILE\0") && data.len() > 14 => {
                    icc_chunks.push((data[12], &data[14..]));
                }
                0xEE if data.starts_with(b"Adobe") => found.adobe = true,
                // SOF0..SOF15, except DHT (C4), JPG (C8) and DAC (CC).
                0xC0..=0xCF
                    if !matches!(marker, 0xC4 | 0xC8 | 0xCC)
                        && data.len() >= 5
                        && found.frame.is_none() =>
                {
                    let height = u16::from_be_bytes([data[1], data[2]]);
                    let width = u16::from_be_bytes([data[3], data[4]]);
                    found.frame = Some((u32::from(width), u32::from(height)));
                }
                _ => {}
            }
            pos += 2 + len;
        }
        if !icc_chunks.is_empty() {
            icc_chunks.sort_by_key(|(seq, _)| *seq);
            found.icc = Some(
                icc_chunks
                    .iter()
                    .flat_map(|(_, c)| c.iter().copied())
                    .collect(),
            );
        }
        found
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_survive_garbage() {
        // Lengths that run past the end, zero lengths and no markers at all end the scan.
        for bytes in [
            &[0xFF, 0xD8, 0xFF, 0xE1, 0xFF, 0xFF, b'E'][..],
            &[0xFF, 0xD8, 0xFF, 0xE1, 0x00, 0x00][..],
            &[0xFF, 0xD8, 0x00, 0x00, 0x00][..],
            &[0xFF, 0xD8][..],
        ] {
            let s = Segments::scan(bytes);
            assert!(s.exif.is_none() && s.icc.is_none() && !s.adobe);
        }
    }

    #[test]
    fn metadata_round_trips_through_insert_and_scan() {
        let jpeg = vec![
            0xFF, 0xD8, 0xFF, 0xE0, 0x00, 0x04, 0x00, 0x00, 0xFF, 0xDA, 0x00, 0x02,
        ];
        let icc = vec![7u8; 70_000]; // two chunks
        let out = insert_metadata(jpeg, Some(b"MM\0*tiff"), Some(&icc));
        let s = Segments::scan(&out);
        assert_eq!(s.exif.as_deref(), Some(&b"MM\0*tiff"[..]));
        assert_eq!(s.icc.as_deref(), Some(&icc[..]));
    }

    #[test]
    fn picks_the_smallest_sufficient_power_of_two() {
        let header = JpegHeader {
            width: 768,
            height: 512,
            colorspace: Colorspace::YCbCr,
            lossless: false,
            exif: None,
            icc: None,
            adobe: false,
        };
        assert_eq!(pick_scale(&header, 1.0 / 3.0), (1, 2));
        assert_eq!(pick_scale(&header, 0.05), (1, 8));
        assert_eq!(pick_scale(&header, 0.25), (1, 4));
        assert_eq!(pick_scale(&header, 2.0), (1, 1));
        assert_eq!(scaled_len(4048, (1, 8)), 506);
    }
}
