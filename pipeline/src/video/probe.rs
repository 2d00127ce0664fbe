//! What a video file holds, from `ffprobe`'s JSON: its container, codec, size as displayed
//! (rotation and sample aspect applied), duration, frame rate and audio — and the refusals that
//! can be made before decoding anything: no picture, an undecodable codec, frames over the pixel
//! limit, a video over the duration limit.

use std::ffi::OsString;
use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::child::{self, ChildError};
use super::{VideoError, VideoLimits};
use crate::engine::{Container, Interrupt};

/// A video as the job record shows it (API.md `media`), and what decoding needs.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct VideoInfo {
    pub container: String,
    pub codec: String,
    /// As displayed: rotation and sample aspect applied.
    pub width: u32,
    pub height: u32,
    /// Seconds.
    pub duration: f64,
    pub fps: f64,
    /// The display matrix's rotation as ffprobe reports it, in degrees: 0, 90, 180 or 270.
    pub rotation: u32,
    pub has_audio: bool,
    /// Presentation time of the first frame, seconds (frame times are counted from it).
    #[serde(skip)]
    pub start_time: f64,
    /// Seconds between keyframes, as far as the first packets tell (at least this when they
    /// hold only one): how much a seek decodes.
    #[serde(skip)]
    pub keyframe_interval: f64,
    /// The video stream's index in the file.
    #[serde(skip)]
    pub stream_index: u32,
    /// The sample aspect ratio (num, den) the container or codec states; 1:1 when unsaid.
    #[serde(skip)]
    pub sample_aspect: (u32, u32),
    /// The display matrix mirrors the picture (as a front camera may), not only turns it.
    #[serde(skip)]
    pub mirrored: bool,
}

/// Probes `path` (a `container` by its bytes).
pub fn probe(
    path: &Path,
    container: Container,
    limits: &VideoLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<VideoInfo, VideoError> {
    let args: Vec<OsString> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-print_format",
        "json",
        "-show_format",
        "-show_streams",
        // The first packets' keyframe flags tell how far apart keyframes are.
        "-show_entries",
        "packet=stream_index,pts_time,flags",
        "-read_intervals",
        "%+#400",
    ]
    .iter()
    .map(OsString::from)
    .chain([path.as_os_str().to_owned()])
    .collect();
    let finished = child::run("ffprobe", &args, &limits.child(), stop).map_err(from_child)?;
    if !finished.status.success() {
        // It is a video container by its bytes, and unreadable: damaged.
        return Err(VideoError::Damaged(first_line(
            &finished.stderr,
            "ffprobe could not read it",
        )));
    }
    let report: Value = serde_json::from_slice(&finished.stdout).map_err(|_| {
        VideoError::Damaged(first_line(&finished.stderr, "ffprobe could not read it"))
    })?;
    let info = read_report(&report, container)?;
    check(&info, limits)?;
    Ok(info)
}

/// The refusals a probe allows: frames over the pixel limit, a video over the duration limit.
fn check(info: &VideoInfo, limits: &VideoLimits) -> Result<(), VideoError> {
    let (width, height) = (u64::from(info.width), u64::from(info.height));
    let pixels = width.saturating_mul(height);
    if pixels > limits.max_pixels {
        return Err(VideoError::PixelLimit {
            width,
            height,
            pixels,
            limit: limits.max_pixels,
        });
    }
    if info.duration > limits.max_duration.as_secs_f64() {
        return Err(VideoError::DurationLimit {
            seconds: info.duration,
            limit: limits.max_duration.as_secs(),
        });
    }
    Ok(())
}

/// The video's description from ffprobe's `-show_format -show_streams` JSON.
fn read_report(report: &Value, container: Container) -> Result<VideoInfo, VideoError> {
    let streams = report["streams"].as_array().cloned().unwrap_or_default();
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video" && s["disposition"]["attached_pic"] != 1)
        .ok_or(VideoError::NoVideoStream)?;
    let codec = video["codec_name"].as_str().unwrap_or("none").to_owned();
    if codec == "none" || codec.is_empty() {
        let tag = video["codec_tag_string"].as_str().unwrap_or("unknown");
        return Err(VideoError::UnsupportedCodec(tag.to_owned()));
    }
    let number = |v: &Value| {
        v.as_f64()
            .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
    };
    let stored = (
        video["width"].as_u64().unwrap_or(0) as u32,
        video["height"].as_u64().unwrap_or(0) as u32,
    );
    if stored.0 == 0 || stored.1 == 0 {
        return Err(VideoError::Damaged(
            "the video stream has no frame size".into(),
        ));
    }
    let rotation = rotation(video);
    let sample_aspect = sample_aspect(video);
    let (width, height) = displayed(stored, sample_aspect, rotation);
    let duration = number(&report["format"]["duration"])
        .or_else(|| number(&video["duration"]))
        .unwrap_or(0.0)
        .max(0.0);
    Ok(VideoInfo {
        container: container_name(container, report, &codec).to_owned(),
        codec,
        width,
        height,
        duration,
        fps: rate(&video["avg_frame_rate"])
            .or_else(|| rate(&video["r_frame_rate"]))
            .unwrap_or(0.0),
        rotation,
        has_audio: streams.iter().any(|s| s["codec_type"] == "audio"),
        start_time: number(&video["start_time"])
            .or_else(|| number(&report["format"]["start_time"]))
            .unwrap_or(0.0),
        keyframe_interval: keyframe_interval(report, video["index"].as_u64()),
        stream_index: video["index"].as_u64().unwrap_or(0) as u32,
        sample_aspect,
        mirrored: mirrored(video),
    })
}

/// The widest gap between keyframes of the video stream among the packets read, or when there
/// is one keyframe only, the time those packets span (the interval is at least that).
fn keyframe_interval(report: &Value, stream: Option<u64>) -> f64 {
    let packets = report["packets"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or(&[]);
    let video: Vec<(f64, bool)> = packets
        .iter()
        .filter(|p| p["stream_index"].as_u64() == stream)
        .filter_map(|p| {
            let t = p["pts_time"].as_str()?.parse::<f64>().ok()?;
            Some((t, p["flags"].as_str().unwrap_or("").starts_with('K')))
        })
        .collect();
    let keys: Vec<f64> = video.iter().filter(|(_, k)| *k).map(|(t, _)| *t).collect();
    let widest = keys.windows(2).map(|w| w[1] - w[0]).fold(0.0, f64::max);
    if keys.len() >= 2 {
        return widest;
    }
    let (first, last) = video.iter().fold((f64::MAX, f64::MIN), |(lo, hi), (t, _)| {
        (lo.min(*t), hi.max(*t))
    });
    (last - first).max(0.0)
}

/// What users call the container: `mp4`, `mov`, `m4a`, `3gp`, `webm`, `mkv` or `ts`.
fn container_name(container: Container, report: &Value, codec: &str) -> &'static str {
    match container {
        Container::IsoBmff => match report["format"]["tags"]["major_brand"]
            .as_str()
            .unwrap_or("")
        {
            "qt  " => "mov",
            "M4A " | "M4V " => "m4a",
            brand if brand.starts_with("3g") => "3gp",
            _ => "mp4",
        },
        // WebM is Matroska with its own codecs.
        Container::Matroska if matches!(codec, "vp8" | "vp9" | "av1") => "webm",
        Container::Matroska => "mkv",
        Container::MpegTs => "ts",
    }
}

/// `30000/1001` → 29.97; `0/0` → none.
fn rate(value: &Value) -> Option<f64> {
    let (num, den) = value.as_str()?.split_once('/')?;
    let (num, den): (f64, f64) = (num.parse().ok()?, den.parse().ok()?);
    (num > 0.0 && den > 0.0).then(|| num / den)
}

/// The display matrix's rotation, as 0, 90, 180 or 270.
fn rotation(video: &Value) -> u32 {
    let from_side_data = video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|d| d["rotation"].as_f64()));
    let from_tag = video["tags"]["rotate"]
        .as_str()
        .and_then(|r| r.parse().ok());
    let degrees = from_side_data.or(from_tag).unwrap_or(0.0).round() as i64;
    (degrees.rem_euclid(360) as u32 / 90) * 90
}

/// Whether the display matrix (ffprobe's text of its nine numbers) flips the picture: the
/// determinant of its 2×2 part is negative.
fn mirrored(video: &Value) -> bool {
    let matrix = video["side_data_list"]
        .as_array()
        .and_then(|list| list.iter().find_map(|d| d["displaymatrix"].as_str()));
    let Some(matrix) = matrix else {
        return false;
    };
    // Lines `0000000i: a b c`: the row number, then the numbers.
    let m: Vec<i64> = matrix
        .lines()
        .filter_map(|line| line.split_once(':'))
        .flat_map(|(_, row)| row.split_whitespace().filter_map(|n| n.parse().ok()))
        .collect();
    m.len() == 9 && m[0] * m[4] - m[1] * m[3] < 0
}

/// The sample aspect ratio, `(num, den)`; 1:1 when unsaid or nonsense.
fn sample_aspect(video: &Value) -> (u32, u32) {
    video["sample_aspect_ratio"]
        .as_str()
        .and_then(|s| s.split_once(':'))
        .and_then(|(n, d)| Some((n.parse().ok()?, d.parse().ok()?)))
        .filter(|(n, d): &(u32, u32)| *n > 0 && *d > 0)
        .unwrap_or((1, 1))
}

/// The size frames are shown at: stretched by the sample aspect (as ffmpeg's
/// `scale=iw*sar:ih` does), then turned.
fn displayed((w, h): (u32, u32), (num, den): (u32, u32), rotation: u32) -> (u32, u32) {
    let wide =
        (u64::from(w) * u64::from(num) / u64::from(den)).clamp(1, u64::from(u32::MAX)) as u32;
    if rotation % 180 == 90 {
        (h, wide)
    } else {
        (wide, h)
    }
}

pub(super) fn from_child(e: ChildError) -> VideoError {
    match e {
        ChildError::Spawn(why) => VideoError::Unavailable(why),
        ChildError::Stalled(limit) => VideoError::Stalled(limit),
        ChildError::Stopped(Interrupt::Cancelled) => VideoError::Cancelled,
        ChildError::Stopped(Interrupt::TimedOut) => VideoError::TimedOut,
    }
}

/// The first line of a tool's complaint, or `fallback`.
pub(super) fn first_line(stderr: &str, fallback: &str) -> String {
    stderr
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty())
        .map(|l| l.chars().take(300).collect())
        .unwrap_or_else(|| fallback.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_are_as_displayed() {
        assert_eq!(displayed((720, 576), (64, 45), 0), (1024, 576));
        assert_eq!(displayed((1280, 720), (1, 1), 90), (720, 1280));
        assert_eq!(displayed((1280, 720), (1, 1), 180), (1280, 720));
    }

    #[test]
    fn display_matrices_that_flip_are_told_from_turns() {
        let matrix = |rows: &str| serde_json::json!({"side_data_list": [{"displaymatrix": rows}]});
        let turn = "\n00000000:            0       65536           0\n00000001:      -65536           0           0\n00000002:           0           0  1073741824\n";
        let flip = "\n00000000:       -65536           0           0\n00000001:            0       65536           0\n00000002:           0           0  1073741824\n";
        assert!(!mirrored(&matrix(turn)));
        assert!(mirrored(&matrix(flip)));
        assert!(!mirrored(&serde_json::json!({})));
    }

    #[test]
    fn reports_read_as_the_record_shows_them() {
        let report = serde_json::json!({
            "format": {"duration": "4.167", "format_name": "mov,mp4,m4a,3gp,3g2,mj2", "tags": {"major_brand": "isom"}},
            "streams": [
                {"codec_type": "video", "codec_name": "h264", "width": 1280, "height": 720,
                 "avg_frame_rate": "30/1", "start_time": "0.000000",
                 "side_data_list": [{"rotation": -90}]},
                {"codec_type": "audio", "codec_name": "aac"}
            ]
        });
        let info = read_report(&report, Container::IsoBmff).unwrap();
        assert_eq!((info.width, info.height, info.rotation), (720, 1280, 270));
        assert_eq!(
            (info.codec.as_str(), info.container.as_str()),
            ("h264", "mp4")
        );
        assert!(info.has_audio && (info.duration - 4.167).abs() < 1e-9 && info.fps == 30.0);
        assert!(!info.mirrored && info.sample_aspect == (1, 1));
        let audio_only = serde_json::json!({"format": {}, "streams": [{"codec_type": "audio"}]});
        assert_eq!(
            read_report(&audio_only, Container::IsoBmff),
            Err(VideoError::NoVideoStream)
        );
    }
}
