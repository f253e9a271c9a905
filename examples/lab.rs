//! The lab: how each positional method behaves when the shapes FiTv2 (trained here at 32²)
//! samples at 2×, 4× and 4:1, measured against the renderer's known ideal, and the spectral
//! progression of DyPE's Fig. 2 (`dype_lab::lab`; docs/evidence.md shows a full run).
//!
//! ```text
//! cargo run --release --features lab --example lab -- --quick                # toy settings, < 1 min (CI)
//! cargo run --release --features lab --example lab -- --out runs/lab         # the full lab (≈ 2 h 15 min, one process)
//! cargo run --release --features lab --example lab -- --out runs/lab --resume   # continue it (finished methods kept)
//! # both cores (≈ 67 min): two processes sample different cells or methods, then a resumed run
//! # assembles them (and finishes a cell neither process could)
//! lab="cargo run --release --features lab --example lab -- --out runs/lab --resume"
//! $lab --only 4x --only-methods base,pi,ntk,yarn,dy-pi,dy-ntk,dy-yarn &
//! $lab --only 1x,2x,4to1 && $lab --only 4x --only-methods official-dy-yarn,fit-yarn,lumina-time-aware; wait
//! $lab
//! cargo run --release --features lab --example lab -- --methods base,dy-yarn --samples 64 --steps 32
//! ```
//!
//! Writes `lab.json`, `comparison.md`, `comparison.png`, `resolution_grid.png`, `grid_<cell>.png`,
//! `progression.md`, `progression.png` and `frequencies.md` into `--out`, and each finished cell to
//! `cells/<label>.json`; each method of a cell is saved as soon as it is done
//! (`cells/<label>/method_<i>.json`, its first samples as PNGs), so `--resume` continues an
//! interrupted cell at the next method.

mod common;

use std::path::PathBuf;

use anyhow::Context;
use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;
use clap::Parser;
use common::OnBackend;
use dype::burn::backend::BackendKind;
use dype_lab::lab::{Cell, LabConfig, LabProgress};
use indicatif::{ProgressBar, ProgressStyle};

/// Compare positional methods on the shapes model beyond its training resolution.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Toy settings (3 methods, 1×, 2×, 4:1, 8 samples, 4 steps): a smoke run in under a minute.
    #[arg(long)]
    quick: bool,
    /// Output directory.
    #[arg(long, default_value = "runs/lab")]
    out: PathBuf,
    /// A trained-model bundle (`model.safetensors` + `config.json`); default the bundled one.
    #[arg(long)]
    model: Option<PathBuf>,
    /// Methods, comma-separated registry names (`inspect --method list`); `base` is added first
    /// when missing.
    #[arg(long, value_delimiter = ',')]
    methods: Option<Vec<String>>,
    /// Extra cells `LABEL:HEIGHTxWIDTH` (pixels, multiples of the training size), replacing the
    /// defaults after 1×.
    #[arg(long)]
    cell: Vec<String>,
    /// Samples per cell and method.
    #[arg(long)]
    samples: Option<usize>,
    /// Euler steps.
    #[arg(long)]
    steps: Option<usize>,
    /// Samples per model evaluation.
    #[arg(long)]
    batch: Option<usize>,
    /// Reuse the cells a previous run with the same settings saved in `--out` (`cells/*.json`).
    #[arg(long)]
    resume: bool,
    /// Sample only these cells (labels, comma-separated); the others are taken from `--out`
    /// with `--resume` or left out. The combined outputs are written once every cell is there.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Sample only these methods (comma-separated) of the cells it samples; a cell is finished
    /// by a run that has the others on disk (`--resume`). Splits one cell over two processes.
    #[arg(long = "only-methods", value_delimiter = ',')]
    only_methods: Vec<String>,
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
        let dir = args.model.clone().unwrap_or_else(common::shapes_dir);
        let (model, info) = dype_lab::train::load_bundle::<B>(&dir, FloatDType::F32, &device)
            .with_context(|| format!("loading the model bundle in {}", dir.display()))?;
        let size = info.train.image_size;
        let mut config = if args.quick {
            LabConfig::quick(size)
        } else {
            LabConfig::full(size)
        };
        if let Some(methods) = &args.methods {
            let mut m: Vec<String> = methods.iter().filter(|m| *m != "base").cloned().collect();
            m.insert(0, "base".into());
            config.methods = m;
        }
        if !args.cell.is_empty() {
            config.cells.truncate(1);
            for spec in &args.cell {
                config.cells.push(parse_cell(spec)?);
            }
        }
        if let Some(v) = args.samples {
            config.samples = v;
        }
        if let Some(v) = args.steps {
            config.steps = v;
        }
        if let Some(v) = args.batch {
            config.batch = v;
        }
        eprintln!(
            "lab: model {} (step {}), methods {}, cells {}, {} samples, {} steps → {}",
            dir.display(),
            info.step,
            config.methods.join(","),
            config
                .cells
                .iter()
                .map(|c| format!("{} {}×{}", c.label, c.height, c.width))
                .collect::<Vec<_>>()
                .join(", "),
            config.samples,
            config.steps,
            args.out.display()
        );
        let bar = ProgressBar::new(1);
        bar.set_style(
            ProgressStyle::with_template(
                "[{elapsed_precise}] {bar:30} {pos}/{len} evaluations  eta {eta}  {msg}",
            )
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
        );
        let options = dype_lab::lab::RunOptions {
            resume: args.resume,
            only: args.only.clone(),
            methods: args.only_methods.clone(),
        };
        let report = dype_lab::lab::run(
            &model,
            size,
            &config,
            &args.out,
            &options,
            &device,
            |p: &LabProgress| {
                bar.set_length(p.total as u64);
                bar.set_position(p.done as u64);
                bar.set_message(p.what.clone());
            },
        )?;
        bar.finish_and_clear();
        if !report.is_complete() {
            // The tables of the cells there are so far (nothing is written but the cells).
            println!("{}", dype_lab::lab::comparison_markdown(&report));
            println!("{}", dype_lab::lab::progression_markdown(&report));
            eprintln!(
                "lab: {:.0} s; {} of {} cells in {} (the tables above are those cells only); run with --resume (no --only) once every cell is there",
                report.seconds,
                report.cells.len(),
                config.cells.len(),
                args.out.join("cells").display()
            );
            return Ok(());
        }
        println!(
            "{}",
            dype_lab::lab::comparison_markdown(&report)
                .lines()
                .filter(|l| l.starts_with('|') || l.starts_with('#'))
                .collect::<Vec<_>>()
                .join("\n")
        );
        eprintln!(
            "lab: {:.0} s here ({:.0} s of compute over all cells); wrote lab.json, comparison.md/.png, progression.md/.png, frequencies.md and the grids to {}",
            report.seconds,
            report.cell_seconds(),
            args.out.display()
        );
        Ok(())
    }
}

/// `LABEL:HxW`.
fn parse_cell(spec: &str) -> anyhow::Result<Cell> {
    let parsed = spec.split_once(':').and_then(|(label, size)| {
        let (h, w) = size.split_once(['x', '×'])?;
        Some(Cell::new(
            label,
            h.trim().parse().ok()?,
            w.trim().parse().ok()?,
        ))
    });
    parsed.ok_or_else(|| {
        anyhow::anyhow!("--cell `{spec}`: expected LABEL:HEIGHTxWIDTH, e.g. 8x:256x256")
    })
}
