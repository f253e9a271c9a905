//! Factorized cos/sin tables: per axis, one row per *distinct* position; per token, the row it uses on
//! each axis. An `H×W` grid needs `H + W` rows per step instead of `H·W`.
//!
//! Every type here keeps its invariants: fields are private, the constructors validate (sizes with
//! checked arithmetic against [`MAX_TOKENS`] and [`MAX_ELEMENTS`], values finite, row indices in
//! range), and the accessors hand out slices.

use alloc::vec::Vec;

use crate::error::{DypeError, Result, add, at_most, finite, length, mul};
use crate::layout::{AxialRope, PairLayout, StepInfo, write_axis_rows};
use crate::time::Sigma;
use crate::{MAX_AXES, MAX_DIM, MAX_ELEMENTS, MAX_TOKENS};

/// cos/sin rows of one axis, `rows × half_dim` values each (row-major), attention factor already
/// folded in. Built by [`FactorizedTable::build`] or, by hand, [`AxisRows::new`].
#[derive(Debug, Clone, PartialEq)]
pub struct AxisRows {
    half_dim: usize,
    rows: usize,
    cos: Vec<f32>,
    sin: Vec<f32>,
}

impl AxisRows {
    /// Rows of one axis: `half_dim` (1 ..= [`MAX_DIM`]/2) pairs, `rows >= 1` positions, `cos` and
    /// `sin` of length `rows × half_dim` (at most [`MAX_ELEMENTS`]), every value finite.
    pub fn new(half_dim: usize, rows: usize, cos: Vec<f32>, sin: Vec<f32>) -> Result<Self> {
        if half_dim == 0 {
            return Err(DypeError::InvalidDim { dim: 0 });
        }
        at_most("half_dim", half_dim, MAX_DIM / 2)?;
        if rows == 0 {
            return Err(DypeError::Empty { name: "rows" });
        }
        let n = at_most(
            "rows × half_dim",
            mul("rows × half_dim", rows, half_dim)?,
            MAX_ELEMENTS,
        )?;
        length("cos", n, cos.len())?;
        length("sin", n, sin.len())?;
        for &v in cos.iter().chain(&sin) {
            finite("table value", f64::from(v))?;
        }
        Ok(AxisRows {
            half_dim,
            rows,
            cos,
            sin,
        })
    }

    /// Number of frequency pairs on this axis (`rotary_dim / 2`).
    pub fn half_dim(&self) -> usize {
        self.half_dim
    }

    /// Number of distinct positions (rows).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// `rows × half_dim` cosines times the axis attention factor.
    pub fn cos(&self) -> &[f32] {
        &self.cos
    }

    /// `rows × half_dim` sines times the axis attention factor.
    pub fn sin(&self) -> &[f32] {
        &self.sin
    }

    /// Row `r` of the cosines and sines (`None` past the last row).
    pub fn row(&self, r: usize) -> Option<(&[f32], &[f32])> {
        let a = r.checked_mul(self.half_dim)?;
        let b = a.checked_add(self.half_dim)?;
        Some((self.cos.get(a..b)?, self.sin.get(a..b)?))
    }

    /// The rows' buffers, `(cos, sin)`, taken out.
    pub fn into_parts(self) -> (Vec<f32>, Vec<f32>) {
        (self.cos, self.sin)
    }
}

/// A factorized rotary table for one sequence: per-axis rows plus, for every token, the row index on
/// every axis (`token_rows()[token * axes().len() + axis]`).
#[derive(Debug, Clone, PartialEq)]
pub struct FactorizedTable {
    axes: Vec<AxisRows>,
    tokens: usize,
    token_rows: Vec<u32>,
}

/// Distinct positions per axis and the row index of every token on every axis. Positions do not
/// change between sampler steps, so this is built once per resolution.
#[derive(Debug, Clone, PartialEq)]
pub struct TokenPositions {
    axes: Vec<Vec<f64>>,
    tokens: usize,
    token_rows: Vec<u32>,
}

/// How the target extent of an axis is measured from its positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ExtentRule {
    /// `max position + 1` (official DyPE FLUX: `ids[:, i].max() + 1`).
    #[default]
    MaxPlusOne,
    /// `span / smallest step + 1` over distinct values (ComfyUI-DyPE `_axis_token_span`; works for
    /// fractional or shifted ids).
    Span,
}

/// Checks the shape of `token_rows` against `axes` and that every index is a row of its axis.
fn check_token_rows(row_counts: &[usize], tokens: usize, token_rows: &[u32]) -> Result<()> {
    let n_axes = row_counts.len();
    length(
        "token_rows",
        mul("token_rows", tokens, n_axes)?,
        token_rows.len(),
    )?;
    for (i, &r) in token_rows.iter().enumerate() {
        let rows = row_counts[i % n_axes];
        if r as usize >= rows {
            return Err(DypeError::OutOfRange {
                name: "token_rows",
                value: f64::from(r),
                expected: "< rows of the axis",
            });
        }
    }
    Ok(())
}

fn check_axes_count(n_axes: usize) -> Result<()> {
    if n_axes == 0 {
        return Err(DypeError::Empty { name: "axes" });
    }
    if n_axes > MAX_AXES {
        return Err(DypeError::TooManyAxes {
            count: n_axes,
            max: MAX_AXES,
        });
    }
    Ok(())
}

impl TokenPositions {
    /// Indexes `ids` (`tokens × n_axes`, row-major, finite; 1 ..= [`MAX_AXES`] axes, at most
    /// [`MAX_TOKENS`] tokens).
    pub fn from_ids(ids: &[f64], n_axes: usize) -> Result<Self> {
        check_axes_count(n_axes)?;
        if ids.is_empty() {
            return Err(DypeError::Empty { name: "ids" });
        }
        if !ids.len().is_multiple_of(n_axes) {
            return Err(DypeError::LengthMismatch {
                name: "ids",
                expected: ids.len().div_ceil(n_axes).saturating_mul(n_axes),
                actual: ids.len(),
            });
        }
        for &p in ids {
            finite("position", p)?;
        }
        let tokens = at_most("tokens", ids.len() / n_axes, MAX_TOKENS)?;
        let mut axes = Vec::with_capacity(n_axes);
        for a in 0..n_axes {
            let mut v: Vec<f64> = ids.iter().skip(a).step_by(n_axes).copied().collect();
            // -0.0 and 0.0 are one position.
            v.iter_mut().for_each(|x| *x += 0.0);
            v.sort_by(f64::total_cmp);
            v.dedup_by(|x, y| x == y);
            axes.push(v);
        }
        let mut token_rows = Vec::with_capacity(ids.len());
        for (i, &p) in ids.iter().enumerate() {
            let distinct = &axes[i % n_axes];
            let r = distinct
                .binary_search_by(|x| x.total_cmp(&(p + 0.0)))
                .map_err(|_| DypeError::InvalidConfig {
                    reason: "position not indexed",
                })?;
            token_rows.push(u32::try_from(r).map_err(|_| DypeError::TooLarge {
                name: "rows",
                value: r as u64,
                max: u64::from(u32::MAX),
            })?);
        }
        Ok(TokenPositions {
            axes,
            tokens,
            token_rows,
        })
    }

    /// Sorted distinct positions per axis.
    pub fn axes(&self) -> &[Vec<f64>] {
        &self.axes
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// `tokens × axes().len()` row indices into `axes()[a]`.
    pub fn token_rows(&self) -> &[u32] {
        &self.token_rows
    }

    /// Target extents per axis under `rule` (each finite and `>= 1`).
    pub fn extents(&self, rule: ExtentRule) -> Vec<f64> {
        self.axes
            .iter()
            .map(|v| {
                let (first, last) = (
                    v.first().copied().unwrap_or(0.0),
                    v.last().copied().unwrap_or(0.0),
                );
                let e = match rule {
                    ExtentRule::MaxPlusOne => last + 1.0,
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
                };
                if e.is_finite() { e.max(1.0) } else { 1.0 }
            })
            .collect()
    }
}

/// Every axis' `rows × half_dim` within [`MAX_ELEMENTS`], checked before anything is allocated.
fn check_row_sizes(rope: &AxialRope, positions: &TokenPositions) -> Result<()> {
    for (a, pos) in rope.axes().iter().zip(&positions.axes) {
        at_most(
            "rows × half_dim",
            mul("rows × half_dim", pos.len(), a.axis.pairs())?,
            MAX_ELEMENTS,
        )?;
    }
    Ok(())
}

impl FactorizedTable {
    /// A table built by hand: 1 ..= [`MAX_AXES`] axes of rows, `tokens` (1 ..= [`MAX_TOKENS`]) and
    /// `tokens × axes.len()` row indices, each within its axis' rows.
    pub fn new(axes: Vec<AxisRows>, tokens: usize, token_rows: Vec<u32>) -> Result<Self> {
        check_axes_count(axes.len())?;
        if tokens == 0 {
            return Err(DypeError::Empty { name: "tokens" });
        }
        at_most("tokens", tokens, MAX_TOKENS)?;
        let counts: Vec<usize> = axes.iter().map(|a| a.rows).collect();
        check_token_rows(&counts, tokens, &token_rows)?;
        Ok(FactorizedTable {
            axes,
            tokens,
            token_rows,
        })
    }

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
    /// between steps). The frequencies of the step are computed once ([`AxialRope::step`]), then
    /// written by [`Self::rows_for_step`].
    pub fn build_rows(
        rope: &AxialRope,
        positions: &TokenPositions,
        extents: &[f64],
        t: Option<Sigma>,
    ) -> Result<(Vec<AxisRows>, StepInfo)> {
        length("positions.axes", rope.axes().len(), positions.axes.len())?;
        check_row_sizes(rope, positions)?;
        let mut freqs = alloc::vec![0.0f64; rope.pairs()];
        let info = rope.step(extents, t, &mut freqs)?;
        let axes = Self::rows_for_step(rope, positions, &freqs, &info)?;
        Ok((axes, info))
    }

    /// The per-axis rows of a step already computed: `freqs` as [`AxialRope::step`] wrote them
    /// (`rope.pairs()` values, axis after axis) and its `info` (each axis' attention factor). A
    /// caller that keeps the frequencies (e.g. as a cache key) builds the rows without computing
    /// them again.
    pub fn rows_for_step(
        rope: &AxialRope,
        positions: &TokenPositions,
        freqs: &[f64],
        info: &StepInfo,
    ) -> Result<Vec<AxisRows>> {
        length("positions.axes", rope.axes().len(), positions.axes.len())?;
        length("freqs", rope.pairs(), freqs.len())?;
        length("info.axes", rope.axes().len(), info.axes().len())?;
        check_row_sizes(rope, positions)?;
        let mut axes = Vec::with_capacity(positions.axes.len());
        let mut offset = 0;
        for ((a, pos), step) in rope.axes().iter().zip(&positions.axes).zip(info.axes()) {
            let half = a.axis.pairs();
            let rows = pos.len();
            let mut cos = alloc::vec![0.0f32; rows * half];
            let mut sin = alloc::vec![0.0f32; rows * half];
            let end = add("pairs", offset, half)?;
            write_axis_rows(
                freqs.get(offset..end).unwrap_or(&[]),
                step.attention_factor,
                pos,
                &mut cos,
                &mut sin,
            )?;
            axes.push(AxisRows {
                half_dim: half,
                rows,
                cos,
                sin,
            });
            offset = end;
        }
        Ok(axes)
    }

    /// Per-axis rows, in axis order (the order of the concatenated head dimension).
    pub fn axes(&self) -> &[AxisRows] {
        &self.axes
    }

    /// Number of tokens.
    pub fn tokens(&self) -> usize {
        self.tokens
    }

    /// `tokens × axes().len()` row indices.
    pub fn token_rows(&self) -> &[u32] {
        &self.token_rows
    }

    /// Replaces the per-axis rows (same axis count, pair counts and row counts), e.g. with the next
    /// step's [`Self::build_rows`].
    pub fn set_rows(&mut self, axes: Vec<AxisRows>) -> Result<()> {
        length("axes", self.axes.len(), axes.len())?;
        for (old, new) in self.axes.iter().zip(&axes) {
            length("half_dim", old.half_dim, new.half_dim)?;
            length("rows", old.rows, new.rows)?;
        }
        self.axes = axes;
        Ok(())
    }

    /// Total frequency pairs (`head_dim / 2`).
    pub fn pairs(&self) -> usize {
        self.axes.iter().map(|a| a.half_dim).sum()
    }

    /// Expands to a full `tokens × head_dim` cos/sin table in the given layout. Each axis' rows are
    /// laid out once in the target layout, then every token is a few slice copies.
    pub fn expand(&self, layout: PairLayout, cos: &mut [f32], sin: &mut [f32]) -> Result<()> {
        let half = self.pairs();
        let head = mul("head_dim", half, 2)?;
        let n_axes = self.axes.len();
        let n = mul("table", self.tokens, head)?;
        length("cos", n, cos.len())?;
        length("sin", n, sin.len())?;
        // Per axis: its rows in the output layout, and where its values go inside a token's row.
        let mut laid: Vec<(Vec<f32>, Vec<f32>, usize, usize)> = Vec::with_capacity(n_axes);
        let mut j0 = 0;
        for ax in &self.axes {
            let twice = |v: &[f32]| -> Vec<f32> {
                let mut out = Vec::with_capacity(2 * v.len());
                for row in v.chunks_exact(ax.half_dim) {
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
                let (h, j) = (*h, *j);
                let src = r as usize * 2 * h;
                // In range by construction (`new` checks every index); `get` keeps it panic-free.
                let (Some(c), Some(s)) = (c_ax.get(src..src + 2 * h), s_ax.get(src..src + 2 * h))
                else {
                    return Err(DypeError::OutOfRange {
                        name: "token_rows",
                        value: f64::from(r),
                        expected: "< rows of the axis",
                    });
                };
                match layout {
                    PairLayout::Interleaved => {
                        c_out[2 * j..2 * (j + h)].copy_from_slice(c);
                        s_out[2 * j..2 * (j + h)].copy_from_slice(s);
                    }
                    PairLayout::HalfSplit => {
                        c_out[j..j + h].copy_from_slice(&c[..h]);
                        c_out[half + j..half + j + h].copy_from_slice(&c[h..]);
                        s_out[j..j + h].copy_from_slice(&s[..h]);
                        s_out[half + j..half + j + h].copy_from_slice(&s[h..]);
                    }
                }
            }
        }
        Ok(())
    }
}

/// Number of tokens of a `text_tokens + height × width` sequence, checked against [`MAX_TOKENS`].
fn grid_tokens(text_tokens: usize, height: usize, width: usize) -> Result<usize> {
    let image = mul("tokens", height, width)?;
    let tokens = add("tokens", text_tokens, image)?;
    at_most("tokens", tokens, MAX_TOKENS)
}

/// FLUX position ids (`axis0, row, col`): `text_tokens` zero rows (text tokens) followed by the
/// `height × width` image grid, as FLUX pipelines build them. At most [`MAX_TOKENS`] tokens.
pub fn flux_ids(text_tokens: usize, height: usize, width: usize) -> Result<Vec<f64>> {
    let tokens = grid_tokens(text_tokens, height, width)?;
    let mut ids = Vec::with_capacity(3 * tokens);
    ids.resize(3 * text_tokens, 0.0);
    // An empty grid (`height × width = 0`) may still have a huge side: do not walk it.
    let height = if width == 0 { 0 } else { height };
    for r in 0..height {
        for c in 0..width {
            ids.extend_from_slice(&[0.0, r as f64, c as f64]);
        }
    }
    Ok(ids)
}

/// A 2-D `(row, column)` grid of `height × width` positions (FiT). At most [`MAX_TOKENS`] tokens.
pub fn grid_ids(height: usize, width: usize) -> Result<Vec<f64>> {
    let tokens = grid_tokens(0, height, width)?;
    let mut ids = Vec::with_capacity(2 * tokens);
    let height = if width == 0 { 0 } else { height };
    for r in 0..height {
        for c in 0..width {
            ids.extend_from_slice(&[r as f64, c as f64]);
        }
    }
    Ok(ids)
}
