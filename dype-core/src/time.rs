//! Timestep conventions as types, so that one cannot be passed where another is meant.
//!
//! DyPE's `t` (paper §3.2) runs from 1 (pure noise) to 0 (clean image). That is FLUX's flow-matching
//! σ ([`Sigma`]). FiT's transport runs the other way, from 0 (noise) to 1 (data) ([`FitTime`]:
//! `t_dype = 1 − t_fit`), and diffusers passes FLUX a 1000-scaled timestep ([`Timestep1000`]:
//! `σ = timestep / 1000`). Mixing these up silently turns DyPE static (a known peer bug).

use crate::error::{DypeError, Result, finite};

fn unit(name: &'static str, value: f64) -> Result<f64> {
    finite(name, value)?;
    if (0.0..=1.0).contains(&value) {
        Ok(value)
    } else {
        Err(DypeError::OutOfRange {
            name,
            value,
            expected: "within [0, 1]",
        })
    }
}

/// DyPE's diffusion time: σ ∈ [0, 1] with 1 = pure noise, 0 = clean (FLUX's flow-matching σ).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Sigma(f64);

impl Sigma {
    /// Pure noise (σ = 1): where DyPE extrapolates most.
    pub const NOISE: Sigma = Sigma(1.0);
    /// Clean data (σ = 0): where every dynamic method is the model's native RoPE.
    pub const CLEAN: Sigma = Sigma(0.0);

    /// A σ in [0, 1]; NaN, infinities and values outside the interval are errors.
    pub fn new(sigma: f64) -> Result<Self> {
        unit("sigma", sigma).map(Sigma)
    }

    /// The value in [0, 1].
    pub fn get(self) -> f64 {
        self.0
    }
}

/// FiT's transport time: 0 = noise, 1 = data (`ICPlan` in whlzy/FiT). DyPE's t is `1 − t_fit`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct FitTime(f64);

impl FitTime {
    /// A FiT time in [0, 1].
    pub fn new(t: f64) -> Result<Self> {
        unit("fit_time", t).map(FitTime)
    }

    /// The value in [0, 1].
    pub fn get(self) -> f64 {
        self.0
    }
}

impl From<FitTime> for Sigma {
    fn from(t: FitTime) -> Sigma {
        // 1 - t of a value in [0, 1] stays in [0, 1].
        Sigma(1.0 - t.0)
    }
}

impl From<Sigma> for FitTime {
    fn from(s: Sigma) -> FitTime {
        FitTime(1.0 - s.0)
    }
}

/// A 1000-scaled timestep as diffusers schedulers hand it to the transformer (`σ · 1000`).
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd)]
pub struct Timestep1000(f64);

impl Timestep1000 {
    /// A timestep in [0, 1000].
    pub fn new(t: f64) -> Result<Self> {
        finite("timestep", t)?;
        if (0.0..=1000.0).contains(&t) {
            Ok(Timestep1000(t))
        } else {
            Err(DypeError::OutOfRange {
                name: "timestep",
                value: t,
                expected: "within [0, 1000]",
            })
        }
    }

    /// The value in [0, 1000].
    pub fn get(self) -> f64 {
        self.0
    }
}

impl From<Timestep1000> for Sigma {
    fn from(t: Timestep1000) -> Sigma {
        Sigma((t.0 / 1000.0).clamp(0.0, 1.0))
    }
}

impl From<Sigma> for Timestep1000 {
    fn from(s: Sigma) -> Timestep1000 {
        Timestep1000(s.0 * 1000.0)
    }
}
