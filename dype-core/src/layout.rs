//! Axial N-D layouts: which axes a head dimension is split into, how their scales are chosen
//! ([`AxisPolicy`]), the attention factor rule, and the per-step frequency computation
//! ([`AxialRope::step`]). Table writers turn the frequencies into cos/sin rows.

use num_traits::Float;

use crate::attention::{fit_proportion, yarn_mscale};
use crate::axis::Axis;
use crate::error::{DypeError, Result, finite, length, positive};
use crate::math::{pow, sin_cos};
use crate::method::{AxisScales, Method};
use crate::schedule::start_sigma_mscale;
use crate::time::Sigma;

/// The most axes an [`AxialRope`] holds (FLUX uses 3, FiT 2).
pub const MAX_AXES: usize = 4;

/// One axis of an axial layout.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisConfig {
    /// Rotary dim and base.
    pub axis: Axis,
    /// Trained extent `L` in positions (FLUX: 64 tokens per side; FiTv2: 16).
    pub train_len: f64,
    /// Whether extrapolation applies to this axis (FLUX's first axis, the text/time axis, never scales).
    pub scaled: bool,
}

impl AxisConfig {
    /// A scaled axis.
    pub fn scaled(dim: usize, theta: f64, train_len: f64) -> Result<Self> {
        positive("train_len", train_len)?;
        Ok(AxisConfig {
            axis: Axis::new(dim, theta)?,
            train_len,
            scaled: true,
        })
    }

    /// An axis that always keeps its base RoPE.
    pub fn unscaled(dim: usize, theta: f64) -> Result<Self> {
        Ok(AxisConfig {
            axis: Axis::new(dim, theta)?,
            train_len: 1.0,
            scaled: false,
        })
    }
}

/// How per-axis scale factors are chosen from the target extents (spec/landscape.md §1.6.8).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AxisPolicy {
    /// Anisotropic: each axis scales by its own `extent/L` (official DyPE FLUX; FiT `decouple`).
    PerAxis,
    /// Isotropic: every scaled axis uses the largest `extent/L` (FiT without `decouple`; ComfyUI default).
    Isotropic,
    /// ComfyUI-DyPE's `vision_yarn`: PI bands per axis, NTK bands at the largest scale.
    VisionYarn,
}

/// The attention factor rule applied to the cos/sin of scaled axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum AttentionFactor {
    /// Whatever the method prescribes per axis (YaRN's mscale; 1 for base/PI/NTK).
    FromMethod,
    /// No factor at all.
    None,
    /// A fixed factor.
    Fixed(f64),
    /// FiT `ntk-aware-pro1`: [`fit_proportion`]`(max extent, L)`.
    FitPro1,
    /// FiT `ntk-aware-pro2`: [`fit_proportion`]`(∏ extents, L^n)`.
    FitPro2,
    /// ComfyUI-DyPE's time-decaying factor: `0.1·ln s_global + 1` fading to 1 as
    /// `min(t/start_sigma, 1)^λt` (see [`start_sigma_mscale`]).
    StartSigmaDecay {
        /// `dype_start_sigma`.
        start_sigma: f64,
        /// `dype_exponent`.
        lambda_t: f64,
    },
}

/// Per-axis diagnostics of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisStep {
    /// The axis' scales.
    pub scales: AxisScales,
    /// The factor folded into this axis' cos and sin.
    pub attention_factor: f64,
}

/// Diagnostics of one step: what a sampler can log.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    /// DyPE time of the step (`None` for a static call).
    pub t: Option<f64>,
    /// κ(t) of the method (`None` if static).
    pub kappa: Option<f64>,
    /// Number of valid entries in `axes`.
    pub n_axes: usize,
    /// Per-axis diagnostics (`axes[..n_axes]`).
    pub axes: [AxisStep; MAX_AXES],
}

impl StepInfo {
    /// The valid per-axis entries.
    pub fn axes(&self) -> &[AxisStep] {
        &self.axes[..self.n_axes]
    }
}

/// An axial rotary embedding: axes, a method, an axis policy and an attention factor rule.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxialRope {
    axes: [AxisConfig; MAX_AXES],
    n_axes: usize,
    method: Method,
    policy: AxisPolicy,
    attention: AttentionFactor,
}

impl AxialRope {
    /// An axial rope over `axes` (1 to [`MAX_AXES`]) with the method's own attention factor.
    pub fn new(axes: &[AxisConfig], method: Method, policy: AxisPolicy) -> Result<Self> {
        if axes.is_empty() {
            return Err(DypeError::Empty { name: "axes" });
        }
        if axes.len() > MAX_AXES {
            return Err(DypeError::TooManyAxes {
                count: axes.len(),
                max: MAX_AXES,
            });
        }
        let mut arr = [axes[0]; MAX_AXES];
        arr[..axes.len()].copy_from_slice(axes);
        Ok(AxialRope {
            axes: arr,
            n_axes: axes.len(),
            method,
            policy,
            attention: AttentionFactor::FromMethod,
        })
    }

    /// Replaces the attention factor rule.
    pub fn with_attention(mut self, attention: AttentionFactor) -> Self {
        self.attention = attention;
        self
    }

    /// Replaces the method (same axes and policy).
    pub fn with_method(mut self, method: Method) -> Self {
        self.method = method;
        self
    }

    /// The axes.
    pub fn axes(&self) -> &[AxisConfig] {
        &self.axes[..self.n_axes]
    }

    /// The method.
    pub fn method(&self) -> &Method {
        &self.method
    }

    /// The axis policy.
    pub fn policy(&self) -> AxisPolicy {
        self.policy
    }

    /// The attention factor rule.
    pub fn attention(&self) -> AttentionFactor {
        self.attention
    }

    /// Total number of frequency pairs `Σ d_a/2` (length of the frequency vector).
    pub fn pairs(&self) -> usize {
        self.axes().iter().map(|a| a.axis.pairs()).sum()
    }

    /// Head dimension covered by the rotation, `Σ d_a`.
    pub fn head_dim(&self) -> usize {
        2 * self.pairs()
    }

    /// Per-axis scales for the given target extents (positions per axis, e.g. max position + 1).
    pub fn scales(&self, extents: &[f64]) -> Result<[AxisScales; MAX_AXES]> {
        length("extents", self.n_axes, extents.len())?;
        for &e in extents {
            positive("extent", e)?;
        }
        let ratio = |a: &AxisConfig, e: f64| {
            if a.scaled {
                (e / a.train_len).max(1.0)
            } else {
                1.0
            }
        };
        let global = self
            .axes()
            .iter()
            .zip(extents)
            .map(|(a, &e)| ratio(a, e))
            .fold(1.0, f64::max);
        let mut out = [AxisScales::uniform(1.0, 1.0); MAX_AXES];
        for (k, (a, &e)) in self.axes().iter().zip(extents).enumerate() {
            let own = ratio(a, e);
            let (linear, ntk) = if !a.scaled {
                (1.0, 1.0)
            } else {
                match self.policy {
                    AxisPolicy::PerAxis => (own, own),
                    AxisPolicy::Isotropic => (global, global),
                    AxisPolicy::VisionYarn => (own, global),
                }
            };
            out[k] = AxisScales {
                linear,
                ntk,
                global,
                train_len: a.train_len,
            };
        }
        Ok(out)
    }

    /// The frequencies of one step: writes all axes' inverse frequencies into `freqs` (length
    /// [`Self::pairs`], axis after axis) and returns the step's diagnostics. `extents` are the
    /// target extents per axis; `t` is DyPE's time (`None` for static use).
    pub fn step(&self, extents: &[f64], t: Option<Sigma>, freqs: &mut [f64]) -> Result<StepInfo> {
        length("freqs", self.pairs(), freqs.len())?;
        let scales = self.scales(extents)?;
        let rope_factor = self.rope_attention_factor(extents, &scales, t)?;
        let mut info = StepInfo {
            t: t.map(Sigma::get),
            kappa: self.method.kappa(t)?,
            n_axes: self.n_axes,
            axes: [AxisStep {
                scales: AxisScales::uniform(1.0, 1.0),
                attention_factor: 1.0,
            }; MAX_AXES],
        };
        let mut offset = 0;
        for (k, a) in self.axes().iter().enumerate() {
            let n = a.axis.pairs();
            let out = &mut freqs[offset..offset + n];
            let method = if a.scaled { self.method } else { Method::Base };
            let produced = method.frequencies(&a.axis, &scales[k], t, out)?;
            for &w in out.iter() {
                finite("frequency", w)?;
            }
            let factor = if !a.scaled {
                1.0
            } else {
                match rope_factor {
                    Some(f) => f,
                    None => produced.attention_factor,
                }
            };
            info.axes[k] = AxisStep {
                scales: scales[k],
                attention_factor: factor,
            };
            offset += n;
        }
        Ok(info)
    }

    fn rope_attention_factor(
        &self,
        extents: &[f64],
        scales: &[AxisScales; MAX_AXES],
        t: Option<Sigma>,
    ) -> Result<Option<f64>> {
        let l = self
            .axes()
            .iter()
            .filter(|a| a.scaled)
            .map(|a| a.train_len)
            .fold(0.0, f64::max);
        let scaled = || self.axes().iter().zip(extents).filter(|(a, _)| a.scaled);
        Ok(match self.attention {
            AttentionFactor::FromMethod => None,
            AttentionFactor::None => Some(1.0),
            AttentionFactor::Fixed(f) => Some(positive("attention_factor", f)?),
            AttentionFactor::FitPro1 => {
                let m = scaled().map(|(_, &e)| e).fold(0.0, f64::max);
                Some(if m > 0.0 { fit_proportion(m, l) } else { 1.0 })
            }
            AttentionFactor::FitPro2 => {
                let n = scaled().count() as f64;
                let area: f64 = scaled().map(|(_, &e)| e).product();
                Some(if n > 0.0 {
                    fit_proportion(area, pow(l, n))
                } else {
                    1.0
                })
            }
            AttentionFactor::StartSigmaDecay {
                start_sigma,
                lambda_t,
            } => {
                finite("start_sigma", start_sigma)?;
                finite("lambda_t", lambda_t)?;
                let m = yarn_mscale(scales[0].global);
                Some(start_sigma_mscale(
                    m,
                    t.unwrap_or(Sigma::NOISE),
                    start_sigma,
                    lambda_t,
                ))
            }
        })
    }
}

/// Pair layout of the head dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PairLayout {
    /// Pairs `(x[2i], x[2i+1])`, each frequency repeated twice (FLUX, FiT, GPT-J).
    Interleaved,
    /// Pairs `(x[i], x[i + D/2])`, the frequency vector repeated twice (LLaMA / NeoX `rotate_half`).
    HalfSplit,
}

/// Writes cos/sin rows of one axis for explicit (also fractional) positions: `positions.len() ×
/// inv_freq.len()` values each, `cos(p·ω)·factor` and `sin(p·ω)·factor`. Angles are computed in f64
/// and only the results are rounded to `T`.
pub fn write_axis_rows<T: Float>(
    inv_freq: &[f64],
    attention_factor: f64,
    positions: &[f64],
    cos: &mut [T],
    sin: &mut [T],
) -> Result<()> {
    let n = inv_freq.len() * positions.len();
    length("cos", n, cos.len())?;
    length("sin", n, sin.len())?;
    finite("attention_factor", attention_factor)?;
    let half = inv_freq.len();
    for (r, &p) in positions.iter().enumerate() {
        finite("position", p)?;
        for (i, &w) in inv_freq.iter().enumerate() {
            let (s, c) = sin_cos(p * w);
            cos[r * half + i] = cast(c * attention_factor)?;
            sin[r * half + i] = cast(s * attention_factor)?;
        }
    }
    Ok(())
}

/// Writes a full per-token table (`tokens × head_dim` cos and sin) in the given pair layout for
/// explicit positions `ids` (`tokens × n_axes`, row-major) from one step's frequencies and
/// diagnostics. This is the expanded form; prefer factorized rows where the consumer can expand.
pub fn write_token_table<T: Float>(
    rope: &AxialRope,
    freqs: &[f64],
    info: &StepInfo,
    ids: &[f64],
    layout: PairLayout,
    cos: &mut [T],
    sin: &mut [T],
) -> Result<()> {
    let n_axes = rope.axes().len();
    length("freqs", rope.pairs(), freqs.len())?;
    length("info.axes", n_axes, info.n_axes)?;
    if !ids.len().is_multiple_of(n_axes) {
        return Err(DypeError::LengthMismatch {
            name: "ids",
            expected: (ids.len() / n_axes + 1) * n_axes,
            actual: ids.len(),
        });
    }
    let tokens = ids.len() / n_axes;
    let head = rope.head_dim();
    let half = rope.pairs();
    length("cos", tokens * head, cos.len())?;
    length("sin", tokens * head, sin.len())?;
    for tok in 0..tokens {
        let mut j = 0;
        for (k, a) in rope.axes().iter().enumerate() {
            let p = finite("position", ids[tok * n_axes + k])?;
            let f = info.axes[k].attention_factor;
            for _ in 0..a.axis.pairs() {
                let (s, c) = sin_cos(p * freqs[j]);
                let (c, s) = (cast::<T>(c * f)?, cast::<T>(s * f)?);
                let row = tok * head;
                match layout {
                    PairLayout::Interleaved => {
                        cos[row + 2 * j] = c;
                        cos[row + 2 * j + 1] = c;
                        sin[row + 2 * j] = s;
                        sin[row + 2 * j + 1] = s;
                    }
                    PairLayout::HalfSplit => {
                        cos[row + j] = c;
                        cos[row + j + half] = c;
                        sin[row + j] = s;
                        sin[row + j + half] = s;
                    }
                }
                j += 1;
            }
        }
    }
    Ok(())
}

/// Rotates one head vector `x` (length `head_dim`) in place with expanded cos/sin of the same length
/// in the given layout: `x' = x·cos + rotate(x)·sin`, where `rotate` maps a pair `(a, b)` to `(−b, a)`.
pub fn rotate<T: Float>(x: &mut [T], cos: &[T], sin: &[T], layout: PairLayout) -> Result<()> {
    let n = x.len();
    if !n.is_multiple_of(2) || n == 0 {
        return Err(DypeError::InvalidDim { dim: n });
    }
    length("cos", n, cos.len())?;
    length("sin", n, sin.len())?;
    let half = n / 2;
    for p in 0..half {
        let (i, j) = match layout {
            PairLayout::Interleaved => (2 * p, 2 * p + 1),
            PairLayout::HalfSplit => (p, p + half),
        };
        let (a, b) = (x[i], x[j]);
        x[i] = a * cos[i] - b * sin[i];
        x[j] = b * cos[j] + a * sin[j];
    }
    Ok(())
}

pub(crate) fn cast<T: Float>(v: f64) -> Result<T> {
    T::from(v).ok_or(DypeError::NonFinite {
        name: "value",
        value: v,
    })
}
