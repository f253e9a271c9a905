//! Glue for the examples and for Rust callers: configuration in, image out, with a per-step
//! progress callback. Models, samplers and the VAE stay in their own modules.

mod error;
pub mod fitv2;
pub mod flux;
pub mod image;
pub mod imagenet;
#[cfg(feature = "text")]
pub mod prompt;

pub use error::PipelineError;
pub use image::{ImageError, Rgb8Image, write_png};
pub use imagenet::{ImageNetError, imagenet_class, imagenet_classes};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Standard-normal noise of `shape` from a seeded host RNG (ChaCha8), so the same seed gives the
/// same starting noise on every backend.
pub fn seeded_noise<B: Backend, const D: usize>(
    seed: u64,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}
