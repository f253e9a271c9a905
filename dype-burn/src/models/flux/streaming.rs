//! Block-streaming FLUX: the transformer blocks in host memory, uploaded one at a time.

use std::convert::Infallible;

use burn::module::{Module, ModuleMapper, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

use super::config::{FluxConfig, FluxLayout, MODEL};
use super::model::{DoubleBlock, Flux, FluxDenoiser, FluxInputs, SingleBlock};
use crate::models::{ModelError, Pretrained};
use crate::rotary::RotaryTables;
use crate::weights::Weights;

/// Moves a module's parameters to host memory: each becomes a lazy parameter holding its data
/// (in the dtype it had) and uploading it to `device` when first used. A clone of such a
/// module is lazy too (burn clones an uninitialised parameter without initialising it), so
/// every clone uploads its own copy, freed when the clone is dropped, and the host copy stays.
struct ToHost<B: Backend> {
    device: B::Device,
    /// Bytes moved so far.
    bytes: usize,
}

impl<B: Backend> ToHost<B> {
    fn map<M: Module<B>>(&mut self, module: M) -> M {
        module.map(self)
    }
}

impl<B: Backend> ModuleMapper<B> for ToHost<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, tensor, _) = param.consume();
        let (dtype, shape, grad) = (tensor.dtype(), tensor.shape(), tensor.is_require_grad());
        let data = tensor.into_data();
        self.bytes += data.bytes.len();
        let upload = move |device: &B::Device, grad: bool| {
            Tensor::from_data(data.clone(), (device, dtype)).set_require_grad(grad)
        };
        Param::uninitialized(id, upload, self.device.clone(), grad, shape)
    }
}

/// FLUX with only the embedders and the final layer resident on the device; the transformer
/// blocks live in host memory (as [`burn::tensor::TensorData`], in the load dtype) and every
/// [`velocity`](FluxDenoiser::velocity) uploads them one block at a time, runs the block, waits
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
    /// The blocks with host-resident lazy parameters (see [`ToHost`]).
    double_blocks: Vec<DoubleBlock<B>>,
    single_blocks: Vec<SingleBlock<B>>,
    host_bytes: usize,
    device: B::Device,
}

impl<B: Backend> StreamedFlux<B> {
    /// Moves the blocks of a resident model to host memory.
    pub fn from_flux(model: Flux<B>) -> Self {
        let mut head = model;
        let doubles = std::mem::take(&mut head.double_blocks);
        let singles = std::mem::take(&mut head.single_blocks);
        let Ok(model) = Self::with_host_blocks::<Infallible>(
            head,
            doubles.into_iter().map(Ok),
            singles.into_iter().map(Ok),
        );
        model
    }

    /// `head` with the blocks moved to host memory one by one as they come.
    fn with_host_blocks<E>(
        head: Flux<B>,
        doubles: impl Iterator<Item = Result<DoubleBlock<B>, E>>,
        singles: impl Iterator<Item = Result<SingleBlock<B>, E>>,
    ) -> Result<Self, E> {
        let mut host = ToHost {
            device: head.img_in.weight.val().device(),
            bytes: 0,
        };
        let double_blocks = doubles
            .map(|b| b.map(|b| host.map(b)))
            .collect::<Result<_, E>>()?;
        let single_blocks = singles
            .map(|b| b.map(|b| host.map(b)))
            .collect::<Result<_, E>>()?;
        Ok(StreamedFlux {
            head,
            double_blocks,
            single_blocks,
            host_bytes: host.bytes,
            device: host.device,
        })
    }

    /// A device copy of a host-resident block, uploaded once the device has finished the previous
    /// one: waiting bounds the weights on the device to one block (the previous block is dropped
    /// by then); without it the host could enqueue every upload.
    fn upload<M: Clone>(&self, block: &M) -> Result<M, ModelError> {
        B::sync(&self.device).map_err(|e| ModelError::Execution {
            model: MODEL,
            reason: e.to_string(),
        })?;
        Ok(block.clone())
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
        self.host_bytes
    }
}

/// Loads like [`Flux`] (same layouts, and the whole checkpoint is validated against
/// [`FluxConfig::key_map`] before anything is built), but only the embedders and the final layer
/// stay on the device: each block is built on the device in the load dtype, copied to host memory
/// and dropped before the next one is built.
impl<B: Backend> Pretrained<B> for StreamedFlux<B> {
    type Config = FluxConfig;

    fn build(
        config: &FluxConfig,
        layout: FluxLayout,
        w: &Weights<'_, B>,
    ) -> Result<Self, ModelError> {
        config.validate()?;
        let head = Flux::head(config, layout, w)?;
        let model = Self::with_host_blocks(
            head,
            (0..config.depth).map(|i| Flux::double_block(config, layout, w, i)),
            (0..config.depth_single_blocks).map(|i| Flux::single_block(config, layout, w, i)),
        )?;
        Ok(model)
    }
}

impl<B: Backend> FluxDenoiser<B> for StreamedFlux<B> {
    fn config(&self) -> &FluxConfig {
        StreamedFlux::config(self)
    }

    fn weight_dtype(&self) -> DType {
        self.head.weight_dtype()
    }

    /// The velocity: the same inputs, checks and result as [`Flux::forward`], with the blocks
    /// uploaded one at a time.
    fn velocity(
        &self,
        inputs: FluxInputs<B>,
        rope: &RotaryTables<B>,
    ) -> Result<Tensor<B, 3>, ModelError> {
        let blocks = (
            self.double_blocks.iter().map(|b| self.upload(b)),
            self.single_blocks.iter().map(|b| self.upload(b)),
        );
        self.head.forward_with(inputs, rope, blocks)
    }
}
