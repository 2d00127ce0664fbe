//! Encoding an animation's frames as an animated GIF or WebP. Each frame after the first holds
//! only the rectangle that changed (frames that change nothing lengthen the one before), and the
//! frames are compressed in parallel: the GIF palette and LZW per frame, each WebP frame as a
//! still by libwebp, assembled here into the WebP container (RIFF `VP8X`, `ANIM`, `ANMF`).

use image::{DynamicImage, GenericImageView, RgbaImage};
use rayon::prelude::*;

use crate::engine::error::EngineError;
use crate::engine::riff;
use crate::spec::Format;

use super::container::Plays;

/// One frame of an output, whole, and how long it shows.
pub struct Frame {
    pub image: RgbaImage,
    pub delay_ms: u32,
}

impl Frame {
    pub fn new(image: DynamicImage, delay_ms: u32) -> Frame {
        Frame {
            image: super::rgba(image),
            delay_ms,
        }
    }
}

/// A rectangle of a frame to store: left, top, width, height.
type Rect = (u32, u32, u32, u32);

/// What to store of each frame: its changed rectangle and how long it shows.
struct Piece<'a> {
    image: &'a RgbaImage,
    /// The frame shown before it, if any.
    previous: Option<&'a RgbaImage>,
    rect: Rect,
    delay_ms: u32,
}

/// The pieces of `frames`: the first whole, each later one as its changed rectangle (`align`
/// rounds its origin down to a multiple, as WebP's even offsets need).
fn pieces(frames: &[Frame], align: u32) -> Vec<Piece<'_>> {
    let mut pieces: Vec<Piece<'_>> = Vec::with_capacity(frames.len());
    for (i, frame) in frames.iter().enumerate() {
        let full = (0, 0, frame.image.width(), frame.image.height());
        let rect = match i.checked_sub(1) {
            None => Some(full),
            Some(p) => changed(&frames[p].image, &frame.image, align),
        };
        match (rect, pieces.last_mut()) {
            // Nothing changed: the previous piece shows longer.
            (None, Some(last)) => last.delay_ms = last.delay_ms.saturating_add(frame.delay_ms),
            (rect, _) => pieces.push(Piece {
                image: &frame.image,
                previous: i.checked_sub(1).map(|p| &frames[p].image),
                rect: rect.unwrap_or(full),
                delay_ms: frame.delay_ms,
            }),
        }
    }
    pieces
}

/// The smallest rectangle outside which `next` equals `previous`, its origin aligned down to
/// `align`; `None` when they are equal.
fn changed(previous: &RgbaImage, next: &RgbaImage, align: u32) -> Option<Rect> {
    if previous.dimensions() != next.dimensions() {
        return Some((0, 0, next.width(), next.height()));
    }
    let stride = next.width() as usize * 4;
    let rows = previous
        .as_raw()
        .chunks_exact(stride)
        .zip(next.as_raw().chunks_exact(stride));
    let (mut top, mut bottom, mut left, mut right) = (u32::MAX, 0, u32::MAX, 0);
    for (y, (a, b)) in (0u32..).zip(rows) {
        if a == b {
            continue;
        }
        let differs = |(p, q): (&[u8], &[u8])| p != q;
        let pixels = || a.chunks_exact(4).zip(b.chunks_exact(4));
        let first = pixels().position(differs).unwrap_or(0) as u32;
        let last = pixels().rposition(differs).unwrap_or(0) as u32;
        top = top.min(y);
        bottom = y;
        left = left.min(first);
        right = right.max(last);
    }
    if top == u32::MAX {
        return None;
    }
    let (left, top) = (left - left % align, top - top % align);
    Some((left, top, right + 1 - left, bottom + 1 - top))
}

fn crop(image: &RgbaImage, (x, y, w, h): Rect) -> RgbaImage {
    image.view(x, y, w, h).to_image()
}

/// An animated GIF. Each frame stores its changed rectangle over the frame before, with the
/// unchanged pixels transparent. GIF cannot make a kept pixel transparent again, so a frame
/// before one that uncovers pixels is stored whole and cleared after it shows, and the frame
/// after it is stored whole.
pub fn gif(frames: &[Frame], plays: Plays, quality: u8) -> Result<Vec<u8>, EngineError> {
    let failed = |e: gif::EncodingError| EngineError::encode(Format::Gif.name(), e);
    // NeuQuant speed 1 (best palette) .. 30 (fastest), as for stills.
    let speed = (31 - i32::from(quality) * 30 / 100).clamp(1, 30);
    let mut pieces = pieces(frames, 1);
    let clears: Vec<bool> = pieces
        .windows(2)
        .map(|pair| uncovers(pair[0].image, pair[1].image))
        .chain([false])
        .collect();
    for (k, piece) in pieces.iter_mut().enumerate() {
        let after_clear = k > 0 && clears[k - 1];
        if clears[k] || after_clear {
            piece.rect = (0, 0, piece.image.width(), piece.image.height());
        }
        if after_clear {
            // Drawn on a cleared canvas: nothing of the frame before shows through.
            piece.previous = None;
        }
    }
    let encoded: Vec<gif::Frame<'static>> = pieces
        .par_iter()
        .zip(&clears)
        .map(|(piece, &clear)| {
            let (x, y, w, h) = piece.rect;
            let mut pixels = crop(piece.image, piece.rect).into_raw();
            if let Some(previous) = piece.previous {
                keep_unchanged(&mut pixels, &crop(previous, piece.rect));
            }
            let mut frame = gif::Frame::from_rgba_speed(w as u16, h as u16, &mut pixels, speed);
            frame.left = x as u16;
            frame.top = y as u16;
            // GIF delays are in hundredths of a second.
            frame.delay = ((piece.delay_ms + 5) / 10).min(u32::from(u16::MAX)) as u16;
            frame.dispose = if clear {
                gif::DisposalMethod::Background
            } else {
                gif::DisposalMethod::Keep
            };
            frame.make_lzw_pre_encoded();
            frame
        })
        .collect();
    let (width, height) = frames.first().map_or((1, 1), |f| {
        (f.image.width() as u16, f.image.height() as u16)
    });
    let mut out = Vec::new();
    let mut encoder = gif::Encoder::new(&mut out, width, height, &[]).map_err(failed)?;
    match plays {
        Plays::Forever => encoder.set_repeat(gif::Repeat::Infinite).map_err(failed)?,
        // Without a NETSCAPE block a GIF plays once.
        Plays::Times(1) => {}
        // NETSCAPE counts the repeats after the first play.
        Plays::Times(n) => encoder
            .set_repeat(gif::Repeat::Finite(n - 1))
            .map_err(failed)?,
    }
    for frame in &encoded {
        encoder.write_lzw_pre_encoded_frame(frame).map_err(failed)?;
    }
    encoder.into_inner().map_err(failed)?;
    Ok(out)
}

/// Whether `next` makes a pixel that `shown` shows transparent (GIF transparency is all or
/// nothing: any alpha shows).
fn uncovers(shown: &RgbaImage, next: &RgbaImage) -> bool {
    shown.dimensions() != next.dimensions()
        || shown
            .pixels()
            .zip(next.pixels())
            .any(|(a, b)| a.0[3] != 0 && b.0[3] == 0)
}

/// Makes the pixels of a frame that equal the frame before transparent, so the kept pixel
/// shows through: long runs of one index, which LZW stores in a few bits.
fn keep_unchanged(pixels: &mut [u8], previous: &RgbaImage) {
    for (pixel, before) in pixels
        .chunks_exact_mut(4)
        .zip(previous.as_raw().chunks_exact(4))
    {
        if pixel == before {
            pixel[3] = 0;
        }
    }
}

/// An animated WebP: every piece a lossy (or lossless) still from libwebp, placed without
/// blending so it replaces what it covers. `icc` is embedded when the output keeps metadata.
pub fn webp(
    frames: &[Frame],
    plays: Plays,
    quality: u8,
    lossless: bool,
    icc: Option<&[u8]>,
) -> Result<Vec<u8>, EngineError> {
    let failed = |e: String| EngineError::encode(Format::Webp.name(), e);
    let stills: Vec<(Rect, u32, Vec<u8>)> = pieces(frames, 2)
        .par_iter()
        .map(|piece| {
            let (_, _, w, h) = piece.rect;
            let pixels = crop(piece.image, piece.rect);
            let still = webp::Encoder::from_rgba(pixels.as_raw(), w, h)
                .encode_simple(lossless, f32::from(quality))
                .map_err(|e| failed(format!("{e:?}")))?;
            Ok((
                piece.rect,
                piece.delay_ms,
                riff::image_chunks(&still).map_err(failed)?,
            ))
        })
        .collect::<Result<_, EngineError>>()?;
    let (width, height) = frames
        .first()
        .map_or((1, 1), |f| (f.image.width(), f.image.height()));
    let alpha = frames
        .iter()
        .any(|f| f.image.pixels().any(|p| p.0[3] < 255));
    let mut flags = riff::ANIMATION;
    flags |= if alpha { riff::ALPHA } else { 0 } | if icc.is_some() { riff::ICC } else { 0 };
    let mut body = b"WEBP".to_vec();
    riff::chunk(&mut body, b"VP8X", &riff::vp8x(flags, width, height));
    if let Some(icc) = icc {
        riff::chunk(&mut body, b"ICCP", icc);
    }
    let loops = match plays {
        Plays::Forever => 0,
        Plays::Times(n) => n,
    };
    let mut anim = vec![0, 0, 0, 0];
    anim.extend_from_slice(&loops.to_le_bytes());
    riff::chunk(&mut body, b"ANIM", &anim);
    for ((x, y, w, h), delay_ms, data) in stills {
        let mut anmf = Vec::with_capacity(16 + data.len());
        for field in [x / 2, y / 2, w - 1, h - 1, delay_ms.min(0xFF_FFFF)] {
            anmf.extend_from_slice(&riff::u24(field));
        }
        // Do not blend (replace what it covers); do not dispose.
        anmf.push(0x02);
        anmf.extend_from_slice(&data);
        riff::chunk(&mut body, b"ANMF", &anmf);
    }
    riff::riff(body).map_err(failed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(fill: impl Fn(u32, u32) -> [u8; 4], delay_ms: u32) -> Frame {
        Frame {
            image: RgbaImage::from_fn(9, 7, |x, y| image::Rgba(fill(x, y))),
            delay_ms,
        }
    }

    #[test]
    fn later_frames_store_only_what_changed_and_unchanged_ones_lengthen_the_one_before() {
        let still = |_, _| [10, 20, 30, 255];
        let dot = |x, y| {
            if (x, y) == (5, 3) {
                [255, 0, 0, 255]
            } else {
                [10, 20, 30, 255]
            }
        };
        let frames = [frame(still, 40), frame(still, 60), frame(dot, 100)];
        let pieces = pieces(&frames, 2);
        assert_eq!(pieces.len(), 2);
        assert_eq!((pieces[0].rect, pieces[0].delay_ms), ((0, 0, 9, 7), 100));
        // (5, 3) with its origin rounded down to even: (4, 2), reaching x = 5 and y = 3.
        assert_eq!((pieces[1].rect, pieces[1].delay_ms), ((4, 2, 2, 2), 100));
        let clear = |x, _| {
            if x == 0 {
                [0, 0, 0, 0]
            } else {
                [10, 20, 30, 255]
            }
        };
        assert!(uncovers(&frames[0].image, &frame(clear, 10).image));
        assert!(!uncovers(&frame(clear, 10).image, &frames[0].image));
    }

    #[test]
    fn a_gif_frame_that_uncovers_pixels_shows_them_transparent() {
        use image::AnimationDecoder;
        // A red bar on a transparent canvas moves right, then a blue row is added.
        let bar = |from: u32| {
            move |x: u32, _| {
                if (from..from + 3).contains(&x) {
                    [255, 0, 0, 255]
                } else {
                    [0, 0, 0, 0]
                }
            }
        };
        let bar_and_row = |x: u32, y: u32| match (x, y) {
            (5..=7, _) => [255, 0, 0, 255],
            (_, 0) => [0, 0, 255, 255],
            _ => [0, 0, 0, 0],
        };
        let frames = [
            frame(bar(0), 100),
            frame(bar(5), 100),
            frame(bar_and_row, 100),
        ];
        let bytes = gif(&frames, Plays::Forever, 80).unwrap();
        let shown = image::codecs::gif::GifDecoder::new(std::io::Cursor::new(bytes))
            .unwrap()
            .into_frames()
            .collect_frames()
            .unwrap();
        assert_eq!(shown.len(), 3);
        for (made, want) in shown.iter().zip(&frames) {
            for (x, y, p) in made.buffer().enumerate_pixels() {
                let expected = want.image.get_pixel(x, y).0;
                let what = format!("({x}, {y}): {:?} for {expected:?}", p.0);
                assert_eq!(p.0[3] == 0, expected[3] == 0, "{what}");
                if expected[3] != 0 {
                    assert_eq!(p.0[..3], expected[..3], "{what}");
                }
            }
        }
    }
}
