//! Precision casts: statistics and scores run in f32 when a model runs in bf16/f16.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Upcasts half-precision tensors to f32 (f32/f64 unchanged).
pub(crate) fn to_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() == DType::F64 {
        x
    } else {
        x.cast(DType::F32)
    }
}
