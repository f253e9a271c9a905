//! FiTv2 class-conditional generation: seeded noise → ODE sampling with classifier-free guidance
//! and timestep-aware RoPE → SD-VAE decode → RGB8 ([`generate`]), or the sampled image itself for
//! a pixel-space model ([`generate_pixels`]).

use burn::tensor::{Int, Tensor, TensorData, backend::Backend};
use dype_core::FitTime;

use super::{PipelineError, check_size};
use crate::models::fitv2::{FitInputs, FitPosition, FitV2, GuidedChannels, fit_grid, fit_layout};
use crate::models::vae::VaeDecoder;
use crate::nn::{patchify, unpatchify};
use crate::pipeline::image::{Rgb8Image, to_rgb8_fit};
use crate::rotary::{RotaryEmbedding, StepReport};
use crate::sampling::{Dopri5Options, FixedMethod, Step, dopri5, fixed};

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
/// in the VAE's latent space ([`sample_batch`] with the request's class and seed), then the
/// SD-VAE decode. `progress` sees every model evaluation; `on_state` sees `x_t` (the latent,
/// [`FitState`]) after every step and the initial noise: the spectral progression of DyPE's
/// Fig. 2 is measured there, on the latents or decoded (`vae.decode(state.x)`). Pass `|_| {}` to
/// ignore it.
pub fn generate<B: Backend>(
    model: &FitV2<B>,
    vae: &VaeDecoder<B>,
    request: &FitGenerate,
    device: &B::Device,
    progress: impl FnMut(&FitProgress),
    on_state: impl FnMut(&FitState<'_, B>),
) -> Result<Rgb8Image, PipelineError> {
    let item = FitItem {
        class: request.class,
        seed: request.seed,
    };
    let latent = sample_batch(
        model,
        vae.config().upscale(),
        request,
        &[item],
        device,
        progress,
        on_state,
    )?;
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
    progress: impl FnMut(&FitProgress),
) -> Result<Tensor<B, 4>, PipelineError> {
    let item = FitItem {
        class: request.class,
        seed: request.seed,
    };
    sample_impl(model, upscale, request, &[item], device, progress, None)
}

/// One sample of a batch: its class and noise seed (the request's own are ignored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FitItem {
    /// Class id (`< num_classes`).
    pub class: usize,
    /// Noise seed.
    pub seed: u64,
}

/// The sampler's state at one output time, lent to [`sample_batch`]'s per-step callback (the
/// solver's own callback: after every step, and the initial noise at index 0).
#[derive(Debug)]
pub struct FitState<'a, B: Backend> {
    /// Index of the output time (0 = the initial noise, `steps` = the result).
    pub index: usize,
    /// FiT time there (0 = noise, 1 = data); the paper's t is `1 − t_fit`.
    pub t_fit: f64,
    /// `x_t` of every sample, `[batch, in_channels, H, W]` in the model's input space (dopri5:
    /// interpolated).
    pub x: &'a Tensor<B, 4>,
}

/// [`sample_latent`] for a batch of samples that share the request's size, method, solver and
/// guidance, each with its own class and noise (`seeded_noise(seed)`, as a batch of one would
/// have): one model evaluation per step for the whole batch. `on_state` sees `x_t` after every
/// step (the spectral progression of the lab is measured there). Returns `[batch, C, H, W]`.
pub fn sample_batch<B: Backend>(
    model: &FitV2<B>,
    upscale: usize,
    request: &FitGenerate,
    items: &[FitItem],
    device: &B::Device,
    progress: impl FnMut(&FitProgress),
    mut on_state: impl FnMut(&FitState<'_, B>),
) -> Result<Tensor<B, 4>, PipelineError> {
    sample_impl(
        model,
        upscale,
        request,
        items,
        device,
        progress,
        Some(&mut on_state),
    )
}

/// [`sample_batch`]; without a state callback no per-step state is unpatchified.
type OnState<'c, B> = Option<&'c mut dyn FnMut(&FitState<'_, B>)>;

fn sample_impl<B: Backend>(
    model: &FitV2<B>,
    upscale: usize,
    request: &FitGenerate,
    items: &[FitItem],
    device: &B::Device,
    mut progress: impl FnMut(&FitProgress),
    mut on_state: OnState<'_, B>,
) -> Result<Tensor<B, 4>, PipelineError> {
    let cfg = model.config();
    let unit = upscale.max(1) * cfg.patch_size;
    check_size(request.height, request.width, unit)?;
    if items.is_empty() {
        return Err(PipelineError::Zero { name: "batch" });
    }
    if let Some(item) = items.iter().find(|i| i.class >= cfg.num_classes) {
        return Err(PipelineError::Class {
            class: item.class,
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
    let n = h.saturating_mul(w);
    let (ph, pw) = (h * cfg.patch_size, w * cfg.patch_size);
    crate::pipeline::check_memory(
        || {
            format!(
                "sampling {} image(s) of {}×{} px ({n} tokens)",
                items.len(),
                request.height,
                request.width
            )
        },
        cfg.in_channels
            .checked_mul(ph)
            .and_then(|c| c.checked_mul(pw))
            .and_then(|state| {
                crate::pipeline::sampling_bytes(
                    items.len(),
                    state,
                    n,
                    cfg.hidden_size,
                    request.cfg_scale != 1.0,
                )
            }),
    )?;
    let noise: Vec<Tensor<B, 4>> = items
        .iter()
        .map(|i| {
            crate::pipeline::seeded_noise::<B, 4>(i.seed, [1, cfg.in_channels, ph, pw], device)
        })
        .collect();
    let z = patchify(Tensor::cat(noise, 0), cfg.patch_size);
    let guided = request.cfg_scale != 1.0;
    let mut labels: Vec<i64> = items.iter().map(|i| i.class as i64).collect();
    let state = if guided {
        labels.extend(items.iter().map(|_| cfg.null_class() as i64));
        Tensor::cat(vec![z.clone(), z], 0)
    } else {
        z
    };
    let batch = labels.len();
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [batch]), device);
    let layout = fit_layout(cfg, request.decouple)?;
    let recipe = request.position.recipe();
    let mut rotary = RotaryEmbedding::<B>::new(
        layout.rope(&recipe)?,
        fit_grid(h, w, n)?,
        layout.pair_layout(),
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
        let inputs = FitInputs {
            x: x.clone(),
            t: tt,
            y: y.clone(),
            mask: None,
        };
        let tables = rotary.tables();
        Ok(if guided {
            model.forward_with_cfg(inputs, tables, request.cfg_scale, request.guided)?
        } else {
            model.forward(inputs, tables)?
        })
    };
    let ts: Vec<f64> = (0..=steps).map(|i| i as f64 / steps as f64).collect();
    let samples = items.len();
    let mut report_state = |step: Step<'_, Tensor<B, 3>>| {
        if let Some(f) = on_state.as_mut() {
            let x = unpatchify(
                step.state.clone().narrow(0, 0, samples),
                h,
                w,
                cfg.patch_size,
            );
            f(&FitState {
                index: step.index,
                t_fit: step.t,
                x: &x,
            });
        }
    };
    let last = match request.sampler {
        FitSampler::Euler { .. } => {
            fixed(FixedMethod::Euler, velocity, state, &ts, &mut report_state)?
        }
        FitSampler::Heun { .. } => {
            fixed(FixedMethod::Heun, velocity, state, &ts, &mut report_state)?
        }
        FitSampler::Dopri5 { atol, rtol, .. } => {
            let options = Dopri5Options {
                atol,
                rtol,
                ..Dopri5Options::default()
            };
            dopri5(velocity, state, &ts, options, &mut report_state)?.0
        }
    };
    let tokens = last.narrow(0, 0, samples);
    Ok(unpatchify(tokens, h, w, cfg.patch_size))
}
