//! An adapter for burn-nn's own [`RotaryEncoding`]: LLM code that already uses it gets any
//! dype-core static method (PI, NTK-aware, YaRN, NTK-by-parts, HF's llama3 through
//! [`dype_core::hf::HfRope`], …) in one line.
//!
//! burn's module only takes frequencies (its `init_with_frequency_scaling` hook); it has no place
//! for an attention factor. [`rotary_encoding`] therefore returns the factor beside the module.
//! Apply it as the method prescribes: multiply q **and** k by it after the rotation (YaRN's
//! `mscale` on cos and sin), i.e. the attention logits by its square — or, equivalently, multiply
//! the softmax scale by `factor²`. burn computes its angles in the backend's float type; the
//! frequencies themselves come from dype-core in f64.

use burn::nn::{RotaryEncoding, RotaryEncodingConfig};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorData};
use dype_core::{Axis, AxisScales, DypeError, Method};

/// A burn [`RotaryEncoding`] whose frequencies are `method`'s at scale `scale` (target length over
/// `train_len`, the trained context) for `config.d_model` rotary channels and base `config.theta`,
/// and the attention factor to apply beside it (see the module docs). Dynamic methods are
/// evaluated at their t = 1 setting; burn's module is static.
pub fn rotary_encoding<B: Backend>(
    config: &RotaryEncodingConfig,
    method: Method,
    train_len: f64,
    scale: f64,
    device: &B::Device,
) -> Result<(RotaryEncoding<B>, f64), DypeError> {
    let axis = Axis::new(config.d_model, f64::from(config.theta))?;
    let mut freqs = vec![0.0f64; axis.pairs()];
    let out = method.frequencies(
        &axis,
        &AxisScales::uniform(scale.max(1.0), train_len),
        None,
        &mut freqs,
    )?;
    if config.max_sequence_length == 0 {
        return Err(DypeError::Empty {
            name: "max_sequence_length",
        });
    }
    let freqs: Vec<f32> = freqs.iter().map(|&w| w as f32).collect();
    let n = freqs.len();
    let module = config.init_with_frequency_scaling(
        |_base: Tensor<B, 1>| {
            Tensor::<B, 1>::from_data(TensorData::new(freqs.clone(), [n]), device)
        },
        device,
    );
    Ok((module, out.attention_factor))
}
