//! Strict checkpoint reading shared by every model (VAE decoders now; FiTv2, FLUX, T5 and CLIP
//! later).
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

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, FloatDType, Tensor, TensorData, bf16, f16};
use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

/// Largest safetensors header accepted (the `safetensors` crate uses the same limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;
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

/// Element type of a stored tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum WeightDType {
    /// IEEE binary64.
    F64,
    /// IEEE binary32.
    F32,
    /// IEEE binary16.
    F16,
    /// bfloat16.
    BF16,
    /// Anything else (integers, bool, fp8, …), by its name in the file; cannot be loaded as a
    /// float parameter.
    Other(String),
}

impl WeightDType {
    /// Whether tensors of this type can be loaded as float parameters.
    pub fn is_float(&self) -> bool {
        !matches!(self, WeightDType::Other(_))
    }

    /// Bytes per element of the float types (`None` for [`WeightDType::Other`]).
    pub fn size(&self) -> Option<usize> {
        match self {
            WeightDType::F64 => Some(8),
            WeightDType::F32 => Some(4),
            WeightDType::F16 | WeightDType::BF16 => Some(2),
            WeightDType::Other(_) => None,
        }
    }

    fn from_safetensors(d: safetensors::Dtype) -> Self {
        match d {
            safetensors::Dtype::F64 => WeightDType::F64,
            safetensors::Dtype::F32 => WeightDType::F32,
            safetensors::Dtype::F16 => WeightDType::F16,
            safetensors::Dtype::BF16 => WeightDType::BF16,
            other => WeightDType::Other(format!("{other:?}")),
        }
    }

    fn from_burn(d: DType) -> Self {
        match d {
            DType::F64 => WeightDType::F64,
            DType::F32 | DType::Flex32 => WeightDType::F32,
            DType::F16 => WeightDType::F16,
            DType::BF16 => WeightDType::BF16,
            other => WeightDType::Other(format!("{other:?}")),
        }
    }
}

impl fmt::Display for WeightDType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WeightDType::F64 => f.write_str("F64"),
            WeightDType::F32 => f.write_str("F32"),
            WeightDType::F16 => f.write_str("F16"),
            WeightDType::BF16 => f.write_str("BF16"),
            WeightDType::Other(s) => f.write_str(s),
        }
    }
}

/// Dtype and shape of one stored tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorInfo {
    /// Stored element type.
    pub dtype: WeightDType,
    /// Stored shape (PyTorch layout).
    pub shape: Vec<usize>,
}

/// The container a [`Checkpoint`] was read from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// One `.safetensors` file.
    Safetensors,
    /// A diffusers/transformers sharded checkpoint: `*.safetensors.index.json` + shards.
    ShardedSafetensors,
    /// A `torch.save` pickle (zip, legacy or tar container).
    Pytorch,
}

enum Source {
    Safetensors {
        path: PathBuf,
        file: Mutex<File>,
        data_start: u64,
    },
    Pytorch {
        path: PathBuf,
        tensors: HashMap<String, TensorSnapshot>,
    },
}

impl Source {
    fn path(&self) -> &Path {
        match self {
            Source::Safetensors { path, .. } | Source::Pytorch { path, .. } => path,
        }
    }
}

struct Entry {
    info: TensorInfo,
    source: usize,
    /// Byte range inside the data section (safetensors only).
    range: (u64, u64),
}

/// An opened, structurally validated checkpoint: keys, dtypes and shapes are known; tensor data
/// is read lazily, one tensor at a time.
pub struct Checkpoint {
    path: PathBuf,
    format: CheckpointFormat,
    sources: Vec<Source>,
    entries: BTreeMap<String, Entry>,
}

impl fmt::Debug for Checkpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Checkpoint")
            .field("path", &self.path)
            .field("format", &self.format)
            .field("files", &self.sources.len())
            .field("tensors", &self.entries.len())
            .finish()
    }
}

fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> WeightsError + '_ {
    move |source| WeightsError::Io {
        file: file.to_path_buf(),
        source,
    }
}

fn ends_with_ci(path: &Path, suffix: &str) -> bool {
    path.file_name()
        .and_then(|n| n.to_str())
        .is_some_and(|n| n.to_ascii_lowercase().ends_with(suffix))
}

impl Checkpoint {
    /// Opens a checkpoint and validates its structure (no tensor data is read).
    ///
    /// * `*.safetensors` — one file;
    /// * `*.safetensors.index.json` — a sharded checkpoint (shards resolved relative to it);
    /// * a directory — its single `*.safetensors.index.json`, else its single `*.safetensors`;
    /// * `*.pt`, `*.pth`, `*.bin`, `*.ckpt` — a PyTorch pickle with the state dict at the top
    ///   level (see [`Checkpoint::open_pytorch`] for nested ones);
    /// * any other name — sniffed: zip or pickle magic → PyTorch, else safetensors.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        if path.is_dir() {
            return Self::open_dir(path);
        }
        if ends_with_ci(path, ".index.json") {
            return Self::open_sharded(path);
        }
        if ends_with_ci(path, ".safetensors") {
            return Self::open_safetensors(path);
        }
        if [".pt", ".pth", ".bin", ".ckpt"]
            .iter()
            .any(|s| ends_with_ci(path, s))
        {
            return Self::open_pytorch(path, None);
        }
        let mut magic = [0u8; 4];
        let mut f = File::open(path).map_err(io_err(path))?;
        let n = read_up_to(&mut f, &mut magic).map_err(io_err(path))?;
        if n >= 2 && (magic[..2] == *b"PK" || magic[0] == 0x80) {
            Self::open_pytorch(path, None)
        } else {
            Self::open_safetensors(path)
        }
    }

    /// Opens a single safetensors file.
    pub fn open_safetensors(path: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        let mut entries = BTreeMap::new();
        let source = read_safetensors_header(path, 0, &mut entries)?;
        Ok(Checkpoint {
            path: path.to_path_buf(),
            format: CheckpointFormat::Safetensors,
            sources: vec![source],
            entries,
        })
    }

    /// Opens a sharded checkpoint from its `*.safetensors.index.json`. Every key of the index's
    /// `weight_map` must be in the shard it names, and every shard key must be in the map.
    pub fn open_sharded(index: impl AsRef<Path>) -> Result<Self, WeightsError> {
        let index = index.as_ref();
        let text = std::fs::read_to_string(index).map_err(io_err(index))?;
        let bad = |reason: String| WeightsError::Index {
            file: index.to_path_buf(),
            reason,
        };
        let json: serde_json::Value =
            serde_json::from_str(&text).map_err(|e| bad(format!("not JSON: {e}")))?;
        let map = json
            .get("weight_map")
            .and_then(|m| m.as_object())
            .ok_or_else(|| bad("no `weight_map` object".into()))?;
        let dir = index.parent().unwrap_or_else(|| Path::new("."));
        // shard file name -> keys the index assigns to it
        let mut shards: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
        for (key, shard) in map {
            let shard = shard
                .as_str()
                .ok_or_else(|| bad(format!("shard of `{key}` is not a string")))?;
            if Path::new(shard).is_absolute() || shard.split(['/', '\\']).any(|c| c == "..") {
                return Err(bad(format!(
                    "shard `{shard}` of `{key}` is not a relative path inside the folder"
                )));
            }
            shards
                .entry(shard.to_string())
                .or_default()
                .insert(key.clone());
        }
        if shards.is_empty() {
            return Err(bad("`weight_map` is empty".into()));
        }
        let mut sources = Vec::new();
        let mut entries = BTreeMap::new();
        for (shard, keys) in &shards {
            let shard_path = dir.join(shard);
            let mut shard_entries = BTreeMap::new();
            let src = read_safetensors_header(&shard_path, sources.len(), &mut shard_entries)?;
            for key in keys {
                if !shard_entries.contains_key(key) {
                    return Err(bad(format!(
                        "`{key}` is mapped to `{shard}`, which does not contain it"
                    )));
                }
            }
            for (key, entry) in shard_entries {
                if !keys.contains(&key) {
                    return Err(bad(format!(
                        "`{shard}` holds `{key}`, which the weight_map does not list"
                    )));
                }
                if let Some(prev) = entries.get(&key) {
                    let prev: &Entry = prev;
                    return Err(WeightsError::DuplicateKey {
                        file: shard_path.clone(),
                        key,
                        other: sources_path(&sources, prev.source),
                    });
                }
                entries.insert(key, entry);
            }
            sources.push(src);
        }
        Ok(Checkpoint {
            path: index.to_path_buf(),
            format: CheckpointFormat::ShardedSafetensors,
            sources,
            entries,
        })
    }

    /// Opens a PyTorch pickle (`torch.save` output: zip, legacy or tar container) with
    /// burn-store's `PytorchReader`. `top_level_key` selects a nested state dict, e.g.
    /// `Some("state_dict")` or `Some("model")`; nested dicts are otherwise flattened with `.`.
    pub fn open_pytorch(
        path: impl AsRef<Path>,
        top_level_key: Option<&str>,
    ) -> Result<Self, WeightsError> {
        let path = path.as_ref();
        // Give a clean I/O error (not a reader message) for a missing file.
        File::open(path).map_err(io_err(path))?;
        let read = catch_unwind(AssertUnwindSafe(|| match top_level_key {
            Some(k) => PytorchReader::with_top_level_key(path, k),
            None => PytorchReader::new(path),
        }));
        let reader = match read {
            Ok(Ok(r)) => r,
            Ok(Err(e)) => {
                return Err(WeightsError::Pickle {
                    file: path.to_path_buf(),
                    reason: e.to_string(),
                });
            }
            Err(_) => {
                return Err(WeightsError::Pickle {
                    file: path.to_path_buf(),
                    reason: "the reader panicked on this file".into(),
                });
            }
        };
        let tensors = reader.into_tensors();
        let entries = tensors
            .iter()
            .map(|(k, snap)| {
                (
                    k.clone(),
                    Entry {
                        info: TensorInfo {
                            dtype: WeightDType::from_burn(snap.dtype),
                            shape: snap.shape.to_vec(),
                        },
                        source: 0,
                        range: (0, 0),
                    },
                )
            })
            .collect();
        Ok(Checkpoint {
            path: path.to_path_buf(),
            format: CheckpointFormat::Pytorch,
            sources: vec![Source::Pytorch {
                path: path.to_path_buf(),
                tensors,
            }],
            entries,
        })
    }

    fn open_dir(dir: &Path) -> Result<Self, WeightsError> {
        let mut index = Vec::new();
        let mut single = Vec::new();
        for e in std::fs::read_dir(dir).map_err(io_err(dir))? {
            let p = e.map_err(io_err(dir))?.path();
            if ends_with_ci(&p, ".safetensors.index.json") {
                index.push(p);
            } else if ends_with_ci(&p, ".safetensors") {
                single.push(p);
            }
        }
        index.sort();
        single.sort();
        match (index.as_slice(), single.as_slice()) {
            ([one], _) => Self::open_sharded(one),
            ([], [one]) => Self::open_safetensors(one),
            ([], []) => Err(WeightsError::UnknownFormat {
                file: dir.to_path_buf(),
                reason: "the folder holds no *.safetensors.index.json and no *.safetensors".into(),
            }),
            _ => Err(WeightsError::UnknownFormat {
                file: dir.to_path_buf(),
                reason: format!(
                    "ambiguous folder ({} index files, {} safetensors files); name the file",
                    index.len(),
                    single.len()
                ),
            }),
        }
    }

    /// The path that was opened (file, index file or folder entry point).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The container format.
    pub fn format(&self) -> CheckpointFormat {
        self.format
    }

    /// Number of stored tensors.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the checkpoint stores no tensor.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every stored key, sorted.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.entries.keys().map(String::as_str)
    }

    /// Whether `key` is stored.
    pub fn contains(&self, key: &str) -> bool {
        self.entries.contains_key(key)
    }

    /// Dtype and shape of `key`.
    pub fn info(&self, key: &str) -> Option<&TensorInfo> {
        self.entries.get(key).map(|e| &e.info)
    }

    /// The file that stores `key` (a shard for sharded checkpoints).
    pub fn file_of(&self, key: &str) -> Option<&Path> {
        self.entries.get(key).map(|e| self.sources[e.source].path())
    }

    fn file_for(&self, key: &str) -> PathBuf {
        self.file_of(key)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.path.clone())
    }

    /// Reads one tensor to host memory in its stored dtype and shape (float types only).
    pub fn read(&self, key: &str) -> Result<TensorData, WeightsError> {
        let entry = self
            .entries
            .get(key)
            .ok_or_else(|| WeightsError::MissingKeys {
                file: self.path.clone(),
                keys: vec![key.to_string()],
            })?;
        let file = self.sources[entry.source].path().to_path_buf();
        if !entry.info.dtype.is_float() {
            return Err(WeightsError::UnsupportedDType {
                file,
                key: key.to_string(),
                dtype: entry.info.dtype.to_string(),
            });
        }
        match &self.sources[entry.source] {
            Source::Safetensors {
                file: handle,
                data_start,
                ..
            } => {
                let (start, end) = entry.range;
                let len = usize::try_from(end - start).map_err(|_| WeightsError::Corrupt {
                    file: file.clone(),
                    reason: format!("tensor `{key}` does not fit in memory"),
                })?;
                let mut bytes = vec![0u8; len];
                {
                    let mut f = handle.lock().map_err(|_| WeightsError::Corrupt {
                        file: file.clone(),
                        reason: "file handle poisoned by an earlier failure".into(),
                    })?;
                    f.seek(SeekFrom::Start(data_start + start))
                        .map_err(io_err(&file))?;
                    f.read_exact(&mut bytes).map_err(io_err(&file))?;
                }
                Ok(decode_le(&bytes, &entry.info))
            }
            Source::Pytorch { tensors, .. } => {
                let snap = tensors.get(key).ok_or_else(|| WeightsError::Pickle {
                    file: file.clone(),
                    reason: format!("tensor `{key}` vanished from the reader"),
                })?;
                let data = snap.to_data().map_err(|e| WeightsError::Pickle {
                    file: file.clone(),
                    reason: format!("tensor `{key}`: {e}"),
                })?;
                let expected: usize = entry.info.shape.iter().product();
                if data.num_elements() != expected {
                    return Err(WeightsError::Pickle {
                        file,
                        reason: format!(
                            "tensor `{key}`: {} elements read, {expected} expected",
                            data.num_elements()
                        ),
                    });
                }
                Ok(data)
            }
        }
    }

    /// Reads one tensor as an `f32` vector (row-major, stored shape) plus its shape.
    pub fn read_f32(&self, key: &str) -> Result<(Vec<f32>, Vec<usize>), WeightsError> {
        let data = self.read(key)?.convert::<f32>();
        let shape = data.shape.to_vec();
        let values = data.into_vec::<f32>().map_err(|e| WeightsError::Corrupt {
            file: self.file_for(key),
            reason: format!("tensor `{key}`: {e:?}"),
        })?;
        Ok((values, shape))
    }

    /// Loads one stored tensor as it is (no key map, no transpose), cast to `dtype`. The rank
    /// must be `D`.
    pub fn tensor<B: Backend, const D: usize>(
        &self,
        key: &str,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Tensor<B, D>, WeightsError> {
        let shape = self.info(key).map(|i| i.shape.clone()).unwrap_or_default();
        if shape.len() != D {
            if !self.contains(key) {
                return Err(WeightsError::MissingKeys {
                    file: self.path.clone(),
                    keys: vec![key.to_string()],
                });
            }
            return Err(WeightsError::RankMismatch {
                file: self.file_for(key),
                key: key.to_string(),
                requested: D,
                shape,
            });
        }
        let data = self.read(key)?;
        Ok(to_device(data, dtype, device))
    }

    /// Checks the checkpoint against a model's [`KeyMap`] without loading anything.
    ///
    /// Reports, in this order of precedence: conflicting declarations, [`MissingKeys`] (all of
    /// them), the first [`UnsupportedDType`], the first [`ShapeMismatch`], then
    /// [`UnexpectedKeys`] (all stored keys neither declared nor covered by an ignore rule).
    ///
    /// [`MissingKeys`]: WeightsError::MissingKeys
    /// [`UnsupportedDType`]: WeightsError::UnsupportedDType
    /// [`ShapeMismatch`]: WeightsError::ShapeMismatch
    /// [`UnexpectedKeys`]: WeightsError::UnexpectedKeys
    pub fn validate(&self, map: &KeyMap) -> Result<(), WeightsError> {
        if let Some((key, first, second)) = map.conflicts.first() {
            return Err(WeightsError::ConflictingDeclaration {
                file: self.path.clone(),
                key: key.clone(),
                first: first.clone(),
                second: second.clone(),
            });
        }
        let missing: Vec<String> = map
            .specs
            .iter()
            .filter(|s| !self.entries.contains_key(&s.key))
            .map(|s| s.key.clone())
            .collect();
        if !missing.is_empty() {
            return Err(WeightsError::MissingKeys {
                file: self.path.clone(),
                keys: missing,
            });
        }
        for spec in &map.specs {
            let Some(entry) = self.entries.get(&spec.key) else {
                continue;
            };
            if !entry.info.dtype.is_float() {
                return Err(WeightsError::UnsupportedDType {
                    file: self.file_for(&spec.key),
                    key: spec.key.clone(),
                    dtype: entry.info.dtype.to_string(),
                });
            }
        }
        for spec in &map.specs {
            let Some(entry) = self.entries.get(&spec.key) else {
                continue;
            };
            if !spec.accepts(&entry.info.shape) {
                return Err(WeightsError::ShapeMismatch {
                    file: self.file_for(&spec.key),
                    key: spec.key.clone(),
                    expected: spec.shape.clone(),
                    actual: entry.info.shape.clone(),
                });
            }
        }
        let unexpected: Vec<String> = self
            .entries
            .keys()
            .filter(|k| !map.index.contains_key(*k) && !map.is_ignored(k))
            .cloned()
            .collect();
        if !unexpected.is_empty() {
            return Err(WeightsError::UnexpectedKeys {
                file: self.path.clone(),
                keys: unexpected,
            });
        }
        Ok(())
    }

    /// [`validate`](Checkpoint::validate)s against `map`, then returns a [`Weights`] view that
    /// builds the declared tensors on `device` in `dtype`.
    pub fn load<'c, B: Backend>(
        &'c self,
        map: &'c KeyMap,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Weights<'c, B>, WeightsError> {
        self.validate(map)?;
        Ok(Weights {
            checkpoint: self,
            map,
            dtype,
            device: device.clone(),
        })
    }
}

fn sources_path(sources: &[Source], i: usize) -> PathBuf {
    sources
        .get(i)
        .map(|s| s.path().to_path_buf())
        .unwrap_or_default()
}

fn read_up_to(f: &mut File, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match f.read(&mut buf[n..])? {
            0 => break,
            k => n += k,
        }
    }
    Ok(n)
}

/// Parses and validates one safetensors header; fills `entries` with `source` as their origin.
fn read_safetensors_header(
    path: &Path,
    source: usize,
    entries: &mut BTreeMap<String, Entry>,
) -> Result<Source, WeightsError> {
    let mut file = File::open(path).map_err(io_err(path))?;
    let file_len = file.metadata().map_err(io_err(path))?.len();
    let truncated = |expected: u64| WeightsError::Truncated {
        file: path.to_path_buf(),
        expected,
        actual: file_len,
    };
    let corrupt = |reason: String| WeightsError::CorruptHeader {
        file: path.to_path_buf(),
        reason,
    };
    if file_len < 8 {
        return Err(truncated(8));
    }
    let mut len_bytes = [0u8; 8];
    file.read_exact(&mut len_bytes).map_err(io_err(path))?;
    let header_len = u64::from_le_bytes(len_bytes);
    if header_len > MAX_HEADER_BYTES {
        return Err(corrupt(format!(
            "header length {header_len} exceeds the {MAX_HEADER_BYTES}-byte limit"
        )));
    }
    if header_len < 2 {
        return Err(corrupt(format!("header length {header_len} is too small")));
    }
    let data_start = 8 + header_len;
    if file_len < data_start {
        return Err(truncated(data_start));
    }
    // header_len ≤ 100 MB, so it fits in usize everywhere we build
    let mut header = vec![0u8; header_len as usize];
    file.read_exact(&mut header).map_err(io_err(path))?;
    let text =
        std::str::from_utf8(&header).map_err(|e| corrupt(format!("header is not UTF-8: {e}")))?;
    if !text.trim_start().starts_with('{') {
        return Err(corrupt("header is not a JSON object".into()));
    }
    // `Metadata`'s deserializer checks that the byte ranges are contiguous, ordered and match
    // dtype × shape.
    let meta: safetensors::tensor::Metadata =
        serde_json::from_str(text).map_err(|e| corrupt(e.to_string()))?;
    let data_len = meta.data_len() as u64;
    let total = data_start
        .checked_add(data_len)
        .ok_or_else(|| corrupt("data length overflows".into()))?;
    if file_len < total {
        return Err(truncated(total));
    }
    if file_len > total {
        return Err(WeightsError::Corrupt {
            file: path.to_path_buf(),
            reason: format!(
                "{} trailing bytes after the last tensor (header accounts for {total} bytes)",
                file_len - total
            ),
        });
    }
    for (key, info) in meta.tensors() {
        let (s, e) = info.data_offsets;
        entries.insert(
            key,
            Entry {
                info: TensorInfo {
                    dtype: WeightDType::from_safetensors(info.dtype),
                    shape: info.shape.clone(),
                },
                source,
                range: (s as u64, e as u64),
            },
        );
    }
    Ok(Source::Safetensors {
        path: path.to_path_buf(),
        file: Mutex::new(file),
        data_start,
    })
}

/// Little-endian bytes (length already validated against dtype × shape) → `TensorData`.
fn decode_le(bytes: &[u8], info: &TensorInfo) -> TensorData {
    let shape = info.shape.clone();
    match info.dtype {
        WeightDType::F64 => TensorData::new(
            bytes
                .chunks_exact(8)
                .map(|c| {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(c);
                    f64::from_le_bytes(a)
                })
                .collect::<Vec<_>>(),
            shape,
        ),
        WeightDType::F32 => TensorData::new(
            bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect::<Vec<_>>(),
            shape,
        ),
        WeightDType::F16 => TensorData::new(
            bytes
                .chunks_exact(2)
                .map(|c| f16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect::<Vec<_>>(),
            shape,
        ),
        WeightDType::BF16 => TensorData::new(
            bytes
                .chunks_exact(2)
                .map(|c| bf16::from_bits(u16::from_le_bytes([c[0], c[1]])))
                .collect::<Vec<_>>(),
            shape,
        ),
        // `read` rejects non-float types before decoding.
        WeightDType::Other(_) => TensorData::new(Vec::<f32>::new(), [0]),
    }
}

/// The storage dtype used on the host for a requested float dtype.
fn host_dtype(dtype: FloatDType) -> DType {
    match dtype {
        FloatDType::F64 => DType::F64,
        FloatDType::F16 => DType::F16,
        FloatDType::BF16 => DType::BF16,
        FloatDType::F32 | FloatDType::Flex32 => DType::F32,
    }
}

fn to_device<B: Backend, const D: usize>(
    data: TensorData,
    dtype: FloatDType,
    device: &B::Device,
) -> Tensor<B, D> {
    let data = data.convert_dtype(host_dtype(dtype));
    Tensor::from_data(data, (device, DType::from(dtype)))
}

/// Transposes a row-major `[rows, cols]` buffer.
fn transpose<T: Copy>(v: &[T], rows: usize, cols: usize) -> Vec<T> {
    let mut out = Vec::with_capacity(v.len());
    for c in 0..cols {
        for r in 0..rows {
            out.push(v[r * cols + c]);
        }
    }
    out
}

fn transpose_data<E: Element + Copy>(
    data: TensorData,
    rows: usize,
    cols: usize,
) -> Result<TensorData, String> {
    let v = data.into_vec::<E>().map_err(|e| format!("{e:?}"))?;
    if v.len() != rows * cols {
        return Err(format!("{} elements, {} expected", v.len(), rows * cols));
    }
    Ok(TensorData::new(transpose(&v, rows, cols), [cols, rows]))
}

/// How a declared tensor is stored and turned into a burn tensor.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ParamKind {
    /// Loaded with the stored shape.
    Plain,
    /// A PyTorch `Linear` weight stored `[out, in]`, loaded transposed as burn's `[in, out]`.
    LinearWeight,
    /// Like [`ParamKind::LinearWeight`], but a 1×1 convolution weight `[out, in, 1, 1]` is also
    /// accepted (and squeezed), as in LDM/BFL VAE attention and some old diffusers files.
    LinearWeightOrConv1x1,
}

/// One declared parameter: checkpoint key, expected stored shape, and how to load it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParamSpec {
    /// Checkpoint key.
    pub key: String,
    /// Expected stored shape (PyTorch layout: a `Linear` weight is `[out, in]`).
    pub shape: Vec<usize>,
    /// Loading rule.
    pub kind: ParamKind,
}

impl ParamSpec {
    /// Whether a stored shape satisfies this spec.
    pub fn accepts(&self, stored: &[usize]) -> bool {
        if stored == self.shape.as_slice() {
            return true;
        }
        self.kind == ParamKind::LinearWeightOrConv1x1
            && stored.len() == 4
            && stored[2] == 1
            && stored[3] == 1
            && stored[..2] == self.shape[..]
    }

    /// The shape of the burn tensor built from it (`[in, out]` for linear weights).
    pub fn burn_shape(&self) -> Vec<usize> {
        match self.kind {
            ParamKind::Plain => self.shape.clone(),
            ParamKind::LinearWeight | ParamKind::LinearWeightOrConv1x1 => {
                self.shape.iter().rev().copied().collect()
            }
        }
    }
}

/// The parameters a model needs from a checkpoint, and the stored keys it deliberately ignores.
#[derive(Debug, Clone, Default)]
pub struct KeyMap {
    specs: Vec<ParamSpec>,
    index: HashMap<String, usize>,
    conflicts: Vec<(String, Vec<usize>, Vec<usize>)>,
    ignored_prefixes: Vec<String>,
    scope: Option<String>,
}

fn join(prefix: &str, name: &str) -> String {
    if prefix.is_empty() {
        name.to_string()
    } else {
        format!("{prefix}.{name}")
    }
}

impl KeyMap {
    /// An empty map.
    pub fn new() -> Self {
        Self::default()
    }

    /// Declares one parameter. Declaring the same key again with the same shape and kind is a
    /// no-op; with a different one it is reported by [`Checkpoint::validate`].
    pub fn declare(
        &mut self,
        key: impl Into<String>,
        shape: &[usize],
        kind: ParamKind,
    ) -> &mut Self {
        let key = key.into();
        if let Some(&i) = self.index.get(&key) {
            let prev = &self.specs[i];
            if prev.shape != shape || prev.kind != kind {
                self.conflicts
                    .push((key, prev.shape.clone(), shape.to_vec()));
            }
            return self;
        }
        self.index.insert(key.clone(), self.specs.len());
        self.specs.push(ParamSpec {
            key,
            shape: shape.to_vec(),
            kind,
        });
        self
    }

    /// Declares a tensor loaded with its stored shape.
    pub fn tensor(&mut self, key: impl Into<String>, shape: &[usize]) -> &mut Self {
        self.declare(key, shape, ParamKind::Plain)
    }

    /// Declares `{prefix}.weight` (`[d_out, d_in]`) and, with `bias`, `{prefix}.bias`
    /// (`[d_out]`) of a PyTorch `Linear`.
    pub fn linear(&mut self, prefix: &str, d_in: usize, d_out: usize, bias: bool) -> &mut Self {
        self.declare(
            join(prefix, "weight"),
            &[d_out, d_in],
            ParamKind::LinearWeight,
        );
        if bias {
            self.tensor(join(prefix, "bias"), &[d_out]);
        }
        self
    }

    /// Like [`KeyMap::linear`], also accepting a `[d_out, d_in, 1, 1]` 1×1-conv weight.
    pub fn linear_or_conv1x1(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> &mut Self {
        self.declare(
            join(prefix, "weight"),
            &[d_out, d_in],
            ParamKind::LinearWeightOrConv1x1,
        );
        if bias {
            self.tensor(join(prefix, "bias"), &[d_out]);
        }
        self
    }

    /// Declares `{prefix}.weight` (`[c_out, c_in, k0, k1]`) and optionally `{prefix}.bias` of a
    /// `Conv2d` (groups = 1).
    pub fn conv2d(
        &mut self,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: [usize; 2],
        bias: bool,
    ) -> &mut Self {
        self.tensor(join(prefix, "weight"), &[c_out, c_in, kernel[0], kernel[1]]);
        if bias {
            self.tensor(join(prefix, "bias"), &[c_out]);
        }
        self
    }

    /// Declares the affine `{prefix}.weight` and `{prefix}.bias` (`[channels]`) of a
    /// GroupNorm/LayerNorm.
    pub fn norm(&mut self, prefix: &str, channels: usize) -> &mut Self {
        self.tensor(join(prefix, "weight"), &[channels]);
        self.tensor(join(prefix, "bias"), &[channels])
    }

    /// Stored keys starting with `prefix` are ignored (not reported as unexpected), e.g. a
    /// VAE decoder ignores `encoder.` and `quant_conv.`.
    pub fn ignore_prefix(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.ignored_prefixes.push(prefix.into());
        self
    }

    /// Stored keys that do **not** start with `prefix` are ignored: the model lives under
    /// `prefix` in a larger checkpoint (e.g. `first_stage_model.` in an LDM file).
    pub fn only_within(&mut self, prefix: impl Into<String>) -> &mut Self {
        self.scope = Some(prefix.into());
        self
    }

    /// Whether an undeclared stored key is covered by an ignore rule.
    pub fn is_ignored(&self, key: &str) -> bool {
        if let Some(scope) = &self.scope
            && !key.starts_with(scope.as_str())
        {
            return true;
        }
        self.ignored_prefixes
            .iter()
            .any(|p| key.starts_with(p.as_str()))
    }

    /// The declaration of `key`.
    pub fn get(&self, key: &str) -> Option<&ParamSpec> {
        self.index.get(key).map(|&i| &self.specs[i])
    }

    /// Every declaration, in declaration order.
    pub fn specs(&self) -> &[ParamSpec] {
        &self.specs
    }

    /// Number of declared parameters.
    pub fn len(&self) -> usize {
        self.specs.len()
    }

    /// Whether nothing is declared.
    pub fn is_empty(&self) -> bool {
        self.specs.is_empty()
    }
}

/// A validated checkpoint + key map, building burn tensors and layers on one device in one
/// float dtype. Obtained from [`Checkpoint::load`].
pub struct Weights<'c, B: Backend> {
    checkpoint: &'c Checkpoint,
    map: &'c KeyMap,
    dtype: FloatDType,
    device: B::Device,
}

impl<B: Backend> fmt::Debug for Weights<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weights")
            .field("checkpoint", &self.checkpoint.path)
            .field("params", &self.map.len())
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl<'c, B: Backend> Weights<'c, B> {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &'c Checkpoint {
        self.checkpoint
    }

    /// The float dtype tensors are built in.
    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// The device tensors are built on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Builds the declared tensor `key`: stored data cast to [`Weights::dtype`]; linear weights
    /// transposed to `[in, out]` (1×1-conv weights squeezed first).
    pub fn tensor<const D: usize>(&self, key: &str) -> Result<Tensor<B, D>, WeightsError> {
        let file = || self.checkpoint.file_for(key);
        let spec = self.map.get(key).ok_or_else(|| WeightsError::NotDeclared {
            file: self.checkpoint.path.clone(),
            key: key.to_string(),
        })?;
        let burn_shape = spec.burn_shape();
        if burn_shape.len() != D {
            return Err(WeightsError::RankMismatch {
                file: file(),
                key: key.to_string(),
                requested: D,
                shape: burn_shape,
            });
        }
        let data = self.checkpoint.read(key)?;
        let data = match spec.kind {
            ParamKind::Plain => data,
            ParamKind::LinearWeight | ParamKind::LinearWeightOrConv1x1 => {
                let (rows, cols) = (spec.shape[0], spec.shape[1]);
                let data = data.convert_dtype(host_dtype(self.dtype));
                let t = match data.dtype {
                    DType::F64 => transpose_data::<f64>(data, rows, cols),
                    DType::F16 => transpose_data::<f16>(data, rows, cols),
                    DType::BF16 => transpose_data::<bf16>(data, rows, cols),
                    _ => transpose_data::<f32>(data, rows, cols),
                };
                t.map_err(|reason| WeightsError::Corrupt {
                    file: file(),
                    reason: format!("tensor `{key}`: {reason}"),
                })?
            }
        };
        Ok(to_device(data, self.dtype, &self.device))
    }

    /// Builds a `Linear` from `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn linear(&self, prefix: &str, bias: bool) -> Result<Linear<B>, WeightsError> {
        let weight = self.tensor::<2>(&join(prefix, "weight"))?;
        let bias = if bias {
            Some(Param::from_tensor(self.tensor::<1>(&join(prefix, "bias"))?))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// Builds a stride-1, dilation-1, groups-1 `Conv2d` from `{prefix}.weight` (and
    /// `{prefix}.bias` when `bias`) with symmetric zero `padding`.
    pub fn conv2d(
        &self,
        prefix: &str,
        bias: bool,
        padding: [usize; 2],
    ) -> Result<Conv2d<B>, WeightsError> {
        let weight = self.tensor::<4>(&join(prefix, "weight"))?;
        let [_, _, k0, k1] = weight.dims();
        let bias = if bias {
            Some(Param::from_tensor(self.tensor::<1>(&join(prefix, "bias"))?))
        } else {
            None
        };
        Ok(Conv2d {
            weight: Param::from_tensor(weight),
            bias,
            stride: [1, 1],
            kernel_size: [k0, k1],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]),
        })
    }

    /// Builds an affine `GroupNorm` from `{prefix}.weight` and `{prefix}.bias`.
    pub fn group_norm(
        &self,
        prefix: &str,
        num_groups: usize,
        epsilon: f64,
    ) -> Result<GroupNorm<B>, WeightsError> {
        let gamma = self.tensor::<1>(&join(prefix, "weight"))?;
        let beta = self.tensor::<1>(&join(prefix, "bias"))?;
        let [channels] = gamma.dims();
        Ok(GroupNorm {
            gamma: Some(Param::from_tensor(gamma)),
            beta: Some(Param::from_tensor(beta)),
            num_groups,
            num_channels: channels,
            epsilon,
            affine: true,
        })
    }
}
