//! Frames out of ffmpeg, as displayed (its autorotation, then `scale=iw*sar:ih` for square
//! pixels), as PPM images on a pipe: each carries its own size, so a stream whose resolution
//! changes gives frames of their own sizes. A frame at a time is reached by seeking (to the
//! keyframe before it, then decoding up to it), so ten frames of a two-hour video decode
//! seconds, not hours.
//!
//! A pass is either a command line or, for a decoder primed while the probe ran
//! ([`PrimedDecoders`]), a filter graph read from its stdin: `movie=` opens the file (its
//! demuxer named, as the probe found it), and rotation and sample aspect are applied as the
//! probe says, as ffmpeg's own autorotation would.

use std::ffi::OsString;
use std::sync::{Mutex, PoisonError};

use super::child::{self, Finished, Flow, Primed};
use super::choose::showinfo_times;
use super::probe::{first_line, from_child};
use super::{Video, VideoError, VideoLimits};
use crate::engine::Interrupt;

/// Times one decoding pass selects: ffmpeg's expression parser refuses a `select` of about 95
/// terms or more (measured with Debian's ffmpeg 5.1: "Cannot allocate memory").
const SELECT_TIMES_PER_PASS: usize = 64;

/// What every decoder writes: frames as PPMs on stdout, as they come (no frame rate imposed:
/// a constant rate would repeat frames to fill the gaps between the chosen ones).
const OUTPUT: [&str; 9] = [
    "-fps_mode",
    "passthrough",
    "-pix_fmt",
    "rgb24",
    "-f",
    "image2pipe",
    "-c:v",
    "ppm",
    "pipe:1",
];

/// One decoded frame: packed RGB, 8 bits a channel.
#[derive(Debug, Clone)]
pub struct Frame {
    /// Seconds from the video's first frame.
    pub t: f64,
    pub width: u32,
    pub height: u32,
    pub rgb: Vec<u8>,
}

/// Decoders started before the probe has finished: ffmpeg spends tens of milliseconds loading
/// its libraries, and these do it meanwhile, then wait on stdin for a filter graph
/// ([`child::prime`]). A pass that can be said as a graph takes one; the rest are stopped when
/// this is dropped.
pub struct PrimedDecoders {
    ready: Mutex<Vec<Primed>>,
}

impl PrimedDecoders {
    /// Starts `count` decoders (fewer when some cannot start: passes then start their own).
    pub fn start(count: usize, limits: &VideoLimits) -> PrimedDecoders {
        let mut args: Vec<OsString> = [
            "-nostdin",
            "-hide_banner",
            "-loglevel",
            "info",
            "-filter_complex_script",
            "/dev/stdin",
            "-map",
            "[v]",
        ]
        .iter()
        .map(OsString::from)
        .collect();
        args.extend(OUTPUT.iter().map(OsString::from));
        let ready = (0..count)
            .filter_map(|_| child::prime("ffmpeg", &args, &limits.child()).ok())
            .collect();
        PrimedDecoders {
            ready: Mutex::new(ready),
        }
    }

    /// Keeps at most `count` decoders waiting; the others are stopped.
    pub fn keep(&self, count: usize) {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .truncate(count);
    }

    /// How many are still waiting.
    pub fn waiting(&self) -> usize {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len()
    }

    fn take(&self) -> Option<Primed> {
        self.ready
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .pop()
    }
}

/// One decoding pass: where it starts and ends, what it decodes and takes.
struct Pass<'p> {
    /// Seconds from the first frame to seek to (the keyframe before it is decoded from).
    seek: Option<f64>,
    /// Seconds decoded after the seek point, at most.
    span: Option<f64>,
    /// Decoder threads (0: as many as it likes).
    threads: u32,
    /// Only keyframes are decoded.
    keyframes_only: bool,
    /// Frames taken, at most.
    frames: usize,
    /// The `select` expression that picks the frames taken (all, without one).
    select: Option<&'p str>,
}

/// Reads frames of one video.
pub struct FrameReader<'a> {
    video: &'a Video,
    limits: &'a VideoLimits,
    shrink: Option<(u32, u32)>,
    primed: Option<&'a PrimedDecoders>,
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
            primed: None,
        }
    }

    /// Passes take a decoder from `primed` while it has one.
    pub fn with_primed(self, primed: &'a PrimedDecoders) -> FrameReader<'a> {
        FrameReader {
            primed: Some(primed),
            ..self
        }
    }

    /// The frame shown at `t` (the first at or after it); `None` when there is none (past the
    /// end, or a stream whose timestamps jump).
    pub fn frame_at(
        &self,
        t: f64,
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Option<Frame>, VideoError> {
        let t = t.max(0.0);
        // `t` is the stream's own timestamp in the filters (-copyts).
        let select = format!("gte(t,{:.6})", self.video.info.start_time + t);
        // One frame or a few keyframes: decoders run one per engine thread, a thread each.
        let pass = Pass {
            seek: Some(t),
            span: None,
            threads: 1,
            keyframes_only: false,
            frames: 1,
            select: Some(&select),
        };
        Ok(self.collect(&pass, stop)?.into_iter().next())
    }

    /// Up to `count` keyframes from the start, within the first `window` seconds: only
    /// keyframes are decoded, so this is quick.
    pub fn keyframes(
        &self,
        count: usize,
        window: f64,
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Vec<Frame>, VideoError> {
        let pass = Pass {
            seek: None,
            span: Some(window),
            threads: 1,
            keyframes_only: true,
            frames: count,
            select: None,
        };
        self.collect(&pass, stop)
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
        // A frame is taken when it is the first at or after one of the times.
        let select = times
            .iter()
            .map(|t| format!("gte(t,{0:.6})*not(gte(prev_t,{0:.6}))", start + t))
            .collect::<Vec<_>>()
            .join("+");
        let pass = Pass {
            seek: Some(first.max(0.0)),
            span: Some(last - first + 1.0),
            threads,
            keyframes_only,
            frames: times.len(),
            select: Some(&select),
        };
        let finished = self.images(&pass, stop, &mut |width, height, rgb| {
            on_frame(Frame {
                t: f64::NAN,
                width,
                height,
                rgb,
            })
        })?;
        let times = showinfo_times(&finished.stderr);
        Ok(times.into_iter().map(|pts| self.seconds(pts)).collect())
    }

    /// The frames of `pass`, with their times.
    fn collect(
        &self,
        pass: &Pass<'_>,
        stop: &dyn Fn() -> Option<Interrupt>,
    ) -> Result<Vec<Frame>, VideoError> {
        let mut images = Vec::new();
        let finished = self.images(pass, stop, &mut |width, height, rgb| {
            images.push((width, height, rgb));
            Flow::More
        })?;
        let times = showinfo_times(&finished.stderr);
        let start = self.video.info.start_time;
        Ok(images
            .into_iter()
            .enumerate()
            .map(|(i, (width, height, rgb))| Frame {
                t: self.seconds(times.get(i).copied().unwrap_or(start)),
                width,
                height,
                rgb,
            })
            .collect())
    }

    /// Runs `pass`, handing each image to `on_image` as it arrives until it has had enough or
    /// the pass has its frames; an image over the pixel limit ends it, refused. The decoder's
    /// complaint when it wrote nothing and failed.
    fn images(
        &self,
        pass: &Pass<'_>,
        stop: &dyn Fn() -> Option<Interrupt>,
        on_image: &mut dyn FnMut(u32, u32, Vec<u8>) -> Flow,
    ) -> Result<Finished, VideoError> {
        let (mut taken, mut refused) = (0, None);
        let mut stream = PpmStream::default();
        let max_pixels = self.limits.max_pixels;
        let mut sink = |chunk: &[u8]| {
            stream.push(chunk, &mut |width, height, rgb| {
                if let Err(e) = check_pixels(width, height, max_pixels) {
                    refused = Some(e);
                    return Flow::Enough;
                }
                taken += 1;
                match on_image(width, height, rgb) {
                    Flow::More if taken < pass.frames => Flow::More,
                    _ => Flow::Enough,
                }
            })
        };
        // A primed decoder is taken only for a pass it can run.
        let primed = self
            .graph(pass)
            .and_then(|graph| Some((self.primed?.take()?, graph)));
        let finished = match primed {
            Some((decoder, graph)) => decoder.run_streaming(graph.as_bytes(), stop, &mut sink),
            None => child::run_streaming(
                "ffmpeg",
                &self.args(pass),
                &self.limits.child(),
                stop,
                &mut sink,
            ),
        }
        .map_err(from_child)?;
        if let Some(refusal) = refused {
            return Err(refusal);
        }
        if taken == 0 && !finished.status.success() && !finished.stopped_early {
            return Err(complaint(&finished.stderr));
        }
        Ok(finished)
    }

    /// ffmpeg's command line for `pass`: frames as displayed (square pixels), their timestamps
    /// on stderr, PPMs on stdout.
    fn args(&self, pass: &Pass<'_>) -> Vec<OsString> {
        let threads = pass.threads.to_string();
        let seek = pass.seek.map(|s| format!("{s:.6}"));
        let span = pass.span.map(|s| format!("{s:.6}"));
        let frames = pass.frames.to_string();
        let mut input = vec!["-threads", &threads];
        if pass.keyframes_only {
            input.extend(["-skip_frame", "nokey"]);
        }
        if let Some(seek) = &seek {
            input.extend(["-ss", seek]);
        }
        if let Some(span) = &span {
            input.extend(["-t", span]);
        }
        let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "info"]
            .iter()
            .chain(&["-protocol_whitelist", "file", "-copyts"])
            .chain(&input)
            .map(OsString::from)
            .collect();
        args.push("-i".into());
        args.push(self.video.path.as_os_str().to_owned());
        let chain = self.chain(pass);
        args.extend(
            ["-map", "0:v:0", "-an", "-sn", "-dn", "-frames:v", &frames]
                .iter()
                .chain(&["-vf", &chain])
                .chain(&OUTPUT)
                .map(OsString::from),
        );
        args
    }

    /// The filter graph for `pass` on a primed decoder, when it can be said as one: a plain
    /// absolute path (nothing to escape), an MP4/MOV or Matroska file, whole frames decoded,
    /// and a display matrix that turns rather than mirrors.
    fn graph(&self, pass: &Pass<'_>) -> Option<String> {
        let info = &self.video.info;
        let path = self.video.path.to_str()?;
        let plain = path.starts_with('/')
            && path
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"/._-".contains(&b));
        // Not MPEG-TS: its timestamps may jump, and ffmpeg's input mends them where `movie=`
        // does not (measured on the corpus' resolution-change.ts: other frames, other times).
        let demuxer = match info.container.as_str() {
            "mp4" | "mov" | "m4a" | "3gp" => "mov",
            "webm" | "mkv" => "matroska",
            _ => return None,
        };
        if !plain || pass.keyframes_only || info.mirrored {
            return None;
        }
        let seek = pass.seek.unwrap_or(0.0).max(0.0);
        let mut graph = format!(
            "movie=filename={path}:format_name={demuxer}:streams={}:seek_point={seek:.6}:threads={}",
            info.stream_index, pass.threads
        );
        // What ffmpeg's input does on its own: the container's sample aspect, then the turn.
        let (num, den) = info.sample_aspect;
        if num != den {
            graph.push_str(&format!(",setsar={num}/{den}"));
        }
        graph.push_str(match info.rotation {
            90 => ",transpose=cclock",
            180 => ",hflip,vflip",
            270 => ",transpose=clock",
            _ => "",
        });
        if let Some(span) = pass.span {
            graph.push_str(&format!(",trim=end={:.6}", info.start_time + seek + span));
        }
        graph.push_str(&format!(",{}[v]", self.chain(pass)));
        Some(graph)
    }

    /// The filters every pass ends with: its `select`, square pixels, the times logged.
    fn chain(&self, pass: &Pass<'_>) -> String {
        let select = pass
            .select
            .map(|s| format!("select='{s}',"))
            .unwrap_or_default();
        format!("{select}{},setsar=1,showinfo", self.scale())
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

    /// Seconds from the first frame, to the millisecond (finer digits are only timestamp
    /// arithmetic).
    fn seconds(&self, pts: f64) -> f64 {
        ((pts - self.video.info.start_time).max(0.0) * 1000.0).round() / 1000.0
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

    /// Binary PPMs (`P6 W H 255` and W×H×3 bytes) one after another; a short last one is dropped.
    fn read_ppms(data: &[u8]) -> Vec<(u32, u32, Vec<u8>)> {
        let mut images = Vec::new();
        PpmStream::default().push(data, &mut |width, height, rgb| {
            images.push((width, height, rgb));
            Flow::More
        });
        images
    }

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
