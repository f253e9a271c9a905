//! Checkpoint key layouts ([`VaeLayout`], [`detect_layout`], [`key_map`]) and strict loading.

use burn::tensor::backend::Backend;

use super::config::VaeConfig;
use super::model::{VaeAttention, VaeDecoder, VaeResnet, VaeUpBlock};
use super::{GROUP_NORM_EPS, MODEL};
use crate::models::{CheckpointSpec, ModelError, Pretrained};
use crate::weights::{Checkpoint, Declare, KeyMap, Load, Source, Weights};

/// Checkpoint key layout of a VAE decoder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
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

impl<'a> Names<'a> {
    fn new(config: &VaeConfig, layout: VaeLayout, prefix: &'a str) -> Self {
        Names {
            layout,
            prefix,
            levels: config.block_out_channels.len(),
        }
    }

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
pub fn detect_layout(checkpoint: &Checkpoint) -> Result<(VaeLayout, String), ModelError> {
    let anchor = "decoder.conv_in.weight";
    let prefixes: Vec<&str> = checkpoint
        .keys()
        .filter_map(|k| k.strip_suffix(anchor))
        .filter(|p| p.is_empty() || p.ends_with('.'))
        .collect();
    let prefix = match prefixes.as_slice() {
        [p] => p.to_string(),
        [] => {
            return Err(ModelError::Layout {
                model: MODEL,
                file: checkpoint.path().to_path_buf(),
                reason: format!("cannot detect the VAE key layout: no `{anchor}` key"),
            });
        }
        many => {
            return Err(ModelError::Layout {
                model: MODEL,
                file: checkpoint.path().to_path_buf(),
                reason: format!(
                    "cannot detect the VAE key layout: several decoders, prefixes {many:?}"
                ),
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

/// A [`VaeResnet`] as a [`Source`] gives it.
struct Resnet<S: Source> {
    norm1: S::GroupNorm,
    conv1: S::Conv2d,
    norm2: S::GroupNorm,
    conv2: S::Conv2d,
    shortcut: Option<S::Conv2d>,
}

/// A [`VaeAttention`] as a [`Source`] gives it.
struct Attention<S: Source> {
    norm: S::GroupNorm,
    q: S::Linear,
    k: S::Linear,
    v: S::Linear,
    out: S::Linear,
}

/// A [`VaeUpBlock`] as a [`Source`] gives it.
struct UpBlock<S: Source> {
    resnets: Vec<Resnet<S>>,
    upsample: Option<S::Conv2d>,
}

/// A [`VaeDecoder`] as a [`Source`] gives it.
struct Decoder<S: Source> {
    post_quant_conv: Option<S::Conv2d>,
    conv_in: S::Conv2d,
    mid_resnet_1: Resnet<S>,
    mid_attention: Option<Attention<S>>,
    mid_resnet_2: Resnet<S>,
    up_blocks: Vec<UpBlock<S>>,
    norm_out: S::GroupNorm,
    conv_out: S::Conv2d,
}

/// The resnet under `p`, `cin` → `cout` channels.
fn resnet<S: Source>(
    s: &mut S,
    n: &Names<'_>,
    groups: usize,
    p: &str,
    (cin, cout): (usize, usize),
) -> Result<Resnet<S>, S::Error> {
    let norm =
        |s: &mut S, name: &str, c| s.group_norm(&format!("{p}.{name}"), c, groups, GROUP_NORM_EPS);
    Ok(Resnet {
        norm1: norm(s, "norm1", cin)?,
        conv1: s.conv2d(&format!("{p}.conv1"), cin, cout, 3)?,
        norm2: norm(s, "norm2", cout)?,
        conv2: s.conv2d(&format!("{p}.conv2"), cout, cout, 3)?,
        shortcut: if cin != cout {
            Some(s.conv2d(&format!("{p}.{}", n.shortcut()), cin, cout, 1)?)
        } else {
            None
        },
    })
}

/// Every tensor of the decoder with `config` in layout `n`, and the stored keys it ignores.
fn decoder<S: Source>(
    s: &mut S,
    config: &VaeConfig,
    n: &Names<'_>,
) -> Result<Decoder<S>, S::Error> {
    let (g, lc, top) = (
        config.norm_num_groups,
        config.latent_channels,
        config.top_channels(),
    );
    let post_quant_conv = if config.use_post_quant_conv {
        Some(s.conv2d(&n.post_quant_conv(), lc, lc, 1)?)
    } else {
        None
    };
    let conv_in = s.conv2d(&n.conv_in(), lc, top, 3)?;
    let mid_resnet_1 = resnet(s, n, g, &n.mid_resnet(0), (top, top))?;
    let mid_attention = if config.mid_block_add_attention {
        let a = n.attn();
        let [norm, q, k, v, o] = n.attn_parts();
        let proj = |s: &mut S, part: &str| s.linear_or_conv1x1(&format!("{a}.{part}"), top, top);
        Some(Attention {
            norm: s.group_norm(&format!("{a}.{norm}"), top, g, GROUP_NORM_EPS)?,
            q: proj(s, q)?,
            k: proj(s, k)?,
            v: proj(s, v)?,
            out: proj(s, o)?,
        })
    } else {
        None
    };
    let mid_resnet_2 = resnet(s, n, g, &n.mid_resnet(1), (top, top))?;
    let mut up_blocks = Vec::new();
    for (i, (cin, cout, up)) in config.levels().into_iter().enumerate() {
        let resnets = (0..=config.layers_per_block)
            .map(|j| {
                let c = if j == 0 { cin } else { cout };
                resnet(s, n, g, &n.up_resnet(i, j), (c, cout))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let upsample = if up {
            Some(s.conv2d(&n.upsampler(i), cout, cout, 3)?)
        } else {
            None
        };
        up_blocks.push(UpBlock { resnets, upsample });
    }
    let bottom = config.block_out_channels[0];
    let norm_out = s.group_norm(&n.norm_out(), bottom, g, GROUP_NORM_EPS)?;
    let conv_out = s.conv2d(&n.conv_out(), bottom, config.out_channels, 3)?;
    s.ignore_prefix(&n.key("encoder."));
    s.ignore_prefix(&n.key("quant_conv."));
    if !n.prefix.is_empty() {
        s.only_within(n.prefix);
    }
    Ok(Decoder {
        post_quant_conv,
        conv_in,
        mid_resnet_1,
        mid_attention,
        mid_resnet_2,
        up_blocks,
        norm_out,
        conv_out,
    })
}

impl<B: Backend> From<Resnet<Load<'_, '_, B>>> for VaeResnet<B> {
    fn from(r: Resnet<Load<'_, '_, B>>) -> Self {
        VaeResnet {
            norm1: r.norm1,
            conv1: r.conv1,
            norm2: r.norm2,
            conv2: r.conv2,
            shortcut: r.shortcut,
        }
    }
}

/// The parameters a decoder with `config` needs from a checkpoint in `layout` under `prefix`.
pub fn key_map(config: &VaeConfig, layout: VaeLayout, prefix: &str) -> KeyMap {
    Declare::key_map(|s| decoder(s, config, &Names::new(config, layout, prefix)))
}

impl<B: Backend> VaeDecoder<B> {
    /// Builds the decoder from weights validated against [`key_map`] for `layout` and `prefix`.
    pub fn from_weights(
        config: &VaeConfig,
        layout: VaeLayout,
        prefix: &str,
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        config.check()?;
        let names = Names::new(config, layout, prefix);
        let d = decoder(&mut Load::new(w), config, &names)?;
        Ok(VaeDecoder {
            post_quant_conv: d.post_quant_conv,
            conv_in: d.conv_in,
            mid_resnet_1: d.mid_resnet_1.into(),
            mid_attention: d.mid_attention.map(|a| VaeAttention {
                norm: a.norm,
                q: a.q,
                k: a.k,
                v: a.v,
                out: a.out,
            }),
            mid_resnet_2: d.mid_resnet_2.into(),
            up_blocks: d
                .up_blocks
                .into_iter()
                .map(|u| VaeUpBlock {
                    resnets: u.resnets.into_iter().map(VaeResnet::from).collect(),
                    upsample: u.upsample,
                })
                .collect(),
            norm_out: d.norm_out,
            conv_out: d.conv_out,
            config: config.clone(),
        })
    }
}

/// The key layout and prefix are detected ([`detect_layout`]).
impl CheckpointSpec for VaeConfig {
    type Layout = (VaeLayout, String);

    fn layout(&self, checkpoint: &Checkpoint) -> Result<(VaeLayout, String), ModelError> {
        self.check()?;
        detect_layout(checkpoint)
    }

    fn declare(&self, (layout, prefix): &(VaeLayout, String)) -> KeyMap {
        key_map(self, *layout, prefix)
    }
}

impl<B: Backend> Pretrained<B> for VaeDecoder<B> {
    type Config = VaeConfig;

    fn build(
        config: &VaeConfig,
        (layout, prefix): (VaeLayout, String),
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        Self::from_weights(config, layout, &prefix, w)
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{fixture, tiny_flux};
    use super::*;
    use crate::weights::WeightsError;
    use burn::tensor::FloatDType;

    type B = crate::backend::Cpu;

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
            matches!(r, Err(ModelError::Weights(WeightsError::MissingKeys { ref keys, .. })) if keys[0] == "post_quant_conv.weight"),
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
            matches!(r, Err(ModelError::Weights(WeightsError::ShapeMismatch { ref key, .. })) if key == "decoder.conv_in.weight"),
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
            matches!(r, Err(ModelError::Weights(WeightsError::UnexpectedKeys { ref keys, .. })) if keys.len() == 2),
            "{r:?}"
        );
    }
}
