//! FLUX.1 text-to-image generation from precomputed text embeddings: seeded noise → 2×2 packing
//! → flow-match Euler with the DyPE rotary embedding refreshed at every step's σ → unpacking →
//! FLUX VAE decode (tiled for large latents) → RGB8. Porting spec: `spec/models.md` §3.5–3.7.
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
//! Low-memory block streaming (keeping the DiT blocks off the device between uses) is **not
//! implemented**: the whole DiT must fit in device memory (23.8 GB in bf16 for FLUX.1-dev).

use std::path::Path;

use burn::module::{Module, ModuleVisitor, Param};
use burn::tensor::{DType, FloatDType, Tensor, TensorData, backend::Backend};
use dype_core::presets::{self, OfficialMethod};
use dype_core::{AxialRope, DypeError, Method, Sigma};

use crate::dype::{DypeRotaryError, StepReport, TimestepRotary};
use crate::models::flux::{Flux, FluxConfig, FluxError, flux_positions, flux_rope};
use crate::rotary::RotaryLayout;
use crate::sampling_flux::{FlowShift, euler_step, flux_sigmas, pack_latents, unpack_latents};
use crate::vae::{Rgb8Image, VaeDecoder, VaeError, to_rgb8_diffusers};
use crate::weights::{Checkpoint, WeightsError};

/// μ of the official DyPE FLUX pipeline at every resolution (diffusers' `max_shift`).
pub const OFFICIAL_DYPE_MU: f64 = 1.15;

/// Trained extent of FLUX.1 in tokens per axis (1024² pixels = 64 × 64 tokens).
pub const FLUX_BASE_TOKENS: f64 = 64.0;

/// Tensor name of the T5 hidden states in an embeddings file (see [`load_embeddings`]).
pub const T5_KEY: &str = "t5";

/// Tensor name of the pooled CLIP vector in an embeddings file (see [`load_embeddings`]).
pub const POOLED_KEY: &str = "pooled";

/// Errors of a FLUX generation.
#[derive(Debug, thiserror::Error)]
pub enum FluxPipelineError {
    /// A parameter is invalid.
    #[error("{0}")]
    Invalid(String),
    /// Positional math rejected the configuration.
    #[error(transparent)]
    Math(#[from] DypeError),
    /// The rotary embedding failed.
    #[error(transparent)]
    Rotary(#[from] DypeRotaryError),
    /// The model failed.
    #[error(transparent)]
    Model(#[from] FluxError),
    /// The VAE failed.
    #[error(transparent)]
    Vae(#[from] VaeError),
    /// Reading the embeddings failed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// The positional method of a FLUX run.
#[derive(Debug, Clone, PartialEq)]
pub enum FluxMethod {
    /// The official DyPE `FluxPosEmbed` ([`presets::official_flux`]): first axis never scaled,
    /// the others per axis, static `0.1·ln s + 1` mscale on YaRN axes.
    Official {
        /// base / ntk / yarn.
        method: OfficialMethod,
        /// DyPE (time-dependent) or static.
        dype: bool,
    },
    /// A dype-core method on the FLUX layout ([`presets::paper_flux`] for FLUX.1's axes).
    Paper(Method),
}

impl Default for FluxMethod {
    /// The official DyPE FLUX preset: Dy-YaRN.
    fn default() -> Self {
        FluxMethod::Official {
            method: OfficialMethod::Yarn,
            dype: true,
        }
    }
}

impl FluxMethod {
    /// By name: `official-dy-yarn`, `official-yarn`, `official-dy-ntk`, `official-ntk` and
    /// `official-base` select the official preset; every other [`presets::METHOD_NAMES`] entry
    /// (`base`, `pi`, `dy-yarn`, …) is a [`FluxMethod::Paper`] method.
    pub fn by_name(name: &str) -> Result<Self, DypeError> {
        let official = |method, dype| FluxMethod::Official { method, dype };
        Ok(match name {
            "official-dy-yarn" => official(OfficialMethod::Yarn, true),
            "official-yarn" => official(OfficialMethod::Yarn, false),
            "official-dy-ntk" => official(OfficialMethod::Ntk, true),
            "official-ntk" => official(OfficialMethod::Ntk, false),
            "official-base" => official(OfficialMethod::Base, false),
            other => FluxMethod::Paper(presets::method_by_name(other)?),
        })
    }

    /// The rope for `config` against `base_tokens` trained tokens per axis. For FLUX.1's axes,
    /// θ and 64 tokens a paper method is exactly [`presets::paper_flux`]; other (e.g. tiny test)
    /// configurations get the same layout with their own axes.
    pub fn rope(&self, config: &FluxConfig, base_tokens: f64) -> Result<AxialRope, DypeError> {
        match self {
            FluxMethod::Official { method, dype } => {
                flux_rope(config, *method, *dype, base_tokens)
            }
            FluxMethod::Paper(m) => {
                if config.axes_dim == presets::FLUX_AXES
                    && config.theta == presets::FLUX_THETA
                    && base_tokens == presets::FLUX_TRAIN_TOKENS
                {
                    presets::paper_flux(m.clone())
                } else {
                    Ok(flux_rope(config, OfficialMethod::Base, false, base_tokens)?
                        .with_method(m.clone()))
                }
            }
        }
    }
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
) -> Result<FluxConditioning<B>, FluxPipelineError> {
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

/// The dtype of the model's first float parameter.
struct FirstDType(Option<DType>);

impl<B: Backend> ModuleVisitor<B> for FirstDType {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        if self.0.is_none() {
            self.0 = Some(param.val().dtype());
        }
    }
}

fn model_dtype<B: Backend>(model: &Flux<B>) -> DType {
    let mut v = FirstDType(None);
    model.visit(&mut v);
    v.0.unwrap_or(DType::F32)
}

/// Repeats a batch-1 tensor to `batch`, or checks that it already has `batch` rows.
fn batched<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    batch: usize,
    what: &str,
) -> Result<Tensor<B, D>, FluxPipelineError> {
    match x.dims()[0] {
        b if b == batch => Ok(x),
        1 => Ok(x.repeat_dim(0, batch)),
        b => Err(FluxPipelineError::Invalid(format!(
            "{what} has batch {b}; expected 1 or {batch}"
        ))),
    }
}

/// Runs one generation and returns `request.batch` images (`height × width` RGB8, diffusers'
/// conversion). States and the Euler update are f32; the DiT gets its inputs in its weights'
/// dtype (e.g. bf16) and its output is cast back.
pub fn generate<B: Backend>(
    model: &Flux<B>,
    vae: &VaeDecoder<B>,
    cond: &FluxConditioning<B>,
    request: &FluxGenerate,
    device: &B::Device,
    mut progress: impl FnMut(&FluxProgress),
) -> Result<Vec<Rgb8Image>, FluxPipelineError> {
    let cfg = model.config();
    let f = vae.config().upscale();
    let unit = 2 * f;
    let latent_channels = vae.config().latent_channels;
    if request.height == 0
        || request.width == 0
        || !request.height.is_multiple_of(unit)
        || !request.width.is_multiple_of(unit)
    {
        return Err(FluxPipelineError::Invalid(format!(
            "image size {}×{} must be positive multiples of {unit}",
            request.height, request.width
        )));
    }
    if 4 * latent_channels != cfg.in_channels {
        return Err(FluxPipelineError::Invalid(format!(
            "the VAE has {latent_channels} latent channels but the DiT takes {} = 4 × {}",
            cfg.in_channels,
            cfg.in_channels / 4
        )));
    }
    if request.steps == 0 {
        return Err(FluxPipelineError::Invalid("steps must be at least 1".into()));
    }
    if request.batch == 0 {
        return Err(FluxPipelineError::Invalid("batch must be at least 1".into()));
    }
    if !request.guidance.is_finite() {
        return Err(FluxPipelineError::Invalid(format!(
            "guidance {} must be finite",
            request.guidance
        )));
    }
    if request.vae_tile == 0 {
        return Err(FluxPipelineError::Invalid(
            "vae_tile must be at least 1".into(),
        ));
    }
    let batch = request.batch;
    let txt = batched(cond.t5.clone(), batch, "t5")?;
    let y = batched(cond.pooled.clone(), batch, "pooled")?;
    let l = txt.dims()[1];
    let (h, w) = (request.height / unit, request.width / unit);
    let n = h * w;
    let mu = request.mu.unwrap_or_else(|| FlowShift::default().mu(n));
    if !mu.is_finite() {
        return Err(FluxPipelineError::Invalid(format!("μ {mu} must be finite")));
    }
    let sigmas = flux_sigmas(request.steps, mu);

    let noise: Vec<Tensor<B, 4>> = (0..batch as u64)
        .map(|i| {
            crate::pipeline::seeded_noise::<B, 4>(
                request.seed.wrapping_add(i),
                [1, latent_channels, 2 * h, 2 * w],
                device,
            )
        })
        .collect();
    let mut x = pack_latents(Tensor::cat(noise, 0));

    let rope = request.method.rope(cfg, request.base_tokens)?;
    let mut rotary = TimestepRotary::<B>::new(
        rope,
        vec![flux_positions(l, h, w)?],
        RotaryLayout::Interleaved,
        device,
    )?;
    let dtype = model_dtype(model);
    let txt = txt.cast(dtype);
    let y = y.cast(dtype);
    let full = |v: f64| {
        Tensor::<B, 1>::from_data(TensorData::new(vec![v as f32; batch], [batch]), device)
            .cast(dtype)
    };
    let guidance = full(request.guidance);
    for (step, pair) in sigmas.windows(2).enumerate() {
        let (sigma, next) = (pair[0], pair[1]);
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
        let v = model
            .forward(
                x.clone().cast(dtype),
                txt.clone(),
                full(sigma),
                y.clone(),
                Some(guidance.clone()),
                rotary.tables()?,
            )?
            .cast(DType::F32);
        x = euler_step(x, v, sigma, next);
    }

    let latent = unpack_latents(x, h, w);
    let mut images = Vec::with_capacity(batch);
    for i in 0..batch {
        let one = latent.clone().narrow(0, i, 1);
        let tile = request.vae_tile;
        let image = if 2 * h > tile || 2 * w > tile {
            vae.decode_tiled(one, tile, (tile / 8).max(1).min(tile - 1))?
        } else {
            vae.decode(one)?
        };
        images.extend(to_rgb8_diffusers(image.cast(DType::F32))?);
    }
    Ok(images)
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn method_names() {
        assert_eq!(
            FluxMethod::by_name("official-dy-yarn").expect("name"),
            FluxMethod::default()
        );
        for name in presets::METHOD_NAMES {
            let m = FluxMethod::by_name(name).expect("name");
            m.rope(&FluxConfig::dev(), FLUX_BASE_TOKENS).expect("rope");
        }
        assert!(FluxMethod::by_name("nope").is_err());
    }
}
