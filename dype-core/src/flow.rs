//! The flow-matching σ schedule FLUX.1 samples with: diffusers' `FlowMatchEulerDiscreteScheduler`
//! with dynamic shifting and BFL's `get_schedule` (both FLUX reference pipelines).
//!
//! * σ_i = `time_shift(μ, linspace(1, 1/N, N)_i)` for i < N, then σ_N = 0 ([`flux_sigmas`]);
//! * `time_shift(μ, σ) = e^μ / (e^μ + (1/σ − 1))` ([`time_shift`]);
//! * μ linear in the image token count through (256, 0.5) and (4096, 1.15) ([`FlowShift::mu`]),
//!   or pinned (the official DyPE pipeline pins μ = 1.15 at every resolution).
//!
//! These σ are DyPE's time ([`Sigma`]: 1 = noise) at each sampler step, so they drive κ(t)
//! ([`crate::kappa`]) as well as the solver.

use crate::error::{DypeError, Result, at_most, finite, produced};
use crate::math::exp;
use crate::time::Sigma;

/// Most sampler steps [`flux_sigmas`] accepts.
pub const MAX_STEPS: usize = 1 << 20;

/// Largest `|μ|` accepted: `e^μ` stays finite and normal.
pub const MAX_MU: f64 = 700.0;

/// Scheduler constants of FLUX.1-dev's `scheduler_config.json`: μ is linear in the image token
/// count through (`base_image_seq_len`, `base_shift`) and (`max_image_seq_len`, `max_shift`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowShift {
    /// Image tokens where μ = `base_shift` (256).
    pub base_image_seq_len: f64,
    /// Image tokens where μ = `max_shift` (4096).
    pub max_image_seq_len: f64,
    /// μ at `base_image_seq_len` (0.5).
    pub base_shift: f64,
    /// μ at `max_image_seq_len` (1.15; the official DyPE pipeline pins μ to it).
    pub max_shift: f64,
}

impl Default for FlowShift {
    fn default() -> Self {
        FlowShift::FLUX_DEV
    }
}

impl FlowShift {
    /// FLUX.1-dev's scheduler: (256, 0.5) and (4096, 1.15).
    pub const FLUX_DEV: FlowShift = FlowShift {
        base_image_seq_len: 256.0,
        max_image_seq_len: 4096.0,
        base_shift: 0.5,
        max_shift: 1.15,
    };

    /// μ for `image_seq_len` image tokens (diffusers `calculate_shift`, BFL `get_lin_function`):
    /// linear through the two anchor points, extrapolated beyond them. A typed error when the
    /// constants are not finite, the anchors coincide, or μ leaves `±MAX_MU`.
    pub fn mu(&self, image_seq_len: usize) -> Result<f64> {
        finite("base_image_seq_len", self.base_image_seq_len)?;
        finite("max_image_seq_len", self.max_image_seq_len)?;
        finite("base_shift", self.base_shift)?;
        finite("max_shift", self.max_shift)?;
        if self.max_image_seq_len == self.base_image_seq_len {
            return Err(DypeError::InvalidConfig {
                reason: "flow shift anchors must be at different token counts",
            });
        }
        let m =
            (self.max_shift - self.base_shift) / (self.max_image_seq_len - self.base_image_seq_len);
        let b = self.base_shift - m * self.base_image_seq_len;
        check_mu(produced("mu", image_seq_len as f64 * m + b)?)
    }
}

fn check_mu(mu: f64) -> Result<f64> {
    finite("mu", mu)?;
    if mu.abs() <= MAX_MU {
        Ok(mu)
    } else {
        Err(DypeError::OutOfRange {
            name: "mu",
            value: mu,
            expected: "|mu| <= 700",
        })
    }
}

/// `e^μ / (e^μ + (1/σ − 1))` for a checked μ and σ ∈ [0, 1]; always finite in [0, 1].
fn shift(mu: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return 0.0;
    }
    let e = exp(mu);
    e / (e + (1.0 / sigma - 1.0))
}

/// The exponential time shift `e^μ / (e^μ + (1/σ − 1))` (power 1): σ = 0 maps to 0, σ = 1 to 1,
/// μ > 0 moves every σ towards noise. `sigma` in [0, 1], `|mu| <= MAX_MU`.
pub fn time_shift(mu: f64, sigma: f64) -> Result<f64> {
    let mu = check_mu(mu)?;
    let sigma = Sigma::new(sigma)?.get();
    Ok(shift(mu, sigma))
}

/// The `steps + 1` shifted σ of a FLUX run with shift `mu`, from 1 down to a final 0 (empty for
/// `steps == 0`), as an iterator (no allocation: `collect` it where a `Vec` is wanted).
pub fn flux_sigmas(steps: usize, mu: f64) -> Result<FluxSigmas> {
    at_most("steps", steps, MAX_STEPS)?;
    let mu = check_mu(mu)?;
    Ok(FluxSigmas { steps, mu, next: 0 })
}

/// The iterator of [`flux_sigmas`].
#[derive(Debug, Clone)]
pub struct FluxSigmas {
    steps: usize,
    mu: f64,
    next: usize,
}

impl FluxSigmas {
    fn len_total(&self) -> usize {
        if self.steps == 0 { 0 } else { self.steps + 1 }
    }
}

impl Iterator for FluxSigmas {
    type Item = f64;

    fn next(&mut self) -> Option<f64> {
        let (i, n) = (self.next, self.steps);
        if i >= self.len_total() {
            return None;
        }
        self.next += 1;
        if i == n {
            return Some(0.0);
        }
        let (start, stop) = (1.0, 1.0 / n as f64);
        // numpy.linspace(1, 1/N, N): start + i·step, the last value exactly `stop`.
        let s = if i + 1 == n {
            stop
        } else if n == 1 {
            start
        } else {
            start + i as f64 * (stop - start) / (n - 1) as f64
        };
        Some(shift(self.mu, s))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.len_total() - self.next;
        (left, Some(left))
    }
}

impl ExactSizeIterator for FluxSigmas {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_anchor_points() {
        let s = FlowShift::default();
        assert!((s.mu(256).unwrap() - 0.5).abs() < 1e-12);
        assert!((s.mu(4096).unwrap() - 1.15).abs() < 1e-12);
        assert!((s.mu(1024).unwrap() - 0.63).abs() < 1e-12);
        let flat = FlowShift {
            max_image_seq_len: 256.0,
            ..FlowShift::FLUX_DEV
        };
        assert!(flat.mu(1).is_err());
    }

    #[test]
    fn sigmas_shape_and_ends() {
        let s: [f64; 29] = {
            let mut a = [0.0; 29];
            for (o, v) in a.iter_mut().zip(flux_sigmas(28, 1.15).unwrap()) {
                *o = v;
            }
            a
        };
        assert_eq!(flux_sigmas(28, 1.15).unwrap().len(), 29);
        assert_eq!(s[0], 1.0);
        assert_eq!(s[28], 0.0);
        assert!((s[1] - 0.988_408_625).abs() < 1e-6);
        assert!(s.windows(2).all(|w| w[1] < w[0]));
        assert_eq!(flux_sigmas(0, 1.0).unwrap().count(), 0);
        let one = flux_sigmas(1, 1.0).unwrap();
        assert_eq!(one.len(), 2);
        assert!(one.eq([1.0, 0.0]));
    }

    #[test]
    fn bad_inputs_are_typed_errors() {
        assert!(time_shift(f64::NAN, 0.5).is_err());
        assert!(time_shift(701.0, 0.5).is_err());
        assert!(time_shift(1.0, 1.5).is_err());
        assert_eq!(time_shift(700.0, 1e-300).map(f64::is_finite), Ok(true));
        assert_eq!(time_shift(-700.0, 1.0), Ok(1.0));
        assert!(flux_sigmas(MAX_STEPS + 1, 1.0).is_err());
        assert!(flux_sigmas(4, f64::INFINITY).is_err());
    }
}
