//! Attention paths against a naive f64 softmax(QKᵀ·scale)V reference.
#![cfg(feature = "cpu")]

mod common;

use burn::tensor::{Bool, DType, Tensor, TensorData};
use common::*;
use dype_burn::attention::{
    AttentionError, AttentionOptions, AttentionPath, Masks, ResolvedPath, attention,
    default_query_chunk, resolve_path,
};
use dype_burn::backend::Cpu;

type B = Cpu;

fn device() -> burn::backend::flex::FlexDevice {
    Default::default()
}

struct Case {
    batch: usize,
    heads: usize,
    nq: usize,
    nk: usize,
    dh: usize,
    dv: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl Case {
    fn new(
        seed: u64,
        batch: usize,
        heads: usize,
        nq: usize,
        nk: usize,
        dh: usize,
        dv: usize,
    ) -> Self {
        let mut rng = Rng::new(seed);
        // Scale q so that softmax is not nearly uniform.
        let q = rng
            .vec(batch * heads * nq * dh)
            .into_iter()
            .map(|x| 2.5 * x)
            .collect();
        let k = rng.vec(batch * heads * nk * dh);
        let v = rng.vec(batch * heads * nk * dv);
        Self {
            batch,
            heads,
            nq,
            nk,
            dh,
            dv,
            q,
            k,
            v,
        }
    }

    fn tensors(&self) -> (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>) {
        let d = device();
        (
            tensor4::<B>(&self.q, [self.batch, self.heads, self.nq, self.dh], &d),
            tensor4::<B>(&self.k, [self.batch, self.heads, self.nk, self.dh], &d),
            tensor4::<B>(&self.v, [self.batch, self.heads, self.nk, self.dv], &d),
        )
    }

    /// Naive reference in f64, output `[batch, nq, heads * dv]`; samples with no kept key → 0.
    fn reference(&self, keep: Option<&[bool]>, scale: f64) -> Vec<f32> {
        let (b, h, nq, nk, dh, dv) = (self.batch, self.heads, self.nq, self.nk, self.dh, self.dv);
        let mut out = vec![0.0f32; b * nq * h * dv];
        for bi in 0..b {
            let kept: Vec<usize> = (0..nk)
                .filter(|&j| keep.is_none_or(|m| m[bi * nk + j]))
                .collect();
            if kept.is_empty() {
                continue;
            }
            for hi in 0..h {
                for i in 0..nq {
                    let qrow = &self.q[((bi * h + hi) * nq + i) * dh..][..dh];
                    let scores: Vec<f64> = kept
                        .iter()
                        .map(|&j| {
                            let krow = &self.k[((bi * h + hi) * nk + j) * dh..][..dh];
                            qrow.iter()
                                .zip(krow)
                                .map(|(a, b)| *a as f64 * *b as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..dv {
                        let acc: f64 = kept
                            .iter()
                            .zip(&e)
                            .map(|(&j, w)| w * self.v[((bi * h + hi) * nk + j) * dv + c] as f64)
                            .sum();
                        out[(bi * nq + i) * h * dv + hi * dv + c] = (acc / z) as f32;
                    }
                }
            }
        }
        out
    }

    fn run(&self, keep: Option<&[bool]>, options: AttentionOptions) -> Vec<f32> {
        let (q, k, v) = self.tensors();
        let mask = keep.map(|m| {
            Tensor::<B, 2, Bool>::from_data(
                TensorData::new(m.to_vec(), [self.batch, self.nk]),
                &device(),
            )
        });
        let out = attention(q, k, v, Masks::key_padding(mask), options).unwrap();
        assert_eq!(out.dims(), [self.batch, self.nq, self.heads * self.dv]);
        to_vec(out)
    }
}

fn paths(n: usize) -> Vec<AttentionPath> {
    vec![
        AttentionPath::Auto,
        AttentionPath::Fused,
        AttentionPath::Chunked { query_chunk: 1 },
        AttentionPath::Chunked { query_chunk: 5 }, // does not divide N
        AttentionPath::Chunked { query_chunk: n },
        AttentionPath::Chunked { query_chunk: n + 7 }, // larger than N
    ]
}

fn check(case: &Case, keep: Option<&[bool]>, scale: Option<f64>) {
    let s = scale.unwrap_or(1.0 / (case.dh as f64).sqrt());
    let expected = case.reference(keep, s);
    for path in paths(case.nq) {
        let got = case.run(
            keep,
            AttentionOptions {
                scale,
                path,
                ..Default::default()
            },
        );
        assert!(
            got.iter().all(|x| x.is_finite()),
            "{path:?}: non-finite output"
        );
        let err = rel_err(&got, &expected);
        assert!(
            err <= 1e-5,
            "{path:?} mask={} scale={scale:?}: rel err {err}",
            keep.is_some()
        );
    }
}

#[test]
fn unmasked_matches_reference_all_paths() {
    let case = Case::new(1, 2, 3, 37, 37, 16, 16);
    check(&case, None, None);
}

#[test]
fn custom_scale_matches_reference_all_paths() {
    let case = Case::new(2, 1, 2, 23, 23, 8, 8);
    check(&case, None, Some(0.61));
    check(&case, None, Some(0.05));
}

#[test]
fn masked_matches_reference_all_paths() {
    let case = Case::new(3, 2, 2, 37, 37, 8, 8);
    // Sample 0: FiT-style padding at the end; sample 1: arbitrary keep pattern.
    let mut rng = Rng::new(30);
    let keep: Vec<bool> = (0..37)
        .map(|j| j < 29)
        .chain((0..37).map(|_| rng.below(3) != 0))
        .collect();
    check(&case, Some(&keep), None);
    check(&case, Some(&keep), Some(0.9));
}

#[test]
fn fully_padded_sample_gives_zeros_not_nan() {
    let case = Case::new(4, 2, 2, 11, 11, 8, 8);
    let keep: Vec<bool> = (0..11)
        .map(|j| j % 2 == 0)
        .chain((0..11).map(|_| false))
        .collect();
    // check() asserts finiteness and compares with the reference, which is 0 for sample 1.
    check(&case, Some(&keep), None);
    let got = case.run(Some(&keep), AttentionOptions::default());
    assert!(got[11 * 16..].iter().all(|&x| x == 0.0));
}

#[test]
fn cross_attention_different_lengths_and_value_dim() {
    let case = Case::new(5, 2, 2, 13, 29, 8, 12);
    check(&case, None, None);
    let keep: Vec<bool> = (0..58).map(|j| j % 7 != 3).collect();
    check(&case, Some(&keep), None);
}

#[test]
fn long_sequence_uses_flex_tiled_path_and_matches() {
    // 600 × 600 > 256K score elements: Flex switches to its KV-tiled (flash) implementation.
    let case = Case::new(6, 1, 2, 600, 600, 16, 16);
    let expected = case.reference(None, 0.25);
    for path in [
        AttentionPath::Fused,
        AttentionPath::Chunked { query_chunk: 128 },
    ] {
        let got = case.run(
            None,
            AttentionOptions {
                scale: None,
                path,
                ..Default::default()
            },
        );
        let err = rel_err(&got, &expected);
        assert!(err <= 1e-5, "{path:?}: rel err {err}");
    }
    let keep: Vec<bool> = (0..600).map(|j| j < 450).collect();
    let expected = case.reference(Some(&keep), 0.25);
    let got = case.run(Some(&keep), AttentionOptions::default());
    assert!(rel_err(&got, &expected) <= 1e-5);
}

#[test]
fn half_precision_inputs_keep_dtype_and_stay_close() {
    let case = Case::new(7, 1, 2, 19, 19, 8, 8);
    let expected = case.reference(None, 1.0 / 8f64.sqrt());
    for dtype in [DType::BF16, DType::F16] {
        for path in [
            AttentionPath::Fused,
            AttentionPath::Chunked { query_chunk: 4 },
        ] {
            let (q, k, v) = case.tensors();
            let out = attention(
                q.cast(dtype),
                k.cast(dtype),
                v.cast(dtype),
                Masks::default(),
                AttentionOptions {
                    scale: None,
                    path,
                    ..Default::default()
                },
            )
            .unwrap();
            assert_eq!(out.dtype(), dtype);
            let err = rel_err(&to_vec(out), &expected);
            let tol = if dtype == DType::BF16 { 3e-2 } else { 4e-3 };
            assert!(err <= tol, "{dtype:?} {path:?}: rel err {err}");
        }
    }
}

#[test]
fn auto_path_resolution_on_cpu() {
    let d = device();
    assert_eq!(
        resolve_path::<B>(AttentionPath::Auto, &d, false, [1, 2, 64, 64]),
        ResolvedPath::Fused
    );
    assert_eq!(
        resolve_path::<B>(AttentionPath::Auto, &d, true, [1, 2, 64, 64]),
        ResolvedPath::Chunked { query_chunk: 64 }
    );
    assert_eq!(
        resolve_path::<B>(
            AttentionPath::Chunked { query_chunk: 3 },
            &d,
            false,
            [1, 2, 64, 64]
        ),
        ResolvedPath::Chunked { query_chunk: 3 }
    );
    // FLUX at 4096²: 24 heads × 65 536 tokens → 21 query rows per 2^25-element block.
    assert_eq!(default_query_chunk(1, 24, 65_536, 65_536), 21);
    assert_eq!(default_query_chunk(1, 1, 10, 10), 10);
    assert_eq!(default_query_chunk(1000, 1000, 5, 1_000_000), 1);
}

#[test]
fn errors_are_typed() {
    let d = device();
    let z = |dims: [usize; 4]| Tensor::<B, 4>::zeros(dims, &d);
    let opts = AttentionOptions::default();
    assert!(matches!(
        attention(
            z([1, 2, 4, 8]),
            z([1, 2, 5, 4]),
            z([1, 2, 5, 8]),
            Masks::default(),
            opts
        ),
        Err(AttentionError::ShapeMismatch { what: "k", .. })
    ));
    assert!(matches!(
        attention(
            z([1, 2, 4, 8]),
            z([1, 2, 5, 8]),
            z([1, 2, 6, 8]),
            Masks::default(),
            opts
        ),
        Err(AttentionError::ShapeMismatch { what: "v", .. })
    ));
    assert!(matches!(
        attention(
            z([2, 2, 4, 8]),
            z([1, 2, 4, 8]),
            z([1, 2, 4, 8]),
            Masks::default(),
            opts
        ),
        Err(AttentionError::ShapeMismatch { what: "k", .. })
    ));
    let mask = Tensor::<B, 2, Bool>::from_data(TensorData::new(vec![true; 4], [1, 4]), &d);
    assert!(matches!(
        attention(
            z([1, 2, 4, 8]),
            z([1, 2, 5, 8]),
            z([1, 2, 5, 8]),
            Masks::key_padding(Some(mask)),
            opts
        ),
        Err(AttentionError::ShapeMismatch {
            what: "key_padding_mask",
            ..
        })
    ));
    assert!(matches!(
        attention(
            z([1, 2, 0, 8]),
            z([1, 2, 5, 8]),
            z([1, 2, 5, 8]),
            Masks::default(),
            opts
        ),
        Err(AttentionError::Empty { .. })
    ));
    for bad in [0.0, -1.0, f64::NAN, f64::INFINITY] {
        assert!(matches!(
            attention(
                z([1, 1, 2, 4]),
                z([1, 1, 2, 4]),
                z([1, 1, 2, 4]),
                Masks::default(),
                opts.with_scale(bad)
            ),
            Err(AttentionError::InvalidScale(_))
        ));
    }
    assert_eq!(
        attention(
            z([1, 1, 2, 4]),
            z([1, 1, 2, 4]),
            z([1, 1, 2, 4]),
            Masks::default(),
            opts.with_path(AttentionPath::Chunked { query_chunk: 0 })
        )
        .map(|_| ())
        .unwrap_err(),
        AttentionError::ZeroChunk
    );
}

/// f64 reference of `softmax(q kᵀ · scale + bias [+ causal]) v`, output `[B, Nq, H·dv]`;
/// `bias` is `[H, Nq, Nk]` (broadcast over the batch).
fn biased_reference(case: &Case, bias: &[f32], causal: bool, scale: f64) -> Vec<f32> {
    let (b, h, nq, nk, dh, dv) = (case.batch, case.heads, case.nq, case.nk, case.dh, case.dv);
    let mut out = vec![0.0f32; b * nq * h * dv];
    for bi in 0..b {
        for hi in 0..h {
            for i in 0..nq {
                let keys: Vec<usize> = (0..nk).filter(|&j| !causal || j <= i).collect();
                let qrow = &case.q[((bi * h + hi) * nq + i) * dh..][..dh];
                let scores: Vec<f64> = keys
                    .iter()
                    .map(|&j| {
                        let krow = &case.k[((bi * h + hi) * nk + j) * dh..][..dh];
                        let dot: f64 = qrow
                            .iter()
                            .zip(krow)
                            .map(|(a, b)| *a as f64 * *b as f64)
                            .sum();
                        dot * scale + bias[(hi * nq + i) * nk + j] as f64
                    })
                    .collect();
                let m = scores.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                let e: Vec<f64> = scores.iter().map(|s| (s - m).exp()).collect();
                let z: f64 = e.iter().sum();
                for c in 0..dv {
                    let acc: f64 = keys
                        .iter()
                        .zip(&e)
                        .map(|(&j, w)| w * case.v[((bi * h + hi) * nk + j) * dv + c] as f64)
                        .sum();
                    out[(bi * nq + i) * h * dv + hi * dv + c] = (acc / z) as f32;
                }
            }
        }
    }
    out
}

#[test]
fn score_bias_and_causal_masks_match_the_reference_on_every_chunking() {
    use dype_burn::attention::Precision;
    let case = Case::new(11, 2, 3, 9, 9, 8, 5);
    let bias: Vec<f32> = Rng::new(5).vec(3 * 9 * 9);
    let scale = 1.0 / 8f64.sqrt();
    for causal in [false, true] {
        let want = biased_reference(&case, &bias, causal, scale);
        for precision in [Precision::UpcastInputs, Precision::UpcastScores] {
            for path in [
                AttentionPath::Auto,
                AttentionPath::Fused,
                AttentionPath::Chunked { query_chunk: 1 },
                AttentionPath::Chunked { query_chunk: 4 },
                AttentionPath::Chunked { query_chunk: 9 },
            ] {
                let (q, k, v) = case.tensors();
                let mut masks =
                    Masks::default().with_bias(tensor4::<B>(&bias, [1, 3, 9, 9], &device()));
                if causal {
                    masks = masks.with_causal();
                }
                let options = AttentionOptions::default()
                    .with_precision(precision)
                    .with_path(path);
                let got = to_vec(attention(q, k, v, masks, options).unwrap());
                let err = got
                    .iter()
                    .zip(&want)
                    .map(|(a, b)| (a - b).abs())
                    .fold(0.0f32, f32::max);
                assert!(
                    err < 2e-5,
                    "causal {causal}, {precision:?}, {path:?}: max error {err}"
                );
            }
        }
    }
}

#[test]
fn bias_and_causal_shapes_are_checked() {
    let z = |dims: [usize; 4]| Tensor::<B, 4>::zeros(dims, &device());
    let opts = AttentionOptions::default();
    assert_eq!(
        attention(
            z([1, 2, 3, 4]),
            z([1, 2, 5, 4]),
            z([1, 2, 5, 4]),
            Masks::default().with_causal(),
            opts
        )
        .map(|_| ())
        .unwrap_err(),
        AttentionError::CausalShape {
            q_tokens: 3,
            kv_tokens: 5
        }
    );
    for bad in [[1, 2, 3, 4], [2, 1, 3, 5], [1, 3, 3, 5], [1, 1, 2, 5]] {
        assert!(matches!(
            attention(
                z([1, 2, 3, 4]),
                z([1, 2, 5, 4]),
                z([1, 2, 5, 4]),
                Masks::default().with_bias(z(bad)),
                opts
            ),
            Err(AttentionError::ShapeMismatch { what: "bias", .. })
        ));
    }
    // Broadcast biases of every allowed shape are accepted.
    for good in [[1, 1, 1, 5], [1, 2, 3, 5], [1, 1, 3, 5]] {
        assert!(
            attention(
                z([1, 2, 3, 4]),
                z([1, 2, 5, 4]),
                z([1, 2, 5, 4]),
                Masks::default().with_bias(z(good)),
                opts
            )
            .is_ok()
        );
    }
}

#[test]
fn causal_with_left_padding_zeroes_queries_before_the_first_kept_key() {
    let case = Case::new(21, 2, 2, 6, 6, 4, 3);
    // Sample 0 keeps every key; sample 1 is left-padded by two keys.
    let keep: Vec<bool> = (0..12).map(|i| !(6..8).contains(&i)).collect();
    let scale = 0.5;
    for path in [
        AttentionPath::Chunked { query_chunk: 1 },
        AttentionPath::Chunked { query_chunk: 4 },
    ] {
        let (q, k, v) = case.tensors();
        let mask =
            Tensor::<B, 2, Bool>::from_data(TensorData::new(keep.clone(), [2, 6]), &device());
        let masks = Masks::key_padding(Some(mask)).with_causal();
        let options = AttentionOptions::default()
            .with_scale(scale)
            .with_path(path);
        let got = to_vec(attention(q, k, v, masks, options).unwrap());
        let (h, n, dh, dv) = (2, 6, 4, 3);
        for b in 0..2 {
            for hi in 0..h {
                for i in 0..n {
                    let keys: Vec<usize> = (0..=i).filter(|&j| keep[b * n + j]).collect();
                    let at = |c: usize| got[(b * n + i) * h * dv + hi * dv + c];
                    if keys.is_empty() {
                        assert!(
                            (0..dv).all(|c| at(c) == 0.0),
                            "b {b} h {hi} q {i}: not zero"
                        );
                        continue;
                    }
                    let qrow = &case.q[((b * h + hi) * n + i) * dh..][..dh];
                    let s: Vec<f64> = keys
                        .iter()
                        .map(|&j| {
                            let krow = &case.k[((b * h + hi) * n + j) * dh..][..dh];
                            qrow.iter()
                                .zip(krow)
                                .map(|(x, y)| *x as f64 * *y as f64)
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let m = s.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
                    let e: Vec<f64> = s.iter().map(|x| (x - m).exp()).collect();
                    let z: f64 = e.iter().sum();
                    for c in 0..dv {
                        let want: f64 = keys
                            .iter()
                            .zip(&e)
                            .map(|(&j, w)| w * case.v[((b * h + hi) * n + j) * dv + c] as f64)
                            .sum::<f64>()
                            / z;
                        assert!(
                            (at(c) as f64 - want).abs() < 2e-5,
                            "b {b} h {hi} q {i} c {c}: {} vs {want}",
                            at(c)
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn causal_scores_follow_f64_inputs() {
    use dype_burn::attention::Precision;
    let case = Case::new(3, 1, 2, 5, 5, 4, 4);
    let bias = vec![0.0f32; 2 * 5 * 5];
    let want = biased_reference(&case, &bias, true, 0.5);
    for precision in [Precision::UpcastInputs, Precision::UpcastScores] {
        let (q, k, v) = case.tensors();
        let (q, k, v) = (q.cast(DType::F64), k.cast(DType::F64), v.cast(DType::F64));
        let options = AttentionOptions::default()
            .with_scale(0.5)
            .with_precision(precision);
        let out = attention(q, k, v, Masks::default().with_causal(), options).unwrap();
        assert_eq!(out.dtype(), DType::F64);
        let got = to_vec(out.cast(DType::F32));
        let err = got
            .iter()
            .zip(&want)
            .map(|(a, b)| (a - b).abs())
            .fold(0.0f32, f32::max);
        assert!(err < 1e-5, "{precision:?}: max error {err}");
    }
}
