//! Sinusoidal timestep features of the two DiTs. They differ on purpose (each matches its
//! reference bit for bit): FiT uses the raw time and f64 frequencies, FLUX scales by 1000 and
//! computes its frequencies in f32 as torch does.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

/// FiT's timestep features: `[cos(t·f), sin(t·f)]`, `f_i = exp(−ln(10000)·i/128)`, t in [0, 1] raw.
pub(crate) fn fit_timestep_features<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let half = 128;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let device = t.device();
    let f =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze_dim::<2>(0);
    let args = t.unsqueeze_dim::<2>(1) * f;
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

/// FLUX's timestep embedding of `t` `[B]` (σ or guidance, *not* yet scaled): the argument is
/// `1000·t`, `f_i = exp(−ln(10⁴)·i/128)` (computed in f32 as torch does), output `[cos, sin]`
/// `[B, 256]`.
pub(crate) fn flux_timestep_embedding<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let half = 128usize;
    let ln = -(10_000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (ln * i as f32 / half as f32).exp())
        .collect();
    let device = t.device();
    let f =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze_dim::<2>(0);
    let args = t.cast(DType::F32).mul_scalar(1000.0).unsqueeze_dim::<2>(1) * f;
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}
