//! Helpers shared by the examples: backend dispatch, the weight dtype flag, size parsing, the
//! bundled demo fixtures and the one method vocabulary (`--method list`).
#![allow(dead_code)]

use std::fmt::Display;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use anyhow::{Context, anyhow};
use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;
use dype::burn::backend::{BackendError, BackendKind, check_backend};
use dype_core::presets::{self, METHODS, Recipe};

/// Work that runs on whichever backend `--backend` names (a generic method, so one
/// implementation serves every backend compiled in).
pub trait OnBackend {
    /// Runs on backend `B` with its default device (already probed with `check_backend`).
    fn run<B: Backend>(self, device: B::Device) -> anyhow::Result<()>;
}

/// Probes the backend `kind` and runs `job` on it; a backend whose cargo feature is off is an
/// error that names the feature to enable.
pub fn on_backend(kind: BackendKind, job: impl OnBackend) -> anyhow::Result<()> {
    fn go<B: Backend>(job: impl OnBackend, device: B::Device) -> anyhow::Result<()> {
        check_backend::<B>(&device)?;
        job.run::<B>(device)
    }
    match kind {
        #[cfg(feature = "cpu")]
        BackendKind::Cpu => go::<dype::burn::backend::Cpu>(job, Default::default()),
        #[cfg(feature = "wgpu")]
        BackendKind::Wgpu => go::<dype::burn::backend::Wgpu>(job, Default::default()),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => go::<dype::burn::backend::Cuda>(job, Default::default()),
        #[allow(unreachable_patterns)]
        kind => Err(BackendError::NotCompiled { kind }.into()),
    }
}

/// The `--dtype` flag: the float type weights are stored in on the device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Dtype {
    /// 32-bit float.
    F32,
    /// bfloat16.
    Bf16,
    /// IEEE half.
    F16,
}

impl Dtype {
    /// burn's float dtype.
    pub fn float(self) -> FloatDType {
        match self {
            Dtype::F32 => FloatDType::F32,
            Dtype::Bf16 => FloatDType::BF16,
            Dtype::F16 => FloatDType::F16,
        }
    }
}

/// `N` (square) or `HxW`, as numbers of any type (`usize` pixels, `f64` positions).
pub fn parse_size<T>(s: &str) -> anyhow::Result<(T, T)>
where
    T: FromStr + Copy,
    T::Err: Display,
{
    let parse = |v: &str| {
        v.trim()
            .parse::<T>()
            .map_err(|e| anyhow!("size `{s}`: {e} (expected `N` or `HxW`)"))
    };
    match s.split_once(['x', 'X']) {
        Some((h, w)) => Ok((parse(h)?, parse(w)?)),
        None => {
            let n = parse(s)?;
            Ok((n, n))
        }
    }
}

/// Writes `text` to stdout; a closed pipe (`inspect … | head`) ends the output quietly.
pub fn write_stdout(text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r.context("writing to stdout"),
    }
}

/// `main`'s exit: prints `error: …` with its causes on one line (no backtrace) and exits 1.
pub fn exit_code(result: anyhow::Result<()>) -> std::process::ExitCode {
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

/// The tiny random-weight models bundled for `--demo` (the test fixtures).
pub fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/models")
}

/// The FiTv2 trained on the procedural shapes, bundled for `fitv2 --demo`.
pub fn shapes_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/shapes")
}

/// The bundled shapes model in `dtype` and a one-line description of it.
pub fn shapes_model<B: Backend>(
    dtype: FloatDType,
    device: &B::Device,
) -> anyhow::Result<(dype::burn::models::fitv2::FitV2<B>, String)> {
    let dir = shapes_dir();
    let (model, info) = dype_lab::train::load_bundle::<B>(&dir, dtype, device)
        .with_context(|| format!("loading the shapes model from {}", dir.display()))?;
    Ok((
        model,
        format!("trained {} steps at {}²", info.step, info.train.image_size),
    ))
}

/// A JSON file, with its path in any error.
pub fn read_json(path: &Path) -> anyhow::Result<serde_json::Value> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// The `config` object of the `kind` entry (`sd` or `flux`) of the bundled `vae_tiny.json`.
pub fn demo_vae_json(kind: &str) -> anyhow::Result<serde_json::Value> {
    let mut v = read_json(&fixtures().join("vae_tiny.json"))?;
    v["vaes"]
        .as_array_mut()
        .and_then(|a| a.iter_mut().find(|x| x["kind"] == kind))
        .map(|x| x["config"].take())
        .ok_or_else(|| anyhow!("vae_tiny.json: no `{kind}` entry"))
}

/// `--method list`: every registry name with where it comes from and what it is — the same list in
/// every example.
pub fn method_list() -> String {
    let width = METHODS.iter().map(|e| e.name.len()).max().unwrap_or(0);
    let mut out = String::from("methods (dype_core::presets::METHODS):\n");
    for e in METHODS {
        out.push_str(&format!(
            "  {:width$}  [{}] {}\n",
            e.name,
            e.family,
            e.summary,
            width = width
        ));
    }
    out
}

/// Prints the method list and exits when `name` is `list`.
pub fn exit_if_list(name: &str) {
    if name == "list" {
        print!("{}", method_list());
        std::process::exit(0);
    }
}

/// A registry recipe by name, with the same error in every example: the one road from `--method`
/// to a rope (the example's model layout then gives the rope, `RotaryLayout::rope`).
pub fn recipe(name: &str) -> anyhow::Result<Recipe> {
    presets::recipe_by_name(name).map_err(|e| anyhow!("--method {name}: {e}"))
}

/// Registers DejaVu Sans as plotters' `sans-serif` (`dype_lab::lab::fonts`); warns when it is not
/// found (plots are then drawn without text).
#[cfg(feature = "lab")]
pub fn plot_fonts() -> bool {
    let labels = dype_lab::lab::fonts();
    if !labels {
        eprintln!("warning: no DejaVuSans.ttf found; plotting without text");
    }
    labels
}

/// The checks of a generating example before any work starts: `--out` can be written (its folder
/// exists), and `--progression` is available in this build.
pub fn check_outputs(out: &Path, progression: Option<&Path>) -> anyhow::Result<()> {
    dype::burn::pipeline::check_output(out).context("--out")?;
    Recorder::new(progression).map(drop)
}

/// The error of a flag that needs a cargo feature this build was made without (given before any
/// work starts).
pub fn needs_feature(flag: &str, feature: &str) -> anyhow::Error {
    anyhow!(
        "{flag} needs the `{feature}` feature: rebuild with `cargo run --release --features {feature} --example …`"
    )
}

/// The local path of a checkpoint file: the one given with `flag`, else a download from the Hub
/// (feature `hub`); `sharded` fetches an index and all its shards.
#[cfg(feature = "hub")]
pub fn local_or_hub(
    given: Option<&Path>,
    flag: &str,
    file: dype::hub::HubFile,
    sharded: bool,
) -> anyhow::Result<PathBuf> {
    if let Some(p) = given {
        return Ok(p.to_path_buf());
    }
    let fetched = if sharded {
        dype::hub::fetch_sharded(file)
    } else {
        dype::hub::fetch(file)
    };
    fetched.with_context(|| format!("(or pass a local copy with {flag} PATH)"))
}

/// The local path of a checkpoint file given with `flag`; this build cannot download (no `hub`
/// feature), so a missing flag is an error naming both ways out.
#[cfg(not(feature = "hub"))]
pub fn local_or_hub(
    given: Option<&Path>,
    flag: &str,
    file: dype::hub::HubFile,
    _sharded: bool,
) -> anyhow::Result<PathBuf> {
    given.map(Path::to_path_buf).ok_or_else(|| {
        anyhow!(
            "no {flag} given: pass a local copy of `{}` from `{}` with {flag} PATH, or rebuild with \
             `--features hub` to download it",
            file.file,
            file.repo
        )
    })
}

/// `--progression-space`: where the spectral progression is measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ProgressionSpace {
    /// The sampler state itself (the model's input space: latents, or pixels for the demo).
    Latent,
    /// Every state decoded by the VAE (one decode per step; RGB planes).
    Decoded,
}

impl ProgressionSpace {
    /// The frequency unit of the states recorded in this space.
    pub fn unit(self) -> &'static str {
        match self {
            ProgressionSpace::Latent => "cycles/latent",
            ProgressionSpace::Decoded => "cycles/px",
        }
    }
}

/// `--progression DIR`: the spectral progression of one run (DyPE §3.1, Fig. 2), fed from the
/// pipeline's per-step callback. The callback cannot fail, so the first error is kept and
/// reported by [`Recorder::finish`].
#[cfg(feature = "lab")]
pub struct Recorder {
    progression: dype_lab::lab::Progression,
    failure: Option<anyhow::Error>,
}

#[cfg(feature = "lab")]
impl Recorder {
    /// A recorder when `--progression` names a directory, else `None`.
    pub fn new(dir: Option<&Path>) -> anyhow::Result<Option<Self>> {
        Ok(dir.map(|_| Recorder {
            progression: dype_lab::lab::Progression::default(),
            failure: None,
        }))
    }

    /// Adds the state at step `index` (paper time `t`): `state()` gives `[batch, channels, H, W]`
    /// (the latent, or its decoded image). Nothing more is computed after a failure.
    pub fn record<B: Backend>(
        &mut self,
        index: usize,
        t: f64,
        state: impl FnOnce() -> anyhow::Result<burn::tensor::Tensor<B, 4>>,
    ) {
        if self.failure.is_some() {
            return;
        }
        let recorded = state().and_then(|x| {
            self.progression
                .add_tensor(index, t, x)
                .context("spectral progression")
        });
        if let Err(e) = recorded {
            self.failure = Some(e);
        }
    }

    /// Writes `progression.json`, `.md` and `.png` into `dir` (`dype_lab::lab::progression::write_run`);
    /// `unit` is the frequency unit of the recorded states (`cycles/px`, `cycles/latent`).
    pub fn finish(self, dir: &Path, title: String, unit: &str) -> anyhow::Result<()> {
        if let Some(e) = self.failure {
            return Err(e);
        }
        plot_fonts();
        let run = dype_lab::lab::progression::ProgressionRun {
            title,
            unit: unit.into(),
            map: self.progression.map()?,
        };
        dype_lab::lab::progression::write_run(dir, &run)
            .with_context(|| format!("writing the progression to {}", dir.display()))?;
        let bands: Vec<String> = run
            .map
            .thirds(0.5)
            .iter()
            .map(|b| b.t.map_or("–".into(), |t| format!("{t:.2}")))
            .collect();
        eprintln!(
            "wrote the spectral progression to {} (γ = 0.5 at t = {} for the low / middle / high third of the frequencies)",
            dir.display(),
            bands.join(" / ")
        );
        Ok(())
    }
}

/// `--progression` in a build without the lab: the type has no values ([`Recorder::new`] refuses
/// the flag before any work starts).
#[cfg(not(feature = "lab"))]
pub enum Recorder {}

#[cfg(not(feature = "lab"))]
impl Recorder {
    /// `None` without `--progression`; the flag itself is an error naming the `lab` feature.
    pub fn new(dir: Option<&Path>) -> anyhow::Result<Option<Self>> {
        match dir {
            Some(_) => Err(needs_feature("--progression", "lab")),
            None => Ok(None),
        }
    }

    /// Never called: there is no recorder without the lab.
    pub fn record<B: Backend>(
        &mut self,
        _index: usize,
        _t: f64,
        _state: impl FnOnce() -> anyhow::Result<burn::tensor::Tensor<B, 4>>,
    ) {
        match *self {}
    }

    /// Never called: there is no recorder without the lab.
    pub fn finish(self, _dir: &Path, _title: String, _unit: &str) -> anyhow::Result<()> {
        match self {}
    }
}
