//! # dype-lab
//!
//! The experiments around dype, kept apart from the libraries (`publish = false`):
//!
//! * [`shapes`]: a procedural class-conditional dataset whose ideal image is known at every
//!   resolution (renderer, detector, radially averaged spectra);
//! * [`train`]: training a small pixel-space FiTv2 on it (batches, a `Trainer` with exact resume,
//!   model bundles, the quality gate); instantiate it with burn's `Autodiff` backend (feature
//!   `train`);
//! * [`lab`] (feature `lab`, default): the method comparison and spectral progression on the
//!   trained model (metrics with bootstrap intervals, calibration rows, γ(f, t) maps,
//!   JSON/Markdown/PNG outputs).
//!
//! The `train`, `lab` and `fitv2 --demo` examples of the workspace root are their command lines;
//! `docs/training.md` and `docs/evidence.md` describe the runs.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

#[cfg(feature = "lab")]
pub mod lab;
pub mod shapes;
pub mod train;
