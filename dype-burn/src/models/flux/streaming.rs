//! Block-streaming FLUX: the transformer blocks in host memory, uploaded one at a time.

use burn::module::Param;
use burn::nn::Linear;
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::config::{FluxConfig, FluxLayout, MODEL};
use super::model::{DoubleBlock, Flux, FluxDenoiser, SingleBlock, StreamWeights};
use crate::models::ModelError;
use crate::rotary::RotaryTables;
use crate::weights::{Checkpoint, Weights, WeightsError};

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
    ) -> Result<Self, ModelError> {
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
    ) -> Result<Self, ModelError> {
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
    ) -> Result<Tensor<B, 3>, ModelError> {
        let device = &self.device;
        // Waiting for the device before each upload bounds the weights on it to one block (the
        // previous block is dropped by then); without it the host could enqueue every upload.
        let sync = || {
            B::sync(device).map_err(|e| ModelError::Execution {
                model: MODEL,
                reason: e.to_string(),
            })
        };
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
    ) -> Result<Tensor<B, 3>, ModelError> {
        StreamedFlux::forward(self, img, txt, timesteps, y, guidance, rope)
    }
}
