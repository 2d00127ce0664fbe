//! Animated GIF, WebP and APNG in, animated GIF and WebP out (`"animated": true`): every
//! frame through the ops, timing and plays kept, bounded by `--max-frames` and the pixel
//! budget. Outputs are read back by the `image` crate's decoders and by libvips (libwebp's
//! demuxer), never by the code that wrote them.

use std::io::Cursor;

use image::codecs::{gif::GifDecoder, png::PngDecoder, webp::WebPDecoder};
use image::{AnimationDecoder, DynamicImage, GenericImageView};
use pipeline::engine::{self, EngineError, Limits};
use pipeline::failure::FailureCode;

use crate::common::{mean_abs_diff, read_corpus, spec};

/// An animation as a viewer plays it: whole frames with their delays (ms).
struct Timeline {
    frames: Vec<(DynamicImage, u32)>,
}

impl Timeline {
    fn read(bytes: &[u8]) -> Timeline {
        let reader = Cursor::new(bytes);
        let frames = match &bytes[..4] {
            b"GIF8" => GifDecoder::new(reader).unwrap().into_frames(),
            b"RIFF" => {
                let decoder = WebPDecoder::new(reader).unwrap();
                if !decoder.has_animation() {
                    return Timeline::still(bytes);
                }
                decoder.into_frames()
            }
            _ => {
                let decoder = PngDecoder::new(reader).unwrap();
                if !decoder.is_apng().unwrap() {
                    return Timeline::still(bytes);
                }
                decoder.apng().unwrap().into_frames()
            }
        };
        let frames = frames
            .map(|frame| {
                let frame = frame.expect("frame decodes");
                let (numer, denom) = frame.delay().numer_denom_ms();
                (DynamicImage::ImageRgba8(frame.into_buffer()), numer / denom)
            })
            .collect();
        Timeline { frames }
    }

    fn still(bytes: &[u8]) -> Timeline {
        Timeline {
            frames: vec![(crate::common::decode(bytes), 0)],
        }
    }

    fn duration(&self) -> u32 {
        self.frames.iter().map(|(_, delay)| delay).sum()
    }

    /// The frame on screen `t` ms in.
    fn at(&self, t: u32) -> &DynamicImage {
        let mut start = 0;
        for (image, delay) in &self.frames {
            if t < start + delay {
                return image;
            }
            start += delay;
        }
        &self.frames.last().unwrap().0
    }
}

/// A header field as libvips reads it (`loop`: total plays, 0 forever; `n-pages`; `delay`):
/// libwebp's demuxer for WebP, libnsgif for GIF.
fn vips_field(bytes: &[u8], field: &str) -> String {
    let dir = fixtures::servers::TempDir::new("animation");
    let path = dir.path().join("animation");
    std::fs::write(&path, bytes).unwrap();
    let out = std::process::Command::new("vipsheader")
        .args(["-f", field])
        .arg(&path)
        .output()
        .expect("vipsheader (libvips-tools) on PATH");
    assert!(out.status.success(), "vipsheader -f {field}: {out:?}");
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

fn animate(bytes: &[u8], outputs: &str, limits: &Limits) -> Result<Vec<Vec<u8>>, EngineError> {
    let processed = engine::process(
        bytes,
        &spec(&format!(r#"{{"outputs":[{outputs}]}}"#)),
        limits,
        &(),
    )?;
    Ok(processed.outputs.into_iter().map(|o| o.data).collect())
}

/// Every source frame, at the time it starts, against what the output shows then: the same
/// picture at the output's size (within `tolerance` mean difference per channel).
fn assert_same_animation(source: &Timeline, output: &Timeline, tolerance: f64, what: &str) {
    assert_eq!(
        output.duration(),
        source.duration(),
        "{what}: total duration"
    );
    let shown = output.at(0);
    let mut start = 0;
    for (i, (frame, delay)) in source.frames.iter().enumerate() {
        let shown_now = output.at(start);
        let expected = frame.resize_exact(
            shown.width(),
            shown.height(),
            image::imageops::FilterType::Triangle,
        );
        let diff = mean_abs_diff(&flat(&expected), &flat(shown_now));
        assert!(diff < tolerance, "{what}: frame {i} differs by {diff:.2}");
        start += delay;
    }
}

/// On white, as a viewer shows transparency.
fn flat(image: &DynamicImage) -> DynamicImage {
    let mut rgba = image.to_rgba8();
    for p in rgba.pixels_mut() {
        let a = u16::from(p.0[3]);
        for c in 0..3 {
            p.0[c] = ((u16::from(p.0[c]) * a + 255 * (255 - a)) / 255) as u8;
        }
        p.0[3] = 255;
    }
    DynamicImage::ImageRgba8(rgba)
}

#[test]
fn animated_gifs_and_webps_keep_every_frame_their_timing_and_plays() {
    for name in [
        "formats/animated-loop-3.gif",
        "formats/animated-loop-3.webp",
        "formats/rotating-squares.gif",
        "formats/rotating-squares.webp",
        "formats/moon_impact.gif",
    ] {
        let bytes = read_corpus(name);
        let source = Timeline::read(&bytes);
        assert!(source.frames.len() > 1, "{name} is animated");
        let outputs = animate(
            &bytes,
            r#"{"name":"w","ops":[{"op":"resize","width":120}],"format":"webp","animated":true,"quality":90},
               {"name":"g","ops":[{"op":"resize","width":120}],"format":"gif","animated":true},
               {"name":"still","ops":[{"op":"resize","width":120}],"format":"webp"}"#,
            &Limits::default(),
        )
        .unwrap_or_else(|e| panic!("{name}: {e}"));
        // Not enlarged: at most 120 px wide, as the still.
        let width = source.frames[0].0.width().min(120);
        for (output, label) in outputs[..2].iter().zip(["webp", "gif"]) {
            let made = Timeline::read(output);
            assert!(made.frames.len() > 1, "{name} → {label} is animated");
            assert_eq!(made.frames[0].0.width(), width, "{name} → {label}");
            assert_eq!(
                vips_field(output, "loop"),
                vips_field(&bytes, "loop"),
                "{name} → {label}: plays"
            );
            assert_same_animation(&source, &made, 12.0, &format!("{name} → {label}"));
        }
        let still = Timeline::read(&outputs[2]);
        assert_eq!(
            still.frames.len(),
            1,
            "{name}: without `animated` the first frame only"
        );
        assert_eq!(still.frames[0].0.width(), width);
    }
}

#[test]
fn an_apng_is_kept_animated_with_its_plays() {
    let count = 6;
    let apng = fixtures::apng(48, 32, count, 2);
    let source = Timeline::read(&apng);
    assert_eq!(source.frames.len(), count as usize);
    let outputs = animate(
        &apng,
        r#"{"name":"w","ops":[{"op":"resize","width":24}],"format":"webp","animated":true,"lossless":true},
           {"name":"g","format":"gif","animated":true}"#,
        &Limits::default(),
    )
    .unwrap();
    for output in &outputs {
        let made = Timeline::read(output);
        assert_eq!(made.frames.len(), count as usize);
        assert_eq!(vips_field(output, "loop"), "2");
        assert_same_animation(&source, &made, 6.0, "apng");
    }
}

#[test]
fn libwebp_reads_the_animated_webp_as_written() {
    let bytes = read_corpus("formats/animated-loop-3.gif");
    let source = Timeline::read(&bytes);
    let outputs = animate(
        &bytes,
        r#"{"name":"w","ops":[{"op":"resize","width":64}],"format":"webp","animated":true}"#,
        &Limits::default(),
    )
    .unwrap();
    let field = |name: &str| vips_field(&outputs[0], name);
    assert_eq!(field("loop"), "3");
    let delays: Vec<u32> = field("delay")
        .split_whitespace()
        .map(|d| d.parse().unwrap())
        .collect();
    assert_eq!(delays.iter().sum::<u32>(), source.duration());
    assert_eq!(field("n-pages"), delays.len().to_string());
}

#[test]
fn frames_over_the_limit_or_the_pixel_budget_are_refused_before_decoding() {
    let bytes = read_corpus("formats/gifplayer-muybridge.gif");
    let animated = r#"{"name":"a","format":"webp","animated":true}"#;
    let few_frames = Limits {
        max_frames: 100,
        ..Limits::default()
    };
    let e = animate(&bytes, animated, &few_frames).unwrap_err();
    assert_eq!(e.code(), FailureCode::PixelLimit, "{e}");
    assert!(e.to_string().contains("380 frames"), "{e}");
    // 380 frames of 472x298 pass through 53 M pixels: over a budget of 2 × 20 M.
    let small_budget = Limits {
        max_pixels: 20_000_000,
        ..Limits::default()
    };
    let e = animate(&bytes, animated, &small_budget).unwrap_err();
    assert_eq!(e.code(), FailureCode::PixelLimit, "{e}");
    assert!(e.to_string().contains("380 frames"), "{e}");
    // The first frame alone is within both.
    let still = r#"{"name":"a","format":"webp"}"#;
    animate(&bytes, still, &few_frames).unwrap();
    animate(&bytes, still, &small_budget).unwrap();
}

#[test]
fn a_smart_crop_stays_put_across_frames() {
    let bytes = read_corpus("formats/rotating-squares.gif");
    let outputs = animate(
        &bytes,
        r#"{"name":"a","ops":[{"op":"resize","width":60,"height":60,"fit":"cover","gravity":"smart"}],
            "format":"gif","animated":true},
           {"name":"b","ops":[{"op":"resize","width":60,"height":60,"fit":"cover","gravity":"smart"}],
            "format":"png"}"#,
        &Limits::default(),
    )
    .unwrap();
    let made = Timeline::read(&outputs[0]);
    let first_still = crate::common::decode(&outputs[1]);
    // The first frame's crop is the still's; every frame keeps that size.
    assert!(mean_abs_diff(&flat(&made.frames[0].0), &flat(&first_still)) < 6.0);
    assert!(made.frames.iter().all(|(f, _)| f.dimensions() == (60, 60)));
}

#[test]
fn animated_outputs_of_a_still_or_in_other_formats_are_stills() {
    let gif = read_corpus("formats/animated-loop-3.gif");
    let outputs = animate(
        &gif,
        r#"{"name":"j","format":"jpeg","animated":true},{"name":"p","format":"png","animated":true}"#,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(&outputs[0][..2], b"\xff\xd8");
    assert_eq!(Timeline::read(&outputs[1]).frames.len(), 1);
    let still = read_corpus("formats/Crash_test.gif");
    let outputs = animate(
        &still,
        r#"{"name":"g","format":"gif","animated":true,"ops":[{"op":"resize","width":100}]}"#,
        &Limits::default(),
    )
    .unwrap();
    assert_eq!(Timeline::read(&outputs[0]).frames.len(), 1);
}
