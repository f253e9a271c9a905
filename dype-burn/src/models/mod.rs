//! Model ports. Models never compute RoPE: they receive device rotary tables built from
//! dype-core (see [`crate::rotary`]; T5 and CLIP need the `text` feature) and call the shared [`crate::attention()`] entry point.

#[cfg(feature = "text")]
pub mod clip;
mod common;
pub mod fitv2;
pub mod flux;
#[cfg(feature = "text")]
pub mod t5;
