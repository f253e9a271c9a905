//! FLUX.1-dev text-to-image above its 1024² training size with DyPE, from a prompt (T5-XXL +
//! CLIP-L, encoded once and freed before sampling) or from precomputed text embeddings.
//!
//! ```text
//! cargo run --release --features text --example flux -- --demo --prompt "a red fox" --out /tmp/flux_demo.png  # tiny random weights, CPU
//! cargo run --release --features cuda --example flux -- --backend cuda \
//!     --prompt "a lighthouse at dusk, 4k photograph" --height 4096 --width 4096 --pin-mu
//! cargo run --release --features cuda --example flux -- --backend cuda \
//!     --embeddings prompt.safetensors --height 2048 --width 2048
//! ```
//!
//! `--stream-blocks` keeps only the DiT's embedders and final layer on the device: the transformer
//! blocks live in host RAM and are uploaded block by block at every step. It trades speed for
//! device memory (for out-of-memory errors at large sizes such as 4K) and gives the same images.
//!
//! `--embeddings` is a safetensors file with `t5` (`[1 or B, L, 4096]`, T5-XXL hidden states) and
//! `pooled` (`[1 or B, 768]`, pooled CLIP-L), see `dype::burn::pipeline::flux::load_embeddings`.
//! Without `--weights`/`--vae` the checkpoints are downloaded from the gated Hugging Face Hub
//! repository `black-forest-labs/FLUX.1-dev` (`flux1-dev.safetensors`, `ae.safetensors`).

mod common;

use dype::burn::models::Pretrained;
use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, bail};
use burn::tensor::backend::Backend;
use burn::tensor::{FloatDType, Tensor};
use clap::Parser;
use common::{Dtype, OnBackend, ProgressionSpace, Recorder};
use dype::burn::backend::BackendKind;
use dype::burn::models::flux::{Flux, FluxConfig, FluxDenoiser, FluxLayout, StreamedFlux};
use dype::burn::models::text::ClipConfig;
use dype::burn::models::text::T5Config;
use dype::burn::models::text::{CLIP_MAX_LENGTH, T5_MAX_LENGTH};
use dype::burn::models::vae::{VaeConfig, VaeDecoder};
use dype::burn::pipeline::flux::{
    FLUX_BASE_TOKENS, FluxConditioning, FluxGenerate, FluxMethod, OFFICIAL_DYPE_MU, decode_latents,
    generate, load_embeddings, unpack_latents,
};
use dype::burn::pipeline::prompt::{PromptEncoder, PromptFiles};
use dype::burn::pipeline::{seeded_noise, write_png};
use dype::burn::weights::Checkpoint;
use indicatif::{ProgressBar, ProgressStyle};

/// FLUX.1-dev + DyPE: text-to-image above the training resolution, from a prompt or embeddings.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// The prompt, encoded with T5-XXL and CLIP-L (downloaded from the FLUX.1-dev repository unless
    /// --t5/--clip and the tokenizer flags give local files).
    #[arg(long, conflicts_with = "embeddings")]
    prompt: Option<String>,
    /// Safetensors file with `t5` [1|B, L, 4096] and `pooled` [1|B, 768], for embeddings from any
    /// encoder (instead of --prompt).
    #[arg(long)]
    embeddings: Option<PathBuf>,
    /// T5 encoder checkpoint (file, folder or `*.safetensors.index.json`).
    #[arg(long)]
    t5: Option<PathBuf>,
    /// T5 tokenizer.json.
    #[arg(long)]
    t5_tokenizer: Option<PathBuf>,
    /// CLIP text encoder checkpoint.
    #[arg(long)]
    clip: Option<PathBuf>,
    /// CLIP tokenizer.json.
    #[arg(long)]
    clip_tokenizer: Option<PathBuf>,
    /// Keep the text encoders loaded during sampling (by default they are freed before the DiT is
    /// built, so their memory is available to it).
    #[arg(long)]
    keep_encoders: bool,
    /// Image height in pixels (multiple of 16; trained at 1024).
    #[arg(long, default_value_t = 2048)]
    height: usize,
    /// Image width in pixels (multiple of 16).
    #[arg(long, default_value_t = 2048)]
    width: usize,
    /// Sampling steps.
    #[arg(long, default_value_t = 28)]
    steps: usize,
    /// Embedded guidance (the DyPE runner uses 4.5).
    #[arg(long, default_value_t = 3.5)]
    guidance: f64,
    /// Positional method, any registry name (`--method list` prints them all); the default is the
    /// official DyPE FLUX preset.
    #[arg(long, default_value = "official-dy-yarn")]
    method: String,
    /// Schedule shift μ (default: diffusers' linear μ in the image token count).
    #[arg(long, conflicts_with = "pin_mu")]
    mu: Option<f64>,
    /// Pin μ = 1.15 like the official DyPE pipeline.
    #[arg(long)]
    pin_mu: bool,
    /// Noise seed of the first image (image i uses seed + i).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Images per run.
    #[arg(long, default_value_t = 1)]
    batch: usize,
    /// Backend (compiled in by the features `cpu`, `wgpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
    /// Weight dtype on the device (default: bf16 on cuda, f32 on wgpu and cpu).
    #[arg(long, value_enum)]
    dtype: Option<Dtype>,
    /// FLUX DiT checkpoint: BFL single file, diffusers folder or `*.safetensors.index.json`
    /// (layout detected); downloaded when absent.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// FLUX VAE checkpoint (BFL `ae.safetensors` or diffusers layout); downloaded when absent.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Output PNG (with a batch, `_i` is appended to the file stem).
    #[arg(long, default_value = "flux.png")]
    out: PathBuf,
    /// Run the bundled tiny random-weight FLUX and VAE with random embeddings (the image is
    /// noise: a smoke test).
    #[arg(long)]
    demo: bool,
    /// Keep only the DiT's embedders and final layer on the device and stream its transformer
    /// blocks: they live in host RAM and are uploaded block by block at every step. Trades speed
    /// for device memory (one block instead of all 57, for OOM at large sizes such as 4K); needs
    /// the whole DiT in host RAM. Same images.
    #[arg(long)]
    stream_blocks: bool,
    /// Also measure this run's spectral progression (DyPE §3.1, Fig. 2: the mean PSD of `x_t` at
    /// every step and γ(f, t), over the batch) and write `progression.json`, `.md` and `.png`
    /// into this directory.
    #[arg(long)]
    progression: Option<PathBuf>,
    /// Where the progression is measured: the sampler's latents (16 channels), or every state
    /// decoded by the VAE (one decode per step).
    #[arg(long, value_enum, default_value = "latent", requires = "progression")]
    progression_space: ProgressionSpace,
}

/// The tiny fixture model's configuration and its trained extent in tokens.
fn demo_config() -> anyhow::Result<(FluxConfig, f64)> {
    let v = common::read_json(&common::fixtures().join("flux_tiny.json"))?;
    let cfg = FluxConfig::from_json(&v["config"]).context("flux_tiny.json")?;
    let base = v["config"]["base_tokens"]
        .as_f64()
        .context("flux_tiny.json: config.base_tokens missing")?;
    Ok((cfg, base))
}

fn demo_vae_config() -> anyhow::Result<VaeConfig> {
    VaeConfig::from_diffusers_json(&common::demo_vae_json("flux")?).context("vae_tiny.json (flux)")
}

fn main() -> std::process::ExitCode {
    common::exit_code(try_main())
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::exit_if_list(&args.method);
    common::check_outputs(&args.out, args.progression.as_deref())?;
    common::on_backend(args.backend, Job(&args))
}

struct Job<'a>(&'a Args);

impl OnBackend for Job<'_> {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        run::<B>(self.0, device)
    }
}

/// Adds how to get access to the gated FLUX.1-dev repository to a download error.
fn gated_hint(e: anyhow::Error) -> anyhow::Error {
    e.context(
        "FLUX.1-dev is gated: accept its licence at https://huggingface.co/black-forest-labs/FLUX.1-dev \
         and set HF_TOKEN to a token with read access (or pass local files with --weights/--vae)",
    )
}

fn out_path(out: &Path, i: usize, batch: usize) -> PathBuf {
    if batch == 1 {
        return out.to_path_buf();
    }
    let stem = out
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "flux".into());
    let ext = out
        .extension()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "png".into());
    out.with_file_name(format!("{stem}_{i}.{ext}"))
}

fn run<B: Backend>(args: &Args, device: B::Device) -> anyhow::Result<()> {
    let dtype = match (args.dtype, args.backend) {
        (Some(d), _) => d.float(),
        (None, BackendKind::Cuda) => FloatDType::BF16,
        (None, _) => FloatDType::F32,
    };
    if matches!(args.dtype, Some(Dtype::F16)) && args.backend == BackendKind::Wgpu {
        eprintln!(
            "warning: f16 on wgpu needs the shader-f16 feature of the adapter and FLUX activations \
             can overflow f16; prefer f32 (or bf16 on cuda)"
        );
    }
    if args.embeddings.is_none() && args.prompt.is_none() && !args.demo {
        bail!(
            "give --prompt \"…\" (T5-XXL + CLIP-L encode it), or --embeddings PATH (a safetensors \
             file with `t5` [1|B, L, 4096] and `pooled` [1|B, 768]); --demo runs a smoke test"
        );
    }
    let method = FluxMethod(common::recipe(&args.method)?);
    let ((config, base_tokens), vae_config) = if args.demo {
        (demo_config()?, demo_vae_config()?)
    } else {
        ((FluxConfig::dev(), FLUX_BASE_TOKENS), VaeConfig::flux())
    };
    let unit = 2 * vae_config.upscale();
    // The demo keeps the requested extrapolation ratio on the tiny model's training grid.
    let (height, width) = if args.demo {
        let tokens = |px: usize| ((px as f64 * base_tokens / 1024.0).ceil() as usize).max(1);
        (tokens(args.height) * unit, tokens(args.width) * unit)
    } else {
        (args.height, args.width)
    };

    // Cheap checks first, so that a typo does not cost a 24 GB download.
    if height == 0 || width == 0 || !height.is_multiple_of(unit) || !width.is_multiple_of(unit) {
        bail!("--height {height} --width {width}: both must be positive multiples of {unit}");
    }
    if args.steps == 0 || args.batch == 0 {
        bail!("--steps and --batch must be at least 1");
    }
    if let Some(p) = &args.embeddings
        && !p.is_file()
    {
        bail!("--embeddings {}: no such file", p.display());
    }

    // Open and validate the DiT checkpoint before anything else is loaded or downloaded.
    let t0 = Instant::now();
    let weights = match (&args.weights, args.demo) {
        (None, true) => common::fixtures().join("flux_tiny_bfl.safetensors"),
        (given, _) => {
            common::local_or_hub(given.as_deref(), "--weights", dype::hub::FLUX_DEV, false)
                .map_err(gated_hint)?
        }
    };
    // Validate the DiT checkpoint (keys, shapes, dtypes; no tensors built) before anything else.
    {
        let ckpt = Checkpoint::open(&weights)?;
        let layout = FluxLayout::detect(&ckpt)?;
        ckpt.validate(&config.key_map(layout))?;
    }
    // Encode the prompt first, so the encoders can be freed before the DiT is built.
    // `_kept_encoders` (not `_`) keeps them alive to the end of the run with --keep-encoders.
    let (prompt_cond, _kept_encoders) = match &args.prompt {
        Some(prompt) => {
            let (cond, enc) = encode_prompt::<B>(args, prompt, &config, dtype, &device)?;
            (Some(cond), args.keep_encoders.then_some(enc))
        }
        None => (None, None),
    };
    let model: Box<dyn FluxDenoiser<B>> = if args.stream_blocks {
        let model = StreamedFlux::<B>::load(&weights, &config, dtype, &device)?;
        eprintln!(
            "streaming the DiT blocks: {:.1} MB in host memory, uploaded block by block every step",
            model.host_bytes() as f64 / 1e6
        );
        Box::new(model)
    } else {
        Box::new(Flux::<B>::load(&weights, &config, dtype, &device)?)
    };
    let vae_path = match (&args.vae, args.demo) {
        (None, true) => common::fixtures().join("vae_flux_tiny.safetensors"),
        (given, _) => common::local_or_hub(given.as_deref(), "--vae", dype::hub::FLUX_AE, false)
            .map_err(gated_hint)?,
    };
    let vae = VaeDecoder::<B>::load(&vae_path, &vae_config, dtype, &device)?;
    let cond = match (&args.embeddings, prompt_cond) {
        (_, Some(c)) => c,
        (Some(p), None) => load_embeddings::<B>(p, &device)
            .with_context(|| format!("--embeddings {}", p.display()))?,
        (None, None) => FluxConditioning {
            t5: seeded_noise::<B, 3>(1, [1, 8, config.context_in_dim], &device),
            pooled: seeded_noise::<B, 2>(2, [1, config.vec_in_dim], &device),
        },
    };
    eprintln!(
        "loaded {} and {} in {:.1}s",
        weights.display(),
        vae_path.display(),
        t0.elapsed().as_secs_f64()
    );

    let mu = if args.pin_mu {
        Some(OFFICIAL_DYPE_MU)
    } else {
        args.mu
    };
    let request = FluxGenerate {
        height,
        width,
        steps: args.steps,
        guidance: args.guidance,
        method,
        base_tokens,
        mu,
        seed: args.seed,
        batch: args.batch,
        ..FluxGenerate::new(height, width)
    };
    let rope = method.rope(&config, base_tokens)?;
    eprintln!(
        "method `{}` resolves to {:?}, policy {:?}, attention {:?}",
        args.method,
        rope.method(),
        rope.policy(),
        rope.attention()
    );
    eprintln!(
        "{height}×{width} px = {}×{} tokens (trained {base_tokens}×{base_tokens}), {} steps, \
         guidance {}, μ {}, batch {}, {dtype:?}",
        height / unit,
        width / unit,
        args.steps,
        args.guidance,
        mu.map(|m| m.to_string())
            .unwrap_or_else(|| "diffusers (linear in tokens)".into()),
        args.batch
    );
    let bar = ProgressBar::new(args.steps as u64);
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} steps  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    let t1 = Instant::now();
    let mut recorder = Recorder::new(args.progression.as_deref())?;
    let (grid_h, grid_w) = (height / unit, width / unit);
    let on_state = |st: &dype::burn::pipeline::flux::FluxState<'_, B>| {
        let Some(recorder) = recorder.as_mut() else {
            return;
        };
        recorder.record(st.index, st.sigma, || {
            let latent = unpack_latents(st.x.clone(), grid_h, grid_w);
            match args.progression_space {
                ProgressionSpace::Latent => Ok(latent),
                ProgressionSpace::Decoded => Ok(decode_latents(&vae, latent, request.vae_tile)?),
            }
        })
    };
    let images = generate(
        model.as_ref(),
        &vae,
        &cond,
        &request,
        &device,
        |p| {
            bar.set_position(p.step as u64);
            let k = p
                .kappa
                .map(|k| format!("{k:.3}"))
                .unwrap_or_else(|| "static".into());
            bar.set_message(format!(
                "σ {:.4}  κ {k}  s {:.2}  attn {:.4}",
                p.sigma, p.max_scale, p.attention_factor
            ));
        },
        on_state,
    )?;
    bar.set_position(args.steps as u64);
    bar.finish();
    let elapsed = t1.elapsed().as_secs_f64();
    for (i, image) in images.iter().enumerate() {
        let metadata = vec![
            (
                "Software".to_string(),
                format!("dype {} flux example", env!("CARGO_PKG_VERSION")),
            ),
            (
                "dype:model".to_string(),
                if args.demo {
                    "flux-tiny (random weights and embeddings, demo)".into()
                } else {
                    "FLUX.1-dev".into()
                },
            ),
            ("dype:size".to_string(), format!("{height}x{width}")),
            ("dype:steps".to_string(), args.steps.to_string()),
            ("dype:guidance".to_string(), args.guidance.to_string()),
            ("dype:method".to_string(), args.method.clone()),
            ("dype:resolved".to_string(), format!("{:?}", rope.method())),
            (
                "dype:mu".to_string(),
                mu.map(|m| m.to_string()).unwrap_or_else(|| "auto".into()),
            ),
            (
                "dype:seed".to_string(),
                args.seed.wrapping_add(i as u64).to_string(),
            ),
            (
                "dype:embeddings".to_string(),
                args.embeddings
                    .as_ref()
                    .map(|p| p.display().to_string())
                    .unwrap_or_else(|| "random (demo)".into()),
            ),
            ("dype:backend".to_string(), args.backend.to_string()),
            ("dype:dtype".to_string(), format!("{dtype:?}")),
        ];
        let path = out_path(&args.out, i, images.len());
        write_png(&path, image, &metadata)?;
        eprintln!(
            "wrote {} ({}×{})",
            path.display(),
            image.width,
            image.height
        );
    }
    eprintln!("generated {} image(s) in {elapsed:.1}s", images.len());
    if let (Some(recorder), Some(dir)) = (recorder, &args.progression) {
        let title = format!(
            "{}, {height}×{width} px, {}, {} steps, guidance {}, μ {}, seed {}, batch {}, {dtype:?}",
            if args.demo {
                "FLUX tiny (random)"
            } else {
                "FLUX.1-dev"
            },
            args.method,
            args.steps,
            args.guidance,
            mu.map(|m| m.to_string()).unwrap_or_else(|| "auto".into()),
            args.seed,
            args.batch
        );
        recorder.finish(dir, title, args.progression_space.unit())?;
    }
    if args.demo {
        eprintln!(
            "note: --demo uses tiny RANDOM weights (DiT, VAE, text encoders) or random embeddings; the image is noise. \
             It only shows the pipeline runs end to end."
        );
    }
    Ok(())
}

/// Tokenizes and encodes `prompt` with T5 and CLIP ([`PromptEncoder`]). In `--demo` the tiny
/// fixture encoders are used and their outputs are cut or zero-padded to the tiny DiT's widths
/// (their sizes differ; the image is noise anyway).
fn encode_prompt<B: Backend>(
    args: &Args,
    prompt: &str,
    config: &FluxConfig,
    dtype: FloatDType,
    device: &B::Device,
) -> anyhow::Result<(FluxConditioning<B>, PromptEncoder<B>)> {
    let t0 = Instant::now();
    let fetch = |given: &Option<PathBuf>,
                 flag: &str,
                 demo: &str,
                 hub: dype::hub::HubFile,
                 sharded: bool|
     -> anyhow::Result<PathBuf> {
        match (given, args.demo) {
            (None, true) => Ok(common::fixtures().join(demo)),
            (given, _) => {
                common::local_or_hub(given.as_deref(), flag, hub, sharded).map_err(gated_hint)
            }
        }
    };
    let (t5_cfg, clip_cfg, t5_len) = if args.demo {
        let v = common::read_json(&common::fixtures().join("text_tiny.json"))?;
        let t5 = T5Config::from_json(&v["t5"]["config"])?;
        let clip = ClipConfig::from_json(&v["clip"]["config"])?;
        (t5, clip, 16)
    } else {
        (T5Config::xxl(), ClipConfig::vit_l_14(), T5_MAX_LENGTH)
    };
    let files = PromptFiles {
        t5: fetch(
            &args.t5,
            "--t5",
            "t5_tiny.safetensors",
            dype::hub::FLUX_T5,
            true,
        )?,
        t5_tokenizer: fetch(
            &args.t5_tokenizer,
            "--t5-tokenizer",
            "t5_tiny_tokenizer.json",
            dype::hub::FLUX_T5_TOKENIZER,
            false,
        )?,
        clip: fetch(
            &args.clip,
            "--clip",
            "clip_tiny.safetensors",
            dype::hub::FLUX_CLIP,
            false,
        )?,
        clip_tokenizer: fetch(
            &args.clip_tokenizer,
            "--clip-tokenizer",
            "clip_tiny_tokenizer.json",
            dype::hub::CLIP_TOKENIZER,
            false,
        )?,
    };
    let encoder = PromptEncoder::<B>::load(&files, &t5_cfg, &clip_cfg, t5_len, dtype, device)?;
    let encoded = encoder.encode(prompt)?;
    let (t5_ids, clip_ids) = (&encoded.t5_tokens, &encoded.clip_tokens);
    eprintln!(
        "prompt: {} T5 tokens (of {t5_len}), {} CLIP tokens (of {CLIP_MAX_LENGTH})",
        t5_ids.len, clip_ids.len
    );
    if let Some(d) = &t5_ids.dropped {
        eprintln!("warning: the prompt is longer than T5's {t5_len} tokens; dropped: \"{d}\"");
    }
    if let Some(d) = &clip_ids.dropped {
        eprintln!(
            "warning: CLIP sees only {CLIP_MAX_LENGTH} tokens; dropped from its pooled embedding: \"{d}\""
        );
    }
    let FluxConditioning { t5: hidden, pooled } = encoded.conditioning;
    let fit3 = |x: Tensor<B, 3>, c: usize| {
        let [b, l, w] = x.dims();
        if w >= c {
            x.narrow(2, 0, c)
        } else {
            Tensor::cat(vec![x, Tensor::zeros([b, l, c - w], device)], 2)
        }
    };
    let fit2 = |x: Tensor<B, 2>, c: usize| {
        let [b, w] = x.dims();
        if w >= c {
            x.narrow(1, 0, c)
        } else {
            Tensor::cat(vec![x, Tensor::zeros([b, c - w], device)], 1)
        }
    };
    let (t5_out, pooled_out) = if args.demo {
        (
            fit3(hidden, config.context_in_dim),
            fit2(pooled, config.vec_in_dim),
        )
    } else {
        (hidden, pooled)
    };
    eprintln!("encoded the prompt in {:.1}s", t0.elapsed().as_secs_f64());
    Ok((
        FluxConditioning {
            t5: t5_out,
            pooled: pooled_out,
        },
        encoder,
    ))
}
