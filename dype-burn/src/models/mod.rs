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
