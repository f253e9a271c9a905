//! The one error type of the model ports ([`ModelError`]) and of their configurations
//! ([`ConfigError`]).

use std::path::PathBuf;

use thiserror::Error;

use crate::attention::AttentionError;
use crate::rotary::RotaryError;
use crate::weights::WeightsError;

/// A configuration a port cannot run.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A value breaks a rule of the architecture.
    #[error("{0}")]
    Invalid(&'static str),
    /// A field names a variant the port does not implement.
    #[error("`{field}` = `{value}` is not supported ({supported})")]
    Unsupported {
        /// The field.
        field: &'static str,
        /// Its value.
        value: String,
        /// What is.
        supported: &'static str,
    },
    /// The JSON does not describe a configuration (a mistyped or missing field).
    #[error(transparent)]
    Json(#[from] serde_json::Error),
}

/// Errors of the model ports: FiTv2, FLUX.1, the VAE decoders, T5 and CLIP. Every variant names
/// the model it comes from (`fitv2`, `flux`, `vae`, `t5`, `clip`) where it is not transparent.
#[derive(Debug, Error)]
#[non_exhaustive]
pub enum ModelError {
    /// An input tensor has the wrong shape.
    #[error("{model}: {what} has shape {found:?}, expected {expected}")]
    Shape {
        /// The model.
        model: &'static str,
        /// Which input.
        what: &'static str,
        /// The shape given.
        found: Vec<usize>,
        /// The shape expected, in words (`[B, N, 64]`).
        expected: String,
    },
    /// An input the model needs was not given.
    #[error("{model}: {what}")]
    MissingInput {
        /// The model.
        model: &'static str,
        /// What is missing, in words.
        what: &'static str,
    },
    /// A token id outside the vocabulary.
    #[error("{model}: token id {id} is outside the vocabulary of {vocab}")]
    TokenId {
        /// The model.
        model: &'static str,
        /// The id.
        id: i64,
        /// Vocabulary size.
        vocab: usize,
    },
    /// A sequence without the token the pooled output is read at.
    #[error("{model}: sequence {sequence} has no end-of-text token {token}")]
    NoEndToken {
        /// The model.
        model: &'static str,
        /// Which sequence of the batch.
        sequence: usize,
        /// The token id looked for.
        token: u32,
    },
    /// The configuration is not usable.
    #[error("{model}: invalid configuration: {source}")]
    Config {
        /// The model.
        model: &'static str,
        /// Why.
        #[source]
        source: ConfigError,
    },
    /// The checkpoint's key layout is not one the model knows.
    #[error("{model}: {}: {reason}", file.display())]
    Layout {
        /// The model.
        model: &'static str,
        /// The checkpoint.
        file: PathBuf,
        /// What was found.
        reason: String,
    },
    /// Writing a checkpoint failed.
    #[error("cannot write {}: {source}", path.display())]
    Save {
        /// The file.
        path: PathBuf,
        /// What safetensors reported.
        #[source]
        source: safetensors::SafeTensorError,
    },
    /// Tensor data could not be read back to the host.
    #[error("{model}: cannot read {what} back from the device: {reason}")]
    ReadBack {
        /// The model.
        model: &'static str,
        /// Which tensor.
        what: &'static str,
        /// burn's description of the failure.
        reason: String,
    },
    /// The device failed while running the model.
    #[error("{model}: device execution failed: {reason}")]
    Execution {
        /// The model.
        model: &'static str,
        /// burn's description of the failure.
        reason: String,
    },
    /// The latent does not match the VAE decoder.
    #[error(
        "vae: latent shape {actual:?} does not match the decoder ({latent_channels} channels expected)"
    )]
    Latent {
        /// The latent's shape.
        actual: [usize; 4],
        /// Channels the decoder expects.
        latent_channels: usize,
    },
    /// Invalid tiling parameters of a tiled VAE decode.
    #[error("vae: invalid tiling: tile {tile}, overlap {overlap} (needs tile ≥ 1, overlap < tile)")]
    Tiling {
        /// Tile size in latent pixels.
        tile: usize,
        /// Overlap in latent pixels.
        overlap: usize,
    },
    /// Rotary embedding failure.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// Attention failure.
    #[error(transparent)]
    Attention(#[from] AttentionError),
    /// Weight loading failure.
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

impl ModelError {
    /// A configuration rule broken by `model`'s configuration.
    pub(crate) fn invalid(model: &'static str, rule: &'static str) -> Self {
        ModelError::Config {
            model,
            source: ConfigError::Invalid(rule),
        }
    }

    /// `model`'s configuration names a variant the port does not implement.
    pub(crate) fn unsupported(
        model: &'static str,
        field: &'static str,
        value: String,
        supported: &'static str,
    ) -> Self {
        ModelError::Config {
            model,
            source: ConfigError::Unsupported {
                field,
                value,
                supported,
            },
        }
    }

    /// `model`'s configuration JSON could not be read.
    pub(crate) fn json(model: &'static str, e: serde_json::Error) -> Self {
        ModelError::Config {
            model,
            source: ConfigError::Json(e),
        }
    }
}
