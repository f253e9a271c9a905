//! The one error type of the rotary core.

use dype_core::DypeError;

/// Errors of table validation, upload and rotation.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum RotaryError {
    /// The positional math rejected an input (dype-core).
    #[error(transparent)]
    Math(#[from] DypeError),
    /// A sample's positions have another number of axes than the rope.
    #[error("sample {sample}: {found} position axes, the rope has {expected}")]
    SampleAxes {
        /// Which sample.
        sample: usize,
        /// The rope's axes.
        expected: usize,
        /// The sample's axes.
        found: usize,
    },
    /// A sample has another token count than the first sample of the batch.
    #[error("sample {sample}: {found} tokens, the first sample has {expected}")]
    SampleTokens {
        /// Which sample.
        sample: usize,
        /// The first sample's tokens.
        expected: usize,
        /// This sample's tokens.
        found: usize,
    },
    /// Rows given for a [`RotaryIndex`](super::RotaryIndex) built for other row counts.
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
}
