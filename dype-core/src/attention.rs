//! Attention factors ("mscale"): numbers that multiply cos **and** sin once, so the attention logits
//! of the rotated dimensions are multiplied by their square. They never touch the frequencies
//! (InvokeAI's early DyPE multiplied the frequencies — spec/landscape.md §1.6.6).

use crate::math::{ln, sqrt};

/// YaRN's attention temperature `τ(s) = 0.1·ln s + 1` for `s > 1`, else 1 (YaRN paper Eq. 22; DyPE
/// Eq. 9; HF `get_mscale`; official DyPE `mscale`; ComfyUI `aggressive_mscale = true`).
pub fn yarn_mscale(scale: f64) -> f64 {
    yarn_mscale_with(scale, 1.0)
}

/// DeepSeek-V2's generalisation `0.1·m·ln s + 1` for `s > 1`, else 1 (HF `get_mscale(scale, mscale)`).
pub fn yarn_mscale_with(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * ln(scale) + 1.0
    }
}

/// DeepSeek attention factor `get_mscale(s, mscale) / get_mscale(s, mscale_all_dim)` (HF yarn with
/// both `mscale` and `mscale_all_dim`).
pub fn deepseek_attention_factor(scale: f64, mscale: f64, mscale_all_dim: f64) -> f64 {
    yarn_mscale_with(scale, mscale) / yarn_mscale_with(scale, mscale_all_dim)
}

/// ComfyUI-DyPE's gentler factor `1 + 0.1·ln s / √s` for `s > 1`, else 1 (`aggressive_mscale =
/// false`; also `vision_yarn`'s, evaluated at its NTK scale).
pub fn sqrt_damped_mscale(scale: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        1.0 + 0.1 * ln(scale) / sqrt(scale)
    }
}

/// FiT's proportional attention `get_proportion(L_test, L_train)`: with `L' = 2·L_test`, 1 if
/// `L'/L_train <= 1`, else `√(ln L' / ln L_train)` (whlzy/FiT `fit/model/rope.py`; used by
/// `ntk-aware-pro1` with `(max(H,W), L)` and `ntk-aware-pro2` with `(H·W, L²)`).
pub fn fit_proportion(l_test: f64, l_train: f64) -> f64 {
    let l_test = 2.0 * l_test;
    if l_test / l_train <= 1.0 {
        1.0
    } else {
        sqrt(ln(l_test) / ln(l_train))
    }
}

/// LongRoPE's attention factor `√(1 + ln f / ln L)` for `f > 1`, else 1 (HF `_compute_longrope_parameters`).
pub fn longrope_attention_factor(factor: f64, original_max_position_embeddings: f64) -> f64 {
    if factor <= 1.0 {
        1.0
    } else {
        sqrt(1.0 + ln(factor) / ln(original_max_position_embeddings))
    }
}

/// Lumina-Next style proportional attention `√(ln L' / ln L)` (ComfyUI-DyPE `proportional_attention`).
pub fn proportional_attention(l_test: f64, l_train: f64) -> f64 {
    if l_test <= l_train {
        1.0
    } else {
        sqrt(ln(l_test) / ln(l_train))
    }
}
