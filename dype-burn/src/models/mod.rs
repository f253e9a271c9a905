//! Model ports. Models never compute RoPE: they receive device rotary tables built from
//! dype-core (see [`crate::rotary`]) and call the shared [`crate::attention()`] entry point.

mod common;
pub mod fitv2;
pub mod flux;
