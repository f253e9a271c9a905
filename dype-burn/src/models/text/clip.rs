//! CLIP text model (FLUX.1's `text_encoder`, openai/clip-vit-large-patch14): learned token and
//! position embeddings, pre-LN causal transformer with quick-GELU, final LayerNorm; the pooled
//! output is the hidden state at the end-of-text token. Key layout of HF `CLIPTextModel`
//! (`text_model.` prefix as diffusers stores it, or without it).

use burn::module::{Module, Param};
use burn::nn::{Embedding, Linear};
use burn::tensor::activation::sigmoid;
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use serde::Deserialize;

use super::t5::read_ids;
use crate::attention::{AttentionOptions, Masks, Precision, attention};
use crate::models::{CheckpointSpec, ModelError, Pretrained};
use crate::nn::layer_norm_eps;
use crate::weights::{Checkpoint, Declare, KeyMap, Load, Source, Weights};

/// The model name in errors.
const MODEL: &str = "clip";

/// The fields of an HF CLIP text `config.json` this port reads; absent or `null` ones take
/// [`ClipConfig::vit_l_14`]'s values.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ClipJson {
    vocab_size: Option<usize>,
    hidden_size: Option<usize>,
    intermediate_size: Option<usize>,
    num_hidden_layers: Option<usize>,
    num_attention_heads: Option<usize>,
    max_position_embeddings: Option<usize>,
    layer_norm_eps: Option<f64>,
    eos_token_id: Option<u32>,
    hidden_act: Option<String>,
}

/// Which position of each sequence gives the pooled output.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClipPooling {
    /// The first position of the highest token id (HF's rule when `eos_token_id == 2`, the legacy
    /// CLIP configs FLUX ships: `<|endoftext|>` is the last vocabulary entry).
    HighestId,
    /// The first position holding this id.
    FirstId(u32),
}

/// CLIP text-model hyper-parameters (HF `CLIPTextConfig`).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipConfig {
    /// Vocabulary size.
    pub vocab_size: usize,
    /// Width.
    pub hidden_size: usize,
    /// MLP width.
    pub intermediate_size: usize,
    /// Layers.
    pub num_hidden_layers: usize,
    /// Attention heads.
    pub num_attention_heads: usize,
    /// Positions (77).
    pub max_position_embeddings: usize,
    /// LayerNorm epsilon.
    pub layer_norm_eps: f64,
    /// Pooling rule.
    pub pooling: ClipPooling,
}

impl ClipConfig {
    /// openai/clip-vit-large-patch14's text model (FLUX.1's `text_encoder`).
    pub fn vit_l_14() -> Self {
        ClipConfig {
            vocab_size: 49_408,
            hidden_size: 768,
            intermediate_size: 3072,
            num_hidden_layers: 12,
            num_attention_heads: 12,
            max_position_embeddings: 77,
            layer_norm_eps: 1e-5,
            pooling: ClipPooling::HighestId,
        }
    }

    /// From an HF `config.json` object (missing fields take [`ClipConfig::vit_l_14`]'s values).
    /// Pooling follows HF: [`ClipPooling::HighestId`] when `eos_token_id` is 2 or absent, else
    /// [`ClipPooling::FirstId`] of `eos_token_id`. Only `quick_gelu` is supported.
    pub fn from_json(c: &serde_json::Value) -> Result<Self, ModelError> {
        let j = ClipJson::deserialize(c).map_err(|e| ModelError::json(MODEL, e))?;
        if let Some(value) = j.hidden_act.filter(|a| a != "quick_gelu") {
            return Err(ModelError::unsupported(
                MODEL,
                "hidden_act",
                value,
                "quick_gelu only",
            ));
        }
        let d = ClipConfig::vit_l_14();
        let cfg = ClipConfig {
            vocab_size: j.vocab_size.unwrap_or(d.vocab_size),
            hidden_size: j.hidden_size.unwrap_or(d.hidden_size),
            intermediate_size: j.intermediate_size.unwrap_or(d.intermediate_size),
            num_hidden_layers: j.num_hidden_layers.unwrap_or(d.num_hidden_layers),
            num_attention_heads: j.num_attention_heads.unwrap_or(d.num_attention_heads),
            max_position_embeddings: j
                .max_position_embeddings
                .unwrap_or(d.max_position_embeddings),
            layer_norm_eps: j.layer_norm_eps.unwrap_or(d.layer_norm_eps),
            pooling: match j.eos_token_id {
                None | Some(2) => ClipPooling::HighestId,
                Some(id) => ClipPooling::FirstId(id),
            },
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head width.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_attention_heads.max(1)
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), ModelError> {
        let bad = |rule| Err(ModelError::invalid(MODEL, rule));
        if self.vocab_size == 0
            || self.hidden_size == 0
            || self.intermediate_size == 0
            || self.num_hidden_layers == 0
            || self.num_attention_heads == 0
            || self.max_position_embeddings == 0
        {
            return bad("sizes must be non-zero");
        }
        if !self.hidden_size.is_multiple_of(self.num_attention_heads) {
            return bad("hidden_size must be a multiple of num_attention_heads");
        }
        Ok(())
    }

    /// The key map with every key under `prefix` (`"text_model"` for diffusers' `text_encoder/`,
    /// `""` for a bare text transformer); `{prefix}.embeddings.position_ids` (a buffer older
    /// checkpoints store) is ignored.
    pub fn key_map_with_prefix(&self, prefix: &str) -> KeyMap {
        Declare::key_map(|s| clip(s, self, prefix))
    }

    /// The diffusers `text_encoder/` key map (`text_model.` prefix).
    pub fn key_map(&self) -> KeyMap {
        self.key_map_with_prefix("text_model")
    }

    /// The prefix `ckpt` stores the model under: `"text_model"` when it holds
    /// `text_model.final_layer_norm.weight`, else `""`.
    pub fn prefix_of(ckpt: &Checkpoint) -> &'static str {
        if ckpt.contains("text_model.final_layer_norm.weight") {
            "text_model"
        } else {
            ""
        }
    }
}

/// An affine LayerNorm over the last dimension (statistics in f32).
#[derive(Module, Debug)]
struct Norm<B: Backend> {
    weight: Param<Tensor<B, 1>>,
    bias: Param<Tensor<B, 1>>,
}

impl<B: Backend> Norm<B> {
    fn forward(&self, x: Tensor<B, 3>, eps: f64) -> Tensor<B, 3> {
        layer_norm_eps(x, eps) * self.weight.val().unsqueeze::<3>()
            + self.bias.val().unsqueeze::<3>()
    }
}

/// One CLIP encoder layer.
#[derive(Module, Debug)]
pub(crate) struct ClipLayer<B: Backend> {
    ln1: Norm<B>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    out: Linear<B>,
    ln2: Norm<B>,
    fc1: Linear<B>,
    fc2: Linear<B>,
}

/// The CLIP text transformer.
#[derive(Module, Debug)]
pub struct ClipTextModel<B: Backend> {
    token_embedding: Embedding<B>,
    position_embedding: Param<Tensor<B, 2>>,
    layers: Vec<ClipLayer<B>>,
    final_norm: Norm<B>,
    #[module(skip)]
    config: ClipConfig,
}

/// A LayerNorm's weight and bias.
type NormOf<S> = [<S as Source>::Param<1>; 2];

/// A [`ClipLayer`] as a [`Source`] gives it.
struct Layer<S: Source> {
    q: S::Linear,
    k: S::Linear,
    v: S::Linear,
    out: S::Linear,
    ln1: NormOf<S>,
    ln2: NormOf<S>,
    fc1: S::Linear,
    fc2: S::Linear,
}

/// A [`ClipTextModel`] as a [`Source`] gives it.
struct Clip<S: Source> {
    token_embedding: S::Param<2>,
    position_embedding: S::Param<2>,
    layers: Vec<Layer<S>>,
    final_norm: NormOf<S>,
}

/// Every tensor of HF `CLIPTextModel` under `prefix` (`""`: none).
fn clip<S: Source>(s: &mut S, c: &ClipConfig, prefix: &str) -> Result<Clip<S>, S::Error> {
    let p = |k: &str| {
        if prefix.is_empty() {
            k.to_string()
        } else {
            format!("{prefix}.{k}")
        }
    };
    let (d, f) = (c.hidden_size, c.intermediate_size);
    let norm = |s: &mut S, key: String| -> Result<NormOf<S>, S::Error> {
        Ok([
            s.param(&format!("{key}.weight"), [d])?,
            s.param(&format!("{key}.bias"), [d])?,
        ])
    };
    let token_embedding = s.param(&p("embeddings.token_embedding.weight"), [c.vocab_size, d])?;
    let position_embedding = s.param(
        &p("embeddings.position_embedding.weight"),
        [c.max_position_embeddings, d],
    )?;
    s.ignore_prefix(&p("embeddings.position_ids"));
    let layers = (0..c.num_hidden_layers)
        .map(|i| {
            let l = p(&format!("encoder.layers.{i}"));
            let lin = |s: &mut S, name: &str, d_in, d_out| {
                s.linear(&format!("{l}.{name}"), d_in, d_out, true)
            };
            Ok(Layer {
                q: lin(s, "self_attn.q_proj", d, d)?,
                k: lin(s, "self_attn.k_proj", d, d)?,
                v: lin(s, "self_attn.v_proj", d, d)?,
                out: lin(s, "self_attn.out_proj", d, d)?,
                ln1: norm(s, format!("{l}.layer_norm1"))?,
                ln2: norm(s, format!("{l}.layer_norm2"))?,
                fc1: lin(s, "mlp.fc1", d, f)?,
                fc2: lin(s, "mlp.fc2", f, d)?,
            })
        })
        .collect::<Result<_, _>>()?;
    Ok(Clip {
        token_embedding,
        position_embedding,
        layers,
        final_norm: norm(s, p("final_layer_norm"))?,
    })
}

impl<B: Backend> From<[Param<Tensor<B, 1>>; 2]> for Norm<B> {
    fn from([weight, bias]: [Param<Tensor<B, 1>>; 2]) -> Self {
        Norm { weight, bias }
    }
}

/// The outputs FLUX uses.
#[derive(Debug, Clone)]
pub struct ClipOutput<B: Backend> {
    /// Last hidden states after the final LayerNorm, `[B, N, hidden]`.
    pub hidden: Tensor<B, 3>,
    /// Pooled output `[B, hidden]` (FLUX's `pooled_projections`).
    pub pooled: Tensor<B, 2>,
}

impl<B: Backend> ClipTextModel<B> {
    /// A text model with random weights (timing, memory checks) in `dtype`.
    pub fn random(
        config: &ClipConfig,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let (d, ff) = (config.hidden_size, config.intermediate_size);
        let lin = |i: usize, o: usize| burn::nn::LinearConfig::new(i, o).init::<B>(device);
        let norm = || Norm {
            weight: Param::from_tensor(Tensor::<B, 1>::ones([d], device)),
            bias: Param::from_tensor(Tensor::<B, 1>::zeros([d], device)),
        };
        let layers = (0..config.num_hidden_layers)
            .map(|_| ClipLayer {
                ln1: norm(),
                q: lin(d, d),
                k: lin(d, d),
                v: lin(d, d),
                out: lin(d, d),
                ln2: norm(),
                fc1: lin(d, ff),
                fc2: lin(ff, d),
            })
            .collect();
        let model = ClipTextModel {
            token_embedding: burn::nn::EmbeddingConfig::new(config.vocab_size, d).init(device),
            position_embedding: Param::from_tensor(Tensor::<B, 2>::random(
                [config.max_position_embeddings, d],
                burn::tensor::Distribution::Normal(0.0, 0.02),
                device,
            )),
            layers,
            final_norm: norm(),
            config: config.clone(),
        };
        Ok(crate::nn::cast_params(model, dtype))
    }

    /// Builds the model from validated weights whose keys are under `prefix` (see
    /// [`ClipConfig::key_map_with_prefix`]).
    pub fn from_weights(
        config: &ClipConfig,
        w: &Weights<'_, B>,
        prefix: &str,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let m = clip(&mut Load::new(w), config, prefix)?;
        Ok(ClipTextModel {
            token_embedding: Embedding {
                weight: m.token_embedding,
            },
            position_embedding: m.position_embedding,
            layers: m
                .layers
                .into_iter()
                .map(|l| ClipLayer {
                    ln1: l.ln1.into(),
                    q: l.q,
                    k: l.k,
                    v: l.v,
                    out: l.out,
                    ln2: l.ln2.into(),
                    fc1: l.fc1,
                    fc2: l.fc2,
                })
                .collect(),
            final_norm: m.final_norm.into(),
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &ClipConfig {
        &self.config
    }

    /// Hidden states and pooled output for token ids `[B, N]` (`N ≤ max_position_embeddings`).
    pub fn forward(&self, ids: Tensor<B, 2, Int>) -> Result<ClipOutput<B>, ModelError> {
        let cfg = &self.config;
        let [b, n] = ids.dims();
        if b == 0 || n == 0 || n > cfg.max_position_embeddings {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "ids",
                found: vec![b, n],
                expected: format!("[B, N] with 0 < N ≤ {}", cfg.max_position_embeddings),
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
        let positions = (0..b)
            .map(|r| {
                let row = &host[r * n..(r + 1) * n];
                match cfg.pooling {
                    ClipPooling::HighestId => {
                        let max = row.iter().copied().max().unwrap_or(0);
                        Ok(row.iter().position(|&i| i == max).unwrap_or(0))
                    }
                    ClipPooling::FirstId(id) => {
                        row.iter()
                            .position(|&i| i == id as i64)
                            .ok_or(ModelError::NoEndToken {
                                model: MODEL,
                                sequence: r,
                                token: id,
                            })
                    }
                }
            })
            .collect::<Result<Vec<usize>, _>>()?;

        let (h, hd, eps) = (cfg.num_attention_heads, cfg.head_dim(), cfg.layer_norm_eps);
        let d = cfg.hidden_size;
        let pos = self
            .position_embedding
            .val()
            .narrow(0, 0, n)
            .unsqueeze::<3>();
        let mut x = self.token_embedding.forward(ids) + pos;
        let dtype = x.dtype();
        // Causal, scaled by 1/√head_dim on the scores, softmax in f32 (HF CLIP).
        let options = AttentionOptions::default().with_precision(Precision::UpcastScores);
        for layer in &self.layers {
            let a = layer.ln1.forward(x.clone(), eps);
            let heads = |l: &Linear<B>| l.forward(a.clone()).reshape([b, n, h, hd]).swap_dims(1, 2);
            let att = attention(
                heads(&layer.q),
                heads(&layer.k),
                heads(&layer.v),
                Masks::default().with_causal(),
                options,
            )?;
            x = x + layer.out.forward(att);
            let f = layer.fc1.forward(layer.ln2.forward(x.clone(), eps));
            let f = f.clone() * sigmoid(f.mul_scalar(1.702));
            x = x + layer.fc2.forward(f);
        }
        let hidden = self.final_norm.forward(x, eps).cast(dtype);
        let pooled = Tensor::cat(
            positions
                .iter()
                .enumerate()
                .map(|(r, &p)| {
                    hidden
                        .clone()
                        .slice([r..r + 1, p..p + 1, 0..d])
                        .reshape([1, d])
                })
                .collect(),
            0,
        );
        Ok(ClipOutput { hidden, pooled })
    }
}

/// The key prefix is detected ([`ClipConfig::prefix_of`]).
impl CheckpointSpec for ClipConfig {
    type Layout = &'static str;

    fn layout(&self, checkpoint: &Checkpoint) -> Result<&'static str, ModelError> {
        self.validate()?;
        Ok(ClipConfig::prefix_of(checkpoint))
    }

    fn declare(&self, prefix: &&'static str) -> KeyMap {
        self.key_map_with_prefix(prefix)
    }
}

impl<B: Backend> Pretrained<B> for ClipTextModel<B> {
    type Config = ClipConfig;

    fn build(
        config: &ClipConfig,
        prefix: &'static str,
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        Self::from_weights(config, w, prefix)
    }
}
