//! FiTv2-XL/2 class-conditional ImageNet generation above its 256² training size, with DyPE.
//!
//! ```text
//! cargo run --release --example fitv2 -- --demo                     # the bundled shapes model, CPU, seconds
//! cargo run --release --example fitv2 -- --demo --size 128 --method dy-yarn --class "red disc"
//! cargo run --release --example fitv2 -- --smoke                    # tiny random FiT + SD VAE (noise)
//! cargo run --release --example fitv2 -- --class "golden retriever" --size 384 --method dy-yarn
//! cargo run --release --features cuda --example fitv2 -- --backend cuda --size 512x384 --method dy-ntk
//! ```
//!
//! `--demo` samples the pixel-space FiTv2 trained here on the procedural shapes (`examples/shapes/`,
//! trained at 32² px = 8 × 8 tokens; `--class list` names its classes); `--size 64` and `--size 128`
//! are 2× and 4× its training size.
//!
//! Without `--weights`/`--vae` the checkpoints are downloaded from the Hugging Face Hub on first
//! use (`InfImagine/FiTv2` `FiTv2_XL/model_ema.safetensors`, `stabilityai/sd-vae-ft-ema`).

mod common;

use dype::burn::models::Pretrained;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, anyhow};
use burn::tensor::backend::Backend;
use clap::{Parser, ValueEnum};
use common::{Dtype, OnBackend, ProgressionSpace, Recorder};
use dype::burn::backend::BackendKind;
use dype::burn::models::fitv2::{FitConfig, FitPosition, FitV2, GuidedChannels};
use dype::burn::models::vae::{VaeConfig, VaeDecoder};
use dype::burn::pipeline::fitv2::{
    FitGenerate, FitItem, FitSampler, generate, generate_pixels, sample_batch,
};
use dype::burn::pipeline::image::to_rgb8_fit;
use dype::burn::pipeline::{Rgb8Image, imagenet_class, imagenet_classes, write_png};
use dype_lab::shapes::CLASS_NAMES;
use indicatif::{ProgressBar, ProgressStyle};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Sampler {
    Euler,
    Heun,
    Dopri5,
}

/// FiTv2 + DyPE: class-conditional ImageNet images above the training resolution.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// ImageNet class: id (0–999) or name ("golden retriever"), default 207; with `--demo` a shapes
    /// class (id or name) or `all` (the default: one image per class, side by side). `--class
    /// list` prints them.
    #[arg(long)]
    class: Option<String>,
    /// Image size in pixels: `N` or `HxW`, multiples of 16 (trained at 256; default 384); with
    /// `--demo` multiples of 4 (trained at 32, the default).
    #[arg(long)]
    size: Option<String>,
    /// Positional method, any registry name (`--method list` prints them all).
    #[arg(long, default_value = "dy-yarn")]
    method: String,
    /// Scale both axes by max(H, W) instead of each by its own extent (FiT without `--decouple`).
    #[arg(long)]
    shared_scale: bool,
    /// Sampling steps (dopri5: output intervals; its step count is adaptive).
    #[arg(long, default_value_t = 50)]
    steps: usize,
    /// ODE solver.
    #[arg(long, value_enum, default_value = "euler")]
    sampler: Sampler,
    /// dopri5 absolute tolerance.
    #[arg(long, default_value_t = 1e-6)]
    atol: f64,
    /// dopri5 relative tolerance.
    #[arg(long, default_value_t = 1e-3)]
    rtol: f64,
    /// Classifier-free guidance scale (1 = off).
    #[arg(long, default_value_t = 1.5)]
    cfg: f64,
    /// Guide all latent channels (the reference guides channels 0–2 only).
    #[arg(long)]
    guide_all: bool,
    /// Noise seed.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Backend (compiled in by the features `cpu`, `wgpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
    /// Weight dtype on the device.
    #[arg(long, value_enum, default_value = "f32")]
    dtype: Dtype,
    /// FiTv2-XL/2 checkpoint (.safetensors or .pt/.bin); downloaded when absent.
    #[arg(long)]
    weights: Option<PathBuf>,
    /// SD VAE decoder checkpoint (diffusers layout); downloaded when absent.
    #[arg(long)]
    vae: Option<PathBuf>,
    /// Output PNG.
    #[arg(long, default_value = "fitv2.png")]
    out: PathBuf,
    /// Sample the bundled FiTv2 trained on the procedural shapes (pixel space, no VAE).
    #[arg(long, conflicts_with_all = ["smoke", "weights", "vae"])]
    demo: bool,
    /// Run the bundled tiny random-weight FiT and SD VAE (the image is noise: a smoke test of the
    /// full latent path).
    #[arg(long)]
    smoke: bool,
    /// Nearest-neighbour zoom of the written PNG (small demo images).
    #[arg(long, default_value_t = 1)]
    zoom: usize,
    /// Also measure this run's spectral progression (DyPE §3.1, Fig. 2: the mean PSD of `x_t` at
    /// every step and γ(f, t)) and write `progression.json`, `.md` and `.png` into this directory.
    #[arg(long)]
    progression: Option<PathBuf>,
    /// Where the progression is measured: the sampler's latents, or every state decoded by the
    /// VAE (one decode per step). `--demo` samples pixels: both are the same there.
    #[arg(long, value_enum, default_value = "latent", requires = "progression")]
    progression_space: ProgressionSpace,
}

/// The tiny fixture model's configuration.
fn smoke_config() -> anyhow::Result<FitConfig> {
    let v = common::read_json(&common::fixtures().join("fitv2_tiny.json"))?;
    FitConfig::from_json(&v["config"]).context("fitv2_tiny.json")
}

fn smoke_vae_config() -> anyhow::Result<VaeConfig> {
    VaeConfig::from_diffusers_json(&common::demo_vae_json("sd")?).context("vae_tiny.json (sd)")
}

fn main() -> std::process::ExitCode {
    common::exit_code(try_main())
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::exit_if_list(&args.method);
    if args.class.as_deref() == Some("list") {
        if args.demo {
            for (i, name) in CLASS_NAMES.iter().enumerate() {
                println!("{i:4}  {name}");
            }
        } else {
            for (i, name) in imagenet_classes() {
                println!("{i:4}  {name}");
            }
        }
        return Ok(());
    }
    if args.zoom == 0 || args.zoom > 64 {
        return Err(anyhow!("--zoom {}: expected 1..=64", args.zoom));
    }
    common::check_outputs(&args.out, args.progression.as_deref())?;
    common::on_backend(args.backend, Job(&args))
}

struct Job<'a>(&'a Args);

impl OnBackend for Job<'_> {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        run::<B>(self.0, device)
    }
}

fn sampler(args: &Args) -> FitSampler {
    match args.sampler {
        Sampler::Euler => FitSampler::Euler { steps: args.steps },
        Sampler::Heun => FitSampler::Heun { steps: args.steps },
        Sampler::Dopri5 => FitSampler::Dopri5 {
            steps: args.steps,
            atol: args.atol,
            rtol: args.rtol,
        },
    }
}

fn progress_bar(sampler: FitSampler, evaluations_per_image: u64, images: u64) -> ProgressBar {
    let bar = ProgressBar::new(match sampler {
        FitSampler::Heun { .. } | FitSampler::Euler { .. } => evaluations_per_image * images,
        // Adaptive (dopri5) and any future solver: no known evaluation count.
        _ => 0,
    });
    bar.set_style(
        ProgressStyle::with_template(
            "{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} evals  {msg}",
        )
        .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    bar
}

fn progress_message(p: &dype::burn::pipeline::fitv2::FitProgress) -> String {
    let k = p
        .report
        .kappa()
        .map(|k| format!("{k:.3}"))
        .unwrap_or_else(|| "static".into());
    format!(
        "t {:.3}  σ {:.3}  κ {k}  s {:.2}  attn {:.4}",
        p.t_fit,
        1.0 - p.t_fit,
        p.report.max_scale(),
        p.report.max_attention_factor()
    )
}

/// A short name of the solver for titles (`Euler 50`, `dopri5 50 (atol 1e-6, rtol 0.001)`).
fn sampler_name(sampler: FitSampler) -> String {
    match sampler {
        FitSampler::Euler { steps } => format!("Euler {steps}"),
        FitSampler::Heun { steps } => format!("Heun {steps}"),
        FitSampler::Dopri5 { steps, atol, rtol } => {
            format!("dopri5 {steps} (atol {atol:e}, rtol {rtol})")
        }
        other => format!("{other:?}"),
    }
}

/// Nearest-neighbour zoom by an integer factor.
fn zoom(image: Rgb8Image, k: usize) -> Rgb8Image {
    if k <= 1 {
        return image;
    }
    let (w, h) = (image.width * k, image.height * k);
    let mut pixels = Vec::with_capacity(w * h * 3);
    for row in 0..h {
        for col in 0..w {
            let i = ((row / k) * image.width + col / k) * 3;
            pixels.extend_from_slice(image.pixels.get(i..i + 3).unwrap_or(&[0, 0, 0]));
        }
    }
    Rgb8Image {
        width: w,
        height: h,
        pixels,
    }
}

/// Images of one height side by side.
fn side_by_side(images: &[Rgb8Image]) -> Rgb8Image {
    let height = images.first().map_or(0, |i| i.height);
    let width: usize = images.iter().map(|i| i.width).sum();
    let mut pixels = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        for image in images {
            let start = row * image.width * 3;
            pixels.extend_from_slice(
                image
                    .pixels
                    .get(start..start + image.width * 3)
                    .unwrap_or(&[]),
            );
        }
    }
    Rgb8Image {
        width,
        height,
        pixels,
    }
}

/// `--demo`: the FiTv2 trained on the procedural shapes, in pixel space.
fn run_demo<B: Backend>(args: &Args, device: B::Device) -> anyhow::Result<()> {
    let (height, width) =
        common::parse_size::<usize>(args.size.as_deref().unwrap_or("32")).context("--size")?;
    let position = FitPosition::Recipe(common::recipe(&args.method)?);
    let classes: Vec<usize> = match args.class.as_deref().unwrap_or("all") {
        "all" => (0..CLASS_NAMES.len()).collect(),
        name => vec![shapes_class(name)?],
    };
    let t0 = Instant::now();
    let (model, info) = common::shapes_model::<B>(args.dtype.float(), &device)?;
    let config = model.config().clone();
    eprintln!(
        "loaded the shapes model ({info}) in {:.1}s",
        t0.elapsed().as_secs_f64()
    );
    let sampler = sampler(args);
    let p = config.patch_size;
    eprintln!(
        "{height}×{width} px = {}×{} tokens (trained {}×{}), method `{}`, {:?}, cfg {}",
        height / p,
        width / p,
        config.ori_max_pe_len,
        config.ori_max_pe_len,
        args.method,
        sampler,
        args.cfg
    );
    let per_image = match sampler {
        FitSampler::Heun { steps } => 2 * steps as u64,
        FitSampler::Euler { steps } => steps as u64,
        _ => 0,
    };
    let bar = progress_bar(sampler, per_image, classes.len() as u64);
    if args.progression.is_some() && args.progression_space == ProgressionSpace::Decoded {
        eprintln!("note: --demo samples pixels: its states are the images (`decoded` = `latent`)");
    }
    let t1 = Instant::now();
    let mut images = Vec::new();
    let mut recorder = Recorder::new(args.progression.as_deref())?;
    for (i, &class) in classes.iter().enumerate() {
        let request = FitGenerate {
            class,
            height,
            width,
            position,
            decouple: !args.shared_scale,
            sampler,
            cfg_scale: args.cfg,
            guided: GuidedChannels::All,
            seed: args.seed,
        };
        let progress = |p: &dype::burn::pipeline::fitv2::FitProgress| {
            bar.set_position(i as u64 * per_image + p.evaluation as u64);
            bar.set_message(progress_message(p));
        };
        let pixels = match recorder.as_mut() {
            // Pixel space: the state is the image, whatever `--progression-space` says.
            Some(rec) => {
                let item = FitItem {
                    class,
                    seed: args.seed,
                };
                sample_batch(&model, 1, &request, &[item], &device, progress, |st| {
                    rec.record(st.index, 1.0 - st.t_fit, || Ok(st.x.clone()))
                })?
            }
            None => generate_pixels(&model, &request, &device, progress)?,
        };
        images.extend(to_rgb8_fit(pixels)?);
    }
    bar.finish();
    let image = zoom(side_by_side(&images), args.zoom);
    let names: Vec<&str> = classes
        .iter()
        .map(|&c| CLASS_NAMES.get(c).copied().unwrap_or("?"))
        .collect();
    let metadata = vec![
        (
            "Software".to_string(),
            format!("dype {} fitv2 example", env!("CARGO_PKG_VERSION")),
        ),
        ("dype:model".to_string(), format!("fitv2-shapes ({info})")),
        ("dype:class".to_string(), names.join(",")),
        ("dype:size".to_string(), format!("{height}x{width}")),
        ("dype:method".to_string(), args.method.clone()),
        ("dype:sampler".to_string(), format!("{sampler:?}")),
        ("dype:cfg".to_string(), args.cfg.to_string()),
        ("dype:seed".to_string(), args.seed.to_string()),
        ("dype:backend".to_string(), args.backend.to_string()),
    ];
    write_png(&args.out, &image, &metadata)?;
    eprintln!(
        "wrote {} ({}: {} image(s) of {height}×{width}, zoom {}) in {:.1}s",
        args.out.display(),
        names.join(", "),
        images.len(),
        args.zoom,
        t1.elapsed().as_secs_f64()
    );
    if let (Some(rec), Some(dir)) = (recorder, &args.progression) {
        let title = format!(
            "shapes model, {height}×{width} px, {}, {} image(s), {}, cfg {}, seed {}",
            args.method,
            images.len(),
            sampler_name(sampler),
            args.cfg,
            args.seed
        );
        rec.finish(dir, title, "cycles/px")?;
    }
    Ok(())
}

/// A shapes class by id or name.
fn shapes_class(name: &str) -> anyhow::Result<usize> {
    if let Ok(id) = name.trim().parse::<usize>() {
        return if id < CLASS_NAMES.len() {
            Ok(id)
        } else {
            Err(anyhow!(
                "--class {id}: the shapes model has classes 0–{} (`--demo --class list`)",
                CLASS_NAMES.len() - 1
            ))
        };
    }
    CLASS_NAMES
        .iter()
        .position(|n| n.eq_ignore_ascii_case(name.trim()))
        .ok_or_else(|| {
            anyhow!(
                "--class `{name}`: not a shapes class ({}; `--demo --class list`)",
                CLASS_NAMES.join(", ")
            )
        })
}

fn run<B: Backend>(args: &Args, device: B::Device) -> anyhow::Result<()> {
    if args.demo {
        return run_demo::<B>(args, device);
    }
    let dtype = args.dtype.float();
    let (height, width) =
        common::parse_size::<usize>(args.size.as_deref().unwrap_or("384")).context("--size")?;
    let position = FitPosition::Recipe(common::recipe(&args.method)?);
    let (config, vae_config) = if args.smoke {
        (smoke_config()?, smoke_vae_config()?)
    } else {
        (FitConfig::xl_2(), VaeConfig::sd_vae_ft_ema())
    };
    let class = imagenet_class(args.class.as_deref().unwrap_or("207"))?;
    let class = if args.smoke {
        class % config.num_classes
    } else {
        class
    };
    let unit = vae_config.upscale() * config.patch_size;
    // The demo keeps the requested extrapolation ratio on the tiny model's 8×8 training grid.
    let (height, width) = if args.smoke {
        let tokens = |px: usize| (px * config.ori_max_pe_len).div_ceil(256).max(1);
        (tokens(height) * unit, tokens(width) * unit)
    } else {
        (height, width)
    };

    // Open and validate the DiT checkpoint before anything else is loaded or downloaded.
    let t0 = Instant::now();
    let weights = match (&args.weights, args.smoke) {
        (None, true) => common::fixtures().join("fitv2_tiny.safetensors"),
        (given, _) => {
            common::local_or_hub(given.as_deref(), "--weights", dype::hub::FITV2_XL, false)?
        }
    };
    let model = FitV2::<B>::load(&weights, &config, dtype, &device)?;
    let vae_path = match (&args.vae, args.smoke) {
        (None, true) => common::fixtures().join("vae_sd_tiny.safetensors"),
        (given, _) => {
            common::local_or_hub(given.as_deref(), "--vae", dype::hub::SD_VAE_FT_EMA, false)?
        }
    };
    let vae = VaeDecoder::<B>::load(&vae_path, &vae_config, dtype, &device)?;
    eprintln!(
        "loaded {} and {} in {:.1}s",
        weights.display(),
        vae_path.display(),
        t0.elapsed().as_secs_f64()
    );

    let sampler = sampler(args);
    let request = FitGenerate {
        class,
        height,
        width,
        position,
        decouple: !args.shared_scale,
        sampler,
        cfg_scale: args.cfg,
        guided: if args.guide_all {
            GuidedChannels::All
        } else {
            GuidedChannels::Reference
        },
        seed: args.seed,
    };
    let rope = dype::burn::models::fitv2::fit_rope(&config, position, request.decouple)?;
    eprintln!(
        "method `{}` resolves to {:?}, policy {:?}, attention {:?}",
        args.method,
        rope.method(),
        rope.policy(),
        rope.attention()
    );
    eprintln!(
        "class {class}, {height}×{width} px = {}×{} tokens (trained {}×{}), {:?}, cfg {}",
        height / unit,
        width / unit,
        config.ori_max_pe_len,
        config.ori_max_pe_len,
        sampler,
        args.cfg
    );
    let bar = progress_bar(
        sampler,
        match sampler {
            FitSampler::Heun { steps } => 2 * steps as u64,
            FitSampler::Euler { steps } => steps as u64,
            _ => 0,
        },
        1,
    );
    let t1 = Instant::now();
    let progress = |p: &dype::burn::pipeline::fitv2::FitProgress| {
        bar.set_position(p.evaluation as u64);
        bar.set_message(progress_message(p));
    };
    let mut recorder = Recorder::new(args.progression.as_deref())?;
    let image = match recorder.as_mut() {
        Some(rec) => generate(&model, &vae, &request, &device, progress, |st| {
            rec.record(st.index, 1.0 - st.t_fit, || match args.progression_space {
                ProgressionSpace::Latent => Ok(st.x.clone()),
                ProgressionSpace::Decoded => Ok(vae.decode(st.x.clone())?),
            })
        })?,
        None => generate(&model, &vae, &request, &device, progress, |_| {})?,
    };
    bar.finish();
    let metadata = vec![
        (
            "Software".to_string(),
            format!("dype {} fitv2 example", env!("CARGO_PKG_VERSION")),
        ),
        (
            "dype:model".to_string(),
            if args.smoke {
                "fitv2-tiny (random weights, smoke test)".into()
            } else {
                "FiTv2-XL/2".into()
            },
        ),
        ("dype:class".to_string(), class.to_string()),
        ("dype:size".to_string(), format!("{height}x{width}")),
        ("dype:method".to_string(), args.method.clone()),
        ("dype:resolved".to_string(), format!("{:?}", rope.method())),
        (
            "dype:shared_scale".to_string(),
            args.shared_scale.to_string(),
        ),
        ("dype:sampler".to_string(), format!("{sampler:?}")),
        ("dype:cfg".to_string(), args.cfg.to_string()),
        ("dype:guide_all".to_string(), args.guide_all.to_string()),
        ("dype:seed".to_string(), args.seed.to_string()),
        ("dype:backend".to_string(), args.backend.to_string()),
    ];
    let image = zoom(image, args.zoom);
    write_png(&args.out, &image, &metadata)?;
    eprintln!(
        "wrote {} ({}×{}) in {:.1}s",
        args.out.display(),
        image.width,
        image.height,
        t1.elapsed().as_secs_f64()
    );
    if let (Some(rec), Some(dir)) = (recorder, &args.progression) {
        let title = format!(
            "{}, class {class}, {height}×{width} px, {}, {}, cfg {}{}, seed {}",
            if args.smoke {
                "FiTv2 tiny (random)"
            } else {
                "FiTv2-XL/2"
            },
            args.method,
            sampler_name(sampler),
            args.cfg,
            if args.guide_all {
                " (all channels)"
            } else {
                ""
            },
            args.seed
        );
        rec.finish(dir, title, args.progression_space.unit())?;
    }
    if args.smoke {
        eprintln!(
            "note: --smoke uses tiny RANDOM weights; the image is noise. It only shows the latent pipeline runs end to end."
        );
    }
    Ok(())
}
