//! FiTv2 (Lu et al., "FiTv2: Scalable and Improved Flexible Vision Transformer for Diffusion
//! Model", 2024): a class-conditional DiT with SwiGLU, affine-free per-head q/k LayerNorm,
//! adaLN-LoRA with a shared global modulation, 2-D interleaved RoPE (rows then columns) and
//! velocity output. Reference: whlzy/FiT @b22b7b0 `fit/model/*.py`.

use burn::module::{Module, Param};
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor, TensorData};
use thiserror::Error;

use super::common::{layer_norm, modulate};
use crate::attention::{AttentionError, AttentionOptions, attention};
use crate::rotary::{PairLayout, RotaryError, RotaryTables};
use crate::weights::{KeyMap, Weights, WeightsError};
use dype_core::DypeError;

/// Errors of the FiTv2 model.
#[derive(Debug, Error)]
pub enum FitError {
    /// An input has the wrong shape.
    #[error("fitv2: {what} has shape {found:?}, expected {expected}")]
    Shape {
        /// Which input.
        what: &'static str,
        /// Shape given.
        found: Vec<usize>,
        /// What was expected, in words.
        expected: String,
    },
    /// A configuration value is invalid.
    #[error("fitv2: invalid configuration: {0}")]
    Config(String),
    /// Rotary embedding failure.
    #[error(transparent)]
    Rotary(#[from] RotaryError),
    /// Attention failure.
    #[error(transparent)]
    Attention(#[from] AttentionError),
    /// Weight loading failure.
    #[error(transparent)]
    Weights(#[from] WeightsError),
}

/// FiTv2 hyper-parameters (`configs/fitv2/*.yaml` of whlzy/FiT).
#[derive(Debug, Clone, PartialEq)]
pub struct FitConfig {
    /// Latent patch size (2).
    pub patch_size: usize,
    /// Latent channels (4 for the SD VAE).
    pub in_channels: usize,
    /// Hidden size D.
    pub hidden_size: usize,
    /// Number of blocks.
    pub depth: usize,
    /// Attention heads.
    pub num_heads: usize,
    /// MLP ratio (SwiGLU hidden = `(int(D·ratio)·2)//3`).
    pub mlp_ratio: f64,
    /// Number of classes (the label table has one more row: the null class for CFG).
    pub num_classes: usize,
    /// adaLN-LoRA rank.
    pub adaln_lora_dim: usize,
    /// Whether the model also predicts a variance (doubles the output channels).
    pub learn_sigma: bool,
    /// RoPE base θ.
    pub rope_theta: f64,
    /// Trained tokens per side (`ori_max_pe_len`: 16 for 256² training).
    pub ori_max_pe_len: usize,
}

impl FitConfig {
    /// FiTv2-XL/2 (671M parameters): D 1152, depth 36, 16 heads, adaLN-LoRA 288, trained at 256².
    pub fn xl_2() -> Self {
        FitConfig {
            patch_size: 2,
            in_channels: 4,
            hidden_size: 1152,
            depth: 36,
            num_heads: 16,
            mlp_ratio: 4.0,
            num_classes: 1000,
            adaln_lora_dim: 288,
            learn_sigma: false,
            rope_theta: 10_000.0,
            ori_max_pe_len: 16,
        }
    }

    /// From the reference's config object (the `config` of a FiT yaml or of `fitv2_tiny.json`):
    /// `patch_size`, `in_channels`, `hidden_size`, `depth`, `num_heads`, `mlp_ratio`,
    /// `num_classes`, `adaln_lora_dim`, `learn_sigma`, `rope_theta`, `ori_max_pe_len` (missing
    /// optional fields take FiTv2-XL/2's values).
    pub fn from_json(c: &serde_json::Value) -> Result<Self, FitError> {
        let d = FitConfig::xl_2();
        let size = |k: &str, default: usize| -> Result<usize, FitError> {
            match c.get(k) {
                None => Ok(default),
                Some(v) => v.as_u64().map(|x| x as usize).ok_or_else(|| {
                    FitError::Config(format!("`{k}` must be a non-negative integer"))
                }),
            }
        };
        let float = |k: &str, default: f64| -> Result<f64, FitError> {
            match c.get(k) {
                None => Ok(default),
                Some(v) => v
                    .as_f64()
                    .ok_or_else(|| FitError::Config(format!("`{k}` must be a number"))),
            }
        };
        let cfg = FitConfig {
            patch_size: size("patch_size", d.patch_size)?,
            in_channels: size("in_channels", d.in_channels)?,
            hidden_size: size("hidden_size", d.hidden_size)?,
            depth: size("depth", d.depth)?,
            num_heads: size("num_heads", d.num_heads)?,
            mlp_ratio: float("mlp_ratio", d.mlp_ratio)?,
            num_classes: size("num_classes", d.num_classes)?,
            adaln_lora_dim: size("adaln_lora_dim", d.adaln_lora_dim)?,
            learn_sigma: c
                .get("learn_sigma")
                .and_then(|v| v.as_bool())
                .unwrap_or(d.learn_sigma),
            rope_theta: float("rope_theta", d.rope_theta)?,
            ori_max_pe_len: size("ori_max_pe_len", d.ori_max_pe_len)?,
        };
        cfg.validate()?;
        Ok(cfg)
    }

    /// Head dimension `D / heads`.
    pub fn head_dim(&self) -> usize {
        self.hidden_size / self.num_heads.max(1)
    }

    /// Values per token: `in_channels · patch²`.
    pub fn token_dim(&self) -> usize {
        self.in_channels * self.patch_size * self.patch_size
    }

    /// Output values per token.
    pub fn out_token_dim(&self) -> usize {
        self.token_dim() * if self.learn_sigma { 2 } else { 1 }
    }

    /// SwiGLU hidden size `(int(D·ratio)·2)//3` (timm's SwiGLU with FiT's 2/3 rule).
    pub fn mlp_hidden(&self) -> usize {
        ((self.hidden_size as f64 * self.mlp_ratio) as usize * 2) / 3
    }

    /// The null class id used for classifier-free guidance (`num_classes`).
    pub fn null_class(&self) -> usize {
        self.num_classes
    }

    /// Checks the configuration is usable.
    pub fn validate(&self) -> Result<(), FitError> {
        let bad = |m: &str| Err(FitError::Config(m.to_string()));
        if self.hidden_size == 0
            || self.num_heads == 0
            || self.depth == 0
            || self.patch_size == 0
            || self.in_channels == 0
        {
            return bad("sizes must be non-zero");
        }
        if !self.hidden_size.is_multiple_of(self.num_heads) {
            return bad("hidden_size must be a multiple of num_heads");
        }
        if !self.head_dim().is_multiple_of(4) {
            return bad("head_dim must be a multiple of 4 (two rotary axes of whole pairs)");
        }
        if !(self.rope_theta.is_finite() && self.rope_theta > 1.0) {
            return bad("rope_theta must be finite and > 1");
        }
        Ok(())
    }

    /// The checkpoint key map: every tensor FiT's `state_dict()` holds, with PyTorch shapes.
    pub fn key_map(&self) -> KeyMap {
        let (d, t) = (self.hidden_size, self.token_dim());
        let mut m = KeyMap::new();
        m.linear("x_embedder.proj", t, d, true);
        m.linear("t_embedder.mlp.0", 256, d, true);
        m.linear("t_embedder.mlp.2", d, d, true);
        m.tensor(
            "y_embedder.embedding_table.weight",
            &[self.num_classes + 1, d],
        );
        m.linear("global_adaLN_modulation.1", d, 6 * d, true);
        for i in 0..self.depth {
            let p = format!("blocks.{i}");
            m.linear(&format!("{p}.attn.qkv"), d, 3 * d, true);
            m.linear(&format!("{p}.attn.proj"), d, d, true);
            m.linear(&format!("{p}.mlp.fc1_g"), d, self.mlp_hidden(), true);
            m.linear(&format!("{p}.mlp.fc1_x"), d, self.mlp_hidden(), true);
            m.linear(&format!("{p}.mlp.fc2"), self.mlp_hidden(), d, true);
            m.linear(
                &format!("{p}.adaLN_modulation.1"),
                d,
                self.adaln_lora_dim,
                true,
            );
            m.linear(
                &format!("{p}.adaLN_modulation.2"),
                self.adaln_lora_dim,
                6 * d,
                true,
            );
        }
        m.linear("final_layer.linear", d, self.out_token_dim(), true);
        m.linear("final_layer.adaLN_modulation.1", d, 2 * d, true);
        m
    }
}

/// One FiT block: adaLN-LoRA modulated attention and SwiGLU.
#[derive(Module, Debug)]
pub struct FitBlock<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
    fc1_g: Linear<B>,
    fc1_x: Linear<B>,
    fc2: Linear<B>,
    lora_down: Linear<B>,
    lora_up: Linear<B>,
}

/// The FiTv2 transformer.
#[derive(Module, Debug)]
pub struct FitV2<B: Backend> {
    x_embedder: Linear<B>,
    t_mlp0: Linear<B>,
    t_mlp2: Linear<B>,
    y_embedder: Embedding<B>,
    global_adaln: Linear<B>,
    blocks: Vec<FitBlock<B>>,
    final_adaln: Linear<B>,
    final_linear: Linear<B>,
    #[module(skip)]
    config: FitConfig,
}

/// FiT's timestep features: `[cos(t·f), sin(t·f)]`, `f_i = exp(−ln(10000)·i/128)`, t in [0, 1] raw.
pub fn timestep_features<B: Backend>(t: Tensor<B, 1>) -> Tensor<B, 2> {
    let half = 128;
    let freqs: Vec<f32> = (0..half)
        .map(|i| (-(10_000f64.ln()) * i as f64 / half as f64).exp() as f32)
        .collect();
    let device = t.device();
    let f =
        Tensor::<B, 1>::from_data(TensorData::new(freqs, [half]), &device).unsqueeze_dim::<2>(0);
    let args = t.unsqueeze_dim::<2>(1) * f;
    Tensor::cat(vec![args.clone().cos(), args.sin()], 1)
}

impl<B: Backend> FitV2<B> {
    /// A model with random weights (benchmarks, GPU timing).
    pub fn random(config: &FitConfig, device: &B::Device) -> Result<Self, FitError> {
        config.validate()?;
        let d = config.hidden_size;
        let lin = |i: usize, o: usize| LinearConfig::new(i, o).init(device);
        let blocks = (0..config.depth)
            .map(|_| FitBlock {
                qkv: lin(d, 3 * d),
                proj: lin(d, d),
                fc1_g: lin(d, config.mlp_hidden()),
                fc1_x: lin(d, config.mlp_hidden()),
                fc2: lin(config.mlp_hidden(), d),
                lora_down: lin(d, config.adaln_lora_dim),
                lora_up: lin(config.adaln_lora_dim, 6 * d),
            })
            .collect();
        Ok(FitV2 {
            x_embedder: lin(config.token_dim(), d),
            t_mlp0: lin(256, d),
            t_mlp2: lin(d, d),
            y_embedder: EmbeddingConfig::new(config.num_classes + 1, d).init(device),
            global_adaln: lin(d, 6 * d),
            blocks,
            final_adaln: lin(d, 2 * d),
            final_linear: lin(d, config.out_token_dim()),
            config: config.clone(),
        })
    }

    /// Builds the model from validated weights (see [`FitConfig::key_map`]).
    pub fn from_weights(config: &FitConfig, w: &Weights<'_, B>) -> Result<Self, FitError> {
        config.validate()?;
        let blocks = (0..config.depth)
            .map(|i| {
                let p = format!("blocks.{i}");
                Ok(FitBlock {
                    qkv: w.linear(&format!("{p}.attn.qkv"), true)?,
                    proj: w.linear(&format!("{p}.attn.proj"), true)?,
                    fc1_g: w.linear(&format!("{p}.mlp.fc1_g"), true)?,
                    fc1_x: w.linear(&format!("{p}.mlp.fc1_x"), true)?,
                    fc2: w.linear(&format!("{p}.mlp.fc2"), true)?,
                    lora_down: w.linear(&format!("{p}.adaLN_modulation.1"), true)?,
                    lora_up: w.linear(&format!("{p}.adaLN_modulation.2"), true)?,
                })
            })
            .collect::<Result<Vec<_>, WeightsError>>()?;
        Ok(FitV2 {
            x_embedder: w.linear("x_embedder.proj", true)?,
            t_mlp0: w.linear("t_embedder.mlp.0", true)?,
            t_mlp2: w.linear("t_embedder.mlp.2", true)?,
            y_embedder: Embedding {
                weight: Param::from_tensor(w.tensor::<2>("y_embedder.embedding_table.weight")?),
            },
            global_adaln: w.linear("global_adaLN_modulation.1", true)?,
            blocks,
            final_adaln: w.linear("final_layer.adaLN_modulation.1", true)?,
            final_linear: w.linear("final_layer.linear", true)?,
            config: config.clone(),
        })
    }

    /// Opens `path` (safetensors, sharded safetensors or a PyTorch pickle), validates every key,
    /// shape and dtype against [`FitConfig::key_map`] before building anything, and builds the
    /// model on `device` in `dtype` (weights are cast on load).
    pub fn load(
        path: impl AsRef<std::path::Path>,
        config: &FitConfig,
        dtype: burn::tensor::FloatDType,
        device: &B::Device,
    ) -> Result<Self, FitError> {
        let ckpt = crate::weights::Checkpoint::open(path)?;
        let map = config.key_map();
        let w = ckpt.load::<B>(&map, dtype, device)?;
        Self::from_weights(config, &w)
    }

    /// The configuration.
    pub fn config(&self) -> &FitConfig {
        &self.config
    }

    /// The velocity for tokens `x` `[B, N, token_dim]` at FiT time `t` `[B]` (0 = noise, 1 = data),
    /// classes `y` `[B]` (`num_classes` = null), rotary tables for the token grid (`[B or 1, N,
    /// head_dim/2]`, rows then columns, interleaved pairs) and an optional validity mask `[B, N]`
    /// (true = real token). Returns `[B, N, out_token_dim]`, zero on padded tokens.
    pub fn forward(
        &self,
        x: Tensor<B, 3>,
        t: Tensor<B, 1>,
        y: Tensor<B, 1, Int>,
        rope: &RotaryTables<B>,
        mask: Option<Tensor<B, 2, Bool>>,
    ) -> Result<Tensor<B, 3>, FitError> {
        let cfg = self.config();
        let [b, n, c] = x.dims();
        if c != cfg.token_dim() {
            return Err(FitError::Shape {
                what: "x",
                found: vec![b, n, c],
                expected: format!("[B, N, {}]", cfg.token_dim()),
            });
        }
        if t.dims() != [b] {
            return Err(FitError::Shape {
                what: "t",
                found: t.dims().to_vec(),
                expected: format!("[{b}]"),
            });
        }
        if y.dims() != [b] {
            return Err(FitError::Shape {
                what: "y",
                found: y.dims().to_vec(),
                expected: format!("[{b}]"),
            });
        }
        if let Some(m) = &mask
            && m.dims() != [b, n]
        {
            return Err(FitError::Shape {
                what: "mask",
                found: m.dims().to_vec(),
                expected: format!("[{b}, {n}]"),
            });
        }
        let d = cfg.hidden_size;
        // Inputs follow the weights' dtype (a bf16 model takes f32 states); the velocity is
        // returned in the input's dtype.
        let (in_dtype, dtype) = (x.dtype(), self.x_embedder.weight.val().dtype());
        let mut h = self.x_embedder.forward(x.cast(dtype));
        let temb = self
            .t_mlp2
            .forward(silu(self.t_mlp0.forward(timestep_features(t).cast(dtype))));
        let yemb = self
            .y_embedder
            .forward(y.unsqueeze_dim::<2>(1))
            .reshape([b, d]);
        let cond = temb + yemb;
        let global = self.global_adaln.forward(silu(cond.clone()));
        let keep = mask
            .clone()
            .map(|m| m.float().cast(dtype).unsqueeze_dim::<3>(2));
        for block in &self.blocks {
            h = block.forward(h, &cond, &global, rope, mask.clone(), keep.clone(), cfg)?;
        }
        let mods = self.final_adaln.forward(silu(cond)).chunk(2, 1);
        let out =
            self.final_linear
                .forward(modulate(layer_norm(h), mods[0].clone(), mods[1].clone()));
        let out = match keep {
            Some(k) => out * k,
            None => out,
        };
        Ok(out.cast(in_dtype))
    }
}

impl<B: Backend> FitBlock<B> {
    #[allow(clippy::too_many_arguments)]
    fn forward(
        &self,
        x: Tensor<B, 3>,
        cond: &Tensor<B, 2>,
        global: &Tensor<B, 2>,
        rope: &RotaryTables<B>,
        mask: Option<Tensor<B, 2, Bool>>,
        keep: Option<Tensor<B, 3>>,
        cfg: &FitConfig,
    ) -> Result<Tensor<B, 3>, FitError> {
        let m = self
            .lora_up
            .forward(self.lora_down.forward(silu(cond.clone())))
            + global.clone();
        let m = m.chunk(6, 1);
        let [b, n, _] = x.dims();
        let (heads, hd) = (cfg.num_heads, cfg.head_dim());

        let a = modulate(layer_norm(x.clone()), m[0].clone(), m[1].clone());
        let qkv = self
            .qkv
            .forward(a)
            .reshape([b, n, 3, heads, hd])
            .permute([2, 0, 3, 1, 4]);
        let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, hd]);
        let q = rope.apply(layer_norm(part(0)), PairLayout::Interleaved)?;
        let k = rope.apply(layer_norm(part(1)), PairLayout::Interleaved)?;
        let mut att = attention(q, k, part(2), mask, AttentionOptions::default())?;
        if let Some(k) = &keep {
            att = att * k.clone();
        }
        let x = x + self.proj.forward(att) * m[2].clone().unsqueeze_dim(1);

        let a = modulate(layer_norm(x.clone()), m[3].clone(), m[4].clone());
        let hidden = silu(self.fc1_g.forward(a.clone())) * self.fc1_x.forward(a);
        Ok(x + self.fc2.forward(hidden) * m[5].clone().unsqueeze_dim(1))
    }
}

/// Which token channels classifier-free guidance mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GuidedChannels {
    /// FiT/DiT's rule: only latent channels 0–2 (the first `3·p²` token values) are guided; the
    /// rest keep each half's own prediction (spec §1.7).
    #[default]
    Reference,
    /// Guide every channel.
    All,
}

impl<B: Backend> FitV2<B> {
    /// FiT's `forward_with_cfg`: `x` is `[2B, N, C]` (conditional half first, unconditional
    /// second, `y` likewise with the null class in the second half); the model evaluates the
    /// first half twice and returns `[2B, N, C]` with `u + s·(c − u)` on the guided channels.
    #[allow(clippy::too_many_arguments)]
    pub fn forward_with_cfg(
        &self,
        x: Tensor<B, 3>,
        t: Tensor<B, 1>,
        y: Tensor<B, 1, Int>,
        rope: &RotaryTables<B>,
        mask: Option<Tensor<B, 2, Bool>>,
        scale: f64,
        guided: GuidedChannels,
    ) -> Result<Tensor<B, 3>, FitError> {
        let [b2, n, c] = x.dims();
        if b2 % 2 != 0 || b2 == 0 {
            return Err(FitError::Shape {
                what: "x",
                found: vec![b2, n, c],
                expected: "an even batch [cond; uncond]".into(),
            });
        }
        let half = x.narrow(0, 0, b2 / 2);
        let out = self.forward(Tensor::cat(vec![half.clone(), half], 0), t, y, rope, mask)?;
        let cg = match guided {
            GuidedChannels::Reference => {
                (3 * self.config.patch_size * self.config.patch_size).min(c)
            }
            GuidedChannels::All => out.dims()[2],
        };
        let oc = out.dims()[2];
        let eps = out.clone().narrow(2, 0, cg);
        let cond = eps.clone().narrow(0, 0, b2 / 2);
        let uncond = eps.narrow(0, b2 / 2, b2 / 2);
        let guided_half = uncond.clone() + (cond - uncond).mul_scalar(scale);
        let eps = Tensor::cat(vec![guided_half.clone(), guided_half], 0);
        if cg == oc {
            return Ok(eps);
        }
        Ok(Tensor::cat(vec![eps, out.narrow(2, cg, oc - cg)], 2))
    }
}

/// The positional method of a FiT run: FiT's own `custom_freqs` as the reference implements them,
/// or any registry recipe ([`dype_core::presets::METHODS`]: the paper's, official DyPE, ComfyUI,
/// FiT's, HF's, Lumina's) on FiT's axes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FitPosition {
    /// FiT's `custom_freqs` through [`dype_core::presets::fit`].
    Fit(dype_core::presets::FitFreqs),
    /// A registry recipe; its policy, when it fixes one, overrides `decouple`.
    Recipe(dype_core::presets::Recipe),
}

impl From<dype_core::Method> for FitPosition {
    fn from(m: dype_core::Method) -> Self {
        FitPosition::Recipe(dype_core::presets::Recipe::method(m))
    }
}

impl core::str::FromStr for FitPosition {
    type Err = DypeError;
    /// Any registry name ([`dype_core::presets::METHODS`]); an unknown one is
    /// [`DypeError::UnknownName`] with the list.
    fn from_str(s: &str) -> Result<Self, DypeError> {
        dype_core::presets::recipe_by_name(s).map(FitPosition::Recipe)
    }
}

/// The dype-core rope of a FiT model: two axes (rows, then columns) of `head_dim/2`, trained extent
/// `ori_max_pe_len`; `decouple` scales each axis by its own extent, otherwise both by `max(H, W)`.
pub fn fit_rope(
    config: &FitConfig,
    position: FitPosition,
    decouple: bool,
) -> Result<dype_core::AxialRope, DypeError> {
    let ori = config.ori_max_pe_len as f64;
    match position {
        FitPosition::Fit(f) => {
            dype_core::presets::fit(f, decouple, config.head_dim(), config.rope_theta, ori)
        }
        FitPosition::Recipe(r) => {
            let axis =
                dype_core::AxisConfig::scaled(config.head_dim() / 2, config.rope_theta, ori)?;
            let policy = if decouple {
                dype_core::AxisPolicy::PerAxis
            } else {
                dype_core::AxisPolicy::Isotropic
            };
            r.rope(&[axis, axis], policy)
        }
    }
}

/// Positions of an `h × w` token grid (row-major, `(row, col)` per token), padded with `(0, 0)` up
/// to `tokens` entries, and its extents `[h, w]`.
pub fn fit_grid(
    h: usize,
    w: usize,
    tokens: usize,
) -> Result<crate::rotary::SamplePositions, DypeError> {
    let mut ids = dype_core::table::grid_ids(h, w)?;
    if tokens > dype_core::MAX_TOKENS {
        return Err(DypeError::TooLarge {
            name: "tokens",
            value: tokens as u64,
            max: dype_core::MAX_TOKENS as u64,
        });
    }
    if tokens < h * w {
        return Err(DypeError::InvalidConfig {
            reason: "grid has more tokens than the padded length",
        });
    }
    ids.resize(2 * tokens, 0.0);
    crate::rotary::SamplePositions::with_extents(&ids, 2, vec![h as f64, w as f64])
}

/// Patchifies a latent `[B, C, H, W]` into tokens `[B, (H/p)(W/p), C·p·p]` (channel index
/// `c·p² + p1·p + p2`, tokens row-major), as FiT and FLUX pack latents.
pub fn patchify<B: Backend>(latent: Tensor<B, 4>, p: usize) -> Tensor<B, 3> {
    let [b, c, h, w] = latent.dims();
    latent
        .reshape([b, c, h / p, p, w / p, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, (h / p) * (w / p), c * p * p])
}

/// Inverse of [`patchify`]: tokens `[B, h·w, C·p·p]` of an `h × w` token grid → `[B, C, h·p, w·p]`.
pub fn unpatchify<B: Backend>(tokens: Tensor<B, 3>, h: usize, w: usize, p: usize) -> Tensor<B, 4> {
    let [b, _, cpp] = tokens.dims();
    let c = cpp / (p * p);
    tokens
        .reshape([b, h, w, c, p, p])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, c, h * p, w * p])
}

const IMAGENET: &str = include_str!("imagenet_classes.txt");

/// The ImageNet-1k class names (WordNet lemmas, comma-separated synonyms), in class-id order.
pub fn imagenet_classes() -> impl Iterator<Item = (usize, &'static str)> {
    IMAGENET
        .lines()
        .enumerate()
        .map(|(i, l)| (i, l.split_once('\t').map(|(_, n)| n).unwrap_or(l)))
}

/// Resolves a class given as an id (`"207"`) or a name (`"golden retriever"`, case-insensitive;
/// any synonym; a unique substring also matches).
pub fn imagenet_class(query: &str) -> Result<usize, String> {
    let q = query.trim().to_lowercase();
    if let Ok(id) = q.parse::<usize>() {
        return if id < 1000 {
            Ok(id)
        } else {
            Err(format!("class id {id} is out of range (0..1000)"))
        };
    }
    let exact: Vec<usize> = imagenet_classes()
        .filter(|(_, n)| n.split(',').any(|s| s.trim().to_lowercase() == q))
        .map(|(i, _)| i)
        .collect();
    if let [one] = exact[..] {
        return Ok(one);
    }
    let partial: Vec<(usize, &str)> = imagenet_classes()
        .filter(|(_, n)| n.to_lowercase().contains(&q))
        .collect();
    match partial.len() {
        1 => Ok(partial[0].0),
        0 => Err(format!("no ImageNet class matches `{query}`")),
        _ => Err(format!(
            "`{query}` matches {} classes, e.g. {}",
            partial.len(),
            partial
                .iter()
                .take(5)
                .map(|(i, n)| format!("{i} ({n})"))
                .collect::<Vec<_>>()
                .join("; ")
        )),
    }
}
