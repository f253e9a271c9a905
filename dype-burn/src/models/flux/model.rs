//! The FLUX transformer: embedders, double/single blocks, forward pass and rope helpers.

use std::borrow::Borrow;

use burn::module::{Module, Param};
use burn::nn::{Linear, LinearConfig};
use burn::tensor::activation::{gelu_approximate, silu};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use super::config::{FluxConfig, MODEL};
use crate::attention::{AttentionOptions, Masks, attention};
use crate::kernels::{gated_residual, modulate};
use crate::models::ModelError;
use crate::nn::{EPS, RmsForm, flux_timestep_embedding, layer_norm, rms_norm};
use crate::rotary::RotaryTables;
use dype_core::DypeError;
use dype_core::presets::OfficialMethod;

/// `Linear → SiLU → Linear` (BFL `MLPEmbedder`).
#[derive(Module, Debug)]
pub(crate) struct MlpEmbedder<B: Backend> {
    pub(super) in_layer: Linear<B>,
    pub(super) out_layer: Linear<B>,
}

impl<B: Backend> MlpEmbedder<B> {
    fn forward(&self, x: Tensor<B, 2>) -> Tensor<B, 2> {
        self.out_layer.forward(silu(self.in_layer.forward(x)))
    }
}

/// One stream of a double block (image or text).
#[derive(Module, Debug)]
pub(crate) struct StreamWeights<B: Backend> {
    pub(super) modulation: Linear<B>,
    pub(super) qkv: Linear<B>,
    pub(super) q_scale: Param<Tensor<B, 1>>,
    pub(super) k_scale: Param<Tensor<B, 1>>,
    pub(super) proj: Linear<B>,
    pub(super) mlp_in: Linear<B>,
    pub(super) mlp_out: Linear<B>,
}

/// A double-stream block: separate image/text weights, joint attention.
#[derive(Module, Debug)]
pub(crate) struct DoubleBlock<B: Backend> {
    pub(super) img: StreamWeights<B>,
    pub(super) txt: StreamWeights<B>,
}

/// A single-stream block on `[text; image]`: fused `linear1` (qkv | mlp) and `linear2`.
#[derive(Module, Debug)]
pub(crate) struct SingleBlock<B: Backend> {
    pub(super) modulation: Linear<B>,
    pub(super) linear1: Linear<B>,
    pub(super) q_scale: Param<Tensor<B, 1>>,
    pub(super) k_scale: Param<Tensor<B, 1>>,
    pub(super) linear2: Linear<B>,
}

/// The FLUX transformer.
#[derive(Module, Debug)]
pub struct Flux<B: Backend> {
    pub(super) img_in: Linear<B>,
    pub(super) txt_in: Linear<B>,
    pub(super) time_in: MlpEmbedder<B>,
    pub(super) guidance_in: Option<MlpEmbedder<B>>,
    pub(super) vector_in: MlpEmbedder<B>,
    pub(super) double_blocks: Vec<DoubleBlock<B>>,
    pub(super) single_blocks: Vec<SingleBlock<B>>,
    /// Final modulation, output halves in BFL order (shift, scale).
    pub(super) final_mod: Linear<B>,
    pub(super) final_linear: Linear<B>,
    #[module(skip)]
    pub(super) config: FluxConfig,
}

/// BFL `RMSNorm` over head_dim with learned scale: `x · rsqrt(mean(x²) + 1e-6) · scale`.
fn qk_norm<B: Backend>(x: Tensor<B, 4>, scale: &Param<Tensor<B, 1>>) -> Tensor<B, 4> {
    let hd = x.dims()[3];
    // As BFL: normalise in f32, cast back, then apply the learned scale.
    rms_norm(x, EPS, RmsForm::MulReciprocal) * scale.val().reshape([1, 1, 1, hd])
}

/// Splits `[B, N, 3·D]` into q, k, v `[B, H, N, Dh]` ("B L (K H D) -> K B H L D").
fn split_qkv<B: Backend>(qkv: Tensor<B, 3>, heads: usize, hd: usize) -> [Tensor<B, 4>; 3] {
    let [b, n, _] = qkv.dims();
    let qkv = qkv.reshape([b, n, 3, heads, hd]).permute([2, 0, 3, 1, 4]);
    let part = |i: usize| qkv.clone().narrow(0, i, 1).reshape([b, heads, n, hd]);
    [part(0), part(1), part(2)]
}

impl<B: Backend> Flux<B> {
    /// A model with random weights (benchmarks, GPU timing). RMSNorm scales are 1.
    pub fn random(config: &FluxConfig, device: &B::Device) -> Result<Self, ModelError> {
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

    /// The configuration.
    pub fn config(&self) -> &FluxConfig {
        &self.config
    }

    /// The velocity (noise − data) for `inputs` ([`FluxInputs`]) and rotary tables over the
    /// `L + N` tokens `[text; image]` in that order (built from the ids `[txt_ids; img_ids]`, see
    /// [`SamplePositions::flux`](crate::rotary::SamplePositions::flux)). Returns
    /// `[B, N, in_channels]`.
    pub fn forward(
        &self,
        inputs: FluxInputs<B>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let blocks = (
            self.double_blocks.iter().map(Ok),
            self.single_blocks.iter().map(Ok),
        );
        self.forward_with(inputs, rope, blocks)
    }

    /// [`Flux::forward`] with the embedders and final layer of `self` and the blocks given by
    /// `doubles` and `singles` (`config.depth` and `config.depth_single_blocks` of them), each
    /// dropped as soon as it has run: the resident blocks, or blocks materialised one by one
    /// ([`StreamedFlux`](super::StreamedFlux)).
    pub(super) fn forward_with<D, S>(
        &self,
        inputs: FluxInputs<B>,
        rope: &RotaryTables<B>,
        (doubles, singles): (
            impl Iterator<Item = Result<D, ModelError>>,
            impl Iterator<Item = Result<S, ModelError>>,
        ),
    ) -> Result<Tensor<B, 3>, ModelError>
    where
        D: Borrow<DoubleBlock<B>>,
        S: Borrow<SingleBlock<B>>,
    {
        let FluxInputs {
            img,
            txt,
            timesteps,
            y,
            guidance,
        } = inputs;
        let cfg = &self.config;
        let [b, n, c] = img.dims();
        let shape = |what: &'static str, found: &[usize], expected: String| {
            Err(ModelError::Shape {
                model: MODEL,
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
            .forward(flux_timestep_embedding(timesteps).cast(dtype));
        match (&self.guidance_in, guidance) {
            (Some(g_in), Some(g)) => {
                if g.dims() != [b] {
                    return shape("guidance", &g.dims(), format!("[{b}]"));
                }
                vec = vec + g_in.forward(flux_timestep_embedding(g).cast(dtype));
            }
            (Some(_), None) => {
                return Err(ModelError::MissingInput {
                    model: MODEL,
                    what: "this model embeds guidance: pass a guidance value",
                });
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
        (m, [qk_norm(q, &self.q_scale), qk_norm(k, &self.k_scale), v])
    }

    fn finish(&self, x: Tensor<B, 3>, att: Tensor<B, 3>, m: &[Tensor<B, 2>]) -> Tensor<B, 3> {
        let x = gated_residual(x, self.proj.forward(att), m[2].clone());
        let h = modulate(layer_norm(x.clone()), m[3].clone(), m[4].clone());
        let mlp = self
            .mlp_out
            .forward(gelu_approximate(self.mlp_in.forward(h)));
        gated_residual(x, mlp, m[5].clone())
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
    ) -> Result<(Tensor<B, 3>, Tensor<B, 3>), ModelError> {
        let (l, n) = (txt.dims()[1], img.dims()[1]);
        let (im, [iq, ik, iv]) = self.img.attn_inputs(img.clone(), svec, cfg);
        let (tm, [tq, tk, tv]) = self.txt.attn_inputs(txt.clone(), svec, cfg);
        let q = rope.apply(Tensor::cat(vec![tq, iq], 2))?;
        let k = rope.apply(Tensor::cat(vec![tk, ik], 2))?;
        let v = Tensor::cat(vec![tv, iv], 2);
        let att = attention(q, k, v, Masks::default(), AttentionOptions::default())?;
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
    ) -> Result<Tensor<B, 3>, ModelError> {
        let d = cfg.hidden_size;
        let m = self.modulation.forward(svec.clone()).chunk(3, 1);
        let a = modulate(layer_norm(x.clone()), m[0].clone(), m[1].clone());
        let h = self.linear1.forward(a);
        let mlp = h.clone().narrow(2, 3 * d, cfg.mlp_hidden());
        let [q, k, v] = split_qkv(h.narrow(2, 0, 3 * d), cfg.num_heads, cfg.head_dim());
        let q = rope.apply(qk_norm(q, &self.q_scale))?;
        let k = rope.apply(qk_norm(k, &self.k_scale))?;
        let att = attention(q, k, v, Masks::default(), AttentionOptions::default())?;
        let out = self
            .linear2
            .forward(Tensor::cat(vec![att, gelu_approximate(mlp)], 2));
        Ok(gated_residual(x, out, m[2].clone()))
    }
}

/// The inputs of one FLUX velocity evaluation ([`Flux::forward`], [`FluxDenoiser::velocity`]).
#[derive(Debug, Clone)]
pub struct FluxInputs<B: Backend> {
    /// Packed image tokens `[B, N, in_channels]`; the velocity comes back in their dtype.
    pub img: Tensor<B, 3>,
    /// Text tokens `[B, L, context_in_dim]`.
    pub txt: Tensor<B, 3>,
    /// σ `[B]` in [0, 1] (the model scales it by 1000).
    pub timesteps: Tensor<B, 1>,
    /// Pooled text `[B, vec_in_dim]`.
    pub y: Tensor<B, 2>,
    /// Guidance `[B]`, required iff the model embeds guidance.
    pub guidance: Option<Tensor<B, 1>>,
}

/// A model that gives FLUX velocities: the resident [`Flux`] or the block-streaming
/// [`StreamedFlux`](super::StreamedFlux). The pipeline (`crate::pipeline::flux`) takes either.
pub trait FluxDenoiser<B: Backend> {
    /// The configuration.
    fn config(&self) -> &FluxConfig;

    /// The dtype of the weights (the dtype the image, text and pooled inputs are best given in).
    fn weight_dtype(&self) -> DType;

    /// The velocity, exactly as [`Flux::forward`] computes it.
    fn velocity(
        &self,
        inputs: FluxInputs<B>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, ModelError>;
}

impl<B: Backend> FluxDenoiser<B> for Flux<B> {
    fn config(&self) -> &FluxConfig {
        Flux::config(self)
    }

    fn weight_dtype(&self) -> DType {
        self.img_in.weight.val().dtype()
    }

    fn velocity(
        &self,
        inputs: FluxInputs<B>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        self.forward(inputs, rope)
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

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;
    use crate::rotary::PairLayout;
    use crate::rotary::RotaryEmbedding;
    use crate::rotary::SamplePositions;
    use burn::tensor::TensorData;

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
    fn random_model_forward_shapes_and_checks() {
        let cfg = tiny();
        let device = Default::default();
        let model = Flux::<B>::random(&cfg, &device).expect("model");
        let (l, h, w) = (3, 4, 5);
        let rope = flux_rope(&cfg, OfficialMethod::Yarn, true, 4.0).expect("rope");
        let mut rot = RotaryEmbedding::<B>::batch(
            rope,
            vec![SamplePositions::flux(l, h, w).expect("ids")],
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
        let inputs = FluxInputs {
            img,
            txt,
            timesteps: t.clone(),
            y,
            guidance: Some(t),
        };
        let out = model
            .forward(inputs.clone(), rot.tables())
            .expect("forward");
        assert_eq!(out.dims(), [1, h * w, 64]);
        // Missing guidance and a table for the wrong token count are errors, not panics.
        let unguided = FluxInputs {
            guidance: None,
            ..inputs.clone()
        };
        assert!(model.forward(unguided, rot.tables()).is_err());
        let mut other = RotaryEmbedding::<B>::batch(
            flux_rope(&cfg, OfficialMethod::Base, false, 4.0).expect("rope"),
            vec![SamplePositions::flux(l + 1, h, w).expect("ids")],
            PairLayout::Interleaved,
            &device,
        )
        .expect("rot");
        other.set_static().expect("step");
        assert!(model.forward(inputs, other.tables()).is_err());
    }
}
