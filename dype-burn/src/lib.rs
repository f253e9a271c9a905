//! burn integration for DyPE: a timestep-aware rotary embedding for any burn attention layer, a
//! memory-bounded attention entry point, backend selection — and, opt-in, a model zoo (FiTv2-XL/2,
//! FLUX.1, their VAEs, text encoders, samplers and pipelines).
//!
//! # Injecting DyPE into your own model
//!
//! Build a dype-core rope over your model's rotary axes (any registry method:
//! [`dype_core::presets::METHODS`]), give it the token positions, and hold one
//! [`RotaryEmbedding`]: move it once per sampler step ([`RotaryEmbedding::set_timestep`]) and call
//! [`RotaryEmbedding::apply_qk`] in every attention layer, between the q/k projections (and
//! normalisation) and the attention op. A static method needs no step at all. The whole program
//! below (`examples/custom_model.rs`, run in CI) defines its own tiny attention layer, injects DyPE,
//! samples a few steps and checks the rotation against dype-core's expanded table:
//!
#![doc = concat!("```rust\n", include_str!("../examples/custom_model.rs"), "\n```")]
//!
//! LLM code on burn-nn's own `RotaryEncoding` gets any static dype-core method in one line with
//! [`rotary::rotary_encoding`] (the attention factor comes back beside the module).
//!
//! # Modules and features
//!
//! * [`rotary`] — [`RotaryEmbedding`] and the device tables under it (factorized cos/sin rows with
//!   the attention factor folded in, expanded on the device; interleaved or half-split pairs).
//! * [`attention`](mod@attention) — `softmax(q kᵀ · scale + bias) v` with an optional key-padding
//!   mask, score bias and causal mask ([`Masks`], [`attention()`]), using burn's fused kernel
//!   where it is memory-bounded and a query-chunked one elsewhere; [`Precision`] says where
//!   half-precision inputs are upcast.
//! * [`backend`] — backend aliases per cargo feature (`cpu` = burn Flex, `wgpu`, `cuda`) and a
//!   probe that reports an unusable backend as an error instead of a panic.
//! * feature `models`: `models` (`fitv2`, `flux`, `vae`; model code apart from samplers),
//!   `weights` (checkpoint reading, key maps, strict validation), `sampling` (ODE solvers that keep
//!   no trajectory; the flow-match σ schedule is dype-core's [`dype_core::flow`]), `pipeline`
//!   (FiTv2 and FLUX generation, seeded noise, PNG output, ImageNet labels).
//! * feature `text`: `models::text` (T5/CLIP encoders and their tokenizers) and prompt encoding in
//!   `pipeline`.
//!
//! The default features are the rotary core on the CPU backend only: no tokenizers, image codecs,
//! checkpoint readers or extra RNGs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attention;
pub mod backend;
pub mod kernels;
#[cfg(feature = "models")]
pub mod models;
#[cfg(feature = "models")]
pub(crate) mod nn;
#[cfg(feature = "models")]
pub mod pipeline;
pub mod rotary;
#[cfg(feature = "models")]
pub mod sampling;
#[cfg(feature = "models")]
pub mod train;
#[cfg(feature = "models")]
pub mod weights;

pub use attention::{AttentionError, AttentionOptions, AttentionPath, Masks, Precision, attention};
pub use backend::{BackendError, BackendKind, check_backend};
pub use rotary::{RotaryEmbedding, RotaryError, SamplePositions, StepReport};

/// Everything a downstream model needs to inject DyPE: `use dype_burn::prelude::*;`.
pub mod prelude {
    pub use crate::attention::{AttentionOptions, Masks, Precision, attention};
    pub use crate::rotary::{RotaryEmbedding, RotaryError, SamplePositions, StepReport};
    pub use dype_core::presets;
    pub use dype_core::{
        AttentionFactor, AxialRope, AxisConfig, AxisPolicy, DypeError, FrequencyRule, Method,
        PairLayout, RuleInput, Sigma,
    };
}
