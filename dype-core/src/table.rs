//! Factorized cos/sin tables: per axis, one row per *distinct* position; per token, the row it uses on
//! each axis. An `H×W` grid needs `H + W` rows per step instead of `H·W`.

use alloc::vec::Vec;

use crate::error::{DypeError, Result, finite, length};
use crate::layout::{AxialRope, PairLayout, StepInfo, write_axis_rows};
use crate::time::Sigma;

/// cos/sin rows of one axis, `rows × half_dim` values each (row-major), attention factor already folded in.
#[derive(Debug, Clone, PartialEq)]
pub struct AxisRows {
    /// Number of frequency pairs on this axis (`rotary_dim / 2`).
    pub half_dim: usize,
    /// Number of distinct positions (rows).
    pub rows: usize,
    /// `rows × half_dim` cosines times the axis attention factor.
    pub cos: Vec<f32>,
    /// `rows × half_dim` sines times the axis attention factor.
    pub sin: Vec<f32>,
}

/// A factorized rotary table for one sequence: per-axis rows plus, for every token, the row index on
/// every axis (`token_rows[token * axes.len() + axis]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FactorizedTable {
    /// Per-axis rows, in axis order (the order of the concatenated head dimension).
    pub axes: Vec<AxisRows>,
    /// Number of tokens.
    pub tokens: usize,
    /// `tokens × axes.len()` row indices.
    pub token_rows: Vec<u32>,
}

/// Distinct positions per axis and the row index of every token on every axis. Positions do not
/// change between sampler steps, so this is built once per resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPositions {
    /// Sorted distinct positions per axis.
    pub axes: Vec<Vec<f64>>,
    /// Number of tokens.
    pub tokens: usize,
    /// `tokens × axes.len()` row indices into `axes[a]`.
    pub token_rows: Vec<u32>,
}

/// How the target extent of an axis is measured from its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExtentRule {
    /// `max position + 1` (official DyPE FLUX: `ids[:, i].max() + 1`).
    MaxPlusOne,
    /// `span / smallest step + 1` over distinct values (ComfyUI-DyPE `_axis_token_span`; works for
    /// fractional or shifted ids).
    Span,
}

impl TokenPositions {
    /// Indexes `ids` (`tokens × n_axes`, row-major, finite).
    pub fn from_ids(ids: &[f64], n_axes: usize) -> Result<Self> {
        if n_axes == 0 {
            return Err(DypeError::Empty { name: "axes" });
        }
        if ids.is_empty() {
            return Err(DypeError::Empty { name: "ids" });
        }
        if !ids.len().is_multiple_of(n_axes) {
            return Err(DypeError::LengthMismatch {
                name: "ids",
                expected: (ids.len() / n_axes + 1) * n_axes,
                actual: ids.len(),
            });
        }
        for &p in ids {
            finite("position", p)?;
        }
        let tokens = ids.len() / n_axes;
        if tokens > u32::MAX as usize {
            return Err(DypeError::OutOfRange {
                name: "tokens",
                value: tokens as f64,
                expected: "<= u32::MAX",
            });
        }
        let mut axes = Vec::with_capacity(n_axes);
        for a in 0..n_axes {
            let mut v: Vec<f64> = (0..tokens).map(|t| ids[t * n_axes + a]).collect();
            v.sort_by(f64::total_cmp);
            v.dedup_by(|x, y| x.to_bits() == y.to_bits() || *x == *y);
            axes.push(v);
        }
        let mut token_rows = Vec::with_capacity(ids.len());
        for t in 0..tokens {
            for (a, distinct) in axes.iter().enumerate() {
                let p = ids[t * n_axes + a];
                let r = distinct
                    .binary_search_by(|x| x.total_cmp(&p))
                    .or_else(|_| {
                        distinct
                            .iter()
                            .position(|x| *x == p)
                            .ok_or(DypeError::InvalidConfig {
                                reason: "position not indexed",
                            })
                    })?;
                token_rows.push(r as u32);
            }
        }
        Ok(TokenPositions {
            axes,
            tokens,
            token_rows,
        })
    }

    /// Target extents per axis under `rule`.
    pub fn extents(&self, rule: ExtentRule) -> Vec<f64> {
        self.axes
            .iter()
            .map(|v| {
                let (first, last) = (
                    v.first().copied().unwrap_or(0.0),
                    v.last().copied().unwrap_or(0.0),
                );
                match rule {
                    ExtentRule::MaxPlusOne => (last + 1.0).max(1.0),
                    ExtentRule::Span => {
                        let step = v
                            .windows(2)
                            .map(|w| w[1] - w[0])
                            .fold(f64::INFINITY, f64::min);
                        if v.len() <= 1 || step.is_nan() || step <= 1e-6 {
                            1.0
                        } else {
                            (last - first) / step + 1.0
                        }
                    }
                }
            })
            .collect()
    }
}

impl FactorizedTable {
    /// Builds the factorized table of one step: per axis, rows for the distinct positions only.
    /// Returns the table and the step's diagnostics. Frequencies are computed in f64.
    pub fn build(
        rope: &AxialRope,
        positions: &TokenPositions,
        extents: &[f64],
        t: Option<Sigma>,
    ) -> Result<(Self, StepInfo)> {
        let (axes, info) = Self::build_rows(rope, positions, extents, t)?;
        Ok((
            FactorizedTable {
                axes,
                tokens: positions.tokens,
                token_rows: positions.token_rows.clone(),
            },
            info,
        ))
    }

    /// The per-step part of [`Self::build`]: only the per-axis rows (the token indices do not change
    /// between steps).
    pub fn build_rows(
        rope: &AxialRope,
        positions: &TokenPositions,
        extents: &[f64],
        t: Option<Sigma>,
    ) -> Result<(Vec<AxisRows>, StepInfo)> {
        length("positions.axes", rope.axes().len(), positions.axes.len())?;
        let mut freqs = alloc::vec![0.0f64; rope.pairs()];
        let info = rope.step(extents, t, &mut freqs)?;
        let mut axes = Vec::with_capacity(positions.axes.len());
        let mut offset = 0;
        for (k, a) in rope.axes().iter().enumerate() {
            let half = a.axis.pairs();
            let rows = positions.axes[k].len();
            let mut cos = alloc::vec![0.0f32; rows * half];
            let mut sin = alloc::vec![0.0f32; rows * half];
            write_axis_rows(
                &freqs[offset..offset + half],
                info.axes[k].attention_factor,
                &positions.axes[k],
                &mut cos,
                &mut sin,
            )?;
            axes.push(AxisRows {
                half_dim: half,
                rows,
                cos,
                sin,
            });
            offset += half;
        }
        Ok((axes, info))
    }

    /// Total frequency pairs (`head_dim / 2`).
    pub fn pairs(&self) -> usize {
        self.axes.iter().map(|a| a.half_dim).sum()
    }

    /// Expands to a full `tokens × head_dim` cos/sin table in the given layout. Each axis' rows are
    /// laid out once in the target layout, then every token is a few slice copies.
    pub fn expand(&self, layout: PairLayout, cos: &mut [f32], sin: &mut [f32]) -> Result<()> {
        let half = self.pairs();
        let head = 2 * half;
        let n_axes = self.axes.len();
        length("cos", self.tokens * head, cos.len())?;
        length("sin", self.tokens * head, sin.len())?;
        length("token_rows", self.tokens * n_axes, self.token_rows.len())?;
        // Per axis: its rows in the output layout, and where its values go inside a token's row.
        let mut laid: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = Vec::with_capacity(n_axes);
        let mut j0 = 0;
        for ax in &self.axes {
            let n = ax.rows * ax.half_dim;
            length("axis cos", n, ax.cos.len())?;
            length("axis sin", n, ax.sin.len())?;
            let twice = |v: &[f32]| -> Vec<f32> {
                let mut out = Vec::with_capacity(2 * n);
                for r in 0..ax.rows {
                    let row = &v[r * ax.half_dim..(r + 1) * ax.half_dim];
                    match layout {
                        PairLayout::Interleaved => {
                            row.iter().for_each(|&x| out.extend_from_slice(&[x, x]))
                        }
                        PairLayout::HalfSplit => {
                            out.extend_from_slice(row);
                            out.extend_from_slice(row);
                        }
                    }
                }
                out
            };
            laid.push((twice(&ax.cos), twice(&ax.sin), j0, ax.half_dim));
            j0 += ax.half_dim;
        }
        for ((tok_rows, c_out), s_out) in self
            .token_rows
            .chunks_exact(n_axes)
            .zip(cos.chunks_exact_mut(head))
            .zip(sin.chunks_exact_mut(head))
        {
            for ((c_ax, s_ax, j, h), &r) in laid.iter().zip(tok_rows) {
                let (r, h, j) = (r as usize, *h, *j);
                let src = r * 2 * h;
                if src + 2 * h > c_ax.len() {
                    return Err(DypeError::OutOfRange {
                        name: "token_rows",
                        value: r as f64,
                        expected: "< rows of the axis",
                    });
                }
                match layout {
                    PairLayout::Interleaved => {
                        c_out[2 * j..2 * (j + h)].copy_from_slice(&c_ax[src..src + 2 * h]);
                        s_out[2 * j..2 * (j + h)].copy_from_slice(&s_ax[src..src + 2 * h]);
                    }
                    PairLayout::HalfSplit => {
                        c_out[j..j + h].copy_from_slice(&c_ax[src..src + h]);
                        c_out[half + j..half + j + h].copy_from_slice(&c_ax[src + h..src + 2 * h]);
                        s_out[j..j + h].copy_from_slice(&s_ax[src..src + h]);
                        s_out[half + j..half + j + h].copy_from_slice(&s_ax[src + h..src + 2 * h]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// FLUX position ids (`axis0, row, col`): `text_tokens` zero rows (text tokens) followed by the
/// `height × width` image grid, as FLUX pipelines build them.
pub fn flux_ids(text_tokens: usize, height: usize, width: usize) -> Vec<f64> {
    let mut ids = Vec::with_capacity(3 * (text_tokens + height * width));
    ids.resize(3 * text_tokens, 0.0);
    for r in 0..height {
        for c in 0..width {
            ids.extend_from_slice(&[0.0, r as f64, c as f64]);
        }
    }
    ids
}

/// A 2-D `(row, column)` grid of `height × width` positions (FiT).
pub fn grid_ids(height: usize, width: usize) -> Vec<f64> {
    let mut ids = Vec::with_capacity(2 * height * width);
    for r in 0..height {
        for c in 0..width {
            ids.extend_from_slice(&[r as f64, c as f64]);
        }
    }
    ids
}
