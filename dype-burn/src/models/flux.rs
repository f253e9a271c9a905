//! FLUX.1 DiT (Black Forest Labs, FLUX.1-dev / FLUX.1-Krea-dev): MMDiT double-stream blocks with
//! separate text/image weights, fused single-stream blocks, RMS-normalised q/k, adaLN-Zero
//! modulation from `vec = time_in(1000·σ) + guidance_in(1000·g) + vector_in(pooled)`, 3-axis
//! interleaved RoPE over `[text; image]` tokens and a velocity (noise − data) output.
//! Reference: BFL `src/flux/{model,modules/layers}.py`, diffusers
//! `FluxTransformer2DModel`, official DyPE `flux/transformer_flux.py`.
//!
//! The model never computes RoPE: [`flux_rope`] and [`flux_positions`] give the dype-core rope and
//! the token ids for a [`crate::rotary::RotaryEmbedding`], whose tables are passed to
//! [`Flux::forward`]. Both checkpoint layouts load into the same module: the BFL one (fused qkv,
//! `double_blocks`/`single_blocks`) and the diffusers one (separate q/k/v, `transformer_blocks`,
//! `norm_out.linear` with (scale, shift) halves), detected from the keys.

use std::borrow::Borrow;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};
use thiserror::Error;

use super::common::{EPS, layer_norm, modulate, to_f32};
use crate::attention::{AttentionError, AttentionOptions, attention};
use crate::rotary::SamplePositions;
use crate::rotary::{PairLayout, RotaryError, RotaryTables};
use crate::weights::{Checkpoint, KeyMap, Weights, WeightsError};
use dype_core::DypeError;
use dype_core::presets::OfficialMethod;

/// Errors of the FLUX model.
#[derive(Debug, Error)]
pub enum FluxError {
    /// An input has the wrong shape.
    #[error("flux: {what} has shape {found:?}, expected {expected}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Shape given.
        found: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// A configuration value is invalid.
    #[error("flux: invalid configuration: {0}")]
    Config(String),
    /// The checkpoint is in neither the BFL nor the diffusers layout.
    #[error("flux: {0}")]
    Layout(String),
    /// Rotary embedding failure.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// Attention failure.
    #[error(transparent)]
    Attention(#[from] AttentionError),
    /// Weight loading failure.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The device failed while running the model.
    #[error("flux: device execution failed: {0}")]
    Execution(String),
}

/// FLUX hyper-parameters (BFL `FluxParams`).
#[derive(Debug, Clone, PartialEq)]
pub struct FluxConfig {
    /// Packed input/output channels (64 = 16 latent channels × 2×2).
    pub in_channels: usize,
    /// Pooled text vector width (768, CLIP-L).
    pub vec_in_dim: usize,
    /// Text token width (4096, T5-XXL).
    pub context_in_dim: usize,
    /// Hidden size (3072).
    pub hidden_size: usize,
    /// MLP ratio (4).
    pub mlp_ratio: f64,
    /// Attention heads (24).
    pub num_heads: usize,
    /// Double-stream blocks (19).
    pub depth: usize,
    /// Single-stream blocks (38).
    pub depth_single_blocks: usize,
    /// RoPE dims per id axis (16, 56, 56); sums to the head dim.
    pub axes_dim: Vec<usize>,
    /// RoPE base θ (10000).
    pub theta: f64,
    /// Whether the qkv projections have a bias.
    pub qkv_bias: bool,
    /// Whether the distilled guidance is embedded (`guidance_in`).
    pub guidance_embed: bool,
}

/// Which checkpoint naming the weights use.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FluxLayout {
    /// BFL `flux1-dev.safetensors` names (`img_in`, `double_blocks.{i}.img_attn.qkv`, …).
    Bfl,
    /// diffusers `FluxTransformer2DModel` names (`x_embedder`, `transformer_blocks.{i}.attn.to_q`, …).
    Diffusers,
}

impl FluxLayout {
    /// Detects the layout from a checkpoint's keys.
    pub fn detect(ckpt: &Checkpoint) -> Result<Self, FluxError> {
        let bfl =
            ckpt.contains("img_in.weight") || ckpt.keys().any(|k| k.starts_with("double_blocks."));
        let diff = ckpt.contains("x_embedder.weight")
            || ckpt.keys().any(|k| k.starts_with("transformer_blocks."));
        match (bfl, diff) {
            (true, false) => Ok(FluxLayout::Bfl),
            (false, true) => Ok(FluxLayout::Diffusers),
            (true, true) => Err(FluxError::Layout(format!(
                "{}: holds both BFL (`img_in`/`double_blocks`) and diffusers (`x_embedder`/`transformer_blocks`) keys",
                ckpt.path().display()
            ))),
            (false, false) => Err(FluxError::Layout(format!(
                "{}: neither a BFL (`img_in.weight`) nor a diffusers (`x_embedder.weight`) FLUX transformer checkpoint",
                ckpt.path().display()
            ))),
        }
    }
}

impl FluxConfig {
    /// FLUX.1-dev: 19 double + 38 single blocks, hidden 3072, 24 heads × 128, axes (16, 56, 56),
    /// θ 10⁴, in 64, context 4096, vec 768, guidance embedding.
    pub fn dev() -> Self {
        FluxConfig {
            in_channels: 64,
            vec_in_dim: 768,
            context_in_dim: 4096,
            hidden_size: 3072,
            mlp_ratio: 4.0,
            num_heads: 24,
            depth: 19,
            depth_single_blocks: 38,
            axes_dim: vec![16, 56, 56],
            theta: 10_000.0,
            qkv_bias: true,
            guidance_embed: true,
        }
    }

    /// FLUX.1-Krea-dev: the same architecture as dev.
    pub fn krea_dev() -> Self {
        Self::dev()
    }

    /// From a JSON object with BFL `FluxParams` names (`in_channels`, `vec_in_dim`,
    /// `context_in_dim`, `hidden_size`, `mlp_ratio`, `num_heads`, `depth`, `depth_single_blocks`,
    /// `axes_dim`, `theta`, `qkv_bias`, `guidance_embed`), e.g. a fixture's `config`.
    pub fn from_json(v: &serde_json::Value) -> Result<Self, FluxError> {
        let miss = |k: &str| FluxError::Config(format!("`{k}` missing or malformed"));
        let num = |k: &str| v.get(k).and_then(|x| x.as_f64()).ok_or_else(|| miss(k));
        let int = |k: &str| {
            v.get(k)
                .and_then(|x| x.as_u64())
                .map(|x| x as usize)
                .ok_or_else(|| miss(k))
        };
        let flag = |k: &str, d: bool| v.get(k).and_then(|x| x.as_bool()).unwrap_or(d);
        let axes_dim = v
            .get("axes_dim")
            .and_then(|a| a.as_array())
            .ok_or_else(|| miss("axes_dim"))?
            .iter()
            .map(|x| {
                x.as_u64()
                    .map(|x| x as usize)
                    .ok_or_else(|| miss("axes_dim"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let cfg = FluxConfig {
            in_channels: int("in_channels")?,
            vec_in_dim: int("vec_in_dim")?,
            context_in_dim: int("context_in_dim")?,
            hidden_size: int("hidden_size")?,
            mlp_ratio: num("mlp_ratio")?,
            num_heads: int("num_heads")?,
            depth: int("depth")?,
            depth_single_blocks: int("depth_single_blocks")?,
            axes_dim,
            theta: num("theta")?,
            qkv_bias: flag("qkv_bias", true),
            guidance_embed: flag("guidance_embed", false),
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head dimension `hidden / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// MLP hidden width `int(hidden · mlp_ratio)`.
    pub fn mlp_hidden(&self) -> usize {
        (self.hidden_size as f64 * self.mlp_ratio) as usize
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), FluxError> {
        let bad = |m: &str| Err(FluxError::Config(m.to_string()));
        if self.hidden_size == 0
            || self.num_heads == 0
            || self.in_channels == 0
            || self.context_in_dim == 0
            || self.vec_in_dim == 0
        {
            return bad("sizes must be non-zero");
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad("hidden_size must be a multiple of num_heads");
        }
        if self.axes_dim.iter().sum::<usize>() != self.head_dim()
            || self.axes_dim.iter().any(|d| d % 2 != 0 || *d == 0)
        {
            return bad("axes_dim must be even, non-zero and sum to the head dim");
        }
        if self.mlp_hidden() == 0 {
            return bad("mlp_ratio gives an empty MLP");
        }
        if !(self.theta.is_finite() && self.theta > 1.0) {
            return bad("theta must be finite and > 1");
        }
        Ok(())
    }

    /// The checkpoint key map of `layout`: every tensor of the transformer, PyTorch shapes.
    pub fn key_map(&self, layout: FluxLayout) -> KeyMap {
        match layout {
            FluxLayout::Bfl => self.key_map_bfl(),
            FluxLayout::Diffusers => self.key_map_diffusers(),
        }
    }

    fn key_map_bfl(&self) -> KeyMap {
        let (d, hd, mlp) = (self.hidden_size, self.head_dim(), self.mlp_hidden());
        let mut m = KeyMap::new();
        m.linear("img_in", self.in_channels, d, true);
        m.linear("txt_in", self.context_in_dim, d, true);
        let mut embedder = |p: &str, i: usize| {
            m.linear(&format!("{p}.in_layer"), i, d, true);
            m.linear(&format!("{p}.out_layer"), d, d, true);
        };
        embedder("time_in", 256);
        if self.guidance_embed {
            embedder("guidance_in", 256);
        }
        embedder("vector_in", self.vec_in_dim);
        for i in 0..self.depth {
            let p = format!("double_blocks.{i}");
            for s in ["img", "txt"] {
                m.linear(&format!("{p}.{s}_mod.lin"), d, 6 * d, true);
                m.linear(&format!("{p}.{s}_attn.qkv"), d, 3 * d, self.qkv_bias);
                m.tensor(format!("{p}.{s}_attn.norm.query_norm.scale"), &[hd]);
                m.tensor(format!("{p}.{s}_attn.norm.key_norm.scale"), &[hd]);
                m.linear(&format!("{p}.{s}_attn.proj"), d, d, true);
                m.linear(&format!("{p}.{s}_mlp.0"), d, mlp, true);
                m.linear(&format!("{p}.{s}_mlp.2"), mlp, d, true);
            }
        }
        for i in 0..self.depth_single_blocks {
            let p = format!("single_blocks.{i}");
            m.linear(&format!("{p}.modulation.lin"), d, 3 * d, true);
            m.linear(&format!("{p}.linear1"), d, 3 * d + mlp, true);
            m.linear(&format!("{p}.linear2"), d + mlp, d, true);
            m.tensor(format!("{p}.norm.query_norm.scale"), &[hd]);
            m.tensor(format!("{p}.norm.key_norm.scale"), &[hd]);
        }
        m.linear("final_layer.adaLN_modulation.1", d, 2 * d, true);
        m.linear("final_layer.linear", d, self.in_channels, true);
        m
    }

    fn key_map_diffusers(&self) -> KeyMap {
        let (d, hd, mlp) = (self.hidden_size, self.head_dim(), self.mlp_hidden());
        let mut m = KeyMap::new();
        m.linear("x_embedder", self.in_channels, d, true);
        m.linear("context_embedder", self.context_in_dim, d, true);
        let mut embedder = |p: &str, i: usize| {
            m.linear(&format!("time_text_embed.{p}.linear_1"), i, d, true);
            m.linear(&format!("time_text_embed.{p}.linear_2"), d, d, true);
        };
        embedder("timestep_embedder", 256);
        if self.guidance_embed {
            embedder("guidance_embedder", 256);
        }
        embedder("text_embedder", self.vec_in_dim);
        for i in 0..self.depth {
            let p = format!("transformer_blocks.{i}");
            m.linear(&format!("{p}.norm1.linear"), d, 6 * d, true);
            m.linear(&format!("{p}.norm1_context.linear"), d, 6 * d, true);
            for n in [
                "to_q",
                "to_k",
                "to_v",
                "add_q_proj",
                "add_k_proj",
                "add_v_proj",
            ] {
                m.linear(&format!("{p}.attn.{n}"), d, d, self.qkv_bias);
            }
            for n in ["norm_q", "norm_k", "norm_added_q", "norm_added_k"] {
                m.tensor(format!("{p}.attn.{n}.weight"), &[hd]);
            }
            m.linear(&format!("{p}.attn.to_out.0"), d, d, true);
            m.linear(&format!("{p}.attn.to_add_out"), d, d, true);
            for f in ["ff", "ff_context"] {
                m.linear(&format!("{p}.{f}.net.0.proj"), d, mlp, true);
                m.linear(&format!("{p}.{f}.net.2"), mlp, d, true);
            }
        }
        for i in 0..self.depth_single_blocks {
            let p = format!("single_transformer_blocks.{i}");
            m.linear(&format!("{p}.norm.linear"), d, 3 * d, true);
            for n in ["to_q", "to_k", "to_v"] {
                m.linear(&format!("{p}.attn.{n}"), d, d, self.qkv_bias);
            }
            m.linear(&format!("{p}.proj_mlp"), d, mlp, true);
            m.tensor(format!("{p}.attn.norm_q.weight"), &[hd]);
            m.tensor(format!("{p}.attn.norm_k.weight"), &[hd]);
            m.linear(&format!("{p}.proj_out"), d + mlp, d, true);
        }
        m.linear("norm_out.linear", d, 2 * d, true);
        m.linear("proj_out", d, self.in_channels, true);
        m
    }
}

/// `Linear → SiLU → Linear` (BFL `MLPEmbedder`).
#[derive(Module, Debug)]
pub struct MlpEmbedder<B: Backend> {
    in_layer: Linear<B>,
    out_layer: Linear<B>,
}

impl<B: Backend> MlpEmbedder<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out_layer.forward(silu(self.in_layer.forward(x)))
    }
}

/// One stream of a double block (image or text).
#[derive(Module, Debug)]
pub struct StreamWeights<B: Backend> {
    modulation: Linear<B>,
    qkv: Linear<B>,
    q_scale: Param<Tensor<B, 1>>,
    k_scale: Param<Tensor<B, 1>>,
    proj: Linear<B>,
    mlp_in: Linear<B>,
    mlp_out: Linear<B>,
}

/// A double-stream block: separate image/text weights, joint attention.
#[derive(Module, Debug)]
pub struct DoubleBlock<B: Backend> {
    img: StreamWeights<B>,
    txt: StreamWeights<B>,
}

/// A single-stream block on `[text; image]`: fused `linear1` (qkv | mlp) and `linear2`.
#[derive(Module, Debug)]
pub struct SingleBlock<B: Backend> {
    modulation: Linear<B>,
    linear1: Linear<B>,
    q_scale: Param<Tensor<B, 1>>,
    k_scale: Param<Tensor<B, 1>>,
    linear2: Linear<B>,
}

/// The FLUX transformer.
#[derive(Module, Debug)]
pub struct Flux<B: Backend> {
    img_in: Linear<B>,
    txt_in: Linear<B>,
    time_in: MlpEmbedder<B>,
    guidance_in: Option<MlpEmbedder<B>>,
    vector_in: MlpEmbedder<B>,
    double_blocks: Vec<DoubleBlock<B>>,
    single_blocks: Vec<SingleBlock<B>>,
    /// Final modulation, output halves in BFL order (shift, scale).
    final_mod: Linear<B>,
    final_linear: Linear<B>,
    #[module(skip)]
    config: FluxConfig,
}

/// BFL `RMSNorm` over head_dim with learned scale: `x · rsqrt(mean(x²) + 1e-6) · scale`.
fn rms_norm<B: Backend>(x: Tensor<B, 4>, scale: &Param<Tensor<B, 1>>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    // As BFL: normalise in f32, cast back, then apply the learned scale.
    let dtype = x.dtype();
    let xf = to_f32(x);
    let rrms = xf
        .clone()
        .powi_scalar(2)
        .mean_dim(3)
        .add_scalar(EPS)
        .sqrt()
        .recip();
    (xf * rrms).cast(dtype) * scale.val().reshape([1, 1, 1, hd])
}

fn gate<B: Backend>(x: Tensor<B, 3>, g: Tensor<B, 2>) -> Tensor<B, 3> {
    x * g.unsqueeze_dim(1)
}

/// FLUX's timestep embedding of `t` `[B]` (σ or guidance, *not* yet scaled): the argument is
/// `1000·t`, `f_i = exp(−ln(10⁴)·i/128)` (computed in f32 as torch does), output `[cos, sin]`
/// `[B, 256]`.
pub fn timestep_embedding<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let half = 128usize;
    let ln = -(10_000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (ln * i as f32 / half as f32).exp())
        .collect();
    let device = t.device();
    let f =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze_dim::<2>(0);
    let args = t.cast(DType::F32).mul_scalar(1000.0).unsqueeze_dim::<2>(1) * f;
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

/// Splits `[B, N, 3·D]` into q, k, v `[B, H, N, Dh]` ("B L (K H D) -> K B H L D").
fn split_qkv<B: Backend>(qkv: Tensor<B, 3>, heads: usize, hd: usize) -> [Tensor<B, 4>; 3] {
    let [b, n, _] = qkv.dims();
    let qkv = qkv.reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
    let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, hd]);
    [part(0), part(1), part(2)]
}

fn cat_linears<B: Backend>(parts: Vec<Linear<B>>) -> Linear<B> {
    let has_bias = parts.iter().all(|l| l.bias.is_some());
    let weight = Tensor::cat(parts.iter().map(|l| l.weight.val()).collect(), 1);
    let bias = has_bias.then(|| {
        Param::from_tensor(Tensor::cat(
            parts
                .iter()
                .filter_map(|l| l.bias.as_ref().map(|b| b.val()))
                .collect(),
            0,
        ))
    });
    Linear {
        weight: Param::from_tensor(weight),
        bias,
    }
}

/// Swaps the two output halves of a `Linear` (diffusers `norm_out` (scale, shift) → BFL (shift, scale)).
fn swap_halves<B: Backend>(l: Linear<B>) -> Linear<B> {
    let w = l.weight.val();
    let [i, o] = w.dims();
    let h = o / 2;
    let weight = Tensor::cat(vec![w.clone().narrow(1, h, h), w.narrow(1, 0, h)], 1);
    debug_assert_eq!(weight.dims(), [i, o]);
    let bias = l.bias.map(|b| {
        let b = b.val();
        Param::from_tensor(Tensor::cat(
            vec![b.clone().narrow(0, h, h), b.narrow(0, 0, h)],
            0,
        ))
    });
    Linear {
        weight: Param::from_tensor(weight),
        bias,
    }
}

/// A learned RMSNorm scale `key` as a parameter.
fn scale<B: Backend>(w: &Weights<'_, B>, key: String) -> Result<Param<Tensor<B, 1>>, WeightsError> {
    Ok(Param::from_tensor(w.tensor::<1>(&key)?))
}

impl<B: Backend> Flux<B> {
    /// A model with random weights (benchmarks, GPU timing). RMSNorm scales are 1.
    pub fn random(config: &FluxConfig, device: &B::Device) -> Result<Self, FluxError> {
        config.validate()?;
        let (d, hd, mlp) = (config.hidden_size, config.head_dim(), config.mlp_hidden());
        let lin = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let qkv = || {
            LinearConfig::new(d, 3 * d)
                .with_bias(config.qkv_bias)
                .init(device)
        };
        let ones = || Param::from_tensor(Tensor::ones([hd], device));
        let emb = |i: usize| MlpEmbedder {
            in_layer: lin(i, d),
            out_layer: lin(d, d),
        };
        let stream = || StreamWeights {
            modulation: lin(d, 6 * d),
            qkv: qkv(),
            q_scale: ones(),
            k_scale: ones(),
            proj: lin(d, d),
            mlp_in: lin(d, mlp),
            mlp_out: lin(mlp, d),
        };
        let single = || SingleBlock {
            modulation: lin(d, 3 * d),
            linear1: lin(d, 3 * d + mlp),
            q_scale: ones(),
            k_scale: ones(),
            linear2: lin(d + mlp, d),
        };
        Ok(Flux {
            img_in: lin(config.in_channels, d),
            txt_in: lin(config.context_in_dim, d),
            time_in: emb(256),
            guidance_in: config.guidance_embed.then(|| emb(256)),
            vector_in: emb(config.vec_in_dim),
            double_blocks: (0..config.depth)
                .map(|_| DoubleBlock {
                    img: stream(),
                    txt: stream(),
                })
                .collect(),
            single_blocks: (0..config.depth_single_blocks).map(|_| single()).collect(),
            final_mod: lin(d, 2 * d),
            final_linear: lin(d, config.in_channels),
            config: config.clone(),
        })
    }

    /// Builds the model from validated weights (see [`FluxConfig::key_map`]) in `layout`.
    pub fn from_weights(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, FluxError> {
        config.validate()?;
        match layout {
            FluxLayout::Bfl => Self::from_bfl(config, w),
            FluxLayout::Diffusers => Self::from_diffusers(config, w),
        }
    }

    fn from_bfl(config: &FluxConfig, w: &Weights<'_, B>) -> Result<Self, FluxError> {
        let double_blocks = (0..config.depth)
            .map(|i| Self::bfl_double(config, w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let single_blocks = (0..config.depth_single_blocks)
            .map(|i| Self::bfl_single(w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let mut model = Self::bfl_head(config, w)?;
        model.double_blocks = double_blocks;
        model.single_blocks = single_blocks;
        Ok(model)
    }

    /// The BFL embedders and final layer, without blocks.
    fn bfl_head(config: &FluxConfig, w: &Weights<'_, B>) -> Result<Self, WeightsError> {
        let emb = |p: &str| -> Result<MlpEmbedder<B>, WeightsError> {
            Ok(MlpEmbedder {
                in_layer: w.linear(&format!("{p}.in_layer"), true)?,
                out_layer: w.linear(&format!("{p}.out_layer"), true)?,
            })
        };
        Ok(Flux {
            img_in: w.linear("img_in", true)?,
            txt_in: w.linear("txt_in", true)?,
            time_in: emb("time_in")?,
            guidance_in: if config.guidance_embed {
                Some(emb("guidance_in")?)
            } else {
                None
            },
            vector_in: emb("vector_in")?,
            double_blocks: Vec::new(),
            single_blocks: Vec::new(),
            final_mod: w.linear("final_layer.adaLN_modulation.1", true)?,
            final_linear: w.linear("final_layer.linear", true)?,
            config: config.clone(),
        })
    }

    fn bfl_double(
        config: &FluxConfig,
        w: &Weights<'_, B>,
        i: usize,
    ) -> Result<DoubleBlock<B>, WeightsError> {
        let qb = config.qkv_bias;
        let stream = |p: &str| -> Result<StreamWeights<B>, WeightsError> {
            Ok(StreamWeights {
                modulation: w.linear(&format!("{p}_mod.lin"), true)?,
                qkv: w.linear(&format!("{p}_attn.qkv"), qb)?,
                q_scale: scale(w, format!("{p}_attn.norm.query_norm.scale"))?,
                k_scale: scale(w, format!("{p}_attn.norm.key_norm.scale"))?,
                proj: w.linear(&format!("{p}_attn.proj"), true)?,
                mlp_in: w.linear(&format!("{p}_mlp.0"), true)?,
                mlp_out: w.linear(&format!("{p}_mlp.2"), true)?,
            })
        };
        Ok(DoubleBlock {
            img: stream(&format!("double_blocks.{i}.img"))?,
            txt: stream(&format!("double_blocks.{i}.txt"))?,
        })
    }

    fn bfl_single(w: &Weights<'_, B>, i: usize) -> Result<SingleBlock<B>, WeightsError> {
        let p = format!("single_blocks.{i}");
        Ok(SingleBlock {
            modulation: w.linear(&format!("{p}.modulation.lin"), true)?,
            linear1: w.linear(&format!("{p}.linear1"), true)?,
            q_scale: scale(w, format!("{p}.norm.query_norm.scale"))?,
            k_scale: scale(w, format!("{p}.norm.key_norm.scale"))?,
            linear2: w.linear(&format!("{p}.linear2"), true)?,
        })
    }

    fn from_diffusers(config: &FluxConfig, w: &Weights<'_, B>) -> Result<Self, FluxError> {
        let double_blocks = (0..config.depth)
            .map(|i| Self::diffusers_double(config, w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let single_blocks = (0..config.depth_single_blocks)
            .map(|i| Self::diffusers_single(config, w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let mut model = Self::diffusers_head(config, w)?;
        model.double_blocks = double_blocks;
        model.single_blocks = single_blocks;
        Ok(model)
    }

    /// The diffusers embedders and final layer, without blocks.
    fn diffusers_head(config: &FluxConfig, w: &Weights<'_, B>) -> Result<Self, WeightsError> {
        let emb = |p: &str| -> Result<MlpEmbedder<B>, WeightsError> {
            Ok(MlpEmbedder {
                in_layer: w.linear(&format!("time_text_embed.{p}.linear_1"), true)?,
                out_layer: w.linear(&format!("time_text_embed.{p}.linear_2"), true)?,
            })
        };
        Ok(Flux {
            img_in: w.linear("x_embedder", true)?,
            txt_in: w.linear("context_embedder", true)?,
            time_in: emb("timestep_embedder")?,
            guidance_in: if config.guidance_embed {
                Some(emb("guidance_embedder")?)
            } else {
                None
            },
            vector_in: emb("text_embedder")?,
            double_blocks: Vec::new(),
            single_blocks: Vec::new(),
            final_mod: swap_halves(w.linear("norm_out.linear", true)?),
            final_linear: w.linear("proj_out", true)?,
            config: config.clone(),
        })
    }

    fn diffusers_double(
        config: &FluxConfig,
        w: &Weights<'_, B>,
        i: usize,
    ) -> Result<DoubleBlock<B>, WeightsError> {
        let qb = config.qkv_bias;
        let p = format!("transformer_blocks.{i}");
        let a = format!("{p}.attn");
        let qkv = |names: [&str; 3]| -> Result<Linear<B>, WeightsError> {
            Ok(cat_linears(
                names
                    .iter()
                    .map(|n| w.linear(&format!("{a}.{n}"), qb))
                    .collect::<Result<Vec<_>, _>>()?,
            ))
        };
        Ok(DoubleBlock {
            img: StreamWeights {
                modulation: w.linear(&format!("{p}.norm1.linear"), true)?,
                qkv: qkv(["to_q", "to_k", "to_v"])?,
                q_scale: scale(w, format!("{a}.norm_q.weight"))?,
                k_scale: scale(w, format!("{a}.norm_k.weight"))?,
                proj: w.linear(&format!("{a}.to_out.0"), true)?,
                mlp_in: w.linear(&format!("{p}.ff.net.0.proj"), true)?,
                mlp_out: w.linear(&format!("{p}.ff.net.2"), true)?,
            },
            txt: StreamWeights {
                modulation: w.linear(&format!("{p}.norm1_context.linear"), true)?,
                qkv: qkv(["add_q_proj", "add_k_proj", "add_v_proj"])?,
                q_scale: scale(w, format!("{a}.norm_added_q.weight"))?,
                k_scale: scale(w, format!("{a}.norm_added_k.weight"))?,
                proj: w.linear(&format!("{a}.to_add_out"), true)?,
                mlp_in: w.linear(&format!("{p}.ff_context.net.0.proj"), true)?,
                mlp_out: w.linear(&format!("{p}.ff_context.net.2"), true)?,
            },
        })
    }

    fn diffusers_single(
        config: &FluxConfig,
        w: &Weights<'_, B>,
        i: usize,
    ) -> Result<SingleBlock<B>, WeightsError> {
        let qb = config.qkv_bias;
        let p = format!("single_transformer_blocks.{i}");
        let mut parts = ["to_q", "to_k", "to_v"]
            .iter()
            .map(|n| w.linear(&format!("{p}.attn.{n}"), qb))
            .collect::<Result<Vec<_>, _>>()?;
        parts.push(w.linear(&format!("{p}.proj_mlp"), true)?);
        if !qb {
            // BFL's linear1 always has a bias; without qkv bias the q/k/v part is zero.
            let dev = w.device();
            for l in parts.iter_mut().take(3) {
                let o = l.weight.dims()[1];
                l.bias = Some(Param::from_tensor(Tensor::zeros([o], dev)));
            }
        }
        Ok(SingleBlock {
            modulation: w.linear(&format!("{p}.norm.linear"), true)?,
            linear1: cat_linears(parts),
            q_scale: scale(w, format!("{p}.attn.norm_q.weight"))?,
            k_scale: scale(w, format!("{p}.attn.norm_k.weight"))?,
            linear2: w.linear(&format!("{p}.proj_out"), true)?,
        })
    }

    /// The embedders and final layer of `layout`, without blocks.
    fn head(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, WeightsError> {
        match layout {
            FluxLayout::Bfl => Self::bfl_head(config, w),
            FluxLayout::Diffusers => Self::diffusers_head(config, w),
        }
    }

    /// Double block `i` of `layout`.
    fn double_block(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
        i: usize,
    ) -> Result<DoubleBlock<B>, WeightsError> {
        match layout {
            FluxLayout::Bfl => Self::bfl_double(config, w, i),
            FluxLayout::Diffusers => Self::diffusers_double(config, w, i),
        }
    }

    /// Single block `i` of `layout`.
    fn single_block(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
        i: usize,
    ) -> Result<SingleBlock<B>, WeightsError> {
        match layout {
            FluxLayout::Bfl => Self::bfl_single(w, i),
            FluxLayout::Diffusers => Self::diffusers_single(config, w, i),
        }
    }

    /// Opens `path` (one safetensors file, a sharded `*.safetensors.index.json`, or a folder
    /// holding either), detects the BFL or diffusers layout from its keys, validates every key,
    /// shape and dtype against [`FluxConfig::key_map`] before building anything, and builds the
    /// model on `device` in `dtype` (weights are cast on load, e.g. a bf16 file to f32).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        config: &FluxConfig,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, FluxError> {
        config.validate()?;
        let ckpt = Checkpoint::open(path)?;
        let layout = FluxLayout::detect(&ckpt)?;
        let map = config.key_map(layout);
        let w = ckpt.load::<B>(&map, dtype, device)?;
        Self::from_weights(config, layout, &w)
    }

    /// The configuration.
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }

    /// The velocity (noise − data) for packed image tokens `img` `[B, N, in_channels]`, text
    /// tokens `txt` `[B, L, context_in_dim]`, `timesteps` `[B]` (σ in [0, 1]; the model scales it
    /// by 1000), pooled text `y` `[B, vec_in_dim]`, `guidance` `[B]` (required iff the model embeds
    /// guidance) and rotary tables over the `L + N` tokens `[text; image]` in that order (built
    /// from the ids `[txt_ids; img_ids]`, see [`flux_positions`]). Returns `[B, N, in_channels]`.
    pub fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, FluxError> {
        self.forward_with(
            img,
            txt,
            timesteps,
            y,
            guidance,
            rope,
            self.double_blocks.iter().map(Ok),
            self.single_blocks.iter().map(Ok),
        )
    }

    /// [`Flux::forward`] with the embedders and final layer of `self` and the blocks given by
    /// `doubles` and `singles` (`config.depth` and `config.depth_single_blocks` of them), each
    /// dropped as soon as it has run: the resident blocks, or blocks materialised one by one
    /// ([`StreamedFlux`]).
    #[allow(clippy::too_many_arguments)]
    fn forward_with<D, S>(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
        doubles: impl Iterator<Item = Result<D, FluxError>>,
        singles: impl Iterator<Item = Result<S, FluxError>>,
    ) -> Result<Tensor<B, 3>, FluxError>
    where
        D: Borrow<DoubleBlock<B>>,
        S: Borrow<SingleBlock<B>>,
    {
        let cfg = &self.config;
        let [b, n, c] = img.dims();
        let shape = |what: &'static str, found: &[usize], expected: String| {
            Err(FluxError::Shape {
                what,
                found: found.to_vec(),
                expected,
            })
        };
        if c != cfg.in_channels {
            return shape("img", &[b, n, c], format!("[B, N, {}]", cfg.in_channels));
        }
        let [tb, l, tc] = txt.dims();
        if tb != b || tc != cfg.context_in_dim {
            return shape(
                "txt",
                &[tb, l, tc],
                format!("[{b}, L, {}]", cfg.context_in_dim),
            );
        }
        if timesteps.dims() != [b] {
            return shape("timesteps", &timesteps.dims(), format!("[{b}]"));
        }
        if y.dims() != [b, cfg.vec_in_dim] {
            return shape("y", &y.dims(), format!("[{b}, {}]", cfg.vec_in_dim));
        }
        if rope.tokens() != l + n
            || (rope.batch() != 1 && rope.batch() != b)
            || rope.head_dim() != cfg.head_dim()
        {
            return shape(
                "rotary tables",
                &[rope.batch(), rope.tokens(), rope.head_dim()],
                format!("[1 or {b}, {} (text + image), {}]", l + n, cfg.head_dim()),
            );
        }
        // Inputs follow the weights' dtype (a bf16 model takes f32 states); the velocity is
        // returned in the image input's dtype. The timestep features are computed in f32 first.
        let (in_dtype, dtype) = (img.dtype(), self.img_in.weight.val().dtype());
        let (img, txt, y) = (img.cast(dtype), txt.cast(dtype), y.cast(dtype));
        let mut vec = self
            .time_in
            .forward(timestep_embedding(timesteps).cast(dtype));
        match (&self.guidance_in, guidance) {
            (Some(g_in), Some(g)) => {
                if g.dims() != [b] {
                    return shape("guidance", &g.dims(), format!("[{b}]"));
                }
                vec = vec + g_in.forward(timestep_embedding(g).cast(dtype));
            }
            (Some(_), None) => {
                return Err(FluxError::Config(
                    "this model embeds guidance: pass a guidance value".into(),
                ));
            }
            (None, _) => {}
        }
        let vec = vec + self.vector_in.forward(y);
        let svec = silu(vec);
        let mut img = self.img_in.forward(img);
        let mut txt = self.txt_in.forward(txt);
        for block in doubles {
            (img, txt) = block?.borrow().forward(img, txt, &svec, rope, cfg)?;
        }
        let mut x = Tensor::cat(vec![txt, img], 1);
        for block in singles {
            x = block?.borrow().forward(x, &svec, rope, cfg)?;
        }
        let img = x.narrow(1, l, n);
        let m = self.final_mod.forward(svec).chunk(2, 1);
        Ok(self
            .final_linear
            .forward(modulate(layer_norm(img), m[0].clone(), m[1].clone()))
            .cast(in_dtype))
    }
}

impl<B: Backend> StreamWeights<B> {
    /// Modulations (6 × `[B, D]`) and the normed q, k and v of this stream.
    fn attn_inputs(
        &self,
        x: Tensor<B, 3>,
        svec: &Tensor<B, 2>,
        cfg: &FluxConfig,
    ) -> (Vec<Tensor<B, 2>>, [Tensor<B, 4>; 3]) {
        let m = self.modulation.forward(svec.clone()).chunk(6, 1);
        let a = modulate(layer_norm(x), m[0].clone(), m[1].clone());
        let [q, k, v] = split_qkv(self.qkv.forward(a), cfg.num_heads, cfg.head_dim());
        (
            m,
            [rms_norm(q, &self.q_scale), rms_norm(k, &self.k_scale), v],
        )
    }

    fn finish(&self, x: Tensor<B, 3>, att: Tensor<B, 3>, m: &[Tensor<B, 2>]) -> Tensor<B, 3> {
        let x = x + gate(self.proj.forward(att), m[2].clone());
        let h = modulate(layer_norm(x.clone()), m[3].clone(), m[4].clone());
        x.clone()
            + gate(
                self.mlp_out
                    .forward(gelu_approximate(self.mlp_in.forward(h))),
                m[5].clone(),
            )
    }
}

impl<B: Backend> DoubleBlock<B> {
    fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        svec: &Tensor<B, 2>,
        rope: &RotaryTables<B>,
        cfg: &FluxConfig,
    ) -> Result<(Tensor<B, 3>, Tensor<B, 3>), FluxError> {
        let (l, n) = (txt.dims()[1], img.dims()[1]);
        let (im, [iq, ik, iv]) = self.img.attn_inputs(img.clone(), svec, cfg);
        let (tm, [tq, tk, tv]) = self.txt.attn_inputs(txt.clone(), svec, cfg);
        let q = rope.apply(Tensor::cat(vec![tq, iq], 2), PairLayout::Interleaved)?;
        let k = rope.apply(Tensor::cat(vec![tk, ik], 2), PairLayout::Interleaved)?;
        let v = Tensor::cat(vec![tv, iv], 2);
        let att = attention(q, k, v, None, AttentionOptions::default())?;
        let (t_att, i_att) = (att.clone().narrow(1, 0, l), att.narrow(1, l, n));
        Ok((
            self.img.finish(img, i_att, &im),
            self.txt.finish(txt, t_att, &tm),
        ))
    }
}

impl<B: Backend> SingleBlock<B> {
    fn forward(
        &self,
        x: Tensor<B, 3>,
        svec: &Tensor<B, 2>,
        rope: &RotaryTables<B>,
        cfg: &FluxConfig,
    ) -> Result<Tensor<B, 3>, FluxError> {
        let d = cfg.hidden_size;
        let m = self.modulation.forward(svec.clone()).chunk(3, 1);
        let a = modulate(layer_norm(x.clone()), m[0].clone(), m[1].clone());
        let h = self.linear1.forward(a);
        let mlp = h.clone().narrow(2, 3 * d, cfg.mlp_hidden());
        let [q, k, v] = split_qkv(h.narrow(2, 0, 3 * d), cfg.num_heads, cfg.head_dim());
        let q = rope.apply(rms_norm(q, &self.q_scale), PairLayout::Interleaved)?;
        let k = rope.apply(rms_norm(k, &self.k_scale), PairLayout::Interleaved)?;
        let att = attention(q, k, v, None, AttentionOptions::default())?;
        let out = self
            .linear2
            .forward(Tensor::cat(vec![att, gelu_approximate(mlp)], 2));
        Ok(x + gate(out, m[2].clone()))
    }
}

/// A model that gives FLUX velocities: the resident [`Flux`] or the block-streaming
/// [`StreamedFlux`]. The pipeline (`crate::pipeline::flux`) takes either.
pub trait FluxDenoiser<B: Backend> {
    /// The configuration.
    fn config(&self) -> &FluxConfig;

    /// The dtype of the weights (the dtype the image, text and pooled inputs are best given in).
    fn weight_dtype(&self) -> DType;

    /// The velocity, exactly as [`Flux::forward`] computes it.
    fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, FluxError>;
}

impl<B: Backend> FluxDenoiser<B> for Flux<B> {
    fn config(&self) -> &FluxConfig {
        Flux::config(self)
    }

    fn weight_dtype(&self) -> DType {
        self.img_in.weight.val().dtype()
    }

    fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, FluxError> {
        Flux::forward(self, img, txt, timesteps, y, guidance, rope)
    }
}

/// One parameter tensor in host memory, in the dtype it had on the device.
#[derive(Debug, Clone)]
struct HostParam {
    data: TensorData,
    dtype: DType,
}

impl HostParam {
    fn new<B: Backend, const D: usize>(t: Tensor<B, D>) -> Self {
        let dtype = t.dtype();
        HostParam {
            data: t.into_data(),
            dtype,
        }
    }

    fn param<B: Backend, const D: usize>(&self, device: &B::Device) -> Param<Tensor<B, D>> {
        Param::from_tensor(Tensor::from_data(self.data.clone(), (device, self.dtype)))
    }

    fn bytes(&self) -> usize {
        self.data.bytes.len()
    }
}

/// A `Linear` in host memory.
#[derive(Debug, Clone)]
struct HostLinear {
    weight: HostParam,
    bias: Option<HostParam>,
}

impl HostLinear {
    fn new<B: Backend>(l: Linear<B>) -> Self {
        HostLinear {
            weight: HostParam::new(l.weight.val()),
            bias: l.bias.map(|b| HostParam::new(b.val())),
        }
    }

    fn linear<B: Backend>(&self, device: &B::Device) -> Linear<B> {
        Linear {
            weight: self.weight.param(device),
            bias: self.bias.as_ref().map(|b| b.param(device)),
        }
    }

    fn bytes(&self) -> usize {
        self.weight.bytes() + self.bias.as_ref().map_or(0, HostParam::bytes)
    }
}

/// A [`StreamWeights`] in host memory.
#[derive(Debug, Clone)]
struct HostStream {
    modulation: HostLinear,
    qkv: HostLinear,
    q_scale: HostParam,
    k_scale: HostParam,
    proj: HostLinear,
    mlp_in: HostLinear,
    mlp_out: HostLinear,
}

impl HostStream {
    fn new<B: Backend>(s: StreamWeights<B>) -> Self {
        HostStream {
            modulation: HostLinear::new(s.modulation),
            qkv: HostLinear::new(s.qkv),
            q_scale: HostParam::new(s.q_scale.val()),
            k_scale: HostParam::new(s.k_scale.val()),
            proj: HostLinear::new(s.proj),
            mlp_in: HostLinear::new(s.mlp_in),
            mlp_out: HostLinear::new(s.mlp_out),
        }
    }

    fn weights<B: Backend>(&self, device: &B::Device) -> StreamWeights<B> {
        StreamWeights {
            modulation: self.modulation.linear(device),
            qkv: self.qkv.linear(device),
            q_scale: self.q_scale.param(device),
            k_scale: self.k_scale.param(device),
            proj: self.proj.linear(device),
            mlp_in: self.mlp_in.linear(device),
            mlp_out: self.mlp_out.linear(device),
        }
    }

    fn bytes(&self) -> usize {
        [
            &self.modulation,
            &self.qkv,
            &self.proj,
            &self.mlp_in,
            &self.mlp_out,
        ]
        .iter()
        .map(|l| l.bytes())
        .sum::<usize>()
            + self.q_scale.bytes()
            + self.k_scale.bytes()
    }
}

/// A [`DoubleBlock`] in host memory.
#[derive(Debug, Clone)]
struct HostDouble {
    img: HostStream,
    txt: HostStream,
}

impl HostDouble {
    fn new<B: Backend>(b: DoubleBlock<B>) -> Self {
        HostDouble {
            img: HostStream::new(b.img),
            txt: HostStream::new(b.txt),
        }
    }

    fn block<B: Backend>(&self, device: &B::Device) -> DoubleBlock<B> {
        DoubleBlock {
            img: self.img.weights(device),
            txt: self.txt.weights(device),
        }
    }

    fn bytes(&self) -> usize {
        self.img.bytes() + self.txt.bytes()
    }
}

/// A [`SingleBlock`] in host memory.
#[derive(Debug, Clone)]
struct HostSingle {
    modulation: HostLinear,
    linear1: HostLinear,
    q_scale: HostParam,
    k_scale: HostParam,
    linear2: HostLinear,
}

impl HostSingle {
    fn new<B: Backend>(b: SingleBlock<B>) -> Self {
        HostSingle {
            modulation: HostLinear::new(b.modulation),
            linear1: HostLinear::new(b.linear1),
            q_scale: HostParam::new(b.q_scale.val()),
            k_scale: HostParam::new(b.k_scale.val()),
            linear2: HostLinear::new(b.linear2),
        }
    }

    fn block<B: Backend>(&self, device: &B::Device) -> SingleBlock<B> {
        SingleBlock {
            modulation: self.modulation.linear(device),
            linear1: self.linear1.linear(device),
            q_scale: self.q_scale.param(device),
            k_scale: self.k_scale.param(device),
            linear2: self.linear2.linear(device),
        }
    }

    fn bytes(&self) -> usize {
        self.modulation.bytes()
            + self.linear1.bytes()
            + self.linear2.bytes()
            + self.q_scale.bytes()
            + self.k_scale.bytes()
    }
}

/// FLUX with only the embedders and the final layer resident on the device; the transformer
/// blocks live in host memory (as [`TensorData`], in the load dtype) and every
/// [`forward`](StreamedFlux::forward) uploads them one block at a time, runs the block, waits
/// for the device and drops it before the next one is uploaded.
///
/// This trades speed for memory: device memory holds one block plus the activations instead of
/// all 57 blocks (≈ 23 GB in bf16 for FLUX.1-dev), at the cost of uploading every block at every
/// step and losing the overlap of consecutive blocks. Host memory holds the whole DiT. The
/// velocities are exactly those of [`Flux::forward`] on the same weights.
#[derive(Debug)]
pub struct StreamedFlux<B: Backend> {
    /// Embedders and final layer (no blocks).
    head: Flux<B>,
    double_blocks: Vec<HostDouble>,
    single_blocks: Vec<HostSingle>,
    device: B::Device,
}

impl<B: Backend> StreamedFlux<B> {
    /// Like [`Flux::load`] (same layouts, and the whole checkpoint is validated against
    /// [`FluxConfig::key_map`] before anything is built), but only the embedders and the final
    /// layer stay on `device`: each block is built on `device` in `dtype`, copied to host memory
    /// and dropped before the next one is built.
    pub fn load(
        path: impl AsRef<std::path::Path>,
        config: &FluxConfig,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, FluxError> {
        config.validate()?;
        let ckpt = Checkpoint::open(path)?;
        let layout = FluxLayout::detect(&ckpt)?;
        let map = config.key_map(layout);
        let w = ckpt.load::<B>(&map, dtype, device)?;
        Self::from_weights(config, layout, &w)
    }

    /// Builds the model from validated weights (see [`Flux::from_weights`]), one block at a time.
    pub fn from_weights(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, FluxError> {
        config.validate()?;
        let head = Flux::head(config, layout, w)?;
        let double_blocks = (0..config.depth)
            .map(|i| Flux::double_block(config, layout, w, i).map(HostDouble::new))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        let single_blocks = (0..config.depth_single_blocks)
            .map(|i| Flux::single_block(config, layout, w, i).map(HostSingle::new))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        Ok(StreamedFlux {
            head,
            double_blocks,
            single_blocks,
            device: w.device().clone(),
        })
    }

    /// Moves the blocks of a resident model to host memory.
    pub fn from_flux(model: Flux<B>) -> Self {
        let mut head = model;
        let device = head.img_in.weight.val().device();
        let double_blocks = std::mem::take(&mut head.double_blocks)
            .into_iter()
            .map(HostDouble::new)
            .collect();
        let single_blocks = std::mem::take(&mut head.single_blocks)
            .into_iter()
            .map(HostSingle::new)
            .collect();
        StreamedFlux {
            head,
            double_blocks,
            single_blocks,
            device,
        }
    }

    /// The configuration.
    pub fn config(&self) -> &FluxConfig {
        self.head.config()
    }

    /// The device the blocks are uploaded to.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Bytes of block weights held in host memory.
    pub fn host_bytes(&self) -> usize {
        self.double_blocks
            .iter()
            .map(HostDouble::bytes)
            .sum::<usize>()
            + self
                .single_blocks
                .iter()
                .map(HostSingle::bytes)
                .sum::<usize>()
    }

    /// The velocity: the same inputs, checks and result as [`Flux::forward`], with the blocks
    /// uploaded one at a time.
    pub fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, FluxError> {
        let device = &self.device;
        // Waiting for the device before each upload bounds the weights on it to one block (the
        // previous block is dropped by then); without it the host could enqueue every upload.
        let sync = || B::sync(device).map_err(|e| FluxError::Execution(e.to_string()));
        self.head.forward_with(
            img,
            txt,
            timesteps,
            y,
            guidance,
            rope,
            self.double_blocks.iter().map(|b| {
                sync()?;
                Ok(b.block::<B>(device))
            }),
            self.single_blocks.iter().map(|b| {
                sync()?;
                Ok(b.block::<B>(device))
            }),
        )
    }
}

impl<B: Backend> FluxDenoiser<B> for StreamedFlux<B> {
    fn config(&self) -> &FluxConfig {
        StreamedFlux::config(self)
    }

    fn weight_dtype(&self) -> DType {
        self.head.weight_dtype()
    }

    fn forward(
        &self,
        img: Tensor<B, 3>,
        txt: Tensor<B, 3>,
        timesteps: Tensor<B, 1>,
        y: Tensor<B, 2>,
        guidance: Option<Tensor<B, 1>>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, FluxError> {
        StreamedFlux::forward(self, img, txt, timesteps, y, guidance, rope)
    }
}

/// The dype-core rope of the official DyPE FLUX code (`FluxPosEmbed`) for `config`'s axes and θ:
/// `method` (base / ntk / yarn), DyPE on or off, trained extent `base_tokens` per axis (64 for
/// FLUX.1 at 1024²).
pub fn flux_rope(
    config: &FluxConfig,
    method: OfficialMethod,
    dype: bool,
    base_tokens: f64,
) -> Result<dype_core::AxialRope, DypeError> {
    dype_core::presets::official_flux(method, dype, config.theta, &config.axes_dim, base_tokens)
}

/// The token ids `[txt_ids; img_ids]` of FLUX (text `(0,0,0)`, image `(0, row, col)` row-major over
/// `h × w` tokens) as positions for a [`crate::rotary::RotaryEmbedding`], with the official extents
/// `max(id) + 1` per axis.
pub fn flux_positions(
    text_tokens: usize,
    h: usize,
    w: usize,
) -> Result<SamplePositions, DypeError> {
    SamplePositions::from_ids(
        &dype_core::table::flux_ids(text_tokens, h, w)?,
        3,
        dype_core::table::ExtentRule::MaxPlusOne,
    )
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::rotary::RotaryEmbedding;

    type B = crate::backend::Cpu;

    fn tiny() -> FluxConfig {
        FluxConfig {
            in_channels: 64,
            vec_in_dim: 12,
            context_in_dim: 24,
            hidden_size: 64,
            mlp_ratio: 4.0,
            num_heads: 2,
            depth: 1,
            depth_single_blocks: 1,
            axes_dim: vec![8, 12, 12],
            theta: 10_000.0,
            qkv_bias: true,
            guidance_embed: true,
        }
    }

    #[test]
    fn dev_config_is_valid_and_maps_every_tensor() {
        let cfg = FluxConfig::dev();
        cfg.validate().expect("valid");
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.key_map(FluxLayout::Bfl).specs().len(), 780);
        assert_eq!(cfg.key_map(FluxLayout::Diffusers).specs().len(), 1160);
    }

    #[test]
    fn random_model_forward_shapes_and_checks() {
        let cfg = tiny();
        let device = Default::default();
        let model = Flux::<B>::random(&cfg, &device).expect("model");
        let (l, h, w) = (3, 4, 5);
        let rope = flux_rope(&cfg, OfficialMethod::Yarn, true, 4.0).expect("rope");
        let mut rot = RotaryEmbedding::<B>::batch(
            rope,
            vec![flux_positions(l, h, w).expect("ids")],
            PairLayout::Interleaved,
            &device,
        )
        .expect("rot");
        rot.set_timestep(dype_core::Sigma::new(0.5).expect("t"))
            .expect("step");
        let img = Tensor::<B, 3>::zeros([1, h * w, 64], &device);
        let txt = Tensor::<B, 3>::zeros([1, l, 24], &device);
        let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
        let y = Tensor::<B, 2>::zeros([1, 12], &device);
        let g = Some(t.clone());
        let out = model
            .forward(
                img.clone(),
                txt.clone(),
                t.clone(),
                y.clone(),
                g.clone(),
                rot.tables(),
            )
            .expect("forward");
        assert_eq!(out.dims(), [1, h * w, 64]);
        // Missing guidance and a table for the wrong token count are errors, not panics.
        assert!(
            model
                .forward(
                    img.clone(),
                    txt.clone(),
                    t.clone(),
                    y.clone(),
                    None,
                    rot.tables()
                )
                .is_err()
        );
        let mut other = RotaryEmbedding::<B>::batch(
            flux_rope(&cfg, OfficialMethod::Base, false, 4.0).expect("rope"),
            vec![flux_positions(l + 1, h, w).expect("ids")],
            PairLayout::Interleaved,
            &device,
        )
        .expect("rot");
        other.set_static().expect("step");
        assert!(model.forward(img, txt, t, y, g, other.tables()).is_err());
    }
}
