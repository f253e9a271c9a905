//! Checkpoint key layouts ([`VaeLayout`], [`detect_layout`], [`key_map`]) and strict loading.

use std::path::Path;

use burn::tensor::FloatDType;
use burn::tensor::backend::Backend;

use super::config::VaeConfig;
use super::model::{VaeAttention, VaeDecoder, VaeResnet, VaeUpBlock};
use super::{GROUP_NORM_EPS, MODEL};
use crate::models::ModelError;
use crate::weights::{Checkpoint, KeyMap, Weights, WeightsError};

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
}

impl<B: Backend> VaeDecoder<B> {
    /// Opens `path` (any format [`Checkpoint::open`] reads), detects the key layout and loads
    /// the decoder strictly (see [`VaeDecoder::from_checkpoint`]).
    pub fn load(
        path: impl AsRef<Path>,
        config: &VaeConfig,
        dtype: FloatDType,
        device: &B::Device,
    ) -> Result<Self, ModelError> {
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
    ) -> Result<Self, ModelError> {
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
    ) -> Result<Self, ModelError> {
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
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{fixture, tiny_flux};
    use super::*;

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
