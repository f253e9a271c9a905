//! FiTv2 class-conditional generation: seeded noise → ODE sampling with classifier-free guidance
//! and timestep-aware RoPE → SD-VAE decode → RGB8 ([`generate`]), or the sampled image itself for
//! a pixel-space model ([`generate_pixels`]).

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use dype_core::FitTime;

use super::PipelineError;
use crate::models::fitv2::{FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope};
use crate::models::vae::VaeDecoder;
use crate::nn::{patchify, unpatchify};
use crate::pipeline::image::{Rgb8Image, to_rgb8_fit};
use crate::rotary::PairLayout;
use crate::rotary::{RotaryEmbedding, StepReport};
use crate::sampling::{Dopri5Options, dopri5, euler, heun};

/// The ODE solver of a FiT run (time from 0 = noise to 1 = data).
#[derive(Debug, Clone, Copy, PartialEq)]
#[non_exhaustive]
pub enum FitSampler {
    /// Euler with `steps` uniform steps (`steps` evaluations).
    Euler {
        /// Steps.
        steps: usize,
    },
    /// Heun (explicit trapezoid), `2·steps` evaluations.
    Heun {
        /// Steps.
        steps: usize,
    },
    /// Adaptive dopri5 (torchdiffeq semantics) with output points `linspace(0, 1, steps + 1)`.
    Dopri5 {
        /// Output intervals (the reference uses 250 points; only the end is used).
        steps: usize,
        /// Absolute tolerance (1e-6).
        atol: f64,
        /// Relative tolerance (1e-3).
        rtol: f64,
    },
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct FitGenerate {
    /// Class id (ImageNet for FiTv2-XL/2; `< num_classes`).
    pub class: usize,
    /// Image height in pixels: a multiple of the decoder's upscale × the patch size (16 for
    /// FiTv2-XL/2 with the SD VAE; the patch size for a pixel-space model).
    pub height: usize,
    /// Image width in pixels (same rule).
    pub width: usize,
    /// Positional method.
    pub position: FitPosition,
    /// Per-axis scales (FiT `decouple`) or `max(H, W)` for both.
    pub decouple: bool,
    /// Solver.
    pub sampler: FitSampler,
    /// Guidance scale (1 = no guidance, no doubled batch).
    pub cfg_scale: f64,
    /// Which channels guidance mixes.
    pub guided: GuidedChannels,
    /// Noise seed.
    pub seed: u64,
}

/// What the progress callback gets at every model evaluation.
#[derive(Debug, Clone)]
pub struct FitProgress {
    /// Evaluation count so far (1-based).
    pub evaluation: usize,
    /// Expected evaluations (exact for Euler/Heun; `None` for dopri5).
    pub expected: Option<usize>,
    /// FiT time of this evaluation (0 = noise).
    pub t_fit: f64,
    /// The rotary embedding's diagnostics (σ = 1 − t_fit, κ, scales, attention factors).
    pub report: StepReport,
}

/// Runs one generation and returns the image (`height × width` RGB8, FiT's conversion): sampling
/// in the VAE's latent space ([`sample_latent`]), then the SD-VAE decode.
pub fn generate<B: Backend>(
    model: &FitV2<B>,
    vae: &VaeDecoder<B>,
    request: &FitGenerate,
    device: &B::Device,
    progress: impl FnMut(&FitProgress),
) -> Result<Rgb8Image, PipelineError> {
    let latent = sample_latent(model, vae.config().upscale(), request, device, progress)?;
    let image = vae.decode(latent)?;
    to_rgb8_fit(image)?
        .into_iter()
        .next()
        .ok_or(PipelineError::NoImage)
}

/// Runs one generation with a pixel-space model (no VAE: the model's `in_channels` are the image's,
/// in FiT's [−1, 1] range) and returns the image `[1, in_channels, height, width]` as sampled
/// (convert with [`to_rgb8_fit`]).
pub fn generate_pixels<B: Backend>(
    model: &FitV2<B>,
    request: &FitGenerate,
    device: &B::Device,
    progress: impl FnMut(&FitProgress),
) -> Result<Tensor<B, 4>, PipelineError> {
    sample_latent(model, 1, request, device, progress)
}

/// Samples the model's input space (a latent `[1, in_channels, height/upscale, width/upscale]`):
/// seeded noise → ODE from FiT time 0 to 1 with classifier-free guidance and the request's
/// timestep-aware RoPE. `upscale` is the decoder's pixel size of one latent value (8 for the SD
/// VAE, 1 for a pixel-space model).
pub fn sample_latent<B: Backend>(
    model: &FitV2<B>,
    upscale: usize,
    request: &FitGenerate,
    device: &B::Device,
    mut progress: impl FnMut(&FitProgress),
) -> Result<Tensor<B, 4>, PipelineError> {
    let cfg = model.config();
    let unit = upscale.max(1) * cfg.patch_size;
    if request.height == 0
        || request.width == 0
        || !request.height.is_multiple_of(unit)
        || !request.width.is_multiple_of(unit)
    {
        return Err(PipelineError::Size {
            height: request.height,
            width: request.width,
            unit,
        });
    }
    if request.class >= cfg.num_classes {
        return Err(PipelineError::Class {
            class: request.class,
            classes: cfg.num_classes,
        });
    }
    if !(request.cfg_scale.is_finite() && request.cfg_scale >= 0.0) {
        return Err(PipelineError::Parameter {
            name: "cfg_scale",
            value: request.cfg_scale,
            rule: "finite and >= 0",
        });
    }
    let (steps, expected) = match request.sampler {
        FitSampler::Euler { steps } => (steps, Some(steps)),
        FitSampler::Heun { steps } => (steps, Some(2 * steps)),
        FitSampler::Dopri5 { steps, .. } => (steps, None),
    };
    if steps == 0 {
        return Err(PipelineError::Zero { name: "steps" });
    }
    let (h, w) = (request.height / unit, request.width / unit);
    let n = h * w;
    let latent = crate::pipeline::seeded_noise::<B, 4>(
        request.seed,
        [1, cfg.in_channels, h * cfg.patch_size, w * cfg.patch_size],
        device,
    );
    let z = patchify(latent, cfg.patch_size);
    let guided = request.cfg_scale != 1.0;
    let (state, labels) = if guided {
        (
            Tensor::cat(vec![z.clone(), z], 0),
            vec![request.class as i64, cfg.null_class() as i64],
        )
    } else {
        (z, vec![request.class as i64])
    };
    let batch = labels.len();
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [batch]), device);
    let rope = fit_rope(cfg, request.position, request.decouple)?;
    let mut rotary = RotaryEmbedding::<B>::batch(
        rope,
        vec![fit_grid(h, w, n)?],
        PairLayout::Interleaved,
        device,
    )?;
    let mut evaluation = 0;
    let velocity = |t: f64, x: &Tensor<B, 3>| -> Result<Tensor<B, 3>, PipelineError> {
        let t = t.clamp(0.0, 1.0);
        let report = rotary.set_timestep(FitTime::new(t)?.into())?.clone();
        evaluation += 1;
        progress(&FitProgress {
            evaluation,
            expected,
            t_fit: t,
            report,
        });
        let tt = Tensor::<B, 1>::from_data(TensorData::new(vec![t as f32; batch], [batch]), device);
        let tables = rotary.tables();
        Ok(if guided {
            model.forward_with_cfg(
                x.clone(),
                tt,
                y.clone(),
                tables,
                None,
                request.cfg_scale,
                request.guided,
            )?
        } else {
            model.forward(x.clone(), tt, y.clone(), tables, None)?
        })
    };
    let ts: Vec<f64> = (0..=steps).map(|i| i as f64 / steps as f64).collect();
    let last = match request.sampler {
        FitSampler::Euler { .. } => euler(velocity, state, &ts, |_| {})?,
        FitSampler::Heun { .. } => heun(velocity, state, &ts, |_| {})?,
        FitSampler::Dopri5 { atol, rtol, .. } => {
            let options = Dopri5Options {
                atol,
                rtol,
                ..Dopri5Options::default()
            };
            dopri5(velocity, state, &ts, options, |_| {})?.0
        }
    };
    let tokens = last.narrow(0, 0, 1);
    Ok(unpatchify(tokens, h, w, cfg.patch_size))
}
