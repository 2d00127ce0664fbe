//! HDR (PQ or HLG transfer) to SDR sRGB: the signal is turned into display light relative to
//! SDR reference white (203 cd/m², ITU-R BT.2408), its luminance compressed with an extended
//! Reinhard curve whose white point is the image's own peak (hues kept), and the result taken
//! from the source's primaries into sRGB (a matrix made from their chromaticities).

use image::{DynamicImage, RgbImage, RgbaImage};
use rayon::prelude::*;

use super::colour::{Cicp, HdrTransfer};

/// SDR reference white, in cd/m².
const REFERENCE_WHITE: f32 = 203.0;
/// The display an HLG signal is shown on (its nominal peak, cd/m²) and that display's gamma.
const HLG_PEAK: f32 = 1000.0;
const HLG_GAMMA: f32 = 1.2;

/// 10-, 12- or 16-bit samples (`bits` used of each u16), RGB or RGBA, to 8-bit sRGB. `None`
/// when the description is not HDR or names primaries moxcms does not know.
///
/// Two passes over the samples, the transfer function read from a table of every code value:
/// the first finds the peak luminance, the second maps, converts and encodes each pixel.
pub(super) fn to_sdr(
    samples: &[u16],
    bits: u8,
    alpha: bool,
    (width, height): (u32, u32),
    cicp: Cicp,
) -> Option<DynamicImage> {
    let channels = if alpha { 4 } else { 3 };
    let max = (1u32 << bits.clamp(1, 16)) - 1;
    let weights = luma_weights(cicp.primaries);
    let to_light = Light::new(cicp, max, weights)?;
    let to_srgb = primaries_to_srgb(cicp.primaries)?;
    let encode = srgb_encoding_table();
    let max = max as usize;
    let peak = samples
        .par_chunks(channels * 1024)
        .map(|run| {
            run.chunks_exact(channels)
                .map(|px| luma(to_light.rgb(px, max), weights))
                .fold(1.0f32, f32::max)
        })
        .reduce(|| 1.0, f32::max);
    let white = peak * peak;
    let mut out = vec![0u8; samples.len() / channels * channels];
    out.par_chunks_mut(channels * 1024)
        .zip(samples.par_chunks(channels * 1024))
        .for_each(|(dst, src)| {
            for (o, px) in dst
                .chunks_exact_mut(channels)
                .zip(src.chunks_exact(channels))
            {
                let rgb = to_light.rgb(px, max);
                let y = luma(rgb, weights);
                // Extended Reinhard on luminance, white at the image's peak: hues kept.
                let gain = if y > 0.0 {
                    (1.0 + y / white) / (1.0 + y)
                } else {
                    0.0
                };
                let rgb = rgb.map(|c| c * gain);
                for (i, row) in to_srgb.iter().enumerate() {
                    let v = row[0] * rgb[0] + row[1] * rgb[1] + row[2] * rgb[2];
                    o[i] = encode[(v.clamp(0.0, 1.0) * ENCODING_STEPS as f32) as usize];
                }
                if alpha {
                    o[3] = (u32::from(px[3].min(max as u16)) * 255 / max as u32) as u8;
                }
            }
        });
    if alpha {
        RgbaImage::from_raw(width, height, out).map(DynamicImage::ImageRgba8)
    } else {
        RgbImage::from_raw(width, height, out).map(DynamicImage::ImageRgb8)
    }
}

/// Code value → display light relative to reference white, for every code value.
enum Light {
    /// PQ is per channel: one table.
    Pq(Vec<f32>),
    /// HLG: a table of scene light, then the OOTF on the pixel's luminance.
    Hlg(Vec<f32>, [f32; 3]),
}

impl Light {
    fn new(cicp: Cicp, max: u32, weights: [f32; 3]) -> Option<Light> {
        let table = |f: fn(f32) -> f32| -> Vec<f32> {
            (0..=max).map(|v| f(v as f32 / max as f32)).collect()
        };
        Some(match cicp.hdr()? {
            HdrTransfer::Pq => Light::Pq(table(|e| pq_eotf(e) * 10_000.0 / REFERENCE_WHITE)),
            HdrTransfer::Hlg => Light::Hlg(table(hlg_inverse_oetf), weights),
        })
    }

    fn rgb(&self, px: &[u16], max: usize) -> [f32; 3] {
        let at = |table: &[f32], i: usize| table[usize::from(px[i]).min(max)];
        match self {
            Light::Pq(table) => [at(table, 0), at(table, 1), at(table, 2)],
            Light::Hlg(table, weights) => {
                let scene = [at(table, 0), at(table, 1), at(table, 2)];
                let ys = luma(scene, *weights).max(1e-6);
                let gain = ys.powf(HLG_GAMMA - 1.0) * HLG_PEAK / REFERENCE_WHITE;
                scene.map(|v| v * gain)
            }
        }
    }
}

/// The 3×3 matrix from linear light in `primaries` (CICP code: 1 BT.709, 9 BT.2020, 11/12
/// P3) to linear sRGB. All are D65, so no white-point adaptation is needed.
fn primaries_to_srgb(primaries: u8) -> Option<[[f32; 3]; 3]> {
    const BT709: [[f64; 2]; 3] = [[0.640, 0.330], [0.300, 0.600], [0.150, 0.060]];
    let source = match primaries {
        1 => BT709,
        9 => [[0.708, 0.292], [0.170, 0.797], [0.131, 0.046]],
        11 | 12 => [[0.680, 0.320], [0.265, 0.690], [0.150, 0.060]],
        _ => return None,
    };
    let to_xyz = rgb_to_xyz(source)?;
    let from_xyz = invert(rgb_to_xyz(BT709)?)?;
    Some([0, 1, 2].map(|i| {
        [0, 1, 2].map(|j| (0..3).map(|k| from_xyz[i][k] * to_xyz[k][j]).sum::<f64>() as f32)
    }))
}

/// RGB → XYZ for the given primaries' chromaticities and a D65 white.
fn rgb_to_xyz(xy: [[f64; 2]; 3]) -> Option<[[f64; 3]; 3]> {
    const D65: [f64; 3] = [0.950_47, 1.0, 1.088_83];
    // Columns: each primary's XYZ at Y = 1, then scaled so that R = G = B = 1 is the white.
    let columns = xy.map(|[x, y]| [x / y, 1.0, (1.0 - x - y) / y]);
    let m = [0, 1, 2].map(|i| [0, 1, 2].map(|j| columns[j][i]));
    let inverse = invert(m)?;
    let scale = [0, 1, 2].map(|i| (0..3).map(|k| inverse[i][k] * D65[k]).sum::<f64>());
    Some([0, 1, 2].map(|i| [0, 1, 2].map(|j| m[i][j] * scale[j])))
}

fn invert(m: [[f64; 3]; 3]) -> Option<[[f64; 3]; 3]> {
    let cofactor = |r: usize, c: usize| {
        let (r1, r2) = ((r + 1) % 3, (r + 2) % 3);
        let (c1, c2) = ((c + 1) % 3, (c + 2) % 3);
        m[r1][c1] * m[r2][c2] - m[r1][c2] * m[r2][c1]
    };
    let det: f64 = (0..3).map(|c| m[0][c] * cofactor(0, c)).sum();
    (det.abs() > 1e-12).then(|| [0, 1, 2].map(|i| [0, 1, 2].map(|j| cofactor(j, i) / det)))
}

const ENCODING_STEPS: usize = 4095;

/// Linear light (0–1, in 4096 steps) → 8-bit sRGB.
fn srgb_encoding_table() -> Vec<u8> {
    (0..=ENCODING_STEPS)
        .map(|i| {
            let v = i as f32 / ENCODING_STEPS as f32;
            let e = if v <= 0.003_130_8 {
                12.92 * v
            } else {
                1.055 * v.powf(1.0 / 2.4) - 0.055
            };
            (e * 255.0).round() as u8
        })
        .collect()
}

/// Luminance weights of the source primaries (BT.2020's when unknown: HDR's usual gamut).
fn luma_weights(primaries: u8) -> [f32; 3] {
    match primaries {
        1 => [0.2126, 0.7152, 0.0722],
        12 => [0.2290, 0.6917, 0.0793],
        _ => [0.2627, 0.6780, 0.0593],
    }
}

fn luma(rgb: [f32; 3], w: [f32; 3]) -> f32 {
    rgb[0] * w[0] + rgb[1] * w[1] + rgb[2] * w[2]
}

/// SMPTE ST 2084 EOTF: signal (0–1) to light as a fraction of 10,000 cd/m².
fn pq_eotf(e: f32) -> f32 {
    const M1: f32 = 2610.0 / 16384.0;
    const M2: f32 = 2523.0 / 4096.0 * 128.0;
    const C1: f32 = 3424.0 / 4096.0;
    const C2: f32 = 2413.0 / 4096.0 * 32.0;
    const C3: f32 = 2392.0 / 4096.0 * 32.0;
    let p = e.clamp(0.0, 1.0).powf(1.0 / M2);
    ((p - C1).max(0.0) / (C2 - C3 * p)).powf(1.0 / M1)
}

/// HLG (ARIB STD-B67) inverse OETF: signal (0–1) to scene light (0–1).
fn hlg_inverse_oetf(e: f32) -> f32 {
    const A: f32 = 0.178_832_77;
    const B: f32 = 0.284_668_92;
    const C: f32 = 0.559_910_7;
    let e = e.clamp(0.0, 1.0);
    if e <= 0.5 {
        e * e / 3.0
    } else {
        (((e - C) / A).exp() + B) / 12.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pq_reference_white_and_peak_land_where_bt2408_says() {
        // 58% PQ is 203 cd/m²: SDR white.
        let white = pq_eotf(0.58) * 10_000.0;
        assert!((white - 203.0).abs() < 5.0, "{white}");
        assert!((pq_eotf(1.0) - 1.0).abs() < 1e-4);
        assert_eq!(pq_eotf(0.0), 0.0);
    }

    #[test]
    fn display_p3_primaries_map_to_srgb_with_the_published_matrix() {
        let m = primaries_to_srgb(12).expect("P3 is known");
        let expected = [
            [1.2249, -0.2247, 0.0],
            [-0.0420, 1.0419, 0.0],
            [-0.0197, -0.0786, 1.0979],
        ];
        for (row, want) in m.iter().zip(expected) {
            for (got, want) in row.iter().zip(want) {
                assert!((got - want).abs() < 0.01, "{m:?}");
            }
        }
    }

    #[test]
    fn hdr_white_maps_below_sdr_white_and_black_stays_black() {
        let cicp = Cicp {
            primaries: 9,
            transfer: 16,
        };
        // Black, reference white (PQ 58%) and a 1000-nit highlight (PQ 75%), 10-bit.
        let samples: Vec<u16> = [0.0, 0.58, 0.75]
            .iter()
            .flat_map(|&e: &f32| [(e * 1023.0) as u16; 3])
            .collect();
        let out = to_sdr(&samples, 10, false, (3, 1), cicp)
            .expect("PQ maps")
            .to_rgb8();
        let [black, white, highlight] = [0, 1, 2].map(|x| out.get_pixel(x, 0)[1]);
        assert_eq!(black, 0);
        assert!(white > 150 && white < highlight, "{white} {highlight}");
        assert!(highlight >= 250, "{highlight}");
    }
}
