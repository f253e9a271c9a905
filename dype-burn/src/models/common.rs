//! Small building blocks shared by the DiT ports (FiTv2, FLUX.1).

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// LayerNorm / RMSNorm epsilon of both ports.
pub(crate) const EPS: f64 = 1e-6;

/// Upcasts half-precision tensors to f32 (f32/f64 unchanged).
pub(crate) fn to_f32<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    if x.dtype() == DType::F64 {
        x
    } else {
        x.cast(DType::F32)
    }
}

/// LayerNorm over the last dimension, eps 1e-6, no affine parameters; statistics in f32 even when
/// the model runs in bf16/f16, result in the input's dtype.
pub(crate) fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    ((x - mean) / var.add_scalar(EPS).sqrt()).cast(dtype)
}

/// adaLN modulation `x·(1 + scale) + shift` with `[B, D]` vectors broadcast over tokens.
pub(crate) fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
) -> Tensor<B, 3> {
    x * scale.unsqueeze_dim::<3>(1).add_scalar(1.0) + shift.unsqueeze_dim(1)
}

/// Casts every float parameter of `module` to `dtype` (random-weight models for timing).
#[cfg(feature = "text")]
pub(crate) fn cast_params<B: Backend, M: burn::module::Module<B>>(
    module: M,
    dtype: burn::tensor::FloatDType,
) -> M {
    struct Caster(burn::tensor::FloatDType);
    impl<B: Backend> burn::module::ModuleMapper<B> for Caster {
        fn map_float<const D: usize>(
            &mut self,
            param: burn::module::Param<Tensor<B, D>>,
        ) -> burn::module::Param<Tensor<B, D>> {
            param.map(|t| t.cast(self.0))
        }
    }
    module.map(&mut Caster(dtype))
}
