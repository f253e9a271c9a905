//! Device tables: upload factorized cos/sin rows, expand them on the device with token indices
//! uploaded once per resolution, and rotate q/k.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Int, Tensor, TensorData};
use dype_core::PairLayout;
use dype_core::table::{AxisRows, FactorizedTable};

use super::RotaryError;

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
    layout: PairLayout,
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
            layout: PairLayout::default(),
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
            layout: PairLayout::default(),
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

    /// The pair layout these tables rotate in (set by the [`super::RotaryEmbedding`] that built
    /// them; [`PairLayout::Interleaved`] for tables built directly, see [`Self::with_layout`]).
    pub fn layout(&self) -> PairLayout {
        self.layout
    }

    /// The same tables rotating in `layout` (a cheap copy: burn tensors are shared handles).
    pub fn with_layout(&self, layout: PairLayout) -> Self {
        Self {
            layout,
            ..self.clone()
        }
    }

    /// Rotates `x` of shape `[batch, heads, tokens, head_dim]` (queries or keys) in the tables'
    /// own pair layout: a model never restates it.
    pub fn apply(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, RotaryError> {
        apply_rotary(x, &self.cos, &self.sin, self.layout)
    }

    /// [`Self::apply`] for `x` in token-major order `[batch, tokens, heads, head_dim]` (a qkv
    /// projection's output split per head); returns `[batch, heads, tokens, head_dim]`, the
    /// same values as `apply(x.swap_dims(1, 2))`. On burn Flex the transpose happens inside the
    /// fused rotation instead of as a strided copy.
    pub fn apply_token_major(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, RotaryError> {
        #[cfg(feature = "cpu")]
        let x = {
            let [_, tokens, _, head_dim] = x.dims();
            if tokens == self.tokens() && head_dim == self.head_dim() {
                match crate::kernels::flex::rotate(x, &self.cos, &self.sin, self.layout, true) {
                    Ok(out) => return Ok(out),
                    Err(x) => x,
                }
            } else {
                x
            }
        };
        self.apply(x.swap_dims(1, 2))
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
    layout: PairLayout,
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

    #[cfg(feature = "cpu")]
    let x = match crate::kernels::flex::rotate(x, cos, sin, layout, false) {
        Ok(out) => return Ok(out),
        Err(x) => x,
    };
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
        PairLayout::Interleaved => {
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
        PairLayout::HalfSplit => {
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
