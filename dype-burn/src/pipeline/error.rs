//! The one error type of the pipelines.

use dype_core::DypeError;
use thiserror::Error;

use super::image::ImageError;
use crate::models::ModelError;
use crate::rotary::RotaryError;
use crate::sampling::SamplingError;
use crate::weights::WeightsError;

/// Errors of a generation (FiTv2 or FLUX): an invalid request, or the failure of a part.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum PipelineError {
    /// The image size is not a positive multiple of the model's pixel unit.
    #[error("image size {height}×{width} must be positive multiples of {unit}")]
    Size {
        /// Height in pixels.
        height: usize,
        /// Width in pixels.
        width: usize,
        /// VAE upscale × patch size.
        unit: usize,
    },
    /// A class id the model does not have.
    #[error("class {class} is out of range (0..{classes})")]
    Class {
        /// The class asked for.
        class: usize,
        /// Classes of the model.
        classes: usize,
    },
    /// A count (steps, batch, tile) that must be at least 1 is 0.
    #[error("`{name}` must be at least 1")]
    Zero {
        /// Which count.
        name: &'static str,
    },
    /// A scalar parameter outside its range.
    #[error("`{name}` = {value} must be {rule}")]
    Parameter {
        /// Which parameter.
        name: &'static str,
        /// The value.
        value: f64,
        /// Its range, in words.
        rule: &'static str,
    },
    /// The VAE's latent does not fit the DiT's input.
    #[error("the VAE has {vae} latent channels but the DiT takes {dit} = 4 × {}", dit / 4)]
    LatentChannels {
        /// VAE latent channels.
        vae: usize,
        /// DiT input channels.
        dit: usize,
    },
    /// A conditioning tensor whose batch is neither 1 nor the request's.
    #[error("{what} has batch {found}; expected 1 or {expected}")]
    ConditioningBatch {
        /// Which tensor.
        what: &'static str,
        /// Its batch.
        found: usize,
        /// The request's batch.
        expected: usize,
    },
    /// Starting noise of the wrong shape.
    #[error("noise has shape {found:?}, expected [B ≥ 1, {tokens}, {channels}]")]
    NoiseShape {
        /// Its shape.
        found: [usize; 3],
        /// Image tokens of the grid.
        tokens: usize,
        /// The DiT's input channels.
        channels: usize,
    },
    /// The decoder returned no image.
    #[error("the decoder returned no image")]
    NoImage,
    /// The estimated memory of a generation is above the limit ([`super::memory_limit`]):
    /// refused before its first large allocation.
    #[error(
        "{what} needs an estimated {} of memory, above the limit of {} ({limit_from}); \
         ask for a smaller size or batch, or set DYPE_MEMORY_LIMIT (bytes, e.g. 64G) to raise the limit",
        super::format_bytes(*needed),
        super::format_bytes(*limit)
    )]
    Memory {
        /// What was asked for, in words (size, batch, tokens).
        what: String,
        /// The estimate in bytes (`u64::MAX` where it overflows).
        needed: u64,
        /// The limit in bytes.
        limit: u64,
        /// Where the limit comes from (`DYPE_MEMORY_LIMIT`, the host's available memory).
        limit_from: &'static str,
    },
    /// FLUX's time shift μ is so large at this token count that the σ schedule collapses (every
    /// σ rounds to 1 before the last step).
    #[error(
        "the σ schedule collapses at μ = {mu:.4e} ({tokens} image tokens): exp(μ) swamps every \
         step's shift, so σ rounds to 1 until the last step; pin a smaller μ \
         (`FluxGenerate::mu`; the flux example's `--mu` or `--pin-mu`)"
    )]
    ScheduleCollapse {
        /// μ at this size (or as pinned).
        mu: f64,
        /// Image tokens of the request.
        tokens: usize,
    },
    /// Positional math rejected the configuration.
    #[error(transparent)]
    Math(#[from] DypeError),
    /// The rotary embedding failed.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// A model (DiT or VAE) failed.
    #[error(transparent)]
    Model(#[from] ModelError),
    /// The solver rejected its grid.
    #[error(transparent)]
    Sampling(#[from] SamplingError),
    /// Reading embeddings failed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// Converting the image failed.
    #[error(transparent)]
    Image(#[from] ImageError),
    /// Tokenizing a prompt failed.
    #[cfg(feature = "text")]
    #[error(transparent)]
    Text(#[from] crate::models::text::TextError),
}
