//! burn integration for DyPE: device-side rotary embeddings fed by factorized host tables, and a
//! memory-bounded attention entry point for diffusion transformers.
//!
//! * [`rotary`] — upload a [`FactorizedTable`](rotary::FactorizedTable) (per-axis cos/sin rows
//!   with the attention factor folded in, plus per-token row indices), expand it on the device
//!   and rotate q/k in the interleaved (FLUX/FiT) or half-split (LLaMA/NeoX) layout;
//!   [`RotaryEmbedding`] caches the upload per table content.
//! * [`attention`](mod@attention) — `softmax(q kᵀ · scale) v` with an optional key-padding mask, using burn's
//!   fused kernel where it is memory-bounded and a query-chunked implementation elsewhere.
//! * [`backend`] — backend aliases per cargo feature (`Cpu` = burn Flex, `Wgpu`, `Cuda`) and a
//!   probe that reports an unusable backend as an error instead of a panic.
//!
//! # Injecting the rotary embedding into an existing attention layer
//!
//! The embedding is not part of the model's parameters: keep one [`RotaryEmbedding`] per model
//! (or pipeline), refresh it once per sampling step from the host table of that step, and pass
//! it by reference to the attention layers, which call `apply_qk` between their q/k
//! normalisation and the attention op.
//!
//! ```
//! use burn::module::Module;
//! use burn::nn::{Linear, LinearConfig};
//! use burn::tensor::{Tensor, backend::Backend};
//! use dype_burn::attention::{attention, AttentionOptions};
//! use dype_burn::rotary::{AxisRows, FactorizedTable, RotaryEmbedding, RotaryLayout};
//!
//! /// Someone else's self-attention layer: fused qkv projection, multi-head attention.
//! #[derive(Module, Debug)]
//! struct SelfAttention<B: Backend> {
//!     qkv: Linear<B>,
//!     proj: Linear<B>,
//!     heads: usize,
//! }
//!
//! impl<B: Backend> SelfAttention<B> {
//!     fn new(dim: usize, heads: usize, device: &B::Device) -> Self {
//!         Self {
//!             qkv: LinearConfig::new(dim, 3 * dim).init(device),
//!             proj: LinearConfig::new(dim, dim).init(device),
//!             heads,
//!         }
//!     }
//!
//!     /// `x`: `[batch, tokens, dim]`. The only change for RoPE is the `rope` argument.
//!     fn forward(
//!         &self,
//!         x: Tensor<B, 3>,
//!         rope: &RotaryEmbedding<B>,
//!     ) -> Result<Tensor<B, 3>, Box<dyn std::error::Error>> {
//!         let [batch, tokens, dim] = x.dims();
//!         let head_dim = dim / self.heads;
//!         // [batch, tokens, 3, heads, head_dim] -> three [batch, heads, tokens, head_dim]
//!         let qkv = self
//!             .qkv
//!             .forward(x)
//!             .reshape([batch, tokens, 3, self.heads, head_dim])
//!             .permute([2, 0, 3, 1, 4]);
//!         let split = |i: usize| {
//!             qkv.clone()
//!                 .narrow(0, i, 1)
//!                 .reshape([batch, self.heads, tokens, head_dim])
//!         };
//!         let (q, k, v) = (split(0), split(1), split(2));
//!         // (q/k normalisation would go here), then rotate:
//!         let (q, k) = rope.apply_qk(q, k)?;
//!         let out = attention(q, k, v, None, AttentionOptions::default())?;
//!         Ok(self.proj.forward(out))
//!     }
//! }
//!
//! /// 1-D positions `0..n`, one axis, frequencies `theta^(-2i/d)`, attention factor 1.
//! fn table_1d(n: usize, head_dim: usize) -> FactorizedTable {
//!     let half = head_dim / 2;
//!     let (mut cos, mut sin) = (Vec::new(), Vec::new());
//!     for p in 0..n {
//!         for i in 0..half {
//!             let angle = p as f32 * 10_000f32.powf(-2.0 * i as f32 / head_dim as f32);
//!             cos.push(angle.cos());
//!             sin.push(angle.sin());
//!         }
//!     }
//!     let rows = AxisRows::new(half, n, cos, sin).expect("valid rows");
//!     FactorizedTable::new(vec![rows], n, (0..n as u32).collect()).expect("valid table")
//! }
//!
//! # #[cfg(feature = "cpu")]
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! type B = dype_burn::backend::Cpu;
//! let device = Default::default();
//! let layer = SelfAttention::<B>::new(64, 4, &device);
//! let mut rope = RotaryEmbedding::<B>::new(&device, RotaryLayout::Interleaved);
//!
//! for _step in 0..2 {
//!     // In a DyPE sampler the table depends on the timestep; equal tables are not re-uploaded.
//!     rope.update(&table_1d(10, 16))?;
//!     let x = Tensor::<B, 3>::zeros([2, 10, 64], &device);
//!     let y = layer.forward(x, &rope)?;
//!     assert_eq!(y.dims(), [2, 10, 64]);
//! }
//! assert_eq!(rope.upload_count(), 1);
//! # Ok(())
//! # }
//! # #[cfg(not(feature = "cpu"))]
//! # fn main() {}
//! ```
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod attention;
pub mod backend;
pub mod dype;
pub mod models;
pub mod pipeline;
pub mod rotary;
pub mod sampling;
pub mod sampling_flux;
pub mod text;
pub mod vae;
pub mod weights;

pub use attention::{AttentionError, AttentionOptions, AttentionPath, attention};
pub use backend::{BackendError, BackendKind, check_backend};
pub use rotary::{
    CacheStatus, RotaryEmbedding, RotaryError, RotaryIndex, RotaryLayout, RotaryTables,
    apply_rotary,
};
