//! The dype half of `scripts/bench_vs_torch.py`: times the bundled shapes FiTv2 on the CPU
//! backend (burn Flex) for the rows of the side-by-side table and prints them as JSON.
//!
//! Rows (inputs are closed-form, so the PyTorch half builds the same tensors):
//! * `eval_b2_{n}x{n}`: one guided evaluation (`forward_with_cfg`, scale 1.5), batch 2
//!   (conditional, unconditional), `n × n` tokens, base RoPE on the grid;
//!   `x[j] = sin(0.37 j)` over the flat `[2, n², 48]` tokens, `t = 0.4`, `y = [3, null]`.
//! * `train_b{b}_8x8`: one training step (flow-matching loss, backward, AdamW, EMA update) of
//!   [`dype_lab::train::Trainer`] on a batch of 32² px images `sin(0.37 j)`, noise `cos(0.23 j)`,
//!   `t_i = (i + 0.5) / b`, `y_i = i mod 9`.
//!
//! Threads: burn Flex runs on rayon's global pool, so `RAYON_NUM_THREADS` sets the count.
//!
//! ```text
//! cargo run --release -p dype-benches --bin vs_torch -- [--rows eval_b2_8x8,…] [--samples 10]
//!     [--dump DIR]
//! ```
//! `--dump DIR` writes each evaluation row's output as raw little-endian f32 (`DIR/<row>.f32`)
//! for the script's parity check.

use std::path::PathBuf;
use std::time::Instant;

use burn::tensor::{Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::fitv2::{
    FitConfig, FitInputs, FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope,
};
use dype_burn::rotary::{PairLayout, RotaryEmbedding};
use dype_lab::train::{Batch, TrainConfig, Trainer, shapes_model};

type B = Cpu;
type AD = burn::backend::Autodiff<Cpu>;

const ROWS: [&str; 5] = [
    "eval_b2_8x8",
    "eval_b2_16x16",
    "eval_b2_32x32",
    "train_b32_8x8",
    "train_b64_8x8",
];

fn wave(len: usize, freq: f64, cos: bool) -> Vec<f32> {
    (0..len)
        .map(|j| {
            let a = freq * j as f64;
            (if cos { a.cos() } else { a.sin() }) as f32
        })
        .collect()
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let n = v.len();
    if n % 2 == 1 {
        v[n / 2]
    } else {
        0.5 * (v[n / 2 - 1] + v[n / 2])
    }
}

fn time(samples: usize, warmup: usize, mut f: impl FnMut()) -> Vec<f64> {
    for _ in 0..warmup {
        f();
    }
    (0..samples)
        .map(|_| {
            let start = Instant::now();
            f();
            start.elapsed().as_secs_f64() * 1e3
        })
        .collect()
}

fn eval_row(
    model: &FitV2<B>,
    config: &FitConfig,
    n: usize,
    samples: usize,
    dump: Option<&PathBuf>,
    name: &str,
) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let device = Default::default();
    let tokens = n * n;
    let c = config.token_dim();
    let rope = fit_rope(config, FitPosition::from(dype_core::Method::Base), true)?;
    let rotary = RotaryEmbedding::<B>::new(
        rope,
        fit_grid(n, n, tokens)?,
        PairLayout::Interleaved,
        &device,
    )?;
    let x = Tensor::<B, 3>::from_data(
        TensorData::new(wave(2 * tokens * c, 0.37, false), [2, tokens, c]),
        &device,
    );
    let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.4f32, 0.4], [2]), &device);
    let y = Tensor::<B, 1, Int>::from_data(
        TensorData::new(vec![3i64, config.null_class() as i64], [2]),
        &device,
    );
    let inputs = FitInputs {
        x,
        t,
        y,
        mask: None,
    };
    let run = || {
        model.forward_with_cfg(
            inputs.clone(),
            rotary.tables(),
            1.5,
            GuidedChannels::Reference,
        )
    };
    if let Some(dir) = dump {
        let out: Vec<f32> = run()?
            .into_data()
            .into_vec()
            .map_err(|e| format!("{e:?}"))?;
        let bytes: Vec<u8> = out.iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(dir.join(format!("{name}.f32")), bytes)?;
    }
    let mut failure = None;
    let times = time(samples, 2, || {
        // Reading the data back waits for the whole computation.
        match run() {
            Ok(out) => {
                let _ = out.into_data();
            }
            Err(e) => failure = Some(e),
        }
    });
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(times),
    }
}

fn train_row(batch: usize, samples: usize) -> Result<Vec<f64>, Box<dyn std::error::Error>> {
    let device = Default::default();
    let config = TrainConfig {
        batch,
        ..TrainConfig::default()
    };
    let s = config.image_size;
    let per = 3 * s * s;
    let data = Batch {
        images: wave(batch * per, 0.37, false),
        noise: wave(batch * per, 0.23, true),
        t: (0..batch)
            .map(|i| ((i as f64 + 0.5) / batch as f64) as f32)
            .collect(),
        labels: (0..batch).map(|i| (i % 9) as i64).collect(),
        classes: (0..batch).map(|i| i % 8).collect(),
    };
    let mut trainer = Trainer::<AD>::new(config, &device)?;
    let mut failure = None;
    let times = time(samples, 1, || {
        if let Err(e) = trainer.step_on(&data) {
            failure = Some(e);
        }
    });
    match failure {
        Some(e) => Err(e.into()),
        None => Ok(times),
    }
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut rows: Vec<String> = ROWS.iter().map(|s| s.to_string()).collect();
    let mut samples = 10usize;
    let mut dump = None;
    let mut weights = PathBuf::from(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../examples/shapes/model.safetensors"
    ));
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().ok_or(format!("{arg} needs a value"));
        match arg.as_str() {
            "--rows" => rows = value()?.split(',').map(str::to_string).collect(),
            "--samples" => samples = value()?.parse()?,
            "--dump" => dump = Some(PathBuf::from(value()?)),
            "--weights" => weights = PathBuf::from(value()?),
            "--help" | "-h" => {
                println!(
                    "vs_torch [--rows {}] [--samples N] [--dump DIR] [--weights FILE]",
                    ROWS.join(",")
                );
                return Ok(());
            }
            other => return Err(format!("unknown argument {other}").into()),
        }
    }
    if samples == 0 {
        return Err("--samples must be at least 1".into());
    }
    if let Some(bad) = rows.iter().find(|r| !ROWS.contains(&r.as_str())) {
        return Err(format!("unknown row {bad}; rows: {}", ROWS.join(", ")).into());
    }
    let config = shapes_model();
    let device = Default::default();
    let model = FitV2::<B>::load(&weights, &config, burn::tensor::FloatDType::F32, &device)?;
    let threads = rayon_threads();
    let mut out = Vec::new();
    for name in &rows {
        let times = match name.as_str() {
            "eval_b2_8x8" => eval_row(&model, &config, 8, samples, dump.as_ref(), name)?,
            "eval_b2_16x16" => eval_row(&model, &config, 16, samples, dump.as_ref(), name)?,
            "eval_b2_32x32" => eval_row(&model, &config, 32, samples, dump.as_ref(), name)?,
            "train_b32_8x8" => train_row(32, samples)?,
            "train_b64_8x8" => train_row(64, samples)?,
            _ => unreachable!("rows are checked above"),
        };
        let med = median(times.clone());
        eprintln!("{name}: median {med:.2} ms over {} samples", times.len());
        out.push(serde_json::json!({"name": name, "median_ms": med, "samples_ms": times}));
    }
    let report = serde_json::json!({"impl": "dype (burn Flex)", "threads": threads, "rows": out});
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}

fn rayon_threads() -> usize {
    std::env::var("RAYON_NUM_THREADS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}
