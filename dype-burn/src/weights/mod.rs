//! Strict checkpoint reading shared by every model (FiTv2, FLUX, the VAE decoders, T5 and CLIP).
//!
//! Loading is split in three steps so that a bad file is rejected before any device memory is
//! touched:
//!
//! 1. [`Checkpoint::open`] reads the *structure* of a checkpoint: a single `.safetensors` file, a
//!    sharded diffusers folder (`*.safetensors.index.json` plus its shards) or a PyTorch pickle
//!    (`.pt`, `.pth`, `.bin`, `.ckpt`, read with burn-store's `PytorchReader`). Safetensors
//!    headers are parsed with the `safetensors` crate and every byte range is checked against the
//!    file length, so truncated or corrupt files fail here, with the file named. No tensor data is
//!    read yet.
//! 2. A model declares what it needs in a [`KeyMap`]: checkpoint key → expected (PyTorch-side)
//!    shape, plus key prefixes it deliberately ignores (e.g. a VAE's `encoder.*`).
//!    [`Checkpoint::validate`] compares the two and reports missing keys, mis-shaped tensors,
//!    unsupported dtypes and unexpected (unconsumed, not ignored) keys as typed
//!    [`WeightsError`]s that name the file and the key.
//! 3. Only then [`Checkpoint::load`] returns a [`Weights`] view that builds burn tensors and
//!    layers ([`Weights::linear`], [`Weights::conv2d`], [`Weights::group_norm`],
//!    [`Weights::tensor`]) on the device, cast to the requested float dtype. PyTorch `Linear`
//!    weights (`[out, in]`) are transposed on the host to burn's `[in, out]`.
//!
//! Models describe their checkpoint once, with a builder generic over a [`Source`]: run on
//! [`Declare`] it gives the [`KeyMap`] of step 2, run on [`Load`] it builds the layers of step 3;
//! [`crate::models::Pretrained`] is the whole sequence.
//!
//! Nothing reachable from file contents panics: every malformed input becomes a
//! [`WeightsError`]. (burn-store's pickle reader is additionally run under `catch_unwind`.)
//!
//! ```
//! use dype_burn::weights::{Checkpoint, KeyMap};
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! # let dir = tempfile::tempdir()?;
//! # let path = dir.path().join("lin.safetensors");
//! # let header = br#"{"fc.weight":{"dtype":"F32","shape":[3,2],"data_offsets":[0,24]},"fc.bias":{"dtype":"F32","shape":[3],"data_offsets":[24,36]}}"#;
//! # let mut bytes = (header.len() as u64).to_le_bytes().to_vec();
//! # bytes.extend_from_slice(header);
//! # for v in [1f32, 2., 3., 4., 5., 6., 0.5, 0.25, 0.125] { bytes.extend_from_slice(&v.to_le_bytes()); }
//! # std::fs::write(&path, bytes)?;
//! type B = dype_burn::backend::Cpu;
//! let device = Default::default();
//! let ckpt = Checkpoint::open(&path)?;
//! let mut map = KeyMap::new();
//! map.linear("fc", 2, 3, true); // PyTorch weight [3, 2] + bias [3]
//! let weights = ckpt.load::<B>(&map, burn::tensor::FloatDType::F32, &device)?;
//! let fc = weights.linear("fc", true)?;
//! assert_eq!(fc.weight.dims(), [2, 3]); // burn layout [in, out]
//! # Ok(())
//! # }
//! ```

mod checkpoint;
mod error;
mod key_map;
mod read;
mod source;
mod view;

pub use checkpoint::{Checkpoint, CheckpointFormat, TensorInfo, WeightDType};
pub use error::WeightsError;
pub use key_map::{KeyMap, ParamKind, ParamSpec};
pub use source::{Declare, Load, Source};
pub use view::Weights;
