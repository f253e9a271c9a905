//! Shared helpers of the integration tests (deterministic data, host references).
#![allow(dead_code)]

use burn::tensor::{Tensor, TensorData, backend::Backend};
use dype_burn::rotary::{AxisRows, FactorizedTable};

/// Deterministic xorshift generator of f32 in [-1, 1).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }

    pub fn f32(&mut self) -> f32 {
        ((self.next_u64() >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    pub fn vec(&mut self, n: usize) -> Vec<f32> {
        (0..n).map(|_| self.f32()).collect()
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n as u64) as usize
    }
}

pub fn tensor4<B: Backend>(data: &[f32], dims: [usize; 4], device: &B::Device) -> Tensor<B, 4> {
    Tensor::from_data(TensorData::new(data.to_vec(), dims), device)
}

pub fn to_vec<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

/// max |a - b| / max |b|.
pub fn rel_err(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let num = a
        .iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    let den = b
        .iter()
        .map(|y| y.abs())
        .fold(0.0f32, f32::max)
        .max(f32::MIN_POSITIVE);
    num / den
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max)
}

/// One axis with `rows` positions `p = offset + r·step` and frequencies `theta^(-2i/(2·half))`,
/// scaled by `factor`.
pub fn axis_rows(rows: usize, half: usize, offset: f32, step: f32, factor: f32) -> AxisRows {
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for r in 0..rows {
        let p = offset + r as f32 * step;
        for i in 0..half {
            let omega = 10_000f32.powf(-(i as f32) / half as f32);
            cos.push(factor * (p * omega).cos());
            sin.push(factor * (p * omega).sin());
        }
    }
    AxisRows::new(half, rows, cos, sin).expect("valid rows")
}

/// 2-D grid table: axis 0 = `h` rows, axis 1 = `w` rows, tokens in row-major grid order.
pub fn grid_table(
    h: usize,
    w: usize,
    half_h: usize,
    half_w: usize,
    factor: f32,
) -> FactorizedTable {
    let mut token_rows = Vec::new();
    for y in 0..h {
        for x in 0..w {
            token_rows.push(y as u32);
            token_rows.push(x as u32);
        }
    }
    FactorizedTable::new(
        vec![
            axis_rows(h, half_h, 0.0, 1.0, factor),
            axis_rows(w, half_w, 0.0, 1.0, factor),
        ],
        h * w,
        token_rows,
    )
    .expect("valid table")
}

/// Host expansion: per token, the concatenation over axes of that token's row → `tokens × Σhalf`.
pub fn host_expand(table: &FactorizedTable) -> (Vec<f32>, Vec<f32>) {
    let n_axes = table.axes().len();
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for t in 0..table.tokens() {
        for (a, axis) in table.axes().iter().enumerate() {
            let r = table.token_rows()[t * n_axes + a] as usize;
            let (c, s) = axis.row(r).expect("row in range");
            cos.extend_from_slice(c);
            sin.extend_from_slice(s);
        }
    }
    (cos, sin)
}
