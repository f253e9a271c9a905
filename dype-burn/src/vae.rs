//! AutoencoderKL decoder (the diffusers `Decoder` graph) for SD-VAE (4 latent channels) and the
//! FLUX VAE (16 channels, shift factor), with strict loading from diffusers or BFL/LDM
//! checkpoints, tiled decoding for large images and RGB8 conversion.
//!
//! Graph (diffusers `vae.py` `Decoder`, `UNetMidBlock2D`, `UpDecoderBlock2D`, `ResnetBlock2D`):
//! `post_quant_conv` (1×1, optional) → `conv_in` (3×3) → mid block (resnet → single-head
//! self-attention with GroupNorm and residual → resnet) → up blocks in reversed channel order,
//! each with `layers_per_block + 1` resnets and, except the last, a nearest ×2 upsample followed
//! by a 3×3 conv → GroupNorm → SiLU → `conv_out` (3×3). Every GroupNorm uses ε = 1e-6.
//!
//! [`VaeDecoder::decode`] applies `z = latent / scaling_factor + shift_factor` first.
//!
//! Key layouts (auto-detected by [`detect_layout`]):
//! * diffusers ([`VaeLayout::Diffusers`]) — `decoder.mid_block.attentions.0.{group_norm,to_q,to_k,to_v,to_out.0}`,
//!   `decoder.up_blocks.{i}.resnets.{j}.{norm1,conv1,norm2,conv2,conv_shortcut}`,
//!   `decoder.up_blocks.{i}.upsamplers.0.conv`, `decoder.conv_norm_out`;
//! * legacy diffusers ([`VaeLayout::DiffusersLegacy`]) — the same with attention `query/key/value/proj_attn`;
//! * BFL ([`VaeLayout::Bfl`]) — BFL `ae.safetensors` / LDM names: `decoder.mid.{block_1,attn_1,block_2}`,
//!   `attn_1.{norm,q,k,v,proj_out}`, `decoder.up.{L}.block.{j}` with `nin_shortcut`,
//!   `decoder.up.{L}.upsample.conv`, `decoder.norm_out`, where `L` counts the levels in
//!   **reverse** (`up.{n-1}` runs first).
//!
//! The attention projections accept `[C, C]` Linear and `[C, C, 1, 1]` 1×1-conv weights in every
//! layout. Keys may sit under a common prefix (e.g. `first_stage_model.` or `vae.`), found from
//! the position of `decoder.conv_in.weight`; `encoder.*` and `quant_conv.*` under that prefix
//! and keys outside it are ignored, everything else must be consumed.

use std::path::Path;

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::activation::{silu, softmax};
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, FloatDType, Tensor, TensorData};

use crate::weights::{Checkpoint, KeyMap, Weights, WeightsError};

/// GroupNorm epsilon of every norm in the decoder (diffusers `resnet_eps`).
pub const GROUP_NORM_EPS: f64 = 1e-6;

/// Largest number of attention scores materialised at once by the mid-block attention
/// (queries are processed in chunks so that `chunk × tokens` stays below this).
const MAX_SCORES: usize = 1 << 26;

/// Errors of the VAE decoder.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VaeError {
    /// Loading the weights failed.
    #[error(transparent)]
    Weights(#[from] WeightsError),
    /// The configuration is not a supported AutoencoderKL decoder.
    #[error("invalid VAE config: {0}")]
    Config(String),
    /// The checkpoint's key layout could not be recognised.
    #[error("{}: cannot detect the VAE key layout: {reason}", file.display())]
    Layout {
        /// The checkpoint.
        file: std::path::PathBuf,
        /// Why.
        reason: String,
    },
    /// The latent does not match the decoder.
    #[error(
        "latent shape {actual:?} does not match the decoder ({latent_channels} channels expected)"
    )]
    Latent {
        /// The latent's shape.
        actual: [usize; 4],
        /// Channels the decoder expects.
        latent_channels: usize,
    },
    /// Invalid tiling parameters.
    #[error("invalid tiling: {0}")]
    Tiling(String),
    /// The image tensor cannot be converted to RGB8.
    #[error("cannot convert to RGB8: {0}")]
    Image(String),
}

/// Decoder configuration, named after the diffusers `AutoencoderKL` config fields.
#[derive(Debug, Clone, PartialEq)]
pub struct VaeConfig {
    /// Channels per resolution level, encoder order (`[128, 256, 512, 512]` for SD and FLUX).
    pub block_out_channels: Vec<usize>,
    /// Resnets per encoder level; decoder levels have one more.
    pub layers_per_block: usize,
    /// Latent channels (4 for SD, 16 for FLUX).
    pub latent_channels: usize,
    /// Image channels (3).
    pub out_channels: usize,
    /// GroupNorm groups (32).
    pub norm_num_groups: usize,
    /// Latent scale: `z = latent / scaling_factor + shift_factor`.
    pub scaling_factor: f64,
    /// Latent shift (0 when the config has none).
    pub shift_factor: f64,
    /// Whether a 1×1 `post_quant_conv` precedes the decoder.
    pub use_post_quant_conv: bool,
    /// Whether the mid block has its attention layer (diffusers default: true).
    pub mid_block_add_attention: bool,
}

impl VaeConfig {
    /// `stabilityai/sd-vae-ft-ema` (also `sd-vae-ft-mse`): 4 latent channels, scaling 0.18215,
    /// `post_quant_conv`.
    pub fn sd_vae_ft_ema() -> Self {
        VaeConfig {
            block_out_channels: vec![128, 256, 512, 512],
            layers_per_block: 2,
            latent_channels: 4,
            out_channels: 3,
            norm_num_groups: 32,
            scaling_factor: 0.18215,
            shift_factor: 0.0,
            use_post_quant_conv: true,
            mid_block_add_attention: true,
        }
    }

    /// FLUX.1 VAE: 16 latent channels, scaling 0.3611, shift 0.1159, no `post_quant_conv`.
    pub fn flux() -> Self {
        VaeConfig {
            latent_channels: 16,
            scaling_factor: 0.3611,
            shift_factor: 0.1159,
            use_post_quant_conv: false,
            ..Self::sd_vae_ft_ema()
        }
    }

    /// Reads a diffusers `AutoencoderKL` `config.json` object; absent fields take diffusers'
    /// defaults (`block_out_channels` `[64]`, `layers_per_block` 1, `latent_channels` 4,
    /// `norm_num_groups` 32, `scaling_factor` 0.18215, `shift_factor` none,
    /// `use_post_quant_conv` true). `up_block_types`, when present, must all be
    /// `UpDecoderBlock2D`.
    pub fn from_diffusers_json(v: &serde_json::Value) -> Result<Self, VaeError> {
        let bad = |m: String| VaeError::Config(m);
        let usize_field = |k: &str, default: usize| -> Result<usize, VaeError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x
                    .as_u64()
                    .and_then(|n| usize::try_from(n).ok())
                    .ok_or_else(|| bad(format!("`{k}` is not a non-negative integer"))),
            }
        };
        let f64_field = |k: &str| -> Result<Option<f64>, VaeError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(None),
                Some(x) => x
                    .as_f64()
                    .map(Some)
                    .ok_or_else(|| bad(format!("`{k}` is not a number"))),
            }
        };
        let bool_field = |k: &str, default: bool| -> Result<bool, VaeError> {
            match v.get(k) {
                None | Some(serde_json::Value::Null) => Ok(default),
                Some(x) => x
                    .as_bool()
                    .ok_or_else(|| bad(format!("`{k}` is not a boolean"))),
            }
        };
        let block_out_channels = match v.get("block_out_channels") {
            None | Some(serde_json::Value::Null) => vec![64],
            Some(x) => x
                .as_array()
                .ok_or_else(|| bad("`block_out_channels` is not an array".into()))?
                .iter()
                .map(|c| {
                    c.as_u64()
                        .and_then(|n| usize::try_from(n).ok())
                        .ok_or_else(|| bad("`block_out_channels` holds a non-integer".into()))
                })
                .collect::<Result<Vec<_>, _>>()?,
        };
        if let Some(types) = v.get("up_block_types").and_then(|t| t.as_array()) {
            if types.len() != block_out_channels.len() {
                return Err(bad(format!(
                    "{} up_block_types for {} block_out_channels",
                    types.len(),
                    block_out_channels.len()
                )));
            }
            if let Some(t) = types
                .iter()
                .find(|t| t.as_str() != Some("UpDecoderBlock2D"))
            {
                return Err(bad(format!("unsupported up block type {t}")));
            }
        }
        let cfg = VaeConfig {
            block_out_channels,
            layers_per_block: usize_field("layers_per_block", 1)?,
            latent_channels: usize_field("latent_channels", 4)?,
            out_channels: usize_field("out_channels", 3)?,
            norm_num_groups: usize_field("norm_num_groups", 32)?,
            scaling_factor: f64_field("scaling_factor")?.unwrap_or(0.18215),
            shift_factor: f64_field("shift_factor")?.unwrap_or(0.0),
            use_post_quant_conv: bool_field("use_post_quant_conv", true)?,
            mid_block_add_attention: bool_field("mid_block_add_attention", true)?,
        };
        cfg.check()?;
        Ok(cfg)
    }

    /// Checks the configuration for consistency.
    pub fn check(&self) -> Result<(), VaeError> {
        let bad = |m: String| Err(VaeError::Config(m));
        if self.block_out_channels.is_empty() {
            return bad("block_out_channels is empty".into());
        }
        if self.norm_num_groups == 0 {
            return bad("norm_num_groups is 0".into());
        }
        if let Some(c) = self
            .block_out_channels
            .iter()
            .find(|&&c| c == 0 || c % self.norm_num_groups != 0)
        {
            return bad(format!(
                "block_out_channels entry {c} is not a positive multiple of norm_num_groups {}",
                self.norm_num_groups
            ));
        }
        if self.latent_channels == 0 || self.out_channels == 0 {
            return bad("latent_channels and out_channels must be positive".into());
        }
        let scale_ok = self.scaling_factor.is_finite() && self.scaling_factor != 0.0;
        if !scale_ok || !self.shift_factor.is_finite() {
            return bad("scaling_factor must be finite and non-zero, shift_factor finite".into());
        }
        if self.block_out_channels.len() > 16 {
            return bad("more than 16 levels".into());
        }
        Ok(())
    }

    /// Image pixels per latent pixel: `2^(levels − 1)` (8 for SD and FLUX).
    pub fn upscale(&self) -> usize {
        1usize << self.block_out_channels.len().saturating_sub(1)
    }

    /// Decoder levels in execution order: `(c_in, c_out, upsample)`.
    fn levels(&self) -> Vec<(usize, usize, bool)> {
        let rev: Vec<usize> = self.block_out_channels.iter().rev().copied().collect();
        let mut prev = rev[0];
        rev.iter()
            .enumerate()
            .map(|(i, &out)| {
                let l = (prev, out, i + 1 != rev.len());
                prev = out;
                l
            })
            .collect()
    }

    fn top_channels(&self) -> usize {
        self.block_out_channels[self.block_out_channels.len() - 1]
    }
}

/// Checkpoint key layout of a VAE decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VaeLayout {
    /// diffusers names with `to_q/to_k/to_v/to_out.0` attention.
    Diffusers,
    /// diffusers names with the pre-2023 attention names `query/key/value/proj_attn`.
    DiffusersLegacy,
    /// BFL `ae.safetensors` / original LDM names (`mid.block_1`, `up.{L}` reversed, …).
    Bfl,
}

/// Checkpoint key names for one layout under one prefix.
struct Names<'a> {
    layout: VaeLayout,
    prefix: &'a str,
    levels: usize,
}

impl Names<'_> {
    fn key(&self, s: &str) -> String {
        format!("{}{s}", self.prefix)
    }
    fn post_quant_conv(&self) -> String {
        self.key("post_quant_conv")
    }
    fn conv_in(&self) -> String {
        self.key("decoder.conv_in")
    }
    fn mid_resnet(&self, i: usize) -> String {
        match self.layout {
            VaeLayout::Bfl => self.key(&format!("decoder.mid.block_{}", i + 1)),
            _ => self.key(&format!("decoder.mid_block.resnets.{i}")),
        }
    }
    fn attn(&self) -> String {
        match self.layout {
            VaeLayout::Bfl => self.key("decoder.mid.attn_1"),
            _ => self.key("decoder.mid_block.attentions.0"),
        }
    }
    /// norm, q, k, v, out
    fn attn_parts(&self) -> [&'static str; 5] {
        match self.layout {
            VaeLayout::Diffusers => ["group_norm", "to_q", "to_k", "to_v", "to_out.0"],
            VaeLayout::DiffusersLegacy => ["group_norm", "query", "key", "value", "proj_attn"],
            VaeLayout::Bfl => ["norm", "q", "k", "v", "proj_out"],
        }
    }
    /// `level` in execution order (diffusers `up_blocks` index).
    fn up_resnet(&self, level: usize, j: usize) -> String {
        match self.layout {
            VaeLayout::Bfl => {
                self.key(&format!("decoder.up.{}.block.{j}", self.levels - 1 - level))
            }
            _ => self.key(&format!("decoder.up_blocks.{level}.resnets.{j}")),
        }
    }
    fn upsampler(&self, level: usize) -> String {
        match self.layout {
            VaeLayout::Bfl => self.key(&format!(
                "decoder.up.{}.upsample.conv",
                self.levels - 1 - level
            )),
            _ => self.key(&format!("decoder.up_blocks.{level}.upsamplers.0.conv")),
        }
    }
    fn shortcut(&self) -> &'static str {
        match self.layout {
            VaeLayout::Bfl => "nin_shortcut",
            _ => "conv_shortcut",
        }
    }
    fn norm_out(&self) -> String {
        match self.layout {
            VaeLayout::Bfl => self.key("decoder.norm_out"),
            _ => self.key("decoder.conv_norm_out"),
        }
    }
    fn conv_out(&self) -> String {
        self.key("decoder.conv_out")
    }
}

/// Finds the key layout and the key prefix (e.g. `""` or `"first_stage_model."`) of a VAE
/// checkpoint, from the position of `decoder.conv_in.weight` and the mid-block names.
pub fn detect_layout(checkpoint: &Checkpoint) -> Result<(VaeLayout, String), VaeError> {
    let anchor = "decoder.conv_in.weight";
    let prefixes: Vec<&str> = checkpoint
        .keys()
        .filter_map(|k| k.strip_suffix(anchor))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    let prefix = match prefixes.as_slice() {
        [p] => p.to_string(),
        [] => {
            return Err(VaeError::Layout {
                file: checkpoint.path().to_path_buf(),
                reason: format!("no `{anchor}` key"),
            });
        }
        many => {
            return Err(VaeError::Layout {
                file: checkpoint.path().to_path_buf(),
                reason: format!("several decoders: prefixes {many:?}"),
            });
        }
    };
    let has = |rest: &str| checkpoint.contains(&format!("{prefix}{rest}"));
    let any_under = |rest: &str| {
        let p = format!("{prefix}{rest}");
        checkpoint.keys().any(|k| k.starts_with(&p))
    };
    let layout = if any_under("decoder.mid.") || any_under("decoder.up.") {
        VaeLayout::Bfl
    } else if has("decoder.mid_block.attentions.0.query.weight") {
        VaeLayout::DiffusersLegacy
    } else {
        VaeLayout::Diffusers
    };
    Ok((layout, prefix))
}

/// The parameters a decoder with `config` needs from a checkpoint in `layout` under `prefix`.
pub fn key_map(config: &VaeConfig, layout: VaeLayout, prefix: &str) -> KeyMap {
    let n = Names {
        layout,
        prefix,
        levels: config.block_out_channels.len(),
    };
    let mut map = KeyMap::new();
    let resnet = |map: &mut KeyMap, p: &str, cin: usize, cout: usize| {
        map.norm(&format!("{p}.norm1"), cin);
        map.conv2d(&format!("{p}.conv1"), cin, cout, [3, 3], true);
        map.norm(&format!("{p}.norm2"), cout);
        map.conv2d(&format!("{p}.conv2"), cout, cout, [3, 3], true);
        if cin != cout {
            map.conv2d(&format!("{p}.{}", n.shortcut()), cin, cout, [1, 1], true);
        }
    };
    let (lc, top) = (config.latent_channels, config.top_channels());
    if config.use_post_quant_conv {
        map.conv2d(&n.post_quant_conv(), lc, lc, [1, 1], true);
    }
    map.conv2d(&n.conv_in(), lc, top, [3, 3], true);
    resnet(&mut map, &n.mid_resnet(0), top, top);
    if config.mid_block_add_attention {
        let a = n.attn();
        let [norm, q, k, v, o] = n.attn_parts();
        map.norm(&format!("{a}.{norm}"), top);
        for part in [q, k, v, o] {
            map.linear_or_conv1x1(&format!("{a}.{part}"), top, top, true);
        }
    }
    resnet(&mut map, &n.mid_resnet(1), top, top);
    for (i, (cin, cout, up)) in config.levels().into_iter().enumerate() {
        for j in 0..=config.layers_per_block {
            let c = if j == 0 { cin } else { cout };
            resnet(&mut map, &n.up_resnet(i, j), c, cout);
        }
        if up {
            map.conv2d(&n.upsampler(i), cout, cout, [3, 3], true);
        }
    }
    let bottom = config.block_out_channels[0];
    map.norm(&n.norm_out(), bottom);
    map.conv2d(&n.conv_out(), bottom, config.out_channels, [3, 3], true);
    map.ignore_prefix(format!("{prefix}encoder."));
    map.ignore_prefix(format!("{prefix}quant_conv."));
    if !prefix.is_empty() {
        map.only_within(prefix.to_string());
    }
    map
}

/// `ResnetBlock2D` without time embedding: GN → SiLU → conv3×3 → GN → SiLU → conv3×3, plus the
/// (1×1-conv when channels change) input.
#[derive(Module, Debug)]
pub struct VaeResnet<B: Backend> {
    norm1: GroupNorm<B>,
    conv1: Conv2d<B>,
    norm2: GroupNorm<B>,
    conv2: Conv2d<B>,
    shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> VaeResnet<B> {
    fn load(
        w: &Weights<'_, B>,
        p: &str,
        shortcut_name: &str,
        groups: usize,
        cin: usize,
        cout: usize,
    ) -> Result<Self, WeightsError> {
        Ok(VaeResnet {
            norm1: w.group_norm(&format!("{p}.norm1"), groups, GROUP_NORM_EPS)?,
            conv1: w.conv2d(&format!("{p}.conv1"), true, [1, 1])?,
            norm2: w.group_norm(&format!("{p}.norm2"), groups, GROUP_NORM_EPS)?,
            conv2: w.conv2d(&format!("{p}.conv2"), true, [1, 1])?,
            shortcut: if cin != cout {
                Some(w.conv2d(&format!("{p}.{shortcut_name}"), true, [0, 0])?)
            } else {
                None
            },
        })
    }

    /// Applies the block to `[batch, c_in, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let h = silu(group_norm(&self.norm1, x.clone()));
        let h = self.conv1.forward(h);
        let h = silu(group_norm(&self.norm2, h));
        let h = self.conv2.forward(h);
        let skip = match &self.shortcut {
            Some(c) => c.forward(x),
            None => x,
        };
        skip + h
    }
}

/// Mid-block self-attention: GroupNorm → q, k, v (Linear, one head of dim C, scale 1/√C) →
/// softmax (in f32) → output Linear → residual add.
#[derive(Module, Debug)]
pub struct VaeAttention<B: Backend> {
    norm: GroupNorm<B>,
    q: Linear<B>,
    k: Linear<B>,
    v: Linear<B>,
    out: Linear<B>,
}

impl<B: Backend> VaeAttention<B> {
    /// Applies the block to `[batch, c, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let t = group_norm(&self.norm, x.clone())
            .reshape([b, c, n])
            .swap_dims(1, 2);
        let dtype = t.dtype();
        let compute = if dtype == DType::F64 {
            DType::F64
        } else {
            DType::F32
        };
        let scale = 1.0 / (c as f64).sqrt();
        let q = self.q.forward(t.clone()).cast(compute).mul_scalar(scale);
        let k = self.k.forward(t.clone()).cast(compute);
        let v = self.v.forward(t).cast(compute);
        let kt = k.swap_dims(1, 2);
        let chunk = (MAX_SCORES / n.max(1)).clamp(1, n.max(1));
        let attn = if chunk >= n {
            softmax(q.matmul(kt), 2).matmul(v)
        } else {
            let parts: Vec<Tensor<B, 3>> = (0..n)
                .step_by(chunk)
                .map(|s| {
                    let e = (s + chunk).min(n);
                    let qs = q.clone().slice([0..b, s..e, 0..c]);
                    softmax(qs.matmul(kt.clone()), 2).matmul(v.clone())
                })
                .collect();
            Tensor::cat(parts, 1)
        };
        let o = self.out.forward(attn.cast(dtype));
        o.swap_dims(1, 2).reshape([b, c, h, w]) + x
    }
}

/// One decoder level: resnets, then (except the last level) nearest ×2 and a 3×3 conv.
#[derive(Module, Debug)]
pub struct VaeUpBlock<B: Backend> {
    resnets: Vec<VaeResnet<B>>,
    upsample: Option<Conv2d<B>>,
}

impl<B: Backend> VaeUpBlock<B> {
    /// Applies the level to `[batch, c_in, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Tensor<B, 4> {
        let mut x = x;
        for r in &self.resnets {
            x = r.forward(x);
        }
        match &self.upsample {
            Some(conv) => {
                let [_, _, h, w] = x.dims();
                let x = interpolate(
                    x,
                    [2 * h, 2 * w],
                    InterpolateOptions::new(InterpolateMode::Nearest),
                );
                conv.forward(x)
            }
            None => x,
        }
    }
}

/// GroupNorm computed in f32 (f64 stays f64) and cast back, as PyTorch's kernels accumulate
/// half-precision inputs in f32.
fn group_norm<B: Backend>(norm: &GroupNorm<B>, x: Tensor<B, 4>) -> Tensor<B, 4> {
    let dtype = x.dtype();
    if matches!(dtype, DType::F32 | DType::F64) {
        return norm.forward(x);
    }
    let [b, c, h, w] = x.dims();
    let g = norm.num_groups;
    let xf = x.cast(DType::F32).reshape([b, g, (c / g) * h * w]);
    let mean = xf.clone().mean_dim(2);
    let centered = xf - mean;
    let var = centered.clone().square().mean_dim(2);
    let normed = (centered / var.add_scalar(norm.epsilon).sqrt()).reshape([b, c, h, w]);
    let normed = normed.cast(dtype);
    match (&norm.gamma, &norm.beta) {
        (Some(gm), Some(bt)) => {
            normed * gm.val().reshape([1, c, 1, 1]) + bt.val().reshape([1, c, 1, 1])
        }
        _ => normed,
    }
}

/// AutoencoderKL decoder (see the [module docs](self)).
#[derive(Module, Debug)]
pub struct VaeDecoder<B: Backend> {
    post_quant_conv: Option<Conv2d<B>>,
    conv_in: Conv2d<B>,
    mid_resnet_1: VaeResnet<B>,
    mid_attention: Option<VaeAttention<B>>,
    mid_resnet_2: VaeResnet<B>,
    up_blocks: Vec<VaeUpBlock<B>>,
    norm_out: GroupNorm<B>,
    conv_out: Conv2d<B>,
    #[module(skip)]
    config: VaeConfig,
}

impl<B: Backend> VaeDecoder<B> {
    /// Opens `path` (any format [`Checkpoint::open`] reads), detects the key layout and loads
    /// the decoder strictly (see [`VaeDecoder::from_checkpoint`]).
    pub fn load(
        path: impl AsRef<Path>,
        config: &VaeConfig,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, VaeError> {
        let ckpt = Checkpoint::open(path)?;
        Self::from_checkpoint(&ckpt, config, dtype, device)
    }

    /// Loads from an opened checkpoint: detects the layout ([`detect_layout`]), validates every
    /// key, shape and dtype against [`key_map`] before building anything, then builds the
    /// decoder on `device` in `dtype`.
    pub fn from_checkpoint(
        checkpoint: &Checkpoint,
        config: &VaeConfig,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, VaeError> {
        let (layout, prefix) = detect_layout(checkpoint)?;
        Self::from_checkpoint_with_layout(checkpoint, config, layout, &prefix, dtype, device)
    }

    /// Like [`VaeDecoder::from_checkpoint`] with an explicit layout and key prefix.
    pub fn from_checkpoint_with_layout(
        checkpoint: &Checkpoint,
        config: &VaeConfig,
        layout: VaeLayout,
        prefix: &str,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, VaeError> {
        config.check()?;
        let map = key_map(config, layout, prefix);
        let w = checkpoint.load::<B>(&map, dtype, device)?;
        let n = Names {
            layout,
            prefix,
            levels: config.block_out_channels.len(),
        };
        let g = config.norm_num_groups;
        let top = config.top_channels();
        let sc = n.shortcut();
        let post_quant_conv = if config.use_post_quant_conv {
            Some(w.conv2d(&n.post_quant_conv(), true, [0, 0])?)
        } else {
            None
        };
        let conv_in = w.conv2d(&n.conv_in(), true, [1, 1])?;
        let mid_resnet_1 = VaeResnet::load(&w, &n.mid_resnet(0), sc, g, top, top)?;
        let mid_attention = if config.mid_block_add_attention {
            let a = n.attn();
            let [norm, q, k, v, o] = n.attn_parts();
            Some(VaeAttention {
                norm: w.group_norm(&format!("{a}.{norm}"), g, GROUP_NORM_EPS)?,
                q: w.linear(&format!("{a}.{q}"), true)?,
                k: w.linear(&format!("{a}.{k}"), true)?,
                v: w.linear(&format!("{a}.{v}"), true)?,
                out: w.linear(&format!("{a}.{o}"), true)?,
            })
        } else {
            None
        };
        let mid_resnet_2 = VaeResnet::load(&w, &n.mid_resnet(1), sc, g, top, top)?;
        let mut up_blocks = Vec::new();
        for (i, (cin, cout, up)) in config.levels().into_iter().enumerate() {
            let resnets = (0..=config.layers_per_block)
                .map(|j| {
                    let c = if j == 0 { cin } else { cout };
                    VaeResnet::load(&w, &n.up_resnet(i, j), sc, g, c, cout)
                })
                .collect::<Result<Vec<_>, _>>()?;
            let upsample = if up {
                Some(w.conv2d(&n.upsampler(i), true, [1, 1])?)
            } else {
                None
            };
            up_blocks.push(VaeUpBlock { resnets, upsample });
        }
        Ok(VaeDecoder {
            post_quant_conv,
            conv_in,
            mid_resnet_1,
            mid_attention,
            mid_resnet_2,
            up_blocks,
            norm_out: w.group_norm(&n.norm_out(), g, GROUP_NORM_EPS)?,
            conv_out: w.conv2d(&n.conv_out(), true, [1, 1])?,
            config: config.clone(),
        })
    }

    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The float dtype of the parameters (inputs are cast to it).
    pub fn dtype(&self) -> DType {
        self.conv_in.weight.val().dtype()
    }

    fn check_latent(&self, latent: &Tensor<B, 4>) -> Result<(), VaeError> {
        let dims = latent.dims();
        if dims[1] != self.config.latent_channels || dims.contains(&0) {
            return Err(VaeError::Latent {
                actual: dims,
                latent_channels: self.config.latent_channels,
            });
        }
        Ok(())
    }

    /// Decodes a latent `[batch, latent_channels, h, w]` to an image
    /// `[batch, out_channels, h·f, w·f]` (`f` = [`VaeConfig::upscale`]), values ≈ [-1, 1]:
    /// `z = latent / scaling_factor + shift_factor`, then [`VaeDecoder::decode_unscaled`].
    pub fn decode(&self, latent: Tensor<B, 4>) -> Result<Tensor<B, 4>, VaeError> {
        self.check_latent(&latent)?;
        Ok(self.forward(self.scale_latent(latent)))
    }

    /// Runs the decoder graph (including `post_quant_conv`) on an already scaled latent `z`.
    pub fn decode_unscaled(&self, z: Tensor<B, 4>) -> Result<Tensor<B, 4>, VaeError> {
        self.check_latent(&z)?;
        Ok(self.forward(z.cast(self.dtype())))
    }

    fn scale_latent(&self, latent: Tensor<B, 4>) -> Tensor<B, 4> {
        let z = latent.div_scalar(self.config.scaling_factor);
        let z = if self.config.shift_factor != 0.0 {
            z.add_scalar(self.config.shift_factor)
        } else {
            z
        };
        z.cast(self.dtype())
    }

    fn forward(&self, z: Tensor<B, 4>) -> Tensor<B, 4> {
        let z = match &self.post_quant_conv {
            Some(c) => c.forward(z),
            None => z,
        };
        let mut x = self.conv_in.forward(z);
        x = self.mid_resnet_1.forward(x);
        if let Some(a) = &self.mid_attention {
            x = a.forward(x);
        }
        x = self.mid_resnet_2.forward(x);
        for up in &self.up_blocks {
            x = up.forward(x);
        }
        let x = silu(group_norm(&self.norm_out, x));
        self.conv_out.forward(x)
    }

    /// Decodes in overlapping tiles of `tile × tile` latent pixels (`overlap` latent pixels shared
    /// between neighbours) and blends them, so that peak memory depends on the tile, not on the
    /// image (a 4096² FLUX image is a 512² latent: `decode_tiled(latent, 64, 8)` runs 9 × 9 tiles of
    /// 512² pixels each).
    ///
    /// Blending: every output pixel is the weighted mean of the tiles covering it; a tile's weight
    /// ramps linearly from ≈0 to 1 across `overlap · f` pixels from each edge that borders
    /// another tile (edges on the image border keep weight 1), so seams are cross-faded.
    ///
    /// **Approximation**: each tile is decoded on its own, so GroupNorm statistics and the
    /// mid-block attention only see that tile, not the whole latent, and conv receptive fields
    /// are cut at tile borders (the cross-fade hides the latter). The result is therefore not
    /// bit-identical to [`VaeDecoder::decode`]; with large tiles (≥ 64 latent px) the difference
    /// is usually invisible, but global colour statistics may drift slightly between tiles —
    /// the same trade-off as diffusers' `enable_tiling`. A latent that fits in one tile is
    /// decoded exactly ([`VaeDecoder::decode`]).
    pub fn decode_tiled(
        &self,
        latent: Tensor<B, 4>,
        tile: usize,
        overlap: usize,
    ) -> Result<Tensor<B, 4>, VaeError> {
        self.check_latent(&latent)?;
        if tile == 0 || overlap >= tile {
            return Err(VaeError::Tiling(format!(
                "need 0 ≤ overlap < tile, got tile {tile}, overlap {overlap}"
            )));
        }
        let [b, _, h, w] = latent.dims();
        if h <= tile && w <= tile {
            return self.decode(latent);
        }
        let f = self.config.upscale();
        let oc = self.config.out_channels;
        let device = latent.device();
        let dtype = self.dtype();
        let z = self.scale_latent(latent);
        let ys = tile_starts(h, tile, overlap);
        let xs = tile_starts(w, tile, overlap);
        let mut acc = Tensor::<B, 4>::zeros([b, oc, h * f, w * f], (&device, DType::F32));
        let mut wsum = Tensor::<B, 4>::zeros([1, 1, h * f, w * f], (&device, DType::F32));
        for &y0 in &ys {
            let y1 = (y0 + tile).min(h);
            let wy = ramp(y0, y1, h, overlap, f);
            for &x0 in &xs {
                let x1 = (x0 + tile).min(w);
                let wx = ramp(x0, x1, w, overlap, f);
                let zt = z
                    .clone()
                    .slice([0..b, 0..self.config.latent_channels, y0..y1, x0..x1]);
                let img = self.forward(zt).cast(DType::F32);
                let (th, tw) = ((y1 - y0) * f, (x1 - x0) * f);
                let wy_t = Tensor::<B, 4>::from_data(
                    TensorData::new(wy.clone(), [1, 1, th, 1]),
                    (&device, DType::F32),
                );
                let wx_t = Tensor::<B, 4>::from_data(
                    TensorData::new(wx, [1, 1, 1, tw]),
                    (&device, DType::F32),
                );
                let wt = wy_t * wx_t;
                let (ry, rx) = (y0 * f..y1 * f, x0 * f..x1 * f);
                let cur = acc.clone().slice([0..b, 0..oc, ry.clone(), rx.clone()]);
                acc = acc.slice_assign(
                    [0..b, 0..oc, ry.clone(), rx.clone()],
                    cur + img * wt.clone(),
                );
                let cw = wsum.clone().slice([0..1, 0..1, ry.clone(), rx.clone()]);
                wsum = wsum.slice_assign([0..1, 0..1, ry, rx], cw + wt);
            }
        }
        Ok((acc / wsum).cast(dtype))
    }
}

/// Tile start offsets covering `0..len` with tiles of `tile` and at least `overlap` shared.
fn tile_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile - overlap;
    let mut starts = Vec::new();
    let mut s = 0;
    while s + tile < len {
        starts.push(s);
        s += stride;
    }
    starts.push(len - tile);
    starts.dedup();
    starts
}

/// Blend weights (output pixels) of a tile spanning latent `[s, e)` of `len`.
fn ramp(s: usize, e: usize, len: usize, overlap: usize, f: usize) -> Vec<f32> {
    let n = (e - s) * f;
    let width = (overlap * f) as f32;
    (0..n)
        .map(|i| {
            let mut wgt = 1.0f32;
            if width > 0.0 {
                if s > 0 {
                    wgt = wgt.min((i as f32 + 0.5) / width);
                }
                if e < len {
                    wgt = wgt.min((n as f32 - i as f32 - 0.5) / width);
                }
            }
            wgt
        })
        .collect()
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `RGBRGB…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes.
    pub pixels: Vec<u8>,
}

/// FiT's conversion of one decoded value: `clamp(127.5·x + 128, 0, 255)`, truncated (note
/// **+128**, not +127.5; FiT `sample_fitv2_ddp.py`). NaN maps to 0.
pub fn fit_to_u8(x: f32) -> u8 {
    (127.5f32 * x + 128.0).clamp(0.0, 255.0) as u8
}

/// diffusers/FLUX conversion of one decoded value: `round(clamp(x/2 + 0.5, 0, 1) · 255)`
/// (ties to even, as NumPy's `round`; `VaeImageProcessor.denormalize` + `numpy_to_pil`).
/// NaN maps to 0.
pub fn diffusers_to_u8(x: f32) -> u8 {
    ((x * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8
}

fn to_rgb8<B: Backend>(image: Tensor<B, 4>, f: fn(f32) -> u8) -> Result<Vec<Rgb8Image>, VaeError> {
    let [b, c, h, w] = image.dims();
    if c != 3 {
        return Err(VaeError::Image(format!("{c} channels, 3 expected")));
    }
    let v = image
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| VaeError::Image(format!("{e:?}")))?;
    let plane = h * w;
    Ok((0..b)
        .map(|i| {
            let base = i * 3 * plane;
            let mut pixels = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                for ch in 0..3 {
                    pixels.push(f(v[base + ch * plane + p]));
                }
            }
            Rgb8Image {
                width: w,
                height: h,
                pixels,
            }
        })
        .collect())
}

/// Converts decoded images `[batch, 3, h, w]` to RGB8 as FiT does ([`fit_to_u8`]).
pub fn to_rgb8_fit<B: Backend>(image: Tensor<B, 4>) -> Result<Vec<Rgb8Image>, VaeError> {
    to_rgb8(image, fit_to_u8)
}

/// Converts decoded images `[batch, 3, h, w]` to RGB8 as diffusers/FLUX do
/// ([`diffusers_to_u8`]).
pub fn to_rgb8_diffusers<B: Backend>(image: Tensor<B, 4>) -> Result<Vec<Rgb8Image>, VaeError> {
    to_rgb8(image, diffusers_to_u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_cover_and_overlap() {
        assert_eq!(tile_starts(8, 8, 2), vec![0]);
        assert_eq!(tile_starts(10, 8, 2), vec![0, 2]);
        assert_eq!(tile_starts(20, 8, 2), vec![0, 6, 12]);
        let mut expect: Vec<usize> = (0..8).map(|i| i * 56).collect();
        expect.push(448);
        assert_eq!(tile_starts(512, 64, 8), expect);
        let w = ramp(0, 8, 20, 2, 2);
        assert_eq!(w[0], 1.0);
        assert!(w[15] < 0.5 && w[15] > 0.0);
    }

    type B = crate::backend::Cpu;

    fn fixture(name: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../tests/fixtures/models")
            .join(name)
    }

    fn tiny_flux() -> VaeConfig {
        VaeConfig {
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            norm_num_groups: 8,
            ..VaeConfig::flux()
        }
    }

    fn rel_l2(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
        let d = (a - b.clone()).square().sum().into_scalar() as f64;
        let n = b.square().sum().into_scalar() as f64;
        (d / n).sqrt()
    }

    #[test]
    fn layouts_are_detected() {
        for (file, layout) in [
            ("vae_sd_tiny.safetensors", VaeLayout::Diffusers),
            (
                "vae_sd_tiny_oldnames.safetensors",
                VaeLayout::DiffusersLegacy,
            ),
            ("vae_flux_tiny.safetensors", VaeLayout::Diffusers),
            ("vae_flux_tiny_bfl.safetensors", VaeLayout::Bfl),
        ] {
            let ckpt = Checkpoint::open(fixture(file)).unwrap();
            assert_eq!(
                detect_layout(&ckpt).unwrap(),
                (layout, String::new()),
                "{file}"
            );
        }
    }

    #[test]
    fn wrong_config_is_a_typed_error() {
        let device = Default::default();
        // The SD preset expects post_quant_conv and 4 latent channels.
        let sd = VaeConfig {
            block_out_channels: vec![16, 32],
            layers_per_block: 1,
            norm_num_groups: 8,
            ..VaeConfig::sd_vae_ft_ema()
        };
        let r = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &sd,
            FloatDType::F32,
            &device,
        );
        assert!(
            matches!(r, Err(VaeError::Weights(WeightsError::MissingKeys { ref keys, .. })) if keys[0] == "post_quant_conv.weight"),
            "{r:?}"
        );
        let sd_no_pqc = VaeConfig {
            use_post_quant_conv: false,
            ..sd
        };
        let r = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &sd_no_pqc,
            FloatDType::F32,
            &device,
        );
        assert!(
            matches!(r, Err(VaeError::Weights(WeightsError::ShapeMismatch { ref key, .. })) if key == "decoder.conv_in.weight"),
            "{r:?}"
        );
        // FLUX config on an SD file: post_quant_conv is stored but unused.
        let r = VaeDecoder::<B>::load(
            fixture("vae_sd_tiny.safetensors"),
            &VaeConfig {
                latent_channels: 4,
                ..tiny_flux()
            },
            FloatDType::F32,
            &device,
        );
        assert!(
            matches!(r, Err(VaeError::Weights(WeightsError::UnexpectedKeys { ref keys, .. })) if keys.len() == 2),
            "{r:?}"
        );
    }

    #[test]
    fn tiled_decode_blends_and_bf16_decode_is_close() {
        let device = Default::default();
        let dec = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &tiny_flux(),
            FloatDType::F32,
            &device,
        )
        .unwrap();
        let cases = Checkpoint::open(fixture("vae_flux_tiny_cases.safetensors")).unwrap();
        let latent = cases
            .tensor::<B, 4>("case1.latent", FloatDType::F32, &device)
            .unwrap();
        let full = dec.decode(latent.clone()).unwrap();
        // One tile covering everything is exact.
        let one = dec.decode_tiled(latent.clone(), 16, 4).unwrap();
        assert_eq!(rel_l2(one, full.clone()), 0.0);
        // 6×10 latent in 4×4 tiles with overlap 2: per-tile norms/attention make it approximate.
        let tiled = dec.decode_tiled(latent.clone(), 4, 2).unwrap();
        assert_eq!(tiled.dims(), full.dims());
        let err = rel_l2(tiled, full.clone());
        assert!(err.is_finite() && err < 0.5, "tiled error {err}");
        assert!(dec.decode_tiled(latent.clone(), 4, 4).is_err());
        // bf16 weights and activations (GroupNorm and softmax upcast to f32 inside).
        let dec16 = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &tiny_flux(),
            FloatDType::BF16,
            &device,
        )
        .unwrap();
        let out16 = dec16.decode(latent).unwrap();
        assert_eq!(out16.dtype(), DType::BF16);
        let err = rel_l2(out16.cast(DType::F32), full.clone());
        assert!(err < 3e-2, "bf16 error {err}");
        let imgs = to_rgb8_diffusers(full.clone()).unwrap();
        assert_eq!(
            (
                imgs.len(),
                imgs[0].width,
                imgs[0].height,
                imgs[0].pixels.len()
            ),
            (1, 20, 12, 720)
        );
        assert_eq!(to_rgb8_fit(full).unwrap()[0].pixels.len(), 720);
    }

    #[test]
    fn rgb_conventions() {
        assert_eq!(fit_to_u8(0.0), 128);
        assert_eq!(fit_to_u8(-1.0), 0);
        assert_eq!(fit_to_u8(1.0), 255);
        assert_eq!(fit_to_u8(f32::NAN), 0);
        assert_eq!(diffusers_to_u8(0.0), 128); // 127.5 rounds to even 128
        assert_eq!(diffusers_to_u8(-1.0), 0);
        assert_eq!(diffusers_to_u8(1.0), 255);
        assert_eq!(diffusers_to_u8(2.0), 255);
    }
}
