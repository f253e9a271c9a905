//! The decoder graph: resnet, mid-block attention and up blocks, and [`VaeDecoder`]'s forward pass.

use burn::module::Module;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::activation::silu;
use burn::tensor::backend::Backend;
use burn::tensor::module::interpolate;
use burn::tensor::ops::{InterpolateMode, InterpolateOptions};
use burn::tensor::{DType, Tensor};

use super::config::VaeConfig;
use crate::attention::{AttentionOptions, AttentionPath, Masks, attention, default_query_chunk};
use crate::models::ModelError;
use crate::nn::group_norm;

/// `ResnetBlock2D` without time embedding: GN → SiLU → conv3×3 → GN → SiLU → conv3×3, plus the
/// (1×1-conv when channels change) input.
#[derive(Module, Debug)]
pub(crate) struct VaeResnet<B: Backend> {
    pub(super) norm1: GroupNorm<B>,
    pub(super) conv1: Conv2d<B>,
    pub(super) norm2: GroupNorm<B>,
    pub(super) conv2: Conv2d<B>,
    pub(super) shortcut: Option<Conv2d<B>>,
}

impl<B: Backend> VaeResnet<B> {
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
pub(crate) struct VaeAttention<B: Backend> {
    pub(super) norm: GroupNorm<B>,
    pub(super) q: Linear<B>,
    pub(super) k: Linear<B>,
    pub(super) v: Linear<B>,
    pub(super) out: Linear<B>,
}

impl<B: Backend> VaeAttention<B> {
    /// Applies the block to `[batch, c, h, w]`.
    pub fn forward(&self, x: Tensor<B, 4>) -> Result<Tensor<B, 4>, ModelError> {
        let [b, c, h, w] = x.dims();
        let n = h * w;
        let t = group_norm(&self.norm, x.clone())
            .reshape([b, c, n])
            .swap_dims(1, 2);
        // One head of width c; q, k, v in f32 (f64 stays), the result in the model's dtype; the
        // chunked path always (burn's fused kernel would compute in the model's dtype).
        let head = |l: &Linear<B>| l.forward(t.clone()).unsqueeze_dim::<4>(1);
        let options = AttentionOptions::default().with_path(AttentionPath::Chunked {
            query_chunk: default_query_chunk(b, 1, n, n),
        });
        let attn = attention(
            head(&self.q),
            head(&self.k),
            head(&self.v),
            Masks::default(),
            options,
        )?;
        let o = self.out.forward(attn);
        Ok(o.swap_dims(1, 2).reshape([b, c, h, w]) + x)
    }
}

/// One decoder level: resnets, then (except the last level) nearest ×2 and a 3×3 conv.
#[derive(Module, Debug)]
pub(crate) struct VaeUpBlock<B: Backend> {
    pub(super) resnets: Vec<VaeResnet<B>>,
    pub(super) upsample: Option<Conv2d<B>>,
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

/// AutoencoderKL decoder (see the [module docs](super)).
#[derive(Module, Debug)]
pub struct VaeDecoder<B: Backend> {
    pub(super) post_quant_conv: Option<Conv2d<B>>,
    pub(super) conv_in: Conv2d<B>,
    pub(super) mid_resnet_1: VaeResnet<B>,
    pub(super) mid_attention: Option<VaeAttention<B>>,
    pub(super) mid_resnet_2: VaeResnet<B>,
    pub(super) up_blocks: Vec<VaeUpBlock<B>>,
    pub(super) norm_out: GroupNorm<B>,
    pub(super) conv_out: Conv2d<B>,
    #[module(skip)]
    pub(super) config: VaeConfig,
}

impl<B: Backend> VaeDecoder<B> {
    /// The configuration.
    pub fn config(&self) -> &VaeConfig {
        &self.config
    }

    /// The float dtype of the parameters (inputs are cast to it).
    pub fn dtype(&self) -> DType {
        self.conv_in.weight.val().dtype()
    }

    pub(super) fn check_latent(&self, latent: &Tensor<B, 4>) -> Result<(), ModelError> {
        let dims = latent.dims();
        if dims[1] != self.config.latent_channels || dims.contains(&0) {
            return Err(ModelError::Latent {
                actual: dims,
                latent_channels: self.config.latent_channels,
            });
        }
        Ok(())
    }

    /// Decodes a latent `[batch, latent_channels, h, w]` to an image
    /// `[batch, out_channels, h·f, w·f]` (`f` = [`VaeConfig::upscale`]), values ≈ [-1, 1]:
    /// `z = latent / scaling_factor + shift_factor`, then [`VaeDecoder::decode_unscaled`].
    pub fn decode(&self, latent: Tensor<B, 4>) -> Result<Tensor<B, 4>, ModelError> {
        self.check_latent(&latent)?;
        self.forward(self.scale_latent(latent))
    }

    /// Runs the decoder graph (including `post_quant_conv`) on an already scaled latent `z`.
    pub fn decode_unscaled(&self, z: Tensor<B, 4>) -> Result<Tensor<B, 4>, ModelError> {
        self.check_latent(&z)?;
        self.forward(z.cast(self.dtype()))
    }

    pub(super) fn scale_latent(&self, latent: Tensor<B, 4>) -> Tensor<B, 4> {
        let z = latent.div_scalar(self.config.scaling_factor);
        let z = if self.config.shift_factor != 0.0 {
            z.add_scalar(self.config.shift_factor)
        } else {
            z
        };
        z.cast(self.dtype())
    }

    pub(super) fn forward(&self, z: Tensor<B, 4>) -> Result<Tensor<B, 4>, ModelError> {
        let z = match &self.post_quant_conv {
            Some(c) => c.forward(z),
            None => z,
        };
        let mut x = self.conv_in.forward(z);
        x = self.mid_resnet_1.forward(x);
        if let Some(a) = &self.mid_attention {
            x = a.forward(x)?;
        }
        x = self.mid_resnet_2.forward(x);
        for up in &self.up_blocks {
            x = up.forward(x);
        }
        let x = silu(group_norm(&self.norm_out, x));
        Ok(self.conv_out.forward(x))
    }
}
