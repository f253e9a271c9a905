//! One rotary axis: its rotary dimension `d` and base `θ`, the base inverse frequencies
//! `ω_i = θ^(−2i/d)` (Su et al. 2021, RoFormer Eq. 15; DyPE paper Eq. 2), wavelengths, and the
//! quantities every YaRN-like method is built from: the number of rotations `r = L/λ` over the
//! trained extent (DyPE Eq. 7), the correction dimension `d·ln(L/(2πr)) / (2 ln θ)` (YaRN paper
//! Eq. 17, `find_correction_dim` in every reference), and the linear ramps over pair indices.

use core::f64::consts::PI;

use crate::error::{DypeError, Result, positive};
use crate::math::{ceil, floor, ln, pow};

/// A rotary axis: `dim` rotary channels (`dim/2` frequency pairs) with base `theta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    dim: usize,
    theta: f64,
}

impl Axis {
    /// An axis with an even, non-zero rotary dimension and a finite base `θ > 1`.
    pub fn new(dim: usize, theta: f64) -> Result<Self> {
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(DypeError::InvalidDim { dim });
        }
        positive("theta", theta)?;
        if theta <= 1.0 {
            return Err(DypeError::OutOfRange {
                name: "theta",
                value: theta,
                expected: "> 1",
            });
        }
        Ok(Axis { dim, theta })
    }

    /// Rotary dimension `d` (number of channels on this axis).
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Number of frequency pairs, `d/2`.
    pub fn pairs(&self) -> usize {
        self.dim / 2
    }

    /// RoPE base `θ`.
    pub fn theta(&self) -> f64 {
        self.theta
    }

    /// Base inverse frequency of pair `i`: `ω_i = θ^(−2i/d)`. `i` beyond the axis gives the limit `ω → θ^(−1)`.
    pub fn inv_freq(&self, i: usize) -> f64 {
        inv_freq_with_base(self.theta, self.dim, i)
    }

    /// Writes the base inverse frequencies `ω_0 … ω_{d/2−1}` into `out` (length `d/2`).
    pub fn base_frequencies(&self, out: &mut [f64]) -> Result<()> {
        crate::error::length("out", self.pairs(), out.len())?;
        for (i, w) in out.iter_mut().enumerate() {
            *w = self.inv_freq(i);
        }
        Ok(())
    }

    /// Correction dimension: the (fractional) pair index whose wavelength completes `rotations`
    /// turns over `train_len` positions, `d·ln(L/(2π·r)) / (2·ln θ)`. `rotations = 0` gives `+∞`
    /// (every pair turns more than zero times).
    pub fn correction_dim(&self, rotations: f64, train_len: f64) -> f64 {
        if rotations <= 0.0 {
            return f64::INFINITY;
        }
        (self.dim as f64) * ln(train_len / (rotations * 2.0 * PI)) / (2.0 * ln(self.theta))
    }
}

/// `θ^(−2i/d)` for an arbitrary base (NTK-aware methods change the base).
pub fn inv_freq_with_base(base: f64, dim: usize, i: usize) -> f64 {
    1.0 / pow(base, (2 * i) as f64 / dim as f64)
}

/// Wavelength of an inverse frequency, `λ = 2π/ω` (positions per turn).
pub fn wavelength(inv_freq: f64) -> f64 {
    2.0 * PI / inv_freq
}

/// Number of turns a frequency makes over `train_len` positions: `r = L/λ = L·ω/(2π)` (DyPE Eq. 7).
pub fn rotations(inv_freq: f64, train_len: f64) -> f64 {
    train_len * inv_freq / (2.0 * PI)
}

/// NTK-aware base change (bloc97 2023; DyPE Eq. 6): `θ' = θ · s^(d/(d−2))`.
pub fn ntk_base(theta: f64, dim: usize, scale: f64) -> Result<f64> {
    if dim <= 2 {
        return Err(DypeError::DimTooSmallForNtk { dim });
    }
    Ok(theta * pow(scale, dim as f64 / (dim as f64 - 2.0)))
}

/// How the bounds of an index-domain ramp are rounded and clamped. The references differ here, and
/// the differences matter at small thresholds (spec/landscape.md §1.6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RampClamp {
    /// HF transformers / jquesnelle / FiT: `low = floor`, `high = ceil` (when `truncate`), then
    /// `low = max(low, 0)`, `high = min(high, d−1)` (here `d` = rotary dim, as in the references).
    Hf {
        /// Round the bounds outwards (floor/ceil); `false` keeps fractional bounds (gpt-oss).
        truncate: bool,
    },
    /// Official DyPE FLUX and ComfyUI-DyPE: the HF rule, then `low = max(low, 0)`,
    /// `high = min(high, d/2)`. `low` is not bounded above, so for tiny thresholds `low > high`
    /// and the ramp *inverts* (every pair interpolated) — reproduced on purpose.
    Official,
    /// Well-defined everywhere (ours): floor/ceil, both bounds clamped into `[0, d/2]`, and
    /// `high >= low`. As thresholds → 0 both bounds reach `d/2` and every pair keeps its base
    /// frequency, so dynamic methods relax to the native RoPE.
    Safe,
}

/// Rounded and clamped ramp bounds `(low, high)` for thresholds in rotations (`low_rot` is the larger
/// rotation count, mapping to the lower pair index), as [`RampClamp`] describes.
pub fn correction_range(
    axis: &Axis,
    low_rot: f64,
    high_rot: f64,
    train_len: f64,
    clamp: RampClamp,
) -> (f64, f64) {
    let low = axis.correction_dim(low_rot, train_len);
    let high = axis.correction_dim(high_rot, train_len);
    let d = axis.dim() as f64;
    let half = axis.pairs() as f64;
    match clamp {
        RampClamp::Hf { truncate } => {
            let (low, high) = if truncate {
                (floor(low), ceil(high))
            } else {
                (low, high)
            };
            (low.max(0.0), high.min(d - 1.0))
        }
        RampClamp::Official => {
            let (low, high) = (floor(low).max(0.0), ceil(high).min(d - 1.0));
            (low.max(0.0), high.min(half))
        }
        RampClamp::Safe => {
            let low = floor(low).clamp(0.0, half);
            let high = ceil(high).clamp(0.0, half);
            (low, high.max(low))
        }
    }
}

/// Linear ramp over pair index `i` between `low` and `high`, clamped to `[0, 1]`; `low == high`
/// becomes `high + 0.001` (the references' singularity guard). 0 below `low`, 1 above `high`.
pub fn linear_ramp(i: usize, low: f64, high: f64) -> f64 {
    let high = if low == high { high + 0.001 } else { high };
    (((i as f64) - low) / (high - low)).clamp(0.0, 1.0)
}

/// The paper's YaRN ramp `γ(r)` (DyPE Eq. 8, YaRN paper Eq. 18): 0 for `r < α`, 1 for `r > β`,
/// linear in between. For `β <= α` (including the dynamic limit `α = β = 0`) it is the step
/// `r >= α`.
pub fn yarn_ramp(r: f64, alpha: f64, beta: f64) -> f64 {
    if beta <= alpha {
        return if r >= alpha { 1.0 } else { 0.0 };
    }
    ((r - alpha) / (beta - alpha)).clamp(0.0, 1.0)
}
