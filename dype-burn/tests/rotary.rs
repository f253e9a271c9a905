//! Rotary embedding: device expansion, rotation layouts, invariants, cache, batches, dtypes.
#![cfg(feature = "cpu")]

mod common;

use burn::tensor::{DType, Tensor, TensorData, bf16, f16};
use common::*;
use dype_burn::backend::Cpu;
use dype_burn::rotary::{
    AxisRows, CacheStatus, FactorizedTable, RotaryEmbedding, RotaryError, RotaryLayout,
    RotaryTables, apply_rotary,
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
    layout: RotaryLayout,
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
                        RotaryLayout::Interleaved => (2 * i, 2 * i + 1),
                        RotaryLayout::HalfSplit => (i, i + half),
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

fn check_layout_against_reference(layout: RotaryLayout) {
    let table = grid_table(3, 5, 2, 6, 1.25);
    let dims = [2, 3, 15, 16];
    let mut rng = Rng::new(11);
    let x = rng.vec(dims.iter().product());
    let (cos, sin) = host_expand(&table);
    let expected = reference_rotate(&x, dims, &[cos], &[sin], layout);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let got = to_vec(
        tables
            .apply(tensor4::<B>(&x, dims, &device()), layout)
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
    check_layout_against_reference(RotaryLayout::Interleaved);
}

#[test]
fn half_split_matches_scalar_reference() {
    check_layout_against_reference(RotaryLayout::HalfSplit);
}

#[test]
fn layouts_differ() {
    let table = grid_table(2, 2, 2, 2, 1.0);
    let mut rng = Rng::new(3);
    let x = rng.vec(4 * 8);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let a = to_vec(
        tables
            .apply(
                tensor4::<B>(&x, [1, 1, 4, 8], &device()),
                RotaryLayout::Interleaved,
            )
            .unwrap(),
    );
    let b = to_vec(
        tables
            .apply(
                tensor4::<B>(&x, [1, 1, 4, 8], &device()),
                RotaryLayout::HalfSplit,
            )
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
        .apply(
            tensor4::<B>(&x, [1, 2, n, d], &device()),
            RotaryLayout::Interleaved,
        )
        .unwrap();
    let burn_rope = RotaryEncodingConfig::new(n, d).init::<B>(&device());
    let theirs = burn_rope.forward(tensor4::<B>(&x, [1, 2, n, d], &device()));
    let diff = max_abs_diff(&to_vec(ours), &to_vec(theirs));
    assert!(diff < 1e-5, "diff {diff}");
}

#[test]
fn rotation_scales_pair_norms_by_attention_factor() {
    for layout in [RotaryLayout::Interleaved, RotaryLayout::HalfSplit] {
        let factor = 1.7f32;
        let table = grid_table(4, 3, 4, 4, factor);
        let dims = [1, 2, 12, 16];
        let mut rng = Rng::new(21);
        let x = rng.vec(dims.iter().product());
        let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
        let y = to_vec(
            tables
                .apply(tensor4::<B>(&x, dims, &device()), layout)
                .unwrap(),
        );
        let half = 8;
        for row in 0..(2 * 12) {
            for i in 0..half {
                let (ia, ib) = match layout {
                    RotaryLayout::Interleaved => (2 * i, 2 * i + 1),
                    RotaryLayout::HalfSplit => (i, i + half),
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
    for layout in [RotaryLayout::Interleaved, RotaryLayout::HalfSplit] {
        // The same q (resp. k) vector at every position.
        let q: Vec<f32> = (0..n).flat_map(|_| qv.clone()).collect();
        let k: Vec<f32> = (0..n).flat_map(|_| kv.clone()).collect();
        let qr = to_vec(
            tables
                .apply(tensor4::<B>(&q, [1, 1, n, d], &device()), layout)
                .unwrap(),
        );
        let kr = to_vec(
            tables
                .apply(tensor4::<B>(&k, [1, 1, n, d], &device()), layout)
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
    for layout in [RotaryLayout::Interleaved, RotaryLayout::HalfSplit] {
        let got = to_vec(
            tables
                .apply(tensor4::<B>(&x, dims, &device()), layout)
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
    let expected = reference_rotate(&x, dims, &[c], &[s], RotaryLayout::Interleaved);
    let got = RotaryTables::<B>::from_table(&table, &device())
        .unwrap()
        .apply(tensor4::<B>(&x, dims, &device()), RotaryLayout::Interleaved)
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
        .apply(
            tensor4::<B>(&x, [1, 2, 9, 8], &device()),
            RotaryLayout::HalfSplit,
        )
        .unwrap();
    let b = RotaryTables::<B>::from_table(&table, &device())
        .unwrap()
        .apply(
            tensor4::<B>(&x, [1, 2, 9, 8], &device()),
            RotaryLayout::HalfSplit,
        )
        .unwrap();
    assert_eq!(to_vec(a), to_vec(b));
    let bad = RotaryTables::<B>::from_cos_sin(
        Tensor::zeros([1, 9, 4], &device()),
        Tensor::zeros([1, 9, 3], &device()),
    );
    assert!(matches!(bad, Err(RotaryError::CosSinShapeMismatch { .. })));
}

#[test]
fn cache_hits_on_identical_table_and_uploads_on_change() {
    let mut rope = RotaryEmbedding::<B>::new(&device(), RotaryLayout::Interleaved);
    assert_eq!(rope.last_update(), None);
    assert!(matches!(
        rope.apply(Tensor::zeros([1, 1, 6, 8], &device())),
        Err(RotaryError::NotInitialized)
    ));
    let table = grid_table(2, 3, 2, 2, 1.0);
    assert_eq!(rope.update(&table).unwrap(), CacheStatus::Uploaded);
    assert_eq!(rope.upload_count(), 1);
    assert!(!rope.last_update_was_hit());
    // Identical content (a fresh clone) is a hit: nothing uploaded.
    assert_eq!(rope.update(&table.clone()).unwrap(), CacheStatus::Hit);
    assert!(rope.last_update_was_hit());
    assert_eq!(rope.upload_count(), 1);
    // One changed value (as a new timestep would give) → re-upload, and the new values are used.
    let mut axes = table.axes().to_vec();
    let (mut cos, sin) = axes[1].clone().into_parts();
    cos[3] += 0.5;
    axes[1] = AxisRows::new(axes[1].half_dim(), axes[1].rows(), cos, sin).expect("rows");
    let mut changed = table.clone();
    changed.set_rows(axes).expect("same shape");
    assert_eq!(rope.update(&changed).unwrap(), CacheStatus::Uploaded);
    assert_eq!(rope.upload_count(), 2);
    assert_eq!(rope.host_tables(), std::slice::from_ref(&changed));
    assert_eq!(
        to_vec(rope.tables().unwrap().cos().clone()),
        host_expand(&changed).0
    );
    assert_eq!(rope.update(&changed).unwrap(), CacheStatus::Hit);
    // Same table as a batch of one is the same key; a batch of two is not.
    assert_eq!(
        rope.update_batch(std::slice::from_ref(&changed)).unwrap(),
        CacheStatus::Hit
    );
    assert_eq!(
        rope.update_batch(&[changed.clone(), changed.clone()])
            .unwrap(),
        CacheStatus::Uploaded
    );
    assert_eq!(rope.upload_count(), 3);
    // A failing update keeps the previous tables.
    let broken = grid_table(2, 2, 2, 2, 1.0);
    assert!(rope.update_batch(&[changed.clone(), broken]).is_err());
    assert_eq!(rope.upload_count(), 3);
    assert_eq!(rope.tables().unwrap().batch(), 2);
    rope.clear();
    assert!(rope.tables().is_none());
    assert_eq!(rope.update(&changed).unwrap(), CacheStatus::Uploaded);
}

#[test]
fn embedding_apply_qk_equals_tables_apply() {
    let table = grid_table(2, 2, 1, 1, 1.0);
    let mut rope = RotaryEmbedding::<B>::new(&device(), RotaryLayout::HalfSplit);
    rope.update(&table).unwrap();
    let mut rng = Rng::new(4);
    let q = rng.vec(16);
    let k = rng.vec(16);
    let (qr, kr) = rope
        .apply_qk(
            tensor4::<B>(&q, [1, 1, 4, 4], &device()),
            tensor4::<B>(&k, [1, 1, 4, 4], &device()),
        )
        .unwrap();
    let (c, s) = host_expand(&table);
    let dims = [1, 1, 4, 4];
    assert!(
        max_abs_diff(
            &to_vec(qr),
            &reference_rotate(
                &q,
                dims,
                std::slice::from_ref(&c),
                std::slice::from_ref(&s),
                RotaryLayout::HalfSplit
            )
        ) <= 1e-6
    );
    assert!(
        max_abs_diff(
            &to_vec(kr),
            &reference_rotate(&k, dims, &[c], &[s], RotaryLayout::HalfSplit)
        ) <= 1e-6
    );
}

#[test]
fn half_precision_rotation_equals_f32_rotation_cast() {
    let table = grid_table(3, 4, 2, 6, 1.2);
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let dims = [2, 2, 12, 16];
    let mut rng = Rng::new(31);
    let x = tensor4::<B>(&rng.vec(dims.iter().product()), dims, &device());
    for layout in [RotaryLayout::Interleaved, RotaryLayout::HalfSplit] {
        for dtype in [DType::BF16, DType::F16] {
            let xh = x.clone().cast(dtype);
            let got = tables.apply(xh.clone(), layout).unwrap();
            assert_eq!(got.dtype(), dtype);
            let expected = tables
                .apply(xh.cast(DType::F32), layout)
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
        .apply(x.clone().cast(DType::F64), RotaryLayout::Interleaved)
        .unwrap();
    assert_eq!(got.dtype(), DType::F64);
    let expected = tables.apply(x, RotaryLayout::Interleaved).unwrap();
    assert!(max_abs_diff(&to_vec(got), &to_vec(expected)) <= 1e-6);
}

#[test]
fn shape_errors_are_typed() {
    let table = grid_table(2, 3, 2, 2, 1.0); // head_dim 8, 6 tokens
    let tables = RotaryTables::<B>::from_table(&table, &device()).unwrap();
    let apply =
        |dims: [usize; 4]| tables.apply(Tensor::zeros(dims, &device()), RotaryLayout::Interleaved);
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
        two.apply(
            Tensor::zeros([3, 1, 6, 8], &device()),
            RotaryLayout::Interleaved
        )
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
            RotaryLayout::HalfSplit
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
    assert!(RotaryError::NotInitialized.to_string().contains("update"));
}
