//! `gravity: smart`: keep the busiest part of the picture. Edges and saturated colour mark where
//! the subject usually is (libvips's "attention" strategy works from the same cues); a summed-area
//! table finds the window holding the most of them.

use fast_image_resize::{FilterType, ResizeAlg, ResizeOptions, Resizer};
use image::DynamicImage;

/// The analysis runs on a copy whose long side is at most this.
const ANALYSIS_SIZE: u32 = 128;

/// The top-left corner of the `width` × `height` window of `image` with the most detail.
pub(super) fn best_region(image: &DynamicImage, width: f64, height: f64) -> (f64, f64) {
    let (w, h) = (image.width(), image.height());
    let spare_w = (f64::from(w) - width).max(0.0);
    let spare_h = (f64::from(h) - height).max(0.0);
    if spare_w < 1.0 && spare_h < 1.0 {
        return (0.0, 0.0);
    }
    let k = (f64::from(ANALYSIS_SIZE) / f64::from(w.max(h))).min(1.0);
    let (sw, sh) = (
        ((f64::from(w) * k).round() as u32).max(1),
        ((f64::from(h) * k).round() as u32).max(1),
    );
    let mut small = DynamicImage::new(sw, sh, image.color());
    let options = ResizeOptions::new().resize_alg(ResizeAlg::Convolution(FilterType::Bilinear));
    if Resizer::new().resize(image, &mut small, &options).is_err() {
        return (spare_w / 2.0, spare_h / 2.0);
    }
    let rgb = small.to_rgb8();
    let (sw, sh) = (sw as usize, sh as usize);

    let luma: Vec<i32> = rgb
        .pixels()
        .map(|p| (i32::from(p[0]) * 299 + i32::from(p[1]) * 587 + i32::from(p[2]) * 114) / 1000)
        .collect();
    // Summed-area table with a zero row and column in front.
    let mut sat = vec![0f64; (sw + 1) * (sh + 1)];
    for y in 0..sh {
        let mut row_sum = 0f64;
        for x in 0..sw {
            let at = |x: usize, y: usize| luma[y * sw + x];
            let dx = (at((x + 1).min(sw - 1), y) - at(x.saturating_sub(1), y)).abs();
            let dy = (at(x, (y + 1).min(sh - 1)) - at(x, y.saturating_sub(1))).abs();
            let p = rgb.get_pixel(x as u32, y as u32);
            let saturation =
                i32::from(p[0].max(p[1]).max(p[2])) - i32::from(p[0].min(p[1]).min(p[2]));
            row_sum += f64::from(dx + dy) + 0.5 * f64::from(saturation);
            sat[(y + 1) * (sw + 1) + x + 1] = sat[y * (sw + 1) + x + 1] + row_sum;
        }
    }

    let ww = ((width * k).round() as usize).clamp(1, sw);
    let wh = ((height * k).round() as usize).clamp(1, sh);
    let window = |x: usize, y: usize| {
        let s = |x: usize, y: usize| sat[y * (sw + 1) + x];
        s(x + ww, y + wh) - s(x, y + wh) - s(x + ww, y) + s(x, y)
    };
    let (cx, cy) = ((sw - ww) as f64 / 2.0, (sh - wh) as f64 / 2.0);
    let mut best = (f64::MIN, 0usize, 0usize);
    for y in 0..=sh - wh {
        for x in 0..=sw - ww {
            // A slight pull to the centre settles ties (flat images stay centred).
            let distance = ((x as f64 - cx).powi(2) + (y as f64 - cy).powi(2)).sqrt();
            let score = window(x, y) - distance * 1e-3;
            if score > best.0 {
                best = (score, x, y);
            }
        }
    }
    let left = (best.1 as f64 / k).min(spare_w);
    let top = (best.2 as f64 / k).min(spare_h);
    (left, top)
}
