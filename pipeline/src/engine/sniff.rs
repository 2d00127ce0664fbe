//! What the bytes are, judged from their first bytes and never from a name or a Content-Type.

use serde::{Deserialize, Serialize};

use crate::spec::Format;

/// Image formats the engine reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SourceFormat {
    Jpeg,
    Png,
    Webp,
    Gif,
    /// Decoded by the `image` crate's pure-Rust TIFF decoder (8/16-bit, LZW, Deflate, JPEG).
    Tiff,
    Bmp,
    /// HEIC and other HEIF images, through libheif.
    Heif,
    /// AVIF, through libheif.
    Avif,
    /// JPEG XL, through jxl-oxide.
    Jxl,
}

impl SourceFormat {
    pub fn name(self) -> &'static str {
        match self {
            SourceFormat::Jpeg => "jpeg",
            SourceFormat::Png => "png",
            SourceFormat::Webp => "webp",
            SourceFormat::Gif => "gif",
            SourceFormat::Tiff => "tiff",
            SourceFormat::Bmp => "bmp",
            SourceFormat::Heif => "heif",
            SourceFormat::Avif => "avif",
            SourceFormat::Jxl => "jxl",
        }
    }

    /// The output format used when an output does not name one.
    pub fn default_output(self) -> Format {
        match self {
            SourceFormat::Jpeg => Format::Jpeg,
            SourceFormat::Png => Format::Png,
            SourceFormat::Webp => Format::Webp,
            SourceFormat::Gif => Format::Gif,
            // Neither is an output format: camera TIFFs are photos, BMPs mostly graphics.
            SourceFormat::Tiff => Format::Jpeg,
            SourceFormat::Bmp => Format::Png,
            // Phone photos: JPEG is what every viewer shows.
            SourceFormat::Heif | SourceFormat::Jxl => Format::Jpeg,
            SourceFormat::Avif => Format::Avif,
        }
    }
}

/// Video containers, by their bytes (API.md § Video files).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Container {
    /// ISO base media: MP4, MOV, M4V, 3GP (an `ftyp` box that is not an image brand).
    IsoBmff,
    /// Matroska and WebM (an EBML header).
    Matroska,
    /// MPEG transport stream (sync bytes every 188).
    MpegTs,
}

/// The verdict on some bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sniffed {
    Image(SourceFormat),
    Video(Container),
    /// A known image format the engine does not read.
    Unsupported(&'static str),
    NotAnImage,
}

/// How many leading bytes [`sniff`] needs to decide.
pub const SNIFF_LEN: usize = 32;

pub fn sniff(bytes: &[u8]) -> Sniffed {
    let starts = |magic: &[u8]| bytes.starts_with(magic);
    if starts(&[0xFF, 0xD8, 0xFF]) {
        return Sniffed::Image(SourceFormat::Jpeg);
    }
    if starts(b"\x89PNG\r\n\x1a\n") {
        return Sniffed::Image(SourceFormat::Png);
    }
    if starts(b"GIF87a") || starts(b"GIF89a") {
        return Sniffed::Image(SourceFormat::Gif);
    }
    if bytes.len() >= 12 && starts(b"RIFF") && &bytes[8..12] == b"WEBP" {
        return Sniffed::Image(SourceFormat::Webp);
    }
    if starts(b"II*\0") || starts(b"MM\0*") || starts(b"II+\0") || starts(b"MM\0+") {
        return Sniffed::Image(SourceFormat::Tiff);
    }
    if is_bmp(bytes) {
        return Sniffed::Image(SourceFormat::Bmp);
    }
    if let Some(format) = heif_brand(bytes) {
        return Sniffed::Image(format);
    }
    if starts(&[0xFF, 0x0A]) || starts(b"\0\0\0\x0cJXL \r\n\x87\n") {
        return Sniffed::Image(SourceFormat::Jxl);
    }
    if let Some(container) = video_container(bytes) {
        return Sniffed::Video(container);
    }
    let unsupported = if starts(&[0, 0, 1, 0]) || starts(&[0, 0, 2, 0]) {
        Some("ico")
    } else if starts(b"8BPS") {
        Some("psd")
    } else if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        match &bytes[8..12] {
            b"avis" => Some("avif sequence"),
            b"hevc" | b"msf1" => Some("heif sequence"),
            _ => None,
        }
    } else if starts(b"\x00\x00\x00\x0cjP  ") || starts(&[0xFF, 0x4F, 0xFF, 0x51]) {
        Some("jpeg 2000")
    } else if looks_like_svg(bytes) {
        Some("svg")
    } else {
        None
    };
    match unsupported {
        Some(name) => Sniffed::Unsupported(name),
        None => Sniffed::NotAnImage,
    }
}

/// `BM`, then a DIB header of one of the sizes BMP versions use (two letters alone are text).
fn is_bmp(bytes: &[u8]) -> bool {
    let Some(size) = bytes.get(14..18) else {
        return false;
    };
    let size = u32::from_le_bytes([size[0], size[1], size[2], size[3]]);
    bytes.starts_with(b"BM") && matches!(size, 12 | 16 | 40 | 52 | 56 | 64 | 108 | 124)
}

/// A still-image HEIF brand: AVIF when the brands name it, HEIF (HEIC) otherwise. Image
/// sequences (`avis`, `msf1`, `hevc`) are not stills: libheif 1.15 cannot read them, so they are
/// refused as unsupported.
fn heif_brand(bytes: &[u8]) -> Option<SourceFormat> {
    if bytes.len() < 12 || &bytes[4..8] != b"ftyp" {
        return None;
    }
    let size = u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) as usize;
    let brands = bytes
        .get(16..size.min(bytes.len()).max(16))
        .unwrap_or_default();
    let compatible = |brand: &[u8]| brands.chunks_exact(4).any(|b| b == brand);
    match &bytes[8..12] {
        b"avif" => Some(SourceFormat::Avif),
        b"heic" | b"heix" => Some(SourceFormat::Heif),
        b"mif1" if compatible(b"avif") => Some(SourceFormat::Avif),
        b"mif1" => Some(SourceFormat::Heif),
        _ => None,
    }
}

/// An ISO BMFF file whose brand is no image format's, an EBML header, or MPEG-TS packets.
fn video_container(bytes: &[u8]) -> Option<Container> {
    if bytes.len() >= 12 && &bytes[4..8] == b"ftyp" {
        let image_brand = matches!(
            &bytes[8..12],
            b"avif" | b"avis" | b"heic" | b"heix" | b"hevc" | b"mif1" | b"msf1"
        );
        return (!image_brand).then_some(Container::IsoBmff);
    }
    if bytes.starts_with(&[0x1A, 0x45, 0xDF, 0xA3]) {
        return Some(Container::Matroska);
    }
    let sync = |at: usize| bytes.get(at) == Some(&0x47);
    (sync(0) && sync(188) && (bytes.len() <= 376 || sync(376))).then_some(Container::MpegTs)
}

fn looks_like_svg(bytes: &[u8]) -> bool {
    let head = &bytes[..bytes.len().min(256)];
    let text = String::from_utf8_lossy(head);
    let text = text.trim_start_matches('\u{feff}').trim_start();
    text.starts_with("<svg") || (text.starts_with("<?xml") && text.contains("<svg"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recognises_magic_numbers() {
        assert_eq!(
            sniff(&[0xFF, 0xD8, 0xFF, 0xE0]),
            Sniffed::Image(SourceFormat::Jpeg)
        );
        assert_eq!(
            sniff(b"\x89PNG\r\n\x1a\n...."),
            Sniffed::Image(SourceFormat::Png)
        );
        assert_eq!(sniff(b"GIF89a..."), Sniffed::Image(SourceFormat::Gif));
        assert_eq!(
            sniff(b"RIFF\0\0\0\0WEBPVP8 "),
            Sniffed::Image(SourceFormat::Webp)
        );
        assert_eq!(
            sniff(b"II*\0\x08\0\0\0"),
            Sniffed::Image(SourceFormat::Tiff)
        );
        assert_eq!(
            sniff(b"MM\0*\0\0\0\x08"),
            Sniffed::Image(SourceFormat::Tiff)
        );
        let mut bmp = b"BM\0\0\0\0\0\0\0\0\x36\0\0\0\x28\0\0\0".to_vec();
        assert_eq!(sniff(&bmp), Sniffed::Image(SourceFormat::Bmp));
        bmp[14] = 0x99;
        assert_eq!(sniff(&bmp), Sniffed::NotAnImage, "BM and no DIB header");
        assert_eq!(sniff(b"BMW is a car"), Sniffed::NotAnImage);
        assert_eq!(
            sniff(b"\0\0\0\x1cftypavif"),
            Sniffed::Image(SourceFormat::Avif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic"),
            Sniffed::Image(SourceFormat::Heif)
        );
        assert_eq!(
            sniff(b"\0\0\0\x18ftypmif1\0\0\0\0mif1avif"),
            Sniffed::Image(SourceFormat::Avif)
        );
        assert_eq!(
            sniff(&[0xFF, 0x0A, 0xFA]),
            Sniffed::Image(SourceFormat::Jxl)
        );
        assert_eq!(
            sniff(b"<?xml version=\"1.0\"?><svg>"),
            Sniffed::Unsupported("svg")
        );
        assert_eq!(sniff(b"%PDF-1.7"), Sniffed::NotAnImage);
        assert_eq!(sniff(b""), Sniffed::NotAnImage);
        assert_eq!(sniff(b"RIFF\0\0\0\0WAVE"), Sniffed::NotAnImage);
    }

    #[test]
    fn recognises_video_containers() {
        assert_eq!(
            sniff(b"\0\0\0\x20ftypisom\0\0\x02\0"),
            Sniffed::Video(Container::IsoBmff)
        );
        assert_eq!(
            sniff(b"\0\0\0\x14ftypqt  "),
            Sniffed::Video(Container::IsoBmff)
        );
        assert_eq!(
            sniff(&[0x1A, 0x45, 0xDF, 0xA3, 0x9F]),
            Sniffed::Video(Container::Matroska)
        );
        let mut ts = vec![0u8; 400];
        for at in [0, 188, 376] {
            ts[at] = 0x47;
        }
        assert_eq!(sniff(&ts), Sniffed::Video(Container::MpegTs));
        ts[188] = 0;
        assert_eq!(sniff(&ts), Sniffed::NotAnImage);
    }
}
