//! How many frames an animated GIF, WebP or APNG holds and how often it plays, read from its
//! container without decoding a pixel — so the frame and pixel limits refuse a long animation
//! before any work, as the header does for a large still.

use crate::engine::SourceFormat;

/// How many times an animation plays.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Plays {
    Forever,
    /// At least 1.
    Times(u16),
}

/// What the container says about an animation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Container {
    /// Frames the container declares (GIF, WebP: counted; APNG: `acTL`'s count).
    pub frames: u32,
    pub plays: Plays,
}

/// The animation `bytes` hold, if they are a GIF, WebP or PNG with more than one frame.
/// Truncated or malformed containers yield what could be read; the decoder reports the damage.
pub fn read(bytes: &[u8], format: SourceFormat) -> Option<Container> {
    let container = match format {
        SourceFormat::Gif => gif(bytes),
        SourceFormat::Webp => webp(bytes),
        SourceFormat::Png => apng(bytes),
        _ => None,
    }?;
    (container.frames > 1).then_some(container)
}

/// Plays from a count of plays where 0 means forever (WebP's ANIM, APNG's `num_plays`).
fn plays(count: u32) -> Plays {
    match count {
        0 => Plays::Forever,
        n => Plays::Times(n.min(u32::from(u16::MAX)) as u16),
    }
}

/// Walks the GIF's blocks, skipping the image data sub-blocks by their lengths.
fn gif(bytes: &[u8]) -> Option<Container> {
    let flags = *bytes.get(10)?;
    let mut at = 13 + colour_table_len(flags);
    let mut frames = 0u32;
    // Without a NETSCAPE2.0 block a GIF plays once.
    let mut loops = Plays::Times(1);
    while let Some(&introducer) = bytes.get(at) {
        match introducer {
            0x21 => {
                let label = *bytes.get(at + 1)?;
                let first = bytes.get(at + 2..)?;
                if label == 0xFF && first.get(..12) == Some(b"\x0bNETSCAPE2.0") {
                    if let Some(&[3, 1, lo, hi]) = first.get(12..16) {
                        // NETSCAPE counts repeats after the first play (0: forever), as
                        // browsers and libvips read it.
                        loops = match u16::from_le_bytes([lo, hi]) {
                            0 => Plays::Forever,
                            repeats => plays(u32::from(repeats) + 1),
                        };
                    }
                }
                at = skip_sub_blocks(bytes, at + 2)?;
            }
            0x2C => {
                let flags = *bytes.get(at + 9)?;
                // Descriptor, local colour table, LZW minimum code size, then the data.
                at = skip_sub_blocks(bytes, at + 10 + colour_table_len(flags) + 1)?;
                frames += 1;
            }
            _ => break,
        }
    }
    Some(Container {
        frames,
        plays: loops,
    })
}

fn colour_table_len(flags: u8) -> usize {
    if flags & 0x80 == 0 {
        0
    } else {
        3 << ((flags & 0x07) + 1)
    }
}

/// The offset after a chain of GIF sub-blocks (length byte, data) ended by a zero length.
fn skip_sub_blocks(bytes: &[u8], mut at: usize) -> Option<usize> {
    loop {
        let len = usize::from(*bytes.get(at)?);
        at += 1 + len;
        if len == 0 {
            return Some(at);
        }
    }
}

/// Counts the `ANMF` chunks of a RIFF WebP and reads `ANIM`'s loop count.
fn webp(bytes: &[u8]) -> Option<Container> {
    let mut at = 12;
    let mut frames = 0u32;
    let mut loops = None;
    while let Some(header) = bytes.get(at..at + 8) {
        let size = u32::from_le_bytes(header[4..8].try_into().ok()?) as usize;
        match &header[..4] {
            b"ANIM" => {
                let data = bytes.get(at + 8..at + 14)?;
                loops = Some(plays(u32::from(u16::from_le_bytes([data[4], data[5]]))));
            }
            b"ANMF" => frames += 1,
            _ => {}
        }
        // Chunks are padded to an even length.
        at = at.checked_add(8 + size + (size & 1))?;
    }
    Some(Container {
        frames,
        plays: loops?,
    })
}

/// An APNG's `acTL` chunk (before the first `IDAT`): frame count and plays.
fn apng(bytes: &[u8]) -> Option<Container> {
    let mut at = 8;
    while let Some(header) = bytes.get(at..at + 8) {
        let size = u32::from_be_bytes(header[..4].try_into().ok()?) as usize;
        match &header[4..8] {
            b"acTL" => {
                let data = bytes.get(at + 8..at + 16)?;
                return Some(Container {
                    frames: u32::from_be_bytes(data[..4].try_into().ok()?),
                    plays: plays(u32::from_be_bytes(data[4..8].try_into().ok()?)),
                });
            }
            b"IDAT" => return None,
            _ => {}
        }
        // Length, type, data, CRC.
        at = at.checked_add(12 + size)?;
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A GIF of `frames` 1×1 frames with an optional NETSCAPE loop count.
    fn tiny_gif(frames: u32, loops: Option<u16>) -> Vec<u8> {
        let mut gif = b"GIF89a\x01\x00\x01\x00\x80\x00\x00\x00\x00\x00\xff\xff\xff".to_vec();
        if let Some(n) = loops {
            gif.extend_from_slice(b"\x21\xff\x0bNETSCAPE2.0\x03\x01");
            gif.extend_from_slice(&n.to_le_bytes());
            gif.push(0);
        }
        for _ in 0..frames {
            gif.extend_from_slice(b"\x21\xf9\x04\x00\x0a\x00\x00\x00");
            gif.extend_from_slice(b"\x2c\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02\x44\x01\x00");
        }
        gif.push(0x3B);
        gif
    }

    #[test]
    fn a_gif_s_frames_and_loop_count_are_read_from_its_blocks() {
        let found = read(&tiny_gif(3, Some(5)), SourceFormat::Gif).unwrap();
        assert_eq!(
            (found.frames, found.plays),
            (3, Plays::Times(6)),
            "5 repeats"
        );
        let forever = read(&tiny_gif(2, Some(0)), SourceFormat::Gif).unwrap();
        assert_eq!(forever.plays, Plays::Forever);
        let once = read(&tiny_gif(2, None), SourceFormat::Gif).unwrap();
        assert_eq!(once.plays, Plays::Times(1));
        assert_eq!(
            read(&tiny_gif(1, Some(0)), SourceFormat::Gif),
            None,
            "a still"
        );
    }

    #[test]
    fn truncated_containers_give_what_could_be_read_and_never_panic() {
        let gif = tiny_gif(4, Some(0));
        for len in 0..gif.len() {
            let _ = read(&gif[..len], SourceFormat::Gif);
            let _ = read(&gif[..len], SourceFormat::Webp);
            let _ = read(&gif[..len], SourceFormat::Png);
        }
    }
}
