//! Small layers: parameter casts (adaLN modulation is in [`crate::kernels`]).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Casts every float parameter of `module` to `dtype` (random-weight models for timing).
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
