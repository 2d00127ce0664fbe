//! Frames out of ffmpeg, as displayed (its autorotation, then `scale=iw*sar:ih` for square
//! pixels), as PPM images on a pipe: each carries its own size, so a stream whose resolution
//! changes gives frames of their own sizes. A frame at a time is reached by seeking (to the
//! keyframe before it, then decoding up to it), so ten frames of a two-hour video decode
//! seconds, not hours.

use std::ffi::OsString;

use super::child::{self, ChildLimits, Finished, Flow};
use super::choose::showinfo_times;
use super::probe::{first_line, from_child};
use super::{Video, VideoError, VideoLimits};
use crate::engine::Interrupt;

/// Times one decoding pass selects: ffmpeg's expression parser refuses a `select` of about 95
/// terms or more (measured with Debian's ffmpeg 5.1: "Cannot allocate memory").
const SELECT_TIMES_PER_PASS: usize = 64;

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
    shrink: Option<(u32, u32)>,
}

impl<'a> FrameReader<'a> {
    /// Frames at their displayed size, or with `shrink` (width, height; 0 for either: any),
    /// shrunk by the decoder to the smallest size that still covers it: outputs far smaller
    /// than the video need far fewer pixels converted and piped.
    pub fn new(
        video: &'a Video,
        limits: &'a VideoLimits,
        shrink: Option<(u32, u32)>,
    ) -> FrameReader<'a> {
        FrameReader {
            video,
            limits,
            shrink,
        }
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

    /// The frames first shown at or after each of `times` (ascending), in one decoding pass
    /// from the keyframe before the first: cheaper than a seek per frame when they lie close
    /// together. `on_frame` gets each frame as soon as it is decoded (its `t` is not known yet
    /// and is NaN) and may say it has had enough; the frames' times are returned, in order.
    /// Times that fall on the same frame give it once. With `keyframes_only` nothing but
    /// keyframes is decoded (and taken); `threads` is the decoder's (0: as many as it likes).
    pub fn frames_between(
        &self,
        times: &[f64],
        decoding: (bool, u32),
        stop: &dyn Fn() -> Option<Interrupt>,
        on_frame: &mut dyn FnMut(Frame) -> Flow,
    ) -> Result<Vec<f64>, VideoError> {
        // ffmpeg's expression parser gives up on very long `select` expressions ("Cannot
        // allocate memory" past a few hundred terms): a pass per batch of times.
        let mut shown = Vec::with_capacity(times.len());
        let mut enough = false;
        for batch in times.chunks(SELECT_TIMES_PER_PASS) {
            let mut counted = |frame: Frame| {
                let flow = on_frame(frame);
                enough |= matches!(flow, Flow::Enough);
                flow
            };
            shown.extend(self.frames_between_in_one_pass(batch, decoding, stop, &mut counted)?);
            if enough || stop().is_some() {
                break;
            }
        }
        Ok(shown)
    }

    /// [`FrameReader::frames_between`] for at most a few hundred times: one ffmpeg pass.
    fn frames_between_in_one_pass(
        &self,
        times: &[f64],
        (keyframes_only, threads): (bool, u32),
        stop: &dyn Fn() -> Option<Interrupt>,
        on_frame: &mut dyn FnMut(Frame) -> Flow,
    ) -> Result<Vec<f64>, VideoError> {
        let (Some(first), Some(last)) = (times.first(), times.last()) else {
            return Ok(Vec::new());
        };
        let start = self.video.info.start_time;
        // A frame is taken when it is the first at or after one of the times (`t` is the
        // stream's own timestamp here: -copyts).
        let select = times
            .iter()
            .map(|t| format!("gte(t,{0:.6})*not(gte(prev_t,{0:.6}))", start + t))
            .collect::<Vec<_>>()
            .join("+");
        let (seek, span, count) = (
            format!("{:.6}", first.max(0.0)),
            format!("{:.6}", last - first + 1.0),
            times.len().to_string(),
        );
        let skip = if keyframes_only { "nokey" } else { "default" };
        let threads = threads.to_string();
        let args = self.args(
            &[
                "-threads",
                &threads,
                "-skip_frame",
                skip,
                "-ss",
                &seek,
                "-t",
                &span,
            ],
            &["-frames:v", &count, "-fps_mode", "passthrough"],
            &format!("select='{select}',"),
        );
        let mut refused = None;
        let mut images = PpmStream::default();
        let max_pixels = self.limits.max_pixels;
        let finished =
            child::run_streaming("ffmpeg", &args, &self.child_limits(), stop, &mut |chunk| {
                images.push(chunk, &mut |width, height, rgb| {
                    if let Err(e) = check_pixels(width, height, max_pixels) {
                        refused = Some(e);
                        return Flow::Enough;
                    }
                    on_frame(Frame {
                        t: f64::NAN,
                        width,
                        height,
                        rgb,
                    })
                })
            })
            .map_err(from_child)?;
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        let times = showinfo_times(&finished.stderr);
        if images.count == 0 && !finished.status.success() && !finished.stopped_early {
            return Err(complaint(&finished.stderr));
        }
        Ok(times.into_iter().map(|pts| self.seconds(pts)).collect())
    }

    /// Runs ffmpeg on the video with `input` options before `-i` and `output` options after.
    fn decode(
        &self,
        input: &[&str],
        output: &[&str],
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Finished, VideoError> {
        // One frame or a few keyframes: decoders run one per engine thread, a thread each.
        let input: Vec<&str> = ["-threads", "1"].iter().chain(input).copied().collect();
        let args = self.args(&input, output, "");
        child::run("ffmpeg", &args, &self.child_limits(), stop).map_err(from_child)
    }

    /// ffmpeg's command line: frames as displayed (square pixels), their timestamps on stderr,
    /// PPMs on stdout; `filter` goes first in the filter chain.
    fn args(&self, input: &[&str], output: &[&str], filter: &str) -> Vec<OsString> {
        let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "info"]
            .iter()
            .chain(&["-protocol_whitelist", "file", "-copyts"])
            .chain(input)
            .map(OsString::from)
            .collect();
        args.push("-i".into());
        args.push(self.video.path.as_os_str().to_owned());
        let chain = format!("{filter}{},setsar=1,showinfo", self.scale());
        args.extend(
            ["-map", "0:v:0", "-an", "-sn", "-dn"]
                .iter()
                .chain(output)
                .chain(&["-vf", &chain, "-pix_fmt", "rgb24"])
                .chain(&["-f", "image2pipe", "-c:v", "ppm", "pipe:1"])
                .map(OsString::from),
        );
        args
    }

    /// The scale filter: square pixels (`iw*sar`), shrunk by the same factor both ways when
    /// a smaller frame still covers `shrink` (each frame judged by its own size).
    fn scale(&self) -> String {
        match self.shrink {
            None => "scale=iw*sar:ih".into(),
            Some((width, height)) => {
                let factor = format!("min(1,max({width}/(iw*sar),{height}/ih))");
                format!("scale=w='trunc(iw*sar*{factor})':h='trunc(ih*{factor})'")
            }
        }
    }

    fn child_limits(&self) -> ChildLimits {
        ChildLimits {
            memory: self.limits.memory,
            stall: self.limits.stall,
        }
    }

    /// Seconds from the first frame, to the millisecond (finer digits are only timestamp
    /// arithmetic).
    fn seconds(&self, pts: f64) -> f64 {
        ((pts - self.video.info.start_time).max(0.0) * 1000.0).round() / 1000.0
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
                check_pixels(width, height, self.limits.max_pixels)?;
                let pts = times.get(i).copied().unwrap_or(self.video.info.start_time);
                Ok(Frame {
                    t: self.seconds(pts),
                    width,
                    height,
                    rgb,
                })
            })
            .collect()
    }
}

fn check_pixels(width: u32, height: u32, limit: u64) -> Result<(), VideoError> {
    let pixels = u64::from(width) * u64::from(height);
    if pixels > limit {
        return Err(VideoError::PixelLimit {
            width: width.into(),
            height: height.into(),
            pixels,
            limit,
        });
    }
    Ok(())
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
fn read_ppms(data: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
    let mut images = Vec::new();
    PpmStream::default().push(data, &mut |width, height, rgb| {
        images.push((width, height, rgb));
        Flow::More
    });
    images
}

/// Splits a stream of binary PPMs into images as its bytes arrive.
#[derive(Default)]
struct PpmStream {
    pending: Vec<u8>,
    /// Images split off so far.
    count: usize,
}

impl PpmStream {
    /// Adds `chunk`, handing every image it completes to `image`, until that has enough.
    fn push(&mut self, chunk: &[u8], image: &mut dyn FnMut(u32, u32, Vec<u8>) -> Flow) -> Flow {
        self.pending.extend_from_slice(chunk);
        let mut used = 0;
        let mut flow = Flow::More;
        while flow == Flow::More {
            let Some((width, height, header)) = ppm_header(&self.pending[used..]) else {
                break;
            };
            let size = width as usize * height as usize * 3;
            let Some(pixels) = self.pending.get(used + header..used + header + size) else {
                break;
            };
            let pixels = pixels.to_vec();
            used += header + size;
            self.count += 1;
            flow = image(width, height, pixels);
        }
        self.pending.drain(..used);
        flow
    }
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
