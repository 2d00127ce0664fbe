//! Which times to take frames at, for each way a spec chooses frames. Times are seconds from the
//! first frame. Keyframes and scene starts need a look at the stream first (`ffprobe` packet
//! flags; ffmpeg's scene score on a small copy); everything is thinned evenly to the job's
//! frame budget, never refused.

use std::ffi::OsString;
use std::path::Path;

use super::child;
use super::probe::{first_line, from_child};
use super::{VideoError, VideoInfo, VideoLimits};
use crate::engine::Interrupt;
use crate::spec::FrameChoice;

/// The times to take frames at (ascending, for every choice but the poster, which picks its
/// own), at most `budget` of them.
pub fn choose_times(
    path: &Path,
    info: &VideoInfo,
    choice: &FrameChoice,
    budget: usize,
    limits: &VideoLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<Vec<f64>, VideoError> {
    let last = last_frame_time(info);
    let times = match choice {
        FrameChoice::Poster => Vec::new(),
        FrameChoice::Every(every) => {
            let count = ((info.duration / every).ceil() as usize).clamp(1, 10_000_000);
            // Thin before listing: an interval of a millisecond over hours would be millions.
            thin_indices(count, budget)
                .into_iter()
                .map(|i| (i as f64 * every).min(last))
                .collect()
        }
        FrameChoice::Count(count) => {
            let count = *count as usize;
            thin_indices(count, budget)
                .into_iter()
                .map(|i| info.duration * (i as f64 + 0.5) / count as f64)
                .map(|t| t.min(last))
                .collect()
        }
        FrameChoice::At(times) => {
            let mut times: Vec<f64> = times.iter().map(|t| t.min(last)).collect();
            times.sort_by(f64::total_cmp);
            thin(&times, budget)
        }
        FrameChoice::Keyframes => thin(&keyframe_times(path, info, limits, stop)?, budget),
        FrameChoice::Scenes(threshold) => {
            thin(&scene_times(path, info, *threshold, limits, stop)?, budget)
        }
    };
    Ok(times)
}

/// The latest time a frame can be taken at: a frame before the end.
fn last_frame_time(info: &VideoInfo) -> f64 {
    let frame = if info.fps > 0.0 { 1.0 / info.fps } else { 0.04 };
    (info.duration - frame).max(0.0)
}

/// At most `budget` of `items`, spread evenly, first and last kept.
pub fn thin<T: Clone>(items: &[T], budget: usize) -> Vec<T> {
    thin_indices(items.len(), budget)
        .into_iter()
        .map(|i| items[i].clone())
        .collect()
}

/// At most `budget` indices of `0..count`, spread evenly, first and last kept.
fn thin_indices(count: usize, budget: usize) -> Vec<usize> {
    let budget = budget.max(1);
    if count <= budget {
        return (0..count).collect();
    }
    if budget == 1 {
        return vec![0];
    }
    (0..budget)
        .map(|i| ((i as f64) * (count - 1) as f64 / (budget - 1) as f64).round() as usize)
        .collect()
}

/// Presentation times of the keyframes, from the packets' flags (nothing is decoded).
fn keyframe_times(
    path: &Path,
    info: &VideoInfo,
    limits: &VideoLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<Vec<f64>, VideoError> {
    let mut args: Vec<OsString> = [
        "-v",
        "error",
        "-protocol_whitelist",
        "file",
        "-select_streams",
        "v:0",
        "-show_entries",
        "packet=pts_time,flags",
        "-of",
        "csv=p=0",
    ]
    .iter()
    .map(OsString::from)
    .collect();
    args.push(path.as_os_str().to_owned());
    let finished = child::run("ffprobe", &args, &limits.child(), stop).map_err(from_child)?;
    let mut times: Vec<f64> = String::from_utf8_lossy(&finished.stdout)
        .lines()
        .filter_map(|line| {
            let (pts, flags) = line.split_once(',')?;
            flags
                .contains('K')
                .then(|| pts.trim().parse::<f64>().ok())?
        })
        .map(|pts| (pts - info.start_time).max(0.0))
        .collect();
    times.sort_by(f64::total_cmp);
    times.dedup();
    if times.is_empty() {
        return Err(VideoError::Damaged(first_line(
            &finished.stderr,
            "no keyframe could be read",
        )));
    }
    Ok(times)
}

/// The start of every scene (the first frame's included): frames whose scene score, on a
/// small copy of the video, is over `threshold`.
fn scene_times(
    path: &Path,
    info: &VideoInfo,
    threshold: f64,
    limits: &VideoLimits,
    stop: &dyn Fn() -> Option<Interrupt>,
) -> Result<Vec<f64>, VideoError> {
    let filter = format!("scale=160:-2,select='gt(scene\\,{threshold})',showinfo");
    let mut args: Vec<OsString> = ["-nostdin", "-hide_banner", "-loglevel", "info"]
        .iter()
        .map(OsString::from)
        .collect();
    args.extend(["-protocol_whitelist", "file", "-copyts", "-i"].map(OsString::from));
    args.push(path.as_os_str().to_owned());
    args.extend(
        [
            "-map", "0:v:0", "-an", "-sn", "-dn", "-vf", &filter, "-f", "null", "-",
        ]
        .iter()
        .map(OsString::from),
    );
    let finished = child::run("ffmpeg", &args, &limits.child(), stop).map_err(from_child)?;
    if !finished.status.success() {
        return Err(VideoError::Damaged(first_line(
            &finished.stderr,
            "the scenes could not be read",
        )));
    }
    let mut times = vec![0.0];
    times.extend(
        showinfo_times(&finished.stderr)
            .into_iter()
            .map(|pts| (pts - info.start_time).max(0.0))
            .filter(|t| *t > 0.0),
    );
    Ok(times)
}

/// The `pts_time:` of every frame ffmpeg's `showinfo` filter logged, in order.
pub(super) fn showinfo_times(stderr: &str) -> Vec<f64> {
    stderr
        .lines()
        .filter(|line| line.contains("Parsed_showinfo"))
        .filter_map(|line| {
            let rest = &line[line.find("pts_time:")? + "pts_time:".len()..];
            rest.split_whitespace().next()?.parse().ok()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn thinning_keeps_the_ends_and_spreads_the_rest() {
        assert_eq!(thin_indices(5, 10), vec![0, 1, 2, 3, 4]);
        assert_eq!(thin_indices(7200, 3), vec![0, 3600, 7199]);
        assert_eq!(thin_indices(10, 1), vec![0]);
        assert_eq!(thin(&[1, 2, 3, 4, 5], 2), vec![1, 5]);
    }

    #[test]
    fn showinfo_lines_give_their_times() {
        let log = "[Parsed_showinfo_1 @ 0x1] n:   0 pts:  90000 pts_time:1.5     duration:...\n\
                   frame=    1 fps=0.0\n\
                   [Parsed_showinfo_1 @ 0x1] n:   1 pts: 180000 pts_time:3       pos:";
        assert_eq!(showinfo_times(log), vec![1.5, 3.0]);
    }
}
