//! The spectral progression of a sampler (DyPE §3.1, Eq. 10–12, Fig. 2): the mean radially
//! averaged PSD of the state `x_t` at every step, and the progression map
//!
//! ```text
//! γ(f, t) = (log PSD_t(f) − log PSD_1(f)) / (log PSD_0(f) − log PSD_1(f)),   clipped to [0, 1]
//! ```
//!
//! with the paper's time (t = 1 noise, t = 0 the result): γ = 0 while a frequency still has the
//! noise's power, 1 once it has the final image's. Fed from a pipeline's per-step callback
//! ([`dype_burn::pipeline::fitv2::sample_batch`], [`dype_burn::pipeline::flux::generate`]),
//! so it works for any model those run, on latents or pixels: the lab's cells, and one run of
//! FiTv2-XL/2 or FLUX with real weights (the `fitv2` and `flux` examples' `--progression DIR`,
//! written by [`write_run`]).

use std::path::Path;

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use serde::{Deserialize, Serialize};

use crate::shapes;

use super::LabError;

/// Accumulates the mean spectrum of the sampler state at every step.
#[derive(Debug, Clone, Default)]
pub struct Progression {
    /// Per step index: (paper time t, sum of per-plane power vectors, planes summed).
    steps: Vec<(f64, Vec<f64>, usize)>,
    frequency: Vec<f64>,
}

/// The measured progression.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressionMap {
    /// Bin centres (cycles per pixel or per latent value).
    pub frequency: Vec<f64>,
    /// The paper's t of every recorded step (1 = noise first, 0 = the result last).
    pub t: Vec<f64>,
    /// `log10` of the mean PSD, `[step][bin]`.
    pub log_psd: Vec<Vec<f64>>,
    /// γ(f, t) clipped to [0, 1], `[step][bin]` (0 where the noise and the result have equal power).
    pub gamma: Vec<Vec<f64>>,
    /// Per bin, whether γ means something there: the noise's and the result's power differ by at
    /// least [`MIN_SPAN`] decades. Near the crossover of the two spectra the denominator of
    /// Eq. 12 vanishes, and the blend `(1−σ)²P₀ + σ²P₁` can dip below both ends, so γ clips to 0
    /// or 1 by chance: such bins are masked in the figure and left out of the settling times.
    #[serde(default)]
    pub defined: Vec<bool>,
}

/// The least difference, in decades, between a bin's noise and final power for γ to be read there.
pub const MIN_SPAN: f64 = 0.5;

impl Progression {
    /// An empty accumulator.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the state at step `index` (paper time `t`): `data` is `[batch, channels, height,
    /// width]` row-major; every (sample, channel) plane adds to the step's mean spectrum.
    pub fn add(
        &mut self,
        index: usize,
        t: f64,
        data: &[f32],
        height: usize,
        width: usize,
    ) -> Result<(), LabError> {
        let plane = height * width;
        if plane == 0 || data.is_empty() || !data.len().is_multiple_of(plane) || !t.is_finite() {
            return Err(LabError::Config("progression: data is not whole planes"));
        }
        if data.iter().any(|v| !v.is_finite()) {
            return Err(LabError::Config(
                "progression: the state has non-finite values (did the sampler diverge?)",
            ));
        }
        let planes: Vec<&[f32]> = data.chunks_exact(plane).collect();
        let spectrum = shapes::radial_psd(&planes, height, width)?;
        if self.frequency.is_empty() {
            self.frequency = spectrum.frequency.clone();
        } else if self.frequency != spectrum.frequency {
            return Err(LabError::Config(
                "progression: every state must have one size",
            ));
        }
        while self.steps.len() <= index {
            self.steps
                .push((f64::NAN, vec![0.0; self.frequency.len()], 0));
        }
        let (st, sum, n) = &mut self.steps[index];
        *st = t;
        // radial_psd averages over its planes: weight by their count.
        for (a, p) in sum.iter_mut().zip(&spectrum.power) {
            *a += p * planes.len() as f64;
        }
        *n += planes.len();
        Ok(())
    }

    /// [`add`](Progression::add) for a sampler state on a device, `[batch, channels, height,
    /// width]`: read back to the host as f32 (what the pipelines' per-step callbacks lend).
    pub fn add_tensor<B: Backend>(
        &mut self,
        index: usize,
        t: f64,
        x: Tensor<B, 4>,
    ) -> Result<(), LabError> {
        let [_, _, h, w] = x.dims();
        let data = x
            .into_data()
            .convert::<f32>()
            .to_vec::<f32>()
            .map_err(|_| LabError::Config("progression: reading the sampler state back"))?;
        self.add(index, t, &data, h, w)
    }

    /// The map over the recorded steps (at least two, each recorded at least once).
    pub fn map(&self) -> Result<ProgressionMap, LabError> {
        if self.steps.len() < 2 || self.steps.iter().any(|s| s.2 == 0) {
            return Err(LabError::Config(
                "progression: needs every step from noise to the result",
            ));
        }
        let log_psd: Vec<Vec<f64>> = self
            .steps
            .iter()
            .map(|(_, sum, n)| {
                sum.iter()
                    .map(|v| (v / *n as f64).max(f64::MIN_POSITIVE).log10())
                    .collect()
            })
            .collect();
        let (first, last) = (&log_psd[0], &log_psd[log_psd.len() - 1]);
        let gamma = log_psd
            .iter()
            .map(|row| {
                row.iter()
                    .zip(first.iter().zip(last))
                    .map(|(v, (p1, p0))| gamma(*v, *p1, *p0))
                    .collect()
            })
            .collect();
        let defined = first
            .iter()
            .zip(last)
            .map(|(p1, p0)| (p0 - p1).abs() >= MIN_SPAN)
            .collect();
        Ok(ProgressionMap {
            frequency: self.frequency.clone(),
            t: self.steps.iter().map(|s| s.0).collect(),
            log_psd,
            gamma,
            defined,
        })
    }
}

/// Eq. 12 for one bin: `(log P_t − log P_noise) / (log P_final − log P_noise)`, clipped to
/// [0, 1]; 0 when the noise and the result have the same power (nothing to progress).
pub fn gamma(log_t: f64, log_noise: f64, log_final: f64) -> f64 {
    let span = log_final - log_noise;
    if span.abs() < 1e-12 || !span.is_finite() || !log_t.is_finite() {
        return 0.0;
    }
    ((log_t - log_noise) / span).clamp(0.0, 1.0)
}

impl ProgressionMap {
    /// For each bin, the first paper time `t` (walking from noise) at which γ reaches `level`
    /// (`None` if it never does, or where γ is not [`defined`](ProgressionMap::defined)).
    pub fn settling_time(&self, level: f64) -> Vec<Option<f64>> {
        (0..self.frequency.len())
            .map(|k| {
                if !self.defined.get(k).copied().unwrap_or(true) {
                    return None;
                }
                self.gamma
                    .iter()
                    .zip(&self.t)
                    .find(|(row, _)| row.get(k).is_some_and(|g| *g >= level))
                    .map(|(_, t)| *t)
            })
            .collect()
    }
}

/// How one third of the frequency bins settles ([`ProgressionMap::thirds`]).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BandSettling {
    /// Lowest and highest bin centre of the third.
    pub frequencies: (f64, f64),
    /// The mean first paper time at which γ reaches the level, over the bins of the third where
    /// γ is defined and does (`None` if no bin does).
    pub t: Option<f64>,
    /// Bins that mean is over.
    pub used: usize,
    /// Bins in the third.
    pub bins: usize,
}

impl ProgressionMap {
    /// The lowest, middle and highest third of the bins, each with the mean time at which γ first
    /// reaches `level` ([`settling_time`](ProgressionMap::settling_time)): the paper's
    /// observation is the low third settling first (largest t).
    pub fn thirds(&self, level: f64) -> [BandSettling; 3] {
        let times = self.settling_time(level);
        let n = times.len();
        std::array::from_fn(|k| {
            let range = k * n / 3..(k + 1) * n / 3;
            let chunk = times.get(range.clone()).unwrap_or(&[]);
            let v: Vec<f64> = chunk.iter().flatten().copied().collect();
            let f = self.frequency.get(range).unwrap_or(&[]);
            BandSettling {
                frequencies: (
                    f.first().copied().unwrap_or(f64::NAN),
                    f.last().copied().unwrap_or(f64::NAN),
                ),
                t: (!v.is_empty()).then(|| v.iter().sum::<f64>() / v.len() as f64),
                used: v.len(),
                bins: chunk.len(),
            }
        })
    }
}

impl ProgressionMap {
    /// Whether the map is one [`Progression::map`] could have made: at least two recorded
    /// states, `t`, `log_psd` and `gamma` of one length, every row as long as `frequency`,
    /// frequencies finite, positive and increasing, every value finite (what [`write_run`]
    /// checks before drawing a map that came from elsewhere).
    pub fn check(&self) -> Result<(), LabError> {
        let n = self.frequency.len();
        let rows_ok = |rows: &[Vec<f64>]| {
            rows.len() == self.t.len()
                && rows
                    .iter()
                    .all(|r| r.len() == n && r.iter().all(|v| v.is_finite()))
        };
        let ok = self.t.len() >= 2
            && n >= 1
            && self.t.iter().all(|t| t.is_finite())
            && self.frequency.iter().all(|f| f.is_finite() && *f > 0.0)
            && self.frequency.windows(2).all(|w| w[0] < w[1])
            && rows_ok(&self.log_psd)
            && rows_ok(&self.gamma)
            && (self.defined.is_empty() || self.defined.len() == n);
        if ok {
            Ok(())
        } else {
            Err(LabError::Config(
                "progression: the map is malformed (steps, bins or non-finite values)",
            ))
        }
    }
}

/// One sampler run's progression, as [`write_run`] saves it (`progression.json`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ProgressionRun {
    /// What ran (model, size, method, sampler, seed…), the figure's title.
    pub title: String,
    /// The frequency unit: `cycles/px` on decoded images, `cycles/latent` on latents.
    pub unit: String,
    /// The map.
    pub map: ProgressionMap,
}

/// Writes one run's progression into `dir` (created): `progression.json` (the run), `progression.md`
/// (per third of the bins, the paper time at which γ first reaches 0.5) and `progression.png`
/// (the PSD of `x_t` at every step beside the γ map). A malformed map
/// ([`ProgressionMap::check`]) is refused before anything is written.
pub fn write_run(dir: &Path, run: &ProgressionRun) -> Result<(), LabError> {
    run.map.check()?;
    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    super::write_json(&dir.join("progression.json"), run)?;
    super::write_file(&dir.join("progression.md"), &run_markdown(run))?;
    super::figures::progression_run_figure(
        &run.title,
        &run.map,
        &run.unit,
        &dir.join("progression.png"),
    )
}

/// The Markdown [`write_run`] writes.
pub fn run_markdown(run: &ProgressionRun) -> String {
    let mut s = format!(
        "# Spectral progression: {}\n\nThe paper's t (1 = noise, 0 = the result) at which γ(f, t) \
         (DyPE Eq. 12) first reaches 0.5, averaged over each third of the frequency bins of `x_t` \
         (mean PSD over samples and channels), over the bins where γ is defined (noise and result \
         power at least {MIN_SPAN} decades apart). Low frequencies settling earlier (larger t) \
         than high ones is the paper's observation (§3.1, Fig. 2). {} states recorded (the noise \
         and every step).\n\n\
         | band | {} | t (γ = 0.5) | bins used |\n|---|---|---|---|\n",
        run.title,
        run.map.t.len(),
        run.unit
    );
    for (name, band) in ["low", "middle", "high"].iter().zip(run.map.thirds(0.5)) {
        let range = if band.bins == 0 {
            "–".to_string()
        } else {
            format!("{:.4}–{:.4}", band.frequencies.0, band.frequencies.1)
        };
        s += &format!(
            "| {name} | {range} | {} | {}/{} |\n",
            band.t.map_or("–".into(), |t| format!("{t:.3}")),
            band.used,
            band.bins
        );
    }
    s
}
