//! Sizes without pixels: where each resize and crop lands, the size of every intermediate image
//! (so a spec that would blow past the pixel limit is refused before decoding), and how far the
//! decoder may shrink on load.

use crate::spec::{Crop, CropAnchor, Fit, Format, Gravity, Op, OutputSpec, Resize, Rotation};

use super::error::EngineError;

/// A region of an image, in its pixels (fractional: resampling reads partial pixels).
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Region {
    pub left: f64,
    pub top: f64,
    pub width: f64,
    pub height: f64,
}

/// Where a resize reads from, what it resamples to, and the canvas it lands on.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct ResizePlan {
    /// The part of the source read; its position is only final after [`ResizePlan::place`].
    pub source: Region,
    /// The size the source region is resampled to.
    pub scaled: (u32, u32),
    /// The output size: `scaled`, or larger for `contain`, which pads.
    pub canvas: (u32, u32),
    /// Where `scaled` sits on the canvas.
    pub offset: (u32, u32),
    /// Scale factors from source to scaled.
    pub scale: (f64, f64),
}

/// The source of a resize: its size, and whether it may be enlarged.
struct Source {
    size: (u32, u32),
    enlarge: bool,
}

impl Source {
    fn whole(&self) -> Region {
        Region {
            left: 0.0,
            top: 0.0,
            width: f64::from(self.size.0),
            height: f64::from(self.size.1),
        }
    }

    /// A scale factor, held at 1 when the source may not be enlarged.
    fn cap(&self, scale: f64) -> f64 {
        if self.enlarge {
            scale
        } else {
            scale.min(1.0)
        }
    }

    /// The whole source scaled by one factor.
    fn uniform(&self, scale: f64) -> ResizePlan {
        self.stretched((scale, scale))
    }

    /// The whole source scaled by a factor per axis.
    fn stretched(&self, (sx, sy): (f64, f64)) -> ResizePlan {
        let (sx, sy) = (self.cap(sx), self.cap(sy));
        let scaled = (scale_len(self.size.0, sx), scale_len(self.size.1, sy));
        ResizePlan {
            source: self.whole(),
            scaled,
            canvas: scaled,
            offset: (0, 0),
            scale: (sx, sy),
        }
    }

    /// Scaled by `scale`, with the binding side (the width when `width_binds`) snapped to the
    /// exact target, so 768x512 into 256 gives 256x171.
    fn snapped(&self, (tw, th): (u32, u32), scale: f64, width_binds: bool) -> ResizePlan {
        let mut plan = self.uniform(scale);
        if self.enlarge || scale <= 1.0 {
            if width_binds {
                plan.scaled.0 = tw;
            } else {
                plan.scaled.1 = th;
            }
            plan.canvas = plan.scaled;
        }
        plan
    }

    /// Scaled to cover the target, the overflow cut: the output is the target, or less when
    /// the source is too small and may not be enlarged.
    fn cover(&self, (tw, th): (u32, u32), scale: f64) -> ResizePlan {
        let s = self.cap(scale);
        let (w, h) = self.size;
        let out = (tw.min(scale_len(w, s)), th.min(scale_len(h, s)));
        let region = Region {
            left: 0.0,
            top: 0.0,
            width: (f64::from(out.0) / s).min(f64::from(w)),
            height: (f64::from(out.1) / s).min(f64::from(h)),
        };
        ResizePlan {
            source: region,
            scaled: out,
            canvas: out,
            offset: (0, 0),
            scale: (s, s),
        }
    }
}

impl ResizePlan {
    pub fn new((w, h): (u32, u32), resize: &Resize) -> ResizePlan {
        let source = Source {
            size: (w, h),
            enlarge: resize.enlarge,
        };
        let (tw, th) = match (resize.width, resize.height) {
            (Some(tw), None) => return source.uniform(f64::from(tw) / f64::from(w)),
            (None, Some(th)) => return source.uniform(f64::from(th) / f64::from(h)),
            (Some(tw), Some(th)) => (tw, th),
            (None, None) => return source.uniform(1.0),
        };
        let (fx, fy) = (f64::from(tw) / f64::from(w), f64::from(th) / f64::from(h));
        match resize.fit {
            Fit::Inside => source.snapped((tw, th), fx.min(fy), fx <= fy),
            Fit::Outside => source.snapped((tw, th), fx.max(fy), fx >= fy),
            Fit::Fill => source.stretched((fx, fy)),
            Fit::Cover => source.cover((tw, th), fx.max(fy)),
            Fit::Contain => {
                let mut plan = source.snapped((tw, th), fx.min(fy), fx <= fy);
                plan.canvas = (tw.max(plan.scaled.0), th.max(plan.scaled.1));
                plan.offset = gravity_offset(
                    (plan.canvas.0 - plan.scaled.0, plan.canvas.1 - plan.scaled.1),
                    resize.gravity,
                );
                plan
            }
        }
    }

    /// Places the source region by a fixed gravity (smart gravity is placed by content).
    pub fn place(&mut self, (w, h): (u32, u32), gravity: Gravity) {
        let spare_w = (f64::from(w) - self.source.width).max(0.0);
        let spare_h = (f64::from(h) - self.source.height).max(0.0);
        let (fx, fy) = gravity_fraction(gravity);
        self.source.left = spare_w * fx;
        self.source.top = spare_h * fy;
    }
}

/// Where a crop of `width` × `height` lands in an image of `(w, h)`: clamped to the image, so a
/// crop never fails and never comes out empty.
pub(super) fn crop_region((w, h): (u32, u32), crop: &Crop) -> (u32, u32, u32, u32) {
    match crop.anchor {
        CropAnchor::At { x, y } => {
            let x = x.min(w - 1);
            let y = y.min(h - 1);
            (x, y, crop.width.min(w - x), crop.height.min(h - y))
        }
        CropAnchor::Gravity { gravity } => {
            let cw = crop.width.min(w);
            let ch = crop.height.min(h);
            let (x, y) = gravity_offset((w - cw, h - ch), gravity);
            (x, y, cw, ch)
        }
    }
}

fn gravity_fraction(gravity: Gravity) -> (f64, f64) {
    match gravity {
        Gravity::Center | Gravity::Smart => (0.5, 0.5),
        Gravity::North => (0.5, 0.0),
        Gravity::South => (0.5, 1.0),
        Gravity::East => (1.0, 0.5),
        Gravity::West => (0.0, 0.5),
        Gravity::Northeast => (1.0, 0.0),
        Gravity::Northwest => (0.0, 0.0),
        Gravity::Southeast => (1.0, 1.0),
        Gravity::Southwest => (0.0, 1.0),
    }
}

/// Offset of a box inside a larger one with `spare` room left over.
pub(super) fn gravity_offset(spare: (u32, u32), gravity: Gravity) -> (u32, u32) {
    let (fx, fy) = gravity_fraction(gravity);
    (
        (f64::from(spare.0) * fx).floor() as u32,
        (f64::from(spare.1) * fy).floor() as u32,
    )
}

fn scale_len(len: u32, scale: f64) -> u32 {
    ((f64::from(len) * scale).round() as u64).clamp(1, u64::from(u32::MAX)) as u32
}

/// The result of walking one output's ops over sizes only.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct OutputPlan {
    pub final_size: (u32, u32),
    /// How small the source may be decoded for this output: the first resize's scale when
    /// nothing before it depends on resolution, else 1 (full size).
    pub min_decode_scale: f64,
    /// The largest image (in pixels) the output makes on its way, itself included (the decoded
    /// source is shared by all outputs and not counted).
    pub peak_pixels: u64,
}

/// Walks `output`'s ops from a source of `source` size, refusing any step that would exceed the
/// pixel limit or the output format's largest dimension.
pub(super) fn plan_output(
    source: (u32, u32),
    output: &OutputSpec,
    format: Format,
    max_pixels: u64,
) -> Result<OutputPlan, EngineError> {
    let mut size = source;
    let mut min_decode_scale = None;
    let mut peak_pixels = 0;
    let too_large = |size: (u32, u32), reason: String| EngineError::OutputTooLarge {
        output: output.name.clone(),
        width: u64::from(size.0),
        height: u64::from(size.1),
        reason,
    };
    for op in &output.ops {
        size = match op {
            Op::Resize(resize) => {
                let plan = ResizePlan::new(size, resize);
                if min_decode_scale.is_none() {
                    // Resampling needs at least as many source pixels as it produces.
                    min_decode_scale = Some(plan.scale.0.max(plan.scale.1));
                }
                plan.canvas
            }
            Op::Crop(crop) => {
                min_decode_scale.get_or_insert(1.0);
                let (_, _, w, h) = crop_region(size, crop);
                (w, h)
            }
            Op::Rotate { degrees } => match degrees {
                Rotation::Half => size,
                Rotation::Quarter | Rotation::ThreeQuarters => (size.1, size.0),
            },
            Op::Blur { .. } | Op::Sharpen { .. } => {
                // Their radius is in pixels of the image they see.
                min_decode_scale.get_or_insert(1.0);
                size
            }
            Op::Flip { .. } | Op::Grayscale | Op::Brightness { .. } | Op::Contrast { .. } => size,
        };
        let pixels = u64::from(size.0) * u64::from(size.1);
        peak_pixels = peak_pixels.max(pixels);
        if pixels > max_pixels {
            return Err(too_large(
                size,
                format!("over the limit of {max_pixels} pixels"),
            ));
        }
    }
    peak_pixels = peak_pixels.max(u64::from(size.0) * u64::from(size.1));
    let max = format.max_dimension();
    if size.0 > max || size.1 > max {
        return Err(too_large(
            size,
            format!("{format} is limited to {max}x{max}"),
        ));
    }
    Ok(OutputPlan {
        final_size: size,
        min_decode_scale: min_decode_scale.unwrap_or(1.0).min(1.0),
        peak_pixels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Filter;

    fn resize(width: Option<u32>, height: Option<u32>, fit: Fit, enlarge: bool) -> Resize {
        Resize {
            width,
            height,
            fit,
            filter: Filter::Lanczos3,
            enlarge,
            background: None,
            gravity: Gravity::Center,
        }
    }

    #[test]
    fn fits_land_where_sharp_puts_them() {
        let src = (768, 512);
        let cases = [
            (Fit::Inside, (256, 256), (256, 171), (256, 171)),
            (Fit::Outside, (256, 256), (384, 256), (384, 256)),
            (Fit::Cover, (256, 256), (256, 256), (256, 256)),
            (Fit::Contain, (256, 256), (256, 171), (256, 256)),
            (Fit::Fill, (100, 300), (100, 300), (100, 300)),
        ];
        for (fit, (tw, th), scaled, canvas) in cases {
            let plan = ResizePlan::new(src, &resize(Some(tw), Some(th), fit, false));
            assert_eq!((plan.scaled, plan.canvas), (scaled, canvas), "{fit:?}");
        }
        let cover = ResizePlan::new(src, &resize(Some(256), Some(256), Fit::Cover, false));
        assert_eq!((cover.source.width, cover.source.height), (512.0, 512.0));
        let contain = ResizePlan::new(src, &resize(Some(256), Some(256), Fit::Contain, false));
        assert_eq!(contain.offset, (0, 42));
    }

    #[test]
    fn enlarge_false_never_upsamples() {
        let src = (100, 50);
        for fit in [Fit::Inside, Fit::Outside, Fit::Fill] {
            let plan = ResizePlan::new(src, &resize(Some(400), Some(400), fit, false));
            assert_eq!(plan.scaled, (100, 50), "{fit:?}");
        }
        let cover = ResizePlan::new(src, &resize(Some(400), Some(400), Fit::Cover, false));
        assert_eq!(cover.canvas, (100, 50));
        let contain = ResizePlan::new(src, &resize(Some(400), Some(400), Fit::Contain, false));
        assert_eq!((contain.scaled, contain.canvas), ((100, 50), (400, 400)));
        let bigger = ResizePlan::new(src, &resize(Some(400), None, Fit::Inside, true));
        assert_eq!(bigger.scaled, (400, 200));
    }

    #[test]
    fn crops_are_clamped_to_the_image() {
        let crop = |x, y, w, h| Crop {
            width: w,
            height: h,
            anchor: CropAnchor::At { x, y },
        };
        assert_eq!(
            crop_region((100, 100), &crop(10, 20, 30, 40)),
            (10, 20, 30, 40)
        );
        assert_eq!(
            crop_region((100, 100), &crop(90, 90, 30, 40)),
            (90, 90, 10, 10)
        );
        assert_eq!(
            crop_region((100, 100), &crop(500, 500, 30, 40)),
            (99, 99, 1, 1)
        );
        let south = Crop {
            width: 50,
            height: 10,
            anchor: CropAnchor::Gravity {
                gravity: Gravity::South,
            },
        };
        assert_eq!(crop_region((100, 100), &south), (25, 90, 50, 10));
    }
}
