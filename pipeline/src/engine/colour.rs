//! Colour management: a source described by an ICC profile (or CICP) other than sRGB is
//! converted to sRGB when an output is made, after its ops, so the transform runs on the
//! output's pixels rather than the source's (API.md § Formats in, colour, animation).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use image::DynamicImage;
use moxcms::{
    CicpColorPrimaries, CicpProfile, ColorProfile, DataColorSpace, Layout, MatrixCoefficients,
    RenderingIntent, TransferCharacteristics, Transform8BitExecutor, TransformOptions,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Converts 8-bit RGB(A) pixels from a source's colour space to sRGB.
pub(super) struct ToSrgb {
    rgb: Arc<Transform8BitExecutor>,
    rgba: Arc<Transform8BitExecutor>,
}

impl std::fmt::Debug for ToSrgb {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ToSrgb")
    }
}

/// Profiles seen recently and what they call for (`None`: sRGB already, or not usable). Phones
/// and cameras embed the same few profiles, so parsing and testing one is paid once.
type Verdicts = Mutex<HashMap<[u8; 32], Option<Arc<ToSrgb>>>>;
const CACHED_PROFILES: usize = 64;

fn verdicts() -> &'static Verdicts {
    static VERDICTS: OnceLock<Verdicts> = OnceLock::new();
    VERDICTS.get_or_init(Default::default)
}

/// The conversion an RGB source with this ICC profile needs, or `None` when its pixels are sRGB
/// already (whatever the profile is called), the profile is not RGB, or it cannot be read (then
/// the pixels are taken as sRGB, as browsers do).
pub(super) fn from_icc(icc: &[u8]) -> Option<Arc<ToSrgb>> {
    let key: [u8; 32] = Sha256::digest(icc).into();
    if let Some(verdict) = verdicts().lock().ok()?.get(&key) {
        return verdict.clone();
    }
    let verdict = ColorProfile::new_from_slice(icc)
        .ok()
        .filter(|profile| profile.color_space == DataColorSpace::Rgb)
        .and_then(|profile| to_srgb(&profile));
    let mut cache = verdicts().lock().ok()?;
    if cache.len() >= CACHED_PROFILES {
        cache.clear();
    }
    cache.insert(key, verdict.clone());
    verdict
}

/// The colour space a source's numbers are in, as the job record's `media` names it: sRGB (or
/// no description at all), a well-known wide gamut, some other RGB profile, gray or CMYK.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ColourSpace {
    Srgb,
    DisplayP3,
    AdobeRgb,
    Bt2020,
    ProphotoRgb,
    OtherRgb,
    Gray,
    Cmyk,
}

/// An HDR transfer function.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum HdrTransfer {
    Pq,
    Hlg,
}

/// What a source's header says about its colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SourceColour {
    pub space: ColourSpace,
    pub hdr: Option<HdrTransfer>,
}

impl SourceColour {
    pub const SRGB: SourceColour = SourceColour::sdr(ColourSpace::Srgb);
    pub const GRAY: SourceColour = SourceColour::sdr(ColourSpace::Gray);
    pub const CMYK: SourceColour = SourceColour::sdr(ColourSpace::Cmyk);

    const fn sdr(space: ColourSpace) -> SourceColour {
        SourceColour { space, hdr: None }
    }

    /// Names an ICC profile: by data colour space, then (RGB) sRGB when the transform to sRGB
    /// changes nothing, else the well-known gamut whose primaries it has.
    pub fn of_icc(icc: &[u8]) -> SourceColour {
        let Ok(profile) = ColorProfile::new_from_slice(icc) else {
            return SourceColour::SRGB;
        };
        let space = match profile.color_space {
            DataColorSpace::Gray => ColourSpace::Gray,
            DataColorSpace::Cmyk => ColourSpace::Cmyk,
            DataColorSpace::Rgb if from_icc(icc).is_none() => ColourSpace::Srgb,
            DataColorSpace::Rgb => known_gamut(&profile),
            _ => ColourSpace::OtherRgb,
        };
        SourceColour { space, hdr: None }
    }

    pub fn of_cicp(cicp: Cicp) -> SourceColour {
        let space = match cicp.primaries {
            1 | 2 => ColourSpace::Srgb,
            11 | 12 => ColourSpace::DisplayP3,
            9 => ColourSpace::Bt2020,
            _ => ColourSpace::OtherRgb,
        };
        SourceColour {
            space,
            hdr: cicp.hdr(),
        }
    }
}

/// The well-known RGB gamut whose primaries (PCS colorants) `profile` has, within 0.005.
fn known_gamut(profile: &ColorProfile) -> ColourSpace {
    let colorants = |p: &ColorProfile| {
        [p.red_colorant, p.green_colorant, p.blue_colorant].map(|c| [c.x, c.y, c.z])
    };
    let ours = colorants(profile);
    let close = |known: &ColorProfile| {
        ours.iter()
            .flatten()
            .zip(colorants(known).iter().flatten())
            .all(|(a, b)| (a - b).abs() < 0.005)
    };
    [
        (ColorProfile::new_display_p3(), ColourSpace::DisplayP3),
        (ColorProfile::new_adobe_rgb(), ColourSpace::AdobeRgb),
        (ColorProfile::new_bt2020(), ColourSpace::Bt2020),
        (ColorProfile::new_pro_photo_rgb(), ColourSpace::ProphotoRgb),
    ]
    .into_iter()
    .find(|(known, _)| close(known))
    .map_or(ColourSpace::OtherRgb, |(_, space)| space)
}

/// The colour description of an AVIF/HEIF `nclx` box or a JPEG XL header, as CICP code points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Cicp {
    pub primaries: u8,
    pub transfer: u8,
}

impl Cicp {
    /// PQ (SMPTE ST 2084, code 16) or HLG (code 18): values above SDR white that need
    /// tone-mapping.
    pub fn hdr(self) -> Option<HdrTransfer> {
        match self.transfer {
            16 => Some(HdrTransfer::Pq),
            18 => Some(HdrTransfer::Hlg),
            _ => None,
        }
    }
}

/// The conversion a CICP-described source needs (`None` for sRGB/BT.709 or unknown codes).
pub(super) fn from_cicp(cicp: Cicp) -> Option<Arc<ToSrgb>> {
    let primaries = CicpColorPrimaries::try_from(cicp.primaries).ok()?;
    let transfer = TransferCharacteristics::try_from(cicp.transfer).ok()?;
    if matches!(
        primaries,
        CicpColorPrimaries::Bt709 | CicpColorPrimaries::Unspecified
    ) && matches!(
        transfer,
        TransferCharacteristics::Srgb
            | TransferCharacteristics::Bt709
            | TransferCharacteristics::Unspecified
    ) {
        return None;
    }
    let profile = ColorProfile::new_from_cicp(CicpProfile {
        color_primaries: primaries,
        transfer_characteristics: transfer,
        matrix_coefficients: MatrixCoefficients::Identity,
        full_range: true,
    });
    to_srgb(&profile)
}

/// Builds the transforms; `None` when the profile maps every tested colour onto itself.
fn to_srgb(profile: &ColorProfile) -> Option<Arc<ToSrgb>> {
    let srgb = ColorProfile::new_srgb();
    let options = TransformOptions {
        rendering_intent: RenderingIntent::RelativeColorimetric,
        ..TransformOptions::default()
    };
    let rgb = profile
        .create_transform_8bit(Layout::Rgb, &srgb, Layout::Rgb, options)
        .ok()?;
    if is_identity(&*rgb) {
        return None;
    }
    let rgba = profile
        .create_transform_8bit(Layout::Rgba, &srgb, Layout::Rgba, options)
        .ok()?;
    Some(Arc::new(ToSrgb { rgb, rgba }))
}

/// Whether `transform` leaves a 9×9×9 grid of colours (the gamut's corners, edges and inside)
/// within one level of where they were: an sRGB profile by another name.
fn is_identity(transform: &Transform8BitExecutor) -> bool {
    const LEVELS: [u8; 9] = [0, 32, 64, 96, 128, 160, 192, 224, 255];
    let mut grid = Vec::with_capacity(LEVELS.len().pow(3) * 3);
    for r in LEVELS {
        for g in LEVELS {
            for b in LEVELS {
                grid.extend_from_slice(&[r, g, b]);
            }
        }
    }
    let mut out = vec![0u8; grid.len()];
    transform.transform(&grid, &mut out).is_ok()
        && grid.iter().zip(&out).all(|(a, b)| a.abs_diff(*b) <= 1)
}

impl ToSrgb {
    /// The image in sRGB. Gray images (a gray profile, or a `grayscale` op) are left as they
    /// are: their tone curve is close to sRGB's and they have no gamut to map.
    pub fn apply(&self, image: DynamicImage) -> DynamicImage {
        match image {
            DynamicImage::ImageRgb8(mut img) => {
                convert_in_place(&*self.rgb, 3, &mut img);
                DynamicImage::ImageRgb8(img)
            }
            DynamicImage::ImageRgba8(mut img) => {
                convert_in_place(&*self.rgba, 4, &mut img);
                DynamicImage::ImageRgba8(img)
            }
            other => other,
        }
    }
}

fn convert_in_place(transform: &Transform8BitExecutor, channels: usize, pixels: &mut [u8]) {
    // moxcms needs separate source and destination buffers: 4096 pixels at a time keeps the
    // copy in cache.
    let mut source = Vec::new();
    for chunk in pixels.chunks_mut(channels * 4096) {
        source.clear();
        source.extend_from_slice(chunk);
        if transform.transform(&source, chunk).is_err() {
            // Only a length mismatch fails, which the whole-pixel chunks rule out.
            chunk.copy_from_slice(&source);
        }
    }
}

/// A CMYK → sRGB transform through the source's CMYK profile, for CMYK JPEGs.
pub(super) fn cmyk_to_srgb(icc: &[u8]) -> Option<Arc<Transform8BitExecutor>> {
    let profile = ColorProfile::new_from_slice(icc).ok()?;
    if profile.color_space != DataColorSpace::Cmyk {
        return None;
    }
    let options = TransformOptions {
        rendering_intent: RenderingIntent::Perceptual,
        ..TransformOptions::default()
    };
    // moxcms takes 8-bit CMYK in the RGBA layout.
    profile
        .create_transform_8bit(
            Layout::Rgba,
            &ColorProfile::new_srgb(),
            Layout::Rgb,
            options,
        )
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn srgb_profiles_need_no_conversion_and_display_p3_does() {
        let srgb = ColorProfile::new_srgb().encode().expect("encode sRGB");
        assert!(from_icc(&srgb).is_none(), "sRGB converted to itself");
        let p3 = ColorProfile::new_display_p3().encode().expect("encode P3");
        let to_srgb = from_icc(&p3).expect("P3 needs a conversion");
        // Pure P3 green lies outside sRGB: it comes out clipped, no longer pure.
        let green =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([0, 255, 0])));
        let out = to_srgb.apply(green).to_rgb8();
        assert_eq!(out.get_pixel(0, 0)[1], 255);
        assert!(out.get_pixel(0, 0)[0] == 0 && out.get_pixel(0, 0)[2] == 0);
        // A mid P3 red is a more saturated sRGB red.
        let red =
            DynamicImage::ImageRgb8(image::RgbImage::from_pixel(1, 1, image::Rgb([200, 60, 60])));
        let out = to_srgb.apply(red).to_rgb8();
        let [r, g, b] = out.get_pixel(0, 0).0;
        assert!(
            r > 200 && g < 60 && b < 60,
            "P3 (200,60,60) gave {r},{g},{b}"
        );
    }

    #[test]
    fn profiles_and_cicp_are_named_by_what_they_describe() {
        let named = |p: ColorProfile| SourceColour::of_icc(&p.encode().expect("encode")).space;
        assert_eq!(named(ColorProfile::new_srgb()), ColourSpace::Srgb);
        assert_eq!(
            named(ColorProfile::new_display_p3()),
            ColourSpace::DisplayP3
        );
        assert_eq!(named(ColorProfile::new_adobe_rgb()), ColourSpace::AdobeRgb);
        assert_eq!(SourceColour::of_icc(b"junk"), SourceColour::SRGB);
        let hdr = SourceColour::of_cicp(Cicp {
            primaries: 9,
            transfer: 16,
        });
        assert_eq!(
            hdr,
            SourceColour {
                space: ColourSpace::Bt2020,
                hdr: Some(HdrTransfer::Pq)
            }
        );
    }

    #[test]
    fn unreadable_profiles_and_bt709_cicp_leave_pixels_alone() {
        assert!(from_icc(b"not a profile").is_none());
        assert!(from_cicp(Cicp {
            primaries: 1,
            transfer: 13
        })
        .is_none());
        // P3 described by CICP converts as the Display P3 ICC profile does.
        let by_cicp = from_cicp(Cicp {
            primaries: 12,
            transfer: 13,
        })
        .expect("P3 needs a conversion");
        let p3 = ColorProfile::new_display_p3().encode().expect("encode P3");
        let by_icc = from_icc(&p3).expect("P3 needs a conversion");
        let sample = || {
            DynamicImage::ImageRgb8(image::RgbImage::from_fn(16, 16, |x, y| {
                image::Rgb([(x * 16) as u8, (y * 16) as u8, 128])
            }))
        };
        let (a, b) = (by_cicp.apply(sample()), by_icc.apply(sample()));
        let worst = a
            .as_bytes()
            .iter()
            .zip(b.as_bytes())
            .map(|(x, y)| x.abs_diff(*y))
            .max();
        assert!(worst <= Some(2), "CICP and ICC P3 differ by {worst:?}");
    }
}
