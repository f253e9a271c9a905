//! Rotary embedding: device expansion, rotation layouts, invariants, cache, batches, dtypes.
#![cfg(feature = "cpu")]

mod common;

use burn::tensor::{DType, Tensor, TensorData, bf16, f16};
use common::*;
use dype_burn::backend::Cpu;
use dype_burn::rotary::{
    AxisRows, FactorizedTable, PairLayout, RotaryEmbedding, RotaryError, RotaryTables,
    SamplePositions, apply_rotary,
};

type B = Cpu;

fn device() -> burn::backend::flex::FlexDevice {
    Default::default()
}

/// Scalar reference rotation of `x` (`[batch, heads, tokens, dim]`, row-major) with per-token
/// host tables `cos/sin[sample][token * half + i]` (`sample` broadcast when only one).
fn reference_rotate(
    x: &[f32],
    dims: [usize; 4],
    cos: &[Vec<f32>],
    sin: &[Vec<f32>],
    layout: PairLayout,
) -> Vec<f32> {
    let [b, h, n, d] = dims;
    let half = d / 2;
    let mut out = vec![0.0f32; x.len()];
    for bi in 0..b {
        let s = if cos.len() == 1 { 0 } else { bi };
        for hi in 0..h {
            for t in 0..n {
                let base = ((bi * h + hi) * n + t) * d;
                for i in 0..half {
                    let (c, sn) = (cos[s][t * half + i], sin[s][t * half + i]);
                    let (ia, ib) = match layout {
                        PairLayout::Interleaved => (2 * i, 2 * i + 1),
                        PairLayout::HalfSplit => (i, i + half),
                    };
                    let (a, bb) = (x[base + ia], x[base + ib]);
                    out[base + ia] = a * c - bb * sn;
                    out[base + ib] = a * sn + bb * c;
                }
            }
        }
    }
    out
}

#[test]
fn device_expansion_equals_host_expansion_exactly() {
    let table = grid_table(4, 6, 3, 5, 1.37);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    assert_eq!(tables.cos().dims(), [1, 24, 8]);
    assert_eq!(tables.head_dim(), 16);
    assert_eq!(tables.axis_half_dims(), &[3, 5]);
    let (cos, sin) = host_expand(&table);
    assert_eq!(to_vec(tables.cos().clone()), cos);
    assert_eq!(to_vec(tables.sin().clone()), sin);
}

#[test]
fn expansion_with_scrambled_token_rows() {
    // Tokens in arbitrary order, some rows unused, some reused.
    let mut rng = Rng::new(7);
    let axes = vec![
        axis_rows(5, 2, 0.5, 1.5, 1.0),
        axis_rows(3, 4, -1.0, 0.25, 0.8),
        axis_rows(7, 1, 0.0, 2.0, 1.1),
    ];
    let tokens = 19;
    let mut token_rows = Vec::new();
    for _ in 0..tokens {
        for a in &axes {
            token_rows.push(rng.below(a.rows()) as u32);
        }
    }
    let table = FactorizedTable::new(axes, tokens, token_rows).expect("valid");
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let (cos, sin) = host_expand(&table);
    assert_eq!(to_vec(tables.cos().clone()), cos);
    assert_eq!(to_vec(tables.sin().clone()), sin);
}

fn check_layout_against_reference(layout: PairLayout) {
    let table = grid_table(3, 5, 2, 6, 1.25);
    let dims = [2, 3, 15, 16];
    let mut rng = Rng::new(11);
    let x = rng.vec(dims.iter().product());
    let (cos, sin) = host_expand(&table);
    let expected = reference_rotate(&x, dims, &[cos], &[sin], layout);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let got = to_vec(
        tables
            .with_layout(layout)
            .apply(tensor4::<B>(&x, dims, &device()))
            .unwrap(),
    );
    assert!(
        max_abs_diff(&got, &expected) <= 1e-6,
        "{layout:?}: {}",
        max_abs_diff(&got, &expected)
    );
    // Not the identity, and the two layouts differ.
    assert!(max_abs_diff(&got, &x) > 1e-2);
}

#[test]
fn interleaved_matches_scalar_reference() {
    check_layout_against_reference(PairLayout::Interleaved);
}

#[test]
fn half_split_matches_scalar_reference() {
    check_layout_against_reference(PairLayout::HalfSplit);
}

#[test]
fn layouts_differ() {
    let table = grid_table(2, 2, 2, 2, 1.0);
    let mut rng = Rng::new(3);
    let x = rng.vec(4 * 8);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let a = to_vec(
        tables
            .with_layout(PairLayout::Interleaved)
            .apply(tensor4::<B>(&x, [1, 1, 4, 8], &device()))
            .unwrap(),
    );
    let b = to_vec(
        tables
            .with_layout(PairLayout::HalfSplit)
            .apply(tensor4::<B>(&x, [1, 1, 4, 8], &device()))
            .unwrap(),
    );
    assert!(max_abs_diff(&a, &b) > 1e-2);
}

#[test]
fn interleaved_matches_burn_rotary_encoding() {
    // burn's own RotaryEncoding uses the interleaved layout with positions 0..n and theta 10000.
    use burn::nn::RotaryEncodingConfig;
    let (n, d) = (9, 8);
    let half = d / 2;
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..n {
        for i in 0..half {
            let omega = 10_000f64.powf(-2.0 * i as f64 / d as f64);
            cos.push((p as f64 * omega).cos() as f32);
            sin.push((p as f64 * omega).sin() as f32);
        }
    }
    let table = FactorizedTable::new(
        vec![AxisRows::new(half, n, cos, sin).expect("rows")],
        n,
        (0..n as u32).collect(),
    )
    .expect("valid");
    let mut rng = Rng::new(5);
    let x = rng.vec(2 * n * d);
    let ours = RotaryTables::<B>::from_table(&table, &device())
        .unwrap()
        .with_layout(PairLayout::Interleaved)
        .apply(tensor4::<B>(&x, [1, 2, n, d], &device()))
        .unwrap();
    let burn_rope = RotaryEncodingConfig::new(n, d).init::<B>(&device());
    let theirs = burn_rope.forward(tensor4::<B>(&x, [1, 2, n, d], &device()));
    let diff = max_abs_diff(&to_vec(ours), &to_vec(theirs));
    assert!(diff < 1e-5, "diff {diff}");
}

#[test]
fn rotation_scales_pair_norms_by_attention_factor() {
    for layout in [PairLayout::Interleaved, PairLayout::HalfSplit] {
        let factor = 1.7f32;
        let table = grid_table(4, 3, 4, 4, factor);
        let dims = [1, 2, 12, 16];
        let mut rng = Rng::new(21);
        let x = rng.vec(dims.iter().product());
        let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
        let y = to_vec(
            tables
                .with_layout(layout)
                .apply(tensor4::<B>(&x, dims, &device()))
                .unwrap(),
        );
        let half = 8;
        for row in 0..(2 * 12) {
            for i in 0..half {
                let (ia, ib) = match layout {
                    PairLayout::Interleaved => (2 * i, 2 * i + 1),
                    PairLayout::HalfSplit => (i, i + half),
                };
                let base = row * 16;
                let nx = x[base + ia].hypot(x[base + ib]);
                let ny = y[base + ia].hypot(y[base + ib]);
                assert!(
                    (ny - factor * nx).abs() <= 1e-5 * (1.0 + factor * nx),
                    "{layout:?} row {row} pair {i}: {ny} vs {}",
                    factor * nx
                );
            }
        }
    }
}

#[test]
fn dot_product_depends_only_on_position_difference() {
    // 1-D positions p = 0..n, factor 1 table built by hand: cos(p·ω_i), sin(p·ω_i).
    let (n, d) = (12usize, 8usize);
    let half = d / 2;
    let omegas = [1.0f32, 0.3, 0.07, 0.011];
    let (mut cos, mut sin) = (Vec::new(), Vec::new());
    for p in 0..n {
        for w in omegas {
            cos.push((p as f32 * w).cos());
            sin.push((p as f32 * w).sin());
        }
    }
    let table = FactorizedTable::new(
        vec![AxisRows::new(half, n, cos, sin).expect("rows")],
        n,
        (0..n as u32).collect(),
    )
    .expect("valid");
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let mut rng = Rng::new(99);
    let qv = rng.vec(d);
    let kv = rng.vec(d);
    for layout in [PairLayout::Interleaved, PairLayout::HalfSplit] {
        // The same q (resp. k) vector at every position.
        let q: Vec<f32> = (0..n).flat_map(|_| qv.clone()).collect();
        let k: Vec<f32> = (0..n).flat_map(|_| kv.clone()).collect();
        let qr = to_vec(
            tables
                .with_layout(layout)
                .apply(tensor4::<B>(&q, [1, 1, n, d], &device()))
                .unwrap(),
        );
        let kr = to_vec(
            tables
                .with_layout(layout)
                .apply(tensor4::<B>(&k, [1, 1, n, d], &device()))
                .unwrap(),
        );
        let dot =
            |i: usize, j: usize| -> f32 { (0..d).map(|c| qr[i * d + c] * kr[j * d + c]).sum() };
        for delta in -4i32..=4 {
            let reference = if delta >= 0 {
                dot(delta as usize, 0)
            } else {
                dot(0, (-delta) as usize)
            };
            for i in 0..n {
                let j = i as i32 - delta;
                if j < 0 || j >= n as i32 {
                    continue;
                }
                let v = dot(i, j as usize);
                assert!(
                    (v - reference).abs() < 1e-4,
                    "{layout:?} Δ={delta} i={i}: {v} vs {reference}"
                );
            }
        }
        // And it does depend on the difference.
        assert!((dot(0, 0) - dot(3, 0)).abs() > 1e-3);
    }
}

#[test]
fn mixed_size_batch_of_tables() {
    // Two samples of 12 tokens: a 3×4 grid and a 2×6 grid (different row counts per axis).
    let t0 = grid_table(3, 4, 2, 2, 1.0);
    let t1 = grid_table(2, 6, 2, 2, 1.3);
    assert_ne!(t0.axes()[0].rows(), t1.axes()[0].rows());
    let batch = [t0.clone(), t1.clone()];
    let tables = RotaryTables::<B>::from_tables(&batch, &device()).unwrap();
    assert_eq!(tables.cos().dims(), [2, 12, 4]);
    let (c0, s0) = host_expand(&t0);
    let (c1, s1) = host_expand(&t1);
    assert_eq!(
        to_vec(tables.cos().clone()),
        [c0.clone(), c1.clone()].concat()
    );
    assert_eq!(
        to_vec(tables.sin().clone()),
        [s0.clone(), s1.clone()].concat()
    );

    let dims = [2, 3, 12, 8];
    let mut rng = Rng::new(1234);
    let x = rng.vec(dims.iter().product());
    for layout in [PairLayout::Interleaved, PairLayout::HalfSplit] {
        let got = to_vec(
            tables
                .with_layout(layout)
                .apply(tensor4::<B>(&x, dims, &device()))
                .unwrap(),
        );
        let expected = reference_rotate(
            &x,
            dims,
            &[c0.clone(), c1.clone()],
            &[s0.clone(), s1.clone()],
            layout,
        );
        assert!(max_abs_diff(&got, &expected) <= 1e-6);
    }
}

#[test]
fn single_table_broadcasts_over_batch() {
    let table = grid_table(2, 3, 1, 3, 1.0);
    let dims = [3, 2, 6, 8];
    let mut rng = Rng::new(8);
    let x = rng.vec(dims.iter().product());
    let (c, s) = host_expand(&table);
    let expected = reference_rotate(&x, dims, &[c], &[s], PairLayout::Interleaved);
    let got = RotaryTables::<B>::from_table(&table, &device())
        .unwrap()
        .with_layout(PairLayout::Interleaved)
        .apply(tensor4::<B>(&x, dims, &device()))
        .unwrap();
    assert!(max_abs_diff(&to_vec(got), &expected) <= 1e-6);
}

#[test]
fn from_cos_sin_matches_from_table() {
    let table = grid_table(3, 3, 2, 2, 1.1);
    let (c, s) = host_expand(&table);
    let cos = Tensor::<B, 3>::from_data(TensorData::new(c, [1, 9, 4]), &device());
    let sin = Tensor::<B, 3>::from_data(TensorData::new(s, [1, 9, 4]), &device());
    let hand = RotaryTables::from_cos_sin(cos, sin).unwrap();
    let mut rng = Rng::new(77);
    let x = rng.vec(2 * 9 * 8);
    let a = hand
        .with_layout(PairLayout::HalfSplit)
        .apply(tensor4::<B>(&x, [1, 2, 9, 8], &device()))
        .unwrap();
    let b = RotaryTables::<B>::from_table(&table, &device())
        .unwrap()
        .with_layout(PairLayout::HalfSplit)
        .apply(tensor4::<B>(&x, [1, 2, 9, 8], &device()))
        .unwrap();
    assert_eq!(to_vec(a), to_vec(b));
    let bad = RotaryTables::<B>::from_cos_sin(
        Tensor::zeros([1, 9, 4], &device()),
        Tensor::zeros([1, 9, 3], &device()),
    );
    assert!(matches!(bad, Err(RotaryError::CosSinShapeMismatch { .. })));
}

/// A small 2-axis rope (4 channels per axis, trained on 2 positions) with `method`.
fn small_rope(method: dype_core::Method) -> dype_core::AxialRope {
    let axis = dype_core::AxisConfig::scaled(4, 100.0, 2.0).unwrap();
    dype_core::AxialRope::new(&[axis, axis], method, dype_core::AxisPolicy::PerAxis).unwrap()
}

fn sigma(t: f64) -> dype_core::Sigma {
    dype_core::Sigma::new(t).unwrap()
}

#[test]
fn embedding_uploads_only_when_frequencies_change() {
    let rope = small_rope(dype_core::Method::dy_yarn());
    let positions = SamplePositions::grid(2, 3).unwrap();
    let mut emb =
        RotaryEmbedding::<B>::new(rope, positions.clone(), PairLayout::Interleaved, &device())
            .unwrap();
    // Ready at construction (t = None, a dynamic method's σ = 1 setting).
    assert_eq!(emb.upload_count(), 1);
    assert!(emb.apply(Tensor::zeros([1, 1, 6, 8], &device())).is_ok());
    // σ = 1 is the construction's setting: nothing uploaded.
    assert!(!emb.set_timestep(sigma(1.0)).unwrap().uploaded);
    assert_eq!(emb.upload_count(), 1);
    // A new σ changes the frequencies → re-upload, and the tables are dype-core's at that σ.
    let report = emb.set_timestep(sigma(0.5)).unwrap().clone();
    assert!(report.uploaded && report.kappa().is_some());
    assert_eq!(emb.upload_count(), 2);
    let (table, info) = FactorizedTable::build(
        &rope,
        &positions.positions,
        &positions.extents,
        Some(sigma(0.5)),
    )
    .unwrap();
    assert_eq!(report.samples, vec![info]);
    assert_eq!(to_vec(emb.tables().cos().clone()), host_expand(&table).0);
    assert_eq!(to_vec(emb.tables().sin().clone()), host_expand(&table).1);
    // The same σ again is a hit.
    assert!(!emb.set_timestep(sigma(0.5)).unwrap().uploaded);
    assert_eq!(emb.upload_count(), 2);
    // A static method never uploads again.
    let mut fixed = RotaryEmbedding::<B>::new(
        small_rope(dype_core::Method::Ntk { dynamic: None }),
        positions.clone(),
        PairLayout::Interleaved,
        &device(),
    )
    .unwrap();
    for t in [1.0, 0.6, 0.2, 0.0] {
        fixed.set_timestep(sigma(t)).unwrap();
    }
    assert_eq!(fixed.upload_count(), 1);
    // One position set per sample; mismatched samples and empty batches are typed errors.
    let batch = RotaryEmbedding::<B>::batch(
        rope,
        vec![positions.clone(), positions.clone()],
        PairLayout::Interleaved,
        &device(),
    )
    .unwrap();
    assert_eq!(batch.tables().batch(), 2);
    let other = SamplePositions::grid(2, 2).unwrap();
    assert!(matches!(
        RotaryEmbedding::<B>::batch(
            rope,
            vec![positions, other],
            PairLayout::Interleaved,
            &device()
        ),
        Err(RotaryError::SampleTokens { sample: 1, .. })
    ));
    assert!(matches!(
        RotaryEmbedding::<B>::batch(rope, vec![], PairLayout::Interleaved, &device()),
        Err(RotaryError::EmptyBatch)
    ));
    let flux_positions = SamplePositions::flux(1, 2, 2).unwrap();
    assert!(matches!(
        RotaryEmbedding::<B>::new(rope, flux_positions, PairLayout::Interleaved, &device()),
        Err(RotaryError::SampleAxes { sample: 0, .. })
    ));
}

/// A dynamic user rule (PI scaled by σ) that counts how often it is asked for frequencies.
struct CountingPi(std::sync::atomic::AtomicUsize);

impl dype_core::FrequencyRule for CountingPi {
    fn name(&self) -> &str {
        "counting-pi"
    }

    fn is_dynamic(&self) -> bool {
        true
    }

    fn frequencies(
        &self,
        input: &dype_core::RuleInput<'_>,
        out: &mut [f64],
    ) -> dype_core::Result<f64> {
        self.0.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let s = input.scales.linear.powf(input.sigma.get());
        out.iter_mut().for_each(|w| *w /= s);
        Ok(1.0)
    }
}

#[test]
fn frequencies_are_computed_once_per_step() {
    static RULE: CountingPi = CountingPi(std::sync::atomic::AtomicUsize::new(0));
    let calls = || RULE.0.load(std::sync::atomic::Ordering::SeqCst);
    let rope = small_rope(dype_core::Method::custom(&RULE));
    // Two samples of a 3×4 grid (extent 3 and 4 > the trained 2: both axes extrapolated).
    let positions = SamplePositions::grid(3, 4).unwrap();
    let samples = vec![positions.clone(), positions];
    let per_step = samples.len() * rope.axes().len();
    let mut emb =
        RotaryEmbedding::<B>::batch(rope, samples, PairLayout::Interleaved, &device()).unwrap();
    assert_eq!(calls(), per_step, "construction: one step");
    // A changed step computes its frequencies once (the cache key), and the rows reuse them.
    assert!(emb.set_timestep(sigma(0.5)).unwrap().uploaded);
    assert_eq!(calls(), 2 * per_step);
    // An unchanged step computes them once to find it unchanged, and uploads nothing.
    assert!(!emb.set_timestep(sigma(0.5)).unwrap().uploaded);
    assert_eq!(calls(), 3 * per_step);
    assert_eq!(emb.upload_count(), 2);
}

#[test]
fn embedding_apply_qk_equals_the_reference_rotation() {
    let rope = small_rope(dype_core::Method::dy_ntk());
    let positions = SamplePositions::grid(2, 2).unwrap();
    let mut emb =
        RotaryEmbedding::<B>::new(rope, positions.clone(), PairLayout::HalfSplit, &device())
            .unwrap();
    emb.set_timestep(sigma(0.3)).unwrap();
    let (table, _) = FactorizedTable::build(
        &rope,
        &positions.positions,
        &positions.extents,
        Some(sigma(0.3)),
    )
    .unwrap();
    let mut rng = Rng::new(4);
    let dims = [1, 2, 4, 8];
    let q = rng.vec(64);
    let k = rng.vec(64);
    let (qr, kr) = emb
        .apply_qk(
            tensor4::<B>(&q, dims, &device()),
            tensor4::<B>(&k, dims, &device()),
        )
        .unwrap();
    let (c, s) = host_expand(&table);
    let want_q = reference_rotate(
        &q,
        dims,
        std::slice::from_ref(&c),
        std::slice::from_ref(&s),
        PairLayout::HalfSplit,
    );
    let want_k = reference_rotate(&k, dims, &[c], &[s], PairLayout::HalfSplit);
    assert!(max_abs_diff(&to_vec(qr), &want_q) <= 1e-6);
    assert!(max_abs_diff(&to_vec(kr), &want_k) <= 1e-6);
}

/// The pair layout travels with the embedding: the tables a model gets (`tables()`) rotate in the
/// embedding's layout without being told, before and after a timestep update.
#[test]
fn the_tables_carry_the_embeddings_pair_layout() {
    let rope = small_rope(dype_core::Method::dy_ntk());
    let positions = SamplePositions::grid(2, 2).unwrap();
    let mut emb =
        RotaryEmbedding::<B>::new(rope, positions, PairLayout::HalfSplit, &device()).unwrap();
    assert_eq!(emb.tables().layout(), PairLayout::HalfSplit);
    emb.set_timestep(sigma(0.3)).unwrap();
    assert_eq!(emb.tables().layout(), PairLayout::HalfSplit);
    let x = tensor4::<B>(&Rng::new(9).vec(64), [1, 2, 4, 8], &device());
    let by_model = to_vec(emb.tables().apply(x.clone()).unwrap());
    let by_embedding = to_vec(emb.apply(x.clone()).unwrap());
    assert_eq!(by_model, by_embedding);
    let interleaved = to_vec(
        emb.tables()
            .with_layout(PairLayout::Interleaved)
            .apply(x)
            .unwrap(),
    );
    assert!(max_abs_diff(&by_model, &interleaved) > 1e-3);
}

#[test]
fn burn_rotary_encoding_adapter_uses_dype_frequencies() {
    use burn::nn::RotaryEncodingConfig;
    let config = RotaryEncodingConfig::new(16, 8);
    let (module, factor) = dype_burn::rotary::rotary_encoding::<B>(
        &config,
        dype_core::presets::method_by_name("yarn").unwrap(),
        4.0,
        2.0,
        &device(),
    )
    .unwrap();
    assert!((factor - (0.1 * 2f64.ln() + 1.0)).abs() < 1e-12);
    let axis = dype_core::Axis::new(8, 10_000.0).unwrap();
    let mut want = vec![0.0; 4];
    dype_core::presets::method_by_name("yarn")
        .unwrap()
        .frequencies(
            &axis,
            &dype_core::AxisScales::uniform(2.0, 4.0),
            None,
            &mut want,
        )
        .unwrap();
    let got: Vec<f32> = module.theta.clone().into_data().into_vec().unwrap();
    for (g, w) in got.iter().zip(&want) {
        assert!((f64::from(*g) - w).abs() <= 1e-7 * w.max(1e-3));
    }
    // Invalid input is a typed error, not burn's panic.
    let odd = RotaryEncodingConfig::new(16, 7);
    assert!(
        dype_burn::rotary::rotary_encoding::<B>(&odd, dype_core::Method::Base, 4.0, 1.0, &device())
            .is_err()
    );
}

#[test]
fn half_precision_rotation_equals_f32_rotation_cast() {
    let table = grid_table(3, 4, 2, 6, 1.2);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let dims = [2, 2, 12, 16];
    let mut rng = Rng::new(31);
    let x = tensor4::<B>(&rng.vec(dims.iter().product()), dims, &device());
    for layout in [PairLayout::Interleaved, PairLayout::HalfSplit] {
        for dtype in [DType::BF16, DType::F16] {
            let xh = x.clone().cast(dtype);
            let got = tables.with_layout(layout).apply(xh.clone()).unwrap();
            assert_eq!(got.dtype(), dtype);
            let expected = tables
                .with_layout(layout)
                .apply(xh.cast(DType::F32))
                .unwrap()
                .cast(dtype);
            let (g, e) = (got.into_data(), expected.into_data());
            match dtype {
                DType::BF16 => assert_eq!(g.to_vec::<bf16>().unwrap(), e.to_vec::<bf16>().unwrap()),
                _ => assert_eq!(g.to_vec::<f16>().unwrap(), e.to_vec::<f16>().unwrap()),
            }
        }
    }
}

#[test]
fn f64_input_is_rotated_in_f64() {
    let table = grid_table(2, 2, 2, 2, 1.0);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let mut rng = Rng::new(2);
    let x = tensor4::<B>(&rng.vec(64), [1, 2, 4, 8], &device());
    let got = tables
        .with_layout(PairLayout::Interleaved)
        .apply(x.clone().cast(DType::F64))
        .unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let expected = tables
        .with_layout(PairLayout::Interleaved)
        .apply(x)
        .unwrap();
    assert!(max_abs_diff(&to_vec(got), &to_vec(expected)) <= 1e-6);
}

#[test]
fn shape_errors_are_typed() {
    let table = grid_table(2, 3, 2, 2, 1.0); // head_dim 8, 6 tokens
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let apply = |dims: [usize; 4]| {
        tables
            .with_layout(PairLayout::Interleaved)
            .apply(Tensor::zeros(dims, &device()))
    };
    assert_eq!(
        apply([1, 1, 6, 10]).unwrap_err(),
        RotaryError::HeadDimMismatch {
            head_dim: 10,
            expected: 8
        }
    );
    assert_eq!(
        apply([1, 1, 5, 8]).unwrap_err(),
        RotaryError::TokenCountMismatch {
            expected: 6,
            found: 5
        }
    );
    let two = RotaryTables::<B>::from_tables(&[table.clone(), table.clone()], &device()).unwrap();
    assert_eq!(
        two.with_layout(PairLayout::Interleaved)
            .apply(Tensor::zeros([3, 1, 6, 8], &device()))
            .unwrap_err(),
        RotaryError::BatchMismatch {
            input: 3,
            tables: 2
        }
    );
    assert!(
        apply_rotary::<B>(
            Tensor::zeros([1, 1, 6, 8], &device()),
            tables.cos(),
            &Tensor::zeros([1, 6, 3], &device()),
            PairLayout::HalfSplit
        )
        .is_err()
    );
}

#[test]
fn table_errors_are_typed() {
    let dev = device();
    let ok = grid_table(2, 3, 2, 2, 1.0);
    assert!(RotaryTables::<B>::from_table(&ok, &dev).is_ok());
    assert_eq!(
        RotaryTables::<B>::from_tables(&[], &dev)
            .map(|_| ())
            .unwrap_err(),
        RotaryError::EmptyBatch
    );

    // A single table cannot be malformed: dype-core's constructors refuse out-of-range rows,
    // short data, wrong index counts, no axes, no tokens and zero-width axes.
    let axes = ok.axes().to_vec();
    let mut rows = ok.token_rows().to_vec();
    rows[2 * 2 + 1] = 3; // token 2, axis 1 has 3 rows
    assert!(FactorizedTable::new(axes.clone(), 6, rows).is_err());
    let (cos, mut sin) = axes[0].clone().into_parts();
    sin.pop();
    assert!(AxisRows::new(2, 2, cos, sin).is_err());
    let mut rows = ok.token_rows().to_vec();
    rows.push(0);
    assert!(FactorizedTable::new(axes.clone(), 6, rows).is_err());
    assert!(FactorizedTable::new(vec![], 6, vec![]).is_err());
    assert!(FactorizedTable::new(axes.clone(), 0, vec![]).is_err());
    assert!(AxisRows::new(0, 3, vec![], vec![]).is_err());

    let other_tokens = grid_table(2, 2, 2, 2, 1.0);
    assert_eq!(
        RotaryTables::<B>::from_tables(&[ok.clone(), other_tokens], &dev)
            .map(|_| ())
            .unwrap_err(),
        RotaryError::BatchTokenMismatch {
            sample: 1,
            expected: 6,
            found: 4
        }
    );
    let other_axes = grid_table(2, 3, 1, 3, 1.0);
    assert_eq!(
        RotaryTables::<B>::from_tables(&[ok.clone(), other_axes], &dev)
            .map(|_| ())
            .unwrap_err(),
        RotaryError::BatchAxisMismatch {
            sample: 1,
            expected: vec![2, 2],
            found: vec![1, 3]
        }
    );
    // Errors render as messages.
    assert!(RotaryError::EmptyBatch.to_string().contains("empty batch"));
}
