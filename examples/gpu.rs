//! The device check: one binary with subcommands, built here for CUDA and run on a GPU machine by
//! `scripts/gpu/run.sh` (cheapest measurements first, printing as it goes).
//!
//! ```text
//! gpu [--backend cuda|wgpu|cpu] parity-fitv2 FIXTURES_DIR   # FiTv2 forward cases on the device
//! gpu [--backend …] fitv2-forward                           # XL/2 forward, batch 2, f32 and bf16
//! gpu [--backend …] fitv2-sample                            # 28-step Euler at 384², XL/2
//! gpu [--backend …] all FIXTURES_DIR
//! gpu [--backend …] flux-step [--dtype bf16|f32]           # one FLUX.1-dev DiT step, 1024²–4096²
//! ```

mod common;

use dype::burn::models::Pretrained;
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{anyhow, bail};
use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, FloatDType, Int, Tensor, TensorData};
use clap::{Parser, Subcommand};
use common::{Dtype, OnBackend};
use dype::burn::backend::BackendKind;
use dype::burn::models::fitv2::{
    FitConfig, FitInputs, FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope,
};
use dype::burn::rotary::PairLayout;
use dype::burn::rotary::{RotaryEmbedding, SamplePositions};
use dype::burn::weights::Checkpoint;
use dype_core::presets::FitFreqs;

#[derive(Parser, Debug)]
struct Args {
    /// Backend to run on.
    #[arg(long, default_value = "cuda")]
    backend: BackendKind,
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand, Debug, Clone)]
enum Cmd {
    /// FiTv2 tiny forward parity on the device (relative L2 vs the PyTorch reference).
    ParityFitv2 { fixtures: PathBuf },
    /// Time one FiTv2-XL/2 forward (random weights) at 256², 320², 384², batch 2, f32 and bf16.
    Fitv2Forward,
    /// Time a full 28-step Euler sample at 384² with CFG (random weights, no VAE).
    Fitv2Sample,
    /// Time T5-XXL (512 tokens) and CLIP-L (77 tokens) forwards with random bf16 weights.
    TextEncoders,
    /// Everything, cheapest first.
    All { fixtures: PathBuf },
    /// Time one FLUX.1-dev DiT step (random weights, 512 text tokens, official Dy-YaRN) at
    /// 1024², 2048², 4096², printing device memory in use (nvidia-smi) after each size.
    FluxStep {
        /// Weight dtype: bf16 (default) or f32.
        #[arg(long, value_enum, default_value = "bf16")]
        dtype: Dtype,
    },
}

fn main() -> std::process::ExitCode {
    common::exit_code(try_main())
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::on_backend(args.backend, args.cmd)
}

impl OnBackend for Cmd {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        match self {
            Cmd::ParityFitv2 { fixtures } => parity::<B>(&fixtures, &device),
            Cmd::Fitv2Forward => forward_timings::<B>(&device),
            Cmd::Fitv2Sample => sample_timing::<B>(&device),
            Cmd::FluxStep { dtype } => flux_step::<B>(dtype, &device),
            Cmd::TextEncoders => text_encoders::<B>(&device),
            Cmd::All { fixtures } => {
                parity::<B>(&fixtures, &device)?;
                forward_timings::<B>(&device)?;
                sample_timing::<B>(&device)
            }
        }
    }
}

/// Casts every float parameter of a module to `dtype`.
fn cast_module<B: Backend, M: Module<B>>(module: M, dtype: FloatDType) -> M {
    struct Caster(FloatDType);
    impl<B: Backend> ModuleMapper<B> for Caster {
        fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
            param.map(|t| t.cast(self.0))
        }
    }
    module.map(&mut Caster(dtype))
}

fn sync<B: Backend>(t: Tensor<B, 3>) -> f32 {
    t.sum().into_scalar().into_f32_lossy()
}

trait IntoF32 {
    fn into_f32_lossy(self) -> f32;
}
impl<E: burn::tensor::ElementConversion> IntoF32 for E {
    fn into_f32_lossy(self) -> f32 {
        self.elem::<f32>()
    }
}

fn parity<B: Backend>(fixtures: &std::path::Path, device: &B::Device) -> anyhow::Result<()> {
    let json: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(
        fixtures.join("models/fitv2_tiny.json"),
    )?)?;
    let cfg = FitConfig::from_json(&json["config"])?;
    let model = FitV2::<B>::load(
        fixtures.join("models/fitv2_tiny.safetensors"),
        &cfg,
        FloatDType::F32,
        device,
    )?;
    let cases = Checkpoint::open(fixtures.join("models/fitv2_tiny_cases.safetensors"))?;
    let bytes = std::fs::read(fixtures.join("models/fitv2_tiny_cases.safetensors"))?;
    let st = safetensors::SafeTensors::deserialize(&bytes)?;
    let ints = |k: &str| -> anyhow::Result<Vec<i64>> {
        let v = st.tensor(k)?;
        Ok(v.data()
            .chunks_exact(8)
            .map(|c| i64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
            .collect())
    };
    let (mut n_cases, mut failed, mut worst) = (0, 0, 0.0f64);
    for case in json["cases"].as_array().into_iter().flatten() {
        if case.get("sampler").is_some() {
            continue;
        }
        let k = case["case"].as_u64().unwrap_or(0);
        let (x, xs) = cases.read_f32(&format!("case{k}.x"))?;
        let (b, n) = (xs[0], xs[1]);
        let freqs: FitFreqs = case["custom_freqs"].as_str().unwrap_or("normal").parse()?;
        let rope = fit_rope(
            &cfg,
            FitPosition::Fit(freqs),
            case["decouple"].as_bool().unwrap_or(true),
        )?;
        let grid = ints(&format!("case{k}.grid"))?;
        let sizes: Vec<[f64; 2]> = match case.get("padded_sizes").and_then(|p| p.as_array()) {
            Some(p) => p
                .iter()
                .map(|s| [s[0].as_f64().unwrap_or(1.0), s[1].as_f64().unwrap_or(1.0)])
                .collect(),
            None => vec![
                [
                    case["height_tokens"].as_f64().unwrap_or(1.0),
                    case["width_tokens"].as_f64().unwrap_or(1.0)
                ];
                b
            ],
        };
        let samples = (0..b)
            .map(|s| {
                let ids: Vec<f64> = (0..n)
                    .flat_map(|j| [grid[s * 2 * n + n + j] as f64, grid[s * 2 * n + j] as f64])
                    .collect();
                SamplePositions::with_extents(&ids, 2, sizes[s].to_vec())
            })
            .collect::<Result<Vec<_>, _>>()?;
        let mut rot = RotaryEmbedding::<B>::batch(rope, samples, PairLayout::Interleaved, device)?;
        rot.set_static()?;
        let (mask, _) = cases.read_f32(&format!("case{k}.mask"))?;
        let mask = (!mask.iter().all(|m| *m > 0.5)).then(|| {
            Tensor::<B, 2, Bool>::from_data(
                TensorData::new(mask.iter().map(|m| *m > 0.5).collect::<Vec<_>>(), [b, n]),
                device,
            )
        });
        let (t, _) = cases.read_f32(&format!("case{k}.t"))?;
        let y = ints(&format!("case{k}.y"))?;
        let xt = Tensor::<B, 3>::from_data(TensorData::new(x, [b, n, xs[2]]), device);
        let tt = Tensor::<B, 1>::from_data(TensorData::new(t, [b]), device);
        let yt = Tensor::<B, 1, Int>::from_data(TensorData::new(y, [b]), device);
        let tables = rot.tables();
        let inputs = FitInputs {
            x: xt,
            t: tt,
            y: yt,
            mask,
        };
        let out = match case.get("cfg_scale").and_then(|s| s.as_f64()) {
            Some(s) => model.forward_with_cfg(inputs, tables, s, GuidedChannels::Reference),
            None => model.forward(inputs, tables),
        }?;
        let got: Vec<f32> = out
            .into_data()
            .convert::<f32>()
            .into_vec()
            .map_err(|e| anyhow!("{e:?}"))?;
        let (want, _) = cases.read_f32(&format!("case{k}.out"))?;
        let num: f64 = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
            .sum();
        let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
        let err = (num / den.max(1e-30)).sqrt();
        n_cases += 1;
        if err > 1e-4 {
            failed += 1;
        }
        worst = worst.max(err);
    }
    println!(
        "parity fitv2_tiny.json (device forward): {n_cases} cases, {failed} failed, max err {worst:e}"
    );
    if failed > 0 || n_cases == 0 {
        Err(anyhow!("device parity failed"))
    } else {
        Ok(())
    }
}

fn forward_timings<B: Backend>(device: &B::Device) -> anyhow::Result<()> {
    let cfg = FitConfig::xl_2();
    println!("| FiTv2-XL/2 forward, batch 2 | dtype | ms (median of 5) |\n|---|---|---|");
    for dtype in [FloatDType::F32, FloatDType::BF16] {
        let model = FitV2::<B>::random(&cfg, device)?;
        let model = match dtype {
            FloatDType::BF16 => cast_module(model, dtype),
            _ => model,
        };
        for px in [256usize, 320, 384] {
            let h = px / 16;
            let n = h * h;
            let mut rot = RotaryEmbedding::<B>::batch(
                fit_rope(&cfg, "dy-yarn".parse()?, true)?,
                vec![fit_grid(h, h, n)?],
                PairLayout::Interleaved,
                device,
            )?;
            rot.set_timestep(dype_core::Sigma::new(0.5)?)?;
            let x = dype::burn::pipeline::seeded_noise::<B, 3>(0, [2, n, cfg.token_dim()], device)
                .cast(dtype);
            let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32; 2], [2]), device)
                .cast(dtype);
            let y =
                Tensor::<B, 1, Int>::from_data(TensorData::new(vec![207i64, 1000], [2]), device);
            let mut times = Vec::new();
            for _ in 0..6 {
                let t0 = Instant::now();
                let out = model.forward(
                    FitInputs {
                        x: x.clone(),
                        t: t.clone(),
                        y: y.clone(),
                        mask: None,
                    },
                    rot.tables(),
                )?;
                sync(out);
                times.push(t0.elapsed().as_secs_f64() * 1e3);
            }
            times.remove(0);
            times.sort_by(f64::total_cmp);
            println!(
                "| {px}² ({n} tokens) | {dtype:?} | {:.1} |",
                times[times.len() / 2]
            );
        }
    }
    Ok(())
}

fn sample_timing<B: Backend>(device: &B::Device) -> anyhow::Result<()> {
    let cfg = FitConfig::xl_2();
    let model = FitV2::<B>::random(&cfg, device)?;
    let h = 384 / 16;
    let n = h * h;
    let mut rot = RotaryEmbedding::<B>::batch(
        fit_rope(&cfg, "dy-yarn".parse()?, true)?,
        vec![fit_grid(h, h, n)?],
        PairLayout::Interleaved,
        device,
    )?;
    let z = dype::burn::pipeline::seeded_noise::<B, 3>(0, [1, n, cfg.token_dim()], device);
    let state = Tensor::cat(vec![z.clone(), z], 0);
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![207i64, 1000], [2]), device);
    let steps = 28;
    let ts: Vec<f64> = (0..=steps).map(|i| i as f64 / steps as f64).collect();
    let t0 = Instant::now();
    let last = dype::burn::sampling::fixed(
        dype::burn::sampling::FixedMethod::Euler,
        |t: f64, x: &Tensor<B, 3>| -> anyhow::Result<Tensor<B, 3>> {
            rot.set_timestep(dype_core::FitTime::new(t.clamp(0.0, 1.0))?.into())?;
            let tt = Tensor::<B, 1>::from_data(TensorData::new(vec![t as f32; 2], [2]), device);
            Ok(model.forward_with_cfg(
                FitInputs {
                    x: x.clone(),
                    t: tt,
                    y: y.clone(),
                    mask: None,
                },
                rot.tables(),
                1.5,
                GuidedChannels::Reference,
            )?)
        },
        state,
        &ts,
        |_| {},
    )?;
    sync(last);
    println!(
        "| FiTv2-XL/2 28-step Euler sample, 384², CFG 1.5 (batch 2), f32 | {:.2} s |",
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Device memory in use as nvidia-smi reports it (MiB), if available. burn's CubeCL pool keeps
/// what it reserved, so this approximates the peak so far.
fn nvidia_smi_used_mib() -> Option<u64> {
    let out = std::process::Command::new("nvidia-smi")
        .args(["--query-gpu=memory.used", "--format=csv,noheader,nounits"])
        .output()
        .ok()?;
    String::from_utf8(out.stdout)
        .ok()?
        .lines()
        .next()?
        .trim()
        .parse()
        .ok()
}

fn flux_step<B: Backend>(dtype: Dtype, device: &B::Device) -> anyhow::Result<()> {
    use dype::burn::models::flux::{Flux, FluxConfig, FluxInputs, flux_rope};
    use dype_core::presets::OfficialMethod;
    if dtype == Dtype::F16 {
        bail!("flux-step --dtype f16: FLUX activations overflow f16; use bf16 or f32");
    }
    let dtype = dtype.float();
    let cfg = FluxConfig::dev();
    let t0 = Instant::now();
    let model = Flux::<B>::random(&cfg, device)?;
    let model = match dtype {
        FloatDType::F32 => model,
        _ => cast_module(model, dtype),
    };
    println!(
        "FLUX.1-dev random weights ({dtype:?}) built in {:.1}s; device memory in use: {}",
        t0.elapsed().as_secs_f64(),
        nvidia_smi_used_mib()
            .map(|m| format!("{m} MiB"))
            .unwrap_or_else(|| "n/a (no nvidia-smi)".into())
    );
    println!(
        "| FLUX.1-dev DiT step | tokens (img + txt) | dtype | s (first) | s (second) | device MiB in use after |"
    );
    println!("|---|---|---|---|---|---|");
    let txt_len = 512;
    for px in [1024usize, 2048, 4096] {
        let h = px / 16;
        let n = h * h;
        let mut rot = RotaryEmbedding::<B>::batch(
            flux_rope(&cfg, OfficialMethod::Yarn, true, 64.0)?,
            vec![SamplePositions::flux(txt_len, h, h)?],
            PairLayout::Interleaved,
            device,
        )?;
        rot.set_timestep(dype_core::Sigma::new(0.9)?)?;
        let wdt: burn::tensor::DType = dtype.into();
        let img = dype::burn::pipeline::seeded_noise::<B, 3>(0, [1, n, cfg.in_channels], device)
            .cast(wdt);
        let txt =
            dype::burn::pipeline::seeded_noise::<B, 3>(1, [1, txt_len, cfg.context_in_dim], device)
                .cast(wdt);
        let y =
            dype::burn::pipeline::seeded_noise::<B, 2>(2, [1, cfg.vec_in_dim], device).cast(wdt);
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.9f32], [1]), device);
        let g = Tensor::<B, 1>::from_data(TensorData::new(vec![3.5f32], [1]), device);
        let mut times = Vec::new();
        for _ in 0..2 {
            let t0 = Instant::now();
            let inputs = FluxInputs {
                img: img.clone(),
                txt: txt.clone(),
                timesteps: t.clone(),
                y: y.clone(),
                guidance: Some(g.clone()),
            };
            let out = model.forward(inputs, rot.tables())?;
            sync(out);
            times.push(t0.elapsed().as_secs_f64());
        }
        let mem = nvidia_smi_used_mib()
            .map(|m| m.to_string())
            .unwrap_or_else(|| "n/a".into());
        println!(
            "| {px}² | {n} + {txt_len} | {dtype:?} | {:.2} | {:.2} | {mem} |",
            times[0], times[1]
        );
        B::memory_cleanup(device);
    }
    Ok(())
}

fn text_encoders<B: Backend>(device: &B::Device) -> anyhow::Result<()> {
    use dype::burn::models::text::{ClipConfig, ClipTextModel};
    use dype::burn::models::text::{T5Config, T5Encoder};
    println!("| text encoder (random bf16 weights) | tokens | ms (median of 5) |\n|---|---|---|");
    let time = |f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<f64> {
        let mut t = Vec::new();
        for _ in 0..6 {
            let t0 = Instant::now();
            f()?;
            t.push(t0.elapsed().as_secs_f64() * 1e3);
        }
        t.remove(0);
        t.sort_by(f64::total_cmp);
        Ok(t[t.len() / 2])
    };
    let ids = |n: usize| {
        Tensor::<B, 2, Int>::from_data(
            TensorData::new(
                (0..n as i64).map(|i| i % 1000 + 5).collect::<Vec<_>>(),
                [1, n],
            ),
            device,
        )
    };
    let clip = ClipTextModel::<B>::random(&ClipConfig::vit_l_14(), FloatDType::BF16, device)?;
    let ms = time(&mut || {
        let out = clip.forward(ids(77))?;
        let _ = out.pooled.sum().into_scalar().into_f32_lossy();
        Ok(())
    })?;
    println!("| CLIP ViT-L/14 text | 77 | {ms:.1} |");
    drop(clip);
    let t5 = T5Encoder::<B>::random(&T5Config::xxl(), FloatDType::BF16, device)?;
    let ms = time(&mut || {
        let out = t5.forward(ids(512))?;
        let _ = out.sum().into_scalar().into_f32_lossy();
        Ok(())
    })?;
    println!("| T5-XXL encoder | 512 | {ms:.1} |");
    Ok(())
}
