//! Inspect what a positional method does over a sampler's schedule: per step the time, κ(t), the
//! per-axis scales and attention factors and the frequency table; `--json` for machines, `--plot`
//! for the wavelength curves (like the DyPE paper's Fig. 6–7).
//!
//! ```text
//! cargo run --release --example inspect -- --preset flux --method dy-yarn --size 4096x4096 --steps 6
//! cargo run --release --features lab --example inspect -- --preset fitv2 --method dy-ntk --size 384 --plot fit.png
//! cargo run --release --example inspect -- --preset hf --method yarn --size 16384 --json
//! ```

mod common;

use std::path::PathBuf;

use anyhow::{Context, bail};
use clap::{Parser, ValueEnum};
use dype_core::presets;
use dype_core::{AxialRope, AxisConfig, AxisPolicy, Method, Sigma, StepInfo};

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Preset {
    /// FLUX.1: axes (16, 56, 56), θ 1e4, 64 trained tokens per side, 16 px per token.
    Flux,
    /// FiTv2-XL/2: axes (36, 36), θ 1e4, 16 trained tokens per side, 16 px per token.
    Fitv2,
    /// A 1-D LLM axis: head dim 128, θ 5e5, 4096 trained positions, `--size` in positions.
    Hf,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
enum Schedule {
    /// σ evenly spaced from 1 to 0.
    Linear,
    /// FLUX's shifted schedule σ' = e^μ / (e^μ + 1/σ − 1) over σ = linspace(1, 1/N, N), then 0
    /// (`dype_core::flow::flux_sigmas`).
    FluxShift,
}

/// Inspect DyPE / RoPE extrapolation over a sampler schedule.
#[derive(Parser, Debug)]
#[command(version, about)]
struct Args {
    /// Model layout.
    #[arg(long, value_enum, default_value = "flux")]
    preset: Preset,
    /// Method, any registry name (`--method list` prints them all).
    #[arg(long, default_value = "dy-yarn")]
    method: String,
    /// Target size: `N` (square) or `HxW`, in pixels (flux, fitv2) or positions (hf).
    #[arg(long, default_value = "4096")]
    size: String,
    /// Number of sampler steps.
    #[arg(long, default_value_t = 6)]
    steps: usize,
    /// Sampler schedule.
    #[arg(long, value_enum, default_value = "flux-shift")]
    schedule: Schedule,
    /// μ of the FLUX shift (the official DyPE pipeline pins 1.15).
    #[arg(long, default_value_t = 1.15)]
    mu: f64,
    /// Axis policy: per-axis (anisotropic), isotropic or vision-yarn. Default: the method's own
    /// (e.g. comfy-yarn is isotropic), else per-axis.
    #[arg(long)]
    policy: Option<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
    /// Write the wavelength curves of each step to this PNG.
    #[arg(long)]
    plot: Option<PathBuf>,
}

/// The σ of each step, from 1 (noise) to a final 0.
fn schedule(kind: Schedule, n: usize, mu: f64) -> anyhow::Result<Vec<f64>> {
    let n = n.max(1);
    Ok(match kind {
        Schedule::Linear => (0..=n).map(|i| 1.0 - i as f64 / n as f64).collect(),
        Schedule::FluxShift => dype_core::flux_sigmas(n, mu)
            .context("--steps/--mu")?
            .collect(),
    })
}

fn build(args: &Args) -> anyhow::Result<(AxialRope, Vec<f64>, Vec<&'static str>)> {
    let (h, w) = common::parse_size::<f64>(&args.size).context("--size")?;
    let policy = match args.policy.as_deref() {
        None => None,
        Some("per-axis") => Some(AxisPolicy::PerAxis),
        Some("isotropic") => Some(AxisPolicy::Isotropic),
        Some("vision-yarn") => Some(AxisPolicy::VisionYarn),
        Some(p) => {
            bail!("unknown policy `{p}` (per-axis, isotropic, vision-yarn)");
        }
    };
    let mut recipe = common::recipe(&args.method)?;
    if policy.is_some() {
        recipe.policy = policy;
    }
    let (axes, extents, names) = match args.preset {
        Preset::Flux => (
            presets::paper_flux(Method::Base)?.axes().to_vec(),
            vec![1.0, (h / 16.0).ceil(), (w / 16.0).ceil()],
            vec!["axis0", "rows", "cols"],
        ),
        Preset::Fitv2 => {
            let a = AxisConfig::scaled(
                presets::FITV2_HEAD_DIM / 2,
                1e4,
                presets::FITV2_TRAIN_TOKENS,
            )?;
            (
                vec![a, a],
                vec![(h / 16.0).ceil(), (w / 16.0).ceil()],
                vec!["rows", "cols"],
            )
        }
        Preset::Hf => (
            vec![AxisConfig::scaled(128, 5e5, 4096.0)?],
            vec![h],
            vec!["positions"],
        ),
    };
    let rope = recipe.rope(&axes, AxisPolicy::PerAxis)?;
    Ok((rope, extents, names))
}

/// Pairs that keep their native frequency (relative difference ≤ 1e-12): with L in tokens, paper
/// YaRN's β = 32 rotations is more than FLUX's highest pair turns over 64 tokens (64/2π ≈ 10.2), so
/// at s > 1 it keeps no pair native and behaves close to PI·τ.
fn native_pairs(axis: &dype_core::Axis, freqs: &[f64]) -> usize {
    freqs
        .iter()
        .enumerate()
        .filter(|&(i, &w)| {
            let b = axis.inv_freq(i);
            (w - b).abs() <= 1e-12 * b
        })
        .count()
}

/// `println!` into a `String` (written to stdout at once by `common::write_stdout`).
macro_rules! say {
    ($out:expr, $($arg:tt)*) => {{
        use std::fmt::Write as _;
        let _ = writeln!($out, $($arg)*);
    }};
}

struct Step {
    sigma: f64,
    info: StepInfo,
    freqs: Vec<f64>,
}

fn main() -> std::process::ExitCode {
    common::exit_code(try_main())
}

fn try_main() -> anyhow::Result<()> {
    let args = Args::parse();
    common::exit_if_list(&args.method);
    run(&args)
}

fn run(args: &Args) -> anyhow::Result<()> {
    #[cfg(not(feature = "lab"))]
    if args.plot.is_some() {
        return Err(common::needs_feature("--plot", "lab"));
    }
    let (rope, extents, names) = build(args)?;
    let mut steps = Vec::new();
    for sigma in schedule(args.schedule, args.steps, args.mu)? {
        let mut freqs = vec![0.0; rope.pairs()];
        let t = Sigma::new(sigma.clamp(0.0, 1.0))?;
        let info = rope.step(&extents, Some(t), &mut freqs)?;
        steps.push(Step { sigma, info, freqs });
    }
    let mut out = String::new();
    if args.json {
        print_json(&mut out, args, &rope, &extents, &names, &steps);
    } else {
        print_text(&mut out, args, &rope, &extents, &names, &steps);
    }
    common::write_stdout(&out)?;
    #[cfg(feature = "lab")]
    if let Some(path) = &args.plot {
        plot(path, &rope, &names, &steps).context("plot")?;
        eprintln!("wrote {}", path.display());
    }
    Ok(())
}

fn print_text(
    out: &mut String,
    args: &Args,
    rope: &AxialRope,
    extents: &[f64],
    names: &[&str],
    steps: &[Step],
) {
    say!(
        out,
        "preset {:?}, method `{}` = {:?}",
        args.preset,
        args.method,
        rope.method()
    );
    say!(
        out,
        "policy {:?}, attention {:?}, extents {:?}",
        rope.policy(),
        rope.attention(),
        extents
    );
    for (k, s) in steps.iter().enumerate() {
        let kappa = match s.info.kappa() {
            Some(k) => format!("{k:.4}"),
            None if rope.method().is_dynamic() => "none (time-aware without κ)".into(),
            None => "static".into(),
        };
        say!(out, "\nstep {k}: σ = t = {:.4}, κ(t) = {kappa}", s.sigma);
        let mut off = 0;
        for (a, (ax, name)) in rope.axes().iter().zip(names).enumerate() {
            let st = s.info.axes()[a];
            let n = ax.axis.pairs();
            let native = native_pairs(&ax.axis, &s.freqs[off..off + n]);
            say!(
                out,
                "  {name:>9}: dim {:3}, s_lin {:.4}, s_ntk {:.4}, attention {:.6}, native pairs {native}/{n} ({:.0} %)",
                ax.axis.dim(),
                st.scales.linear,
                st.scales.ntk,
                st.attention_factor,
                100.0 * native as f64 / n as f64
            );
            let f: Vec<String> = s.freqs[off..off + n]
                .iter()
                .map(|w| format!("{w:.4e}"))
                .collect();
            say!(out, "             ω = [{}]", f.join(", "));
            off += n;
        }
    }
}

fn print_json(
    text: &mut String,
    args: &Args,
    rope: &AxialRope,
    extents: &[f64],
    names: &[&str],
    steps: &[Step],
) {
    let steps: Vec<serde_json::Value> = steps
        .iter()
        .map(|s| {
            let mut off = 0;
            let axes: Vec<serde_json::Value> = rope
                .axes()
                .iter()
                .zip(names)
                .enumerate()
                .map(|(a, (ax, name))| {
                    let st = s.info.axes()[a];
                    let n = ax.axis.pairs();
                    let v = serde_json::json!({
                        "name": name, "dim": ax.axis.dim(), "linear_scale": st.scales.linear,
                        "ntk_scale": st.scales.ntk, "attention_factor": st.attention_factor,
                        "native_pairs": native_pairs(&ax.axis, &s.freqs[off..off + n]),
                        "inv_freq": &s.freqs[off..off + n],
                    });
                    off += n;
                    v
                })
                .collect();
            serde_json::json!({ "sigma": s.sigma, "kappa": s.info.kappa(), "axes": axes })
        })
        .collect();
    let out = serde_json::json!({
        "preset": format!("{:?}", args.preset), "method": args.method, "resolved": format!("{:?}", rope.method()),
        "extents": extents, "steps": steps,
    });
    say!(
        text,
        "{}",
        serde_json::to_string_pretty(&out).unwrap_or_default()
    );
}

#[cfg(feature = "lab")]
fn plot(
    path: &std::path::Path,
    rope: &AxialRope,
    names: &[&str],
    steps: &[Step],
) -> anyhow::Result<()> {
    use plotters::prelude::*;
    let labels = common::plot_fonts();
    // The scaled axis with the most pairs is the interesting one.
    let (a, ax) = rope
        .axes()
        .iter()
        .enumerate()
        .filter(|(_, a)| a.scaled)
        .max_by_key(|(_, a)| a.axis.pairs())
        .context("no scaled axis")?;
    let off: usize = rope.axes()[..a].iter().map(|x| x.axis.pairs()).sum();
    let n = ax.axis.pairs();
    let lam = |w: f64| (2.0 * std::f64::consts::PI / w).log10();
    let mut ymax = 0.0f64;
    let mut ymin = f64::INFINITY;
    for s in steps {
        for &w in &s.freqs[off..off + n] {
            ymax = ymax.max(lam(w));
            ymin = ymin.min(lam(w));
        }
    }
    let root = BitMapBackend::new(path, (900, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let mut builder = ChartBuilder::on(&root);
    builder.margin(20);
    if labels {
        builder
            .caption(
                format!(
                    "wavelength per pair, {} axis",
                    names.get(a).copied().unwrap_or("")
                ),
                ("sans-serif", 22),
            )
            .x_label_area_size(40)
            .y_label_area_size(60);
    }
    let mut chart = builder.build_cartesian_2d(0f64..(n - 1) as f64, (ymin - 0.1)..(ymax + 0.1))?;
    if labels {
        chart
            .configure_mesh()
            .x_desc("pair index i")
            .y_desc("log10 wavelength (positions)")
            .draw()?;
    }
    let base: Vec<(f64, f64)> = (0..n)
        .map(|i| (i as f64, lam(ax.axis.inv_freq(i))))
        .collect();
    let series = chart.draw_series(LineSeries::new(base, BLACK.stroke_width(2)))?;
    if labels {
        series
            .label("native RoPE")
            .legend(|(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], BLACK));
    }
    for (k, s) in steps.iter().enumerate() {
        let color = Palette99::pick(k).to_rgba();
        let pts: Vec<(f64, f64)> = s.freqs[off..off + n]
            .iter()
            .enumerate()
            .map(|(i, &w)| (i as f64, lam(w)))
            .collect();
        let series = chart.draw_series(LineSeries::new(pts, color.stroke_width(1)))?;
        if labels {
            series
                .label(format!("σ = {:.3}", s.sigma))
                .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color));
        }
    }
    if labels {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .position(SeriesLabelPosition::UpperLeft)
            .draw()?;
    }
    root.present()?;
    Ok(())
}
