//! FLUX checkpoints in both layouts from one builder. Every parameter is spelled once: its BFL
//! name beside its diffusers name(s) and the transform between them (a rename; q/k/v(/mlp)
//! stacked along the outputs into BFL's fused linears; the final adaLN's (scale, shift) halves
//! swapped into BFL's (shift, scale)). A [`Source`] either declares what a file of that layout
//! must hold ([`FluxConfig::key_map`], validated before anything is built) or loads it
//! ([`Flux::from_weights`], [`super::StreamedFlux`]); both implement [`Pretrained`].

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::config::{FluxConfig, FluxLayout};
use super::model::{DoubleBlock, Flux, MlpEmbedder, SingleBlock, StreamWeights};
use crate::models::{CheckpointSpec, ModelError, Pretrained};
use crate::weights::{Checkpoint, Declare, KeyMap, Load, Source, Weights, WeightsError};

/// The two transforms between diffusers' and BFL's linears, on a [`Source`]'s linears.
trait Fuse: Source {
    /// Linears stacked along their outputs; with `bias`, a part without one gets zeros.
    fn stack(&mut self, parts: Vec<Self::Linear>, bias: bool) -> Self::Linear;
    /// The two output halves exchanged.
    fn swap_halves(&mut self, linear: Self::Linear) -> Self::Linear;
}

/// A [`Source`] read in one FLUX key layout.
struct Flx<'s, S> {
    s: &'s mut S,
    layout: FluxLayout,
}

impl<S: Fuse> Flx<'_, S> {
    /// `bfl` in BFL files, `diffusers` in diffusers files.
    fn pick<'k>(&self, bfl: &'k str, diffusers: &'k str) -> &'k str {
        match self.layout {
            FluxLayout::Bfl => bfl,
            FluxLayout::Diffusers => diffusers,
        }
    }

    /// A linear stored as `bfl` or `diffusers`.
    fn renamed(&mut self, bfl: &str, diffusers: &str, d_in: usize, d_out: usize) -> LinearOf<S> {
        let key = self.pick(bfl, diffusers);
        self.s.linear(key, d_in, d_out, true)
    }

    /// A vector stored as `bfl` or `diffusers`.
    fn vector(&mut self, bfl: &str, diffusers: &str, len: usize) -> Result<S::Param<1>, S::Error> {
        let key = self.pick(bfl, diffusers);
        self.s.param(key, [len])
    }

    /// BFL's fused linear `bfl` (bias iff `bias`) = diffusers' `parts` (key, outputs, bias)
    /// stacked along the outputs.
    fn fused(
        &mut self,
        bfl: &str,
        bias: bool,
        parts: &[(String, usize, bool)],
        d_in: usize,
    ) -> LinearOf<S> {
        match self.layout {
            FluxLayout::Bfl => {
                let d_out = parts.iter().map(|p| p.1).sum();
                self.s.linear(bfl, d_in, d_out, bias)
            }
            FluxLayout::Diffusers => {
                let linears = parts
                    .iter()
                    .map(|(key, d_out, b)| self.s.linear(key, d_in, *d_out, *b))
                    .collect::<Result<Vec<_>, _>>()?;
                Ok(self.s.stack(linears, bias))
            }
        }
    }

    /// A two-half modulation read with [`Flx::renamed`]: diffusers' (scale, shift) halves
    /// swapped into BFL's (shift, scale).
    fn swapped(&mut self, linear: S::Linear) -> S::Linear {
        match self.layout {
            FluxLayout::Bfl => linear,
            FluxLayout::Diffusers => self.s.swap_halves(linear),
        }
    }
}

/// A linear as `S` gives it.
type LinearOf<S> = Result<<S as Source>::Linear, <S as Source>::Error>;

/// The embedders and the final layer.
struct Head<L> {
    img_in: L,
    txt_in: L,
    time_in: [L; 2],
    guidance_in: Option<[L; 2]>,
    vector_in: [L; 2],
    final_mod: L,
    final_linear: L,
}

/// One stream (image or text) of a double block.
struct Stream<L, V> {
    modulation: L,
    qkv: L,
    q_scale: V,
    k_scale: V,
    proj: L,
    mlp_in: L,
    mlp_out: L,
}

/// A double block's stream as `S` provides it.
type StreamOf<S> = Stream<<S as Source>::Linear, <S as Source>::Param<1>>;

/// A single block.
struct Single<L, V> {
    modulation: L,
    linear1: L,
    q_scale: V,
    k_scale: V,
    linear2: L,
}

/// An MLP embedder: BFL `{bfl}.{in,out}_layer`, diffusers `time_text_embed.{diffusers}.linear_{1,2}`.
fn embedder<S: Fuse>(
    s: &mut Flx<'_, S>,
    bfl: &str,
    diffusers: &str,
    d_in: usize,
    d: usize,
) -> Result<[S::Linear; 2], S::Error> {
    let e = format!("time_text_embed.{diffusers}");
    Ok([
        s.renamed(
            &format!("{bfl}.in_layer"),
            &format!("{e}.linear_1"),
            d_in,
            d,
        )?,
        s.renamed(&format!("{bfl}.out_layer"), &format!("{e}.linear_2"), d, d)?,
    ])
}

fn head<S: Fuse>(s: &mut Flx<'_, S>, c: &FluxConfig) -> Result<Head<S::Linear>, S::Error> {
    let d = c.hidden_size;
    Ok(Head {
        img_in: s.renamed("img_in", "x_embedder", c.in_channels, d)?,
        txt_in: s.renamed("txt_in", "context_embedder", c.context_in_dim, d)?,
        time_in: embedder(s, "time_in", "timestep_embedder", 256, d)?,
        guidance_in: if c.guidance_embed {
            Some(embedder(s, "guidance_in", "guidance_embedder", 256, d)?)
        } else {
            None
        },
        vector_in: embedder(s, "vector_in", "text_embedder", c.vec_in_dim, d)?,
        final_mod: {
            let m = s.renamed(
                "final_layer.adaLN_modulation.1",
                "norm_out.linear",
                d,
                2 * d,
            )?;
            s.swapped(m)
        },
        final_linear: s.renamed("final_layer.linear", "proj_out", d, c.in_channels)?,
    })
}

/// Double block `i`: its image stream (`img` / diffusers' plain names) and its text stream (`txt`
/// / diffusers' `context` and `added` names).
fn double<S: Fuse>(
    s: &mut Flx<'_, S>,
    c: &FluxConfig,
    i: usize,
) -> Result<[StreamOf<S>; 2], S::Error> {
    let (d, hd, mlp, qb) = (c.hidden_size, c.head_dim(), c.mlp_hidden(), c.qkv_bias);
    let (p, t) = (
        format!("double_blocks.{i}"),
        format!("transformer_blocks.{i}"),
    );
    let stream = |s: &mut Flx<'_, S>,
                  bfl: &str,
                  diff: [&str; 6],
                  qkv: [&str; 3]|
     -> Result<StreamOf<S>, S::Error> {
        let [modulation, q_norm, k_norm, proj, mlp_in, mlp_out] = diff;
        let parts: Vec<(String, usize, bool)> = qkv
            .iter()
            .map(|n| (format!("{t}.attn.{n}"), d, qb))
            .collect();
        Ok(Stream {
            modulation: s.renamed(
                &format!("{p}.{bfl}_mod.lin"),
                &format!("{t}.{modulation}"),
                d,
                6 * d,
            )?,
            qkv: s.fused(&format!("{p}.{bfl}_attn.qkv"), qb, &parts, d)?,
            q_scale: s.vector(
                &format!("{p}.{bfl}_attn.norm.query_norm.scale"),
                &format!("{t}.attn.{q_norm}"),
                hd,
            )?,
            k_scale: s.vector(
                &format!("{p}.{bfl}_attn.norm.key_norm.scale"),
                &format!("{t}.attn.{k_norm}"),
                hd,
            )?,
            proj: s.renamed(
                &format!("{p}.{bfl}_attn.proj"),
                &format!("{t}.attn.{proj}"),
                d,
                d,
            )?,
            mlp_in: s.renamed(
                &format!("{p}.{bfl}_mlp.0"),
                &format!("{t}.{mlp_in}"),
                d,
                mlp,
            )?,
            mlp_out: s.renamed(
                &format!("{p}.{bfl}_mlp.2"),
                &format!("{t}.{mlp_out}"),
                mlp,
                d,
            )?,
        })
    };
    Ok([
        stream(
            s,
            "img",
            [
                "norm1.linear",
                "norm_q.weight",
                "norm_k.weight",
                "to_out.0",
                "ff.net.0.proj",
                "ff.net.2",
            ],
            ["to_q", "to_k", "to_v"],
        )?,
        stream(
            s,
            "txt",
            [
                "norm1_context.linear",
                "norm_added_q.weight",
                "norm_added_k.weight",
                "to_add_out",
                "ff_context.net.0.proj",
                "ff_context.net.2",
            ],
            ["add_q_proj", "add_k_proj", "add_v_proj"],
        )?,
    ])
}

/// Single block `i`: BFL's `linear1` is diffusers' q, k, v and `proj_mlp` stacked (BFL always
/// has its bias; without qkv bias the q/k/v part is zero).
fn single<S: Fuse>(
    s: &mut Flx<'_, S>,
    c: &FluxConfig,
    i: usize,
) -> Result<Single<S::Linear, S::Param<1>>, S::Error> {
    let (d, hd, mlp, qb) = (c.hidden_size, c.head_dim(), c.mlp_hidden(), c.qkv_bias);
    let (p, t) = (
        format!("single_blocks.{i}"),
        format!("single_transformer_blocks.{i}"),
    );
    let mut parts: Vec<(String, usize, bool)> = ["to_q", "to_k", "to_v"]
        .iter()
        .map(|n| (format!("{t}.attn.{n}"), d, qb))
        .collect();
    parts.push((format!("{t}.proj_mlp"), mlp, true));
    Ok(Single {
        modulation: s.renamed(
            &format!("{p}.modulation.lin"),
            &format!("{t}.norm.linear"),
            d,
            3 * d,
        )?,
        linear1: s.fused(&format!("{p}.linear1"), true, &parts, d)?,
        q_scale: s.vector(
            &format!("{p}.norm.query_norm.scale"),
            &format!("{t}.attn.norm_q.weight"),
            hd,
        )?,
        k_scale: s.vector(
            &format!("{p}.norm.key_norm.scale"),
            &format!("{t}.attn.norm_k.weight"),
            hd,
        )?,
        linear2: s.renamed(
            &format!("{p}.linear2"),
            &format!("{t}.proj_out"),
            d + mlp,
            d,
        )?,
    })
}

impl Fuse for Declare {
    fn stack(&mut self, _parts: Vec<()>, _bias: bool) {}

    fn swap_halves(&mut self, _linear: ()) {}
}

impl<B: Backend> Fuse for Load<'_, '_, B> {
    fn stack(&mut self, mut parts: Vec<Linear<B>>, bias: bool) -> Linear<B> {
        if bias {
            for l in parts.iter_mut().filter(|l| l.bias.is_none()) {
                let w = l.weight.val();
                let zeros = Tensor::<B, 1>::zeros([w.dims()[1]], &w.device()).cast(w.dtype());
                l.bias = Some(Param::from_tensor(zeros));
            }
        }
        // burn stores linear weights as [d_in, d_out]: outputs are dimension 1.
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

    fn swap_halves(&mut self, l: Linear<B>) -> Linear<B> {
        let w = l.weight.val();
        let h = w.dims()[1] / 2;
        let weight = Tensor::cat(vec![w.clone().narrow(1, h, h), w.narrow(1, 0, h)], 1);
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
}

impl<B: Backend> From<[Linear<B>; 2]> for MlpEmbedder<B> {
    fn from([in_layer, out_layer]: [Linear<B>; 2]) -> Self {
        MlpEmbedder {
            in_layer,
            out_layer,
        }
    }
}

impl<B: Backend> From<Stream<Linear<B>, Param<Tensor<B, 1>>>> for StreamWeights<B> {
    fn from(s: Stream<Linear<B>, Param<Tensor<B, 1>>>) -> Self {
        StreamWeights {
            modulation: s.modulation,
            qkv: s.qkv,
            q_scale: s.q_scale,
            k_scale: s.k_scale,
            proj: s.proj,
            mlp_in: s.mlp_in,
            mlp_out: s.mlp_out,
        }
    }
}

impl FluxConfig {
    /// The checkpoint key map of `layout`: every tensor the file must hold, with PyTorch shapes
    /// (FLUX.1-dev: 780 BFL tensors, 1 160 diffusers tensors).
    pub fn key_map(&self, layout: FluxLayout) -> KeyMap {
        Declare::key_map(|s| {
            let s = &mut Flx { s, layout };
            head(s, self)?;
            for i in 0..self.depth {
                double(s, self, i)?;
            }
            for i in 0..self.depth_single_blocks {
                single(s, self, i)?;
            }
            Ok(())
        })
    }
}

impl<B: Backend> Flux<B> {
    /// Builds the model from validated weights (see [`FluxConfig::key_map`]) in `layout`.
    pub fn from_weights(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let mut model = Self::head(config, layout, w)?;
        model.double_blocks = (0..config.depth)
            .map(|i| Self::double_block(config, layout, w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        model.single_blocks = (0..config.depth_single_blocks)
            .map(|i| Self::single_block(config, layout, w, i))
            .collect::<Result<Vec<_>, WeightsError>>()?;
        Ok(model)
    }

    /// The embedders and final layer of `layout`, without blocks.
    pub(super) fn head(
        config: &FluxConfig,
        layout: FluxLayout,
        weights: &Weights<'_, B>,
    ) -> Result<Self, WeightsError> {
        let h = head(
            &mut Flx {
                s: &mut Load::new(weights),
                layout,
            },
            config,
        )?;
        Ok(Flux {
            img_in: h.img_in,
            txt_in: h.txt_in,
            time_in: h.time_in.into(),
            guidance_in: h.guidance_in.map(MlpEmbedder::from),
            vector_in: h.vector_in.into(),
            double_blocks: Vec::new(),
            single_blocks: Vec::new(),
            final_mod: h.final_mod,
            final_linear: h.final_linear,
            config: config.clone(),
        })
    }

    /// Double block `i` of `layout`.
    pub(super) fn double_block(
        config: &FluxConfig,
        layout: FluxLayout,
        weights: &Weights<'_, B>,
        i: usize,
    ) -> Result<DoubleBlock<B>, WeightsError> {
        let [img, txt] = double(
            &mut Flx {
                s: &mut Load::new(weights),
                layout,
            },
            config,
            i,
        )?;
        Ok(DoubleBlock {
            img: img.into(),
            txt: txt.into(),
        })
    }

    /// Single block `i` of `layout`.
    pub(super) fn single_block(
        config: &FluxConfig,
        layout: FluxLayout,
        weights: &Weights<'_, B>,
        i: usize,
    ) -> Result<SingleBlock<B>, WeightsError> {
        let b = single(
            &mut Flx {
                s: &mut Load::new(weights),
                layout,
            },
            config,
            i,
        )?;
        Ok(SingleBlock {
            modulation: b.modulation,
            linear1: b.linear1,
            q_scale: b.q_scale,
            k_scale: b.k_scale,
            linear2: b.linear2,
        })
    }
}

/// The BFL or diffusers layout is detected from the keys ([`FluxLayout::detect`]).
impl CheckpointSpec for FluxConfig {
    type Layout = FluxLayout;

    fn layout(&self, checkpoint: &Checkpoint) -> Result<FluxLayout, ModelError> {
        self.validate()?;
        FluxLayout::detect(checkpoint)
    }

    fn declare(&self, &layout: &FluxLayout) -> KeyMap {
        self.key_map(layout)
    }
}

impl<B: Backend> Pretrained<B> for Flux<B> {
    type Config = FluxConfig;

    fn build(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        Self::from_weights(config, layout, w)
    }
}

#[cfg(all(test, feature = "cpu"))]
mod tests {
    use super::*;

    #[test]
    fn dev_config_is_valid_and_maps_every_tensor() {
        let cfg = FluxConfig::dev();
        cfg.validate().expect("valid");
        assert_eq!(cfg.head_dim(), 128);
        assert_eq!(cfg.key_map(FluxLayout::Bfl).specs().len(), 780);
        assert_eq!(cfg.key_map(FluxLayout::Diffusers).specs().len(), 1160);
    }
}
