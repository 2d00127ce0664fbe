//! The poster: one frame that stands for the video. Candidates are the first keyframes (quick to
//! decode: nothing between them is), scored by how much picture they hold — brightness in a
//! sane range, contrast, the spread of tones, edges. A black, blank or fading start scores low;
//! when every early keyframe is blank, frames spread over the whole video are tried too.

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use super::extract::{Frame, FrameReader};
use super::{probe, Video, VideoError, VideoInfo, VideoLimits};
use crate::engine::{Container, Interrupt, Observer, Stage};

/// Keyframes looked at first, and how far into the video they may lie (seconds).
const CANDIDATES: usize = 6;
const WINDOW: f64 = 60.0;
/// Below this a frame counts as blank (black, white, flat, or a fade).
const BLANK: f64 = 2.0;

/// The video probed, and the best frame to stand for it.
///
/// The first keyframes are decoded while the probe runs: starting a decoder is most of a
/// poster's time, and the two overlap. The probe still decides: when it refuses the file, the
/// decoder (capped in memory and bounded to the first minute) is killed and nothing it made
/// is used.
pub fn poster(
    path: &Path,
    container: Container,
    limits: &VideoLimits,
    shrink: Option<(u32, u32)>,
    observer: &dyn Observer,
) -> Result<(Video, Frame), VideoError> {
    let refused = AtomicBool::new(false);
    let stop = || {
        observer.on_stage(Stage::Step).err().or_else(|| {
            refused
                .load(Ordering::Relaxed)
                .then_some(Interrupt::Cancelled)
        })
    };
    let unprobed = Video {
        path: path.to_owned(),
        info: VideoInfo::default(),
    };
    let (info, candidates) = std::thread::scope(|scope| {
        let decoder = scope.spawn(|| {
            FrameReader::new(&unprobed, limits, shrink).keyframes(CANDIDATES, WINDOW, &stop)
        });
        let info = probe(path, container, limits, &stop);
        refused.store(info.is_err(), Ordering::Relaxed);
        let candidates = decoder
            .join()
            .unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        (info, candidates)
    });
    let video = Video {
        path: path.to_owned(),
        info: info?,
    };
    // Times were counted before the first frame's time was known.
    let start = video.info.start_time;
    let candidates = candidates?.into_iter().map(|frame| Frame {
        t: ((frame.t - start).max(0.0) * 1000.0).round() / 1000.0,
        ..frame
    });
    let frame = best(
        &FrameReader::new(&video, limits, shrink),
        &video.info,
        candidates,
        &stop,
    )?;
    Ok((video, frame))
}

/// The best-scoring of `candidates`, or when all are blank, of frames spread over the video.
fn best(
    reader: &FrameReader<'_>,
    info: &VideoInfo,
    candidates: impl Iterator<Item = Frame>,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<Frame, VideoError> {
    let mut best: Option<(f64, Frame)> = None;
    let consider = |best: &mut Option<(f64, Frame)>, frame: Frame| {
        let score = score(&frame);
        if best.as_ref().is_none_or(|(s, _)| score > *s) {
            *best = Some((score, frame));
        }
    };
    for frame in candidates {
        consider(&mut best, frame);
    }
    if best.as_ref().is_none_or(|(score, _)| *score < BLANK) {
        for fraction in [0.1, 0.3, 0.5, 0.7, 0.9] {
            if let Some(frame) = reader.frame_at(info.duration * fraction, stop)? {
                consider(&mut best, frame);
            }
        }
    }
    match best {
        Some((_, frame)) => Ok(frame),
        None => reader
            .frame_at(0.0, stop)?
            .ok_or_else(|| VideoError::Damaged("no frame could be decoded".into())),
    }
}

/// How much picture a frame holds: the entropy of its tones (bits, 0–5), plus contrast and
/// edges; far below [`BLANK`] when it is near black, near white or flat.
pub fn score(frame: &Frame) -> f64 {
    let luma = sample_luma(frame, 64);
    if luma.is_empty() {
        return 0.0;
    }
    let n = luma.len() as f64;
    let mean = luma.iter().map(|&l| f64::from(l)).sum::<f64>() / n;
    let deviation = (luma
        .iter()
        .map(|&l| (f64::from(l) - mean).powi(2))
        .sum::<f64>()
        / n)
        .sqrt();
    let mut histogram = [0u32; 32];
    for &l in &luma {
        histogram[usize::from(l) / 8] += 1;
    }
    let entropy: f64 = histogram
        .iter()
        .filter(|&&c| c > 0)
        .map(|&c| {
            let p = f64::from(c) / n;
            -p * p.log2()
        })
        .sum();
    let edges = luma
        .windows(2)
        .map(|w| f64::from(w[0].abs_diff(w[1])))
        .sum::<f64>()
        / n;
    let lit = if (16.0..=240.0).contains(&mean) {
        1.0
    } else {
        0.2
    };
    (entropy + deviation / 32.0 + (edges / 8.0).min(2.0)) * lit
}

/// Luma of about `side`×`side` pixels spread over the frame.
fn sample_luma(frame: &Frame, side: u32) -> Vec<u8> {
    let (w, h) = (frame.width.max(1), frame.height.max(1));
    let (step_x, step_y) = ((w / side).max(1), (h / side).max(1));
    let mut luma = Vec::with_capacity((side * side) as usize);
    for y in (0..h).step_by(step_y as usize) {
        for x in (0..w).step_by(step_x as usize) {
            let at = ((y * w + x) * 3) as usize;
            if let Some(px) = frame.rgb.get(at..at + 3) {
                let l =
                    (u32::from(px[0]) * 77 + u32::from(px[1]) * 150 + u32::from(px[2]) * 29) >> 8;
                luma.push(l as u8);
            }
        }
    }
    luma
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(pixel: impl Fn(u32, u32) -> [u8; 3]) -> Frame {
        let (width, height) = (128, 72);
        let mut rgb = Vec::new();
        for y in 0..height {
            for x in 0..width {
                rgb.extend(pixel(x, y));
            }
        }
        Frame {
            t: 0.0,
            width,
            height,
            rgb,
        }
    }

    #[test]
    fn pictures_beat_black_white_and_flat_frames() {
        let black = score(&frame(|_, _| [2, 2, 2]));
        let white = score(&frame(|_, _| [252, 252, 252]));
        let flat = score(&frame(|_, _| [90, 120, 150]));
        let picture = score(&frame(|x, y| {
            [(x * 2) as u8, (y * 3) as u8, ((x * y) % 256) as u8]
        }));
        for blank in [black, white, flat] {
            assert!(blank < BLANK, "{blank}");
        }
        assert!(picture > BLANK && picture > black + 2.0, "{picture}");
    }
}
