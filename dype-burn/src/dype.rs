//! Timestep-aware rotary embeddings: a dype-core [`AxialRope`] plus the token positions of a
//! sequence (one per batch sample), turned into device tables per sampler step.
//!
//! Per step only the frequencies are computed first (`Σ d/2` numbers, in f64 on the host); the
//! cache is keyed by those frequencies and the attention factors, which covers `t` — a cache keyed
//! without `t` is a bug peers shipped (official DyPE Qwen path). When they did not change (static
//! methods, or κ saturated) nothing else happens; otherwise the factorized per-axis rows (`H + W`
//! rows, not `H·W`) are written and uploaded, and the device expands them.

use burn::tensor::backend::Backend;
use dype_core::table::{ExtentRule, FactorizedTable, TokenPositions};
use dype_core::{AxialRope, DypeError, Sigma, StepInfo};
use thiserror::Error;

use crate::rotary::{AxisRows, RotaryError, RotaryIndex, RotaryLayout, RotaryTables};

/// Errors of [`TimestepRotary`].
#[derive(Debug, Error)]
pub enum DypeRotaryError {
    /// The math rejected an input.
    #[error(transparent)]
    Math(#[from] DypeError),
    /// The device side rejected the tables.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// A sample's positions do not match the rope's axes or the batch's token count.
    #[error("sample {sample}: {reason}")]
    Positions {
        /// Which sample.
        sample: usize,
        /// Why.
        reason: String,
    },
    /// Asked for tables before any timestep was set.
    #[error("no timestep has been set yet")]
    NotInitialized,
}

/// One sample of a batch: its token positions and the extents that set its scales.
#[derive(Debug, Clone, PartialEq)]
pub struct SamplePositions {
    /// Distinct positions per axis and token row indices.
    pub positions: TokenPositions,
    /// Target extents per axis (e.g. max position + 1).
    pub extents: Vec<f64>,
}

impl SamplePositions {
    /// From ids (`tokens × n_axes`, row-major) with extents measured by `rule`.
    pub fn from_ids(ids: &[f64], n_axes: usize, rule: ExtentRule) -> Result<Self, DypeError> {
        let positions = TokenPositions::from_ids(ids, n_axes)?;
        let extents = positions.extents(rule);
        Ok(SamplePositions { positions, extents })
    }

    /// From ids with explicitly given extents (e.g. FiT's `(H, W)` of a padded sample).
    pub fn with_extents(ids: &[f64], n_axes: usize, extents: Vec<f64>) -> Result<Self, DypeError> {
        Ok(SamplePositions {
            positions: TokenPositions::from_ids(ids, n_axes)?,
            extents,
        })
    }
}

/// Per-step diagnostics a sampler can log (t, κ, per-axis scales, attention factors), per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// DyPE time of the step.
    pub sigma: f64,
    /// Per-sample diagnostics from dype-core.
    pub samples: Vec<StepInfo>,
    /// Whether the device tables were rebuilt this step.
    pub uploaded: bool,
}

impl StepReport {
    /// κ(t) of the first sample (`None` for static methods).
    pub fn kappa(&self) -> Option<f64> {
        self.samples.first().and_then(|s| s.kappa())
    }

    /// Largest attention factor over samples and axes.
    pub fn max_attention_factor(&self) -> f64 {
        self.samples
            .iter()
            .flat_map(|s| s.axes().iter().map(|a| a.attention_factor))
            .fold(1.0, f64::max)
    }

    /// Largest per-axis interpolation scale over samples and axes.
    pub fn max_scale(&self) -> f64 {
        self.samples
            .iter()
            .flat_map(|s| s.axes().iter().map(|a| a.scales.linear))
            .fold(1.0, f64::max)
    }
}

/// A rotary embedding that follows the sampler: set the step's time, get device tables.
#[derive(Debug)]
pub struct TimestepRotary<B: Backend> {
    rope: AxialRope,
    samples: Vec<SamplePositions>,
    layout: RotaryLayout,
    device: B::Device,
    key: Vec<u64>,
    index: Option<RotaryIndex<B>>,
    tables: Option<RotaryTables<B>>,
    uploads: u64,
    last: Option<StepReport>,
}

impl<B: Backend> TimestepRotary<B> {
    /// A rotary embedding for `samples` (all with the same token count) under `rope`.
    pub fn new(
        rope: AxialRope,
        samples: Vec<SamplePositions>,
        layout: RotaryLayout,
        device: &B::Device,
    ) -> Result<Self, DypeRotaryError> {
        let n_axes = rope.axes().len();
        let tokens =
            samples
                .first()
                .map(|s| s.positions.tokens())
                .ok_or(DypeRotaryError::Positions {
                    sample: 0,
                    reason: "no samples".into(),
                })?;
        for (i, s) in samples.iter().enumerate() {
            if s.positions.axes().len() != n_axes || s.extents.len() != n_axes {
                return Err(DypeRotaryError::Positions {
                    sample: i,
                    reason: format!("{} axes expected", n_axes),
                });
            }
            if s.positions.tokens() != tokens {
                return Err(DypeRotaryError::Positions {
                    sample: i,
                    reason: format!(
                        "{} tokens, the first sample has {tokens}",
                        s.positions.tokens()
                    ),
                });
            }
        }
        Ok(TimestepRotary {
            rope,
            samples,
            layout,
            device: device.clone(),
            key: Vec::new(),
            index: None,
            tables: None,
            uploads: 0,
            last: None,
        })
    }

    /// The rope configuration.
    pub fn rope(&self) -> &AxialRope {
        &self.rope
    }

    /// Moves to DyPE time `t` (σ, 1 = noise); rebuilds and uploads tables only if the frequencies
    /// or attention factors changed. Returns the step's diagnostics.
    pub fn set_timestep(&mut self, t: Sigma) -> Result<&StepReport, DypeRotaryError> {
        self.update(Some(t))
    }

    /// For static methods: build the tables once (time-independent).
    pub fn set_static(&mut self) -> Result<&StepReport, DypeRotaryError> {
        self.update(None)
    }

    fn update(&mut self, t: Option<Sigma>) -> Result<&StepReport, DypeRotaryError> {
        let mut key = Vec::new();
        let mut infos = Vec::with_capacity(self.samples.len());
        let mut freqs = vec![0.0; self.rope.pairs()];
        for s in &self.samples {
            let info = self.rope.step(&s.extents, t, &mut freqs)?;
            key.extend(freqs.iter().map(|f| f.to_bits()));
            key.extend(info.axes().iter().map(|a| a.attention_factor.to_bits()));
            infos.push(info);
        }
        let uploaded = self.tables.is_none() || key != self.key;
        if uploaded {
            if self.index.is_none() {
                // First build: the token → row indices go up once; later steps send rows only.
                let tables = self
                    .samples
                    .iter()
                    .map(|s| {
                        FactorizedTable::build(&self.rope, &s.positions, &s.extents, t)
                            .map(|(tab, _)| tab)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let index = RotaryIndex::from_tables(&tables, &self.device)?;
                let rows: Vec<&[AxisRows]> = tables.iter().map(|t| t.axes()).collect();
                self.tables = Some(RotaryTables::from_rows(&rows, &index, &self.device)?);
                self.index = Some(index);
            } else if let Some(index) = &self.index {
                let rows = self
                    .samples
                    .iter()
                    .map(|s| {
                        FactorizedTable::build_rows(&self.rope, &s.positions, &s.extents, t)
                            .map(|(r, _)| r)
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                let rows: Vec<&[AxisRows]> = rows.iter().map(Vec::as_slice).collect();
                self.tables = Some(RotaryTables::from_rows(&rows, index, &self.device)?);
            }
            self.key = key;
            self.uploads += 1;
        }
        self.last = Some(StepReport {
            sigma: t.map(Sigma::get).unwrap_or(1.0),
            samples: infos,
            uploaded,
        });
        self.last.as_ref().ok_or(DypeRotaryError::NotInitialized)
    }

    /// The current device tables.
    pub fn tables(&self) -> Result<&RotaryTables<B>, DypeRotaryError> {
        self.tables.as_ref().ok_or(DypeRotaryError::NotInitialized)
    }

    /// The pair layout the tables are meant for.
    pub fn layout(&self) -> RotaryLayout {
        self.layout
    }

    /// Rotates q or k (`[batch, heads, tokens, head_dim]`) with the current tables.
    pub fn apply(
        &self,
        x: burn::tensor::Tensor<B, 4>,
    ) -> Result<burn::tensor::Tensor<B, 4>, DypeRotaryError> {
        Ok(self.tables()?.apply(x, self.layout)?)
    }

    /// How many times tables were uploaded.
    pub fn upload_count(&self) -> u64 {
        self.uploads
    }

    /// The last step's diagnostics.
    pub fn last_report(&self) -> Option<&StepReport> {
        self.last.as_ref()
    }
}
