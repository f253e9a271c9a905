//! Attention factors ("mscale"): numbers that multiply cos **and** sin once, so the attention logits
//! of the rotated dimensions are multiplied by their square. They never touch the frequencies
//! (InvokeAI's early DyPE multiplied the frequencies — a known peer bug).
//!
//! Each function validates its inputs and returns a finite, positive factor or a typed error.

use crate::error::{DypeError, Result, factor, finite, positive};
use crate::math::{ln, sqrt};

/// YaRN's attention temperature `τ(s) = 0.1·ln s + 1` for `s > 1`, else 1 (YaRN paper Eq. 22; DyPE
/// Eq. 9; HF `get_mscale`; official DyPE `mscale`; ComfyUI `aggressive_mscale = true`). `s > 0`.
pub fn yarn_mscale(scale: f64) -> Result<f64> {
    yarn_mscale_with(scale, 1.0)
}

/// DeepSeek-V2's generalisation `0.1·m·ln s + 1` for `s > 1`, else 1 (HF `get_mscale(scale, mscale)`).
/// `s > 0`, `m` finite; a result `<= 0` (a large negative `m`) is an error.
pub fn yarn_mscale_with(scale: f64, m: f64) -> Result<f64> {
    positive("scale", scale)?;
    finite("mscale", m)?;
    factor("mscale", raw_yarn_mscale_with(scale, m))
}

pub(crate) fn raw_yarn_mscale_with(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * ln(scale) + 1.0
    }
}

/// DeepSeek attention factor `get_mscale(s, mscale) / get_mscale(s, mscale_all_dim)` (HF yarn with
/// both `mscale` and `mscale_all_dim`).
pub fn deepseek_attention_factor(scale: f64, mscale: f64, mscale_all_dim: f64) -> Result<f64> {
    let num = yarn_mscale_with(scale, mscale)?;
    let den = yarn_mscale_with(scale, mscale_all_dim)?;
    factor("attention_factor", num / den)
}

/// ComfyUI-DyPE's gentler factor `1 + 0.1·ln s / √s` for `s > 1`, else 1 (`aggressive_mscale =
/// false`; also `vision_yarn`'s standalone default, evaluated at its NTK scale). `s > 0`.
pub fn sqrt_damped_mscale(scale: f64) -> Result<f64> {
    positive("scale", scale)?;
    factor(
        "mscale",
        if scale <= 1.0 {
            1.0
        } else {
            1.0 + 0.1 * ln(scale) / sqrt(scale)
        },
    )
}

/// FiT's proportional attention `get_proportion(L_test, L_train)`: with `L' = 2·L_test`, 1 if
/// `L'/L_train <= 1`, else `√(ln L' / ln L_train)` (whlzy/FiT `fit/model/rope.py`; used by
/// `ntk-aware-pro1` with `(max(H,W), L)` and `ntk-aware-pro2` with `(H·W, L²)`). Both positive; a
/// trained length of 1 or less with a longer test length has no defined ratio (the reference
/// divides by `ln 1 = 0`) and is an error.
pub fn fit_proportion(l_test: f64, l_train: f64) -> Result<f64> {
    positive("l_test", l_test)?;
    positive("l_train", l_train)?;
    let l_test = 2.0 * l_test;
    if l_test / l_train <= 1.0 {
        return Ok(1.0);
    }
    log_ratio_sqrt(l_test, l_train)
}

/// LongRoPE's attention factor `√(1 + ln f / ln L₀)` for `f > 1`, else 1 (HF
/// `_compute_longrope_parameters`). `f > 0`; `L₀ > 1` whenever `f > 1` (the reference divides by
/// `ln L₀`).
pub fn longrope_attention_factor(
    factor_: f64,
    original_max_position_embeddings: f64,
) -> Result<f64> {
    positive("factor", factor_)?;
    positive(
        "original_max_position_embeddings",
        original_max_position_embeddings,
    )?;
    if factor_ <= 1.0 {
        return Ok(1.0);
    }
    let l = ln(original_max_position_embeddings);
    if l <= 0.0 {
        return Err(DypeError::OutOfRange {
            name: "original_max_position_embeddings",
            value: original_max_position_embeddings,
            expected: "> 1 (ln L0 is the denominator)",
        });
    }
    factor("attention_factor", sqrt(1.0 + ln(factor_) / l))
}

/// Lumina-Next's proportional attention on the logits, `√(ln N / ln N_base)` for `N` tokens against
/// `N_base` trained tokens (diffusers `LuminaAttnProcessor2_0`: `math.sqrt(math.log(N, N_base))`).
/// Defined for `N > 1`, `N_base > 1` (also below the trained length, where it is < 1). In dype's
/// convention the factor multiplies cos and sin, i.e. the logits by its square: fold in the square
/// root of this ([`crate::Method::Lumina`] does).
pub fn proportional_attention(tokens: f64, base_tokens: f64) -> Result<f64> {
    positive("tokens", tokens)?;
    positive("base_tokens", base_tokens)?;
    if tokens == base_tokens {
        return Ok(1.0);
    }
    log_ratio_sqrt(tokens, base_tokens)
}

/// `√(ln a / ln b)` for `a, b > 1`.
fn log_ratio_sqrt(a: f64, b: f64) -> Result<f64> {
    let (la, lb) = (ln(a), ln(b));
    if lb <= 0.0 {
        return Err(DypeError::OutOfRange {
            name: "l_train",
            value: b,
            expected: "> 1 (its logarithm is the denominator)",
        });
    }
    if la <= 0.0 {
        return Err(DypeError::OutOfRange {
            name: "l_test",
            value: a,
            expected: "> 1 (the square root of its logarithm)",
        });
    }
    factor("attention_factor", sqrt(la / lb))
}
