#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The burn modules (re-export of the `dype-burn` crate).
pub use dype_burn as burn;
/// The `no_std` RoPE extrapolation math (re-export of the `dype-core` crate).
pub use dype_core as core;

pub mod hub;
pub mod lab;
pub mod shapes;
pub mod train;
