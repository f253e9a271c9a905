//! DyPE's scheduler κ(t) (paper Eq. 13) and how the dynamic methods consume it.

use crate::error::{Result, finite, non_negative};
use crate::math::pow;
use crate::time::Sigma;

/// `κ(t) = λs · t^λt` (DyPE Eq. 13 / Eq. 21). `t` is DyPE's time ([`Sigma`]: 1 = noise).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KappaSchedule {
    /// λs: the largest κ, reached at t = 1.
    pub lambda_s: f64,
    /// λt: how fast κ decays towards t = 0.
    pub lambda_t: f64,
}

impl Default for KappaSchedule {
    /// The paper's defaults for Dy-PI and Dy-NTK: λs = λt = 2 (App. C).
    fn default() -> Self {
        KappaSchedule {
            lambda_s: 2.0,
            lambda_t: 2.0,
        }
    }
}

impl KappaSchedule {
    /// A schedule with finite, non-negative λs and λt.
    pub fn new(lambda_s: f64, lambda_t: f64) -> Result<Self> {
        non_negative("lambda_s", lambda_s)?;
        non_negative("lambda_t", lambda_t)?;
        Ok(KappaSchedule { lambda_s, lambda_t })
    }

    /// Dy-YaRN's threshold schedule `κ(t) = t^λt`, i.e. λs = 1 (DyPE Eq. 17; the paper's best λt = 2).
    pub fn dy_yarn(lambda_t: f64) -> Result<Self> {
        Self::new(1.0, lambda_t)
    }

    /// κ at DyPE time `t`. `0^0` is taken as 1 (λt = 0 means "constant λs").
    pub fn kappa(&self, t: Sigma) -> Result<f64> {
        finite("lambda_s", self.lambda_s)?;
        finite("lambda_t", self.lambda_t)?;
        Ok(kappa(self.lambda_s, self.lambda_t, t.get()))
    }
}

/// `κ(t) = λs · t^λt` on plain numbers (DyPE Eq. 13).
pub fn kappa(lambda_s: f64, lambda_t: f64, t: f64) -> f64 {
    lambda_s * pow(t, lambda_t)
}

/// How a dynamic method moves ramp thresholds with κ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ThresholdKappa {
    /// Thresholds fixed (static method).
    Off,
    /// `β·κ` (DyPE Eq. 16; official DyPE since 2026-02-24).
    Multiply,
    /// `β^κ` (ComfyUI-DyPE v2.3 and the official code before 2026-02-24). At κ = 0 every threshold
    /// becomes 1 rather than 0, so this form does not relax to the native RoPE (issue guyyariv/DyPE#17).
    Power,
}

impl ThresholdKappa {
    /// A threshold moved by κ; `None` (static) leaves it unchanged.
    pub fn apply(self, threshold: f64, kappa: Option<f64>) -> f64 {
        match (self, kappa) {
            (ThresholdKappa::Off, _) | (_, None) => threshold,
            (ThresholdKappa::Multiply, Some(k)) => threshold * k,
            (ThresholdKappa::Power, Some(k)) => pow(threshold, k),
        }
    }
}

/// ComfyUI-DyPE's time-decaying attention factor (its "dynamic attention", `_get_mscale`): the
/// factor `m` decays to 1 as `1 + (m − 1)·min(t/t_start, 1)^λt`. `start_sigma` is clamped into
/// `[0.001, 1]` as the node does.
pub fn start_sigma_mscale(mscale: f64, t: Sigma, start_sigma: f64, lambda_t: f64) -> f64 {
    let start = start_sigma.clamp(0.001, 1.0);
    let t = t.get();
    let t_norm = if t > start { 1.0 } else { t / start };
    1.0 + (mscale - 1.0) * pow(t_norm, lambda_t)
}
