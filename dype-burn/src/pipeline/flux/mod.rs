//! FLUX.1 text-to-image generation from precomputed text embeddings: seeded noise → 2×2 packing
//! → flow-match Euler with the DyPE rotary embedding refreshed at every step's σ → unpacking →
//! FLUX VAE decode (tiled for large latents) → RGB8. Sampler conventions: docs/weights.md and the BFL/diffusers FLUX pipelines.
//!
//! Text encoders are not part of this module: the caller provides the T5 hidden states and the
//! pooled CLIP vector ([`FluxConditioning`], e.g. from [`load_embeddings`]).
//!
//! Differences from the official DyPE FLUX pipeline, on purpose:
//! * batches of any size share one rotary table (the official code reads `timestep.item()` and
//!   handles one image per call); sample `i` starts from the noise of seed `seed + i`, so a batch
//!   reproduces the single images of consecutive seeds;
//! * the rotary time is the step's σ in f64 (the official code rounds `1000·σ` to bf16 first);
//! * μ follows diffusers' linear rule by default; [`OFFICIAL_DYPE_MU`] pins it like the official
//!   DyPE pipeline does.
//!
//! [`generate`] and [`sample`] take any [`FluxDenoiser`]: the resident
//! [`Flux`](crate::models::flux::Flux) (the whole DiT in device memory, 23.8 GB in bf16 for
//! FLUX.1-dev) or, when device memory is short, [`crate::models::flux::StreamedFlux`], which keeps
//! the blocks in host memory and uploads them one at a time at every step (same velocities,
//! slower).

use crate::rotary::SamplePositions;
use std::path::Path;

use burn::tensor::{DType, FloatDType, Tensor, TensorData, backend::Backend};
use dype_core::presets::{self, OfficialMethod};
use dype_core::{AxialRope, DypeError, Method, Sigma};

use super::{PipelineError, check_size};
use crate::models::flux::{FluxConfig, FluxDenoiser, FluxInputs};
use crate::models::vae::VaeDecoder;
use crate::pipeline::image::{Rgb8Image, to_rgb8_diffusers};
use crate::rotary::{RotaryEmbedding, StepReport};
use crate::sampling::{FixedMethod, fixed};
use crate::weights::Checkpoint;
use dype_core::flow::{FlowShift, flux_sigmas};

/// FLUX's 2×2 latent packing (`[B, C, H, W]` ↔ `[B, (H/2)(W/2), 4C]`), for [`sample`]'s input
/// and output.
pub use crate::nn::patch::{pack_latents, unpack_latents};

/// μ of the official DyPE FLUX pipeline at every resolution (diffusers' `max_shift`).
pub const OFFICIAL_DYPE_MU: f64 = FlowShift::FLUX_DEV.max_shift;

/// Trained extent of FLUX.1 in tokens per axis (1024² pixels = 64 × 64 tokens).
pub const FLUX_BASE_TOKENS: f64 = presets::FLUX_TRAIN_TOKENS;

/// Tensor name of the T5 hidden states in an embeddings file (see [`load_embeddings`]).
pub const T5_KEY: &str = "t5";

/// Tensor name of the pooled CLIP vector in an embeddings file (see [`load_embeddings`]).
pub const POOLED_KEY: &str = "pooled";

/// The positional method of a FLUX run: a registry recipe ([`presets::METHODS`]) on FLUX's axes
/// (first axis never scaled, per-axis scales unless the recipe fixes a policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FluxMethod(pub presets::Recipe);

impl Default for FluxMethod {
    /// The official DyPE FLUX preset: Dy-YaRN (`official-dy-yarn`).
    fn default() -> Self {
        FluxMethod(presets::official_flux_recipe(OfficialMethod::Yarn, true))
    }
}

impl From<Method> for FluxMethod {
    fn from(m: Method) -> Self {
        FluxMethod(presets::Recipe::method(m))
    }
}

impl FluxMethod {
    /// Any registry name ([`presets::METHODS`]); an unknown one is
    /// [`DypeError::UnknownName`] with the list.
    pub fn by_name(name: &str) -> Result<Self, DypeError> {
        presets::recipe_by_name(name).map(FluxMethod)
    }

    /// The rope for `config` against `base_tokens` trained tokens per axis. For FLUX.1's axes,
    /// θ and 64 tokens a paper method is exactly [`presets::paper_flux`] and an official one
    /// [`presets::official_flux`].
    pub fn rope(&self, config: &FluxConfig, base_tokens: f64) -> Result<AxialRope, DypeError> {
        flux_layout(config, base_tokens)?.rope(&self.0)
    }
}

/// The rotary layout of a FLUX model ([`presets::RotaryLayout::flux`]): its `axes_dim` and θ,
/// `base_tokens` trained tokens per side, the first axis never scaled, interleaved pairs.
pub fn flux_layout(
    config: &FluxConfig,
    base_tokens: f64,
) -> Result<presets::RotaryLayout, DypeError> {
    presets::RotaryLayout::flux(config.theta, &config.axes_dim, base_tokens)
}

/// One generation request.
#[derive(Debug, Clone, PartialEq)]
pub struct FluxGenerate {
    /// Image height in pixels (a multiple of 16 for FLUX: VAE ×8, packing ×2).
    pub height: usize,
    /// Image width in pixels (a multiple of 16).
    pub width: usize,
    /// Sampling steps (28 for FLUX.1-dev).
    pub steps: usize,
    /// Embedded guidance (3.5; the DyPE runner uses 4.5). Ignored by models without guidance.
    pub guidance: f64,
    /// Positional method (default: official DyPE Dy-YaRN).
    pub method: FluxMethod,
    /// Trained extent in tokens per axis ([`FLUX_BASE_TOKENS`] for FLUX.1).
    pub base_tokens: f64,
    /// Schedule shift μ; `None` = diffusers' linear μ in the image token count
    /// ([`FlowShift::mu`]); the official DyPE pipeline pins [`OFFICIAL_DYPE_MU`].
    pub mu: Option<f64>,
    /// Noise seed of the first sample (sample `i` uses `seed + i`).
    pub seed: u64,
    /// Images per call (≥ 1); they share the conditioning if it has batch 1.
    pub batch: usize,
    /// Latents larger than this many latent pixels on a side are decoded in tiles of this size
    /// (overlap `tile / 8`); 128 = a 1024² FLUX image decodes in one piece.
    pub vae_tile: usize,
}

impl FluxGenerate {
    /// A request with FLUX.1-dev defaults: 28 steps, guidance 3.5, official Dy-YaRN against 64
    /// tokens, diffusers μ, seed 0, batch 1, VAE tiles of 128 latent pixels.
    pub fn new(height: usize, width: usize) -> Self {
        FluxGenerate {
            height,
            width,
            steps: 28,
            guidance: 3.5,
            method: FluxMethod::default(),
            base_tokens: FLUX_BASE_TOKENS,
            mu: None,
            seed: 0,
            batch: 1,
            vae_tile: 128,
        }
    }
}

/// Text conditioning: T5 hidden states `t5` `[1 or B, L, context_in_dim]` (4096 for FLUX.1) and
/// the pooled CLIP vector `pooled` `[1 or B, vec_in_dim]` (768). Batch 1 is shared by every image.
#[derive(Debug, Clone)]
pub struct FluxConditioning<B: Backend> {
    /// T5 hidden states.
    pub t5: Tensor<B, 3>,
    /// Pooled CLIP text embedding.
    pub pooled: Tensor<B, 2>,
}

/// Reads conditioning from a safetensors file holding a tensor named [`T5_KEY`] (`"t5"`,
/// `[1 or B, L, C]`) and one named [`POOLED_KEY`] (`"pooled"`, `[1 or B, C]`), any float dtype,
/// loaded as f32. Other tensors in the file are ignored.
pub fn load_embeddings<B: Backend>(
    path: impl AsRef<Path>,
    device: &B::Device,
) -> Result<FluxConditioning<B>, PipelineError> {
    let ckpt = Checkpoint::open_safetensors(path)?;
    Ok(FluxConditioning {
        t5: ckpt.tensor::<B, 3>(T5_KEY, FloatDType::F32, device)?,
        pooled: ckpt.tensor::<B, 2>(POOLED_KEY, FloatDType::F32, device)?,
    })
}

/// What the progress callback gets before every model evaluation.
#[derive(Debug, Clone)]
pub struct FluxProgress {
    /// Step index (0-based).
    pub step: usize,
    /// Total steps.
    pub steps: usize,
    /// σ of this step (1 = noise); also the rotary time.
    pub sigma: f64,
    /// κ(σ) of the rotary method (`None` for static methods).
    pub kappa: Option<f64>,
    /// Largest per-axis interpolation scale.
    pub max_scale: f64,
    /// Largest attention factor.
    pub attention_factor: f64,
    /// The rotary embedding's full diagnostics.
    pub report: StepReport,
}

/// Repeats a batch-1 tensor to `batch`, or checks that it already has `batch` rows.
fn batched<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    batch: usize,
    what: &'static str,
) -> Result<Tensor<B, D>, PipelineError> {
    match x.dims()[0] {
        b if b == batch => Ok(x),
        1 => Ok(x.repeat_dim(0, batch)),
        b => Err(PipelineError::ConditioningBatch {
            what,
            found: b,
            expected: batch,
        }),
    }
}

/// The sampler's state at one σ of the grid, lent to [`sample`]'s per-step callback.
#[derive(Debug)]
pub struct FluxState<'a, B: Backend> {
    /// Index in the σ grid (0 = the initial noise, `steps` = the result).
    pub index: usize,
    /// σ there (1 = noise, 0 = data): the paper's t.
    pub sigma: f64,
    /// The packed latents `[B, h·w, in_channels]` (f32); [`unpack_latents`] gives
    /// `[B, in_channels / 4, 2h, 2w]`.
    pub x: &'a Tensor<B, 3>,
}

/// μ and the σ schedule of a request over `tokens` image tokens: the pinned μ or FLUX.1-dev's
/// shift at this size; a schedule whose σ are not strictly decreasing (μ so large that every σ
/// but the last rounds to 1) is [`PipelineError::ScheduleCollapse`], naming μ and how to pin it.
pub fn schedule(request: &FluxGenerate, tokens: usize) -> Result<(f64, Vec<f64>), PipelineError> {
    let mu = match request.mu {
        Some(mu) => mu,
        None => match FlowShift::FLUX_DEV.mu(tokens) {
            Ok(mu) => mu,
            // Out of μ's range: the error carries the μ this size asks for.
            Err(DypeError::OutOfRange {
                name: "mu", value, ..
            }) => return Err(PipelineError::ScheduleCollapse { mu: value, tokens }),
            Err(e) => return Err(e.into()),
        },
    };
    let collapse = PipelineError::ScheduleCollapse { mu, tokens };
    let sigmas: Vec<f64> = match flux_sigmas(request.steps, mu) {
        Ok(s) => s.collect(),
        Err(_) if mu.is_finite() && mu.abs() > dype_core::flow::MAX_MU => return Err(collapse),
        Err(e) => return Err(e.into()),
    };
    if sigmas
        .windows(2)
        .any(|p| p[1].partial_cmp(&p[0]) != Some(core::cmp::Ordering::Less))
    {
        return Err(collapse);
    }
    Ok((mu, sigmas))
}

/// What the sampling loop needs of a request: at least one step and a finite guidance.
fn check_sampling(request: &FluxGenerate) -> Result<(), PipelineError> {
    if request.steps == 0 {
        return Err(PipelineError::Zero { name: "steps" });
    }
    if !request.guidance.is_finite() {
        return Err(PipelineError::Parameter {
            name: "guidance",
            value: request.guidance,
            rule: "finite",
        });
    }
    Ok(())
}

/// The sampling loop alone, from packed noise `x0` `[B, h·w, in_channels]` (f32) over an
/// `h × w` token grid to the packed clean latent (f32, unpack with [`unpack_latents`]): σ
/// schedule from `request.steps` and `request.mu`, and at every step the rotary at `Sigma(σ)`,
/// the velocity from the DiT and one Euler update. `request.height`, `width`, `seed`, `batch` and
/// `vae_tile` are not used here (the batch is `x0`'s). `progress` sees every model evaluation,
/// `on_state` the state after every step and the initial noise (what the lab's spectral
/// progression measures; pass `|_| {}` to ignore it). [`generate`] runs this after drawing the
/// seeded noise.
#[allow(clippy::too_many_arguments)]
pub fn sample<B: Backend>(
    model: &(impl FluxDenoiser<B> + ?Sized),
    cond: &FluxConditioning<B>,
    request: &FluxGenerate,
    x0: Tensor<B, 3>,
    grid: (usize, usize),
    device: &B::Device,
    mut progress: impl FnMut(&FluxProgress),
    mut on_state: impl FnMut(&FluxState<'_, B>),
) -> Result<Tensor<B, 3>, PipelineError> {
    let cfg = model.config();
    let (h, w) = grid;
    let n = h * w;
    let [batch, tokens, channels] = x0.dims();
    if batch == 0 || tokens != n || channels != cfg.in_channels {
        return Err(PipelineError::NoiseShape {
            found: x0.dims(),
            tokens: n,
            channels: cfg.in_channels,
        });
    }
    check_sampling(request)?;
    let txt = batched(cond.t5.clone(), batch, "t5")?;
    let y = batched(cond.pooled.clone(), batch, "pooled")?;
    let l = txt.dims()[1];
    let (_, sigmas) = schedule(request, n)?;
    let layout = flux_layout(cfg, request.base_tokens)?;
    let mut rotary = RotaryEmbedding::<B>::batch(
        layout.rope(&request.method.0)?,
        vec![SamplePositions::flux(l, h, w)?],
        layout.pair_layout(),
        device,
    )?;
    let dtype = model.weight_dtype();
    let txt = txt.cast(dtype);
    let y = y.cast(dtype);
    // σ and guidance stay f32: `timestep_embedding` builds its frequencies in f32.
    let full =
        |v: f64| Tensor::<B, 1>::from_data(TensorData::new(vec![v as f32; batch], [batch]), device);
    let guidance = full(request.guidance);
    let mut step = 0;
    let velocity = |sigma: f64, x: &Tensor<B, 3>| -> Result<Tensor<B, 3>, PipelineError> {
        let report = rotary.set_timestep(Sigma::new(sigma)?)?.clone();
        progress(&FluxProgress {
            step,
            steps: request.steps,
            sigma,
            kappa: report.kappa(),
            max_scale: report.max_scale(),
            attention_factor: report.max_attention_factor(),
            report,
        });
        step += 1;
        let inputs = FluxInputs {
            img: x.clone().cast(dtype),
            txt: txt.clone(),
            timesteps: full(sigma),
            y: y.clone(),
            guidance: Some(guidance.clone()),
        };
        Ok(model.velocity(inputs, rotary.tables())?.cast(DType::F32))
    };
    // Euler over the decreasing σ grid: x ← x + (σ_next − σ)·v; only the current state is kept.
    let x = fixed(
        FixedMethod::Euler,
        velocity,
        x0.cast(DType::F32),
        &sigmas,
        |step| {
            on_state(&FluxState {
                index: step.index,
                sigma: step.t,
                x: step.state,
            })
        },
    )?;
    Ok(x)
}

/// Runs one generation and returns `request.batch` images (`height × width` RGB8, diffusers'
/// conversion). States and the Euler update are f32; the DiT gets its image, text and pooled
/// inputs in its weights' dtype (e.g. bf16), σ and guidance in f32, and its output is cast back
/// (norms, RoPE and timestep features are computed in f32).
///
/// `progress` sees every model evaluation; `on_state` sees the packed state after every step and
/// the initial noise ([`FluxState`]; the grid is `height / 16 × width / 16` tokens for the 8×
/// VAE): the spectral progression of DyPE's Fig. 2 is measured there, on the latents
/// ([`unpack_latents`]) or decoded ([`decode_latents`]). Pass `|_| {}` to ignore it.
pub fn generate<B: Backend>(
    model: &(impl FluxDenoiser<B> + ?Sized),
    vae: &VaeDecoder<B>,
    cond: &FluxConditioning<B>,
    request: &FluxGenerate,
    device: &B::Device,
    progress: impl FnMut(&FluxProgress),
    on_state: impl FnMut(&FluxState<'_, B>),
) -> Result<Vec<Rgb8Image>, PipelineError> {
    let cfg = model.config();
    let f = vae.config().upscale();
    let unit = 2 * f;
    let latent_channels = vae.config().latent_channels;
    check_size(request.height, request.width, unit)?;
    if 4 * latent_channels != cfg.in_channels {
        return Err(PipelineError::LatentChannels {
            vae: latent_channels,
            dit: cfg.in_channels,
        });
    }
    check_sampling(request)?;
    if request.batch == 0 {
        return Err(PipelineError::Zero { name: "batch" });
    }
    if request.vae_tile == 0 {
        return Err(PipelineError::Zero { name: "vae_tile" });
    }
    let batch = request.batch;
    let (h, w) = (request.height / unit, request.width / unit);
    let tokens = h.saturating_mul(w);
    // Refuse what cannot run before the first large allocation: a collapsed σ schedule, then an
    // estimate of the working memory (latents and the DiT's activations over text + image).
    schedule(request, tokens)?;
    crate::pipeline::check_memory(
        || {
            format!(
                "sampling {batch} image(s) of {}×{} px ({tokens} image tokens)",
                request.height, request.width
            )
        },
        cfg.in_channels.checked_mul(tokens).and_then(|state| {
            let text = cond.t5.dims()[1];
            crate::pipeline::sampling_bytes(
                batch,
                state,
                tokens.checked_add(text)?,
                cfg.hidden_size,
                false,
            )
        }),
    )?;
    let noise: Vec<Tensor<B, 4>> = (0..batch as u64)
        .map(|i| {
            crate::pipeline::seeded_noise::<B, 4>(
                request.seed.wrapping_add(i),
                [1, latent_channels, 2 * h, 2 * w],
                device,
            )
        })
        .collect();
    let x0 = pack_latents(Tensor::cat(noise, 0));
    let x = sample(model, cond, request, x0, (h, w), device, progress, on_state)?;
    let latent = unpack_latents(x, h, w);
    let mut images = Vec::with_capacity(batch);
    for i in 0..batch {
        let image = decode_latents(vae, latent.clone().narrow(0, i, 1), request.vae_tile)?;
        images.extend(to_rgb8_diffusers(image)?);
    }
    Ok(images)
}

/// Decodes unpacked latents `[B, latent_channels, H, W]` with the FLUX VAE as [`generate`] does:
/// one sample at a time, whole when both sides fit in `vae_tile` latent values, else tiled
/// (overlap `vae_tile / 8`, at least 1 and less than the tile). Returns the images
/// `[B, 3, upscale·H, upscale·W]` in f32, in the VAE's [−1, 1] range.
pub fn decode_latents<B: Backend>(
    vae: &VaeDecoder<B>,
    latent: Tensor<B, 4>,
    vae_tile: usize,
) -> Result<Tensor<B, 4>, PipelineError> {
    if vae_tile == 0 {
        return Err(PipelineError::Zero { name: "vae_tile" });
    }
    let [batch, _, h, w] = latent.dims();
    if batch == 0 {
        return Err(PipelineError::Zero { name: "batch" });
    }
    let mut images = Vec::with_capacity(batch);
    for i in 0..batch {
        let one = latent.clone().narrow(0, i, 1);
        let image = if h > vae_tile || w > vae_tile {
            vae.decode_tiled(one, vae_tile, (vae_tile / 8).max(1).min(vae_tile - 1))?
        } else {
            vae.decode(one)?
        };
        images.push(image.cast(DType::F32));
    }
    Ok(Tensor::cat(images, 0))
}

#[cfg(all(test, feature = "cpu"))]
mod tests;
