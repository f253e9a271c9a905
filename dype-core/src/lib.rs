//! # dype-core
//!
//! Pure, `no_std` math for rotary positional embeddings (RoPE) and their extrapolation methods, as
//! used by diffusion transformers generating above their training resolution: position
//! interpolation (PI), NTK-aware scaling, YaRN (the paper's one-ramp form and the LLM form),
//! NTK-by-parts, HF's dynamic NTK / llama3 / longrope, and **DyPE**'s dynamic forms (Issachar,
//! Yariv et al. 2025): Dy-PI, Dy-NTK and Dy-YaRN, whose extrapolation follows the sampler's time
//! `t` through `κ(t) = λs·t^λt`.
//!
//! Frequencies are computed in `f64`; table writers are generic over `f32`/`f64` output. The core
//! API allocates nothing: it writes into caller slices. The `alloc` feature adds factorized tables
//! ([`table`]); `proptest` adds strategies for downstream property tests (module `strategies`).
//!
//! ```
//! use dype_core::{presets, Sigma};
//!
//! // FLUX.1 at 4096² (256 tokens per side) with the paper's Dy-YaRN, at the first step (σ = 1).
//! let rope = presets::paper_flux(dype_core::Method::dy_yarn())?;
//! let mut freqs = [0.0f64; 64];
//! let info = rope.step(&[1.0, 256.0, 256.0], Some(Sigma::new(1.0)?), &mut freqs)?;
//! assert_eq!(info.axes()[1].scales.linear, 4.0);
//! // At σ = 0 every dynamic method is the native RoPE again.
//! let mut native = [0.0f64; 64];
//! rope.step(&[1.0, 256.0, 256.0], Some(Sigma::CLEAN), &mut native)?;
//! assert!((native[8] - 1.0).abs() < 1e-12); // first pair of the row axis: θ^0 = 1
//! # Ok::<(), dype_core::DypeError>(())
//! ```
#![cfg_attr(not(feature = "std"), no_std)]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "alloc")]
extern crate alloc;

pub mod attention;
pub mod axis;
mod error;
pub mod flow;
pub mod hf;
pub mod layout;
mod math;
pub mod method;
pub mod presets;
pub mod schedule;
#[cfg(feature = "proptest")]
pub mod strategies;
#[cfg(feature = "alloc")]
pub mod table;
pub mod time;

pub use axis::{Axis, RampClamp};
pub use error::{DypeError, Result, ShortName};
pub use flow::{FlowShift, flux_sigmas, time_shift};
pub use layout::{
    AttentionFactor, AxialRope, AxisConfig, AxisPolicy, AxisStep, MAX_AXES, PairLayout, StepInfo,
    rotate, write_axis_rows, write_token_table,
};
pub use method::{
    AxisOutput, AxisScales, CustomRule, FrequencyRule, Lumina, Method, Mscale, NtkByParts,
    NtkKappa, RuleInput, ScaleSource, Yarn, YarnLlm,
};
pub use schedule::{KappaSchedule, ThresholdKappa, kappa};
pub use time::{FitTime, Sigma, Timestep1000};

/// The largest rotary dimension of one axis (channels). Real models use at most a few hundred; the
/// cap keeps every size computation far from overflow.
pub const MAX_DIM: usize = 1 << 16;
/// The most tokens a position grid or table may hold (67 108 864: an 8192 × 8192 token grid, i.e.
/// 131 072² px for FLUX). Above it builders return [`DypeError::TooLarge`] instead of asking the
/// allocator (Linux overcommits, so an allocation that "succeeds" can still end in the OOM killer).
pub const MAX_TOKENS: usize = 1 << 26;
/// The most elements (f64 or f32 values) in any one buffer dype-core allocates (2²⁸: 2 GiB of f64):
/// position ids, per-axis rows. Caller-provided slices are only bounded by their own length.
pub const MAX_ELEMENTS: usize = 1 << 28;
