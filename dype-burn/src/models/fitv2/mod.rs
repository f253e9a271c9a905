//! FiTv2 (Lu et al., "FiTv2: Scalable and Improved Flexible Vision Transformer for Diffusion
//! Model", 2024): a class-conditional DiT with SwiGLU, affine-free per-head q/k LayerNorm,
//! adaLN-LoRA with a shared global modulation, 2-D interleaved RoPE (rows then columns) and
//! velocity output. Reference: whlzy/FiT @b22b7b0 `fit/model/*.py`.

mod config;
mod init;
mod load;
mod model;
mod position;

/// Latent ↔ token packing of FiT (`[B, C, H, W]` ↔ `[B, (H/p)(W/p), C·p²]`).
pub use crate::nn::patch::{patchify, unpatchify};
pub use config::FitConfig;
pub use init::StateDict;
pub use model::{FitInputs, FitV2, GuidedChannels};
pub use position::{FitPosition, fit_grid, fit_layout, fit_rope};

/// The model name in errors.
const MODEL: &str = "fitv2";
