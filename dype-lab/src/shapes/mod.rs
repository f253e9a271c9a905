//! A procedural class-conditional dataset whose ideal image is known at every resolution, for
//! training a small DiT here and measuring what each positional method does beyond its training
//! size (the `train` example, `fitv2 --demo`, the lab).
//!
//! * **Structure that scales with the canvas**: exactly one object per image, a shape per class in
//!   the class colour ([`CLASS_NAMES`]), 40–70 % of the shorter side, its centre within ±10 % of
//!   the middle, no crops. Its layout ([`RenderConfig::layout`]) depends on the sample's seed only,
//!   never on the resolution, so a duplicated or broken layout at 2× or 4× (base RoPE's failure)
//!   shows as more than one component or a wrong area.
//! * **Detail at a fixed pixel scale**: a low-contrast texture (standard deviation 0.05) summed
//!   from plane waves with wavelengths of 8–16 pixels (2–4 tokens of a 4-pixel patch) and
//!   amplitudes falling as 1/f, the same in pixels at every resolution: the ideal 4× image holds
//!   16× the texture of the 1× one, and blur (PI's failure) shows as missing power in that band
//!   ([`radial_psd`]).
//! * **A detector** ([`detect`]): nearest class colour → mask → 4-connected components above
//!   0.5 % of the image → count, area fraction and centre of the largest; [`area_range`] is the
//!   renderer's own range, for the quality gate ([`passes`]).

mod detect;
mod render;
mod spectrum;

pub use detect::{
    Detection, MAX_COLOUR_DISTANCE, MIN_AREA_FRACTION, UNLABELLED, classify, detect,
    nearest_colours, passes,
};
pub use render::{
    BACKGROUND, CLASS_COLOURS, CLASS_NAMES, CLASSES, Image, Layout, MAX_SIDE, RenderConfig, Sample,
};
pub use spectrum::{Spectrum, radial_psd};

/// Errors of the renderer, the detector and the spectra.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ShapesError {
    /// A class id outside the dataset.
    #[error("class {class} is out of range (0..{CLASSES})")]
    Class {
        /// The class asked for.
        class: usize,
    },
    /// An image size the renderer does not draw, or planes that do not match their size.
    #[error(
        "image size {height}×{width} is out of range (1..={MAX_SIDE} per side) or does not match the data"
    )]
    Size {
        /// Rows.
        height: usize,
        /// Columns.
        width: usize,
    },
    /// A configuration value outside its range.
    #[error("invalid renderer or detector configuration")]
    Config,
}

/// The renderer's range of the class's area fraction at `height × width` (over `samples` seeds
/// from `first_seed`), widened by 10 % on each side: the quality gate's "inside the training
/// range".
pub fn area_range(
    config: &RenderConfig,
    class: usize,
    height: usize,
    width: usize,
    samples: u64,
) -> Result<(f64, f64), ShapesError> {
    let (mut lo, mut hi) = (f64::INFINITY, 0.0f64);
    for seed in 0..samples.max(1) {
        let image = config.render(Sample { class, seed }, height, width)?;
        let d = detect(&image, class, MIN_AREA_FRACTION)?;
        lo = lo.min(d.area_fraction);
        hi = hi.max(d.area_fraction);
    }
    Ok((lo / 1.1, hi * 1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rendering_is_deterministic_per_seed_and_differs_between_seeds() {
        let cfg = RenderConfig::default();
        let a = cfg.render(Sample { class: 3, seed: 7 }, 24, 40).unwrap();
        let b = cfg.render(Sample { class: 3, seed: 7 }, 24, 40).unwrap();
        let c = cfg.render(Sample { class: 3, seed: 8 }, 24, 40).unwrap();
        assert_eq!(a, b);
        assert_ne!(a, c);
        assert!(a.data.iter().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn the_detector_recovers_layout_at_every_resolution() {
        let cfg = RenderConfig::default();
        for class in 0..CLASSES {
            for seed in 0..4 {
                let sample = Sample { class, seed };
                let layout = cfg.layout(sample).unwrap();
                let mut areas = Vec::new();
                for (h, w) in [(32, 32), (64, 64), (128, 128), (64, 256)] {
                    let image = cfg.render(sample, h, w).unwrap();
                    let d = detect(&image, class, MIN_AREA_FRACTION).unwrap();
                    assert_eq!(d.count, 1, "class {class} seed {seed} at {h}×{w}");
                    let (r, c) = d.centre.unwrap();
                    // Centre of mass vs the layout's centre: the shapes are symmetric except the
                    // triangle (its centroid is its circle's centre too).
                    let tol = 2.0 / h.min(w) as f64;
                    assert!(
                        (r - layout.centre.0 as f64).abs() < tol + 0.01,
                        "{class} {h}×{w}: row {r}"
                    );
                    assert!(
                        (c - layout.centre.1 as f64).abs() < tol + 0.01,
                        "{class} {h}×{w}: col {c}"
                    );
                    // Area in units of the shorter side², comparable across sizes.
                    areas.push(d.area_fraction * (h * w) as f64 / (h.min(w) as f64).powi(2));
                    // No other class is seen.
                    for other in (0..CLASSES).filter(|&o| o != class) {
                        let seen = detect(&image, other, MIN_AREA_FRACTION).unwrap();
                        assert_eq!(
                            seen.count, 0,
                            "class {class} seed {seed} {h}×{w}: {other} seen {seen:?}"
                        );
                    }
                }
                // Measured areas lose the anti-aliased rim (unlabelled blends), a share that shrinks
                // with the resolution: from 64² up they agree within 10 %, and at 32² (an object of
                // 13–22 pixels) within 25 %. The gate compares with the renderer at the same size.
                let (min, max) = areas[1..]
                    .iter()
                    .fold((f64::INFINITY, 0.0f64), |(a, b), &x| (a.min(x), b.max(x)));
                assert!(
                    max / min < 1.10,
                    "class {class} seed {seed}: areas {areas:?}"
                );
                assert!(
                    (areas[0] / areas[2] - 1.0).abs() < 0.25,
                    "class {class} seed {seed}: areas {areas:?}"
                );
            }
        }
    }

    /// The layouts span the configured ranges (size 40–70 % of the shorter side, centre within
    /// ±10 % of the middle) and nothing outside them, and they do not depend on the resolution.
    #[test]
    fn layouts_cover_the_configured_ranges() {
        let cfg = RenderConfig::default();
        let (mut size_lo, mut size_hi) = (f32::INFINITY, 0.0f32);
        let (mut off_lo, mut off_hi) = (f32::INFINITY, f32::NEG_INFINITY);
        for seed in 0..2000 {
            let l = cfg.layout(Sample { class: 0, seed }).unwrap();
            assert!(
                (0.4..=0.7).contains(&l.size),
                "seed {seed}: size {}",
                l.size
            );
            for c in [l.centre.0, l.centre.1] {
                assert!((0.4..=0.6).contains(&c), "seed {seed}: centre {c}");
                off_lo = off_lo.min(c - 0.5);
                off_hi = off_hi.max(c - 0.5);
            }
            size_lo = size_lo.min(l.size);
            size_hi = size_hi.max(l.size);
        }
        // 2 000 uniform draws come within 1 % of each end of their range.
        assert!(size_lo < 0.403 && size_hi > 0.697, "{size_lo}..{size_hi}");
        assert!(off_lo < -0.098 && off_hi > 0.098, "{off_lo}..{off_hi}");
    }

    /// The measured area of shapes with a closed-form area matches it: the disc (π/4 of its
    /// diameter²), the square inscribed in the circle (½) and the ring (π(0.5² − 0.25²)), at
    /// 256² where the anti-aliased rim is a small share.
    #[test]
    fn measured_areas_match_the_geometry() {
        let cfg = RenderConfig::default();
        let (h, w) = (256usize, 256usize);
        let exact = |class: usize, size: f64| -> f64 {
            let d2 = (size * h as f64).powi(2) / (h * w) as f64;
            match class {
                0 => std::f64::consts::FRAC_PI_4 * d2,
                1 => 0.5 * d2,
                _ => std::f64::consts::PI * (0.25 - 0.0625) * d2,
            }
        };
        for class in [0, 1, 3] {
            for seed in 0..6 {
                let sample = Sample { class, seed };
                let layout = cfg.layout(sample).unwrap();
                let image = cfg.render(sample, h, w).unwrap();
                let d = detect(&image, class, MIN_AREA_FRACTION).unwrap();
                let want = exact(class, layout.size as f64);
                assert!(
                    (d.area_fraction / want - 1.0).abs() < 0.05,
                    "class {class} seed {seed}: {} vs {want}",
                    d.area_fraction
                );
            }
        }
    }

    #[test]
    fn rendered_images_are_classified_as_their_class() {
        let cfg = RenderConfig::default();
        for (h, w) in [(32, 32), (64, 128), (256, 256)] {
            for class in 0..CLASSES {
                for seed in 0..4 {
                    let image = cfg.render(Sample { class, seed }, h, w).unwrap();
                    assert_eq!(classify(&image, MIN_AREA_FRACTION).unwrap(), Some(class));
                }
            }
        }
        // Channel-major data of a background-only image: no class.
        let blank = Image {
            height: 8,
            width: 8,
            data: (0..3).flat_map(|c| vec![BACKGROUND[c]; 64]).collect(),
        };
        assert_eq!(classify(&blank, MIN_AREA_FRACTION).unwrap(), None);
        assert!(classify(&blank, f64::NAN).is_err());
    }

    #[test]
    fn a_tiled_image_counts_several_objects() {
        let cfg = RenderConfig::default();
        let one = cfg.render(Sample { class: 0, seed: 1 }, 32, 32).unwrap();
        // 2×2 tiling: what base RoPE's failure at 2× looks like.
        let mut data = vec![0.0; 3 * 64 * 64];
        for c in 0..3 {
            for r in 0..64 {
                for col in 0..64 {
                    data[(c * 64 + r) * 64 + col] = one.at(c, r % 32, col % 32).unwrap();
                }
            }
        }
        let tiled = Image {
            height: 64,
            width: 64,
            data,
        };
        assert_eq!(detect(&tiled, 0, MIN_AREA_FRACTION).unwrap().count, 4);
    }

    #[test]
    fn the_detail_band_has_the_same_power_at_every_resolution() {
        // A vanishing object: the image is the background and its texture alone.
        let cfg = RenderConfig {
            size: (0.01, 0.01),
            ..RenderConfig::default()
        };
        // Mean over seeds of the spectrum in the detail band (8–16 px).
        let band = |h: usize| {
            let images: Vec<Image> = (0..8)
                .map(|seed| cfg.render(Sample { class: 7, seed }, h, h).unwrap())
                .collect();
            let planes: Vec<&[f32]> = images
                .iter()
                .flat_map(|im| im.data.chunks_exact(h * h))
                .collect();
            let s = radial_psd(&planes, h, h).unwrap();
            let (sum, n) = s
                .frequency
                .iter()
                .zip(&s.power)
                .filter(|(f, _)| (1.0 / 16.0..=1.0 / 8.0).contains(*f))
                .fold((0.0, 0), |(a, n), (_, p)| (a + p, n + 1));
            sum / n as f64
        };
        let (p64, p256) = (band(64), band(256));
        assert!(
            (p64 / p256 - 1.0).abs() < 0.5,
            "band power {p64} at 64², {p256} at 256²"
        );
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        let cfg = RenderConfig::default();
        assert_eq!(
            cfg.render(
                Sample {
                    class: CLASSES,
                    seed: 0
                },
                8,
                8
            )
            .unwrap_err(),
            ShapesError::Class { class: CLASSES }
        );
        assert!(matches!(
            cfg.render(Sample { class: 0, seed: 0 }, 0, 8),
            Err(ShapesError::Size { .. })
        ));
        assert!(matches!(
            cfg.render(Sample { class: 0, seed: 0 }, MAX_SIDE + 1, 8),
            Err(ShapesError::Size { .. })
        ));
        let bad = RenderConfig {
            size: (0.8, 0.2),
            ..cfg
        };
        assert_eq!(
            bad.layout(Sample { class: 0, seed: 0 }).unwrap_err(),
            ShapesError::Config
        );
        assert!(radial_psd(&[&[0.0; 3]], 2, 2).is_err());
        let broken = Image {
            height: 4,
            width: 4,
            data: vec![0.5; 10],
        };
        assert!(matches!(
            detect(&broken, 0, MIN_AREA_FRACTION),
            Err(ShapesError::Size { .. })
        ));
        assert_eq!(broken.at(0, 4, 0), None);
    }
}
