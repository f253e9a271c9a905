//! [`Weights`]: a validated checkpoint view that builds burn tensors and layers on a device.

use std::fmt;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear, PaddingConfig2d};
use burn::tensor::backend::Backend;
use burn::tensor::{DType, FloatDType, Tensor, bf16, f16};

use super::checkpoint::Checkpoint;
use super::error::WeightsError;
use super::key_map::{KeyMap, ParamKind, join};
use super::read::{host_dtype, to_device, transpose_data};

/// A validated checkpoint + key map, building burn tensors and layers on one device in one
/// float dtype. Obtained from [`Checkpoint::load`].
pub struct Weights<'c, B: Backend> {
    pub(super) checkpoint: &'c Checkpoint,
    pub(super) map: &'c KeyMap,
    pub(super) dtype: FloatDType,
    pub(super) device: B::Device,
}

impl<B: Backend> fmt::Debug for Weights<'_, B> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Weights")
            .field("checkpoint", &self.checkpoint.path)
            .field("params", &self.map.len())
            .field("dtype", &self.dtype)
            .finish()
    }
}

impl<'c, B: Backend> Weights<'c, B> {
    /// The checkpoint.
    pub fn checkpoint(&self) -> &'c Checkpoint {
        self.checkpoint
    }

    /// The float dtype tensors are built in.
    pub fn dtype(&self) -> FloatDType {
        self.dtype
    }

    /// The device tensors are built on.
    pub fn device(&self) -> &B::Device {
        &self.device
    }

    /// Whether `key` is declared in the key map (so it can be built).
    pub fn declares(&self, key: &str) -> bool {
        self.map.get(key).is_some()
    }

    /// Builds the declared tensor `key`: stored data cast to [`Weights::dtype`]; linear weights
    /// transposed to `[in, out]` (1×1-conv weights squeezed first).
    pub fn tensor<const D: usize>(&self, key: &str) -> Result<Tensor<B, D>, WeightsError> {
        let file = || self.checkpoint.file_for(key);
        let spec = self.map.get(key).ok_or_else(|| WeightsError::NotDeclared {
            file: self.checkpoint.path.clone(),
            key: key.to_string(),
        })?;
        let burn_shape = spec.burn_shape();
        if burn_shape.len() != D {
            return Err(WeightsError::RankMismatch {
                file: file(),
                key: key.to_string(),
                requested: D,
                shape: burn_shape,
            });
        }
        let data = self.checkpoint.read(key)?;
        let data = match spec.kind {
            ParamKind::Plain => data,
            ParamKind::LinearWeight | ParamKind::LinearWeightOrConv1x1 => {
                let (rows, cols) = (spec.shape[0], spec.shape[1]);
                let data = data.convert_dtype(host_dtype(self.dtype));
                let t = match data.dtype {
                    DType::F64 => transpose_data::<f64>(data, rows, cols),
                    DType::F16 => transpose_data::<f16>(data, rows, cols),
                    DType::BF16 => transpose_data::<bf16>(data, rows, cols),
                    _ => transpose_data::<f32>(data, rows, cols),
                };
                t.map_err(|reason| WeightsError::Corrupt {
                    file: file(),
                    reason: format!("tensor `{key}`: {reason}"),
                })?
            }
        };
        Ok(to_device(data, self.dtype, &self.device))
    }

    /// Builds a `Linear` from `{prefix}.weight` (and `{prefix}.bias` when `bias`).
    pub fn linear(&self, prefix: &str, bias: bool) -> Result<Linear<B>, WeightsError> {
        let weight = self.tensor::<2>(&join(prefix, "weight"))?;
        let bias = if bias {
            Some(Param::from_tensor(self.tensor::<1>(&join(prefix, "bias"))?))
        } else {
            None
        };
        Ok(Linear {
            weight: Param::from_tensor(weight),
            bias,
        })
    }

    /// Builds a stride-1, dilation-1, groups-1 `Conv2d` from `{prefix}.weight` (and
    /// `{prefix}.bias` when `bias`) with symmetric zero `padding`.
    pub fn conv2d(
        &self,
        prefix: &str,
        bias: bool,
        padding: [usize; 2],
    ) -> Result<Conv2d<B>, WeightsError> {
        let weight = self.tensor::<4>(&join(prefix, "weight"))?;
        let [_, _, k0, k1] = weight.dims();
        let bias = if bias {
            Some(Param::from_tensor(self.tensor::<1>(&join(prefix, "bias"))?))
        } else {
            None
        };
        Ok(Conv2d {
            weight: Param::from_tensor(weight),
            bias,
            stride: [1, 1],
            kernel_size: [k0, k1],
            dilation: [1, 1],
            groups: 1,
            padding: PaddingConfig2d::Explicit(padding[0], padding[1], padding[0], padding[1]),
        })
    }

    /// Builds an affine `GroupNorm` from `{prefix}.weight` and `{prefix}.bias`.
    pub fn group_norm(
        &self,
        prefix: &str,
        num_groups: usize,
        epsilon: f64,
    ) -> Result<GroupNorm<B>, WeightsError> {
        let gamma = self.tensor::<1>(&join(prefix, "weight"))?;
        let beta = self.tensor::<1>(&join(prefix, "bias"))?;
        let [channels] = gamma.dims();
        Ok(GroupNorm {
            gamma: Some(Param::from_tensor(gamma)),
            beta: Some(Param::from_tensor(beta)),
            num_groups,
            num_channels: channels,
            epsilon,
            affine: true,
        })
    }
}
