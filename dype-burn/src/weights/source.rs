//! [`Source`]: the one way every model reads its checkpoint. A model writes a single builder,
//! generic over the source, that asks for each stored tensor once (key, PyTorch shape, layer
//! kind). Run on [`Declare`] it yields the [`KeyMap`] a file is validated against before anything
//! is built; run on [`Load`] it builds the layers from the validated [`Weights`].
//! [`load_model`] is the loading sequence every model's `load` shares.

use std::convert::Infallible;

use burn::module::Param;
use burn::nn::conv::Conv2d;
use burn::nn::{GroupNorm, Linear};
use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use super::error::WeightsError;
use super::key_map::KeyMap;
use super::view::Weights;

/// Where a model builder's parameters come from: declared ([`Declare`], every output is `()`)
/// or loaded ([`Load`], burn layers and parameters). Shapes are PyTorch's (a `Linear` weight is
/// `[d_out, d_in]`); keys are full checkpoint keys or, for layers, the prefix of their
/// `weight`/`bias`.
pub trait Source {
    /// A `Linear` (or its declaration).
    type Linear;
    /// A `Conv2d` (or its declaration).
    type Conv2d;
    /// A `GroupNorm` (or its declaration).
    type GroupNorm;
    /// A parameter tensor of rank `D` (or its declaration).
    type Param<const D: usize>;
    /// Why a parameter cannot be had.
    type Error;

    /// A `Linear` under `prefix`: weight `[d_out, d_in]` and, with `bias`, bias `[d_out]`.
    fn linear(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
        bias: bool,
    ) -> Result<Self::Linear, Self::Error>;

    /// Like [`Source::linear`] (with bias), also accepting a `[d_out, d_in, 1, 1]` 1×1-conv
    /// weight.
    fn linear_or_conv1x1(
        &mut self,
        prefix: &str,
        d_in: usize,
        d_out: usize,
    ) -> Result<Self::Linear, Self::Error>;

    /// A biased, stride-1 `Conv2d` under `prefix` with a square `kernel` and "same" zero padding
    /// (`kernel / 2`): weight `[c_out, c_in, kernel, kernel]`, bias `[c_out]`.
    fn conv2d(
        &mut self,
        prefix: &str,
        c_in: usize,
        c_out: usize,
        kernel: usize,
    ) -> Result<Self::Conv2d, Self::Error>;

    /// An affine `GroupNorm` under `prefix`: weight and bias `[channels]`.
    fn group_norm(
        &mut self,
        prefix: &str,
        channels: usize,
        groups: usize,
        epsilon: f64,
    ) -> Result<Self::GroupNorm, Self::Error>;

    /// The tensor `key`, loaded with its stored `shape`.
    fn param<const D: usize>(
        &mut self,
        key: &str,
        shape: [usize; D],
    ) -> Result<Self::Param<D>, Self::Error>;

    /// A tensor that must be stored with `shape` but is not loaded (e.g. a tied copy).
    fn unused(&mut self, key: &str, shape: &[usize]) -> Result<(), Self::Error>;

    /// Stored keys starting with `prefix` are not the model's (see [`KeyMap::ignore_prefix`]).
    fn ignore_prefix(&mut self, prefix: &str);

    /// Stored keys outside `prefix` are not the model's (see [`KeyMap::only_within`]).
    fn only_within(&mut self, prefix: &str);
}

/// The declaring [`Source`]: records every requested tensor in a [`KeyMap`].
#[derive(Debug, Clone, Default)]
pub struct Declare {
    map: KeyMap,
}

impl Declare {
    /// The key map of a builder: runs `build` on a fresh declaring source.
    pub fn key_map<T>(build: impl FnOnce(&mut Declare) -> Result<T, Infallible>) -> KeyMap {
        let mut declare = Declare::default();
        let Ok(_) = build(&mut declare);
        declare.map
    }
}

/// What [`Declare`] returns.
type Declared = Result<(), Infallible>;

impl Source for Declare {
    type Linear = ();
    type Conv2d = ();
    type GroupNorm = ();
    type Param<const D: usize> = ();
    type Error = Infallible;

    fn linear(&mut self, key: &str, d_in: usize, d_out: usize, bias: bool) -> Declared {
        self.map.linear(key, d_in, d_out, bias);
        Ok(())
    }

    fn linear_or_conv1x1(&mut self, key: &str, d_in: usize, d_out: usize) -> Declared {
        self.map.linear_or_conv1x1(key, d_in, d_out, true);
        Ok(())
    }

    fn conv2d(&mut self, key: &str, c_in: usize, c_out: usize, kernel: usize) -> Declared {
        self.map.conv2d(key, c_in, c_out, [kernel, kernel], true);
        Ok(())
    }

    fn group_norm(&mut self, key: &str, channels: usize, _: usize, _: f64) -> Declared {
        self.map.norm(key, channels);
        Ok(())
    }

    fn param<const D: usize>(&mut self, key: &str, shape: [usize; D]) -> Declared {
        self.unused(key, &shape)
    }

    fn unused(&mut self, key: &str, shape: &[usize]) -> Declared {
        self.map.tensor(key, shape);
        Ok(())
    }

    fn ignore_prefix(&mut self, prefix: &str) {
        self.map.ignore_prefix(prefix);
    }

    fn only_within(&mut self, prefix: &str) {
        self.map.only_within(prefix);
    }
}

/// The loading [`Source`]: builds layers on the device from validated [`Weights`] (shapes were
/// checked against the declaration by then, so they are not looked at again).
#[derive(Debug)]
pub struct Load<'w, 'c, B: Backend> {
    weights: &'w Weights<'c, B>,
}

impl<'w, 'c, B: Backend> Load<'w, 'c, B> {
    /// Loads from `weights`.
    pub fn new(weights: &'w Weights<'c, B>) -> Self {
        Load { weights }
    }

    /// The weights loaded from.
    pub fn weights(&self) -> &'w Weights<'c, B> {
        self.weights
    }
}

/// What [`Load`] returns.
type Loaded<T> = Result<T, WeightsError>;

impl<B: Backend> Source for Load<'_, '_, B> {
    type Linear = Linear<B>;
    type Conv2d = Conv2d<B>;
    type GroupNorm = GroupNorm<B>;
    type Param<const D: usize> = Param<Tensor<B, D>>;
    type Error = WeightsError;

    fn linear(&mut self, key: &str, _: usize, _: usize, bias: bool) -> Loaded<Linear<B>> {
        self.weights.linear(key, bias)
    }

    fn linear_or_conv1x1(&mut self, key: &str, _: usize, _: usize) -> Loaded<Linear<B>> {
        self.weights.linear(key, true)
    }

    fn conv2d(&mut self, key: &str, _: usize, _: usize, kernel: usize) -> Loaded<Conv2d<B>> {
        self.weights.conv2d(key, true, [kernel / 2, kernel / 2])
    }

    fn group_norm(&mut self, key: &str, _: usize, groups: usize, eps: f64) -> Loaded<GroupNorm<B>> {
        self.weights.group_norm(key, groups, eps)
    }

    fn param<const D: usize>(&mut self, key: &str, _: [usize; D]) -> Loaded<Param<Tensor<B, D>>> {
        Ok(Param::from_tensor(self.weights.tensor::<D>(key)?))
    }

    fn unused(&mut self, _: &str, _: &[usize]) -> Loaded<()> {
        Ok(())
    }

    fn ignore_prefix(&mut self, _: &str) {}

    fn only_within(&mut self, _: &str) {}
}
