//! T5 v1.1 encoder (FLUX.1's `text_encoder_2`, google/t5-v1_1-xxl): RMS norms without bias or mean
//! (variance in f32), unscaled attention with a bucketed bidirectional relative position bias
//! computed by layer 0 and shared by every layer, gated-GELU (tanh) feed-forward, final norm.
//! Padding is not masked, as FLUX does. Key layout of HF `T5EncoderModel`.
//!
//! Run T5-XXL in f32 or bf16: its feed-forward activations overflow f16 (HF keeps `wo` in f32
//! and clamps for f16; this port does neither).

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor, TensorData};
use serde::Deserialize;

use crate::attention::{AttentionOptions, Masks, Precision, attention};
use crate::models::{CheckpointSpec, ModelError, Pretrained};
use crate::nn::{RmsForm, rms_norm};
use crate::weights::{Checkpoint, Declare, KeyMap, Load, Source, Weights};

/// The model name in errors.
const MODEL: &str = "t5";

/// The fields of an HF T5 `config.json` this port reads; absent or `null` ones take
/// [`T5Config::xxl`]'s values.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct T5Json {
    vocab_size: Option<usize>,
    d_model: Option<usize>,
    d_kv: Option<usize>,
    d_ff: Option<usize>,
    num_layers: Option<usize>,
    num_heads: Option<usize>,
    relative_attention_num_buckets: Option<usize>,
    relative_attention_max_distance: Option<usize>,
    layer_norm_epsilon: Option<f64>,
    feed_forward_proj: Option<String>,
}

/// T5 encoder hyper-parameters (HF `T5Config`).
#[derive(Debug, Clone, PartialEq)]
pub struct T5Config {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Model width.
    pub d_model: usize,
    /// Per-head width.
    pub d_kv: usize,
    /// Feed-forward width.
    pub d_ff: usize,
    /// Encoder layers.
    pub num_layers: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// Relative-position buckets.
    pub relative_attention_num_buckets: usize,
    /// Largest distance with its own log bucket.
    pub relative_attention_max_distance: usize,
    /// RMS norm epsilon.
    pub layer_norm_epsilon: f64,
}

impl T5Config {
    /// google/t5-v1_1-xxl (FLUX.1's `text_encoder_2`).
    pub fn xxl() -> Self {
        T5Config {
            vocab_size: 32_128,
            d_model: 4096,
            d_kv: 64,
            d_ff: 10_240,
            num_layers: 24,
            num_heads: 64,
            relative_attention_num_buckets: 32,
            relative_attention_max_distance: 128,
            layer_norm_epsilon: 1e-6,
        }
    }

    /// From an HF `config.json` object (missing fields take [`T5Config::xxl`]'s values). Only the
    /// gated-GELU v1.1 feed-forward is supported.
    pub fn from_json(c: &serde_json::Value) -> Result<Self, ModelError> {
        let j = T5Json::deserialize(c).map_err(|e| ModelError::json(MODEL, e))?;
        if let Some(value) = j.feed_forward_proj.filter(|p| p != "gated-gelu") {
            return Err(ModelError::unsupported(
                MODEL,
                "feed_forward_proj",
                value,
                "gated-gelu only",
            ));
        }
        let d = T5Config::xxl();
        let cfg = T5Config {
            vocab_size: j.vocab_size.unwrap_or(d.vocab_size),
            d_model: j.d_model.unwrap_or(d.d_model),
            d_kv: j.d_kv.unwrap_or(d.d_kv),
            d_ff: j.d_ff.unwrap_or(d.d_ff),
            num_layers: j.num_layers.unwrap_or(d.num_layers),
            num_heads: j.num_heads.unwrap_or(d.num_heads),
            relative_attention_num_buckets: j
                .relative_attention_num_buckets
                .unwrap_or(d.relative_attention_num_buckets),
            relative_attention_max_distance: j
                .relative_attention_max_distance
                .unwrap_or(d.relative_attention_max_distance),
            layer_norm_epsilon: j.layer_norm_epsilon.unwrap_or(d.layer_norm_epsilon),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Inner attention width `heads · d_kv`.
    pub fn inner_dim(&self) -> usize {
        self.num_heads * self.d_kv
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        if self.vocab_size == 0
            || self.d_model == 0
            || self.d_kv == 0
            || self.d_ff == 0
            || self.num_layers == 0
            || self.num_heads == 0
        {
            return Err(ModelError::invalid(MODEL, "sizes must be non-zero"));
        }
        let b = self.relative_attention_num_buckets;
        if b < 4 || self.relative_attention_max_distance <= b / 4 {
            return Err(ModelError::invalid(
                MODEL,
                "need at least 4 buckets and max_distance > buckets/4",
            ));
        }
        Ok(())
    }

    /// The checkpoint key map of HF `T5EncoderModel`: `shared.weight` and its tied copy
    /// `encoder.embed_tokens.weight` (see [`T5Embeddings::stored_in`] for checkpoints that store only
    /// one of them), the blocks and `encoder.final_layer_norm.weight`.
    pub fn key_map(&self) -> KeyMap {
        self.map(T5Embeddings {
            shared: true,
            copy: true,
        })
    }

    /// The key map declaring the token-embedding copies `embeddings`.
    pub fn map(&self, embeddings: T5Embeddings) -> KeyMap {
        Declare::key_map(|s| t5(s, self, embeddings))
    }
}

/// The token embedding's key.
const SHARED: &str = "shared.weight";
/// The key of its tied copy.
const EMBED_COPY: &str = "encoder.embed_tokens.weight";

/// Which of the two tied token-embedding copies a T5 checkpoint stores and the key map declares:
/// the [`CheckpointSpec::Layout`] of [`T5Config`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct T5Embeddings {
    /// `shared.weight` (loaded when declared).
    pub shared: bool,
    /// `encoder.embed_tokens.weight` (loaded when it is the only one).
    pub copy: bool,
}

impl T5Embeddings {
    /// The copies `ckpt` stores; `shared.weight` when it stores neither.
    pub fn stored_in(ckpt: &Checkpoint) -> Self {
        let copy = ckpt.contains(EMBED_COPY);
        T5Embeddings {
            shared: ckpt.contains(SHARED) || !copy,
            copy,
        }
    }
}

/// A [`T5Block`] as a [`Source`] gives it.
struct Block<S: Source> {
    q: S::Linear,
    k: S::Linear,
    v: S::Linear,
    o: S::Linear,
    attn_norm: S::Param<1>,
    wi_0: S::Linear,
    wi_1: S::Linear,
    wo: S::Linear,
    ff_norm: S::Param<1>,
}

/// A [`T5Encoder`] as a [`Source`] gives it.
struct T5<S: Source> {
    embed: S::Param<2>,
    /// Stored in block 0 (`None` only without blocks).
    relative_bias: Option<S::Param<2>>,
    blocks: Vec<Block<S>>,
    final_norm: S::Param<1>,
}

/// Every tensor of HF `T5EncoderModel`, with the token embedding from `embeddings`.
fn t5<S: Source>(s: &mut S, c: &T5Config, embeddings: T5Embeddings) -> Result<T5<S>, S::Error> {
    let (d, inner, ff) = (c.d_model, c.inner_dim(), c.d_ff);
    let vocab = [c.vocab_size, d];
    let embed = if embeddings.shared {
        let shared = s.param(SHARED, vocab)?;
        if embeddings.copy {
            s.unused(EMBED_COPY, &vocab)?;
        }
        shared
    } else {
        s.param(EMBED_COPY, vocab)?
    };
    let mut relative_bias = None;
    let mut blocks = Vec::with_capacity(c.num_layers);
    for i in 0..c.num_layers {
        let (a, f) = (
            format!("encoder.block.{i}.layer.0"),
            format!("encoder.block.{i}.layer.1"),
        );
        let lin = |s: &mut S, name: &str, d_in, d_out| s.linear(name, d_in, d_out, false);
        let q = lin(s, &format!("{a}.SelfAttention.q"), d, inner)?;
        let k = lin(s, &format!("{a}.SelfAttention.k"), d, inner)?;
        let v = lin(s, &format!("{a}.SelfAttention.v"), d, inner)?;
        let o = lin(s, &format!("{a}.SelfAttention.o"), inner, d)?;
        if i == 0 {
            relative_bias = Some(s.param(
                &format!("{a}.SelfAttention.relative_attention_bias.weight"),
                [c.relative_attention_num_buckets, c.num_heads],
            )?);
        }
        blocks.push(Block {
            q,
            k,
            v,
            o,
            attn_norm: s.param(&format!("{a}.layer_norm.weight"), [d])?,
            wi_0: lin(s, &format!("{f}.DenseReluDense.wi_0"), d, ff)?,
            wi_1: lin(s, &format!("{f}.DenseReluDense.wi_1"), d, ff)?,
            wo: lin(s, &format!("{f}.DenseReluDense.wo"), ff, d)?,
            ff_norm: s.param(&format!("{f}.layer_norm.weight"), [d])?,
        });
    }
    Ok(T5 {
        embed,
        relative_bias,
        blocks,
        final_norm: s.param("encoder.final_layer_norm.weight", [d])?,
    })
}

/// One T5 encoder block.
#[derive(Module, Debug)]
pub(crate) struct T5Block<B: Backend> {
    attn_norm: Param<Tensor<B, 1>>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    o: Linear<B>,
    ff_norm: Param<Tensor<B, 1>>,
    wi_0: Linear<B>,
    wi_1: Linear<B>,
    wo: Linear<B>,
}

/// The T5 v1.1 encoder.
#[derive(Module, Debug)]
pub struct T5Encoder<B: Backend> {
    embed: Embedding<B>,
    relative_bias: Param<Tensor<B, 2>>,
    blocks: Vec<T5Block<B>>,
    final_norm: Param<Tensor<B, 1>>,
    #[module(skip)]
    config: T5Config,
}

/// T5LayerNorm: `w · x / sqrt(mean(x²) + eps)`, statistics in f32, result in `w`'s dtype.
fn t5_norm<B: Backend>(x: Tensor<B, 3>, w: &Param<Tensor<B, 1>>, eps: f64) -> Tensor<B, 3> {
    let w = w.val();
    rms_norm(x, eps, RmsForm::Divide).cast(w.dtype()) * w.unsqueeze::<3>()
}

/// GELU, tanh approximation (`gelu_new`).
pub(crate) fn gelu_tanh<B: Backend, const D: usize>(x: Tensor<B, D>) -> Tensor<B, D> {
    let c = (2.0 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3).mul_scalar(0.044_715)).mul_scalar(c);
    x.mul_scalar(0.5) * inner.tanh().add_scalar(1.0)
}

/// Token ids on the host, for the vocabulary check (and CLIP's pooling position).
pub(super) fn read_ids<B: Backend>(
    model: &'static str,
    ids: &Tensor<B, 2, Int>,
) -> Result<Vec<i64>, ModelError> {
    ids.to_data()
        .convert::<i64>()
        .into_vec::<i64>()
        .map_err(|e| ModelError::ReadBack {
            model,
            what: "token ids",
            reason: format!("{e:?}"),
        })
}

/// HF `T5Attention._relative_position_bucket` (bidirectional) for `relative = key − query`,
/// in f32 like the reference.
pub fn relative_position_bucket(relative: i64, num_buckets: usize, max_distance: usize) -> usize {
    let half = (num_buckets / 2) as i64;
    let mut bucket = if relative > 0 { half } else { 0 };
    let rp = relative.abs();
    let max_exact = half / 2;
    if rp < max_exact {
        bucket += rp;
    } else {
        let ratio = (rp as f32 / max_exact as f32).ln();
        let denom = ((max_distance as f64) / (max_exact as f64)).ln() as f32;
        let large = max_exact + ((ratio / denom) * (half - max_exact) as f32) as i64;
        bucket += large.min(half - 1);
    }
    bucket as usize
}

impl<B: Backend> T5Encoder<B> {
    /// An encoder with random weights (timing, memory checks) in `dtype`.
    pub fn random(
        config: &T5Config,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let (d, inner, ff) = (config.d_model, config.inner_dim(), config.d_ff);
        let lin = |i: usize, o: usize| {
            burn::nn::LinearConfig::new(i, o)
                .with_bias(false)
                .init::<B>(device)
        };
        let ones = |n: usize| Param::from_tensor(Tensor::<B, 1>::ones([n], device));
        let blocks = (0..config.num_layers)
            .map(|_| T5Block {
                attn_norm: ones(d),
                q: lin(d, inner),
                k: lin(d, inner),
                v: lin(d, inner),
                o: lin(inner, d),
                ff_norm: ones(d),
                wi_0: lin(d, ff),
                wi_1: lin(d, ff),
                wo: lin(ff, d),
            })
            .collect();
        let model = T5Encoder {
            embed: burn::nn::EmbeddingConfig::new(config.vocab_size, d).init(device),
            relative_bias: Param::from_tensor(Tensor::<B, 2>::random(
                [config.relative_attention_num_buckets, config.num_heads],
                burn::tensor::Distribution::Normal(0.0, 1.0),
                device,
            )),
            blocks,
            final_norm: ones(d),
            config: config.clone(),
        };
        Ok(crate::nn::cast_params(model, dtype))
    }

    /// Builds the encoder from validated weights (see [`T5Config::key_map`]); the token
    /// embedding is `shared.weight`, or `encoder.embed_tokens.weight` when only that is declared.
    pub fn from_weights(config: &T5Config, w: &Weights<'_, B>) -> Result<Self, ModelError> {
        config.validate()?;
        let embeddings = T5Embeddings {
            shared: w.declares(SHARED),
            copy: w.declares(EMBED_COPY),
        };
        let m = t5(&mut Load::new(w), config, embeddings)?;
        Ok(T5Encoder {
            embed: Embedding { weight: m.embed },
            relative_bias: m
                .relative_bias
                .ok_or_else(|| ModelError::invalid(MODEL, "sizes must be non-zero"))?,
            blocks: m
                .blocks
                .into_iter()
                .map(|b| T5Block {
                    attn_norm: b.attn_norm,
                    q: b.q,
                    k: b.k,
                    v: b.v,
                    o: b.o,
                    ff_norm: b.ff_norm,
                    wi_0: b.wi_0,
                    wi_1: b.wi_1,
                    wo: b.wo,
                })
                .collect(),
            final_norm: m.final_norm,
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &T5Config {
        &self.config
    }

    /// The position bias `[1, heads, N, N]` layer 0 computes and every layer adds.
    fn position_bias(&self, n: usize, device: &B::Device) -> Tensor<B, 4> {
        let cfg = &self.config;
        let buckets: Vec<i64> = (0..n)
            .flat_map(|q| {
                (0..n).map(move |k| {
                    relative_position_bucket(
                        k as i64 - q as i64,
                        cfg.relative_attention_num_buckets,
                        cfg.relative_attention_max_distance,
                    ) as i64
                })
            })
            .collect();
        let idx = Tensor::<B, 1, Int>::from_data(TensorData::new(buckets, [n * n]), device);
        self.relative_bias
            .val()
            .select(0, idx)
            .reshape([n, n, cfg.num_heads])
            .permute([2, 0, 1])
            .unsqueeze::<4>()
    }

    /// Last hidden states `[B, N, d_model]` (after the final norm) for token ids `[B, N]`; no
    /// attention mask (FLUX attends to the padding too).
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Result<Tensor<B, 3>, ModelError> {
        let cfg = &self.config;
        let [b, n] = ids.dims();
        if b == 0 || n == 0 {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "ids",
                found: vec![b, n],
                expected: "a non-empty [B, N]".into(),
            });
        }
        let host = read_ids(MODEL, &ids)?;
        if let Some(&id) = host.iter().find(|&&i| i < 0 || i >= cfg.vocab_size as i64) {
            return Err(ModelError::TokenId {
                model: MODEL,
                id,
                vocab: cfg.vocab_size,
            });
        }
        let device = ids.device();
        let bias = self.position_bias(n, &device);
        let (h, d) = (cfg.num_heads, cfg.d_kv);
        let eps = cfg.layer_norm_epsilon;
        let mut x = self.embed.forward(ids);
        for blk in &self.blocks {
            let a = t5_norm(x.clone(), &blk.attn_norm, eps);
            let heads = |l: &Linear<B>| l.forward(a.clone()).reshape([b, n, h, d]).swap_dims(1, 2);
            // Unscaled scores with the shared position bias, softmax in f32 (HF T5).
            let att = attention(
                heads(&blk.q),
                heads(&blk.k),
                heads(&blk.v),
                Masks::default().with_bias(bias.clone()),
                AttentionOptions::default()
                    .with_scale(1.0)
                    .with_precision(Precision::UpcastScores),
            )?;
            x = x + blk.o.forward(att);
            let f = t5_norm(x.clone(), &blk.ff_norm, eps);
            let hidden = gelu_tanh(blk.wi_0.forward(f.clone())) * blk.wi_1.forward(f);
            x = x + blk.wo.forward(hidden);
        }
        Ok(t5_norm(x, &self.final_norm, eps))
    }
}

/// The token-embedding copies are those the file stores ([`T5Embeddings::stored_in`]).
impl CheckpointSpec for T5Config {
    type Layout = T5Embeddings;

    fn layout(&self, checkpoint: &Checkpoint) -> Result<T5Embeddings, ModelError> {
        self.validate()?;
        Ok(T5Embeddings::stored_in(checkpoint))
    }

    fn declare(&self, &embeddings: &T5Embeddings) -> KeyMap {
        self.map(embeddings)
    }
}

impl<B: Backend> Pretrained<B> for T5Encoder<B> {
    type Config = T5Config;

    fn build(config: &T5Config, _: T5Embeddings, w: &Weights<'_, B>) -> Result<Self, ModelError> {
        Self::from_weights(config, w)
    }
}
