//! Axial N-D layouts: which axes a head dimension is split into, how their scales are chosen
//! ([`AxisPolicy`]), the attention factor rule, and the per-step frequency computation
//! ([`AxialRope::step`]). Table writers turn the frequencies into cos/sin rows.

use num_traits::Float;

use crate::attention::fit_proportion;
use crate::axis::Axis;
use crate::error::{DypeError, Result, factor, finite, length, mul, positive, produced};
use crate::math::{pow, sin_cos};
use crate::method::{AxisScales, Method};
use crate::time::Sigma;

/// The most axes an [`AxialRope`] holds (FLUX uses 3, FiT 2).
pub const MAX_AXES: usize = 4;

/// One axis of an axial layout. Validated on use by [`AxialRope::new`] (`train_len` finite, `> 0`).
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

/// How per-axis scale factors are chosen from the target extents (docs/math.md).
/// [`AxisScales::area`] is the same under every policy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum AxisPolicy {
    /// Anisotropic: each axis scales by its own `extent/L` (official DyPE FLUX; FiT `decouple`).
    PerAxis,
    /// Isotropic: every scaled axis uses the largest `extent/L` (FiT without `decouple`; ComfyUI default).
    Isotropic,
    /// ComfyUI-DyPE's `vision_yarn`: PI bands per axis, NTK bands at the largest scale.
    VisionYarn,
}

/// The attention factor rule applied to the cos/sin of scaled axes. Validated on use.
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum AttentionFactor {
    /// Whatever the method prescribes per axis (YaRN's mscale; 1 for base/PI/NTK).
    FromMethod,
    /// No factor at all.
    None,
    /// A fixed factor (finite, `> 0`).
    Fixed(f64),
    /// FiT `ntk-aware-pro1`: [`fit_proportion`]`(max extent, L)`.
    FitPro1,
    /// FiT `ntk-aware-pro2`: [`fit_proportion`]`(∏ extents, L^n)`.
    FitPro2,
}

/// Per-axis diagnostics of one step.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct AxisStep {
    /// The axis' scales.
    pub scales: AxisScales,
    /// The factor folded into this axis' cos and sin.
    pub attention_factor: f64,
}

/// Diagnostics of one step: what a sampler can log. Only [`AxialRope::step`] makes one, so every
/// factor in it is finite and positive.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StepInfo {
    t: Option<f64>,
    kappa: Option<f64>,
    n_axes: usize,
    axes: [AxisStep; MAX_AXES],
}

impl StepInfo {
    /// The valid per-axis entries.
    pub fn axes(&self) -> &[AxisStep] {
        self.axes.get(..self.n_axes).unwrap_or(&self.axes)
    }

    /// DyPE time of the step (`None` for a static call).
    pub fn t(&self) -> Option<f64> {
        self.t
    }

    /// κ(t) of the method (`None` if static or without a κ).
    pub fn kappa(&self) -> Option<f64> {
        self.kappa
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
        for a in axes {
            positive("train_len", a.train_len)?;
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

    /// Per-axis scales for the given target extents (positions per axis, e.g. max position + 1):
    /// finite and positive, `extent/L` clamped at 1 except for the area scale.
    pub fn scales(&self, extents: &[f64]) -> Result<[AxisScales; MAX_AXES]> {
        length("extents", self.n_axes, extents.len())?;
        for &e in extents {
            positive("extent", e)?;
        }
        let ratio = |a: &AxisConfig, e: f64| produced("scale", e / a.train_len);
        let mut global = 1.0f64;
        let (mut product, mut n_scaled) = (1.0f64, 0u32);
        for (a, &e) in self.axes().iter().zip(extents) {
            if a.scaled {
                let r = ratio(a, e)?;
                global = global.max(r);
                product *= r;
                n_scaled += 1;
            }
        }
        // (∏ L'/L)^(1/n): for two axes √(H·W)/L, as Lumina writes it.
        let area = positive(
            "area_scale",
            match n_scaled {
                0 | 1 => product,
                2 => crate::math::sqrt(product),
                n => pow(product, 1.0 / f64::from(n)),
            },
        )?;
        let mut out = [AxisScales::uniform(1.0, 1.0); MAX_AXES];
        for (k, (a, &e)) in self.axes().iter().zip(extents).enumerate() {
            let own = if a.scaled { ratio(a, e)?.max(1.0) } else { 1.0 };
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
                area: if a.scaled { area } else { 1.0 },
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
        let rope_factor = self.rope_attention_factor(extents)?;
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
        let mut head_factor = None;
        for (k, a) in self.axes().iter().enumerate() {
            let n = a.axis.pairs();
            let out = freqs
                .get_mut(offset..offset + n)
                .ok_or(DypeError::LengthMismatch {
                    name: "freqs",
                    expected: offset + n,
                    actual: self.pairs(),
                })?;
            let method = if a.scaled { self.method } else { Method::Base };
            let produced = method.frequencies(&a.axis, &scales[k], t, out)?;
            let factor = if !a.scaled {
                1.0
            } else {
                let f = rope_factor.unwrap_or(produced.attention_factor);
                head_factor.get_or_insert(f);
                f
            };
            info.axes[k] = AxisStep {
                scales: scales[k],
                attention_factor: factor,
            };
            offset += n;
        }
        // A factor on the whole head's logits (Lumina) reaches the unscaled axes too.
        if self.method.factor_covers_whole_head()
            && rope_factor.is_none()
            && let Some(f) = head_factor
        {
            for (k, a) in self.axes().iter().enumerate() {
                if !a.scaled {
                    info.axes[k].attention_factor = f;
                }
            }
        }
        Ok(info)
    }

    fn rope_attention_factor(&self, extents: &[f64]) -> Result<Option<f64>> {
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
            AttentionFactor::Fixed(f) => Some(factor("attention_factor", f)?),
            AttentionFactor::FitPro1 => {
                let m = scaled().map(|(_, &e)| e).fold(0.0, f64::max);
                Some(if m > 0.0 { fit_proportion(m, l)? } else { 1.0 })
            }
            AttentionFactor::FitPro2 => {
                let n = scaled().count() as f64;
                let area: f64 = scaled().map(|(_, &e)| e).product();
                Some(if n > 0.0 {
                    fit_proportion(produced("area", area)?, produced("area", pow(l, n))?)?
                } else {
                    1.0
                })
            }
        })
    }
}

/// Pair layout of the head dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PairLayout {
    /// Pairs `(x[2i], x[2i+1])`, each frequency repeated twice (FLUX, FiT, GPT-J).
    #[default]
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
    let n = mul("rows", inv_freq.len(), positions.len())?;
    length("cos", n, cos.len())?;
    length("sin", n, sin.len())?;
    factor("attention_factor", attention_factor)?;
    for &w in inv_freq {
        finite("inv_freq", w)?;
    }
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
    length("info.axes", n_axes, info.axes().len())?;
    for &w in freqs {
        finite("frequency", w)?;
    }
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
    let n = mul("table", tokens, head)?;
    length("cos", n, cos.len())?;
    length("sin", n, sin.len())?;
    for tok in 0..tokens {
        let mut j = 0;
        for (k, a) in rope.axes().iter().enumerate() {
            let p = finite("position", ids[tok * n_axes + k])?;
            let f = factor("attention_factor", info.axes[k].attention_factor)?;
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
        let (u, v) = (a * cos[i] - b * sin[i], b * cos[j] + a * sin[j]);
        if !(u.is_finite() && v.is_finite()) {
            return Err(DypeError::NonFinite {
                name: "rotated",
                value: f64::NAN,
            });
        }
        x[i] = u;
        x[j] = v;
    }
    Ok(())
}

/// Rounds an f64 to the table type; a value that is not finite there (overflow of f32, say) is an
/// error, never a silent infinity.
pub(crate) fn cast<T: Float>(v: f64) -> Result<T> {
    match T::from(v) {
        Some(x) if x.is_finite() => Ok(x),
        _ => Err(DypeError::NonFinite {
            name: "table value",
            value: v,
        }),
    }
}
