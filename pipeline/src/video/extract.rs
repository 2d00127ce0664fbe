//! Frames out of ffmpeg, as displayed (its autorotation, then `scale=iw*sar:ih` for square
//! pixels), as PPM images on a pipe: each carries its own size, so a stream whose resolution
//! changes gives frames of their own sizes. A frame at a time is reached by seeking (to the
//! keyframe before it, then decoding up to it), so ten frames of a two-hour video decode
//! seconds, not hours.

use std::ffi::OsString;

use super::child::{self, ChildLimits, Finished};
use super::choose::showinfo_times;
use super::probe::{first_line, from_child};
use super::{Video, VideoError, VideoLimits};
use crate::engine::Interrupt;

/// One decoded frame: packed RGB, 8 bits a channel.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Seconds from the video's first frame.
    pub t: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Reads frames of one video.
pub struct FrameReader<'a> {
    video: &'a Video,
    limits: &'a VideoLimits,
}

impl<'a> FrameReader<'a> {
    pub fn new(video: &'a Video, limits: &'a VideoLimits) -> FrameReader<'a> {
        FrameReader { video, limits }
    }

    /// The frame shown at `t` (the first at or after it); `None` when there is none (past the
    /// end, or a stream whose timestamps jump).
    pub fn frame_at(
        &self,
        t: f64,
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Option<Frame>, VideoError> {
        let seek = format!("{:.6}", t.max(0.0));
        let finished = self.decode(&["-ss", &seek], &["-frames:v", "1"], stop)?;
        Ok(self.frames_of(&finished)?.into_iter().next())
    }

    /// Up to `count` keyframes from the start, within the first `window` seconds: only
    /// keyframes are decoded, so this is quick.
    pub fn keyframes(
        &self,
        count: usize,
        window: f64,
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Vec<Frame>, VideoError> {
        let (window, count) = (format!("{window:.3}"), count.to_string());
        let finished = self.decode(
            &["-skip_frame", "nokey", "-t", &window],
            &["-frames:v", &count],
            stop,
        )?;
        self.frames_of(&finished)
    }

    /// Runs ffmpeg on the video with `input` options before `-i` and `output` options after.
    fn decode(
        &self,
        input: &[&str],
        output: &[&str],
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Finished, VideoError> {
        let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "info"]
            .iter()
            .chain(&["-threads", "1", "-protocol_whitelist", "file", "-copyts"])
            .chain(input)
            .map(OsString::from)
            .collect();
        args.push("-i".into());
        args.push(self.video.path.as_os_str().to_owned());
        args.extend(
            ["-map", "0:v:0", "-an", "-sn", "-dn"]
                .iter()
                .chain(output)
                .chain(&[
                    "-vf",
                    "scale=iw*sar:ih,setsar=1,showinfo",
                    "-pix_fmt",
                    "rgb24",
                ])
                .chain(&["-f", "image2pipe", "-c:v", "ppm", "pipe:1"])
                .map(OsString::from),
        );
        let limits = ChildLimits {
            memory: self.limits.memory,
            stall: self.limits.stall,
        };
        child::run("ffmpeg", &args, &limits, stop).map_err(from_child)
    }

    /// The frames a finished ffmpeg wrote, with their times; its complaint when it wrote
    /// none and failed.
    fn frames_of(&self, finished: &Finished) -> Result<Vec<Frame>, VideoError> {
        let images = read_ppms(&finished.stdout);
        if images.is_empty() && !finished.status.success() {
            return Err(complaint(&finished.stderr));
        }
        let times = showinfo_times(&finished.stderr);
        images
            .into_iter()
            .enumerate()
            .map(|(i, (width, height, rgb))| {
                let pixels = u64::from(width) * u64::from(height);
                if pixels > self.limits.max_pixels {
                    return Err(VideoError::PixelLimit {
                        width: width.into(),
                        height: height.into(),
                        pixels,
                        limit: self.limits.max_pixels,
                    });
                }
                let pts = times.get(i).copied().unwrap_or(self.video.info.start_time);
                // Milliseconds: finer digits are only timestamp arithmetic.
                let t = ((pts - self.video.info.start_time).max(0.0) * 1000.0).round() / 1000.0;
                Ok(Frame {
                    t,
                    width,
                    height,
                    rgb,
                })
            })
            .collect()
    }
}

/// What ffmpeg's complaint means.
fn complaint(stderr: &str) -> VideoError {
    let lower = stderr.to_ascii_lowercase();
    if lower.contains("cannot allocate memory") || lower.contains("out of memory") {
        return VideoError::OutOfMemory;
    }
    if lower.contains("decoder (codec") && lower.contains("not found") {
        return VideoError::UnsupportedCodec(first_line(stderr, "unknown"));
    }
    let errors: Vec<&str> = stderr
        .lines()
        .filter(|l| {
            let l = l.to_ascii_lowercase();
            l.contains("error") || l.contains("invalid") || l.contains("corrupt")
        })
        .collect();
    VideoError::Damaged(first_line(
        &errors.join("\n"),
        "the decoder stopped without a frame",
    ))
}

/// Binary PPMs (`P6 W H 255` and W×H×3 bytes) one after another; a short last one is dropped.
fn read_ppms(mut data: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut images = Vec::new();
    while let Some((width, height, header)) = ppm_header(data) {
        let size = width as usize * height as usize * 3;
        let Some(pixels) = data.get(header..header + size) else {
            break;
        };
        images.push((width, height, pixels.to_vec()));
        data = &data[header + size..];
    }
    images
}

/// Width, height and header length of a binary PPM with 8-bit samples.
fn ppm_header(data: &[u8]) -> Option<(u32, u32, usize)> {
    if !data.starts_with(b"P6") {
        return None;
    }
    let mut fields = Vec::with_capacity(3);
    let mut at = 2;
    while fields.len() < 3 {
        while data.get(at)?.is_ascii_whitespace() {
            at += 1;
        }
        let start = at;
        while data.get(at)?.is_ascii_digit() {
            at += 1;
        }
        fields.push(
            std::str::from_utf8(&data[start..at])
                .ok()?
                .parse::<u32>()
                .ok()?,
        );
    }
    // One whitespace byte ends the header.
    let (width, height, max) = (fields[0], fields[1], fields[2]);
    (max == 255 && width > 0 && height > 0).then_some((width, height, at + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ppm_streams_split_into_images() {
        let mut data = b"P6\n2 1\n255\n".to_vec();
        data.extend([1, 2, 3, 4, 5, 6]);
        data.extend(b"P6 1 1 255 ");
        data.extend([7, 8, 9]);
        data.extend(b"P6\n4 4\n255\n\x01"); // cut short
        let images = read_ppms(&data);
        assert_eq!(images.len(), 2);
        assert_eq!(images[0], (2, 1, vec![1, 2, 3, 4, 5, 6]));
        assert_eq!(images[1], (1, 1, vec![7, 8, 9]));
        assert!(read_ppms(b"P5\n1 1\n255\n\x00").is_empty());
    }
}
