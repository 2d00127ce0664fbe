//! Decoders primed while the probe runs (given a filter graph afterwards) give the frames the
//! command line gives: the same times, sizes and pixels — rotation, sample aspect, a start
//! offset and variable frame rate included — on the corpus videos. MPEG-TS (whose timestamps may
//! jump) is left to the command line.

use pipeline::engine::{sniff, Sniffed};
use pipeline::video::{probe, Frame, FrameReader, PrimedDecoders, Video, VideoLimits};

use crate::common::corpus;

/// The frames at `times` (one pass) and at the second time (a seek) read by decoders started
/// for each pass, then by primed ones; and how many primed decoders were left unused.
fn frames_both_ways(
    video: &Video,
    shrink: Option<(u32, u32)>,
    times: &[f64],
) -> (Vec<Frame>, Vec<Frame>, usize) {
    let limits = VideoLimits::default();
    let stop = || None;
    let read = |reader: FrameReader<'_>| {
        let mut frames = Vec::new();
        let shown = reader
            .frames_between(times, (false, 1), &stop, &mut |frame| {
                frames.push(frame);
                pipeline::video::child::Flow::More
            })
            .unwrap();
        assert_eq!(shown.len(), frames.len());
        for (frame, t) in frames.iter_mut().zip(shown) {
            frame.t = t;
        }
        frames.push(reader.frame_at(times[1], &stop).unwrap().expect("a frame"));
        frames
    };
    let plain = read(FrameReader::new(video, &limits, shrink));
    let primed = PrimedDecoders::start(2, &limits);
    let graphed = read(FrameReader::new(video, &limits, shrink).with_primed(&primed));
    (plain, graphed, primed.waiting())
}

#[test]
fn primed_decoders_give_the_frames_the_command_line_gives() {
    let files = [
        "phone-rotated-90.mp4",
        "anamorphic-sar.mp4",
        "slideshow-vp9-opus.webm",
        "slideshow-hevc10.mov",
        "vfr.mkv",
        "resolution-change.ts",
    ];
    let limits = VideoLimits::default();
    for file in files {
        let path = corpus(&format!("video/{file}"));
        let head = std::fs::read(&path).unwrap();
        let Sniffed::Video(container) = sniff(&head) else {
            panic!("{file} is a video by its bytes");
        };
        let info = probe(&path, container, &limits, &|| None).unwrap();
        let d = info.duration;
        let times = [0.1 * d, 0.45 * d, 0.8 * d];
        let video = Video { path, info };
        // Full size too where the turn and the stretch are the point (cheap files).
        let full = file.starts_with("phone") || file.starts_with("anamorphic");
        let sizes: &[Option<(u32, u32)>] = if full {
            &[None, Some((320, 0))]
        } else {
            &[Some((320, 0))]
        };
        for &shrink in sizes {
            let (plain, graphed, unused) = frames_both_ways(&video, shrink, &times);
            let expected = if file.ends_with(".ts") { 2 } else { 0 };
            assert_eq!(unused, expected, "{file}: primed decoders left unused");
            assert_eq!(plain.len(), times.len() + 1, "{file}");
            assert_eq!(graphed.len(), plain.len(), "{file}");
            for (a, b) in plain.iter().zip(&graphed) {
                assert_eq!((a.t, a.width, a.height), (b.t, b.width, b.height), "{file}");
                assert!(a.rgb == b.rgb, "{file}: the same pixels at {}", a.t);
            }
        }
    }
}

#[test]
fn a_posters_candidates_are_distinct_keyframes_not_repeats_of_the_first() {
    // The slideshow has a keyframe every 2 s, each on another slide.
    let path = corpus("video/slideshow-h264-aac.mp4");
    let limits = VideoLimits::default();
    let video = Video {
        path,
        info: Default::default(),
    };
    let frames = FrameReader::new(&video, &limits, Some((160, 0)))
        .keyframes(6, 60.0, &|| None)
        .unwrap();
    let times: Vec<f64> = frames.iter().map(|f| f.t).collect();
    assert_eq!(times, [0.0, 2.0, 4.0, 6.0, 8.0, 10.0]);
    for pair in frames.windows(2) {
        assert!(pair[0].rgb != pair[1].rgb, "keyframes at {times:?} differ");
    }
}
