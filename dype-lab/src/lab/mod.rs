//! The lab: what each positional method does when the shapes FiTv2 of [`crate::train`]
//! samples beyond its training resolution, measured against the renderer's known ideal.
//!
//! * **Method comparison** ([`run`]): at every [`Cell`] (1×, 2×, 4×, an extreme aspect ratio) the
//!   same classes and noise seeds for every method, scored by [`metrics`] (structure from the
//!   shapes detector, detail from the spectrum, 95 % bootstrap intervals), beside calibration rows
//!   that fix the scale of each metric: the renderer itself (the floor), the 1× render upscaled
//!   (ideal PI: the right layout, blurred), the 1× render tiled (what base RoPE's failure looks
//!   like) and the model's own 1× output upscaled (the trivial baseline). The 1× row must be the
//!   same bits for every method (each reduces to the base RoPE at scale 1): [`run`] fails if not.
//! * **Spectral progression** ([`progression`]): the mean PSD of `x_t` at every sampler step and
//!   the map γ(f, t) of DyPE's Fig. 2, recorded through the pipeline's per-step callback for every
//!   method and cell of the comparison.
//! * **Frequencies** ([`frequency_rows`]): per method, cell and step, what the method does to the
//!   RoPE (κ, scales, attention factor, fraction of pairs left at their native frequency).
//!
//! [`run`] writes JSON, Markdown tables and PNG figures into a directory; the `lab` example is its
//! command line.

mod figures;
pub mod metrics;
pub mod progression;

use std::collections::BTreeMap;
use std::io::Write;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{Tensor, TensorData};
use dype_burn::models::fitv2::{FitConfig, FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope};
use dype_burn::pipeline::PipelineError;
use dype_burn::pipeline::fitv2::{FitGenerate, FitItem, FitSampler, sample_batch};
use dype_core::{DypeError, FitTime, Method, Sigma};
use serde::{Deserialize, Serialize};

use crate::shapes::{CLASSES, Image, RenderConfig, Sample, ShapesError};
use crate::train::TrainingError;
pub use figures::fonts;
pub use metrics::{DETAIL_BAND, Estimate, Reference, RowMetrics, SampleScore};
pub use progression::{Progression, ProgressionMap};

/// Errors of the lab.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LabError {
    /// The renderer, detector or spectrum refused its input.
    #[error(transparent)]
    Shapes(#[from] ShapesError),
    /// Sampling failed.
    #[error(transparent)]
    Pipeline(#[from] PipelineError),
    /// A method or its frequencies could not be built.
    #[error(transparent)]
    Dype(#[from] DypeError),
    /// Converting the model's output failed.
    #[error(transparent)]
    Training(#[from] TrainingError),
    /// An inconsistent configuration.
    #[error("lab: {0}")]
    Config(&'static str),
    /// A method's 1× samples are not the base RoPE's bits (every method must reduce to it).
    #[error(
        "`{method}` at the training size differs from base RoPE (it must reduce to it at scale 1)"
    )]
    NotIdentity {
        /// The method.
        method: String,
    },
    /// Writing an output failed.
    #[error("writing {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: std::io::Error,
    },
    /// Serialising a result failed.
    #[error("serialising {path}: {source}")]
    Json {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: serde_json::Error,
    },
    /// Drawing a figure failed.
    #[error("drawing {path}: {reason}")]
    Figure {
        /// The file.
        path: PathBuf,
        /// What the plotting library said.
        reason: String,
    },
}

/// One resolution of the comparison.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cell {
    /// Label in tables and file names (letters, digits, `x`, `-`).
    pub label: String,
    /// Height in pixels (a multiple of the training size).
    pub height: usize,
    /// Width in pixels (a multiple of the training size).
    pub width: usize,
}

impl Cell {
    /// A cell.
    pub fn new(label: &str, height: usize, width: usize) -> Self {
        Cell {
            label: label.to_string(),
            height,
            width,
        }
    }
}

/// What the lab runs.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabConfig {
    /// Registry names of the methods ([`dype_core::presets::METHODS`]); `base` first.
    pub methods: Vec<String>,
    /// Resolutions; the first is the training size (1×).
    pub cells: Vec<Cell>,
    /// Samples per cell and method: sample `i` asks for class `i mod 8` with noise seed `i`.
    pub samples: usize,
    /// Euler steps of the sampler.
    pub steps: usize,
    /// Classifier-free guidance scale.
    pub cfg_scale: f64,
    /// Samples per model evaluation.
    pub batch: usize,
    /// Bootstrap resamples of every interval.
    pub bootstrap: usize,
    /// Renders per class of the renderer's reference at every cell.
    pub reference_per_class: usize,
}

impl LabConfig {
    /// The full lab: ten methods, 1× (32²), 2× (64²), 4× (128²) and 4:1 (32 × 128), 32 samples
    /// per cell, 16 Euler steps, guidance 1.5, 1 000 bootstrap resamples.
    pub fn full(training_size: usize) -> Self {
        let s = training_size;
        LabConfig {
            methods: [
                "base",
                "pi",
                "ntk",
                "yarn",
                "dy-pi",
                "dy-ntk",
                "dy-yarn",
                "official-dy-yarn",
                "fit-yarn",
                "lumina-time-aware",
            ]
            .map(String::from)
            .to_vec(),
            cells: vec![
                Cell::new("1x", s, s),
                Cell::new("2x", 2 * s, 2 * s),
                Cell::new("4x", 4 * s, 4 * s),
                Cell::new("4to1", s, 4 * s),
            ],
            samples: 32,
            steps: 16,
            cfg_scale: 1.5,
            batch: 16,
            bootstrap: 1000,
            reference_per_class: 32,
        }
    }

    /// Toy settings for a smoke run (CI): three methods, 1×, 2× and 4:1, one sample per class,
    /// 4 steps.
    pub fn quick(training_size: usize) -> Self {
        let s = training_size;
        LabConfig {
            methods: ["base", "pi", "dy-yarn"].map(String::from).to_vec(),
            cells: vec![
                Cell::new("1x", s, s),
                Cell::new("2x", 2 * s, 2 * s),
                Cell::new("4to1", s, 4 * s),
            ],
            samples: CLASSES,
            steps: 4,
            cfg_scale: 1.5,
            batch: CLASSES,
            bootstrap: 100,
            reference_per_class: 4,
        }
    }

    fn validate(&self, model: &FitConfig, training_size: usize) -> Result<(), LabError> {
        if self.methods.first().map(String::as_str) != Some("base") {
            return Err(LabError::Config("the first method must be `base`"));
        }
        let first = self.cells.first().ok_or(LabError::Config("no cells"))?;
        if (first.height, first.width) != (training_size, training_size) {
            return Err(LabError::Config("the first cell must be the training size"));
        }
        let unit = training_size.max(model.patch_size);
        let file_safe = |l: &str| {
            !l.is_empty()
                && l.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
        };
        if self.cells.iter().any(|c| {
            c.height == 0
                || c.width == 0
                || !c.height.is_multiple_of(unit)
                || !c.width.is_multiple_of(unit)
                || !file_safe(&c.label)
        }) {
            return Err(LabError::Config(
                "cells must be multiples of the training size with labels of letters, digits, - or _",
            ));
        }
        let unique = |v: Vec<&str>| {
            let mut sorted = v.clone();
            sorted.sort_unstable();
            sorted.dedup();
            sorted.len() == v.len()
        };
        if !unique(self.methods.iter().map(String::as_str).collect())
            || !unique(self.cells.iter().map(|c| c.label.as_str()).collect())
        {
            return Err(LabError::Config("methods and cell labels must be unique"));
        }
        if self.samples == 0 || self.steps == 0 || self.batch == 0 || self.reference_per_class == 0
        {
            return Err(LabError::Config(
                "samples, steps, batch and reference_per_class must be at least 1",
            ));
        }
        if !(self.cfg_scale.is_finite() && self.cfg_scale >= 0.0) {
            return Err(LabError::Config("cfg_scale must be finite and >= 0"));
        }
        Ok(())
    }
}

/// What the lab reports while it runs.
#[derive(Debug, Clone, PartialEq)]
pub struct LabProgress {
    /// Model evaluations done.
    pub done: usize,
    /// Model evaluations in all.
    pub total: usize,
    /// What is being sampled.
    pub what: String,
}

/// A row of a comparison table.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Row {
    /// Method name, or the calibration's.
    pub name: String,
    /// `method` or `calibration`.
    pub kind: String,
    /// Its metrics.
    pub metrics: RowMetrics,
    /// Per sample (methods only).
    pub scores: Vec<SampleScore>,
}

/// What a method does to the RoPE at one sampler step of one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FrequencyRow {
    /// Method.
    pub method: String,
    /// The paper's t (σ; 1 = noise).
    pub sigma: f64,
    /// κ(t) (`None` for static methods).
    pub kappa: Option<f64>,
    /// Per axis (rows, columns): the interpolation scale.
    pub scale: Vec<f64>,
    /// Largest attention factor over the axes.
    pub attention_factor: f64,
    /// Fraction of rotary pairs at their native frequency (relative difference ≤ 1e-9).
    pub native_pairs: f64,
    /// Mean `log2(ω / ω_native)` over the pairs (how far the method moves the frequencies).
    pub mean_log2_ratio: f64,
}

/// The results at one cell.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CellReport {
    /// The cell.
    pub cell: Cell,
    /// The renderer's reference there.
    pub reference: Reference,
    /// Methods first, then the calibration rows.
    pub rows: Vec<Row>,
    /// Per method and step.
    pub frequencies: Vec<FrequencyRow>,
    /// Per method, the spectral progression of its samples.
    pub progression: BTreeMap<String, ProgressionMap>,
    /// Wall-clock seconds spent on this cell (sampling, scoring, its grid), in whichever run
    /// sampled it.
    #[serde(default)]
    pub seconds: f64,
}

/// The lab's results.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LabReport {
    /// What ran.
    pub config: LabConfig,
    /// The detail band (cycles per pixel).
    pub detail_band: (f64, f64),
    /// Per cell.
    pub cells: Vec<CellReport>,
    /// [`model_fingerprint`] of the weights every cell sampled.
    #[serde(default)]
    pub model: String,
    /// [`METRICS_VERSION`] every cell was scored under.
    #[serde(default)]
    pub metrics_version: u32,
    /// Wall-clock seconds of the invocation that made this report (cells taken from an earlier
    /// run are not in it: see [`LabReport::cell_seconds`]).
    pub seconds: f64,
}

impl LabReport {
    /// The seconds every cell took in the run that sampled it, summed: the compute time of the
    /// whole lab however many invocations (or parallel processes, see [`RunOptions::only`]) made it.
    pub fn cell_seconds(&self) -> f64 {
        self.cells.iter().map(|c| c.seconds).sum()
    }

    /// Whether the report holds every cell of its config (the combined outputs are written only
    /// then).
    pub fn is_complete(&self) -> bool {
        self.cells.len() == self.config.cells.len()
    }
}

/// How [`run`] treats the cells of its config.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RunOptions {
    /// Take a cell that an earlier run saved (`cells/<label>.json`) instead of sampling it again,
    /// when it ran under the same config, the same weights ([`model_fingerprint`]) and the same
    /// [`METRICS_VERSION`].
    pub resume: bool,
    /// Sample only the cells with these labels (empty: all). The others are taken from disk when
    /// `resume` finds them and left out of the report otherwise. Several processes can so share
    /// one output directory, each sampling its own cells; a last run with `resume` and no `only`
    /// assembles the lot.
    pub only: Vec<String>,
    /// Sample only these methods (registry names; empty: all). A cell whose other methods are not
    /// on disk yet is left out of the report (its methods are saved); so two processes can split
    /// one cell's methods, and a last run with `resume` assembles it.
    pub methods: Vec<String>,
}

/// Layout seeds of the renderer's reference renders (disjoint from the calibration renders').
const REFERENCE_SEED: u64 = 1_000_000;
/// Layout seeds of the calibration renders.
const CALIBRATION_SEED: u64 = 2_000_000;
/// The bootstrap's resample stream (the same for every row of a cell).
const BOOTSTRAP_SEED: u64 = 0x1ab;

/// The version of the lab's metric definitions (detail band and its weighting, reference and
/// calibration seeds, calibration rows, bootstrap streams, γ's mask). Saved cells of another
/// version are sampled again.
pub const METRICS_VERSION: u32 = 2;

/// A finished cell as saved by [`run`] (`cells/<label>.json`), with what it ran under.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct SavedCell {
    config: LabConfig,
    /// [`model_fingerprint`] of the weights sampled.
    model: String,
    /// [`METRICS_VERSION`] it was scored under.
    metrics: u32,
    report: CellReport,
}

/// One method's results in one cell, saved as soon as they are done
/// (`cells/<label>/method_<i>.json`, its first samples beside it as PNGs), so that an interrupted
/// cell resumes method by method.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct SavedMethod {
    config: LabConfig,
    model: String,
    metrics: u32,
    cell: Cell,
    name: String,
    row: Row,
    frequencies: Vec<FrequencyRow>,
    progression: ProgressionMap,
    /// SHA-256 of the raw output's bits (the 1× identity check across invocations).
    bits: String,
    seconds: f64,
}

/// SHA-256 (hex) of the 32-bit words' little-endian bytes.
fn sha256_hex(words: &[u32]) -> String {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for w in words {
        hash.update(w.to_le_bytes());
    }
    hex(&hash.finalize())
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// SHA-256 (hex) of a FiTv2's weights: every tensor of [`FitV2::state_dict`] in order, its name,
/// shape and f32 values (little-endian). The lab reuses a saved cell only for the same weights.
pub fn model_fingerprint<B: Backend>(model: &FitV2<B>) -> Result<String, LabError> {
    use sha2::{Digest, Sha256};
    let mut hash = Sha256::new();
    for (name, shape, values) in model.state_dict().map_err(PipelineError::from)? {
        hash.update((name.len() as u64).to_le_bytes());
        hash.update(name.as_bytes());
        hash.update((shape.len() as u64).to_le_bytes());
        for d in shape {
            hash.update((d as u64).to_le_bytes());
        }
        for v in values {
            hash.update(v.to_le_bytes());
        }
    }
    Ok(hex(&hash.finalize()))
}

/// Runs the comparison and the progression on `model` (a shapes FiTv2 trained at
/// `training_size`²) and writes every output into `out` (created): `lab.json` (everything),
/// `comparison.md`, `comparison.png`, `resolution_grid.png` (methods × cells), `grid_<cell>.png`
/// (methods × classes), `progression.md`, `progression.png`, `frequencies.md` (every step).
/// Each cell is saved when it is done (`cells/<label>.json` and its grid); `options` says which
/// cells to sample and whether saved ones are reused. The combined outputs are written when the
/// report holds every cell ([`LabReport::is_complete`]).
pub fn run<B: Backend>(
    model: &FitV2<B>,
    training_size: usize,
    config: &LabConfig,
    out: &Path,
    options: &RunOptions,
    device: &B::Device,
    mut progress: impl FnMut(&LabProgress),
) -> Result<LabReport, LabError> {
    let started = std::time::Instant::now();
    config.validate(model.config(), training_size)?;
    if options
        .only
        .iter()
        .any(|label| !config.cells.iter().any(|c| c.label == *label))
    {
        return Err(LabError::Config(
            "`only` names a cell the config does not have",
        ));
    }
    if options.methods.iter().any(|m| !config.methods.contains(m)) {
        return Err(LabError::Config(
            "`methods` names a method the config does not have",
        ));
    }
    let selected = |cell: &Cell| options.only.is_empty() || options.only.contains(&cell.label);
    let method_selected = |name: &str| {
        options.methods.is_empty() || options.methods.iter().any(|m| m.as_str() == name)
    };
    let fingerprint = model_fingerprint(model)?;
    let positions = config
        .methods
        .iter()
        .map(|m| m.parse::<FitPosition>().map(|p| (m.clone(), p)))
        .collect::<Result<Vec<_>, _>>()?;
    let saved_dir = out.join("cells");
    std::fs::create_dir_all(&saved_dir).map_err(|source| LabError::Io {
        path: saved_dir.clone(),
        source,
    })?;
    let render = RenderConfig::default();
    let items: Vec<FitItem> = (0..config.samples)
        .map(|i| FitItem {
            class: i % CLASSES,
            seed: i as u64,
        })
        .collect();
    let classes: Vec<usize> = items.iter().map(|i| i.class).collect();
    let per_cell = positions.len() * config.samples.div_ceil(config.batch) * config.steps;
    let total = config.cells.iter().filter(|c| selected(c)).count() * per_cell;
    let mut done = 0usize;
    let mut cells = Vec::new();
    let mut model_1x: Option<Vec<Image>> = None;
    for cell in &config.cells {
        let (h, w) = (cell.height, cell.width);
        let saved_path = saved_dir.join(format!("{}.json", cell.label));
        if options.resume && saved_path.exists() {
            let saved = std::fs::read_to_string(&saved_path)
                .map_err(|e| e.to_string())
                .and_then(|t| serde_json::from_str::<SavedCell>(&t).map_err(|e| e.to_string()))
                .and_then(|s| {
                    if s.config != *config || s.report.cell != *cell {
                        Err("saved under other settings".to_string())
                    } else if s.model != fingerprint {
                        Err("saved for other weights".to_string())
                    } else if s.metrics != METRICS_VERSION {
                        Err(format!(
                            "scored by metrics version {}, now {METRICS_VERSION}",
                            s.metrics
                        ))
                    } else {
                        Ok(s)
                    }
                });
            match saved {
                Ok(saved) => {
                    if selected(cell) {
                        done += per_cell;
                    }
                    cells.push(saved.report);
                    continue;
                }
                Err(why) => progress(&LabProgress {
                    done,
                    total,
                    what: format!("{}: sampling again ({why})", cell.label),
                }),
            }
        }
        if !selected(cell) {
            continue;
        }
        let cell_started = std::time::Instant::now();
        let is_1x = (h, w) == (training_size, training_size);
        if !is_1x && model_1x.is_none() {
            // The 1× cell was resumed or is another process's: the model's own 1× samples again,
            // for the calibration.
            progress(&LabProgress {
                done,
                total,
                what: format!("{}: the model's 1× samples for the calibration", cell.label),
            });
            let base = FitPosition::from(Method::Base);
            let mut images = Vec::with_capacity(items.len());
            let one = Cell::new("1x", training_size, training_size);
            for chunk in items.chunks(config.batch) {
                let mut scratch = Progression::new();
                images.extend(
                    sample_chunk(
                        model,
                        &one,
                        base,
                        chunk,
                        config,
                        device,
                        &mut scratch,
                        |_| {},
                    )?
                    .0,
                );
            }
            model_1x = Some(images);
        }
        let reference = Reference::new(&render, h, w, config.reference_per_class, REFERENCE_SEED)?;
        let cell_dir = saved_dir.join(&cell.label);
        let mut rows = Vec::new();
        let mut progression = BTreeMap::new();
        let mut frequencies = Vec::new();
        let mut grid_rows: Vec<(String, Vec<Image>)> = Vec::new();
        let mut base_images: Option<Vec<Image>> = None;
        let mut base_bits: Option<String> = None;
        let mut earlier_seconds = 0.0;
        let mut missing_method = false;
        for (index, (name, position)) in positions.iter().enumerate() {
            let method_path = cell_dir.join(format!("method_{index}.json"));
            let shown = config.samples.min(CLASSES);
            if options.resume
                && let Some((saved, images)) = load_method(
                    &method_path,
                    &cell_dir,
                    index + 1,
                    shown,
                    (config, &fingerprint, cell, name),
                )
            {
                if is_1x {
                    check_identity(&mut base_bits, saved.bits.clone(), name)?;
                }
                done += positions_per_method(config);
                progress(&LabProgress {
                    done,
                    total,
                    what: format!(
                        "{} {name}: taken from {}",
                        cell.label,
                        method_path.display()
                    ),
                });
                earlier_seconds += saved.seconds;
                rows.push(saved.row);
                progression.insert(name.clone(), saved.progression);
                frequencies.extend(saved.frequencies);
                grid_rows.push((name.clone(), images));
                continue;
            }
            if !method_selected(name) {
                // Left to another process (counted as done here, for the progress bar).
                missing_method = true;
                done += positions_per_method(config);
                continue;
            }
            let method_started = std::time::Instant::now();
            let mut prog = Progression::new();
            let mut images = Vec::with_capacity(items.len());
            let mut bits = Vec::new();
            for chunk in items.chunks(config.batch) {
                let what = format!("{} {name}", cell.label);
                let (pixels, raw) = sample_chunk(
                    model,
                    cell,
                    *position,
                    chunk,
                    config,
                    device,
                    &mut prog,
                    |_| {
                        done += 1;
                        progress(&LabProgress {
                            done,
                            total,
                            what: what.clone(),
                        });
                    },
                )?;
                images.extend(pixels);
                bits.extend(raw);
            }
            // The raw output's bits, before clamping (NaN-safe).
            let digest = sha256_hex(&bits);
            if is_1x {
                if index == 0 {
                    base_images = Some(images.clone());
                }
                check_identity(&mut base_bits, digest.clone(), name)?;
            }
            // The same resamples for every row of the cell: the intervals are paired.
            let seed = BOOTSTRAP_SEED;
            let (metrics, scores) =
                metrics::row_metrics(&images, &classes, &reference, config.bootstrap, seed)?;
            rows.push(Row {
                name: name.clone(),
                kind: "method".into(),
                metrics,
                scores,
            });
            let map = prog.map()?;
            let freq = frequency_rows(model.config(), name, *position, cell, config.steps)?;
            let shown: Vec<Image> = images.iter().take(shown).cloned().collect();
            figures::save_samples(&[(name.clone(), shown.clone())], index + 1, &cell_dir)?;
            let saved = SavedMethod {
                config: config.clone(),
                model: fingerprint.clone(),
                metrics: METRICS_VERSION,
                cell: cell.clone(),
                name: name.clone(),
                row: rows.last().cloned().ok_or(LabError::Config("no row"))?,
                frequencies: freq.clone(),
                progression: map.clone(),
                bits: digest,
                seconds: method_started.elapsed().as_secs_f64(),
            };
            write_json(&method_path, &saved)?;
            progression.insert(name.clone(), map);
            frequencies.extend(freq);
            grid_rows.push((name.clone(), shown));
        }
        if model_1x.is_none() {
            model_1x = base_images;
        }
        if missing_method {
            // Another process samples the rest of this cell's methods.
            continue;
        }
        // Calibration rows.
        let calib_render = |size: (usize, usize)| -> Result<Vec<Image>, LabError> {
            items
                .iter()
                .enumerate()
                .map(|(i, it)| {
                    let sample = Sample {
                        class: it.class,
                        seed: CALIBRATION_SEED + i as u64,
                    };
                    Ok(render.render(sample, size.0, size.1)?)
                })
                .collect()
        };
        let renders = calib_render((h, w))?;
        let mut calibrations = vec![("renderer".to_string(), renders.clone())];
        if (h, w) != (training_size, training_size) {
            let small = calib_render((training_size, training_size))?;
            // At an aspect ratio other than 1:1 a resize stretches (what per-axis PI does).
            let resized = if h == w { "upscaled" } else { "stretched" };
            calibrations.push((
                format!("render 1× {resized}"),
                resize::<B>(&small, h, w, device)?,
            ));
            calibrations.push(("render 1× tiled".into(), tile(&small, h, w)?));
            if let Some(own) = &model_1x {
                calibrations.push((
                    format!("model 1× {resized}"),
                    resize::<B>(own, h, w, device)?,
                ));
            }
        }
        for (name, images) in calibrations {
            let seed = BOOTSTRAP_SEED;
            let (metrics, _) =
                metrics::row_metrics(&images, &classes, &reference, config.bootstrap, seed)?;
            rows.push(Row {
                name: name.clone(),
                kind: "calibration".into(),
                metrics,
                scores: Vec::new(),
            });
        }
        grid_rows.insert(
            0,
            (
                "renderer".into(),
                renders.iter().take(CLASSES).cloned().collect(),
            ),
        );
        figures::grid(&grid_rows, &out.join(format!("grid_{}.png", cell.label)))?;
        figures::save_samples(&grid_rows[..1], 0, &cell_dir)?;
        let report = CellReport {
            cell: cell.clone(),
            reference,
            rows,
            frequencies,
            progression,
            seconds: earlier_seconds + cell_started.elapsed().as_secs_f64(),
        };
        let saved = SavedCell {
            config: config.clone(),
            model: fingerprint.clone(),
            metrics: METRICS_VERSION,
            report,
        };
        write_json(&saved_path, &saved)?;
        cells.push(saved.report);
    }
    let report = LabReport {
        config: config.clone(),
        detail_band: DETAIL_BAND,
        cells,
        model: fingerprint,
        metrics_version: METRICS_VERSION,
        seconds: started.elapsed().as_secs_f64(),
    };
    if report.is_complete() {
        write_outputs(&report, out)?;
    }
    Ok(report)
}

/// Evaluations one method takes in one cell.
fn positions_per_method(config: &LabConfig) -> usize {
    config.samples.div_ceil(config.batch) * config.steps
}

/// The 1× identity check: the first method's digest is the reference, every other must equal it.
fn check_identity(base: &mut Option<String>, digest: String, name: &str) -> Result<(), LabError> {
    match base {
        None => {
            *base = Some(digest);
            Ok(())
        }
        Some(b) if *b != digest => Err(LabError::NotIdentity {
            method: name.to_string(),
        }),
        Some(_) => Ok(()),
    }
}

/// A method saved by an earlier run under the same config, weights, metrics and cell, with its
/// first `shown` samples read back from `cell_dir/<row>_<k>.png`; `None` when anything is missing
/// or differs (the method is sampled again).
fn load_method(
    path: &Path,
    cell_dir: &Path,
    row: usize,
    shown: usize,
    (config, model, cell, name): (&LabConfig, &str, &Cell, &str),
) -> Option<(SavedMethod, Vec<Image>)> {
    let text = std::fs::read_to_string(path).ok()?;
    let saved: SavedMethod = serde_json::from_str(&text).ok()?;
    if saved.config != *config
        || saved.model != model
        || saved.metrics != METRICS_VERSION
        || saved.cell != *cell
        || saved.name != name
    {
        return None;
    }
    let images = (0..shown)
        .map(|k| figures::read_sample(&cell_dir.join(format!("{row}_{k}.png"))).ok())
        .collect::<Option<Vec<_>>>()?;
    Some((saved, images))
}

/// Samples one batch of `items` at `cell` and records every step's state in `prog`: the images
/// (clamped to [0, 1]) and the bits of the raw output (for the 1× identity check).
#[allow(clippy::too_many_arguments)]
fn sample_chunk<B: Backend>(
    model: &FitV2<B>,
    cell: &Cell,
    position: FitPosition,
    items: &[FitItem],
    config: &LabConfig,
    device: &B::Device,
    prog: &mut Progression,
    on_eval: impl FnMut(&dype_burn::pipeline::fitv2::FitProgress),
) -> Result<(Vec<Image>, Vec<u32>), LabError> {
    let request = FitGenerate {
        class: 0,
        height: cell.height,
        width: cell.width,
        position,
        decouple: true,
        sampler: FitSampler::Euler {
            steps: config.steps,
        },
        cfg_scale: config.cfg_scale,
        guided: GuidedChannels::All,
        seed: 0,
    };
    let mut failure = None;
    let pixels = sample_batch(model, 1, &request, items, device, on_eval, |state| {
        if failure.is_some() {
            return;
        }
        if let Err(e) = prog.add_tensor(state.index, 1.0 - state.t_fit, state.x.clone()) {
            failure = Some(e);
        }
    })?;
    if let Some(e) = failure {
        return Err(e);
    }
    let (images, raw) = crate::train::to_images_raw(pixels)?;
    Ok((images, raw.iter().map(|v| v.to_bits()).collect()))
}

/// Bilinear resize (half-pixel centres, burn's `interpolate`) of every image to `h × w`.
pub fn resize<B: Backend>(
    images: &[Image],
    h: usize,
    w: usize,
    device: &B::Device,
) -> Result<Vec<Image>, LabError> {
    let Some(first) = images.first() else {
        return Ok(Vec::new());
    };
    let (ih, iw) = (first.height, first.width);
    if images
        .iter()
        .any(|im| im.height != ih || im.width != iw || !im.is_consistent())
    {
        return Err(LabError::Config("resize: images of one size expected"));
    }
    let data: Vec<f32> = images
        .iter()
        .flat_map(|im| im.data.iter().copied())
        .collect();
    let x = Tensor::<B, 4>::from_data(TensorData::new(data, [images.len(), 3, ih, iw]), device);
    let options = InterpolateOptions {
        mode: InterpolateMode::Bilinear,
        align_corners: false,
    };
    let y = interpolate(x, [h, w], options).clamp(0.0, 1.0);
    Ok(crate::train::to_images(y.mul_scalar(2.0).sub_scalar(1.0))?)
}

/// Every image repeated `h / height × w / width` times (what base RoPE's failure looks like).
pub fn tile(images: &[Image], h: usize, w: usize) -> Result<Vec<Image>, LabError> {
    images
        .iter()
        .map(|im| {
            if im.height == 0
                || im.width == 0
                || !h.is_multiple_of(im.height)
                || !w.is_multiple_of(im.width)
                || !im.is_consistent()
            {
                return Err(LabError::Config("tile: the size must be a multiple"));
            }
            let mut data = Vec::with_capacity(3 * h * w);
            for c in 0..3 {
                for r in 0..h {
                    let row = (c * im.height + r % im.height) * im.width;
                    for col in 0..w {
                        data.push(im.data[row + col % im.width]);
                    }
                }
            }
            Ok(Image {
                height: h,
                width: w,
                data,
            })
        })
        .collect()
}

/// What `position` does to the frequencies of `config`'s RoPE at `cell`, at every evaluation of
/// an Euler sampler with `steps` steps (FiT time `k / steps`, σ = 1 − that).
pub fn frequency_rows(
    config: &FitConfig,
    name: &str,
    position: FitPosition,
    cell: &Cell,
    steps: usize,
) -> Result<Vec<FrequencyRow>, LabError> {
    let p = config.patch_size.max(1);
    let (h, w) = (cell.height / p, cell.width / p);
    let grid = fit_grid(h, w, h * w)?;
    let rope = fit_rope(config, position, true)?;
    let base = fit_rope(config, FitPosition::from(Method::Base), true)?;
    let mut native = vec![0.0; base.pairs()];
    base.step(&grid.extents, None, &mut native)?;
    let mut freqs = vec![0.0; rope.pairs()];
    (0..steps)
        .map(|k| {
            let sigma: Sigma = FitTime::new(k as f64 / steps as f64)?.into();
            let info = rope.step(&grid.extents, Some(sigma), &mut freqs)?;
            let pairs = freqs.len().max(1) as f64;
            let same = freqs
                .iter()
                .zip(&native)
                .filter(|(f, n)| ((*f - *n) / *n).abs() <= 1e-9)
                .count();
            let log_ratio = freqs
                .iter()
                .zip(&native)
                .map(|(f, n)| (f / n).log2())
                .sum::<f64>()
                / pairs;
            Ok(FrequencyRow {
                method: name.to_string(),
                sigma: sigma.get(),
                kappa: info.kappa(),
                scale: info.axes().iter().map(|a| a.scales.linear).collect(),
                attention_factor: info
                    .axes()
                    .iter()
                    .map(|a| a.attention_factor)
                    .fold(f64::NAN, f64::max),
                native_pairs: same as f64 / pairs,
                mean_log2_ratio: log_ratio,
            })
        })
        .collect()
}

/// Writes `text` to a temporary file beside `path`, then renames it over `path`: a reader (another
/// lab process resuming from the same directory) never sees half a file.
fn write_file(path: &Path, text: &str) -> Result<(), LabError> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    std::fs::File::create(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()))
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|source| LabError::Io {
            path: path.to_path_buf(),
            source,
        })
}

fn write_json<T: Serialize>(path: &Path, value: &T) -> Result<(), LabError> {
    let json = serde_json::to_string_pretty(value).map_err(|source| LabError::Json {
        path: path.to_path_buf(),
        source,
    })?;
    write_file(path, &json)
}

fn write_outputs(report: &LabReport, out: &Path) -> Result<(), LabError> {
    write_json(&out.join("lab.json"), report)?;
    write_file(&out.join("comparison.md"), &comparison_markdown(report))?;
    write_file(&out.join("progression.md"), &progression_markdown(report))?;
    write_file(&out.join("frequencies.md"), &frequencies_markdown(report))?;
    figures::comparison_chart(report, &out.join("comparison.png"))?;
    figures::resolution_grid(report, &out.join("cells"), &out.join("resolution_grid.png"))?;
    figures::progression_figure(report, &out.join("progression.png"))
}

/// The paper's dynamic methods and the static method each makes time-dependent (DyPE Eq. 14–17):
/// the pairs the comparison tables test with [`paired_difference`].
pub const DYNAMIC_PAIRS: [(&str, &str); 3] =
    [("dy-pi", "pi"), ("dy-ntk", "ntk"), ("dy-yarn", "yarn")];

/// The difference of two methods' per-sample scores in one cell, `a − b`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PairedDifference {
    /// The first method.
    pub a: String,
    /// The method subtracted.
    pub b: String,
    /// Difference of the fractions with exactly one object of the requested class.
    pub one: Estimate,
    /// Difference of the mean area errors.
    pub area_err: Estimate,
}

/// `a − b` of the per-sample *one* and *area err* of two methods of `cell`, with a 95 % bootstrap
/// interval drawn from the very resamples of the rows' own intervals (sample `i` asked both
/// methods for the same class with the same noise, so each resample takes the same samples of
/// both): a paired test. An interval that excludes 0 is a difference the samples support, where
/// two overlapping marginal intervals decide nothing. `None` when either method is not in the
/// cell or their sample counts differ. (*detail* is a statistic of the whole set, with no
/// per-sample value to pair; *centre err* leaves out the samples without an object.)
pub fn paired_difference(
    cell: &CellReport,
    a: &str,
    b: &str,
    resamples: usize,
) -> Option<PairedDifference> {
    let method = |name: &str| {
        cell.rows
            .iter()
            .find(|r| r.kind == "method" && r.name == name)
    };
    let (ra, rb) = (method(a)?, method(b)?);
    let n = ra.scores.len();
    if n == 0 || rb.scores.len() != n {
        return None;
    }
    let diff = |f: fn(&SampleScore) -> f64, seed: u64| {
        let va: Vec<f64> = ra.scores.iter().map(f).collect();
        let vb: Vec<f64> = rb.scores.iter().map(f).collect();
        metrics::bootstrap(n, resamples, seed, |idx| {
            metrics::mean_at(&va, idx) - metrics::mean_at(&vb, idx)
        })
    };
    // The rows' own streams for these two columns.
    use metrics::stream;
    Some(PairedDifference {
        a: a.to_owned(),
        b: b.to_owned(),
        one: diff(|s| s.one, BOOTSTRAP_SEED ^ stream::ONE),
        area_err: diff(|s| s.area_err, BOOTSTRAP_SEED ^ stream::AREA_ERR),
    })
}

/// `mean [lo, hi]` with `digits` decimals (a leading sign when `signed`); `–` for no estimate.
fn fmt_est(e: &Estimate, digits: usize, signed: bool) -> String {
    if !e.mean.is_finite() {
        return "–".into();
    }
    if signed {
        format!("{:+.d$} [{:+.d$}, {:+.d$}]", e.mean, e.lo, e.hi, d = digits)
    } else {
        format!("{:.d$} [{:.d$}, {:.d$}]", e.mean, e.lo, e.hi, d = digits)
    }
}

/// What the frequency tables' columns are.
const FREQUENCY_COLUMNS: &str = "κ, the interpolation scale per axis (rows, columns: the \
    layout's extent ratio; Lumina's time-aware RoPE applies one area scale √(H·W)/size to both \
    axes instead), the attention factor, the fraction of rotary pairs left at their native \
    frequency, and the mean log2 ratio of the frequencies to the native ones.";

/// A frequency table in Markdown.
fn frequency_table<'a>(rows: impl IntoIterator<Item = &'a FrequencyRow>) -> String {
    let mut s = String::from(
        "| method | σ | κ | scale | attention | native pairs | mean log2 ω/ω₀ |\n|---|---|---|---|---|---|---|\n",
    );
    for f in rows {
        s += &format!(
            "| {} | {:.3} | {} | {} | {:.3} | {:.2} | {:+.3} |\n",
            f.method,
            f.sigma,
            f.kappa.map_or("–".into(), |k| format!("{k:.3}")),
            f.scale
                .iter()
                .map(|v| format!("{v:.2}"))
                .collect::<Vec<_>>()
                .join(" / "),
            f.attention_factor,
            f.native_pairs,
            f.mean_log2_ratio
        );
    }
    s
}

/// What every method does to the RoPE at every sampler step of every cell, in Markdown
/// (`frequencies.md`; the comparison shows the first, middle and last step).
pub fn frequencies_markdown(report: &LabReport) -> String {
    let mut s = format!(
        "# What each method does to the frequencies\n\nPer cell, method and sampler step (σ = the \
         paper's t at the step's model evaluation, 1 = noise): {FREQUENCY_COLUMNS}\n"
    );
    for cell in &report.cells {
        s += &format!(
            "\n## {} ({} × {} px)\n\n{}",
            cell.cell.label,
            cell.cell.height,
            cell.cell.width,
            frequency_table(&cell.frequencies)
        );
    }
    s
}

/// The comparison tables (one per cell) and the frequency tables, in Markdown.
pub fn comparison_markdown(report: &LabReport) -> String {
    let c = &report.config;
    let mut s = format!(
        "# Method comparison\n\n{} samples per cell (class `i mod 8`, noise seed `i`), Euler {} steps, \
         guidance {}, {} bootstrap resamples (95 % percentile intervals). Detail band {:.4}–{:.4} \
         cycles/px. Compute time {:.0} s (the cells' own times, summed).\n\n\
         Columns: **one** = fraction with exactly one object of the requested class (↑); \
         **area err** / **centre err** = mean distance outside the renderer's range of area \
         fractions / box of centres (↓); **detail** = log10 of the samples' power in the band \
         over the renderer's (0 ideal; blur < 0, spurious structure > 0).\n",
        c.samples,
        c.steps,
        c.cfg_scale,
        c.bootstrap,
        report.detail_band.0,
        report.detail_band.1,
        report.cell_seconds()
    );
    for cell in &report.cells {
        s += &format!(
            "\n## {} ({} × {} px)\n\n| row | one | area err | centre err | detail |\n|---|---|---|---|---|\n",
            cell.cell.label, cell.cell.height, cell.cell.width
        );
        for row in &cell.rows {
            let name = if row.kind == "calibration" {
                format!("*{}*", row.name)
            } else {
                row.name.clone()
            };
            s += &format!(
                "| {name} | {} | {} | {} | {} |\n",
                fmt_est(&row.metrics.one, 2, false),
                fmt_est(&row.metrics.area_err, 3, false),
                fmt_est(&row.metrics.centre_err, 3, false),
                fmt_est(&row.metrics.detail, 3, false)
            );
        }
        let pairs: Vec<PairedDifference> = DYNAMIC_PAIRS
            .iter()
            .filter_map(|(a, b)| paired_difference(cell, a, b, c.bootstrap))
            .collect();
        if !pairs.is_empty() {
            s += "\nDynamic − static, paired (per-sample differences bootstrapped with the rows' own \
                  resamples; an interval without 0 is a difference these samples support):\n\n\
                  | pair | Δ one | Δ area err |\n|---|---|---|\n";
            for p in &pairs {
                s += &format!(
                    "| {} − {} | {} | {} |\n",
                    p.a,
                    p.b,
                    fmt_est(&p.one, 2, true),
                    fmt_est(&p.area_err, 3, true)
                );
            }
        }
        s += &format!(
            "\nWhat each method does to the RoPE at {} (first, middle and last sampler step; every \
             step in `frequencies.md`): {FREQUENCY_COLUMNS}\n\n",
            cell.cell.label
        );
        let steps = c.steps;
        s += &frequency_table(cell.frequencies.chunks(steps.max(1)).flat_map(|m| {
            let picks = [0, steps / 2, steps.saturating_sub(1)];
            let mut v: Vec<&FrequencyRow> = picks.iter().filter_map(|&i| m.get(i)).collect();
            v.dedup_by(|a, b| a.sigma == b.sigma);
            v
        }));
    }
    s
}

/// Per cell and method, the paper time at which low, middle and high frequency bands reach
/// γ = 0.5, in Markdown (the mean over the third's bins where γ is defined, with their count).
pub fn progression_markdown(report: &LabReport) -> String {
    let mut s = String::from(
        "# Spectral progression\n\nThe paper's t (1 = noise, 0 = the result) at which γ(f, t) \
         (DyPE Eq. 12) first reaches 0.5, averaged over the lowest, middle and highest third of \
         the frequency bins of `x_t` (mean PSD over samples and RGB channels), over the bins where \
         γ is defined (noise and result power at least 0.5 decades apart; their count after the \
         time). Low frequencies settling earlier (larger t) than high ones is the paper's \
         observation (§3.1, Fig. 2).\n",
    );
    for cell in &report.cells {
        s += &format!(
            "\n## {} ({} × {} px)\n\n| method | low f | middle f | high f |\n|---|---|---|---|\n",
            cell.cell.label, cell.cell.height, cell.cell.width
        );
        for (name, map) in &cell.progression {
            let parts: Vec<String> = map
                .thirds(0.5)
                .iter()
                .map(|b| match b.t {
                    Some(t) => format!("{t:.3} ({}/{})", b.used, b.bins),
                    None => format!("– (0/{})", b.bins),
                })
                .collect();
            s += &format!("| {name} | {} |\n", parts.join(" | "));
        }
    }
    s
}
