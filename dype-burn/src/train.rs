//! Training support (feature `train`): FiT's flow-matching loss and an exponential moving average
//! of the weights. The optimiser is burn's (`burn::optim::AdamW`); the backend is any backend
//! wrapped in `burn::backend::Autodiff`.
//!
//! The loss follows FiT/SiT's linear interpolant (whlzy/FiT `fit/scheduler/transport`, Ma et al.
//! "SiT", 2024): with data `x1`, noise `x0` and `t ~ U[0, 1]` (0 = noise, 1 = data),
//! `x_t = t·x1 + (1 − t)·x0`, and the model regresses the velocity `x1 − x0` (mean squared
//! error over every value).

use std::collections::VecDeque;

use burn::module::{Module, ModuleMapper, ModuleVisitor, Param};
use burn::tensor::backend::Backend;
use burn::tensor::{Int, Tensor};

use crate::models::ModelError;
use crate::models::fitv2::{FitInputs, FitV2};
use crate::rotary::RotaryTables;

/// Errors of the training helpers.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The model and its average do not have the same parameters.
    #[error(
        "EMA mismatch at parameter {index}: the averaged model and the trained one differ in structure"
    )]
    EmaMismatch {
        /// Index of the first parameter that differs (visit order).
        index: usize,
    },
    /// A batch whose parts do not agree.
    #[error("batch: {what} has shape {found:?}, expected {expected:?}")]
    Batch {
        /// Which part.
        what: &'static str,
        /// Its shape.
        found: Vec<usize>,
        /// The shape the data implies.
        expected: Vec<usize>,
    },
    /// The model failed.
    #[error(transparent)]
    Model(#[from] ModelError),
}

/// The point on the path from noise to data: `x_t = t·x1 + (1 − t)·x0` (FiT time, 0 = noise).
pub fn interpolate<B: Backend>(
    x1: Tensor<B, 3>,
    x0: Tensor<B, 3>,
    t: Tensor<B, 1>,
) -> Tensor<B, 3> {
    let t = t.reshape([-1, 1, 1]);
    x1 * t.clone() + x0 * (t.neg() + 1.0)
}

/// The velocity FiT regresses: `x1 − x0`.
pub fn velocity_target<B: Backend>(x1: Tensor<B, 3>, x0: Tensor<B, 3>) -> Tensor<B, 3> {
    x1 - x0
}

/// FiT's flow-matching loss for tokens `x1` (data) and `x0` (noise), both `[B, N, token_dim]`, at
/// times `t` `[B]` with classes `y` `[B]` (the null class for dropped labels): the mean squared
/// error between the model's velocity at `x_t` and `x1 − x0`. Returns a one-element tensor
/// (call `.backward()` on an autodiff backend).
pub fn flow_matching_loss<B: Backend>(
    model: &FitV2<B>,
    x1: Tensor<B, 3>,
    x0: Tensor<B, 3>,
    t: Tensor<B, 1>,
    y: Tensor<B, 1, Int>,
    rope: &RotaryTables<B>,
) -> Result<Tensor<B, 1>, TrainError> {
    let dims = x1.dims();
    let check = |what, found: &[usize], expected: &[usize]| {
        if found == expected {
            Ok(())
        } else {
            Err(TrainError::Batch {
                what,
                found: found.to_vec(),
                expected: expected.to_vec(),
            })
        }
    };
    check("x0", &x0.dims(), &dims)?;
    check("t", &t.dims(), &[dims[0]])?;
    check("y", &y.dims(), &[dims[0]])?;
    let xt = interpolate(x1.clone(), x0.clone(), t.clone());
    let v = model.forward(
        FitInputs {
            x: xt,
            t,
            y,
            mask: None,
        },
        rope,
    )?;
    // A model that also predicts a variance (`learn_sigma`) has twice the channels.
    check("the model's output", &v.dims(), &dims)?;
    let err = v - velocity_target(x1, x0);
    Ok((err.clone() * err).mean())
}

/// An exponential moving average of a module's float parameters (DiT/FiT sample from it):
/// `ema ← decay·ema + (1 − decay)·θ` after each optimiser step. Keep it on a backend without
/// autodiff (`model.valid()`): the average is detached from any graph.
#[derive(Debug, Clone)]
pub struct Ema<M> {
    average: M,
}

impl<M> Ema<M> {
    /// Starts the average at `model` (usually the freshly initialised weights, `model.valid()`).
    pub fn new(model: M) -> Self {
        Ema { average: model }
    }

    /// The averaged model.
    pub fn model(&self) -> &M {
        &self.average
    }

    /// The averaged model, by value.
    pub fn into_model(self) -> M {
        self.average
    }

    /// Moves the average towards `model` (same structure; on an autodiff backend pass
    /// `model.valid()`): every float parameter becomes `decay·ema + (1 − decay)·θ`.
    pub fn update<B: Backend>(&mut self, model: &M, decay: f64) -> Result<(), TrainError>
    where
        M: Module<B>,
    {
        let mut collect = Collect::<B> {
            params: VecDeque::new(),
        };
        model.visit(&mut collect);
        let mut mix = Mix::<B> {
            params: collect.params,
            decay,
            index: 0,
            mismatch: None,
        };
        let average = self.average.clone().map(&mut mix);
        if let Some(index) = mix
            .mismatch
            .or((!mix.params.is_empty()).then_some(mix.index))
        {
            return Err(TrainError::EmaMismatch { index });
        }
        self.average = average;
        Ok(())
    }
}

/// Gathers float parameters (flattened, in visit order).
struct Collect<B: Backend> {
    params: VecDeque<(Tensor<B, 1>, Vec<usize>)>,
}

impl<B: Backend> ModuleVisitor<B> for Collect<B> {
    fn visit_float<const D: usize>(&mut self, param: &Param<Tensor<B, D>>) {
        let t = param.val();
        let shape = t.dims().to_vec();
        self.params.push_back((t.flatten(0, D - 1), shape));
    }
}

/// Mixes the gathered parameters into the average, in the same order.
struct Mix<B: Backend> {
    params: VecDeque<(Tensor<B, 1>, Vec<usize>)>,
    decay: f64,
    index: usize,
    mismatch: Option<usize>,
}

impl<B: Backend> ModuleMapper<B> for Mix<B> {
    fn map_float<const D: usize>(&mut self, param: Param<Tensor<B, D>>) -> Param<Tensor<B, D>> {
        let (id, average, mapper) = param.consume();
        let index = self.index;
        self.index += 1;
        let dims = average.dims();
        let numel: usize = dims.iter().product();
        let mixed = match self.params.pop_front() {
            Some((p, shape))
                if shape == dims && p.dims()[0] == numel && self.mismatch.is_none() =>
            {
                let p = p.reshape(dims).cast(average.dtype()).detach();
                average.detach().mul_scalar(self.decay) + p.mul_scalar(1.0 - self.decay)
            }
            _ => {
                self.mismatch.get_or_insert(index);
                average
            }
        };
        Param::from_mapped_value(id, mixed, mapper)
    }
}
