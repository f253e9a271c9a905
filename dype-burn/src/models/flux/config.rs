//! FLUX hyper-parameters and checkpoint layouts.

use serde::Deserialize;

use crate::models::ModelError;
use crate::weights::Checkpoint;

/// The model name in errors.
pub(super) const MODEL: &str = "flux";

/// FLUX hyper-parameters (BFL `FluxParams`).
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FluxConfig {
    /// Packed input/output channels (64 = 16 latent channels × 2×2).
    pub in_channels: usize,
    /// Pooled text vector width (768, CLIP-L).
    pub vec_in_dim: usize,
    /// Text token width (4096, T5-XXL).
    pub context_in_dim: usize,
    /// Hidden size (3072).
    pub hidden_size: usize,
    /// MLP ratio (4).
    pub mlp_ratio: f64,
    /// Attention heads (24).
    pub num_heads: usize,
    /// Double-stream blocks (19).
    pub depth: usize,
    /// Single-stream blocks (38).
    pub depth_single_blocks: usize,
    /// RoPE dims per id axis (16, 56, 56); sums to the head dim.
    pub axes_dim: Vec<usize>,
    /// RoPE base θ (10000).
    pub theta: f64,
    /// Whether the qkv projections have a bias (default true).
    #[serde(default = "yes")]
    pub qkv_bias: bool,
    /// Whether the distilled guidance is embedded (`guidance_in`; default false).
    #[serde(default)]
    pub guidance_embed: bool,
}

fn yes() -> bool {
    true
}

/// Which checkpoint naming the weights use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum FluxLayout {
    /// BFL `flux1-dev.safetensors` names (`img_in`, `double_blocks.{i}.img_attn.qkv`, …).
    Bfl,
    /// diffusers `FluxTransformer2DModel` names (`x_embedder`, `transformer_blocks.{i}.attn.to_q`, …).
    Diffusers,
}

impl FluxLayout {
    /// Detects the layout from a checkpoint's keys.
    pub fn detect(ckpt: &Checkpoint) -> Result<Self, ModelError> {
        let bfl =
            ckpt.contains("img_in.weight") || ckpt.keys().any(|k| k.starts_with("double_blocks."));
        let diff = ckpt.contains("x_embedder.weight")
            || ckpt.keys().any(|k| k.starts_with("transformer_blocks."));
        match (bfl, diff) {
            (true, false) => Ok(FluxLayout::Bfl),
            (false, true) => Ok(FluxLayout::Diffusers),
            (true, true) => Err(ModelError::Layout {
                model: MODEL,
                file: ckpt.path().to_path_buf(),
                reason: "holds both BFL (`img_in`/`double_blocks`) and diffusers \
                         (`x_embedder`/`transformer_blocks`) keys"
                    .into(),
            }),
            (false, false) => Err(ModelError::Layout {
                model: MODEL,
                file: ckpt.path().to_path_buf(),
                reason: "neither a BFL (`img_in.weight`) nor a diffusers (`x_embedder.weight`) \
                         FLUX transformer checkpoint"
                    .into(),
            }),
        }
    }
}

impl FluxConfig {
    /// FLUX.1-dev: 19 double + 38 single blocks, hidden 3072, 24 heads × 128, axes (16, 56, 56),
    /// θ 10⁴, in 64, context 4096, vec 768, guidance embedding.
    pub fn dev() -> Self {
        FluxConfig {
            in_channels: 64,
            vec_in_dim: 768,
            context_in_dim: 4096,
            hidden_size: 3072,
            mlp_ratio: 4.0,
            num_heads: 24,
            depth: 19,
            depth_single_blocks: 38,
            axes_dim: vec![16, 56, 56],
            theta: 10_000.0,
            qkv_bias: true,
            guidance_embed: true,
        }
    }

    /// FLUX.1-Krea-dev: the same architecture as dev.
    pub fn krea_dev() -> Self {
        Self::dev()
    }

    /// From a JSON object with BFL `FluxParams` names (`in_channels`, `vec_in_dim`,
    /// `context_in_dim`, `hidden_size`, `mlp_ratio`, `num_heads`, `depth`, `depth_single_blocks`,
    /// `axes_dim`, `theta`, `qkv_bias`, `guidance_embed`), e.g. a fixture's `config`.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, ModelError> {
        let cfg = FluxConfig::deserialize(v).map_err(|e| ModelError::json(MODEL, e))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head dimension `hidden / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// MLP hidden width `int(hidden · mlp_ratio)`.
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |rule| Err(ModelError::invalid(MODEL, rule));
        if self.hidden_size == 0
            || self.num_heads == 0
            || self.in_channels == 0
            || self.context_in_dim == 0
            || self.vec_in_dim == 0
        {
            return bad("sizes must be non-zero");
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad("hidden_size must be a multiple of num_heads");
        }
        if self.axes_dim.iter().sum::<usize>() != self.head_dim()
            || self.axes_dim.iter().any(|d| d % 2 != 0 || *d == 0)
        {
            return bad("axes_dim must be even, non-zero and sum to the head dim");
        }
        if self.mlp_hidden() == 0 {
            return bad("mlp_ratio gives an empty MLP");
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return bad("theta must be finite and > 1");
        }
        Ok(())
    }
}
