//! # dype
//!
//! The host of the workspace's top-level examples (`fitv2`, `flux`, `train`, `lab`, `inspect`,
//! `gpu`) and end-to-end tests; `publish = false`. The libraries are [`dype_core`] (the `no_std`
//! RoPE extrapolation math) and [`dype_burn`] (burn modules and the model zoo); the experiments
//! are `dype_lab` (`publish = false`). This crate re-exports the two libraries and adds the checkpoint files the examples use
//! ([`hub`]; downloads with the feature `hub`).
//!
//! See the workspace README for the layout and which example needs which feature.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

/// The burn modules (re-export of the `dype-burn` crate).
pub use dype_burn as burn;
/// The `no_std` RoPE extrapolation math (re-export of the `dype-core` crate).
pub use dype_core as core;

pub mod hub;

/// The README's code blocks, compiled and run as doctests.
#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
