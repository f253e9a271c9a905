//! Tensor reads from a [`Checkpoint`], validation against a [`KeyMap`], and device upload.

use std::io::{Read, Seek, SeekFrom};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Element, FloatDType, Tensor, TensorData, bf16, f16};

use super::checkpoint::{Checkpoint, Source, TensorInfo, WeightDType, io_err};
use super::error::WeightsError;
use super::key_map::KeyMap;
use super::view::Weights;

impl Checkpoint {
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
pub(super) fn host_dtype(dtype: FloatDType) -> DType {
    match dtype {
        FloatDType::F64 => DType::F64,
        FloatDType::F16 => DType::F16,
        FloatDType::BF16 => DType::BF16,
        FloatDType::F32 | FloatDType::Flex32 => DType::F32,
    }
}

pub(super) fn to_device<B: Backend, const D: usize>(
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

pub(super) fn transpose_data<E: Element + Copy>(
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
