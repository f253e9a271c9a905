//! Model-agnostic ODE solvers for flow/velocity samplers: Euler, Heun and adaptive Dormand–Prince
//! (dopri5) with torchdiffeq's step control, over any [`OdeState`] (burn tensors, or `Vec<f64>` in
//! tests). The velocity function gets the solver's time `t` and the state; time conventions are the
//! caller's (FiT integrates `t` from 0 = noise to 1 = data, FLUX steps σ from 1 to 0).
//!
//! dopri5 follows torchdiffeq's `RKAdaptiveStepsizeODESolver` (rtqichen/torchdiffeq,
//! `_impl/rk_common.py`, `misc.py`, `interp.py`), which FiT's `ode` sampler calls: Hairer's initial
//! step selection (one extra evaluation), the Dormand–Prince–Shampine tableau with FSAL, the error
//! ratio `RMS(err / (atol + rtol·max(|y0|, |y1|)))`, step factor `min(10, max(0.9·ratio^(−1/5), 0.2))`
//! (no shrink bound when accepted), and 4th-order interpolation at the requested output times.

//! Every solver returns the final state only and reports each output time to a callback
//! ([`Step`]: progress bars, diagnostics, spectra of `x_t`), so memory does not grow with the number
//! of steps. A failing velocity function returns the caller's own error type unchanged (it must
//! convert from [`SamplingError`], as `anyhow::Error`, boxed errors and the pipeline errors do).

mod dopri5;
mod fixed;

use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use thiserror::Error;

pub use dopri5::{Dopri5Options, Dopri5Stats, dopri5};
pub use fixed::{FixedMethod, fixed};

/// What can go wrong in a solver itself (the velocity function's errors are the caller's).
#[derive(Debug, Clone, PartialEq, Error)]
#[non_exhaustive]
pub enum SamplingError {
    /// Fewer than two output times, a non-finite one, or times that are not strictly monotonic
    /// (dopri5: strictly increasing).
    #[error("output times must hold at least two finite, strictly monotonic values")]
    BadTimes,
    /// A tolerance or option is not a finite positive number.
    #[error("solver option `{name}` = {value} is invalid")]
    BadOption {
        /// Option name.
        name: &'static str,
        /// The value.
        value: f64,
    },
    /// The adaptive solver needed more steps than allowed.
    #[error("dopri5 exceeded {max} steps before reaching t = {t}")]
    TooManySteps {
        /// The step limit.
        max: usize,
        /// The time not reached.
        t: f64,
    },
    /// The step size underflowed or the state became non-finite.
    #[error("integration broke down at t = {t}: {reason}")]
    Breakdown {
        /// Where.
        t: f64,
        /// Why.
        reason: &'static str,
    },
}

/// The state at one output time, lent to the solver's per-step callback.
#[derive(Debug)]
pub struct Step<'a, S> {
    /// Index of the output time in `ts` (0 = the initial state).
    pub index: usize,
    /// The output time `ts[index]`.
    pub t: f64,
    /// The state there (dopri5: interpolated).
    pub state: &'a S,
}

/// A state the solvers can integrate.
pub trait OdeState: Clone {
    /// `self + Σ cᵢ·xᵢ`.
    fn combine(&self, terms: &[(f64, &Self)]) -> Self;
    /// `RMS(x / (atol + rtol·max(|a|, |b|)))`, with `b = a` when `None` (torchdiffeq's scaled norms).
    fn scaled_rms(x: &Self, a: &Self, b: Option<&Self>, atol: f64, rtol: f64) -> f64;
}

impl OdeState for Vec<f64> {
    fn combine(&self, terms: &[(f64, &Self)]) -> Self {
        let mut out = self.clone();
        for (c, x) in terms {
            for (o, v) in out.iter_mut().zip(x.iter()) {
                *o += c * v;
            }
        }
        out
    }

    fn scaled_rms(x: &Self, a: &Self, b: Option<&Self>, atol: f64, rtol: f64) -> f64 {
        let b = b.unwrap_or(a);
        let n = x.len().max(1) as f64;
        let s: f64 = x
            .iter()
            .zip(a)
            .zip(b)
            .map(|((x, a), b)| (x / (atol + rtol * a.abs().max(b.abs()))).powi(2))
            .sum();
        (s / n).sqrt()
    }
}

impl<B: Backend, const D: usize> OdeState for Tensor<B, D> {
    fn combine(&self, terms: &[(f64, &Self)]) -> Self {
        terms.iter().fold(self.clone(), |acc, (c, x)| {
            acc + (*x).clone().mul_scalar(*c)
        })
    }

    fn scaled_rms(x: &Self, a: &Self, b: Option<&Self>, atol: f64, rtol: f64) -> f64 {
        let m = match b {
            Some(b) => a.clone().abs().max_pair(b.clone().abs()),
            None => a.clone().abs(),
        };
        let scaled = x.clone() / m.mul_scalar(rtol).add_scalar(atol);
        let ms: f64 = scaled.powi_scalar(2).mean().into_scalar().elem();
        ms.sqrt()
    }
}

/// At least two finite times, strictly increasing, or (when `either_direction`) strictly
/// decreasing.
fn check_times(ts: &[f64], either_direction: bool) -> Result<(), SamplingError> {
    let increasing = ts.windows(2).all(|w| w[1] > w[0]);
    let decreasing = either_direction && ts.windows(2).all(|w| w[1] < w[0]);
    if ts.len() < 2 || ts.iter().any(|t| !t.is_finite()) || !(increasing || decreasing) {
        return Err(SamplingError::BadTimes);
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod test_support {
    //! An ODE state that counts how many copies of it are alive (memory-growth tests) and a test
    //! error type.
    use std::cell::Cell;
    use std::rc::Rc;

    use super::{OdeState, SamplingError};

    /// dy/dt = −y (solution `y0 · e^{−t}`).
    #[allow(clippy::ptr_arg)] // the solver's state type is Vec<f64>
    pub(crate) fn decay(_t: f64, y: &Vec<f64>) -> Result<Vec<f64>, TestError> {
        Ok(y.iter().map(|v| -v).collect())
    }

    /// The solver failed or the velocity function did.
    #[derive(Debug, PartialEq)]
    pub(crate) enum TestError {
        Solver(SamplingError),
        Model(&'static str),
    }

    impl From<SamplingError> for TestError {
        fn from(e: SamplingError) -> Self {
            TestError::Solver(e)
        }
    }

    /// Live and peak-live counts shared by all copies.
    #[derive(Debug, Default)]
    pub(crate) struct Census {
        pub(crate) live: Cell<usize>,
        pub(crate) peak: Cell<usize>,
    }

    /// A `Vec<f64>` state registered in a [`Census`].
    #[derive(Debug)]
    pub(crate) struct Counted {
        pub(crate) values: Vec<f64>,
        census: Rc<Census>,
    }

    impl Counted {
        pub(crate) fn new(values: Vec<f64>, census: &Rc<Census>) -> Self {
            let live = census.live.get() + 1;
            census.live.set(live);
            census.peak.set(census.peak.get().max(live));
            Counted {
                values,
                census: census.clone(),
            }
        }
    }

    impl Clone for Counted {
        fn clone(&self) -> Self {
            Counted::new(self.values.clone(), &self.census)
        }
    }

    impl Drop for Counted {
        fn drop(&mut self) {
            self.census.live.set(self.census.live.get() - 1);
        }
    }

    impl OdeState for Counted {
        fn combine(&self, terms: &[(f64, &Self)]) -> Self {
            let mut values = self.values.clone();
            for (c, x) in terms {
                for (o, v) in values.iter_mut().zip(&x.values) {
                    *o += c * v;
                }
            }
            Counted::new(values, &self.census)
        }

        fn scaled_rms(x: &Self, a: &Self, b: Option<&Self>, atol: f64, rtol: f64) -> f64 {
            <Vec<f64> as OdeState>::scaled_rms(
                &x.values,
                &a.values,
                b.map(|b| &b.values),
                atol,
                rtol,
            )
        }
    }
}
