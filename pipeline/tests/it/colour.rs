//! Phone and camera formats (HEIC, AVIF, JPEG XL) and colour management, checked against what
//! libvips (`vipsthumbnail`, colour-managed to sRGB) makes of the same files in the same test.

use std::path::{Path, PathBuf};

use image::{DynamicImage, GenericImageView};
use pipeline::engine::{self, Limits, SourceFormat};

use crate::common::{corpus, decode, mean_abs_diff, read_corpus, spec};

#[derive(Clone, Copy)]
enum Reference {
    Vips,
    Pillow,
}
use Reference::{Pillow, Vips};

fn thumbnail(bytes: &[u8], output: &str) -> DynamicImage {
    let json = format!(r#"{{"outputs":[{output}]}}"#);
    let processed = engine::process(bytes, &spec(&json), &Limits::default(), &())
        .unwrap_or_else(|e| panic!("{e}"));
    decode(&processed.outputs[0].data)
}

/// `vipsthumbnail` to `width`, exported to sRGB through the file's own profile.
fn vips_reference(source: &Path, width: u32, dir: &Path) -> DynamicImage {
    let name = source.file_name().unwrap().to_string_lossy();
    let out: PathBuf = dir.join(format!("{name}.png"));
    let made = std::process::Command::new("vipsthumbnail")
        .arg(source)
        .args([
            "--size",
            &format!("{width}x"),
            "--export-profile",
            "srgb",
            "-o",
        ])
        .arg(&out)
        .status()
        .expect("vipsthumbnail (libvips-tools) on PATH");
    assert!(made.success(), "vipsthumbnail {name}");
    decode(&std::fs::read(&out).unwrap())
}

/// A colour-managed reference made by Pillow (its ImageCms is Little CMS 2): the file's ICC
/// profile to sRGB, then a Lanczos resize to `width`. HEIF files are first decoded to PNG (the
/// profile kept) by libheif's own `heif-convert`.
fn pillow_reference(source: &Path, width: u32, dir: &Path) -> DynamicImage {
    let name = source.file_name().unwrap().to_string_lossy();
    let mut input = source.to_path_buf();
    if matches!(
        source.extension().and_then(|e| e.to_str()),
        Some("heic" | "avif")
    ) {
        input = dir.join(format!("{name}.full.png"));
        let made = std::process::Command::new("heif-convert")
            .arg(source)
            .arg(&input)
            .stdout(std::process::Stdio::null())
            .status()
            .expect("heif-convert (libheif-examples) on PATH");
        assert!(made.success(), "heif-convert {name}");
    }
    let out = dir.join(format!("{name}.pillow.png"));
    let made = std::process::Command::new("python3")
        .args(["-c", PILLOW_THUMBNAIL])
        .arg(&input)
        .arg(width.to_string())
        .arg(&out)
        .status()
        .expect("python3 with Pillow");
    assert!(made.success(), "Pillow reference for {name}");
    decode(&std::fs::read(&out).unwrap())
}

const PILLOW_THUMBNAIL: &str = r#"
import io, sys
from PIL import Image, ImageCms
source, width, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
image = Image.open(source)
icc = image.info.get("icc_profile")
if icc:
    image = ImageCms.profileToProfile(
        image, ImageCms.ImageCmsProfile(io.BytesIO(icc)), ImageCms.createProfile("sRGB"),
        outputMode="RGB")
image = image.convert("RGB")
height = round(image.height * width / image.width)
image.resize((width, height), Image.LANCZOS).save(out)
"#;

fn scratch(test: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(fixtures::servers::unique(test));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// Mean HSV saturation (0–255) of an image's pixels.
fn mean_saturation(image: &DynamicImage) -> f64 {
    let rgb = image.to_rgb8();
    let total: f64 = rgb
        .pixels()
        .map(|p| {
            let max = f64::from(*p.0.iter().max().unwrap());
            let min = f64::from(*p.0.iter().min().unwrap());
            if max == 0.0 {
                0.0
            } else {
                (max - min) / max * 255.0
            }
        })
        .sum();
    total / f64::from(rgb.width() * rgb.height())
}

/// Each HEIC, AVIF and JPEG XL file of `camera/` is judged by its bytes, measured from its
/// header at the size it is displayed, and decodes to the colours a colour-managed reference
/// makes of it: libheif + Little CMS (Pillow) for HEIF, libvips (libjxl) for the SDR JPEG XL.
/// The HDR files, which neither reference tone-maps, must come out at SDR brightness.
#[test]
fn heic_avif_and_jxl_files_decode_upright_in_their_colours() {
    let dir = scratch("camera-formats");
    for (file, format, size, reference) in [
        (
            "IMG_2682.heic",
            SourceFormat::Heif,
            (4032, 3024),
            Some(Pillow),
        ),
        (
            "samsung-one-ui-6.heic",
            SourceFormat::Heif,
            (3000, 4000),
            Some(Pillow),
        ),
        (
            "8bit-sRGB.avif",
            SourceFormat::Avif,
            (1617, 1080),
            Some(Pillow),
        ),
        (
            "10bit-HDR-P3-nclx.avif",
            SourceFormat::Avif,
            (3681, 5594),
            None,
        ),
        ("8bit-sRGB.jxl", SourceFormat::Jxl, (1440, 1080), Some(Vips)),
        ("16bit-HDR-P3-nclx.jxl", SourceFormat::Jxl, (0, 0), None),
    ] {
        let path = corpus(&format!("camera/{file}"));
        let bytes = std::fs::read(&path).unwrap();
        let info =
            engine::probe(&bytes, &Limits::default()).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert_eq!(info.format, format, "{file}");
        if size != (0, 0) {
            assert_eq!((info.width, info.height), size, "{file}");
        }
        let ours = thumbnail(
            &bytes,
            r#"{"name":"t","ops":[{"op":"resize","width":200}],"format":"png"}"#,
        );
        let expected_height = (f64::from(info.height) * 200.0 / f64::from(info.width)).round();
        assert_eq!(ours.dimensions(), (200, expected_height as u32), "{file}");
        let luma = ours.to_luma8();
        let mean = luma.pixels().map(|p| f64::from(p.0[0])).sum::<f64>() / luma.len() as f64;
        assert!(
            (16.0..240.0).contains(&mean),
            "{file}: mean brightness {mean:.1}"
        );
        let theirs = match reference {
            Some(Pillow) => pillow_reference(&path, 200, &dir),
            Some(Vips) => vips_reference(&path, 200, &dir),
            None => {
                eprintln!("{file}: mean brightness {mean:.1}");
                assert!(
                    mean > 60.0,
                    "{file}: too dark for a tone-mapped picture ({mean:.1})"
                );
                continue;
            }
        };
        assert_eq!(ours.dimensions(), theirs.dimensions(), "{file}");
        let diff = mean_abs_diff(&ours, &theirs);
        assert!(
            diff < 2.0,
            "{file}: mean difference {diff:.2} from the reference"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// A Display P3 JPEG comes out converted to sRGB — as libvips converts it, and visibly more
/// saturated than its P3 numbers read as sRGB — while `keep_metadata` keeps the numbers and the
/// profile. A CMYK JPEG is converted through its profile.
#[test]
fn wide_gamut_and_cmyk_jpegs_come_out_in_srgb_as_their_profiles_say() {
    let dir = scratch("colour");
    let output = r#"{"name":"t","ops":[{"op":"resize","width":256}],"format":"png"}"#;
    // libvips 8.14 refuses this CMYK profile ("profile incompatible with image"): Pillow there.
    for (file, reference) in [
        ("large/nikon_d3s_iptc-mess.jpg", Vips),
        ("large/nikon_d3s_iptc-mess.jpg", Pillow),
        ("formats/Channel_digital_image_CMYK_color.jpg", Pillow),
    ] {
        let path = corpus(file);
        let bytes = std::fs::read(&path).unwrap();
        let ours = thumbnail(&bytes, output);
        let theirs = match reference {
            Vips => vips_reference(&path, 256, &dir),
            Pillow => pillow_reference(&path, 256, &dir),
        };
        let diff = mean_abs_diff(&ours, &theirs);
        assert!(
            diff < 2.5,
            "{file}: mean difference {diff:.2} from the reference"
        );
    }

    let p3 = read_corpus("large/nikon_d3s_iptc-mess.jpg");
    let converted = thumbnail(&p3, output);
    let kept = thumbnail(
        &p3,
        r#"{"name":"t","ops":[{"op":"resize","width":256}],"format":"png","keep_metadata":true}"#,
    );
    let (s_converted, s_kept) = (mean_saturation(&converted), mean_saturation(&kept));
    assert!(
        s_converted > s_kept * 1.08,
        "sRGB saturation {s_converted:.1} vs the P3 numbers' {s_kept:.1}"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// sRGB sources are left alone: a Kodak photo (no profile) and a Pixel phone photo (an sRGB
/// IEC61966-2.1 profile) come out with the same pixels whether converted or not.
#[test]
fn srgb_sources_are_not_transformed() {
    for file in ["jpeg/kodim03.jpg", "large/pixel1_IMG_20180725_163423.jpg"] {
        let bytes = read_corpus(file);
        let plain = thumbnail(
            &bytes,
            r#"{"name":"t","ops":[{"op":"resize","width":256}],"format":"png"}"#,
        );
        let kept = thumbnail(
            &bytes,
            r#"{"name":"t","ops":[{"op":"resize","width":256}],"format":"png","keep_metadata":true}"#,
        );
        assert!(
            plain.as_bytes() == kept.as_bytes(),
            "{file} was transformed"
        );
    }
}

/// A thumbnail the Samsung HEIC embeds (384×512) is big enough for a 128 px output, so it is
/// decoded instead of the 12 MP image: the result must still match libheif's full decode.
#[test]
fn an_embedded_heic_thumbnail_serves_small_outputs_unnoticed() {
    let dir = scratch("heic-thumbnail");
    let path = corpus("camera/samsung-one-ui-6.heic");
    let ours = thumbnail(
        &std::fs::read(&path).unwrap(),
        r#"{"name":"t","ops":[{"op":"resize","width":128}],"format":"png"}"#,
    );
    let theirs = pillow_reference(&path, 128, &dir);
    assert_eq!(ours.dimensions(), theirs.dimensions());
    let diff = mean_abs_diff(&ours, &theirs);
    assert!(diff < 2.5, "mean difference {diff:.2} from the full decode");
    let _ = std::fs::remove_dir_all(&dir);
}
