//! Radially averaged power spectra: the renderer's reference spectrum at any resolution, and the
//! lab's detail metric and spectral progression (any `[planes, height, width]` data).

use rustfft::FftPlanner;
use rustfft::num_complex::Complex;

use super::ShapesError;

/// A radially averaged power spectrum.
#[derive(Debug, Clone, PartialEq)]
pub struct Spectrum {
    /// Bin centres in cycles per pixel: bin `k` (1 ≤ k ≤ m/2, `m` the shorter side) holds the
    /// radial frequencies in `[k − ½, k + ½) / m`.
    pub frequency: Vec<f64>,
    /// Mean power per bin (`|FFT|² / (H·W)` of the mean-free plane, averaged over the bin's
    /// frequencies and over the planes).
    pub power: Vec<f64>,
    /// FFT coefficients per bin (per plane): `Σ count·power` over a band is the band's power
    /// (Parseval), whatever the binning.
    pub count: Vec<usize>,
}

/// The mean radially averaged power spectrum of `planes` (each `height × width`, row-major; e.g.
/// the channels of several images): DC is removed per plane.
pub fn radial_psd(planes: &[&[f32]], height: usize, width: usize) -> Result<Spectrum, ShapesError> {
    let n = height
        .checked_mul(width)
        .ok_or(ShapesError::Size { height, width })?;
    if height < 2 || width < 2 || planes.is_empty() || planes.iter().any(|p| p.len() != n) {
        return Err(ShapesError::Size { height, width });
    }
    let m = height.min(width);
    let bins = m / 2;
    let mut planner = FftPlanner::<f64>::new();
    let (row_fft, col_fft) = (
        planner.plan_fft_forward(width),
        planner.plan_fft_forward(height),
    );
    let mut sums = vec![0.0f64; bins + 1];
    let mut counts = vec![0usize; bins + 1];
    let mut buf = vec![Complex::new(0.0, 0.0); n];
    let mut column = vec![Complex::new(0.0, 0.0); height];
    for plane in planes {
        let mean = plane.iter().map(|&v| v as f64).sum::<f64>() / n as f64;
        for (b, &v) in buf.iter_mut().zip(plane.iter()) {
            *b = Complex::new(v as f64 - mean, 0.0);
        }
        for row in buf.chunks_exact_mut(width) {
            row_fft.process(row);
        }
        for col in 0..width {
            for (r, c) in column.iter_mut().enumerate() {
                *c = buf[r * width + col];
            }
            col_fft.process(&mut column);
            for (r, c) in column.iter().enumerate() {
                buf[r * width + col] = *c;
            }
        }
        for ky in 0..height {
            let fy = signed(ky, height) as f64 / height as f64;
            for kx in 0..width {
                let fx = signed(kx, width) as f64 / width as f64;
                let k = ((fx * fx + fy * fy).sqrt() * m as f64).round() as usize;
                if (1..=bins).contains(&k) {
                    sums[k] += buf[ky * width + kx].norm_sqr() / n as f64;
                    counts[k] += 1;
                }
            }
        }
    }
    let per_plane = |k: usize| counts[k] / planes.len();
    Ok(Spectrum {
        frequency: (1..=bins).map(|k| k as f64 / m as f64).collect(),
        power: (1..=bins)
            .map(|k| sums[k] / counts[k].max(1) as f64)
            .collect(),
        count: (1..=bins).map(per_plane).collect(),
    })
}

/// FFT bin `k` of `n` as a signed frequency index in `[−n/2, n/2)`.
fn signed(k: usize, n: usize) -> i64 {
    if k < n.div_ceil(2) {
        k as i64
    } else {
        k as i64 - n as i64
    }
}
