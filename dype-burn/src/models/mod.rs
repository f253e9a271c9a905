//! Model ports. Models never compute RoPE: they receive device rotary tables built from
//! dype-core (see [`crate::rotary`]) and call the shared [`crate::attention()`] entry point.

pub mod clip;
mod common;
pub mod fitv2;
pub mod flux;
pub mod t5;
