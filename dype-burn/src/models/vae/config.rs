//! The decoder configuration ([`VaeConfig`]), named after the diffusers `AutoencoderKL` fields.

use serde::Deserialize;

use super::MODEL;
use crate::models::ModelError;

/// The fields of a diffusers `AutoencoderKL` `config.json` the decoder reads; absent or `null`
/// ones take diffusers' defaults.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct VaeJson {
    block_out_channels: Option<Vec<usize>>,
    layers_per_block: Option<usize>,
    latent_channels: Option<usize>,
    out_channels: Option<usize>,
    norm_num_groups: Option<usize>,
    scaling_factor: Option<f64>,
    shift_factor: Option<f64>,
    use_post_quant_conv: Option<bool>,
    mid_block_add_attention: Option<bool>,
    up_block_types: Option<Vec<String>>,
}

/// Decoder configuration, named after the diffusers `AutoencoderKL` config fields.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    /// Channels per resolution level, encoder order (`[128, 256, 512, 512]` for SD and FLUX).
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level; decoder levels have one more.
    pub layers_per_block: usize,
    /// Latent channels (4 for SD, 16 for FLUX).
    pub latent_channels: usize,
    /// Image channels (3).
    pub out_channels: usize,
    /// GroupNorm groups (32).
    pub norm_num_groups: usize,
    /// Latent scale: `z = latent / scaling_factor + shift_factor`.
    pub scaling_factor: f64,
    /// Latent shift (0 when the config has none).
    pub shift_factor: f64,
    /// Whether a 1×1 `post_quant_conv` precedes the decoder.
    pub use_post_quant_conv: bool,
    /// Whether the mid block has its attention layer (diffusers default: true).
    pub mid_block_add_attention: bool,
}

impl VaeConfig {
    /// `stabilityai/sd-vae-ft-ema` (also `sd-vae-ft-mse`): 4 latent channels, scaling 0.18215,
    /// `post_quant_conv`.
    pub fn sd_vae_ft_ema() -> Self {
        VaeConfig {
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            out_channels: 3,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            shift_factor: 0.0,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }

    /// FLUX.1 VAE: 16 latent channels, scaling 0.3611, shift 0.1159, no `post_quant_conv`.
    pub fn flux() -> Self {
        VaeConfig {
            latent_channels: 16,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
            use_post_quant_conv: false,
            ..Self::sd_vae_ft_ema()
        }
    }

    /// Reads a diffusers `AutoencoderKL` `config.json` object; absent fields take diffusers'
    /// defaults (`block_out_channels` `[64]`, `layers_per_block` 1, `latent_channels` 4,
    /// `norm_num_groups` 32, `scaling_factor` 0.18215, `shift_factor` none,
    /// `use_post_quant_conv` true). `up_block_types`, when present, must all be
    /// `UpDecoderBlock2D`.
    pub fn from_diffusers_json(v: &serde_json::Value) -> Result<Self, ModelError> {
        let j = VaeJson::deserialize(v).map_err(|e| ModelError::json(MODEL, e))?;
        let block_out_channels = j.block_out_channels.unwrap_or_else(|| vec![64]);
        if let Some(types) = &j.up_block_types {
            if types.len() != block_out_channels.len() {
                return Err(ModelError::invalid(
                    MODEL,
                    "up_block_types and block_out_channels differ in length",
                ));
            }
            if let Some(t) = types.iter().find(|t| *t != "UpDecoderBlock2D") {
                return Err(ModelError::unsupported(
                    MODEL,
                    "up_block_types",
                    t.clone(),
                    "UpDecoderBlock2D only",
                ));
            }
        }
        let cfg = VaeConfig {
            block_out_channels,
            layers_per_block: j.layers_per_block.unwrap_or(1),
            latent_channels: j.latent_channels.unwrap_or(4),
            out_channels: j.out_channels.unwrap_or(3),
            norm_num_groups: j.norm_num_groups.unwrap_or(32),
            scaling_factor: j.scaling_factor.unwrap_or(0.18215),
            shift_factor: j.shift_factor.unwrap_or(0.0),
            use_post_quant_conv: j.use_post_quant_conv.unwrap_or(true),
            mid_block_add_attention: j.mid_block_add_attention.unwrap_or(true),
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks the configuration for consistency.
    pub fn check(&self) -> Result<(), ModelError> {
        let bad = |rule| Err(ModelError::invalid(MODEL, rule));
        if self.block_out_channels.is_empty() {
            return bad("block_out_channels is empty");
        }
        if self.norm_num_groups == 0 {
            return bad("norm_num_groups is 0");
        }
        if self
            .block_out_channels
            .iter()
            .any(|&c| c == 0 || c % self.norm_num_groups != 0)
        {
            return bad("block_out_channels must be positive multiples of norm_num_groups");
        }
        if self.latent_channels == 0 || self.out_channels == 0 {
            return bad("latent_channels and out_channels must be positive");
        }
        let scale_ok = self.scaling_factor.is_finite() && self.scaling_factor != 0.0;
        if !scale_ok || !self.shift_factor.is_finite() {
            return bad("scaling_factor must be finite and non-zero, shift_factor finite");
        }
        if self.block_out_channels.len() > 16 {
            return bad("more than 16 levels");
        }
        Ok(())
    }

    /// Image pixels per latent pixel: `2^(levels − 1)` (8 for SD and FLUX).
    pub fn upscale(&self) -> usize {
        1usize << self.block_out_channels.len().saturating_sub(1)
    }

    /// Decoder levels in execution order: `(c_in, c_out, upsample)`.
    pub(super) fn levels(&self) -> Vec<(usize, usize, bool)> {
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let mut prev = rev[0];
        rev.iter()
            .enumerate()
            .map(|(i, &out)| {
                let l = (prev, out, i + 1 != rev.len());
                prev = out;
                l
            })
            .collect()
    }

    pub(super) fn top_channels(&self) -> usize {
        self.block_out_channels[self.block_out_channels.len() - 1]
    }
}
