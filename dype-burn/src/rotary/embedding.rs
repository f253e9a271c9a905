//! [`RotaryEmbedding`]: the one timestep-aware rotary type. A dype-core [`AxialRope`] (axes, method,
//! axis policy, attention factor) plus the token positions of a sequence (one per batch sample),
//! turned into device tables per sampler step and applied to q and k.
//!
//! Per step only the frequencies are computed first (`Σ d/2` numbers, in f64 on the host); the
//! cache is keyed by those frequencies and the attention factors, which covers `t` — a cache keyed
//! without `t` is a bug peers shipped (official DyPE Qwen path). When they did not change (static
//! methods, or κ saturated) nothing else happens; otherwise the factorized per-axis rows (`H + W`
//! rows, not `H·W`) are written and uploaded, and the device expands them with token indices that
//! were uploaded once.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;
use dype_core::table::{AxisRows, ExtentRule, FactorizedTable, TokenPositions};
use dype_core::{AxialRope, DypeError, PairLayout, Sigma, StepInfo};

use super::{RotaryError, RotaryIndex, RotaryTables};

/// One step's frequencies and diagnostics for every sample, and their bits as the cache key.
struct Step {
    /// Frequencies and attention factors of every sample as bits.
    key: Vec<u64>,
    /// Per sample, `rope.pairs()` frequencies.
    freqs: Vec<Vec<f64>>,
    /// Per sample, the step's diagnostics.
    infos: Vec<StepInfo>,
}

impl Step {
    /// Every sample's per-axis rows, from the frequencies already computed.
    fn rows(
        &self,
        rope: &AxialRope,
        samples: &[SamplePositions],
    ) -> Result<Vec<Vec<AxisRows>>, RotaryError> {
        let rows = samples
            .iter()
            .zip(self.freqs.iter().zip(&self.infos))
            .map(|(s, (freqs, info))| {
                FactorizedTable::rows_for_step(rope, &s.positions, freqs, info)
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(rows)
    }
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

    /// An `height × width` token grid, `(row, column)` per token in row-major order, with extents
    /// `[height, width]` (DiTs such as FiT and SD3-style models).
    pub fn grid(height: usize, width: usize) -> Result<Self, DypeError> {
        let ids = dype_core::table::grid_ids(height, width)?;
        Self::with_extents(&ids, 2, vec![height as f64, width as f64])
    }

    /// FLUX's `[txt_ids; img_ids]`: `text_tokens` tokens at `(0, 0, 0)`, then the image grid at
    /// `(0, row, col)`; extents `max id + 1` per axis, as the official DyPE code measures them.
    pub fn flux(text_tokens: usize, height: usize, width: usize) -> Result<Self, DypeError> {
        let ids = dype_core::table::flux_ids(text_tokens, height, width)?;
        Self::from_ids(&ids, 3, ExtentRule::MaxPlusOne)
    }

    /// Positions `0..n` on one axis (a 1-D sequence, e.g. an LLM), extent `n`.
    pub fn sequence(n: usize) -> Result<Self, DypeError> {
        let ids: Vec<f64> = (0..n).map(|p| p as f64).collect();
        Self::with_extents(&ids, 1, vec![n as f64])
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.positions.tokens()
    }
}

/// Per-step diagnostics a sampler can log (t, κ, per-axis scales, attention factors), per sample.
#[derive(Debug, Clone, PartialEq)]
pub struct StepReport {
    /// DyPE time of the step (1 for the static build).
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

/// The rotary embedding of a model run: built from a dype-core rope and the token positions,
/// moved with the sampler ([`RotaryEmbedding::set_timestep`]), applied to q and k
/// ([`RotaryEmbedding::apply_qk`]) in the pair layout it holds.
///
/// It is ready at construction: the tables are built for `t = None` (a static method's only
/// tables; a dynamic method's strongest setting, that of σ = 1), so a static method never needs a
/// step. Equal frequencies and attention factors are never uploaded twice.
#[derive(Debug, Clone)]
pub struct RotaryEmbedding<B: Backend> {
    rope: AxialRope,
    samples: Vec<SamplePositions>,
    layout: PairLayout,
    device: B::Device,
    key: Vec<u64>,
    index: RotaryIndex<B>,
    tables: RotaryTables<B>,
    uploads: u64,
    last: StepReport,
}

impl<B: Backend> RotaryEmbedding<B> {
    /// An embedding for one sequence, shared by every sample of the batch (broadcast).
    pub fn new(
        rope: AxialRope,
        positions: SamplePositions,
        layout: PairLayout,
        device: &B::Device,
    ) -> Result<Self, RotaryError> {
        Self::batch(rope, vec![positions], layout, device)
    }

    /// An embedding with one position set per batch sample (all with the same token count, e.g.
    /// FiT batches of different resolutions padded to one length).
    pub fn batch(
        rope: AxialRope,
        samples: Vec<SamplePositions>,
        layout: PairLayout,
        device: &B::Device,
    ) -> Result<Self, RotaryError> {
        let n_axes = rope.axes().len();
        let tokens = samples
            .first()
            .map(SamplePositions::tokens)
            .ok_or(RotaryError::EmptyBatch)?;
        for (i, s) in samples.iter().enumerate() {
            if s.positions.axes().len() != n_axes || s.extents.len() != n_axes {
                return Err(RotaryError::SampleAxes {
                    sample: i,
                    expected: n_axes,
                    found: if s.positions.axes().len() != n_axes {
                        s.positions.axes().len()
                    } else {
                        s.extents.len()
                    },
                });
            }
            if s.tokens() != tokens {
                return Err(RotaryError::SampleTokens {
                    sample: i,
                    expected: tokens,
                    found: s.tokens(),
                });
            }
        }
        let step = Self::step_of(&rope, &samples, None)?;
        let tables = samples
            .iter()
            .zip(step.rows(&rope, &samples)?)
            .map(|(s, rows)| {
                FactorizedTable::new(
                    rows,
                    s.positions.tokens(),
                    s.positions.token_rows().to_vec(),
                )
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index = RotaryIndex::from_tables(&tables, device)?;
        let rows: Vec<&[AxisRows]> = tables.iter().map(|t| t.axes()).collect();
        let device_tables = RotaryTables::from_rows(&rows, &index, device)?.with_layout(layout);
        Ok(RotaryEmbedding {
            rope,
            samples,
            layout,
            device: device.clone(),
            key: step.key,
            index,
            tables: device_tables,
            uploads: 1,
            last: StepReport {
                sigma: 1.0,
                samples: step.infos,
                uploaded: true,
            },
        })
    }

    /// Every sample's frequencies and diagnostics at `t`, computed once per step.
    fn step_of(
        rope: &AxialRope,
        samples: &[SamplePositions],
        t: Option<Sigma>,
    ) -> Result<Step, RotaryError> {
        let mut step = Step {
            key: Vec::new(),
            freqs: Vec::with_capacity(samples.len()),
            infos: Vec::with_capacity(samples.len()),
        };
        for s in samples {
            let mut freqs = vec![0.0; rope.pairs()];
            let info = rope.step(&s.extents, t, &mut freqs)?;
            step.key.extend(freqs.iter().map(|f| f.to_bits()));
            step.key
                .extend(info.axes().iter().map(|a| a.attention_factor.to_bits()));
            step.freqs.push(freqs);
            step.infos.push(info);
        }
        Ok(step)
    }

    /// Moves to DyPE time `t` (σ, 1 = noise); rebuilds and uploads the rows only if the
    /// frequencies or attention factors changed. Returns the step's diagnostics.
    pub fn set_timestep(&mut self, t: Sigma) -> Result<&StepReport, RotaryError> {
        self.update(Some(t))
    }

    /// Back to the time-independent tables (`t = None`: a static method's tables, a dynamic
    /// method's σ = 1 setting).
    pub fn set_static(&mut self) -> Result<&StepReport, RotaryError> {
        self.update(None)
    }

    fn update(&mut self, t: Option<Sigma>) -> Result<&StepReport, RotaryError> {
        let step = Self::step_of(&self.rope, &self.samples, t)?;
        let uploaded = step.key != self.key;
        if uploaded {
            let rows = step.rows(&self.rope, &self.samples)?;
            let rows: Vec<&[AxisRows]> = rows.iter().map(Vec::as_slice).collect();
            self.tables =
                RotaryTables::from_rows(&rows, &self.index, &self.device)?.with_layout(self.layout);
            self.key = step.key;
            self.uploads += 1;
        }
        self.last = StepReport {
            sigma: t.map(Sigma::get).unwrap_or(1.0),
            samples: step.infos,
            uploaded,
        };
        Ok(&self.last)
    }

    /// Rotates q or k (`[batch, heads, tokens, head_dim]`) with the current tables.
    pub fn apply(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, RotaryError> {
        self.tables.apply(x)
    }

    /// Rotates queries and keys with the current tables.
    pub fn apply_qk(
        &self,
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
    ) -> Result<(Tensor<B, 4>, Tensor<B, 4>), RotaryError> {
        Ok((self.apply(q)?, self.apply(k)?))
    }

    /// The rope (axes, method, policy, attention factor rule).
    pub fn rope(&self) -> &AxialRope {
        &self.rope
    }

    /// The pair layout the rotation uses.
    pub fn layout(&self) -> PairLayout {
        self.layout
    }

    /// The per-sample positions.
    pub fn samples(&self) -> &[SamplePositions] {
        &self.samples
    }

    /// The current device tables.
    pub fn tables(&self) -> &RotaryTables<B> {
        &self.tables
    }

    /// How many times tables were uploaded (the construction counts as one).
    pub fn upload_count(&self) -> u64 {
        self.uploads
    }

    /// The last step's diagnostics (the construction's before the first step).
    pub fn last_report(&self) -> &StepReport {
        &self.last
    }
}
