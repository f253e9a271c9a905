//! DyPE's scheduler κ(t) (paper Eq. 13) and how the dynamic methods consume it.

use crate::error::{Result, finite, non_negative, produced};
use crate::math::pow;
use crate::time::Sigma;

/// `κ(t) = λs · t^λt` (DyPE Eq. 13 / Eq. 21). `t` is DyPE's time ([`Sigma`]: 1 = noise). Both
/// parameters are finite and `>= 0` (checked by [`KappaSchedule::new`], the only way to build one),
/// so κ is finite, `>= 0` and largest at t = 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct KappaSchedule {
    lambda_s: f64,
    lambda_t: f64,
}

impl Default for KappaSchedule {
    /// The paper's defaults for Dy-PI and Dy-NTK: λs = λt = 2 (App. C).
    fn default() -> Self {
        KappaSchedule::PAPER
    }
}

impl KappaSchedule {
    /// λs = λt = 2: the paper's Dy-PI / Dy-NTK schedule (App. C).
    pub const PAPER: KappaSchedule = KappaSchedule {
        lambda_s: 2.0,
        lambda_t: 2.0,
    };
    /// λs = 1, λt = 2: the paper's Dy-YaRN threshold schedule `κ = t²` (Eq. 17).
    pub const DY_YARN: KappaSchedule = KappaSchedule {
        lambda_s: 1.0,
        lambda_t: 2.0,
    };

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

    /// A constant κ (λt = 0, so `κ(t) = λs` at every t; `0^0` is taken as 1).
    pub fn constant(kappa: f64) -> Result<Self> {
        Self::new(kappa, 0.0)
    }

    /// λs: the largest κ, reached at t = 1.
    pub fn lambda_s(&self) -> f64 {
        self.lambda_s
    }

    /// λt: how fast κ decays towards t = 0.
    pub fn lambda_t(&self) -> f64 {
        self.lambda_t
    }

    /// κ at DyPE time `t`: finite and `>= 0`. `0^0` is taken as 1 (λt = 0 means "constant λs").
    pub fn kappa(&self, t: Sigma) -> Result<f64> {
        produced("kappa", self.lambda_s * pow(t.get(), self.lambda_t))
    }
}

/// `κ(t) = λs · t^λt` on plain numbers (DyPE Eq. 13): λs, λt finite and `>= 0`, `t` in `[0, 1]`.
pub fn kappa(lambda_s: f64, lambda_t: f64, t: f64) -> Result<f64> {
    KappaSchedule::new(lambda_s, lambda_t)?.kappa(Sigma::new(t)?)
}

/// How a dynamic method moves ramp thresholds with κ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum ThresholdKappa {
    /// `β·κ` (DyPE Eq. 16; official DyPE since 2026-02-24).
    Multiply,
    /// `β^κ` (ComfyUI-DyPE v2.3 and the official code before 2026-02-24). At κ = 0 every threshold
    /// becomes 1 rather than 0, so this form does not relax to the native RoPE (issue guyyariv/DyPE#17).
    Power,
}

impl ThresholdKappa {
    /// A threshold moved by κ; `None` (static) leaves it unchanged. Both finite and `>= 0`; the
    /// result is finite.
    pub fn apply(self, threshold: f64, kappa: Option<f64>) -> Result<f64> {
        non_negative("threshold", threshold)?;
        let Some(k) = kappa else {
            return Ok(threshold);
        };
        non_negative("kappa", k)?;
        produced(
            "threshold",
            match self {
                ThresholdKappa::Multiply => threshold * k,
                ThresholdKappa::Power => pow(threshold, k),
            },
        )
    }
}

/// ComfyUI-DyPE's time-decaying attention factor (its "dynamic attention", `_get_mscale`): the
/// factor `m` decays to 1 as `1 + (m − 1)·min(t/t_start, 1)^λt`. `start_sigma` is clamped into
/// `[0.001, 1]` as the node does; `m` finite, `λt >= 0` finite.
pub fn start_sigma_mscale(mscale: f64, t: Sigma, start_sigma: f64, lambda_t: f64) -> Result<f64> {
    finite("mscale", mscale)?;
    finite("start_sigma", start_sigma)?;
    non_negative("lambda_t", lambda_t)?;
    let start = start_sigma.clamp(0.001, 1.0);
    let t = t.get();
    let t_norm = if t > start { 1.0 } else { t / start };
    produced("mscale", 1.0 + (mscale - 1.0) * pow(t_norm, lambda_t))
}
