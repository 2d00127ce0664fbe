//! The WebP container (RIFF) around libwebp's stills: the chunks of an encoded still, and a
//! still rewrapped in the extended format (`VP8X`) with its ICC profile and EXIF. libwebp's
//! simple encoder writes neither; the animated WebP writer builds on the same chunks.

/// VP8X flags.
pub const ANIMATION: u8 = 0x02;
pub const EXIF: u8 = 0x08;
pub const ALPHA: u8 = 0x10;
pub const ICC: u8 = 0x20;

/// The image chunks (`ALPH` and `VP8 `, or `VP8L`) of a still WebP file, whole.
pub fn image_chunks(still: &[u8]) -> Result<Vec<u8>, String> {
    let mut at = 12;
    let mut data = Vec::new();
    while let Some(header) = still.get(at..at + 8) {
        let size = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        let end = at + 8 + size + (size & 1);
        let whole = still.get(at..end.min(still.len())).ok_or("a cut chunk")?;
        if matches!(&header[..4], b"ALPH" | b"VP8 " | b"VP8L") {
            data.extend_from_slice(whole);
        }
        at = end;
    }
    if data.is_empty() {
        return Err("libwebp wrote no image data".into());
    }
    Ok(data)
}

/// Whether image chunks carry transparency (an `ALPH` chunk, or a `VP8L` whose header says so).
pub fn has_alpha(chunks: &[u8]) -> bool {
    match chunks.get(..4) {
        Some(b"ALPH") => true,
        // VP8L: signature byte, then 14 + 14 bits of size, then the alpha bit.
        Some(b"VP8L") => chunks.get(12).is_some_and(|b| b & 0x10 != 0),
        _ => false,
    }
}

/// The `VP8X` header chunk's payload: flags and canvas size.
pub fn vp8x(flags: u8, width: u32, height: u32) -> Vec<u8> {
    let mut data = vec![flags, 0, 0, 0];
    data.extend_from_slice(&u24(width - 1));
    data.extend_from_slice(&u24(height - 1));
    data
}

/// A still WebP with its ICC profile and EXIF, from libwebp's simple-format `still`.
pub fn with_metadata(
    still: &[u8],
    width: u32,
    height: u32,
    icc: Option<&[u8]>,
    exif: Option<&[u8]>,
) -> Result<Vec<u8>, String> {
    if icc.is_none() && exif.is_none() {
        return Ok(still.to_vec());
    }
    let image = image_chunks(still)?;
    let mut flags = if has_alpha(&image) { ALPHA } else { 0 };
    flags |= if icc.is_some() { ICC } else { 0 } | if exif.is_some() { EXIF } else { 0 };
    let mut body = b"WEBP".to_vec();
    chunk(&mut body, b"VP8X", &vp8x(flags, width, height));
    if let Some(icc) = icc {
        chunk(&mut body, b"ICCP", icc);
    }
    body.extend_from_slice(&image);
    if let Some(exif) = exif {
        chunk(&mut body, b"EXIF", exif);
    }
    riff(body)
}

/// `RIFF`, the size, then `body` (which starts with `WEBP`).
pub fn riff(body: Vec<u8>) -> Result<Vec<u8>, String> {
    let size = u32::try_from(body.len()).map_err(|_| "over 4 GiB".to_owned())?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&size.to_le_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Appends a RIFF chunk, padded to an even length.
pub fn chunk(out: &mut Vec<u8>, fourcc: &[u8; 4], data: &[u8]) {
    out.extend_from_slice(fourcc);
    out.extend_from_slice(&(data.len() as u32).to_le_bytes());
    out.extend_from_slice(data);
    if data.len() % 2 == 1 {
        out.push(0);
    }
}

pub fn u24(value: u32) -> [u8; 3] {
    let [a, b, c, _] = value.to_le_bytes();
    [a, b, c]
}
