//! The rotary core: [`RotaryEmbedding`], the one timestep-aware rotary type (built from a
//! dype-core rope and token positions, moved per sampler step, applied to q and k), the device
//! tables under it ([`RotaryTables`], [`RotaryIndex`], [`apply_rotary`]), one error type
//! ([`RotaryError`]) and an adapter for burn-nn's `RotaryEncoding` ([`rotary_encoding`]).
//!
//! # Data flow
//!
//! The host contract is [`FactorizedTable`] (from `dype_core::table`): for every axis (e.g. `h`
//! and `w` of an image grid) a small `rows × half_dim` block of cos/sin values — the attention
//! factor (YaRN `mscale`) is already folded into them — and for every token the row it uses on
//! each axis. Only these rows and the `tokens × axes` row indices are copied host → device;
//! [`RotaryTables::from_tables`] then gathers (`select`) per axis and concatenates along the last
//! dimension on the device, giving `cos`/`sin` of shape `[batch, tokens, head_dim / 2]`. Axis
//! order is the order of the head dimension: axis 0 covers the first `2·half_dim₀` channels.
//!
//! # Layouts
//!
//! * [`PairLayout::Interleaved`] (FLUX, FiT, GPT-J, burn's `RotaryEncoding`): channel pairs
//!   `(x[2i], x[2i+1])` rotate by angle `i`.
//! * [`PairLayout::HalfSplit`] (LLaMA / GPT-NeoX / HF `rotate_half`): pairs `(x[i], x[i + D/2])`
//!   rotate by angle `i`.
//!
//! For pair `(a, b)` with table entries `c = f·cos θ`, `s = f·sin θ` the result is
//! `(a·c − b·s, a·s + b·c)`: the rotation by `θ` scaled by the attention factor `f`, applied
//! exactly once (to each of q and k, so `q·k` is scaled by `f²`, as in YaRN).
//!
//! The rotation is computed in f32 whatever the input dtype (f16/bf16 inputs are cast to f32,
//! rotated and cast back; f64 inputs are rotated in f64).

mod burn_nn;
mod embedding;
mod error;
mod tables;

pub use burn_nn::rotary_encoding;
pub use dype_core::PairLayout;
pub use dype_core::table::{AxisRows, FactorizedTable};
pub use embedding::{RotaryEmbedding, SamplePositions, StepReport};
pub use error::RotaryError;
pub use tables::{RotaryIndex, RotaryTables, apply_rotary};
