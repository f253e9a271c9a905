//! Normalisations computed in f32 (f64 stays f64) whatever the model's dtype, result in the input
//! dtype: the "upcast, normalise, cast back" rule of every port (PyTorch accumulates half-precision
//! norms in f32).

use burn::nn::GroupNorm;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use super::precision::to_f32;

/// LayerNorm / RMSNorm epsilon of the DiT ports (FiTv2, FLUX.1).
pub(crate) const EPS: f64 = 1e-6;

/// LayerNorm over the last dimension without affine parameters, eps [`EPS`] (FiT, FLUX).
pub(crate) fn layer_norm<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    layer_norm_eps(x, EPS)
}

/// LayerNorm over the last dimension without affine parameters: `(x − mean) / sqrt(var + eps)`
/// with the biased variance.
pub(crate) fn layer_norm_eps<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    eps: f64,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let (var, mean) = x.clone().var_mean_bias(D - 1);
    ((x - mean) / var.add_scalar(eps).sqrt()).cast(dtype)
}

/// How an RMS norm divides by the root mean square; the two are not bit-identical, and each port
/// keeps its reference's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RmsForm {
    /// `x · (1 / sqrt(mean(x²) + eps))` (BFL FLUX's `QKNorm`).
    MulReciprocal,
    /// `x / sqrt(mean(x²) + eps)` (HF `T5LayerNorm`).
    #[cfg_attr(not(feature = "text"), allow(dead_code))]
    Divide,
}

/// RMS normalisation over the last dimension without the learned scale, result in the input dtype.
pub(crate) fn rms_norm<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    eps: f64,
    form: RmsForm,
) -> Tensor<B, D> {
    let dtype = x.dtype();
    let xf = to_f32(x);
    let ms = xf.clone().powi_scalar(2).mean_dim(D - 1).add_scalar(eps);
    let normed = match form {
        RmsForm::MulReciprocal => xf * ms.sqrt().recip(),
        RmsForm::Divide => xf / ms.sqrt(),
    };
    normed.cast(dtype)
}

/// GroupNorm computed in f32 (f64 stays f64) and cast back: burn's `GroupNorm` for f32/f64
/// inputs, the same statistics in f32 for half precision.
pub(crate) fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let dtype = x.dtype();
    if matches!(dtype, DType::F32 | DType::F64) {
        return norm.forward(x);
    }
    let [b, c, h, w] = x.dims();
    let g = norm.num_groups;
    let xf = x.cast(DType::F32).reshape([b, g, (c / g) * h * w]);
    let mean = xf.clone().mean_dim(2);
    let centered = xf - mean;
    let var = centered.clone().square().mean_dim(2);
    let normed = (centered / var.add_scalar(norm.epsilon).sqrt()).reshape([b, c, h, w]);
    let normed = normed.cast(dtype);
    match (&norm.gamma, &norm.beta) {
        (Some(gm), Some(bt)) => {
            normed * gm.val().reshape([1, c, 1, 1]) + bt.val().reshape([1, c, 1, 1])
        }
        _ => normed,
    }
}
