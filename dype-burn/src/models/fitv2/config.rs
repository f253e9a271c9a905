//! FiTv2 hyper-parameters.

use serde::{Deserialize, Serialize};

use super::MODEL;
use crate::models::ModelError;

/// FiTv2 hyper-parameters (`configs/fitv2/*.yaml` of whlzy/FiT).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct FitConfig {
    /// Latent patch size (2).
    pub patch_size: usize,
    /// Latent channels (4 for the SD VAE).
    pub in_channels: usize,
    /// Hidden size D.
    pub hidden_size: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP ratio (SwiGLU hidden = `(int(D·ratio)·2)//3`).
    pub mlp_ratio: f64,
    /// Number of classes (the label table has one more row: the null class for CFG).
    pub num_classes: usize,
    /// adaLN-LoRA rank.
    pub adaln_lora_dim: usize,
    /// Whether the model also predicts a variance (doubles the output channels).
    pub learn_sigma: bool,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// Trained tokens per side (`ori_max_pe_len`: 16 for 256² training).
    pub ori_max_pe_len: usize,
}

impl Default for FitConfig {
    /// FiTv2-XL/2.
    fn default() -> Self {
        FitConfig::xl_2()
    }
}

impl FitConfig {
    /// FiTv2-XL/2 (671M parameters): D 1152, depth 36, 16 heads, adaLN-LoRA 288, trained at 256².
    pub fn xl_2() -> Self {
        FitConfig {
            patch_size: 2,
            in_channels: 4,
            hidden_size: 1152,
            depth: 36,
            num_heads: 16,
            mlp_ratio: 4.0,
            num_classes: 1000,
            adaln_lora_dim: 288,
            learn_sigma: false,
            rope_theta: 10_000.0,
            ori_max_pe_len: 16,
        }
    }

    /// From the reference's config object (the `config` of a FiT yaml or of `fitv2_tiny.json`):
    /// `patch_size`, `in_channels`, `hidden_size`, `depth`, `num_heads`, `mlp_ratio`,
    /// `num_classes`, `adaln_lora_dim`, `learn_sigma`, `rope_theta`, `ori_max_pe_len` (missing
    /// optional fields take FiTv2-XL/2's values).
    pub fn from_json(c: &serde_json::Value) -> Result<Self, ModelError> {
        let cfg = FitConfig::deserialize(c).map_err(|e| ModelError::json(MODEL, e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head dimension `D / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// Values per token: `in_channels · patch²`.
    pub fn token_dim(&self) -> usize {
        self.in_channels * self.patch_size * self.patch_size
    }

    /// Output values per token.
    pub fn out_token_dim(&self) -> usize {
        self.token_dim() * if self.learn_sigma { 2 } else { 1 }
    }

    /// SwiGLU hidden size `(int(D·ratio)·2)//3` (timm's SwiGLU with FiT's 2/3 rule).
    pub fn mlp_hidden(&self) -> usize {
        ((self.hidden_size as f64 * self.mlp_ratio) as usize * 2) / 3
    }

    /// The null class id used for classifier-free guidance (`num_classes`).
    pub fn null_class(&self) -> usize {
        self.num_classes
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |rule| Err(ModelError::invalid(MODEL, rule));
        if self.hidden_size == 0
            || self.num_heads == 0
            || self.depth == 0
            || self.patch_size == 0
            || self.in_channels == 0
        {
            return bad("sizes must be non-zero");
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad("hidden_size must be a multiple of num_heads");
        }
        if !self.head_dim().is_multiple_of(4) {
            return bad("head_dim must be a multiple of 4 (two rotary axes of whole pairs)");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad("rope_theta must be finite and > 1");
        }
        Ok(())
    }
}
