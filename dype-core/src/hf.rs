//! HF transformers' RoPE types (`ROPE_INIT_FUNCTIONS` of `modeling_rope_utils`): default, linear,
//! dynamic, yarn, llama3 and longrope, each returning `(inv_freq, attention_factor)` for a 1-D
//! rotary dimension. These are LLM conventions, kept here so one library covers every reference.

use core::f64::consts::PI;

use crate::attention::longrope_attention_factor;
use crate::axis::Axis;
use crate::error::{DypeError, Result, factor, length, positive, produced};
use crate::method::{AxisScales, Method, Mscale, ScaleSource, YarnLlm};

/// One HF rope type with its parameters (`rope_scaling`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum HfRope<'a> {
    /// `default`.
    Default,
    /// `linear`: `ω / factor`.
    Linear {
        /// `factor`.
        factor: f64,
    },
    /// `dynamic` NTK: base `θ·(factor·L/L₀ − (factor − 1))^(d/(d−2))` with `L = max(seq_len, L₀)`,
    /// computed as `1 + factor·(L − L₀)/L₀` so that `L = L₀` is exactly scale 1 (the base).
    Dynamic {
        /// `factor`.
        factor: f64,
        /// `max_position_embeddings` (L₀).
        max_position_embeddings: f64,
        /// Current sequence length (`None` = at init, `L = L₀`).
        seq_len: Option<f64>,
    },
    /// `yarn`.
    Yarn {
        /// `factor`.
        factor: f64,
        /// `original_max_position_embeddings` (or `max_position_embeddings` when absent).
        original_max_position_embeddings: f64,
        /// `beta_fast` (default 32).
        beta_fast: Option<f64>,
        /// `beta_slow` (default 1).
        beta_slow: Option<f64>,
        /// `truncate` (default true).
        truncate: Option<bool>,
        /// `attention_factor` (overrides the mscale rules).
        attention_factor: Option<f64>,
        /// `mscale` (DeepSeek).
        mscale: Option<f64>,
        /// `mscale_all_dim` (DeepSeek).
        mscale_all_dim: Option<f64>,
    },
    /// `llama3`.
    Llama3 {
        /// `factor`.
        factor: f64,
        /// `low_freq_factor`.
        low_freq_factor: f64,
        /// `high_freq_factor`.
        high_freq_factor: f64,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: f64,
    },
    /// `longrope`.
    LongRope {
        /// `short_factor`, one per pair.
        short_factor: &'a [f64],
        /// `long_factor`, one per pair.
        long_factor: &'a [f64],
        /// `rope_parameters["factor"]`; when absent HF uses `max_position_embeddings /
        /// original_max_position_embeddings` for the attention factor.
        factor: Option<f64>,
        /// `max_position_embeddings`.
        max_position_embeddings: f64,
        /// `original_max_position_embeddings`.
        original_max_position_embeddings: f64,
        /// `attention_factor` override.
        attention_factor: Option<f64>,
        /// Current sequence length (`long_factor` is used when it exceeds the original length).
        seq_len: Option<f64>,
    },
}

impl HfRope<'_> {
    /// Writes `inv_freq` (length `dim/2`) for rotary dim `dim` and base `theta`; returns the attention
    /// factor HF multiplies into cos/sin.
    pub fn inv_freq(&self, dim: usize, theta: f64, out: &mut [f64]) -> Result<f64> {
        let axis = Axis::new(dim, theta)?;
        length("out", axis.pairs(), out.len())?;
        match *self {
            HfRope::Default => {
                axis.base_frequencies(out)?;
                Ok(1.0)
            }
            HfRope::Linear { factor } => {
                positive("factor", factor)?;
                for (i, w) in out.iter_mut().enumerate() {
                    *w = produced("inv_freq", axis.inv_freq(i) / factor)?;
                }
                Ok(1.0)
            }
            HfRope::Dynamic {
                factor,
                max_position_embeddings,
                seq_len,
            } => {
                positive("factor", factor)?;
                positive("max_position_embeddings", max_position_embeddings)?;
                let l = match seq_len {
                    Some(s) if positive("seq_len", s)? > max_position_embeddings => s,
                    _ => max_position_embeddings,
                };
                // HF: factor·L/L₀ − (factor − 1); the same, exact at L = L₀.
                let s = produced(
                    "scale",
                    1.0 + factor * ((l - max_position_embeddings) / max_position_embeddings),
                )?;
                Method::Ntk { dynamic: None }.frequencies(
                    &axis,
                    &AxisScales::uniform(s, max_position_embeddings),
                    None,
                    out,
                )?;
                Ok(1.0)
            }
            HfRope::Yarn {
                factor,
                original_max_position_embeddings,
                beta_fast,
                beta_slow,
                truncate,
                attention_factor,
                mscale,
                mscale_all_dim,
            } => {
                positive("factor", factor)?;
                positive(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                )?;
                let rule = match (attention_factor, mscale, mscale_all_dim) {
                    (Some(f), _, _) => Mscale::Fixed(f),
                    (None, Some(m), Some(a)) if m != 0.0 && a != 0.0 => Mscale::DeepSeek {
                        mscale: m,
                        mscale_all_dim: a,
                    },
                    _ => Mscale::Yarn(ScaleSource::Linear),
                };
                let y = YarnLlm {
                    beta_fast: beta_fast.filter(|b| *b != 0.0).unwrap_or(32.0),
                    beta_slow: beta_slow.filter(|b| *b != 0.0).unwrap_or(1.0),
                    truncate: truncate.unwrap_or(true),
                    mscale: rule,
                };
                // HF applies `factor` even when it is below 1 (then it extrapolates); we require >= 1.
                let out_ = Method::YarnLlm(y).frequencies(
                    &axis,
                    &AxisScales::uniform(factor, original_max_position_embeddings),
                    None,
                    out,
                )?;
                Ok(out_.attention_factor)
            }
            HfRope::Llama3 {
                factor,
                low_freq_factor,
                high_freq_factor,
                original_max_position_embeddings,
            } => {
                positive("factor", factor)?;
                positive("low_freq_factor", low_freq_factor)?;
                positive("high_freq_factor", high_freq_factor)?;
                positive(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                )?;
                if high_freq_factor <= low_freq_factor {
                    return Err(DypeError::InvalidConfig {
                        reason: "llama3 needs high_freq_factor > low_freq_factor",
                    });
                }
                for (i, w) in out.iter_mut().enumerate() {
                    *w = llama3_inv_freq(
                        axis.inv_freq(i),
                        factor,
                        low_freq_factor,
                        high_freq_factor,
                        original_max_position_embeddings,
                    )?;
                }
                Ok(1.0)
            }
            HfRope::LongRope {
                short_factor,
                long_factor,
                factor: given_factor,
                max_position_embeddings,
                original_max_position_embeddings,
                attention_factor,
                seq_len,
            } => {
                positive("max_position_embeddings", max_position_embeddings)?;
                positive(
                    "original_max_position_embeddings",
                    original_max_position_embeddings,
                )?;
                length("short_factor", axis.pairs(), short_factor.len())?;
                length("long_factor", axis.pairs(), long_factor.len())?;
                let ext = match seq_len {
                    Some(s) if s > original_max_position_embeddings => long_factor,
                    _ => short_factor,
                };
                for (i, (w, &e)) in out.iter_mut().zip(ext).enumerate() {
                    *w = produced("inv_freq", axis.inv_freq(i) / positive("ext_factor", e)?)?;
                }
                let factor_ = match given_factor {
                    Some(f) => positive("factor", f)?,
                    None => produced(
                        "factor",
                        max_position_embeddings / original_max_position_embeddings,
                    )?,
                };
                match attention_factor {
                    Some(f) => factor("attention_factor", f),
                    None => longrope_attention_factor(factor_, original_max_position_embeddings),
                }
            }
        }
    }
}

/// Llama 3.1's wavelength three-band rule for one inverse frequency (HF `_compute_llama3_parameters`):
/// wavelengths longer than `L₀/low` are divided by `factor`, shorter than `L₀/high` kept, and the
/// middle band smoothly interpolated. All arguments finite and positive, `high > low`.
pub fn llama3_inv_freq(
    inv_freq: f64,
    factor: f64,
    low_freq_factor: f64,
    high_freq_factor: f64,
    original_max: f64,
) -> Result<f64> {
    positive("inv_freq", inv_freq)?;
    positive("factor", factor)?;
    positive("low_freq_factor", low_freq_factor)?;
    positive("high_freq_factor", high_freq_factor)?;
    positive("original_max_position_embeddings", original_max)?;
    if high_freq_factor <= low_freq_factor {
        return Err(DypeError::InvalidConfig {
            reason: "llama3 needs high_freq_factor > low_freq_factor",
        });
    }
    let low_wavelen = original_max / low_freq_factor;
    let high_wavelen = original_max / high_freq_factor;
    let wavelen = 2.0 * PI / inv_freq;
    let w = if wavelen > low_wavelen {
        inv_freq / factor
    } else if wavelen < high_wavelen {
        inv_freq
    } else {
        let smooth =
            (original_max / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor);
        (1.0 - smooth) * inv_freq / factor + smooth * inv_freq
    };
    produced("inv_freq", w)
}
