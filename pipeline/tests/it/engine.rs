//! The engine on real photos and on hostile input.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use fixtures::Expect;
use image::{DynamicImage, GenericImageView};
use pipeline::engine::{
    self, sniff, EngineError, Interrupt, Limits, Media, Observer, Sniffed, SourceFormat, Stage,
};
use pipeline::failure::FailureCode;
use pipeline::spec::Format;

use crate::common::{corpus_dir, decode, mean_abs_diff, read_corpus, spec};

fn process(bytes: &[u8], json: &str) -> engine::Processed {
    engine::process(bytes, &spec(json), &Limits::default(), &()).unwrap_or_else(|e| panic!("{e}"))
}

fn one(bytes: &[u8], output: &str) -> (DynamicImage, engine::Rendition) {
    let processed = process(bytes, &format!(r#"{{"outputs":[{output}]}}"#));
    let rendition = processed.outputs.into_iter().next().expect("one output");
    (decode(&rendition.data), rendition)
}

#[test]
fn every_exif_orientation_comes_out_upright() {
    let spec_json = r#"{"outputs":[{"name":"v","ops":[{"op":"resize","width":120,"height":120}],"format":"png"}]}"#;
    for kind in ["Landscape", "Portrait"] {
        // Orientation 1 is the reference: every other orientation must look the same after
        // the engine applies it (flips included, which sizes alone would not catch).
        let reference = decode(
            &process(&read_corpus(&format!("exif/{kind}_1.jpg")), spec_json).outputs[0].data,
        );
        for n in 0..=8 {
            let file = format!("exif/{kind}_{n}.jpg");
            let processed = process(&read_corpus(&file), spec_json);
            let out = decode(&processed.outputs[0].data);
            let (w, h) = out.dimensions();
            match kind {
                "Landscape" => assert!(w > h, "{file}: {w}x{h}"),
                _ => assert!(h > w, "{file}: {w}x{h}"),
            }
            assert_eq!(
                (processed.source.width > processed.source.height),
                (kind == "Landscape")
            );
            let diff = mean_abs_diff(&out, &reference);
            assert!(
                diff < 8.0,
                "{file} differs from {kind}_1 by {diff:.1} per channel"
            );
        }
    }
}

#[test]
fn fit_modes_give_exact_sizes() {
    let kodim = read_corpus("jpeg/kodim01.jpg"); // 768x512
    let cases = [
        (r#"{"op":"resize","width":256,"height":256}"#, (256, 171)),
        (
            r#"{"op":"resize","width":256,"height":256,"fit":"inside"}"#,
            (256, 171),
        ),
        (
            r#"{"op":"resize","width":256,"height":256,"fit":"cover"}"#,
            (256, 256),
        ),
        (
            r#"{"op":"resize","width":256,"height":256,"fit":"cover","gravity":"smart"}"#,
            (256, 256),
        ),
        (
            r#"{"op":"resize","width":256,"height":256,"fit":"contain"}"#,
            (256, 256),
        ),
        (
            r#"{"op":"resize","width":256,"height":100,"fit":"fill"}"#,
            (256, 100),
        ),
        (
            r#"{"op":"resize","width":256,"height":256,"fit":"outside"}"#,
            (384, 256),
        ),
        (r#"{"op":"resize","width":100}"#, (100, 67)),
        (r#"{"op":"resize","height":100}"#, (150, 100)),
        (r#"{"op":"resize","width":2000}"#, (768, 512)),
        (
            r#"{"op":"resize","width":1000,"enlarge":true}"#,
            (1000, 667),
        ),
        (
            r#"{"op":"resize","width":300,"filter":"nearest"}"#,
            (300, 200),
        ),
        (
            r#"{"op":"resize","width":300,"filter":"bilinear"}"#,
            (300, 200),
        ),
        (
            r#"{"op":"resize","width":300,"filter":"catmull_rom"}"#,
            (300, 200),
        ),
    ];
    for (op, size) in cases {
        let (image, rendition) = one(
            &kodim,
            &format!(r#"{{"name":"o","ops":[{op}],"format":"png"}}"#),
        );
        assert_eq!(image.dimensions(), size, "{op}");
        assert_eq!((rendition.width, rendition.height), size, "{op}");
    }
}

#[test]
fn every_op_gives_the_size_it_should() {
    let kodim = read_corpus("jpeg/kodim03.jpg"); // 768x512
    let cases = [
        (
            r#"{"op":"crop","x":10,"y":20,"width":300,"height":200}"#,
            (300, 200),
        ),
        (
            r#"{"op":"crop","x":700,"y":500,"width":300,"height":200}"#,
            (68, 12),
        ),
        (
            r#"{"op":"crop","width":300,"height":200,"gravity":"southeast"}"#,
            (300, 200),
        ),
        (
            r#"{"op":"crop","width":300,"height":300,"gravity":"smart"}"#,
            (300, 300),
        ),
        (r#"{"op":"crop","width":5000,"height":5000}"#, (768, 512)),
        (r#"{"op":"rotate","degrees":90}"#, (512, 768)),
        (r#"{"op":"rotate","degrees":180}"#, (768, 512)),
        (r#"{"op":"rotate","degrees":270}"#, (512, 768)),
        (r#"{"op":"flip","axis":"horizontal"}"#, (768, 512)),
        (r#"{"op":"flip","axis":"vertical"}"#, (768, 512)),
        (r#"{"op":"grayscale"}"#, (768, 512)),
        (r#"{"op":"blur","sigma":2}"#, (768, 512)),
        (r#"{"op":"blur","sigma":20}"#, (768, 512)),
        (r#"{"op":"sharpen","sigma":1,"amount":1.5}"#, (768, 512)),
        (r#"{"op":"brightness","value":1.3}"#, (768, 512)),
        (r#"{"op":"contrast","value":0.5}"#, (768, 512)),
    ];
    for (op, size) in cases {
        let (image, _) = one(
            &kodim,
            &format!(r#"{{"name":"o","ops":[{op}],"format":"png"}}"#),
        );
        assert_eq!(image.dimensions(), size, "{op}");
    }
}

#[test]
fn ops_change_pixels_the_way_they_say() {
    let kodim = read_corpus("jpeg/kodim05.jpg");
    let (base, _) = one(&kodim, r#"{"name":"o","format":"png"}"#);
    let op = |op: &str| {
        one(
            &kodim,
            &format!(r#"{{"name":"o","ops":[{op}],"format":"png"}}"#),
        )
        .0
    };

    let gray = op(r#"{"op":"grayscale"}"#);
    assert!(
        matches!(gray, DynamicImage::ImageLuma8(_)),
        "grayscale output is a gray PNG"
    );

    let mean = |img: &DynamicImage| {
        let raw = img.to_rgb8().into_raw();
        raw.iter().map(|&v| f64::from(v)).sum::<f64>() / raw.len() as f64
    };
    assert!(mean(&op(r#"{"op":"brightness","value":1.5}"#)) > mean(&base) + 10.0);
    assert!(mean(&op(r#"{"op":"brightness","value":0.5}"#)) < mean(&base) - 10.0);

    let spread = |img: &DynamicImage| {
        let raw = img.to_luma8().into_raw();
        let m = raw.iter().map(|&v| f64::from(v)).sum::<f64>() / raw.len() as f64;
        raw.iter().map(|&v| (f64::from(v) - m).abs()).sum::<f64>() / raw.len() as f64
    };
    let more = spread(&op(r#"{"op":"contrast","value":1.5}"#)) / spread(&base);
    assert!(more > 1.15, "contrast 1.5 spread ratio {more:.2}");
    let less = spread(&op(r#"{"op":"contrast","value":0.3}"#)) / spread(&base);
    assert!(
        (0.25..0.35).contains(&less),
        "contrast 0.3 spread ratio {less:.2}"
    );

    // Blur removes detail; sharpening adds it (neighbour differences measure detail).
    let detail = |img: &DynamicImage| {
        let l = img.to_luma8();
        let (w, h) = l.dimensions();
        let mut sum = 0u64;
        for y in 0..h {
            for x in 1..w {
                sum += u64::from(l.get_pixel(x, y)[0].abs_diff(l.get_pixel(x - 1, y)[0]));
            }
        }
        sum as f64 / f64::from(w * h)
    };
    assert!(detail(&op(r#"{"op":"blur","sigma":3}"#)) < detail(&base) * 0.6);
    assert!(detail(&op(r#"{"op":"sharpen","sigma":1,"amount":2}"#)) > detail(&base) * 1.2);

    // Flips and rotations move pixels without changing them.
    let flipped = op(r#"{"op":"flip","axis":"horizontal"}"#);
    assert_eq!(flipped.get_pixel(0, 0), base.get_pixel(base.width() - 1, 0));
    let turned = op(r#"{"op":"rotate","degrees":90}"#);
    assert_eq!(
        turned.get_pixel(turned.width() - 1, 0),
        base.get_pixel(0, 0)
    );

    // A crop at x,y holds the same pixels as the source there.
    let cropped = op(r#"{"op":"crop","x":100,"y":50,"width":40,"height":30}"#);
    assert_eq!(cropped.get_pixel(0, 0), base.get_pixel(100, 50));
    assert_eq!(cropped.get_pixel(39, 29), base.get_pixel(139, 79));
}

#[test]
fn contain_pads_with_the_background() {
    let kodim = read_corpus("jpeg/kodim01.jpg");
    let (img, _) = one(
        &kodim,
        r##"{"name":"o","ops":[{"op":"resize","width":200,"height":200,"fit":"contain","background":"#ff0000"}],"format":"png"}"##,
    );
    assert_eq!(img.dimensions(), (200, 200));
    assert_eq!(
        img.to_rgba8().get_pixel(100, 0).0,
        [255, 0, 0, 255],
        "top band is padding"
    );
    let (img, _) = one(
        &kodim,
        r#"{"name":"o","ops":[{"op":"resize","width":200,"height":200,"fit":"contain"}],"format":"png"}"#,
    );
    assert_eq!(
        img.to_rgba8().get_pixel(100, 0).0[3],
        0,
        "png padding defaults to transparent"
    );
    let (img, _) = one(
        &kodim,
        r#"{"name":"o","ops":[{"op":"resize","width":200,"height":200,"fit":"contain"}],"format":"jpeg"}"#,
    );
    assert!(
        img.to_rgb8().get_pixel(100, 0).0.iter().all(|&c| c > 245),
        "jpeg padding defaults to white"
    );
}

#[test]
fn formats_are_what_their_bytes_say() {
    let kodim = read_corpus("jpeg/kodim07.jpg");
    for format in ["jpeg", "png", "webp", "avif", "gif"] {
        let processed = process(
            &kodim,
            &format!(
                r#"{{"outputs":[{{"name":"o","ops":[{{"op":"resize","width":160}}],"format":"{format}"}}]}}"#
            ),
        );
        let out = &processed.outputs[0];
        let expected = match format {
            "jpeg" => Format::Jpeg,
            "png" => Format::Png,
            "webp" => Format::Webp,
            "avif" => Format::Avif,
            _ => Format::Gif,
        };
        assert_eq!(out.media, Media::Image(expected));
        match format {
            // No AVIF decoder here: check the ISO-BMFF brand.
            "avif" => assert_eq!(&out.data[4..12], b"ftypavif"),
            _ => {
                let sniffed = sniff(&out.data);
                assert_eq!(
                    sniffed,
                    Sniffed::Image(match format {
                        "jpeg" => SourceFormat::Jpeg,
                        "png" => SourceFormat::Png,
                        "webp" => SourceFormat::Webp,
                        _ => SourceFormat::Gif,
                    })
                );
                assert_eq!(decode(&out.data).dimensions(), (160, 107), "{format}");
            }
        }
    }
}

#[test]
fn the_default_format_is_the_sources() {
    for (file, format) in [
        ("jpeg/kodim01.jpg", Format::Jpeg),
        ("kodak/kodim02.png", Format::Png),
        ("formats/denali.webp", Format::Webp),
        ("formats/Crash_test.gif", Format::Gif),
    ] {
        let processed = process(
            &read_corpus(file),
            r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":64}]}]}"#,
        );
        assert_eq!(processed.outputs[0].media, Media::Image(format), "{file}");
    }
}

#[test]
fn quality_trades_bytes_for_fidelity() {
    let kodim = read_corpus("jpeg/kodim13.jpg");
    for format in ["jpeg", "webp", "avif"] {
        let size = |q: u8| {
            process(&kodim, &format!(r#"{{"outputs":[{{"name":"o","ops":[{{"op":"resize","width":300}}],"format":"{format}","quality":{q}}}]}}"#))
                .outputs[0]
                .data
                .len()
        };
        assert!(
            size(30) < size(90),
            "{format}: quality 30 is not smaller than 90"
        );
    }
}

#[test]
fn alpha_survives_to_png_and_webp() {
    // Mostly transparent paper with an opaque drawing.
    let bird = read_corpus("formats/alpha-premultiply-2048x1536-paper.png");
    for output in [
        r#"{"name":"o","ops":[{"op":"resize","width":200}],"format":"png"}"#,
        r#"{"name":"o","ops":[{"op":"resize","width":200}],"format":"webp"}"#,
        r#"{"name":"o","ops":[{"op":"resize","width":200}],"format":"webp","lossless":true}"#,
    ] {
        let (img, _) = one(&bird, output);
        assert!(img.color().has_alpha(), "{output}");
        let rgba = img.to_rgba8();
        let transparent = rgba.pixels().filter(|p| p[3] < 16).count();
        let opaque = rgba.pixels().filter(|p| p[3] > 240).count();
        assert!(
            transparent > 100 && opaque > 100,
            "{output}: {transparent} clear, {opaque} opaque"
        );
    }
    // JPEG has no alpha: transparent areas become white.
    let (img, _) = one(&bird, r#"{"name":"o","format":"jpeg"}"#);
    assert!(!img.color().has_alpha());
}

#[test]
fn cmyk_and_gray_jpegs_decode() {
    let (cmyk, _) = one(
        &read_corpus("formats/Channel_digital_image_CMYK_color.jpg"),
        r#"{"name":"o","ops":[{"op":"resize","width":100}],"format":"png"}"#,
    );
    assert!(cmyk.width() == 100);
    // The generated CMYK file: cyan on the left, black on the right.
    let (img, _) = one(&fixtures::cmyk_jpeg(), r#"{"name":"o","format":"png"}"#);
    let rgb = img.to_rgb8();
    let [r, g, b] = rgb.get_pixel(5, 20).0;
    assert!(
        r < 40 && g > 215 && b > 215,
        "left is cyan, got {r},{g},{b}"
    );
    let [r, g, b] = rgb.get_pixel(58, 20).0;
    assert!(
        r < 40 && g < 40 && b < 40,
        "right is black, got {r},{g},{b}"
    );

    let (gray, _) = one(&fixtures::gray_jpeg(), r#"{"name":"o","format":"png"}"#);
    assert!(matches!(gray, DynamicImage::ImageLuma8(_)));
    assert_eq!(gray.dimensions(), (64, 48));
}

#[test]
fn generated_fixtures_do_what_they_promise() {
    let limits = Limits::default();
    for fixture in fixtures::all() {
        let result = run_with_deadline(
            fixture.bytes.clone(),
            r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":32}],"format":"png"}]}"#,
        );
        match fixture.expect {
            Expect::Decodes { width, height } => {
                let processed = result.unwrap_or_else(|e| panic!("{}: {e}", fixture.name));
                assert_eq!(
                    (processed.source.width, processed.source.height),
                    (width, height),
                    "{}",
                    fixture.name
                );
            }
            Expect::PixelBomb => {
                let e = result.expect_err(fixture.name);
                assert!(
                    matches!(e, EngineError::PixelLimit { .. }),
                    "{}: {e}",
                    fixture.name
                );
                // Refused from the header alone.
                let probed = engine::probe(&fixture.bytes, &limits).expect_err(fixture.name);
                assert_eq!(probed.code(), FailureCode::PixelLimit);
            }
            Expect::Broken => {
                let e = result.expect_err(fixture.name);
                assert_eq!(e.code(), FailureCode::DecodeError, "{}: {e}", fixture.name);
            }
        }
    }
}

/// Runs the engine on another thread and fails the test if it takes over a minute: no input may
/// hang the engine.
fn run_with_deadline(
    bytes: Vec<u8>,
    spec_json: &'static str,
) -> Result<engine::Processed, EngineError> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let result = engine::process(&bytes, &spec(spec_json), &Limits::default(), &());
        let _ = tx.send(result);
    });
    rx.recv_timeout(Duration::from_secs(60))
        .expect("the engine finished within a minute")
}

#[test]
fn hostile_files_give_coded_errors_never_panics_or_hangs() {
    let spec_json = r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":64}],"format":"png"},{"name":"b","ops":[{"op":"crop","width":50,"height":50,"gravity":"smart"}],"format":"webp"}],"placeholder":"blurhash"}"#;
    let mut outcomes = Vec::new();
    for path in corpus_dir("hostile") {
        let bytes = std::fs::read(&path).unwrap();
        let outcome = match run_with_deadline(bytes, spec_json) {
            Ok(processed) => {
                assert_eq!(processed.outputs.len(), 2);
                "ok".to_owned()
            }
            Err(e) => {
                assert_ne!(e.code(), FailureCode::Internal, "{}: {e}", path.display());
                e.code().as_str().to_owned()
            }
        };
        outcomes.push(outcome);
    }
    // The suite holds both files that must fail and damaged files that still decode.
    assert!(outcomes.iter().any(|o| o == "ok"));
    assert!(outcomes.iter().any(|o| o == "decode_error"));
    assert!(outcomes.iter().any(|o| o == "pixel_limit"));
    assert!(outcomes.iter().any(|o| o == "unsupported_format"));
}

#[test]
fn truncations_of_real_photos_never_crash() {
    let photo = read_corpus("jpeg/kodim19.jpg");
    let png = read_corpus("formats/embedgravitybird.png");
    let webp = read_corpus("formats/denali.webp");
    let gif = read_corpus("formats/animated-loop-3.gif");
    for bytes in [photo, png, webp, gif] {
        for fraction in [0.01, 0.05, 0.2, 0.5, 0.9, 0.999] {
            let cut = fixtures::truncate(&bytes, fraction);
            if let Err(e) = run_with_deadline(
                cut,
                r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":64}]}]}"#,
            ) {
                assert!(
                    matches!(
                        e.code(),
                        FailureCode::DecodeError | FailureCode::UnsupportedFormat
                    ),
                    "{fraction}: {e}"
                );
            }
        }
    }
}

#[test]
fn pixel_limits_cover_outputs_too() {
    let kodim = read_corpus("jpeg/kodim01.jpg");
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let enlarge =
        spec(r#"{"outputs":[{"name":"big","ops":[{"op":"resize","width":4000,"enlarge":true}]}]}"#);
    let e = engine::process(&kodim, &enlarge, &limits, &()).unwrap_err();
    assert_eq!(e.code(), FailureCode::PixelLimit, "{e}");
    assert!(e.to_string().contains("big"), "{e}");
    let tiny = Limits {
        max_pixels: 1000,
        ..Limits::default()
    };
    let small = spec(r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":10}]}]}"#);
    let e = engine::process(&kodim, &small, &tiny, &()).unwrap_err();
    assert!(matches!(e, EngineError::PixelLimit { .. }), "{e}");
    let webp = spec(
        r#"{"outputs":[{"name":"w","ops":[{"op":"resize","width":16384,"height":100,"fit":"fill","enlarge":true}],"format":"webp"}]}"#,
    );
    let e = engine::process(&kodim, &webp, &Limits::default(), &()).unwrap_err();
    assert_eq!(e.code(), FailureCode::PixelLimit, "{e}");
}

#[test]
fn outputs_together_are_held_to_a_budget() {
    let kodim = read_corpus("jpeg/kodim01.jpg");
    let limits = Limits {
        max_pixels: 1_000_000,
        ..Limits::default()
    };
    let outputs = |n: usize, side: u32| {
        let list: Vec<String> = (0..n)
            .map(|i| {
                format!(
                    r#"{{"name":"o{i}","ops":[{{"op":"resize","width":{side},"height":{side},"fit":"fill","enlarge":true}}]}}"#
                )
            })
            .collect();
        spec(&format!(r#"{{"outputs":[{}]}}"#, list.join(",")))
    };
    // Each output alone is under the limit (990² < 1 MP), three together are over twice it.
    let e = engine::process(&kodim, &outputs(3, 990), &limits, &()).unwrap_err();
    assert_eq!(e.code(), FailureCode::PixelLimit, "{e}");
    assert!(e.to_string().contains("budget"), "{e}");
    // Two of them fit, and so do sixteen thumbnails.
    let two = engine::process(&kodim, &outputs(2, 990), &limits, &()).unwrap();
    assert_eq!(two.outputs.len(), 2);
    let thumbs = engine::process(&kodim, &outputs(16, 64), &limits, &()).unwrap();
    assert_eq!(thumbs.outputs.len(), 16);
}

#[test]
fn not_images_are_unsupported() {
    for bytes in [
        &b"%PDF-1.7 hello"[..],
        b"",
        b"GIF8",
        // A HEIF image sequence (stills are read; sequences are not).
        b"\0\0\0\x18ftypmsf1\0\0\0\0mif1msf1",
    ] {
        let e = engine::process(
            bytes,
            &spec(r#"{"outputs":[{"name":"o"}]}"#),
            &Limits::default(),
            &(),
        )
        .unwrap_err();
        assert_eq!(e.code(), FailureCode::UnsupportedFormat, "{e}");
        assert!(e.disposition() == pipeline::failure::Disposition::Abort);
    }
}

#[test]
fn placeholder_is_a_blurhash_of_the_image() {
    let processed = process(
        &read_corpus("jpeg/kodim23.jpg"),
        r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":64}]}],"placeholder":"blurhash"}"#,
    );
    let hash = processed.placeholder.expect("a placeholder");
    // 4x3 components: 1 + 1 + 4 + 2 * (4 * 3 - 1) characters.
    assert_eq!(hash.len(), 28, "{hash}");
    let pixels = blurhash::decode(&hash, 32, 24, 1.0).expect("a valid BlurHash");
    // The placeholder of a photo is not flat: its colours vary.
    let first = &pixels[..3];
    assert!(pixels.chunks(4).any(|p| p[..3] != *first));
    let none = process(
        &read_corpus("jpeg/kodim23.jpg"),
        r#"{"outputs":[{"name":"o"}]}"#,
    );
    assert!(none.placeholder.is_none());
}

#[test]
fn metadata_is_stripped_unless_kept() {
    let exif_jpeg = read_corpus("exif/Landscape_6.jpg");
    let has_exif = |bytes: &[u8]| bytes.windows(6).any(|w| w == b"Exif\0\0");
    let stripped = process(
        &exif_jpeg,
        r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":100}]}]}"#,
    );
    assert!(!has_exif(&stripped.outputs[0].data));
    let kept = process(
        &exif_jpeg,
        r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":100}],"keep_metadata":true}]}"#,
    );
    let data = &kept.outputs[0].data;
    assert!(has_exif(data));
    // The pixels are already upright: the kept EXIF must say so, or viewers would turn it again.
    let exif_start = data.windows(6).position(|w| w == b"Exif\0\0").unwrap() + 6;
    let orientation = image::metadata::Orientation::from_exif_chunk(&data[exif_start..]);
    assert_eq!(
        orientation,
        Some(image::metadata::Orientation::NoTransforms)
    );

    let has_icc = |bytes: &[u8]| bytes.windows(12).any(|w| w == b"ICC_PROFILE\0");
    let keep =
        r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":100}]}],"keep_metadata":true}"#;
    let strip = r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":100}]}]}"#;
    let icc_jpeg = read_corpus("large/nikon_d3s_iptc-mess.jpg");
    assert!(has_icc(&icc_jpeg));
    assert!(has_icc(&process(&icc_jpeg, keep).outputs[0].data));
    assert!(!has_icc(&process(&icc_jpeg, strip).outputs[0].data));
    // A CMYK JPEG's pixels become RGB through its profile either way: a CMYK profile would
    // misdescribe them, so none is kept.
    let cmyk_jpeg = read_corpus("formats/Channel_digital_image_CMYK_color.jpg");
    assert!(has_icc(&cmyk_jpeg));
    assert!(!has_icc(&process(&cmyk_jpeg, keep).outputs[0].data));
}

#[test]
fn lossy_webp_keeps_the_profile_and_exif_when_asked() {
    use image::ImageDecoder;
    let photo = read_corpus("large/nikon_d3s_iptc-mess.jpg");
    let source_icc = image::codecs::jpeg::JpegDecoder::new(std::io::Cursor::new(&photo))
        .unwrap()
        .icc_profile()
        .unwrap()
        .expect("the P3 photo has a profile");
    let output = |keep: bool| {
        let json = format!(
            r#"{{"outputs":[{{"name":"o","ops":[{{"op":"resize","width":120}}],"format":"webp","keep_metadata":{keep}}}]}}"#
        );
        process(&photo, &json).outputs.remove(0).data
    };
    let kept = output(true);
    let mut decoder = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&kept)).unwrap();
    assert_eq!(decoder.icc_profile().unwrap(), Some(source_icc));
    assert!(decoder.exif_metadata().unwrap().is_some(), "EXIF kept");
    // The numbers stay P3 (the profile says so); converted to sRGB they are more saturated.
    let stripped = output(false);
    let mut plain = image::codecs::webp::WebPDecoder::new(std::io::Cursor::new(&stripped)).unwrap();
    assert_eq!(plain.icc_profile().unwrap(), None);
    assert_ne!(decode(&kept).to_rgb8(), decode(&stripped).to_rgb8());
    // libvips (libwebp's demuxer) reads the extended container and its profile.
    let dir = fixtures::servers::TempDir::new("webp-icc");
    let path = dir.path().join("kept.webp");
    std::fs::write(&path, &kept).unwrap();
    let out = std::process::Command::new("vipsheader")
        .args(["-f", "icc-profile-data"])
        .arg(&path)
        .output()
        .expect("vipsheader (libvips-tools) on PATH");
    assert!(out.status.success(), "{out:?}");
    assert!(!out.stdout.is_empty(), "vips sees the profile");
}

#[test]
fn outputs_render_in_parallel_and_report_progress() {
    struct Count(AtomicUsize, AtomicUsize);
    impl Observer for Count {
        fn on_stage(&self, stage: Stage<'_>) -> Result<(), Interrupt> {
            match stage {
                Stage::Decoded => self.0.fetch_add(1, Ordering::SeqCst),
                Stage::Rendered { total, .. } => {
                    assert_eq!(total, 3);
                    self.1.fetch_add(1, Ordering::SeqCst)
                }
                Stage::Step => 0,
            };
            Ok(())
        }
    }
    let count = Count(AtomicUsize::new(0), AtomicUsize::new(0));
    let spec = spec(
        r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":64}]},{"name":"b","ops":[{"op":"resize","width":128}]},{"name":"c","format":"webp"}]}"#,
    );
    let processed = engine::process(
        &read_corpus("jpeg/kodim09.jpg"),
        &spec,
        &Limits::default(),
        &count,
    )
    .unwrap();
    let names: Vec<_> = processed.outputs.iter().map(|o| o.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "outputs keep the spec's order");
    assert_eq!(count.0.load(Ordering::SeqCst), 1);
    assert_eq!(count.1.load(Ordering::SeqCst), 3);
}

#[test]
fn an_interrupt_stops_the_job_at_the_next_stage() {
    struct Stop(Interrupt);
    impl Observer for Stop {
        fn on_stage(&self, _: Stage<'_>) -> Result<(), Interrupt> {
            Err(self.0)
        }
    }
    let spec = spec(r#"{"outputs":[{"name":"a","ops":[{"op":"resize","width":64}]}]}"#);
    let bytes = read_corpus("jpeg/kodim09.jpg");
    let e = engine::process(
        &bytes,
        &spec,
        &Limits::default(),
        &Stop(Interrupt::Cancelled),
    )
    .unwrap_err();
    assert_eq!(e, EngineError::Cancelled);
    let e = engine::process(
        &bytes,
        &spec,
        &Limits::default(),
        &Stop(Interrupt::TimedOut),
    )
    .unwrap_err();
    assert_eq!(
        (e.code(), e.disposition()),
        (FailureCode::Timeout, pipeline::failure::Disposition::Retry)
    );
}

#[test]
fn large_photos_shrink_on_load_and_still_look_right() {
    // A 4048x3036 photo decoded at 1/8 scale must match a full decode resized the slow way.
    let bytes = read_corpus("large/pixel1_IMG_20180725_163423.jpg");
    let (fast, _) = one(
        &bytes,
        r#"{"name":"o","ops":[{"op":"resize","width":256,"height":256}],"format":"png"}"#,
    );
    let full = image::load_from_memory(&bytes).unwrap();
    let slow = full.resize(
        fast.width(),
        fast.height(),
        image::imageops::FilterType::Lanczos3,
    );
    let diff = mean_abs_diff(&fast, &slow);
    assert!(
        diff < 4.0,
        "shrink-on-load differs by {diff:.2} per channel"
    );
}

#[test]
fn every_corpus_format_decodes() {
    for dir in ["jpeg", "kodak", "formats", "large"] {
        for path in corpus_dir(dir) {
            let bytes = std::fs::read(&path).unwrap();
            let processed = engine::process(&bytes, &spec(r#"{"outputs":[{"name":"o","ops":[{"op":"resize","width":96}],"format":"webp"}]}"#), &Limits::default(), &())
                .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
            assert!(!processed.outputs[0].data.is_empty());
        }
    }
}

/// Found by the hostile suite over HTTP: a 284x25 JPEG resized to 64 px wide decodes at 1/4,
/// and the source region scaled to the decoded size overshot its edge by a rounding error.
#[test]
fn resizes_from_a_shrunk_decode_stay_inside_the_image() {
    let bytes = read_corpus("hostile/exif-samples/invalid_image01980.jpg");
    for width in [17, 33, 64, 71, 100, 141] {
        for fit in ["inside", "cover", "fill"] {
            let spec_json = format!(
                r#"{{"outputs":[{{"name":"o","ops":[{{"op":"resize","width":{width},"height":{},"fit":"{fit}"}}]}}]}}"#,
                width / 4 + 1
            );
            let spec_json: &'static str = Box::leak(spec_json.into_boxed_str());
            let processed = run_with_deadline(bytes.clone(), spec_json)
                .unwrap_or_else(|e| panic!("{width} {fit}: {e}"));
            assert!(processed.outputs[0].width <= width as u32);
        }
    }
}

/// TIFF (8- and 16-bit, JPEG-compressed YCbCr) and BMP (v5, and one with a profile) from
/// `camera/`: each comes out at its size, with the pixels libvips makes of the same file
/// (`vipsthumbnail` to the same width, in the test).
#[test]
fn tiff_and_bmp_files_decode_as_libvips_decodes_them() {
    let dir = std::env::temp_dir().join(fixtures::servers::unique("tiff-bmp"));
    std::fs::create_dir_all(&dir).unwrap();
    for (file, (width, height)) in [
        ("mandrill.tiff", (512, 512)),
        ("rgb-3c-16b.tiff", (157, 151)),
        ("ycbcr_jpeg_8bit.tif", (512, 384)),
        ("V5_24_Bit.bmp", (435, 353)),
        ("rgb24prof.bmp", (127, 64)),
    ] {
        let path = crate::common::corpus(&format!("camera/{file}"));
        let bytes = std::fs::read(&path).unwrap();
        let info =
            engine::probe(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!((info.width, info.height), (width, height), "{file}");
        let (ours, _) = one(
            &bytes,
            r#"{"name":"t","ops":[{"op":"resize","width":100}],"format":"png"}"#,
        );
        let reference = dir.join(format!("{file}.png"));
        let made = std::process::Command::new("vipsthumbnail")
            .arg(&path)
            .args(["--size", "100x", "-o"])
            .arg(&reference)
            .status()
            .expect("vipsthumbnail (libvips-tools) on PATH");
        assert!(made.success(), "vipsthumbnail {file}");
        let theirs = decode(&std::fs::read(&reference).unwrap());
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{file}");
        let diff = mean_abs_diff(&ours, &theirs);
        assert!(diff < 4.0, "{file}: mean difference {diff:.2} from libvips");
    }
    let _ = std::fs::remove_dir_all(&dir);
}
