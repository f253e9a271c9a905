//! The FiTv2 transformer: blocks, forward pass and classifier-free guidance.

use burn::module::Module;
use burn::nn::{Embedding, EmbeddingConfig, Linear, LinearConfig};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Int, Tensor};

use super::{FitConfig, MODEL};
use crate::attention::{AttentionOptions, Masks, attention};
use crate::kernels::{gated_residual, modulate};
use crate::models::ModelError;
use crate::nn::{fit_timestep_features, layer_norm};
use crate::rotary::RotaryTables;

/// One FiT block: adaLN-LoRA modulated attention and SwiGLU.
#[derive(Module, Debug)]
pub(crate) struct FitBlock<B: Backend> {
    pub(super) qkv: Linear<B>,
    pub(super) proj: Linear<B>,
    pub(super) fc1_g: Linear<B>,
    pub(super) fc1_x: Linear<B>,
    pub(super) fc2: Linear<B>,
    pub(super) lora_down: Linear<B>,
    pub(super) lora_up: Linear<B>,
}

/// The FiTv2 transformer.
#[derive(Module, Debug)]
pub struct FitV2<B: Backend> {
    pub(super) x_embedder: Linear<B>,
    pub(super) t_mlp0: Linear<B>,
    pub(super) t_mlp2: Linear<B>,
    pub(super) y_embedder: Embedding<B>,
    pub(super) global_adaln: Linear<B>,
    pub(super) blocks: Vec<FitBlock<B>>,
    pub(super) final_adaln: Linear<B>,
    pub(super) final_linear: Linear<B>,
    #[module(skip)]
    pub(super) config: FitConfig,
}

/// The inputs of one FiTv2 velocity evaluation ([`FitV2::forward`], [`FitV2::forward_with_cfg`]).
#[derive(Debug, Clone)]
pub struct FitInputs<B: Backend> {
    /// Patch tokens `[B, N, token_dim]`.
    pub x: Tensor<B, 3>,
    /// FiT time `[B]` (0 = noise, 1 = data).
    pub t: Tensor<B, 1>,
    /// Classes `[B]` (`num_classes` = the null class).
    pub y: Tensor<B, 1, Int>,
    /// Optional validity mask `[B, N]` (true = real token).
    pub mask: Option<Tensor<B, 2, Bool>>,
}

impl<B: Backend> FitV2<B> {
    /// A model with random weights (benchmarks, GPU timing).
    pub fn random(config: &FitConfig, device: &B::Device) -> Result<Self, ModelError> {
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

    /// The configuration.
    pub fn config(&self) -> &FitConfig {
        &self.config
    }

    /// The velocity for `inputs` ([`FitInputs`]) and rotary tables for the token grid (`[B or 1,
    /// N, head_dim/2]`, rows then columns). Returns `[B, N, out_token_dim]`, zero on padded
    /// tokens.
    pub fn forward(
        &self,
        inputs: FitInputs<B>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let FitInputs { x, t, y, mask } = inputs;
        let cfg = self.config();
        let [b, n, c] = x.dims();
        if c != cfg.token_dim() {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "x",
                found: vec![b, n, c],
                expected: format!("[B, N, {}]", cfg.token_dim()),
            });
        }
        if t.dims() != [b] {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "t",
                found: t.dims().to_vec(),
                expected: format!("[{b}]"),
            });
        }
        if y.dims() != [b] {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "y",
                found: y.dims().to_vec(),
                expected: format!("[{b}]"),
            });
        }
        if let Some(m) = &mask
            && m.dims() != [b, n]
        {
            return Err(ModelError::Shape {
                model: MODEL,
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
        let temb = self.t_mlp2.forward(silu(
            self.t_mlp0.forward(fit_timestep_features(t).cast(dtype)),
        ));
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
    ) -> Result<Tensor<B, 3>, ModelError> {
        let m = self
            .lora_up
            .forward(self.lora_down.forward(silu(cond.clone())))
            + global.clone();
        let m = m.chunk(6, 1);
        let [b, n, _] = x.dims();
        let (heads, hd) = (cfg.num_heads, cfg.head_dim());

        let a = modulate(layer_norm(x.clone()), m[0].clone(), m[1].clone());
        // q, k, v token-major `[B, N, H, hd]` (one row copy each); the per-row q/k norms do not
        // care about the order, and the rotation returns them head-major.
        let qkv = self.qkv.forward(a).reshape([b, n, 3, heads, hd]);
        let part = |i: usize| qkv.clone().narrow(2, i, 1).reshape([b, n, heads, hd]);
        let q = rope.apply_token_major(layer_norm(part(0)))?;
        let k = rope.apply_token_major(layer_norm(part(1)))?;
        let mut att = attention(
            q,
            k,
            part(2).swap_dims(1, 2),
            Masks::key_padding(mask),
            AttentionOptions::default(),
        )?;
        if let Some(k) = &keep {
            att = att * k.clone();
        }
        let x = gated_residual(x, self.proj.forward(att), m[2].clone());

        let a = modulate(layer_norm(x.clone()), m[3].clone(), m[4].clone());
        let hidden = silu(self.fc1_g.forward(a.clone())) * self.fc1_x.forward(a);
        Ok(gated_residual(x, self.fc2.forward(hidden), m[5].clone()))
    }
}

/// Which token channels classifier-free guidance mixes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
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
    pub fn forward_with_cfg(
        &self,
        inputs: FitInputs<B>,
        rope: &RotaryTables<B>,
        scale: f64,
        guided: GuidedChannels,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let FitInputs { x, t, y, mask } = inputs;
        let [b2, n, c] = x.dims();
        if b2 % 2 != 0 || b2 == 0 {
            return Err(ModelError::Shape {
                model: MODEL,
                what: "x",
                found: vec![b2, n, c],
                expected: "an even batch [cond; uncond]".into(),
            });
        }
        let half = x.narrow(0, 0, b2 / 2);
        let x = Tensor::cat(vec![half.clone(), half], 0);
        let out = self.forward(FitInputs { x, t, y, mask }, rope)?;
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
