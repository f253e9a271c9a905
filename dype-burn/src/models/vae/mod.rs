//! AutoencoderKL decoder (the diffusers `Decoder` graph) for SD-VAE (4 latent channels) and the
//! FLUX VAE (16 channels, shift factor), with strict loading from diffusers or BFL/LDM
//! checkpoints and tiled decoding for large images (RGB8 conversion: [`crate::pipeline::image`]).
//!
//! Graph (diffusers `vae.py` `Decoder`, `UNetMidBlock2D`, `UpDecoderBlock2D`, `ResnetBlock2D`):
//! `post_quant_conv` (1×1, optional) → `conv_in` (3×3) → mid block (resnet → single-head
//! self-attention with GroupNorm and residual → resnet) → up blocks in reversed channel order,
//! each with `layers_per_block + 1` resnets and, except the last, a nearest ×2 upsample followed
//! by a 3×3 conv → GroupNorm → SiLU → `conv_out` (3×3). Every GroupNorm uses ε = 1e-6.
//!
//! [`VaeDecoder::decode`] applies `z = latent / scaling_factor + shift_factor` first.
//!
//! Key layouts (auto-detected by [`detect_layout`]):
//! * diffusers ([`VaeLayout::Diffusers`]) — `decoder.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}`,
//!   `decoder.up_blocks.{i}.resnets.{j}.{norm1,conv1,norm2,conv2,conv_shortcut}`,
//!   `decoder.up_blocks.{i}.upsamplers.0.conv`, `decoder.conv_norm_out`;
//! * legacy diffusers ([`VaeLayout::DiffusersLegacy`]) — the same with attention `query/key/value/proj_attn`;
//! * BFL ([`VaeLayout::Bfl`]) — BFL `ae.safetensors` / LDM names: `decoder.mid.{block_1,attn_1,block_2}`,
//!   `attn_1.{norm,q,k,v,proj_out}`, `decoder.up.{L}.block.{j}` with `nin_shortcut`,
//!   `decoder.up.{L}.upsample.conv`, `decoder.norm_out`, where `L` counts the levels in
//!   **reverse** (`up.{n-1}` runs first).
//!
//! The attention projections accept `[C, C]` Linear and `[C, C, 1, 1]` 1×1-conv weights in every
//! layout. Keys may sit under a common prefix (e.g. `first_stage_model.` or `vae.`), found from
//! the position of `decoder.conv_in.weight`; `encoder.*` and `quant_conv.*` under that prefix
//! and keys outside it are ignored, everything else must be consumed.

mod config;
mod load;
mod model;
mod tiled;

pub use config::VaeConfig;
pub use load::{VaeLayout, detect_layout, key_map};
pub use model::VaeDecoder;

/// GroupNorm epsilon of every norm in the decoder (diffusers `resnet_eps`).
pub const GROUP_NORM_EPS: f64 = 1e-6;

/// The model name in errors.
const MODEL: &str = "vae";

/// Test helpers shared by the test modules of `load` and `tiled`.
#[cfg(test)]
mod test_util {
    use std::path::Path;

    use super::VaeConfig;

    pub(super) fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name)
    }

    pub(super) fn tiny_flux() -> VaeConfig {
        VaeConfig {
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            norm_num_groups: 8,
            ..VaeConfig::flux()
        }
    }
}
