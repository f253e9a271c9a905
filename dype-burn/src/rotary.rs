//! Tensor side of the rotary embedding: upload factorized cos/sin tables, expand them on the
//! device, rotate queries and keys.
//!
//! # Data flow
//!
//! The host contract is [`FactorizedTable`] (from `dype_core::table`): for every axis (e.g. `h`
//! and `w` of an image grid) a small `rows × half_dim` block of cos/sin values — the attention
//! factor (YaRN `mscale`) is already folded into them — and for every token the row it uses on
//! each axis. Only these rows and the `tokens × axes` row indices are copied host → device;
//! [`RotaryTables::from_tables`] then gathers (`select`) per axis and concatenates along the last
//! dimension on the device, giving `cos`/`sin` of shape `[batch, tokens, head_dim / 2]`. Axis
//! order is the order of the head dimension: axis 0 covers the first `2·half_dim₀` channels.
//!
//! # Layouts
//!
//! * [`RotaryLayout::Interleaved`] (FLUX, FiT, GPT-J, burn's `RotaryEncoding`): channel pairs
//!   `(x[2i], x[2i+1])` rotate by angle `i`.
//! * [`RotaryLayout::HalfSplit`] (LLaMA / GPT-NeoX / HF `rotate_half`): pairs `(x[i], x[i + D/2])`
//!   rotate by angle `i`.
//!
//! For pair `(a, b)` with table entries `c = f·cos θ`, `s = f·sin θ` the result is
//! `(a·c − b·s, a·s + b·c)`: the rotation by `θ` scaled by the attention factor `f`, applied
//! exactly once (to each of q and k, so `q·k` is scaled by `f²`, as in YaRN).
//!
//! The rotation is computed in f32 whatever the input dtype (f16/bf16 inputs are cast to f32,
//! rotated and cast back; f64 inputs are rotated in f64).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};

pub use dype_core::table::{AxisRows, FactorizedTable};

/// How the channels of one head are paired for the rotation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum RotaryLayout {
    /// Adjacent pairs `(x[2i], x[2i+1])` rotate by angle `i` (FLUX, FiT, GPT-J).
    #[default]
    Interleaved,
    /// Pairs `(x[i], x[i + D/2])` rotate by angle `i` (LLaMA, GPT-NeoX).
    HalfSplit,
}

/// Errors of table validation, upload and rotation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum RotaryError {
    /// Rows given for a [`RotaryIndex`] built for other row counts.
    #[error("sample {sample}, axis {axis}: {found} rows, the index was built for {expected}")]
    RowCountMismatch {
        /// Which sample.
        sample: usize,
        /// Which axis.
        axis: usize,
        /// Rows the index addresses.
        expected: usize,
        /// Rows given.
        found: usize,
    },
    /// An empty slice of tables was given.
    #[error("no rotary table given (empty batch)")]
    EmptyBatch,
    /// A table has zero tokens.
    #[error("rotary table {sample} has zero tokens")]
    NoTokens {
        /// Index of the table in the batch.
        sample: usize,
    },
    /// An axis has `half_dim == 0`.
    #[error("rotary table {sample}, axis {axis}: half_dim is zero")]
    ZeroHalfDim {
        /// Index of the table in the batch.
        sample: usize,
        /// Axis index.
        axis: usize,
    },
    /// Tables of one batch have different token counts.
    #[error(
        "rotary table {sample} has {found} tokens but table 0 has {expected}; a batch must share the token count"
    )]
    BatchTokenMismatch {
        /// Index of the table in the batch.
        sample: usize,
        /// Token count of table 0.
        expected: usize,
        /// Token count of this table.
        found: usize,
    },
    /// Tables of one batch have different axis structure (`half_dim` per axis).
    #[error("rotary table {sample} has axis half-dims {found:?} but table 0 has {expected:?}")]
    BatchAxisMismatch {
        /// Index of the table in the batch.
        sample: usize,
        /// `half_dim` per axis of table 0.
        expected: Vec<usize>,
        /// `half_dim` per axis of this table.
        found: Vec<usize>,
    },
    /// Too many rows on one axis (summed over the batch) to index them with i32 on the device.
    #[error("axis {axis} has {rows} rows over the batch, more than a device index can address")]
    TooManyRows {
        /// Axis index.
        axis: usize,
        /// Rows summed over the batch.
        rows: usize,
    },
    /// The input's last dimension is not `2 × Σ half_dim`.
    #[error(
        "input head_dim {head_dim} does not match the rotary table: expected 2 × Σ half_dim = {expected}"
    )]
    HeadDimMismatch {
        /// Input head dimension.
        head_dim: usize,
        /// `2 × Σ half_dim` of the table.
        expected: usize,
    },
    /// The input's token dimension differs from the table's token count.
    #[error("input has {found} tokens, rotary table has {expected}")]
    TokenCountMismatch {
        /// Table token count.
        expected: usize,
        /// Input token count.
        found: usize,
    },
    /// The input batch neither equals the number of tables nor can a single table be broadcast.
    #[error(
        "input batch {input} is incompatible with {tables} rotary tables (need equal, or one table)"
    )]
    BatchMismatch {
        /// Input batch size.
        input: usize,
        /// Number of tables.
        tables: usize,
    },
    /// Hand-made cos and sin tensors have different shapes.
    #[error("cos has shape {cos:?} but sin has shape {sin:?}")]
    CosSinShapeMismatch {
        /// Shape of cos.
        cos: [usize; 3],
        /// Shape of sin.
        sin: [usize; 3],
    },
    /// [`RotaryEmbedding::apply`] was called before any table was set.
    #[error("rotary embedding has no table yet; call `update` first")]
    NotInitialized,
}

/// Validates a batch of host tables (each valid by construction: see
/// [`FactorizedTable::new`]) for equal token counts and axis widths; returns
/// `(tokens, half_dim per axis)`.
fn validate_tables(tables: &[FactorizedTable]) -> Result<(usize, Vec<usize>), RotaryError> {
    let first = tables.first().ok_or(RotaryError::EmptyBatch)?;
    let tokens = first.tokens();
    let half_dims: Vec<usize> = first.axes().iter().map(|a| a.half_dim()).collect();
    for (sample, table) in tables.iter().enumerate() {
        if table.tokens() != tokens {
            return Err(RotaryError::BatchTokenMismatch {
                sample,
                expected: tokens,
                found: table.tokens(),
            });
        }
        let found: Vec<usize> = table.axes().iter().map(|a| a.half_dim()).collect();
        if found != half_dims {
            return Err(RotaryError::BatchAxisMismatch {
                sample,
                expected: half_dims,
                found,
            });
        }
    }
    Ok((tokens, half_dims))
}

/// Device-resident token → row indices of a batch of [`FactorizedTable`]s (one `[batch·tokens]`
/// Int tensor per axis, offset into the concatenated rows of all samples). They depend only on
/// the positions, so a sampler uploads them once per resolution and only the rows per step.
#[derive(Debug, Clone)]
pub struct RotaryIndex<B: Backend> {
    index: Vec<Tensor<B, 1, Int>>,
    /// `rows[sample][axis]`: the row counts the index addresses.
    rows: Vec<Vec<usize>>,
    half_dims: Vec<usize>,
    tokens: usize,
}

impl<B: Backend> RotaryIndex<B> {
    /// Validates `tables` and uploads their token indices.
    pub fn from_tables(
        tables: &[FactorizedTable],
        device: &B::Device,
    ) -> Result<Self, RotaryError> {
        let (tokens, half_dims) = validate_tables(tables)?;
        let n_axes = half_dims.len();
        let mut index = Vec::with_capacity(n_axes);
        for axis in 0..n_axes {
            let total_rows: usize = tables.iter().map(|t| t.axes()[axis].rows()).sum();
            if i32::try_from(total_rows).is_err() {
                return Err(RotaryError::TooManyRows {
                    axis,
                    rows: total_rows,
                });
            }
            let mut idx = Vec::with_capacity(tables.len() * tokens);
            let mut offset = 0usize;
            for table in tables {
                // Cannot overflow i32: offset + row < total_rows <= i32::MAX (checked above).
                idx.extend(
                    (0..tokens)
                        .map(|t| (offset + table.token_rows()[t * n_axes + axis] as usize) as i32),
                );
                offset += table.axes()[axis].rows();
            }
            index.push(Tensor::<B, 1, Int>::from_data(
                TensorData::new(idx, [tables.len() * tokens]),
                device,
            ));
        }
        let rows = tables
            .iter()
            .map(|t| t.axes().iter().map(|a| a.rows()).collect())
            .collect();
        Ok(RotaryIndex {
            index,
            rows,
            half_dims,
            tokens,
        })
    }
}

/// Device-resident, per-token cos/sin tables of shape `[batch, tokens, head_dim / 2]` (f32).
///
/// `batch` is the number of host tables they were built from; a single table (`batch == 1`)
/// broadcasts over any input batch.
#[derive(Debug, Clone)]
pub struct RotaryTables<B: Backend> {
    cos: Tensor<B, 3>,
    sin: Tensor<B, 3>,
    axis_half_dims: Vec<usize>,
}

impl<B: Backend> RotaryTables<B> {
    /// Uploads one host table and expands it on `device` (`batch == 1`).
    pub fn from_table(table: &FactorizedTable, device: &B::Device) -> Result<Self, RotaryError> {
        Self::from_tables(core::slice::from_ref(table), device)
    }

    /// Uploads a batch of host tables (one per sample, equal token counts and axis layout, any
    /// row counts) and expands them on `device` to `[tables.len(), tokens, head_dim / 2]`.
    ///
    /// Per axis, the rows of all samples are concatenated into one `[Σrows, half_dim]` upload and
    /// the token indices are offset accordingly, so the whole batch costs `3 × axes` small
    /// uploads and `2 × axes` gathers regardless of the batch size. When only the rows change
    /// (a new timestep, same positions), keep the [`RotaryIndex`] and use
    /// [`RotaryTables::from_rows`]: then only the rows travel.
    pub fn from_tables(
        tables: &[FactorizedTable],
        device: &B::Device,
    ) -> Result<Self, RotaryError> {
        let index = RotaryIndex::from_tables(tables, device)?;
        let rows: Vec<&[AxisRows]> = tables.iter().map(|t| t.axes()).collect();
        Self::from_rows(&rows, &index, device)
    }

    /// Uploads per-sample rows (`rows[sample][axis]`) and expands them with device-resident
    /// token indices; the rows must have the counts and widths the index was built for.
    pub fn from_rows(
        rows: &[&[AxisRows]],
        index: &RotaryIndex<B>,
        device: &B::Device,
    ) -> Result<Self, RotaryError> {
        if rows.len() != index.rows.len() {
            return Err(RotaryError::BatchMismatch {
                input: rows.len(),
                tables: index.rows.len(),
            });
        }
        for (sample, (axes, counts)) in rows.iter().zip(&index.rows).enumerate() {
            let found: Vec<usize> = axes.iter().map(|a| a.half_dim()).collect();
            if found != index.half_dims {
                return Err(RotaryError::BatchAxisMismatch {
                    sample,
                    expected: index.half_dims.clone(),
                    found,
                });
            }
            for (axis, (r, &count)) in axes.iter().zip(counts).enumerate() {
                if r.rows() != count {
                    return Err(RotaryError::RowCountMismatch {
                        sample,
                        axis,
                        expected: count,
                        found: r.rows(),
                    });
                }
            }
        }
        let (batch, tokens) = (index.rows.len(), index.tokens);
        let mut cos_parts = Vec::with_capacity(index.half_dims.len());
        let mut sin_parts = Vec::with_capacity(index.half_dims.len());
        for (axis, &half) in index.half_dims.iter().enumerate() {
            let total_rows: usize = rows.iter().map(|a| a[axis].rows()).sum();
            let mut cos = Vec::with_capacity(total_rows * half);
            let mut sin = Vec::with_capacity(total_rows * half);
            for axes in rows {
                cos.extend_from_slice(axes[axis].cos());
                sin.extend_from_slice(axes[axis].sin());
            }
            let cos = Tensor::<B, 2>::from_data(
                TensorData::new(cos, [total_rows, half]),
                (device, DType::F32),
            );
            let sin = Tensor::<B, 2>::from_data(
                TensorData::new(sin, [total_rows, half]),
                (device, DType::F32),
            );
            cos_parts.push(cos.select(0, index.index[axis].clone()));
            sin_parts.push(sin.select(0, index.index[axis].clone()));
        }
        let half_total: usize = index.half_dims.iter().sum();
        let cos = Tensor::cat(cos_parts, 1).reshape([batch, tokens, half_total]);
        let sin = Tensor::cat(sin_parts, 1).reshape([batch, tokens, half_total]);
        Ok(Self {
            cos,
            sin,
            axis_half_dims: index.half_dims.clone(),
        })
    }

    /// Wraps cos/sin tensors computed elsewhere (`[batch or 1, tokens, head_dim / 2]`, attention
    /// factor included). They are cast to f32 if they are not f32 or f64.
    pub fn from_cos_sin(cos: Tensor<B, 3>, sin: Tensor<B, 3>) -> Result<Self, RotaryError> {
        let (c, s) = (cos.dims(), sin.dims());
        if c != s {
            return Err(RotaryError::CosSinShapeMismatch { cos: c, sin: s });
        }
        if c[2] == 0 {
            return Err(RotaryError::ZeroHalfDim { sample: 0, axis: 0 });
        }
        if c[1] == 0 {
            return Err(RotaryError::NoTokens { sample: 0 });
        }
        if c[0] == 0 {
            return Err(RotaryError::EmptyBatch);
        }
        Ok(Self {
            cos: to_compute_dtype(cos),
            sin: to_compute_dtype(sin),
            axis_half_dims: vec![c[2]],
        })
    }

    /// cos table, `[batch, tokens, head_dim / 2]`.
    pub fn cos(&self) -> &Tensor<B, 3> {
        &self.cos
    }

    /// sin table, `[batch, tokens, head_dim / 2]`.
    pub fn sin(&self) -> &Tensor<B, 3> {
        &self.sin
    }

    /// Number of tables (1 = broadcast over the input batch).
    pub fn batch(&self) -> usize {
        self.cos.dims()[0]
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.cos.dims()[1]
    }

    /// Head dimension these tables rotate (`2 × Σ half_dim`).
    pub fn head_dim(&self) -> usize {
        2 * self.cos.dims()[2]
    }

    /// `half_dim` of each axis, in head-dimension order (a single entry for
    /// [`RotaryTables::from_cos_sin`]).
    pub fn axis_half_dims(&self) -> &[usize] {
        &self.axis_half_dims
    }

    /// Rotates `x` of shape `[batch, heads, tokens, head_dim]` (queries or keys).
    pub fn apply(
        &self,
        x: Tensor<B, 4>,
        layout: RotaryLayout,
    ) -> Result<Tensor<B, 4>, RotaryError> {
        apply_rotary(x, &self.cos, &self.sin, layout)
    }
}

/// Casts to f32 unless the tensor is f32 or f64.
fn to_compute_dtype<B: Backend, const D: usize>(t: Tensor<B, D>) -> Tensor<B, D> {
    match t.dtype() {
        DType::F32 | DType::F64 => t,
        _ => t.cast(DType::F32),
    }
}

/// Rotates `x` (`[batch, heads, tokens, head_dim]`) with cos/sin of shape
/// `[batch or 1, tokens, head_dim / 2]` (attention factor included) in the given layout.
///
/// f16/bf16 inputs are rotated in f32 and cast back; f64 inputs are rotated in f64.
pub fn apply_rotary<B: Backend>(
    x: Tensor<B, 4>,
    cos: &Tensor<B, 3>,
    sin: &Tensor<B, 3>,
    layout: RotaryLayout,
) -> Result<Tensor<B, 4>, RotaryError> {
    let [batch, heads, tokens, head_dim] = x.dims();
    let [table_batch, table_tokens, half] = cos.dims();
    let sin_dims = sin.dims();
    if sin_dims != cos.dims() {
        return Err(RotaryError::CosSinShapeMismatch {
            cos: cos.dims(),
            sin: sin_dims,
        });
    }
    if head_dim != 2 * half {
        return Err(RotaryError::HeadDimMismatch {
            head_dim,
            expected: 2 * half,
        });
    }
    if tokens != table_tokens {
        return Err(RotaryError::TokenCountMismatch {
            expected: table_tokens,
            found: tokens,
        });
    }
    if table_batch != batch && table_batch != 1 {
        return Err(RotaryError::BatchMismatch {
            input: batch,
            tables: table_batch,
        });
    }

    let in_dtype = x.dtype();
    let compute = if in_dtype == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let x = if in_dtype == compute {
        x
    } else {
        x.cast(compute)
    };
    let cast_table = |t: &Tensor<B, 3>| {
        if t.dtype() == compute {
            t.clone()
        } else {
            t.clone().cast(compute)
        }
    };
    let (cos, sin) = (cast_table(cos), cast_table(sin));

    let out = match layout {
        RotaryLayout::Interleaved => {
            // Pairs (a, b) → (a·c − b·s, b·c + a·s), computed as x·c + swap(x)·(∓s): one flip and
            // three full-size elementwise ops instead of strided narrows and a concat (bit-identical:
            // `p − q == p + (−q)` and addition commutes exactly).
            let x = x.reshape([batch, heads, tokens, half, 2]);
            let swapped = x.clone().flip([4]);
            let c = cos.reshape([table_batch, 1, tokens, half, 1]);
            let sign =
                Tensor::<B, 1>::from_data(TensorData::new(vec![-1.0f32, 1.0], [2]), &x.device())
                    .cast(compute)
                    .reshape([1, 1, 1, 1, 2]);
            let s = sin.reshape([table_batch, 1, tokens, half, 1]) * sign;
            (x * c + swapped * s).reshape([batch, heads, tokens, head_dim])
        }
        RotaryLayout::HalfSplit => {
            let a = x.clone().narrow(3, 0, half);
            let b = x.narrow(3, half, half);
            let c = cos.reshape([table_batch, 1, tokens, half]);
            let s = sin.reshape([table_batch, 1, tokens, half]);
            let ra = a.clone() * c.clone() - b.clone() * s.clone();
            let rb = a * s + b * c;
            Tensor::cat(vec![ra, rb], 3)
        }
    };
    Ok(if in_dtype == compute {
        out
    } else {
        out.cast(in_dtype)
    })
}

/// Outcome of [`RotaryEmbedding::update`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum CacheStatus {
    /// The host tables equal the cached ones; nothing was uploaded.
    Hit,
    /// The host tables changed (or nothing was cached); they were uploaded and expanded.
    Uploaded,
}

/// Rotary embedding bound to a device, with an upload cache.
///
/// Holds the device cos/sin ([`RotaryTables`]) of the last host tables passed to
/// [`RotaryEmbedding::update`] together with a copy of those host tables, which serve as the
/// cache key: the table content determines everything (positions, timestep-dependent
/// frequencies, attention factor), so an update with equal tables (`PartialEq`, exact f32
/// comparison) is a [`CacheStatus::Hit`] and uploads nothing. A table containing NaN never
/// compares equal and is always re-uploaded.
///
/// Typical use in a sampler loop: build the host table for timestep `t` (dype-core), call
/// `update`, then `apply` to q and k in every attention layer of that step.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding<B: Backend> {
    device: B::Device,
    layout: RotaryLayout,
    host: Vec<FactorizedTable>,
    tables: Option<RotaryTables<B>>,
    last_update: Option<CacheStatus>,
    uploads: u64,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// An empty embedding for `device`; call [`RotaryEmbedding::update`] before applying it.
    pub fn new(device: &B::Device, layout: RotaryLayout) -> Self {
        Self {
            device: device.clone(),
            layout,
            host: Vec::new(),
            tables: None,
            last_update: None,
            uploads: 0,
        }
    }

    /// The pairing layout used by [`RotaryEmbedding::apply`].
    pub fn layout(&self) -> RotaryLayout {
        self.layout
    }

    /// The device the tables live on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Sets the table shared by every sample of the batch (broadcast); uploads only if it differs
    /// from the cached one.
    pub fn update(&mut self, table: &FactorizedTable) -> Result<CacheStatus, RotaryError> {
        self.update_batch(core::slice::from_ref(table))
    }

    /// Sets one table per sample (equal token counts; row counts may differ, e.g. FiT batches of
    /// different resolutions padded to one length); uploads only if they differ from the cached
    /// ones. On error the previous tables stay in place.
    pub fn update_batch(&mut self, tables: &[FactorizedTable]) -> Result<CacheStatus, RotaryError> {
        if self.tables.is_some() && self.host.as_slice() == tables {
            self.last_update = Some(CacheStatus::Hit);
            return Ok(CacheStatus::Hit);
        }
        let expanded = RotaryTables::from_tables(tables, &self.device)?;
        self.host = tables.to_vec();
        self.tables = Some(expanded);
        self.uploads += 1;
        self.last_update = Some(CacheStatus::Uploaded);
        Ok(CacheStatus::Uploaded)
    }

    /// Outcome of the last successful update (`None` before the first one).
    pub fn last_update(&self) -> Option<CacheStatus> {
        self.last_update
    }

    /// Whether the last successful update was a cache hit.
    pub fn last_update_was_hit(&self) -> bool {
        self.last_update == Some(CacheStatus::Hit)
    }

    /// How many times tables were uploaded since creation.
    pub fn upload_count(&self) -> u64 {
        self.uploads
    }

    /// The cached host tables (the cache key); empty before the first update.
    pub fn host_tables(&self) -> &[FactorizedTable] {
        &self.host
    }

    /// The device tables, if an update happened.
    pub fn tables(&self) -> Option<&RotaryTables<B>> {
        self.tables.as_ref()
    }

    /// Drops the cached tables (the next update uploads).
    pub fn clear(&mut self) {
        self.host.clear();
        self.tables = None;
        self.last_update = None;
    }

    /// Rotates `x` (`[batch, heads, tokens, head_dim]`) with the current tables.
    pub fn apply(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, RotaryError> {
        self.tables
            .as_ref()
            .ok_or(RotaryError::NotInitialized)?
            .apply(x, self.layout)
    }

    /// Rotates queries and keys with the current tables.
    pub fn apply_qk(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
    ) -> Result<(Tensor<B, 4>, Tensor<B, 4>), RotaryError> {
        Ok((self.apply(q)?, self.apply(k)?))
    }
}
