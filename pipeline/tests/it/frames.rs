//! Video frames: raw pixel formats, frame batches, sprite sheets and WebVTT tracks.

use image::GenericImageView;
use pipeline::engine::{
    self, EngineError, FrameSource, Limits, Media, RawLayout, RawPixelFormat, SpriteLayout,
};
use pipeline::failure::FailureCode;
use pipeline::spec::{Format, SpriteSpec};

use crate::common::{decode, read_corpus, spec};

const AS_PNG: &str = r#"{"outputs":[{"name":"f","format":"png"}]}"#;

/// A frame of `w` × `h` filled with one colour, in each raw layout.
fn solid(format: RawPixelFormat, (w, h): (u32, u32), rgba: [u8; 4], yuv: [u8; 3]) -> Vec<u8> {
    let pixels = (w * h) as usize;
    let chroma = (w.div_ceil(2) * h.div_ceil(2)) as usize;
    match format {
        RawPixelFormat::Rgb24 => rgba[..3].repeat(pixels),
        RawPixelFormat::Rgba => rgba.repeat(pixels),
        RawPixelFormat::Gray => vec![rgba[0]; pixels],
        RawPixelFormat::Yuv420p => [
            vec![yuv[0]; pixels],
            vec![yuv[1]; chroma],
            vec![yuv[2]; chroma],
        ]
        .concat(),
        RawPixelFormat::Nv12 => [vec![yuv[0]; pixels], [yuv[1], yuv[2]].repeat(chroma)].concat(),
    }
}

fn first_pixel(format: RawPixelFormat, size: (u32, u32), rgba: [u8; 4], yuv: [u8; 3]) -> [u8; 4] {
    let layout = RawLayout {
        pixel_format: format,
        width: size.0,
        height: size.1,
    };
    let frame = solid(format, size, rgba, yuv);
    assert_eq!(frame.len() as u64, format.frame_len(size.0, size.1));
    let processed = engine::process_frames(
        &[FrameSource::Raw(&frame, layout)],
        &spec(AS_PNG),
        &Limits::default(),
        &(),
        "",
    )
    .unwrap_or_else(|e| panic!("{format:?}: {e}"));
    let out = &processed.outputs[0];
    assert_eq!(
        (out.width, out.height, out.frame),
        (size.0, size.1, Some(0))
    );
    decode(&out.data).get_pixel(size.0 / 2, size.1 / 2).0
}

#[test]
fn every_raw_pixel_format_converts_to_the_right_colour() {
    // Odd sizes exercise the rounded-up chroma planes.
    let size = (7, 5);
    assert_eq!(
        first_pixel(RawPixelFormat::Rgb24, size, [200, 100, 50, 255], [0; 3]),
        [200, 100, 50, 255]
    );
    assert_eq!(
        first_pixel(RawPixelFormat::Rgba, size, [10, 20, 30, 128], [0; 3]),
        [10, 20, 30, 128]
    );
    assert_eq!(
        first_pixel(RawPixelFormat::Gray, size, [77, 0, 0, 0], [0; 3]),
        [77, 77, 77, 255]
    );
    for format in [RawPixelFormat::Yuv420p, RawPixelFormat::Nv12] {
        // BT.601 limited range: Y 235 is white, Y 16 black, (81, 90, 240) pure red.
        assert_eq!(
            first_pixel(format, size, [0; 4], [235, 128, 128]),
            [255, 255, 255, 255],
            "{format:?}"
        );
        assert_eq!(
            first_pixel(format, size, [0; 4], [16, 128, 128]),
            [0, 0, 0, 255],
            "{format:?}"
        );
        let [r, g, b, _] = first_pixel(format, size, [0; 4], [81, 90, 240]);
        assert!(
            r >= 250 && g <= 5 && b <= 5,
            "{format:?} red came out {r},{g},{b}"
        );
        let [r, g, b, _] = first_pixel(format, size, [0; 4], [145, 54, 34]);
        assert!(
            r <= 5 && g >= 250 && b <= 5,
            "{format:?} green came out {r},{g},{b}"
        );
    }
}

#[test]
fn nv12_and_yuv420p_place_chroma_per_two_by_two_block() {
    // Left half red, right half blue, in both planar layouts.
    let (w, h) = (4u32, 2u32);
    let y = vec![81, 81, 41, 41, 81, 81, 41, 41];
    let (red_uv, blue_uv) = ([90u8, 240u8], [240u8, 110u8]);
    let i420 = [
        y.clone(),
        vec![red_uv[0], blue_uv[0]],
        vec![red_uv[1], blue_uv[1]],
    ]
    .concat();
    let nv12 = [y, vec![red_uv[0], red_uv[1], blue_uv[0], blue_uv[1]]].concat();
    for (format, frame) in [
        (RawPixelFormat::Yuv420p, i420),
        (RawPixelFormat::Nv12, nv12),
    ] {
        let layout = RawLayout {
            pixel_format: format,
            width: w,
            height: h,
        };
        let img = layout.to_image(&frame).unwrap().to_rgb8();
        let left = img.get_pixel(0, 1).0;
        let right = img.get_pixel(3, 0).0;
        assert!(left[0] > 240 && left[2] < 20, "{format:?} left {left:?}");
        assert!(
            right[2] > 230 && right[0] < 20,
            "{format:?} right {right:?}"
        );
    }
}

#[test]
fn buffers_must_hold_whole_frames() {
    let layout = RawLayout {
        pixel_format: RawPixelFormat::Yuv420p,
        width: 4,
        height: 4,
    };
    assert_eq!(layout.frame_count(24 * 3, 1_000).unwrap(), 3);
    for len in [0, 23, 25, 24 * 3 + 1] {
        let e = layout.frame_count(len, 1_000).unwrap_err();
        assert_eq!(e.code(), FailureCode::DecodeError, "{len}: {e}");
    }
    let huge = RawLayout {
        pixel_format: RawPixelFormat::Rgb24,
        width: 20_000,
        height: 20_000,
    };
    assert!(matches!(
        huge.frame_count(1_200_000_000, 100_000_000),
        Err(EngineError::PixelLimit { .. })
    ));
    let frames = layout.split(&[0u8; 48], 1_000).unwrap();
    assert_eq!(frames.len(), 2);
    assert_eq!(RawPixelFormat::parse("nv12"), Some(RawPixelFormat::Nv12));
    assert_eq!(RawPixelFormat::parse("yuv422p"), None);
}

#[test]
fn sprite_sheet_geometry_and_webvtt_cues_are_right() {
    let (w, h) = (320u32, 180u32);
    let layout = RawLayout {
        pixel_format: RawPixelFormat::Rgb24,
        width: w,
        height: h,
    };
    let frames: Vec<Vec<u8>> = (0..5u8)
        .map(|i| {
            solid(
                RawPixelFormat::Rgb24,
                (w, h),
                [i * 50, 0, 255 - i * 50, 255],
                [0; 3],
            )
        })
        .collect();
    let sources: Vec<FrameSource<'_>> =
        frames.iter().map(|f| FrameSource::Raw(f, layout)).collect();
    let spec = spec(
        r#"{"outputs":[{"name":"thumb","ops":[{"op":"resize","width":64}]}],"sprite":{"columns":2,"width":100,"interval":2}}"#,
    );
    let processed = engine::process_frames(
        &sources,
        &spec,
        &Limits::default(),
        &(),
        "https://cdn.example/sprite.jpg",
    )
    .unwrap();

    // One output per frame, in frame order, JPEG by default.
    let frames_out: Vec<_> = processed.outputs.iter().map(|o| o.frame).collect();
    assert_eq!(frames_out, [Some(0), Some(1), Some(2), Some(3), Some(4)]);
    assert!(processed
        .outputs
        .iter()
        .all(|o| o.media == Media::Image(Format::Jpeg) && (o.width, o.height) == (64, 36)));

    let (sheet, track) = processed.sprite.expect("a sprite");
    assert_eq!(
        (sheet.name.as_str(), sheet.width, sheet.height),
        ("sprite", 200, 168)
    );
    let sheet_img = decode(&sheet.data).to_rgb8();
    assert_eq!(sheet_img.dimensions(), (200, 168));
    // Frame 3 sits in row 1, column 1: its colour is (150, 0, 105).
    let [r, _, b] = sheet_img.get_pixel(150, 84).0;
    assert!(
        r.abs_diff(150) < 12 && b.abs_diff(105) < 12,
        "cell 3 is ({r}, _, {b})"
    );

    assert_eq!(
        (track.name.as_str(), track.media),
        ("sprite_vtt", Media::WebVtt)
    );
    let vtt = String::from_utf8(track.data).unwrap();
    let expected = "WEBVTT\n\
        \n00:00:00.000 --> 00:00:02.000\nhttps://cdn.example/sprite.jpg#xywh=0,0,100,56\n\
        \n00:00:02.000 --> 00:00:04.000\nhttps://cdn.example/sprite.jpg#xywh=100,0,100,56\n\
        \n00:00:04.000 --> 00:00:06.000\nhttps://cdn.example/sprite.jpg#xywh=0,56,100,56\n\
        \n00:00:06.000 --> 00:00:08.000\nhttps://cdn.example/sprite.jpg#xywh=100,56,100,56\n\
        \n00:00:08.000 --> 00:00:10.000\nhttps://cdn.example/sprite.jpg#xywh=0,112,100,56\n";
    assert_eq!(vtt, expected);
}

#[test]
fn sprite_layout_handles_fewer_frames_than_columns() {
    let sprite = SpriteSpec {
        columns: 10,
        width: 50,
        interval: 1.0,
        format: Format::Jpeg,
        quality: None,
    };
    let layout = SpriteLayout::new(&sprite, (100, 100), 3);
    assert_eq!((layout.columns, layout.rows, layout.cell), (3, 1, (50, 50)));
    assert_eq!(layout.size(), (150, 50));
}

#[test]
fn encoded_frames_work_too() {
    let a = read_corpus("jpeg/kodim01.jpg");
    let b = read_corpus("jpeg/kodim02.jpg");
    let spec = spec(
        r#"{"outputs":[{"name":"small","ops":[{"op":"resize","width":100}],"format":"webp"}],"sprite":{"columns":2,"width":64},"placeholder":"blurhash"}"#,
    );
    let processed = engine::process_frames(
        &[FrameSource::Encoded(&a), FrameSource::Encoded(&b)],
        &spec,
        &Limits::default(),
        &(),
        "sprite.jpg",
    )
    .unwrap();
    assert_eq!(processed.outputs.len(), 2);
    assert_eq!(decode(&processed.outputs[1].data).dimensions(), (100, 67));
    assert!(processed.placeholder.is_some());
    let (sheet, _) = processed.sprite.unwrap();
    assert_eq!((sheet.width, sheet.height), (128, 43));

    let broken = engine::process_frames(
        &[FrameSource::Encoded(&a), FrameSource::Encoded(b"nope")],
        &spec,
        &Limits::default(),
        &(),
        "",
    )
    .unwrap_err();
    assert_eq!(broken.code(), FailureCode::UnsupportedFormat);
    let too_many = Limits {
        max_frames: 1,
        ..Limits::default()
    };
    let e = engine::process_frames(
        &[FrameSource::Encoded(&a), FrameSource::Encoded(&b)],
        &spec,
        &too_many,
        &(),
        "",
    )
    .unwrap_err();
    assert_eq!(e.code(), FailureCode::DecodeError, "{e}");
}
