//! The lab's metrics, fixed before any method was compared: structure from the shapes
//! detector, detail from the radially averaged power spectrum, and bootstrap confidence intervals.
//!
//! Per sample (one image of a requested class at one resolution):
//! * `one` — 1 when the detector finds exactly one component of the class's colour, else 0;
//! * `area_err` — how far the largest component's area fraction lies outside the renderer's range
//!   for that class and resolution ([`Reference::area`]), in fractions of the image (0 inside; the
//!   whole lower bound when nothing is found);
//! * `centre_err` — how far its centre lies outside the renderer's box of centres for that class
//!   and resolution, in fractions of the side (Euclidean; samples with no object are left out).
//!
//! Per set of samples: `detail` — `log10(P_samples / P_renderer)`, the ratio of the power in
//! [`DETAIL_BAND`] (the radially averaged PSD, mean over images and RGB channels, summed over the
//! band's FFT coefficients) of the samples to the renderer's at that resolution: blur comes out
//! negative, spurious high-frequency structure (duplicated edges, the patch grid) positive. The
//! band's power is conserved by any rearrangement of the image's spectrum, so a periodic image
//! (the tiled calibration, a repeating base-RoPE output) that keeps the texture scores near 0
//! here and fails on structure instead, rather than scoring −∞ on the bins it leaves empty.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::shapes::{self, CLASSES, Detection, Image, MIN_AREA_FRACTION, RenderConfig, Sample};

use super::LabError;

/// The detail band in cycles per pixel: from the texture's longest wavelength (16 px) to the
/// patch period (4 px).
pub const DETAIL_BAND: (f64, f64) = (1.0 / 16.0, 1.0 / 4.0);

/// Padding of the renderer's centre box (fractions of the side).
const CENTRE_PAD: f64 = 0.02;

/// What the renderer draws at one resolution: per class the range of area fractions and the box
/// of detected centres, and the mean spectrum — what every row of a table is measured against.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Reference {
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
    /// Per class, the renderer's area-fraction range widened by 10 % each side
    /// ([`shapes::area_range`]'s rule).
    pub area: Vec<(f64, f64)>,
    /// Per class, the renderer's range of detected centres `((row_lo, row_hi), (col_lo, col_hi))`,
    /// padded by 0.02.
    pub centre: Vec<((f64, f64), (f64, f64))>,
    /// Bin centres of the mean spectrum (cycles per pixel).
    pub frequency: Vec<f64>,
    /// The renderer's mean radially averaged power per bin.
    pub power: Vec<f64>,
    /// FFT coefficients per bin at this size (the band power's weights).
    pub count: Vec<usize>,
}

impl Reference {
    /// Renders `per_class` layouts of every class (seeds from `first_seed`) at `height × width`.
    pub fn new(
        render: &RenderConfig,
        height: usize,
        width: usize,
        per_class: usize,
        first_seed: u64,
    ) -> Result<Self, LabError> {
        if per_class == 0 {
            return Err(LabError::Config(
                "the reference needs at least one render per class",
            ));
        }
        let mut area = Vec::with_capacity(CLASSES);
        let mut centre = Vec::with_capacity(CLASSES);
        let mut spectra = Vec::new();
        for class in 0..CLASSES {
            let (mut alo, mut ahi) = (f64::INFINITY, 0.0f64);
            let (mut rlo, mut rhi, mut clo, mut chi) = (1.0f64, 0.0f64, 1.0f64, 0.0f64);
            for k in 0..per_class {
                // A layout and texture of its own for every render (seeds differ across classes).
                let seed = first_seed + (class * per_class + k) as u64;
                let image = render.render(Sample { class, seed }, height, width)?;
                let d = shapes::detect(&image, class, MIN_AREA_FRACTION)?;
                if let (true, Some((r, c))) = (d.count >= 1, d.centre) {
                    alo = alo.min(d.area_fraction);
                    ahi = ahi.max(d.area_fraction);
                    (rlo, rhi, clo, chi) = (rlo.min(r), rhi.max(r), clo.min(c), chi.max(c));
                }
                spectra.push(image_psd(&image)?.power);
            }
            if ahi <= 0.0 {
                return Err(LabError::Config(
                    "the renderer's own images show no object at this size (too small?)",
                ));
            }
            area.push((alo / 1.1, ahi * 1.1));
            centre.push((
                (rlo - CENTRE_PAD, rhi + CENTRE_PAD),
                (clo - CENTRE_PAD, chi + CENTRE_PAD),
            ));
        }
        // The bins and their coefficient counts depend on the size only.
        let empty = Image {
            height,
            width,
            data: vec![0.0; 3 * height * width],
        };
        let bins = image_psd(&empty)?;
        Ok(Reference {
            height,
            width,
            area,
            centre,
            frequency: bins.frequency,
            power: mean_power(spectra.iter()),
            count: bins.count,
        })
    }
}

/// The radially averaged spectrum of an image's three channels (power: mean over channels).
pub fn image_psd(image: &Image) -> Result<shapes::Spectrum, LabError> {
    let plane = image.height * image.width;
    if !image.is_consistent() {
        return Err(LabError::Shapes(shapes::ShapesError::Size {
            height: image.height,
            width: image.width,
        }));
    }
    let planes: Vec<&[f32]> = image.data.chunks_exact(plane).collect();
    Ok(shapes::radial_psd(&planes, image.height, image.width)?)
}

/// The element-wise mean of equally long power vectors (empty for none).
pub fn mean_power<'a>(spectra: impl IntoIterator<Item = &'a Vec<f64>>) -> Vec<f64> {
    let mut sum: Vec<f64> = Vec::new();
    let mut n = 0usize;
    for s in spectra {
        if sum.is_empty() {
            sum = vec![0.0; s.len()];
        }
        for (a, b) in sum.iter_mut().zip(s) {
            *a += b;
        }
        n += 1;
    }
    sum.iter().map(|v| v / n.max(1) as f64).collect()
}

/// The structure metrics of one sample.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SampleScore {
    /// Requested class.
    pub class: usize,
    /// What the detector found.
    pub count: usize,
    /// Area fraction of the largest component.
    pub area_fraction: f64,
    /// 1 for exactly one component, else 0.
    pub one: f64,
    /// Distance of the area fraction outside the renderer's range.
    pub area_err: f64,
    /// Distance of the centre outside the renderer's box (`None`: no object found).
    pub centre_err: Option<f64>,
}

/// Scores one image of `class` against the renderer at its resolution.
pub fn score(image: &Image, class: usize, reference: &Reference) -> Result<SampleScore, LabError> {
    let d: Detection = shapes::detect(image, class, MIN_AREA_FRACTION)?;
    let (lo, hi) = reference
        .area
        .get(class)
        .copied()
        .ok_or(LabError::Shapes(shapes::ShapesError::Class { class }))?;
    let ((rlo, rhi), (clo, chi)) = reference
        .centre
        .get(class)
        .copied()
        .ok_or(LabError::Shapes(shapes::ShapesError::Class { class }))?;
    let outside = |v: f64, lo: f64, hi: f64| (lo - v).max(v - hi).max(0.0);
    Ok(SampleScore {
        class,
        count: d.count,
        area_fraction: d.area_fraction,
        one: if d.count == 1 { 1.0 } else { 0.0 },
        area_err: outside(d.area_fraction, lo, hi),
        centre_err: d
            .centre
            .map(|(r, c)| outside(r, rlo, rhi).hypot(outside(c, clo, chi))),
    })
}

/// The signed detail error of a mean spectrum (`power`, binned at the reference's size) against
/// the renderer's: `log10(Σ c·P / Σ c·P_ref)` over the bins whose frequency lies in `band`, `c`
/// the bins' coefficient counts. NaN when no bin does, when a power is negative or not finite,
/// or when either band holds no power.
pub fn detail_error(power: &[f64], reference: &Reference, band: (f64, f64)) -> f64 {
    if power.len() != reference.power.len() || reference.count.len() != reference.power.len() {
        return f64::NAN;
    }
    let (mut p_sum, mut r_sum, mut bins) = (0.0f64, 0.0f64, 0usize);
    for ((f, c), (p, r)) in reference
        .frequency
        .iter()
        .zip(&reference.count)
        .zip(power.iter().zip(&reference.power))
    {
        if !(band.0..=band.1).contains(f) {
            continue;
        }
        if !(*p >= 0.0 && *r >= 0.0 && p.is_finite() && r.is_finite()) {
            return f64::NAN;
        }
        p_sum += *c as f64 * p;
        r_sum += *c as f64 * r;
        bins += 1;
    }
    if bins == 0 || p_sum <= 0.0 || r_sum <= 0.0 {
        return f64::NAN;
    }
    (p_sum / r_sum).log10()
}

/// A mean with a bootstrap confidence interval. A statistic with no data (e.g. the centre error
/// of a row where no sample shows an object) is NaN, written as `null` in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Estimate {
    /// The statistic on all the data.
    #[serde(with = "nan_as_null")]
    pub mean: f64,
    /// Lower end of the 95 % percentile interval.
    #[serde(with = "nan_as_null")]
    pub lo: f64,
    /// Upper end.
    #[serde(with = "nan_as_null")]
    pub hi: f64,
    /// Values it was computed from.
    pub n: usize,
}

/// JSON has no NaN: a non-finite number is written as `null` and read back as NaN.
mod nan_as_null {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &f64, s: S) -> Result<S::Ok, S::Error> {
        if v.is_finite() {
            s.serialize_f64(*v)
        } else {
            s.serialize_none()
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<f64, D::Error> {
        Ok(Option::<f64>::deserialize(d)?.unwrap_or(f64::NAN))
    }
}

/// The 95 % percentile bootstrap of `statistic` over `n` items (resampling indices with
/// replacement, `resamples` times, from a ChaCha8 stream seeded by `seed`). If the statistic is
/// not finite on some resample, the interval is NaN (no interval) rather than one of the
/// finite resamples alone.
pub fn bootstrap(
    n: usize,
    resamples: usize,
    seed: u64,
    mut statistic: impl FnMut(&[usize]) -> f64,
) -> Estimate {
    let all: Vec<usize> = (0..n).collect();
    let mean = statistic(&all);
    if n == 0 || resamples == 0 {
        return Estimate {
            mean,
            lo: mean,
            hi: mean,
            n,
        };
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut idx = vec![0usize; n];
    let mut stats: Vec<f64> = (0..resamples)
        .map(|_| {
            for i in idx.iter_mut() {
                *i = rng.random_range(0..n);
            }
            statistic(&idx)
        })
        .collect();
    if stats.iter().any(|v| !v.is_finite()) {
        return Estimate {
            mean,
            lo: f64::NAN,
            hi: f64::NAN,
            n,
        };
    }
    stats.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        stats
            .get(((stats.len().saturating_sub(1)) as f64 * q).round() as usize)
            .copied()
            .unwrap_or(f64::NAN)
    };
    Estimate {
        mean,
        lo: pick(0.025),
        hi: pick(0.975),
        n,
    }
}

/// The mean of `values` over `idx` (NaN for none).
pub fn mean_at(values: &[f64], idx: &[usize]) -> f64 {
    let (sum, n) = idx
        .iter()
        .filter_map(|&i| values.get(i))
        .fold((0.0, 0usize), |(s, n), v| (s + v, n + 1));
    if n == 0 { f64::NAN } else { sum / n as f64 }
}

/// The bootstrap stream of each column of [`row_metrics`]: column `c` of a row bootstrapped
/// with `seed` draws its resamples from `seed ^ c`. Every row of a cell uses the same `seed`, so
/// a column's resamples are the same in every row (what [`crate::lab::paired_difference`] pairs).
pub mod stream {
    /// *one*.
    pub const ONE: u64 = 0;
    /// *area err*.
    pub const AREA_ERR: u64 = 1;
    /// *centre err*.
    pub const CENTRE_ERR: u64 = 2;
    /// *detail*.
    pub const DETAIL: u64 = 3;
}

/// The metrics of one row of a table (a method, or a calibration, at one resolution).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RowMetrics {
    /// Fraction of samples with exactly one object of the requested class.
    pub one: Estimate,
    /// Mean distance of the area fraction outside the renderer's range.
    pub area_err: Estimate,
    /// Mean distance of the centre outside the renderer's box (over samples with an object).
    pub centre_err: Estimate,
    /// Signed log10 PSD error in [`DETAIL_BAND`].
    pub detail: Estimate,
}

/// Scores `images` (sample `i` requested class `classes[i]`) against `reference`, with
/// `resamples` bootstrap resamples seeded by `seed`.
pub fn row_metrics(
    images: &[Image],
    classes: &[usize],
    reference: &Reference,
    resamples: usize,
    seed: u64,
) -> Result<(RowMetrics, Vec<SampleScore>), LabError> {
    if images.len() != classes.len() || images.is_empty() {
        return Err(LabError::Config(
            "one class per image, and at least one image",
        ));
    }
    if images
        .iter()
        .any(|im| (im.height, im.width) != (reference.height, reference.width))
        || reference.power.len() != reference.frequency.len()
    {
        return Err(LabError::Config(
            "the images must have the reference's size",
        ));
    }
    let scores = images
        .iter()
        .zip(classes)
        .map(|(im, &c)| score(im, c, reference))
        .collect::<Result<Vec<_>, _>>()?;
    let spectra = images
        .iter()
        .map(|im| image_psd(im).map(|s| s.power))
        .collect::<Result<Vec<_>, _>>()?;
    let n = scores.len();
    let one: Vec<f64> = scores.iter().map(|s| s.one).collect();
    let area: Vec<f64> = scores.iter().map(|s| s.area_err).collect();
    let centre: Vec<f64> = scores.iter().filter_map(|s| s.centre_err).collect();
    let metrics = RowMetrics {
        one: bootstrap(n, resamples, seed ^ stream::ONE, |idx| mean_at(&one, idx)),
        area_err: bootstrap(n, resamples, seed ^ stream::AREA_ERR, |idx| {
            mean_at(&area, idx)
        }),
        centre_err: bootstrap(centre.len(), resamples, seed ^ stream::CENTRE_ERR, |idx| {
            mean_at(&centre, idx)
        }),
        detail: bootstrap(n, resamples, seed ^ stream::DETAIL, |idx| {
            let power = mean_power(idx.iter().filter_map(|&i| spectra.get(i)));
            detail_error(&power, reference, DETAIL_BAND)
        }),
    };
    Ok((metrics, scores))
}
