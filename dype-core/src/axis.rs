//! One rotary axis: its rotary dimension `d` and base `θ`, the base inverse frequencies
//! `ω_i = θ^(−2i/d)` (Su et al. 2021, RoFormer Eq. 15; DyPE paper Eq. 2), wavelengths, and the
//! quantities every YaRN-like method is built from: the number of rotations `r = L/λ` over the
//! trained extent (DyPE Eq. 7), the correction dimension `d·ln(L/(2πr)) / (2 ln θ)` (YaRN paper
//! Eq. 17, `find_correction_dim` in every reference), and the linear ramps over pair indices.
//!
//! Every public function validates its inputs and checks its output: a finite number or a typed
//! [`DypeError`].

use core::f64::consts::PI;

use crate::MAX_DIM;
use crate::error::{DypeError, Result, at_most, positive, produced};
use crate::math::{ceil, floor, ln, pow};

/// A rotary axis: `dim` rotary channels (`dim/2` frequency pairs) with base `theta`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Axis {
    dim: usize,
    theta: f64,
}

impl Axis {
    /// An axis with an even, non-zero rotary dimension of at most [`MAX_DIM`] and a finite base
    /// `θ > 1`.
    pub fn new(dim: usize, theta: f64) -> Result<Self> {
        if dim == 0 || !dim.is_multiple_of(2) {
            return Err(DypeError::InvalidDim { dim });
        }
        at_most("dim", dim, MAX_DIM)?;
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

    /// Base inverse frequency of pair `i`: `ω_i = θ^(−2i/d)`, in `(0, 1]` for `i < d/2` (total: any
    /// `i` gives a finite value in `[0, 1]`).
    pub fn inv_freq(&self, i: usize) -> f64 {
        raw_inv_freq(self.theta, self.dim, i)
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
    /// turns over `train_len` positions, `d·ln(L/(2π·r)) / (2·ln θ)`. Both arguments must be finite
    /// and positive; a result that overflows is [`DypeError::NonFinite`].
    pub fn correction_dim(&self, rotations: f64, train_len: f64) -> Result<f64> {
        positive("rotations", rotations)?;
        positive("train_len", train_len)?;
        produced(
            "correction_dim",
            self.raw_correction_dim(rotations, train_len),
        )
    }

    /// [`Self::correction_dim`] on validated inputs, with the limit `+∞` at `rotations = 0` (every
    /// pair turns more than zero times) and whatever overflow gives.
    pub(crate) fn raw_correction_dim(&self, rotations: f64, train_len: f64) -> f64 {
        if rotations <= 0.0 {
            return f64::INFINITY;
        }
        (self.dim as f64) * ln(train_len / (rotations * 2.0 * PI)) / (2.0 * ln(self.theta))
    }
}

/// `θ^(−2i/d)` without validation (the exponent is formed in f64, so no `usize` overflow).
pub(crate) fn raw_inv_freq(base: f64, dim: usize, i: usize) -> f64 {
    1.0 / pow(base, 2.0 * (i as f64) / dim as f64)
}

/// `θ^(−2i/d)` for an arbitrary base (NTK-aware methods change the base): `base > 0` finite,
/// `dim > 0`; the result is finite and `>= 0`.
pub fn inv_freq_with_base(base: f64, dim: usize, i: usize) -> Result<f64> {
    positive("base", base)?;
    if dim == 0 {
        return Err(DypeError::InvalidDim { dim });
    }
    produced("inv_freq", raw_inv_freq(base, dim, i))
}

/// Wavelength of an inverse frequency, `λ = 2π/ω` (positions per turn); `ω > 0`.
pub fn wavelength(inv_freq: f64) -> Result<f64> {
    positive("inv_freq", inv_freq)?;
    produced("wavelength", 2.0 * PI / inv_freq)
}

/// Number of turns a frequency makes over `train_len` positions: `r = L/λ = L·ω/(2π)` (DyPE Eq. 7).
pub fn rotations(inv_freq: f64, train_len: f64) -> Result<f64> {
    crate::error::non_negative("inv_freq", inv_freq)?;
    positive("train_len", train_len)?;
    produced("rotations", raw_rotations(inv_freq, train_len))
}

pub(crate) fn raw_rotations(inv_freq: f64, train_len: f64) -> f64 {
    train_len * inv_freq / (2.0 * PI)
}

/// NTK-aware base change (bloc97 2023; DyPE Eq. 6): `θ' = θ · s^(d/(d−2))`, for `θ > 0`, `s > 0`,
/// `d > 2`; an overflowing result is [`DypeError::NonFinite`].
pub fn ntk_base(theta: f64, dim: usize, scale: f64) -> Result<f64> {
    if dim <= 2 {
        return Err(DypeError::DimTooSmallForNtk { dim });
    }
    positive("theta", theta)?;
    positive("scale", scale)?;
    let base = theta * pow(scale, dim as f64 / (dim as f64 - 2.0));
    positive("ntk_base", base)
}

/// How the bounds of an index-domain ramp are rounded and clamped. The references differ here, and
/// the differences matter at small thresholds; see docs/math.md.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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
/// rotation count, mapping to the lower pair index), as [`RampClamp`] describes. Thresholds must be
/// finite and positive; bounds that overflow are [`DypeError::NonFinite`].
pub fn correction_range(
    axis: &Axis,
    low_rot: f64,
    high_rot: f64,
    train_len: f64,
    clamp: RampClamp,
) -> Result<(f64, f64)> {
    positive("low_rot", low_rot)?;
    positive("high_rot", high_rot)?;
    positive("train_len", train_len)?;
    let (low, high) = raw_correction_range(axis, low_rot, high_rot, train_len, clamp);
    Ok((produced("low", low)?, produced("high", high)?))
}

/// [`correction_range`] on validated inputs. A threshold of 0 (the DyPE limit κ → 0) gives a bound
/// of `+∞` before clamping; [`linear_ramp`] treats `low = +∞` as "every pair below the ramp".
pub(crate) fn raw_correction_range(
    axis: &Axis,
    low_rot: f64,
    high_rot: f64,
    train_len: f64,
    clamp: RampClamp,
) -> (f64, f64) {
    let low = axis.raw_correction_dim(low_rot, train_len);
    let high = axis.raw_correction_dim(high_rot, train_len);
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
/// Total: a `low` of `+∞` (thresholds at their κ → 0 limit) or a NaN bound gives 0 — every pair
/// keeps the band's high-frequency side.
pub fn linear_ramp(i: usize, low: f64, high: f64) -> f64 {
    if low.is_nan() || high.is_nan() || low == f64::INFINITY {
        return 0.0;
    }
    let high = if low == high { high + 0.001 } else { high };
    let r = ((i as f64) - low) / (high - low);
    if r.is_nan() { 0.0 } else { r.clamp(0.0, 1.0) }
}

/// The paper's YaRN ramp `γ(r)` (DyPE Eq. 8, YaRN paper Eq. 18): 0 for `r < α`, 1 for `r > β`,
/// linear in between. For `β <= α` (including the dynamic limit `α = β = 0`) it is the step
/// `r >= α`. Total: NaN inputs give 1 (keep the base frequency).
pub fn yarn_ramp(r: f64, alpha: f64, beta: f64) -> f64 {
    if r.is_nan() || alpha.is_nan() || beta.is_nan() {
        return 1.0;
    }
    if beta <= alpha {
        return if r >= alpha { 1.0 } else { 0.0 };
    }
    let g = (r - alpha) / (beta - alpha);
    if g.is_nan() { 1.0 } else { g.clamp(0.0, 1.0) }
}
