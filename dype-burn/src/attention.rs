//! One memory-bounded attention entry point for diffusion transformers.
//!
//! [`attention`] takes q, k, v as `[batch, heads, tokens, head_dim]` (q/k already normalised and
//! rotated), its [`Masks`] — a key-padding mask `[batch, kv_tokens]` (`true` = keep, FiT
//! semantics: padded keys are excluded from every query's softmax), an additive score bias (T5's
//! relative positions) and a causal mask (CLIP), each optional — and [`AttentionOptions`] (softmax
//! scale, path, [`Precision`]: where half-precision inputs are upcast), and returns
//! `[batch, q_tokens, heads · head_dim]`. Every model of this crate calls it.
//!
//! # Paths and how one is chosen
//!
//! * [`ResolvedPath::Fused`] calls burn's [`burn::tensor::module::attention`] once, with no
//!   custom scale, bias or softcap: a non-default softmax scale is folded into q
//!   (`q · scale · √head_dim`, since burn then applies its default `1/√head_dim`). On the CubeCL
//!   backends (wgpu, CUDA) any custom scale/bias/softcap makes burn 0.21 silently use its naive
//!   O(N²) fallback, hence the folding. burn's mask convention is the opposite of ours (`true` =
//!   masked out), so the keep mask is inverted and broadcast (`[B,1,1,N] → [B,H,Nq,N]`, a
//!   stride-0 view on CubeCL).
//! * [`ResolvedPath::Chunked`] is written here with plain tensor ops: queries are processed in
//!   blocks of `query_chunk` rows, each block computing `softmax(q_c kᵀ · scale) v` in f32 (f64
//!   for f64 inputs). Peak extra memory is `batch · heads · query_chunk · kv_tokens` scores (plus
//!   softmax temporaries), i.e. O(C·N) per head. Works on every backend, including autodiff.
//!
//! [`AttentionPath::Auto`] picks by burn's `Backend::name` (documented and deliberately simple):
//!
//! | backend name | no mask | with mask |
//! |---|---|---|
//! | `cubecl<…>`, `fusion<cubecl<…>>` (wgpu, CUDA) | Fused | Fused |
//! | `flex` ([`crate::backend::Cpu`]) | Fused | Chunked |
//! | anything else (ndarray, autodiff, candle, tch, …) | Chunked | Chunked |
//!
//! Why: burn 0.21's CubeCL attention runs cubek flash kernels (with the `autotune` feature,
//! which this crate's `wgpu`/`cuda` features enable) and accepts strided/broadcast masks. Flex's
//! attention (`burn-flex-0.21.0/src/ops/attention.rs`) is memory-bounded *without* a mask — a
//! naive path only while `seq_q·seq_kv ≤ 256K` elements, otherwise a KV-tiled online-softmax
//! path with `seq_q × 64` scratch — but it materialises a broadcast mask as a dense
//! `[B,H,Nq,Nk]` byte tensor, which is O(N²); so masked attention on Flex uses the chunked path.
//! Other backends (ndarray, autodiff) run burn's naive `attention_fallback`, hence chunked.
//!
//! Caveat (burn 0.21, CubeCL, autotune): while `seq_q ≤ 4096` the naive fallback is among the
//! autotune candidates and is benchmarked once per shape, allocating `B·H·Nq·Nk` scores once.
//!
//! # Fully masked rows
//!
//! With a key-padding mask alone a query row is fully masked only if its sample has no kept key at
//! all; with a causal mask too, also a query before its sample's first kept key (left padding),
//! whose output is zero as well. Both paths then return **zeros** for that sample (burn's fallback and Flex already do;
//! after the fused op the output of such samples is additionally overwritten with zeros, which
//! also removes any NaN a GPU kernel might produce; the chunked path masks with the most
//! negative finite f32 instead of −∞, so it never forms `−∞ − (−∞)`). Queries *at* padded
//! positions still attend to the sample's kept keys; their outputs are ordinary values that the
//! caller is expected to ignore.

use burn::tensor::activation::softmax;
use burn::tensor::backend::Backend;
use burn::tensor::ops::AttentionModuleOptions;
use burn::tensor::{Bool, DType, Tensor, TensorData};

/// Score elements (`batch · heads · chunk · kv_tokens`) per query block of the automatic chunk
/// size: 2²⁵ elements = 128 MiB of f32 scores.
pub const DEFAULT_SCORE_BUDGET: usize = 1 << 25;

/// Which implementation [`attention`] uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum AttentionPath {
    /// Choose by backend (see the [module docs](self)).
    #[default]
    Auto,
    /// burn's fused `attention` op on the whole sequence.
    Fused,
    /// The query-chunked implementation of this module; `query_chunk` rows per block (≥ 1).
    Chunked {
        /// Query rows per block.
        query_chunk: usize,
    },
}

/// The implementation [`attention`] runs for a key-padding-only call, as resolved by
/// [`resolve_path`] ([`attention`] with a bias, a causal mask or
/// [`Precision::UpcastScores`] always runs [`ResolvedPath::Chunked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum ResolvedPath {
    /// burn's fused `attention` op.
    Fused,
    /// Query-chunked attention with this many query rows per block.
    Chunked {
        /// Query rows per block.
        query_chunk: usize,
    },
}

/// Where attention leaves the inputs' dtype (for bf16/f16 models; f64 always stays f64).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
#[non_exhaustive]
pub enum Precision {
    /// On the chunked path, q, k and v are cast to f32 before `q·kᵀ`; scores, softmax and `·v` in
    /// f32; the result in q's dtype (the DiTs' and the VAE's rule). The fused path runs burn's
    /// kernel in the inputs' dtype.
    #[default]
    UpcastInputs,
    /// `q·kᵀ` (and a scale other than 1) in the inputs' dtype; the scores are cast to f32 for the
    /// bias, the masks and the softmax; the probabilities go back to v's dtype for `·v`; the
    /// result in v's dtype. HF T5's and CLIP's rule. Always runs the chunked path.
    UpcastScores,
}

/// Options of [`attention`].
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct AttentionOptions {
    /// Softmax scale; `None` = `1 / √head_dim`. Must be finite and positive.
    pub scale: Option<f64>,
    /// Implementation choice.
    pub path: AttentionPath,
    /// Where the computation leaves the inputs' dtype.
    pub precision: Precision,
}

impl AttentionOptions {
    /// Sets the softmax scale.
    pub fn with_scale(mut self, scale: f64) -> Self {
        self.scale = Some(scale);
        self
    }

    /// Sets the implementation choice.
    pub fn with_path(mut self, path: AttentionPath) -> Self {
        self.path = path;
        self
    }

    /// Sets where the computation leaves the inputs' dtype.
    pub fn with_precision(mut self, precision: Precision) -> Self {
        self.precision = precision;
        self
    }
}

/// What restricts or biases the scores of [`attention`]; every part is optional and they
/// combine (bias, then causal mask, then key padding).
#[derive(Debug, Clone)]
pub struct Masks<B: Backend> {
    /// `[batch, kv_tokens]`, `true` = keep the key (FiT's padding semantics).
    pub key_padding: Option<Tensor<B, 2, Bool>>,
    /// Additive score bias broadcast as `[1 or batch, 1 or heads, 1 or q_tokens, kv_tokens]`
    /// (T5's relative position bias), added in f32.
    pub bias: Option<Tensor<B, 4>>,
    /// Each query attends to keys at or before its own position (CLIP's text transformer): −1e30 is
    /// added above the diagonal. Needs `q_tokens == kv_tokens`.
    pub causal: bool,
}

impl<B: Backend> Default for Masks<B> {
    fn default() -> Self {
        Masks {
            key_padding: None,
            bias: None,
            causal: false,
        }
    }
}

impl<B: Backend> Masks<B> {
    /// Only a key-padding mask (or none).
    pub fn key_padding(mask: Option<Tensor<B, 2, Bool>>) -> Self {
        Masks {
            key_padding: mask,
            ..Masks::default()
        }
    }

    /// Adds an additive score bias.
    pub fn with_bias(mut self, bias: Tensor<B, 4>) -> Self {
        self.bias = Some(bias);
        self
    }

    /// Makes the attention causal.
    pub fn with_causal(mut self) -> Self {
        self.causal = true;
        self
    }
}

/// Errors of [`attention`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AttentionError {
    /// Inputs have incompatible shapes.
    #[error("attention: {what} has shape {found:?}, expected {expected:?}")]
    ShapeMismatch {
        /// Which input.
        what: &'static str,
        /// Expected shape (derived from q and k).
        expected: Vec<usize>,
        /// Actual shape.
        found: Vec<usize>,
    },
    /// A dimension is zero (no tokens, heads, batch or channels).
    #[error("attention: zero-sized input (q {q:?}, k {k:?}, v {v:?})")]
    Empty {
        /// q shape.
        q: [usize; 4],
        /// k shape.
        k: [usize; 4],
        /// v shape.
        v: [usize; 4],
    },
    /// The softmax scale is not finite and positive.
    #[error("attention: softmax scale must be finite and positive, got {0}")]
    InvalidScale(f64),
    /// `query_chunk` is zero.
    #[error("attention: query_chunk must be at least 1")]
    ZeroChunk,
    /// A causal mask needs as many queries as keys.
    #[error("attention: a causal mask needs q_tokens == kv_tokens, got {q_tokens} and {kv_tokens}")]
    CausalShape {
        /// Query tokens.
        q_tokens: usize,
        /// Key tokens.
        kv_tokens: usize,
    },
}

/// Query rows per block so that one block's scores hold at most [`DEFAULT_SCORE_BUDGET`]
/// elements (at least 1, at most `q_tokens`).
pub fn default_query_chunk(batch: usize, heads: usize, q_tokens: usize, kv_tokens: usize) -> usize {
    let per_row = batch.saturating_mul(heads).saturating_mul(kv_tokens).max(1);
    (DEFAULT_SCORE_BUDGET / per_row).clamp(1, q_tokens.max(1))
}

/// Resolves [`AttentionPath`] for backend `B` on `device` (see the table in the module docs).
pub fn resolve_path<B: Backend>(
    path: AttentionPath,
    device: &B::Device,
    masked: bool,
    [batch, heads, q_tokens, kv_tokens]: [usize; 4],
) -> ResolvedPath {
    let chunked = || ResolvedPath::Chunked {
        query_chunk: default_query_chunk(batch, heads, q_tokens, kv_tokens),
    };
    match path {
        AttentionPath::Fused => ResolvedPath::Fused,
        AttentionPath::Chunked { query_chunk } => ResolvedPath::Chunked { query_chunk },
        AttentionPath::Auto => {
            let name = B::name(device);
            let cubecl = name.starts_with("cubecl") || name.starts_with("fusion<cubecl");
            let flex_unmasked = name == "flex" && !masked;
            if cubecl || flex_unmasked {
                ResolvedPath::Fused
            } else {
                chunked()
            }
        }
    }
}

/// Scaled dot-product attention, merged heads out.
///
/// * `q`: `[batch, heads, q_tokens, head_dim]`, `k`: `[batch, heads, kv_tokens, head_dim]`,
///   `v`: `[batch, heads, kv_tokens, v_dim]`;
/// * `masks`: any of a key-padding mask `[batch, kv_tokens]` (`true` = keep the key, `false` =
///   padded), an additive score bias and a causal mask (`Masks::default()`: none);
/// * returns `[batch, q_tokens, heads · v_dim]` in the dtype of `q`.
///
/// See the [module docs](self) for the implementation paths and masked-row behaviour. A bias, a
/// causal mask or [`Precision::UpcastScores`] always run the chunked path (under the same memory
/// budget).
pub fn attention<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    masks: Masks<B>,
    options: AttentionOptions,
) -> Result<Tensor<B, 3>, AttentionError> {
    let (qd, kd, vd) = (q.dims(), k.dims(), v.dims());
    let [batch, heads, q_tokens, head_dim] = qd;
    let kv_tokens = kd[2];
    if qd.contains(&0) || kd.contains(&0) || vd.contains(&0) {
        return Err(AttentionError::Empty {
            q: qd,
            k: kd,
            v: vd,
        });
    }
    let expected_k = [batch, heads, kv_tokens, head_dim];
    if kd != expected_k {
        return Err(AttentionError::ShapeMismatch {
            what: "k",
            expected: expected_k.to_vec(),
            found: kd.to_vec(),
        });
    }
    let expected_v = [batch, heads, kv_tokens, vd[3]];
    if vd != expected_v {
        return Err(AttentionError::ShapeMismatch {
            what: "v",
            expected: expected_v.to_vec(),
            found: vd.to_vec(),
        });
    }
    if let Some(mask) = &masks.key_padding {
        let md = mask.dims();
        if md != [batch, kv_tokens] {
            return Err(AttentionError::ShapeMismatch {
                what: "key_padding_mask",
                expected: vec![batch, kv_tokens],
                found: md.to_vec(),
            });
        }
    }
    if let Some(bias) = &masks.bias {
        let bd = bias.dims();
        let fits = |got: usize, full: usize| got == 1 || got == full;
        if !(fits(bd[0], batch) && fits(bd[1], heads) && fits(bd[2], q_tokens))
            || bd[3] != kv_tokens
        {
            return Err(AttentionError::ShapeMismatch {
                what: "bias",
                expected: vec![batch, heads, q_tokens, kv_tokens],
                found: bd.to_vec(),
            });
        }
    }
    if masks.causal && q_tokens != kv_tokens {
        return Err(AttentionError::CausalShape {
            q_tokens,
            kv_tokens,
        });
    }
    let default_scale = 1.0 / (head_dim as f64).sqrt();
    let scale = options.scale.unwrap_or(default_scale);
    if !(scale.is_finite() && scale > 0.0) {
        return Err(AttentionError::InvalidScale(scale));
    }
    let needs_chunked =
        masks.bias.is_some() || masks.causal || options.precision == Precision::UpcastScores;
    let path = match (options.path, needs_chunked) {
        (AttentionPath::Chunked { .. }, _) | (_, false) => resolve_path::<B>(
            options.path,
            &q.device(),
            masks.key_padding.is_some(),
            [batch, heads, q_tokens, kv_tokens],
        ),
        (_, true) => ResolvedPath::Chunked {
            query_chunk: default_query_chunk(batch, heads, q_tokens, kv_tokens),
        },
    };
    let out = match path {
        ResolvedPath::Fused if masks.key_padding.is_none() => {
            let q = fold_scale(q, scale, default_scale);
            // burn Flex: the heads on all threads, written merged.
            #[cfg(feature = "cpu")]
            let (q, k, v) = match crate::kernels::flex::attention_merged(q, k, v) {
                Ok(merged) => return Ok(merged),
                Err(inputs) => inputs,
            };
            fused(q, k, v, None, default_scale, default_scale)
        }
        ResolvedPath::Fused => fused(q, k, v, masks.key_padding, scale, default_scale),
        ResolvedPath::Chunked { query_chunk: 0 } => return Err(AttentionError::ZeroChunk),
        ResolvedPath::Chunked { query_chunk } => {
            chunked(q, k, v, masks, scale, query_chunk, options.precision)
        }
    };
    let v_dim = vd[3];
    // [B, H, Nq, Dv] → [B, Nq, H·Dv]
    Ok(out
        .swap_dims(1, 2)
        .reshape([batch, q_tokens, heads * v_dim]))
}

/// Zeroes the output of samples whose mask keeps no key (`out`: `[B, H, Nq, Dv]`).
fn zero_empty_samples<B: Backend>(out: Tensor<B, 4>, keep: Tensor<B, 2, Bool>) -> Tensor<B, 4> {
    let dims = out.dims();
    let none_kept = keep
        .any_dim(1)
        .bool_not()
        .reshape([dims[0], 1, 1, 1])
        .expand(dims);
    out.mask_fill(none_kept, 0.0)
}

/// burn applies `1/√head_dim` itself when `options.scale` is `None`: another scale is folded
/// into q.
fn fold_scale<B: Backend>(q: Tensor<B, 4>, scale: f64, default_scale: f64) -> Tensor<B, 4> {
    if (scale - default_scale).abs() <= 1e-12 * default_scale {
        q
    } else {
        q.mul_scalar(scale / default_scale)
    }
}

fn fused<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    keep: Option<Tensor<B, 2, Bool>>,
    scale: f64,
    default_scale: f64,
) -> Tensor<B, 4> {
    let [batch, heads, q_tokens, _] = q.dims();
    let kv_tokens = k.dims()[2];
    let q = fold_scale(q, scale, default_scale);
    // burn: true = masked out.
    let burn_mask = keep.clone().map(|keep| {
        keep.bool_not()
            .reshape([batch, 1, 1, kv_tokens])
            .expand([batch, heads, q_tokens, kv_tokens])
    });
    let out = burn::tensor::module::attention(
        q,
        k,
        v,
        burn_mask,
        None,
        AttentionModuleOptions::default(),
    );
    match keep {
        Some(keep) => zero_empty_samples(out, keep),
        None => out,
    }
}

/// Rows `start..start + len` of the `[1, 1, n, n]` additive causal mask: −1e30 where the key comes
/// after the query (a large finite value keeps a softmax row NaN-free), 0 elsewhere; in `dtype`.
/// Built per query block, so it stays within the block's memory budget.
fn causal_rows<B: Backend>(
    start: usize,
    len: usize,
    n: usize,
    dtype: DType,
    device: &B::Device,
) -> Tensor<B, 4> {
    let mask: Vec<f32> = (start..start + len)
        .flat_map(|q| (0..n).map(move |k| if k > q { -1e30 } else { 0.0 }))
        .collect();
    Tensor::<B, 2>::from_data(TensorData::new(mask, [len, n]), device)
        .cast(dtype)
        .unsqueeze::<4>()
}

/// Rows `start..start + len` of a `[.., .., q_tokens or 1, kv_tokens]` bias.
fn bias_rows<B: Backend>(bias: &Tensor<B, 4>, start: usize, len: usize) -> Tensor<B, 4> {
    if bias.dims()[2] == 1 || (start == 0 && len == bias.dims()[2]) {
        bias.clone()
    } else {
        bias.clone().narrow(2, start, len)
    }
}

fn chunked<B: Backend>(
    q: Tensor<B, 4>,
    k: Tensor<B, 4>,
    v: Tensor<B, 4>,
    masks: Masks<B>,
    scale: f64,
    query_chunk: usize,
    precision: Precision,
) -> Tensor<B, 4> {
    let [batch, heads, q_tokens, _] = q.dims();
    let kv_tokens = k.dims()[2];
    let device = q.device();
    let out_dtype = match precision {
        Precision::UpcastScores => v.dtype(),
        _ => q.dtype(),
    };
    let compute = if q.dtype() == DType::F64 {
        DType::F64
    } else {
        DType::F32
    };
    let cast = |t: Tensor<B, 4>| {
        if t.dtype() == compute {
            t
        } else {
            t.cast(compute)
        }
    };
    let upcast_scores = precision == Precision::UpcastScores;
    let (q, k_t, v) = if upcast_scores {
        (q, k.swap_dims(2, 3), v)
    } else {
        (cast(q).mul_scalar(scale), cast(k).swap_dims(2, 3), cast(v))
    };
    let v_dtype = v.dtype();
    let keep = masks.key_padding;
    let padded = keep
        .clone()
        .map(|keep| keep.bool_not().reshape([batch, 1, 1, kv_tokens]));
    let bias = masks.bias.map(cast);
    let causal = masks.causal;

    let mut blocks = Vec::with_capacity(q_tokens.div_ceil(query_chunk));
    let mut start = 0;
    while start < q_tokens {
        let len = query_chunk.min(q_tokens - start);
        let mut scores = q.clone().narrow(2, start, len).matmul(k_t.clone());
        if upcast_scores {
            if scale != 1.0 {
                scores = scores.mul_scalar(scale);
            }
            scores = scores.cast(compute);
        }
        if let Some(b) = &bias {
            scores = scores + bias_rows(b, start, len);
        }
        let causal_block =
            causal.then(|| causal_rows::<B>(start, len, kv_tokens, compute, &device));
        if let Some(c) = &causal_block {
            scores = scores + c.clone();
        }
        if let Some(p) = &padded {
            // Most negative finite value, not -inf: a fully masked row then stays finite.
            scores = scores.mask_fill(p.clone().expand([batch, heads, len, kv_tokens]), f32::MIN);
        }
        let probs = softmax(scores, 3);
        let probs = if upcast_scores {
            probs.cast(v_dtype)
        } else {
            probs
        };
        let mut block = probs.matmul(v.clone());
        if let (Some(c), Some(p)) = (&causal_block, &padded) {
            // A query whose causal window holds no kept key (left padding) gets zeros, like a
            // sample without any kept key, instead of attending to later keys.
            let allowed = c
                .clone()
                .equal_elem(0.0)
                .expand([batch, 1, len, kv_tokens])
                .bool_and(p.clone().bool_not().expand([batch, 1, len, kv_tokens]));
            let empty = allowed.any_dim(3).bool_not();
            let dv = block.dims()[3];
            block = block.mask_fill(empty.expand([batch, heads, len, dv]), 0.0);
        }
        blocks.push(block);
        start += len;
    }
    let out = Tensor::cat(blocks, 2);
    let out = match keep {
        Some(keep) => zero_empty_samples(out, keep),
        None => out,
    };
    if out.dtype() == out_dtype {
        out
    } else {
        out.cast(out_dtype)
    }
}
