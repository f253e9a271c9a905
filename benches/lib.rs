//! The workspace's criterion benches (`tables.rs`: dype-core's frequency and table writers;
//! `burn_rotary.rs`: dype-burn's rotary embedding and attention). Run `cargo bench -p dype-benches`;
//! numbers are in `docs/performance.md`. This library is empty: the package exists so that
//! criterion is compiled for the benches alone.
#![forbid(unsafe_code)]
