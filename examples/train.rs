//! Trains the small pixel-space FiTv2 of `dype_lab::train` on the procedural shapes dataset
//! (`dype_lab::shapes`), with checkpoints you can resume, then runs the quality gate.
//!
//! ```text
//! cargo run --release --features train --example train -- --steps 2000 --out runs/shapes      # ≈ 1 h on 2 cores
//! cargo run --release --features train --example train -- --steps 3000 --out runs/shapes --resume
//! cargo run --release --features cuda --example train -- --backend cuda --steps 20000
//! ```
//!
//! The run directory holds `last/` (the newest checkpoint: `state.json`, burn records of the model
//! and AdamW, `ema.safetensors` in FiT's key layout) and `loss.csv` (step, loss, mean of the last
//! 100). The EMA weights are what `fitv2 --demo` samples. With `--keep-every N`, every N-th
//! checkpoint's EMA weights are also kept as `ema/step-NNNNNN.safetensors` (config and step in the
//! header; `dype_lab::train::load_bundle`-compatible weights).

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::Context;
use burn::backend::Autodiff;
use burn::tensor::backend::Backend;
use clap::Parser;
use common::OnBackend;
use dype::burn::backend::BackendKind;
use dype_lab::shapes::CLASS_NAMES;
use dype_lab::train::{
    BundleInfo, GATE_THRESHOLD, TrainConfig, Trainer, export_bundle, quality_gate,
};
use indicatif::{ProgressBar, ProgressStyle};

/// Train the shapes FiTv2 (pixel space, 32² px, 8 × 8 tokens) with checkpoints and a quality gate.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Total optimiser steps of the run (a resumed run continues up to this count).
    #[arg(long, default_value_t = 2000)]
    steps: u64,
    /// Images per step.
    #[arg(long, default_value_t = 32)]
    batch: usize,
    /// AdamW peak learning rate.
    #[arg(long, default_value_t = 6e-4)]
    lr: f64,
    /// The run's seed (initialisation and batches).
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Run directory (checkpoints and the loss log).
    #[arg(long, default_value = "runs/shapes")]
    out: PathBuf,
    /// Save a checkpoint every this many steps (and at the end).
    #[arg(long, default_value_t = 100)]
    checkpoint_every: u64,
    /// Also keep the EMA weights of every checkpoint at a multiple of this many steps as
    /// `ema/step-NNNNNN.safetensors` in `--out` (0 = keep only the newest checkpoint).
    #[arg(long, default_value_t = 0)]
    keep_every: u64,
    /// A linear cool-down of the learning rate to 0, `START:END` in steps; repeat for several
    /// phases (each restarts at the peak). On `--resume` a new phase may not start before the
    /// run's current step.
    #[arg(long)]
    cooldown: Vec<String>,
    /// Continue the run saved in `--out` (its config wins over `--batch`, `--lr`, `--seed`).
    #[arg(long)]
    resume: bool,
    /// Samples per class for the quality gate after training (0 = skip).
    #[arg(long, default_value_t = 8)]
    gate: usize,
    /// After training, write the EMA weights as a bundle (`model.safetensors`, `config.json`) to
    /// this directory (what `fitv2 --demo` loads from `examples/shapes`).
    #[arg(long)]
    export: Option<PathBuf>,
    /// After training, plot the loss per step and its running mean to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
    /// Backend (compiled in by the features `cpu`, `wgpu`, `cuda`).
    #[arg(long, default_value = "cpu")]
    backend: BackendKind,
}

fn main() -> std::process::ExitCode {
    common::exit_code(try_main())
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::on_backend(args.backend, Job(&args))
}

struct Job<'a>(&'a Args);

impl OnBackend for Job<'_> {
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()> {
        let args = self.0;
        let last = args.out.join("last");
        let old = args.out.join("old");
        // A crash between the two renames of `checkpoint` leaves only `old`.
        if args.resume && !last.exists() && old.exists() {
            std::fs::rename(&old, &last)?;
        }
        let mut trainer = if args.resume {
            Trainer::<Autodiff<B>>::resume(&last, &device)
                .with_context(|| format!("resuming from {}", last.display()))?
        } else {
            if last.exists() {
                anyhow::bail!(
                    "{} holds a run: pass --resume to continue it, or another --out",
                    last.display()
                );
            }
            let config = TrainConfig {
                batch: args.batch,
                learning_rate: args.lr,
                seed: args.seed,
                ..TrainConfig::default()
            };
            Trainer::<Autodiff<B>>::new(config, &device)?
        };
        for spec in &args.cooldown {
            let (a, b) = spec
                .split_once(':')
                .and_then(|(a, b)| Some((a.trim().parse().ok()?, b.trim().parse().ok()?)))
                .ok_or_else(|| anyhow::anyhow!("--cooldown `{spec}`: expected START:END"))?;
            trainer.add_cooldown(a, b).context("--cooldown")?;
        }
        let start = trainer.step_count();
        let bar = ProgressBar::new(args.steps);
        bar.set_position(start.min(args.steps));
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} steps  {per_sec}  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let started = std::time::Instant::now();
        while trainer.step_count() < args.steps {
            let loss = trainer.step()?;
            let done = trainer.step_count();
            bar.set_position(done);
            bar.set_message(format!(
                "loss {loss:.4}  mean100 {:.4}",
                mean_tail(trainer.losses())
            ));
            if done.is_multiple_of(args.checkpoint_every.max(1)) || done == args.steps {
                checkpoint(&trainer, &args.out)?;
                if args.keep_every > 0 && done.is_multiple_of(args.keep_every) {
                    keep_ema(&args.out, done)?;
                }
                let line = format!(
                    "step {done}: checkpoint {} (mean loss of the last 100: {:.4}, {:.1} s elapsed)",
                    last.display(),
                    mean_tail(trainer.losses()),
                    started.elapsed().as_secs_f64()
                );
                // A hidden bar (output not a terminal, e.g. a log file) drops `println`.
                if bar.is_hidden() {
                    eprintln!("{line}");
                } else {
                    bar.println(line);
                }
            }
        }
        bar.finish();
        if trainer.step_count() == start && !last.exists() {
            checkpoint(&trainer, &args.out)?;
        }
        if let Some(dir) = &args.export {
            let info = BundleInfo {
                train: trainer.config().clone(),
                step: trainer.step_count(),
                command: Some(format!(
                    "cargo run --release{} --example train -- --steps {} --batch {} --lr {} --seed {}{} --backend {}",
                    match args.backend {
                        BackendKind::Cpu => String::new(),
                        other => format!(" --features {other}"),
                    },
                    trainer.step_count(),
                    trainer.config().batch,
                    trainer.config().learning_rate,
                    trainer.config().seed,
                    trainer
                        .config()
                        .cooldown
                        .iter()
                        .map(|[a, b]| format!(" --cooldown {a}:{b}"))
                        .collect::<String>(),
                    args.backend
                )),
            };
            export_bundle(trainer.ema(), &info, dir)?;
            eprintln!("exported the EMA weights to {}", dir.display());
        }
        if let Some(path) = &args.plot {
            plot_losses(path, trainer.losses())
                .with_context(|| format!("plotting {}", path.display()))?;
            eprintln!("wrote {}", path.display());
        }
        if args.gate > 0 {
            let size = trainer.config().image_size;
            let report = quality_gate(trainer.ema(), size, args.gate, &device)?;
            for (class, passed) in report.passed.iter().enumerate() {
                let name = CLASS_NAMES.get(class).copied().unwrap_or("?");
                println!("  {name:>16}: {passed}/{}", report.per_class);
            }
            println!(
                "quality gate at {size}² (EMA, step {}): {:.1} % pass, needs {:.0} % — {}",
                trainer.step_count(),
                100.0 * report.pass_rate(),
                100.0 * GATE_THRESHOLD,
                if report.is_met() {
                    "met"
                } else {
                    "NOT met: no method comparison means anything yet, keep training (--resume)"
                }
            );
        }
        Ok(())
    }
}

/// The mean of the last 100 losses.
fn mean_tail(losses: &[f64]) -> f64 {
    let tail = &losses[losses.len().saturating_sub(100)..];
    tail.iter().sum::<f64>() / tail.len().max(1) as f64
}

/// Copies the newest checkpoint's EMA weights to `out/ema/step-NNNNNN.safetensors`.
fn keep_ema(out: &Path, step: u64) -> anyhow::Result<()> {
    let dir = out.join("ema");
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    let to = dir.join(format!("step-{step:06}.safetensors"));
    std::fs::copy(out.join("last").join(dype_lab::train::files::EMA), &to)
        .with_context(|| format!("writing {}", to.display()))?;
    Ok(())
}

/// Saves to `out/next`, then replaces `out/last` with it (a crash never leaves a half-written
/// `last`), and rewrites `out/loss.csv`.
fn checkpoint<B: burn::tensor::backend::AutodiffBackend>(
    trainer: &Trainer<B>,
    out: &Path,
) -> anyhow::Result<()> {
    let (next, last, old) = (out.join("next"), out.join("last"), out.join("old"));
    if next.exists() {
        std::fs::remove_dir_all(&next).with_context(|| format!("removing {}", next.display()))?;
    }
    trainer.save(&next)?;
    if last.exists() {
        if old.exists() {
            std::fs::remove_dir_all(&old)?;
        }
        std::fs::rename(&last, &old)?;
    }
    std::fs::rename(&next, &last).with_context(|| format!("renaming to {}", last.display()))?;
    if old.exists() {
        std::fs::remove_dir_all(&old)?;
    }
    let path = out.join("loss.csv");
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(&path).with_context(|| format!("writing {}", path.display()))?,
    );
    writeln!(csv, "step,loss,mean100")?;
    let losses = trainer.losses();
    for (i, loss) in losses.iter().enumerate() {
        writeln!(csv, "{},{loss},{}", i + 1, mean_tail(&losses[..=i]))?;
    }
    csv.flush()?;
    Ok(())
}

/// The loss per step (light) and the mean of the last 100 (dark).
fn plot_losses(path: &Path, losses: &[f64]) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let labels = common::plot_fonts();
    let n = losses.len().max(2);
    let top = losses.iter().copied().fold(0.0f64, f64::max).max(1e-3) * 1.05;
    let root = BitMapBackend::new(path, (900, 500)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(
                "shapes FiTv2: flow-matching loss per step",
                ("sans-serif", 22),
            )
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0f64..n as f64, 0f64..top)?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("optimiser step")
            .y_desc("loss (MSE of the velocity)")
            .draw()?;
    }
    let light = RGBColor(150, 170, 220);
    let raw = losses.iter().enumerate().map(|(i, l)| ((i + 1) as f64, *l));
    let series = chart.draw_series(LineSeries::new(raw, light.stroke_width(1)))?;
    if labels {
        series
            .label("loss")
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], light));
    }
    let mean = (0..losses.len()).map(|i| ((i + 1) as f64, mean_tail(&losses[..=i])));
    let series = chart.draw_series(LineSeries::new(mean, BLUE.stroke_width(2)))?;
    if labels {
        series
            .label("mean of the last 100")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLUE));
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperRight)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
