//! Model ports. Models never compute RoPE: they receive device rotary tables built from
//! dype-core (see [`crate::rotary`]) and call the shared [`crate::attention()`] entry point.
//!
//! * [`fitv2`] — FiTv2-XL/2, class-conditional ImageNet DiT;
//! * [`flux`] — the FLUX.1 DiT (BFL and diffusers checkpoints, block streaming);
//! * [`vae`] — the SD and FLUX VAE decoders (tiled decoding);
//! * [`text`] (feature `text`) — T5 and CLIP text encoders and their tokenizers.
//!
//! Every model reports one error type, [`ModelError`]; configurations are read from JSON with
//! serde (`FitConfig::from_json`, `FluxConfig::from_json`, `T5Config::from_json`,
//! `ClipConfig::from_json`, `VaeConfig::from_diffusers_json`), with the defaults each documents.

mod error;
pub mod fitv2;
pub mod flux;
#[cfg(feature = "text")]
pub mod text;
pub mod vae;

pub use error::{ConfigError, ModelError};

use std::path::Path;

use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;

use crate::weights::{Checkpoint, KeyMap, Weights};

/// What a model configuration says a checkpoint must hold: the key layout read off a file and,
/// for that layout, every tensor with its shape. Implemented by each model's configuration; the
/// models built from it implement [`Pretrained`].
pub trait CheckpointSpec {
    /// What the file's keys say about where the tensors are: a key layout, a prefix, or `()`.
    type Layout;

    /// Validates the configuration, then reads the layout of `checkpoint`.
    fn layout(&self, checkpoint: &Checkpoint) -> Result<Self::Layout, ModelError>;

    /// Every tensor a file in `layout` must hold (and the prefixes it may hold unread).
    fn declare(&self, layout: &Self::Layout) -> KeyMap;
}

/// A model built from a checkpoint, the one way every model here is loaded: open the file, read
/// its key layout, declare every tensor of that layout, validate the file against the
/// declaration, build ([`CheckpointSpec`] gives the middle steps). A bad file is rejected before
/// any device memory is touched; missing, unexpected and mis-shaped tensors are named (see
/// [`crate::weights`]).
pub trait Pretrained<B: Backend>: Sized {
    /// The configuration the model is built for.
    type Config: CheckpointSpec;

    /// Builds the model from weights validated against the configuration's key map for `layout`.
    fn build(
        config: &Self::Config,
        layout: <Self::Config as CheckpointSpec>::Layout,
        weights: &Weights<'_, B>,
    ) -> Result<Self, ModelError>;

    /// Opens `path` ([`Checkpoint::open`]: one safetensors file, a sharded safetensors index or
    /// folder, or a PyTorch pickle) and loads the model from it on `device` in `dtype` (weights
    /// are cast on load), see [`Pretrained::from_checkpoint`].
    fn load(
        path: impl AsRef<Path>,
        config: &Self::Config,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        Self::from_checkpoint(&Checkpoint::open(path)?, config, dtype, device)
    }

    /// Loads from an opened checkpoint: the layout, then the whole file validated against the
    /// key map before anything is built, then the model on `device` in `dtype`.
    fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: &Self::Config,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        let layout = config.layout(checkpoint)?;
        let map = config.declare(&layout);
        let weights = checkpoint.load::<B>(&map, dtype, device)?;
        Self::build(config, layout, &weights)
    }
}
