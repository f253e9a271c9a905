//! FLUX.1 DiT (Black Forest Labs, FLUX.1-dev / FLUX.1-Krea-dev): MMDiT double-stream blocks with
//! separate text/image weights, fused single-stream blocks, RMS-normalised q/k, adaLN-Zero
//! modulation from `vec = time_in(1000·σ) + guidance_in(1000·g) + vector_in(pooled)`, 3-axis
//! interleaved RoPE over `[text; image]` tokens and a velocity (noise − data) output.
//! Reference: BFL `src/flux/{model,modules/layers}.py`, diffusers
//! `FluxTransformer2DModel`, official DyPE `flux/transformer_flux.py`.
//!
//! The model never computes RoPE: [`flux_rope`] and [`SamplePositions::flux`](crate::rotary::SamplePositions::flux) give the dype-core rope and
//! the token ids for a [`crate::rotary::RotaryEmbedding`], whose tables are passed to
//! [`Flux::forward`]. Both checkpoint layouts load into the same module: the BFL one (fused qkv,
//! `double_blocks`/`single_blocks`) and the diffusers one (separate q/k/v, `transformer_blocks`,
//! `norm_out.linear` with (scale, shift) halves), detected from the keys.

mod config;
mod load;
mod model;
mod streaming;

pub use config::{FluxConfig, FluxLayout};
pub use model::{Flux, FluxDenoiser, FluxInputs, flux_rope};
pub use streaming::StreamedFlux;
