//! The elementwise chains of the DiT blocks, with a fused multi-threaded path on burn's Flex CPU
//! backend.
//!
//! Each function here is one formula written twice: once with plain burn tensor ops (every
//! backend; autodiff records it; the CubeCL backends fuse it themselves), and once as a single
//! pass over contiguous `f32` memory for [`crate::backend::Cpu`] (burn Flex), split across rayon's
//! threads. The fused pass computes every element with the same operations in the same order as
//! the tensor ops, so the two agree **bit for bit** (the tests compare them with `==`).
//!
//! Why: Flex runs a broadcast `[B, N, D] × [B, 1, D]` (B > 1) or a rotary table broadcast over
//! heads through a per-element strided iterator, ≈ 10× slower than its contiguous SIMD kernels and
//! on one thread — a quarter to a third of a FiTv2 evaluation's time before these kernels
//! (docs/performance.md, "CPU speed"). The fused path is taken when the backend's float primitive
//! *is* Flex's (a type check, no `unsafe`), the tensors are `f32` and the shapes are the ones the
//! formula documents; anything else (f64, bf16, autodiff, GPUs) takes the tensor-op path.
//!
//! On a backend without fusion that is not CubeCL (autodiff over Flex, ndarray), the tensor-op
//! path materialises a `[B, D]` vector broadcast over tokens with `repeat_dim` when `B > 1`, so
//! the multiply itself (and its backward pass) runs on contiguous same-shape tensors.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Whether the tensor-op path should materialise token broadcasts (see the module docs): every
/// backend but CubeCL's (which fuse broadcasts into their kernels).
fn materialise_broadcasts<B: Backend>(device: &B::Device) -> bool {
    let name = B::name(device);
    !(name.starts_with("cubecl") || name.starts_with("fusion<cubecl"))
}

/// `[B, D]` → `[B, N, D]` view or copy of a per-sample vector, as the backend prefers.
fn over_tokens<B: Backend>(v: Tensor<B, 2>, tokens: usize) -> Tensor<B, 3> {
    let v = v.unsqueeze_dim::<3>(1);
    let b = v.dims()[0];
    if b > 1 && tokens > 1 && materialise_broadcasts::<B>(&v.device()) {
        v.repeat_dim(1, tokens)
    } else {
        v
    }
}

/// adaLN modulation `x · (1 + scale) + shift`: `x` `[B, N, D]`, `shift` and `scale` `[B, D]`
/// broadcast over the tokens (DiT's `modulate`).
///
/// Fused on Flex for `f32`.
pub fn modulate<B: Backend>(
    x: Tensor<B, 3>,
    shift: Tensor<B, 2>,
    scale: Tensor<B, 2>,
) -> Tensor<B, 3> {
    #[cfg(feature = "cpu")]
    let (x, shift, scale) = match flex::modulate(x, shift, scale) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    let n = x.dims()[1];
    x * over_tokens(scale.add_scalar(1.0), n) + over_tokens(shift, n)
}

/// Gated residual `x + y · gate`: `x`, `y` `[B, N, D]`, `gate` `[B, D]` broadcast over the tokens
/// (the adaLN-Zero residual of DiT, FiT and FLUX blocks).
///
/// Fused on Flex for `f32`.
pub fn gated_residual<B: Backend>(
    x: Tensor<B, 3>,
    y: Tensor<B, 3>,
    gate: Tensor<B, 2>,
) -> Tensor<B, 3> {
    #[cfg(feature = "cpu")]
    let (x, y, gate) = match flex::gated_residual(x, y, gate) {
        Ok(out) => return out,
        Err(inputs) => inputs,
    };
    let n = y.dims()[1];
    x + y * over_tokens(gate, n)
}

/// The Flex path: downcasts, shape checks and the fused loops.
#[cfg(feature = "cpu")]
pub(crate) mod flex {
    use core::any::Any;

    use burn::backend::flex::FlexTensor;
    use burn::tensor::backend::Backend;
    use burn::tensor::{DType, Tensor, TensorData, TensorPrimitive};
    use dype_core::PairLayout;
    use rayon::prelude::*;

    /// `seq_q · seq_kv` up to which burn Flex's attention runs its direct kernel
    /// (`NAIVE_SCORE_BUDGET` in `burn-flex-0.21.0/src/ops/attention.rs`).
    const FLEX_NAIVE_SCORES: usize = 256 * 1024;

    /// Elements per parallel work item: below this a job is not worth a thread hand-off.
    const MIN_CHUNK: usize = 16 * 1024;

    /// Moves `value` into `U` when it is one (`T == U`), or hands it back.
    fn cast<T: 'static, U: 'static>(value: T) -> Result<U, T> {
        let boxed: Box<dyn Any> = Box::new(value);
        match boxed.downcast::<U>() {
            Ok(u) => Ok(*u),
            // `boxed` holds a `T`: the second downcast cannot fail, and if it could, `value`
            // would be lost; `T: 'static` makes the round trip exact.
            Err(boxed) => match boxed.downcast::<T>() {
                Ok(t) => Err(*t),
                Err(_) => unreachable!("a Box<dyn Any> built from T downcasts to T"),
            },
        }
    }

    /// Whether `B`'s float tensors are Flex tensors (the check every fused path starts with).
    pub(crate) fn is_flex<B: Backend>() -> bool {
        core::any::TypeId::of::<B::FloatTensorPrimitive>() == core::any::TypeId::of::<FlexTensor>()
    }

    /// The Flex tensor behind `t` (contiguous, f32), or `t` back.
    fn take<B: Backend, const D: usize>(t: Tensor<B, D>) -> Result<FlexTensor, Tensor<B, D>> {
        if !is_flex::<B>() || t.dtype() != DType::F32 {
            return Err(t);
        }
        match t.into_primitive() {
            TensorPrimitive::Float(p) => cast::<_, FlexTensor>(p)
                .map(|f| f.to_contiguous())
                .map_err(|p| Tensor::from_primitive(TensorPrimitive::Float(p))),
            q => Err(Tensor::from_primitive(q)),
        }
    }

    /// A Flex tensor back as `Tensor<B, D>` (`B` is Flex: checked by [`take`] before).
    fn give<B: Backend, const D: usize>(f: FlexTensor) -> Tensor<B, D> {
        match cast::<FlexTensor, B::FloatTensorPrimitive>(f) {
            Ok(p) => Tensor::from_primitive(TensorPrimitive::Float(p)),
            Err(_) => unreachable!("give is only called after take succeeded for B"),
        }
    }

    /// Key tokens of a `[B, H, N, D]` tensor.
    fn k_tokens(f: &FlexTensor) -> usize {
        f.layout().shape()[2]
    }

    /// The contiguous f32 elements of a tensor [`take`] returned.
    fn data(f: &FlexTensor) -> &[f32] {
        // `take` made it contiguous and checked the dtype.
        f.as_slice::<f32>().unwrap_or(&[])
    }

    fn output(values: Vec<f32>, shape: [usize; 3]) -> FlexTensor {
        FlexTensor::from_data(TensorData::new(values, shape))
    }

    /// A new `[B, N, D]` tensor whose row of each token is written by `f(token, sample, row)`
    /// (`token` counts over the whole batch), rows split across rayon's threads.
    fn per_token<B: Backend>(
        [b, n, d]: [usize; 3],
        f: impl Fn(usize, usize, &mut [f32]) + Sync,
    ) -> Tensor<B, 3> {
        let mut out = vec![0f32; b * n * d];
        let rows = rows_per_chunk(d);
        out.par_chunks_mut(rows * d)
            .enumerate()
            .for_each(|(chunk, dst)| {
                for (r, row) in dst.chunks_mut(d).enumerate() {
                    let token = chunk * rows + r;
                    f(token, token / n, row);
                }
            });
        give(output(out, [b, n, d]))
    }

    /// Rows of `row_len` elements per parallel chunk.
    fn rows_per_chunk(row_len: usize) -> usize {
        MIN_CHUNK.div_ceil(row_len.max(1)).max(1)
    }

    type Three<B> = (Tensor<B, 3>, Tensor<B, 2>, Tensor<B, 2>);
    type ThreeY<B> = (Tensor<B, 3>, Tensor<B, 3>, Tensor<B, 2>);
    type Qkv<B> = (Tensor<B, 4>, Tensor<B, 4>, Tensor<B, 4>);
    type Flex3 = (FlexTensor, FlexTensor, FlexTensor);

    /// Takes a `[B, N, D]` tensor and two `[B, D]` vectors, or gives all three back.
    fn take_row_vectors<B: Backend>(
        x: Tensor<B, 3>,
        u: Tensor<B, 2>,
        v: Tensor<B, 2>,
        expected_u: [usize; 2],
    ) -> Result<Flex3, Three<B>> {
        if !is_flex::<B>() || u.dims() != expected_u {
            return Err((x, u, v));
        }
        let x = match take(x) {
            Ok(x) => x,
            Err(x) => return Err((x, u, v)),
        };
        let u = match take(u) {
            Ok(u) => u,
            Err(u) => return Err((give(x), u, v)),
        };
        match take(v) {
            Ok(v) => Ok((x, u, v)),
            Err(v) => Err((give(x), give(u), v)),
        }
    }

    /// `x · (scale + 1) + shift`, element by element in that order (as the tensor ops).
    pub(super) fn modulate<B: Backend>(
        x: Tensor<B, 3>,
        shift: Tensor<B, 2>,
        scale: Tensor<B, 2>,
    ) -> Result<Tensor<B, 3>, Three<B>> {
        let [b, n, d] = x.dims();
        if scale.dims() != [b, d] {
            return Err((x, shift, scale));
        }
        let (xf, shift_f, scale_f) = take_row_vectors(x, shift, scale, [b, d])?;
        let (xs, sh, sc) = (data(&xf), data(&shift_f), data(&scale_f));
        Ok(per_token([b, n, d], |token, sample, row| {
            let src = &xs[token * d..][..d];
            let (sh, sc) = (&sh[sample * d..][..d], &sc[sample * d..][..d]);
            for i in 0..d {
                row[i] = src[i] * (sc[i] + 1.0) + sh[i];
            }
        }))
    }

    /// `x + y · gate`, element by element in that order (as the tensor ops).
    pub(super) fn gated_residual<B: Backend>(
        x: Tensor<B, 3>,
        y: Tensor<B, 3>,
        gate: Tensor<B, 2>,
    ) -> Result<Tensor<B, 3>, ThreeY<B>> {
        let [b, n, d] = y.dims();
        if x.dims() != [b, n, d] || gate.dims() != [b, d] || !is_flex::<B>() {
            return Err((x, y, gate));
        }
        let xf = match take(x) {
            Ok(f) => f,
            Err(x) => return Err((x, y, gate)),
        };
        let yf = match take(y) {
            Ok(f) => f,
            Err(y) => return Err((give(xf), y, gate)),
        };
        let gf = match take(gate) {
            Ok(f) => f,
            Err(gate) => return Err((give(xf), give(yf), gate)),
        };
        let (xs, ys, gs) = (data(&xf), data(&yf), data(&gf));
        Ok(per_token([b, n, d], |token, sample, row| {
            let (xr, yr) = (&xs[token * d..][..d], &ys[token * d..][..d]);
            let g = &gs[sample * d..][..d];
            for i in 0..d {
                row[i] = xr[i] + yr[i] * g[i];
            }
        }))
    }

    /// Rotates `x` — `[B, H, N, head_dim]`, or `[B, N, H, head_dim]` when `token_major` — with
    /// `cos`/`sin` `[1 or B, N, head_dim / 2]` (f32) in `layout`, with the expressions of
    /// [`crate::rotary::apply_rotary`]'s tensor ops: interleaved `(a·c + b·(−s), b·c + a·s)`,
    /// half-split `(a·c − b·s, a·s + b·c)`. The result is `[B, H, N, head_dim]` either way.
    pub(crate) fn rotate<B: Backend>(
        x: Tensor<B, 4>,
        cos: &Tensor<B, 3>,
        sin: &Tensor<B, 3>,
        layout: PairLayout,
        token_major: bool,
    ) -> Result<Tensor<B, 4>, Tensor<B, 4>> {
        let [b, d1, d2, hd] = x.dims();
        let (h, n) = if token_major { (d2, d1) } else { (d1, d2) };
        let [tb, tn, half] = cos.dims();
        if !is_flex::<B>() || tn != n || 2 * half != hd || !(tb == 1 || tb == b) {
            return Err(x);
        }
        let (cf, sf) = match (take(cos.clone()), take(sin.clone())) {
            (Ok(c), Ok(s)) => (c, s),
            _ => return Err(x),
        };
        let xf = take(x)?;
        let (xs, cs, ss) = (data(&xf), data(&cf), data(&sf));
        let mut out = vec![0f32; b * h * n * hd];
        let rows = rows_per_chunk(hd);
        out.par_chunks_mut(rows * hd)
            .enumerate()
            .for_each(|(chunk, dst)| {
                for (r, row) in dst.chunks_mut(hd).enumerate() {
                    let index = chunk * rows + r;
                    let (token, sample) = (index % n, index / (h * n));
                    let t = if tb == 1 { token } else { sample * n + token };
                    let from = if token_major {
                        let head = (index / n) % h;
                        (sample * n + token) * h + head
                    } else {
                        index
                    };
                    let src = &xs[from * hd..][..hd];
                    let (c, s) = (&cs[t * half..][..half], &ss[t * half..][..half]);
                    match layout {
                        PairLayout::Interleaved => {
                            for i in 0..half {
                                let (a, bv) = (src[2 * i], src[2 * i + 1]);
                                row[2 * i] = a * c[i] + bv * -s[i];
                                row[2 * i + 1] = bv * c[i] + a * s[i];
                            }
                        }
                        PairLayout::HalfSplit => {
                            for i in 0..half {
                                let (a, bv) = (src[i], src[half + i]);
                                row[i] = a * c[i] - bv * s[i];
                                row[half + i] = a * s[i] + bv * c[i];
                            }
                        }
                    }
                }
            });
        Ok(give(FlexTensor::from_data(TensorData::new(
            out,
            [b, h, n, hd],
        ))))
    }
    /// burn Flex's attention (no mask, burn's default `1/√head_dim` scale) on rayon's threads:
    /// the `(sample, head, query block)` units run in parallel (Flex runs its heads one after
    /// another on one thread) and their outputs are written merged, `[B, Nq, H·Dv]`. Up to
    /// `seq_q · seq_kv` = 256 Ki scores per head this is Flex's one-call result bit for bit;
    /// beyond, the query blocks run Flex's direct kernel where one call would run its tiled one
    /// (the same softmax, summed in another order: agreement to f32 rounding).
    pub(crate) fn attention_merged<B: Backend>(
        q: Tensor<B, 4>,
        k: Tensor<B, 4>,
        v: Tensor<B, 4>,
    ) -> Result<Tensor<B, 3>, Qkv<B>> {
        use burn::backend::Flex;
        use burn::tensor::ops::{AttentionModuleOptions, ModuleOps};

        let [b, h, nq, _] = q.dims();
        let dv = v.dims()[3];
        if !is_flex::<B>() || k.dtype() != DType::F32 || v.dtype() != DType::F32 {
            return Err((q, k, v));
        }
        let qf = match take(q) {
            Ok(f) => f,
            Err(q) => return Err((q, k, v)),
        };
        let kf = match take(k) {
            Ok(f) => f,
            Err(k) => return Err((give(qf), k, v)),
        };
        let vf = match take(v) {
            Ok(f) => f,
            Err(v) => return Err((give(qf), give(kf), v)),
        };
        // One unit per (sample, head, query block): a head's q, k and v are then one contiguous
        // or 2-D strided block each (a token-major v included), which Flex copies at memcpy
        // speed, and a block's `rows · seq_kv` scores stay within Flex's budget for its direct
        // (non-tiled) kernel, which is several times faster than its KV-tiled online softmax.
        let nk = k_tokens(&kf);
        let rows = (FLEX_NAIVE_SCORES / nk.max(1)).clamp(1, nq);
        let units: Vec<(usize, usize, usize, usize)> = (0..b)
            .flat_map(|s| {
                (0..h).flat_map(move |head| {
                    (0..nq)
                        .step_by(rows)
                        .map(move |q0| (s, head, q0, rows.min(nq - q0)))
                })
            })
            .collect();
        let parts: Vec<FlexTensor> = units
            .par_iter()
            .map(|&(s, head, q0, len)| {
                let part = |t: &FlexTensor| t.narrow(0, s, 1).narrow(1, head, 1);
                <Flex as ModuleOps<Flex>>::attention(
                    part(&qf).narrow(2, q0, len),
                    part(&kf),
                    part(&vf),
                    None,
                    None,
                    AttentionModuleOptions::default(),
                )
                .to_contiguous()
            })
            .collect();
        let width = h * dv;
        let mut out = vec![0f32; b * nq * width];
        for (&(s, head, q0, len), part) in units.iter().zip(&parts) {
            let src = data(part);
            for t in 0..len {
                let from = &src[t * dv..][..dv];
                out[(s * nq + q0 + t) * width + head * dv..][..dv].copy_from_slice(from);
            }
        }
        Ok(give(output(out, [b, nq, width])))
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use burn::tensor::TensorData;

    type Cpu = crate::backend::Cpu;
    type Ad = burn::backend::Autodiff<Cpu>;

    fn wave<B: Backend, const D: usize>(shape: [usize; D], f: f64) -> Tensor<B, D> {
        let n: usize = shape.iter().product();
        let v: Vec<f32> = (0..n)
            .map(|i| ((i as f64 * f).sin() * 1.7) as f32)
            .collect();
        Tensor::from_data(TensorData::new(v, shape), &Default::default())
    }

    fn values<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
        t.into_data().into_vec().expect("f32")
    }

    /// The reference formula with plain broadcasts (what the models computed before).
    fn reference<B: Backend>(
        x: Tensor<B, 3>,
        shift: Tensor<B, 2>,
        scale: Tensor<B, 2>,
    ) -> Vec<f32> {
        values(x * scale.unsqueeze_dim::<3>(1).add_scalar(1.0) + shift.unsqueeze_dim(1))
    }

    #[test]
    fn fused_modulate_and_gate_match_the_tensor_ops_bit_for_bit() {
        for &(b, n, d) in &[(1usize, 1usize, 3usize), (2, 64, 128), (3, 37, 5)] {
            let x = wave::<Cpu, 3>([b, n, d], 0.37);
            let y = wave::<Cpu, 3>([b, n, d], 0.11);
            let (shift, scale) = (wave::<Cpu, 2>([b, d], 0.23), wave::<Cpu, 2>([b, d], 0.71));
            let fused = values(modulate(x.clone(), shift.clone(), scale.clone()));
            assert_eq!(fused, reference(x.clone(), shift, scale.clone()));
            let fused = values(gated_residual(x.clone(), y.clone(), scale.clone()));
            let plain = values(x + y * scale.unsqueeze_dim::<3>(1));
            assert_eq!(fused, plain);
        }
    }

    #[test]
    fn the_flex_path_is_taken_only_for_flex_f32() {
        assert!(flex::is_flex::<Cpu>());
        assert!(!flex::is_flex::<Ad>());
        // f64 on Flex and autodiff over Flex take the tensor ops and agree with the formula.
        let x = wave::<Cpu, 3>([2, 4, 3], 0.3).cast(burn::tensor::DType::F64);
        let (sh, sc) = (
            wave::<Cpu, 2>([2, 3], 0.2).cast(burn::tensor::DType::F64),
            wave::<Cpu, 2>([2, 3], 0.5).cast(burn::tensor::DType::F64),
        );
        let out = modulate(x.clone(), sh.clone(), sc.clone());
        assert_eq!(out.dtype(), burn::tensor::DType::F64);
        let expected = x * sc.unsqueeze_dim::<3>(1).add_scalar(1.0) + sh.unsqueeze_dim(1);
        assert_eq!(out.into_data(), expected.into_data());
        let xa = wave::<Ad, 3>([2, 4, 3], 0.3).require_grad();
        let out = modulate(
            xa.clone(),
            wave::<Ad, 2>([2, 3], 0.2),
            wave::<Ad, 2>([2, 3], 0.5),
        );
        let grads = out.sum().backward();
        let g = values(xa.grad(&grads).expect("x has a gradient"));
        // d/dx of x·(1 + scale) + shift is 1 + scale, repeated over the tokens.
        let sc = values(wave::<Cpu, 2>([2, 3], 0.5));
        for (i, gi) in g.iter().enumerate() {
            let (sample, ch) = (i / 12, i % 3);
            assert_eq!(*gi, sc[sample * 3 + ch] + 1.0);
        }
    }

    #[test]
    fn mismatched_shapes_fall_back_to_the_tensor_ops() {
        // A [1, D] shift on a batch of 2 is not the fused shape; the tensor ops broadcast it.
        let x = wave::<Cpu, 3>([2, 3, 4], 0.3);
        let out = modulate(
            x.clone(),
            wave::<Cpu, 2>([1, 4], 0.2),
            wave::<Cpu, 2>([2, 4], 0.5),
        );
        assert_eq!(out.dims(), [2, 3, 4]);
    }
}
