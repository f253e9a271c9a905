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

use std::path::Path;

use burn::tensor::{DType, FloatDType, Tensor, TensorData, backend::Backend};
use dype_core::presets::{self, OfficialMethod};
use dype_core::{AxialRope, DypeError, Method, Sigma};

use crate::models::flux::{FluxConfig, FluxDenoiser, FluxError, flux_positions, flux_rope};
use crate::rotary::PairLayout;
use crate::rotary::{RotaryEmbedding, RotaryError, StepReport};
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
    Rotary(#[from] RotaryError),
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

/// The positional method of a FLUX run: a registry recipe ([`presets::METHODS`]) on FLUX's axes
/// (first axis never scaled, per-axis scales unless the recipe fixes a policy).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FluxMethod(pub presets::Recipe);

impl Default for FluxMethod {
    /// The official DyPE FLUX preset: Dy-YaRN (`official-dy-yarn`).
    fn default() -> Self {
        FluxMethod(presets::Recipe {
            policy: Some(dype_core::AxisPolicy::PerAxis),
            ..presets::Recipe::method(presets::official_flux_method(OfficialMethod::Yarn, true))
        })
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
        let layout = flux_rope(config, OfficialMethod::Base, false, base_tokens)?;
        self.0.rope(layout.axes(), dype_core::AxisPolicy::PerAxis)
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

/// The sampling loop alone, from packed noise `x0` `[B, h·w, in_channels]` (f32) over an
/// `h × w` token grid to the packed clean latent (f32, unpack with
/// [`crate::sampling_flux::unpack_latents`]): σ schedule from `request.steps` and `request.mu`,
/// and at every step the rotary at `Sigma(σ)`, the velocity from the DiT and one Euler update.
/// `request.height`, `width`, `seed`, `batch` and `vae_tile` are not used here (the batch is
/// `x0`'s). [`generate`] calls this after drawing the seeded noise.
pub fn sample<B: Backend>(
    model: &(impl FluxDenoiser<B> + ?Sized),
    cond: &FluxConditioning<B>,
    request: &FluxGenerate,
    x0: Tensor<B, 3>,
    grid: (usize, usize),
    device: &B::Device,
    mut progress: impl FnMut(&FluxProgress),
) -> Result<Tensor<B, 3>, FluxPipelineError> {
    let cfg = model.config();
    let (h, w) = grid;
    let n = h * w;
    let [batch, tokens, channels] = x0.dims();
    if batch == 0 || tokens != n || channels != cfg.in_channels {
        return Err(FluxPipelineError::Invalid(format!(
            "noise has shape {:?}, expected [B ≥ 1, {n}, {}]",
            x0.dims(),
            cfg.in_channels
        )));
    }
    if request.steps == 0 {
        return Err(FluxPipelineError::Invalid(
            "steps must be at least 1".into(),
        ));
    }
    if !request.guidance.is_finite() {
        return Err(FluxPipelineError::Invalid(format!(
            "guidance {} must be finite",
            request.guidance
        )));
    }
    let txt = batched(cond.t5.clone(), batch, "t5")?;
    let y = batched(cond.pooled.clone(), batch, "pooled")?;
    let l = txt.dims()[1];
    let mu = request.mu.unwrap_or_else(|| FlowShift::default().mu(n));
    if !mu.is_finite() {
        return Err(FluxPipelineError::Invalid(format!("μ {mu} must be finite")));
    }
    let sigmas = flux_sigmas(request.steps, mu);
    let rope = request.method.rope(cfg, request.base_tokens)?;
    let mut rotary = RotaryEmbedding::<B>::batch(
        rope,
        vec![flux_positions(l, h, w)?],
        PairLayout::Interleaved,
        device,
    )?;
    let dtype = model.weight_dtype();
    let txt = txt.cast(dtype);
    let y = y.cast(dtype);
    // σ and guidance stay f32: `timestep_embedding` builds its frequencies in f32.
    let full =
        |v: f64| Tensor::<B, 1>::from_data(TensorData::new(vec![v as f32; batch], [batch]), device);
    let guidance = full(request.guidance);
    let mut x = x0.cast(DType::F32);
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
                rotary.tables(),
            )?
            .cast(DType::F32);
        x = euler_step(x, v, sigma, next);
    }
    Ok(x)
}

/// Runs one generation and returns `request.batch` images (`height × width` RGB8, diffusers'
/// conversion). States and the Euler update are f32; the DiT gets its image, text and pooled
/// inputs in its weights' dtype (e.g. bf16), σ and guidance in f32, and its output is cast back.
/// Models loaded in bf16/f16 take the f32 states and return f32 velocities (the DiT casts at its
/// boundary; norms, RoPE and timestep features are computed in f32).
pub fn generate<B: Backend>(
    model: &(impl FluxDenoiser<B> + ?Sized),
    vae: &VaeDecoder<B>,
    cond: &FluxConditioning<B>,
    request: &FluxGenerate,
    device: &B::Device,
    progress: impl FnMut(&FluxProgress),
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
        return Err(FluxPipelineError::Invalid(
            "steps must be at least 1".into(),
        ));
    }
    if request.batch == 0 {
        return Err(FluxPipelineError::Invalid(
            "batch must be at least 1".into(),
        ));
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
    let (h, w) = (request.height / unit, request.width / unit);
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
    let x = sample(model, cond, request, x0, (h, w), device, progress)?;
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
    use crate::models::flux::Flux;
    use crate::vae::VaeConfig;
    use std::path::PathBuf;

    type B = crate::backend::Cpu;

    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
    }

    fn json(name: &str) -> serde_json::Value {
        let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture");
        serde_json::from_str(&text).expect("json")
    }

    fn tiny() -> (Flux<B>, VaeDecoder<B>, FluxConditioning<B>, FluxGenerate) {
        let device = Default::default();
        let v = json("flux_tiny.json");
        let cfg = FluxConfig::from_json(&v["config"]).expect("config");
        let model = Flux::<B>::load(
            fixtures().join("flux_tiny_bfl.safetensors"),
            &cfg,
            FloatDType::F32,
            &device,
        )
        .expect("model");
        let vaes = json("vae_tiny.json");
        let entry = vaes["vaes"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["kind"] == "flux"))
            .expect("flux vae");
        let vcfg = VaeConfig::from_diffusers_json(&entry["config"]).expect("vae config");
        let vae = VaeDecoder::<B>::load(
            fixtures().join("vae_flux_tiny.safetensors"),
            &vcfg,
            FloatDType::F32,
            &device,
        )
        .expect("vae");
        let cond = FluxConditioning {
            t5: crate::pipeline::seeded_noise::<B, 3>(7, [1, 5, cfg.context_in_dim], &device),
            pooled: crate::pipeline::seeded_noise::<B, 2>(8, [1, cfg.vec_in_dim], &device),
        };
        // 12×12 tokens against 8 trained: extrapolation, like the fixture's DyPE cases.
        let request = FluxGenerate {
            steps: 4,
            base_tokens: 8.0,
            ..FluxGenerate::new(48, 48)
        };
        (model, vae, cond, request)
    }

    #[test]
    fn method_names() {
        assert_eq!(
            FluxMethod::by_name("official-dy-yarn").expect("name"),
            FluxMethod::default()
        );
        for name in presets::method_names() {
            // Every registry name works on FLUX.
            let m = FluxMethod::by_name(name).expect("name");
            m.rope(&FluxConfig::dev(), FLUX_BASE_TOKENS).expect("rope");
        }
        assert!(FluxMethod::by_name("nope").is_err());
    }

    #[test]
    fn generates_deterministic_batches_with_progress() {
        let (model, vae, cond, request) = tiny();
        let device = Default::default();
        let mut seen = Vec::new();
        let one = generate(&model, &vae, &cond, &request, &device, |p| {
            seen.push((p.step, p.sigma, p.kappa, p.max_scale, p.report.uploaded));
        })
        .expect("generate");
        assert_eq!(one.len(), 1);
        assert_eq!((one[0].width, one[0].height), (48, 48));
        assert_eq!(seen.len(), 4);
        assert_eq!(seen[0].1, 1.0);
        // Official Dy-YaRN: κ = σ² (λt = 2); tables are rebuilt only when the frequencies change
        // (the tiny model's 6 pairs per axis often keep them). The embedding was built at σ = 1
        // (its t = None setting), so the first step, at σ = 1, uploads nothing.
        assert!(
            seen.iter()
                .all(|s| (s.2.expect("dynamic") - s.1 * s.1).abs() < 1e-9 && s.3 == 1.5),
            "{seen:?}"
        );
        assert!(!seen[0].4);
        assert!(seen.windows(2).all(|w| w[1].1 < w[0].1));

        // Sample i of a batch equals a single run with seed + i.
        let batch = generate(
            &model,
            &vae,
            &cond,
            &FluxGenerate {
                batch: 2,
                ..request.clone()
            },
            &device,
            |_| {},
        )
        .expect("batch");
        let second = generate(
            &model,
            &vae,
            &cond,
            &FluxGenerate {
                seed: 1,
                ..request.clone()
            },
            &device,
            |_| {},
        )
        .expect("seed 1");
        let close = |a: &Rgb8Image, b: &Rgb8Image| {
            a.pixels
                .iter()
                .zip(&b.pixels)
                .all(|(x, y)| x.abs_diff(*y) <= 1)
        };
        assert_eq!(batch.len(), 2);
        assert!(close(&batch[0], &one[0]));
        assert!(close(&batch[1], &second[0]));
        assert!(!close(&batch[0], &batch[1]));

        // Tiled decoding kicks in above `vae_tile` latent pixels and keeps the image size.
        let tiled = generate(
            &model,
            &vae,
            &cond,
            &FluxGenerate {
                vae_tile: 16,
                steps: 1,
                ..request.clone()
            },
            &device,
            |_| {},
        )
        .expect("tiled");
        assert_eq!((tiled[0].width, tiled[0].height), (48, 48));
    }

    /// The sampling loop against the reference trajectory (`flux_tiny.json` case 22: official
    /// DyPE Dy-YaRN, 12×12 tokens against 8, 6 steps, μ pinned at 1.15, guidance 3.5).
    #[test]
    fn sample_matches_reference_trajectory() {
        let (model, _, _, _) = tiny();
        let device = Default::default();
        let cases =
            Checkpoint::open(fixtures().join("flux_tiny_cases.safetensors")).expect("cases");
        let tensor = |k: &str| cases.read_f32(k).expect("case tensor");
        let (traj, shape) = tensor("case22.traj");
        let per = shape[1] * shape[2];
        let x0 = Tensor::<B, 3>::from_data(
            TensorData::new(traj[..per].to_vec(), [1, shape[1], shape[2]]),
            &device,
        );
        let (t5, ts) = tensor("case22.txt");
        let (pooled, ps) = tensor("case22.y");
        let cond = FluxConditioning {
            t5: Tensor::<B, 3>::from_data(TensorData::new(t5, [ts[0], ts[1], ts[2]]), &device),
            pooled: Tensor::<B, 2>::from_data(TensorData::new(pooled, [ps[0], ps[1]]), &device),
        };
        let request = FluxGenerate {
            steps: 6,
            mu: Some(OFFICIAL_DYPE_MU),
            guidance: 3.5,
            base_tokens: 8.0,
            ..FluxGenerate::new(48, 48)
        };
        let out = sample(&model, &cond, &request, x0, (12, 12), &device, |_| {}).expect("sample");
        let got: Vec<f32> = out.into_data().into_vec().expect("f32");
        let want = &traj[(shape[0] - 1) * per..];
        let num: f64 = got
            .iter()
            .zip(want)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
        let err = (num / den).sqrt();
        eprintln!("pipeline sample vs reference trajectory: relative L2 {err:e}");
        assert!(err < 1e-4, "relative L2 error {err:e}");
    }

    #[test]
    fn rejects_bad_requests() {
        let (model, vae, cond, request) = tiny();
        let device = Default::default();
        let bad = |r: FluxGenerate| generate(&model, &vae, &cond, &r, &device, |_| {}).is_err();
        assert!(bad(FluxGenerate {
            height: 50,
            ..request.clone()
        }));
        assert!(bad(FluxGenerate {
            steps: 0,
            ..request.clone()
        }));
        assert!(bad(FluxGenerate {
            batch: 0,
            ..request.clone()
        }));
        assert!(bad(FluxGenerate {
            guidance: f64::NAN,
            ..request.clone()
        }));
        let three = FluxConditioning {
            t5: cond.t5.clone().repeat_dim(0, 3),
            pooled: cond.pooled.clone(),
        };
        let r = FluxGenerate {
            batch: 2,
            ..request.clone()
        };
        assert!(generate(&model, &vae, &three, &r, &device, |_| {}).is_err());
    }

    #[test]
    fn loads_embeddings_by_name() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("emb.safetensors");
        let t5: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
        let pooled: Vec<f32> = (0..2 * 5).map(|i| -(i as f32)).collect();
        let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
        let (tb, pb) = (bytes(&t5), bytes(&pooled));
        let views = vec![
            (
                T5_KEY,
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3, 4], &tb)
                    .expect("view"),
            ),
            (
                POOLED_KEY,
                safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 5], &pb)
                    .expect("view"),
            ),
        ];
        safetensors::serialize_to_file(views, None, &path).expect("write");
        let cond = load_embeddings::<B>(&path, &Default::default()).expect("load");
        assert_eq!(cond.t5.dims(), [2, 3, 4]);
        assert_eq!(cond.pooled.dims(), [2, 5]);
        let back: Vec<f32> = cond.pooled.into_data().into_vec().expect("f32");
        assert_eq!(back, pooled);
        assert!(load_embeddings::<B>(dir.path().join("missing"), &Default::default()).is_err());
    }

    #[test]
    fn comfy_variants_resolve_with_their_policies() {
        let cfg = FluxConfig::dev();
        let vision = FluxMethod::by_name("comfy-vision-yarn")
            .expect("known")
            .rope(&cfg, 64.0)
            .expect("rope");
        assert_eq!(vision.policy(), dype_core::AxisPolicy::VisionYarn);
        let mut freqs = vec![0.0; vision.pairs()];
        let noise = vision
            .step(&[1.0, 128.0, 256.0], Some(Sigma::NOISE), &mut freqs)
            .expect("step");
        assert_eq!(
            (noise.axes()[1].scales.linear, noise.axes()[1].scales.ntk),
            (2.0, 4.0)
        );
        assert!((noise.axes()[1].attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        let clean = vision
            .step(&[1.0, 128.0, 256.0], Some(Sigma::CLEAN), &mut freqs)
            .expect("step");
        assert_eq!(
            clean.axes()[2].attention_factor,
            1.0,
            "the node's mscale decays to 1"
        );
        let iso = FluxMethod::by_name("comfy-yarn")
            .expect("known")
            .rope(&cfg, 64.0)
            .expect("rope");
        assert_eq!(iso.policy(), dype_core::AxisPolicy::Isotropic);
        let info = iso
            .step(&[1.0, 128.0, 256.0], Some(Sigma::NOISE), &mut freqs)
            .expect("step");
        assert_eq!(
            info.axes()[1].scales.linear,
            4.0,
            "isotropic: both axes at the largest scale"
        );
    }
}
