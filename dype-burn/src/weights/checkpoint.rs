//! [`Checkpoint`] opening and structure (keys, dtypes, shapes); no tensor data is read here.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::fs::File;
use std::io::Read;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use burn::tensor::DType;
use burn_store::TensorSnapshot;
use burn_store::pytorch::PytorchReader;

use super::error::WeightsError;

/// Largest safetensors header accepted (the `safetensors` crate uses the same limit).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// Element type of a stored tensor.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
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
#[non_exhaustive]
pub enum CheckpointFormat {
    /// One `.safetensors` file.
    Safetensors,
    /// A diffusers/transformers sharded checkpoint: `*.safetensors.index.json` + shards.
    ShardedSafetensors,
    /// A `torch.save` pickle (zip, legacy or tar container).
    Pytorch,
}

pub(super) enum Source {
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
    pub(super) fn path(&self) -> &Path {
        match self {
            Source::Safetensors { path, .. } | Source::Pytorch { path, .. } => path,
        }
    }
}

pub(super) struct Entry {
    pub(super) info: TensorInfo,
    pub(super) source: usize,
    /// Byte range inside the data section (safetensors only).
    pub(super) range: (u64, u64),
}

/// An opened, structurally validated checkpoint: keys, dtypes and shapes are known; tensor data
/// is read lazily, one tensor at a time.
pub struct Checkpoint {
    pub(super) path: PathBuf,
    format: CheckpointFormat,
    pub(super) sources: Vec<Source>,
    pub(super) entries: BTreeMap<String, Entry>,
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

pub(super) fn io_err(file: &Path) -> impl FnOnce(std::io::Error) -> WeightsError + '_ {
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

    pub(super) fn file_for(&self, key: &str) -> PathBuf {
        self.file_of(key)
            .map(Path::to_path_buf)
            .unwrap_or_else(|| self.path.clone())
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
