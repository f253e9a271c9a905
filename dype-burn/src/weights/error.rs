//! [`WeightsError`], the error type of checkpoint opening, validation and loading.

use std::path::PathBuf;

#[cfg(doc)]
use super::{key_map::KeyMap, view::Weights};

/// At most this many keys are spelled out in an error message.
const LISTED_KEYS: usize = 12;

/// Errors from opening, validating and loading checkpoints. Every variant names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WeightsError {
    /// The file could not be opened or read.
    #[error("{}: {source}", file.display())]
    Io {
        /// The file.
        file: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// The file is shorter than its header says.
    #[error("{}: file is truncated: its header needs {expected} bytes, the file has {actual}", file.display())]
    Truncated {
        /// The file.
        file: PathBuf,
        /// Bytes the header implies.
        expected: u64,
        /// Bytes present.
        actual: u64,
    },
    /// The safetensors header is not valid (bad length, not JSON, inconsistent offsets, …).
    #[error("{}: corrupt safetensors header: {reason}", file.display())]
    CorruptHeader {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The file is structurally invalid in some other way (e.g. trailing bytes, bad tensor data).
    #[error("{}: corrupt checkpoint: {reason}", file.display())]
    Corrupt {
        /// The file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A sharded checkpoint's `*.safetensors.index.json` is invalid or disagrees with its shards.
    #[error("{}: invalid shard index: {reason}", file.display())]
    Index {
        /// The index file.
        file: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// burn-store's PyTorch reader rejected the file or a tensor in it.
    #[error("{}: cannot read PyTorch checkpoint: {reason}", file.display())]
    Pickle {
        /// The file.
        file: PathBuf,
        /// The reader's message.
        reason: String,
    },
    /// The path is not a checkpoint this module can read.
    #[error("{}: unrecognised checkpoint: {reason}", file.display())]
    UnknownFormat {
        /// The path.
        file: PathBuf,
        /// Why.
        reason: String,
    },
    /// The same key is stored twice (in two shards).
    #[error("{}: key `{key}` is stored twice (also in {})", file.display(), other.display())]
    DuplicateKey {
        /// One file holding the key.
        file: PathBuf,
        /// The key.
        key: String,
        /// The other file holding it.
        other: PathBuf,
    },
    /// Keys the model needs are not in the checkpoint.
    #[error("{}: {} missing key(s): {}", file.display(), keys.len(), list_keys(keys))]
    MissingKeys {
        /// The checkpoint.
        file: PathBuf,
        /// Every missing key, in declaration order.
        keys: Vec<String>,
    },
    /// Keys in the checkpoint that the model neither uses nor declares as ignored.
    #[error("{}: {} unexpected key(s) (stored but not used by the model): {}", file.display(), keys.len(), list_keys(keys))]
    UnexpectedKeys {
        /// The checkpoint.
        file: PathBuf,
        /// Every unexpected key, sorted.
        keys: Vec<String>,
    },
    /// A tensor's stored shape differs from the declared one.
    #[error("{}: key `{key}`: expected shape {expected:?}, found {actual:?}", file.display())]
    ShapeMismatch {
        /// The file holding the tensor.
        file: PathBuf,
        /// The key.
        key: String,
        /// The declared shape (PyTorch layout; a `Linear` weight is `[out, in]`).
        expected: Vec<usize>,
        /// The stored shape.
        actual: Vec<usize>,
    },
    /// A tensor the model needs is stored in a dtype that cannot be loaded as float.
    #[error("{}: key `{key}`: unsupported dtype {dtype} (F32, F16, BF16 or F64 expected)", file.display())]
    UnsupportedDType {
        /// The file holding the tensor.
        file: PathBuf,
        /// The key.
        key: String,
        /// The stored dtype.
        dtype: String,
    },
    /// A model asked [`Weights`] for a key it did not declare in its [`KeyMap`] (a bug in the
    /// model code, reported instead of loading unchecked data).
    #[error("{}: key `{key}` was requested but not declared in the key map", file.display())]
    NotDeclared {
        /// The checkpoint.
        file: PathBuf,
        /// The key.
        key: String,
    },
    /// A key was declared twice with different shapes (a bug in the model code).
    #[error("{}: key `{key}` declared twice, as {first:?} and as {second:?}", file.display())]
    ConflictingDeclaration {
        /// The checkpoint.
        file: PathBuf,
        /// The key.
        key: String,
        /// First declared shape.
        first: Vec<usize>,
        /// Second declared shape.
        second: Vec<usize>,
    },
    /// A tensor was requested with a rank that does not match its declaration.
    #[error("{}: key `{key}` requested as rank {requested}, declared as {shape:?}", file.display())]
    RankMismatch {
        /// The checkpoint.
        file: PathBuf,
        /// The key.
        key: String,
        /// Requested rank.
        requested: usize,
        /// Declared shape (burn layout).
        shape: Vec<usize>,
    },
}

fn list_keys(keys: &[String]) -> String {
    let mut s = keys
        .iter()
        .take(LISTED_KEYS)
        .map(|k| format!("`{k}`"))
        .collect::<Vec<_>>()
        .join(", ");
    if keys.len() > LISTED_KEYS {
        s.push_str(&format!(", … ({} more)", keys.len() - LISTED_KEYS));
    }
    s
}
