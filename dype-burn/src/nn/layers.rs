//! Small layers: adaLN modulation, parameter casts.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

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
