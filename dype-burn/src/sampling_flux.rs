//! Flow-matching schedule and Euler sampler as FLUX uses them (diffusers
//! `FlowMatchEulerDiscreteScheduler` with dynamic shifting; BFL `get_schedule`), plus 2×2 latent
//! packing. Model-agnostic: the velocity function is the caller's. References:
//! the BFL and diffusers FLUX pipelines.
//!
//! * σ_i = `time_shift(μ, linspace(1, 1/N, N)_i)` for i < N, then σ_N = 0;
//! * `time_shift(μ, σ) = e^μ / (e^μ + (1/σ − 1))`;
//! * μ linear in the image token count through (256, 0.5) and (4096, 1.15), or pinned (the DyPE
//!   pipeline pins μ = 1.15 at every resolution);
//! * Euler: `x ← x + (σ_{i+1} − σ_i)·v`, v = noise − data.

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

use crate::sampling::{OdeState, SamplingError};

/// Scheduler constants of FLUX.1-dev's `scheduler_config.json`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FlowShift {
    /// Image tokens where μ = `base_shift` (256).
    pub base_image_seq_len: f64,
    /// Image tokens where μ = `max_shift` (4096).
    pub max_image_seq_len: f64,
    /// μ at `base_image_seq_len` (0.5).
    pub base_shift: f64,
    /// μ at `max_image_seq_len` (1.15).
    pub max_shift: f64,
}

impl Default for FlowShift {
    fn default() -> Self {
        FlowShift {
            base_image_seq_len: 256.0,
            max_image_seq_len: 4096.0,
            base_shift: 0.5,
            max_shift: 1.15,
        }
    }
}

impl FlowShift {
    /// μ for `image_seq_len` image tokens (diffusers `calculate_shift`, BFL `get_lin_function`):
    /// linear through the two anchor points, extrapolated beyond them.
    pub fn mu(&self, image_seq_len: usize) -> f64 {
        let m =
            (self.max_shift - self.base_shift) / (self.max_image_seq_len - self.base_image_seq_len);
        let b = self.base_shift - m * self.base_image_seq_len;
        image_seq_len as f64 * m + b
    }
}

/// The exponential time shift `e^μ / (e^μ + (1/σ − 1))` (power 1). σ = 0 maps to 0, σ = 1 to 1.
pub fn time_shift(mu: f64, sigma: f64) -> f64 {
    if sigma <= 0.0 {
        return 0.0;
    }
    let e = mu.exp();
    e / (e + (1.0 / sigma - 1.0))
}

/// The `steps + 1` shifted σ values of a FLUX run with shift `mu`, from 1 down to a final 0.
/// `steps == 0` gives an empty schedule.
pub fn flux_sigmas(steps: usize, mu: f64) -> Vec<f64> {
    if steps == 0 {
        return Vec::new();
    }
    let (start, stop) = (1.0, 1.0 / steps as f64);
    let mut out: Vec<f64> = (0..steps)
        .map(|i| {
            // numpy.linspace: start + i·step, the last value exactly `stop`.
            let s = if i + 1 == steps {
                stop
            } else if steps == 1 {
                start
            } else {
                start + i as f64 * (stop - start) / (steps - 1) as f64
            };
            time_shift(mu, s)
        })
        .collect();
    out.push(0.0);
    out
}

/// [`flux_sigmas`] with μ from the image token count (upstream diffusers/BFL behaviour).
pub fn flux_sigmas_for_tokens(steps: usize, image_seq_len: usize, shift: &FlowShift) -> Vec<f64> {
    flux_sigmas(steps, shift.mu(image_seq_len))
}

/// One Euler step `x + (σ_next − σ)·v`.
pub fn euler_step<B: Backend, const D: usize>(
    x: Tensor<B, D>,
    v: Tensor<B, D>,
    sigma: f64,
    sigma_next: f64,
) -> Tensor<B, D> {
    x + v.mul_scalar(sigma_next - sigma)
}

/// Runs Euler over decreasing `sigmas` (σ_0 = start, last = end, typically 0): `velocity(σ_i, x)`
/// is called once per step. Returns every state, the first being `x0` (`sigmas.len()` states).
pub fn flow_euler<S: OdeState, E: std::fmt::Display>(
    mut velocity: impl FnMut(usize, f64, &S) -> Result<S, E>,
    x0: S,
    sigmas: &[f64],
) -> Result<Vec<S>, SamplingError> {
    if sigmas.len() < 2
        || sigmas.iter().any(|s| !s.is_finite())
        || sigmas.windows(2).any(|w| w[1] >= w[0])
    {
        return Err(SamplingError::BadTimes);
    }
    let mut out = Vec::with_capacity(sigmas.len());
    let mut x = x0;
    out.push(x.clone());
    for (i, w) in sigmas.windows(2).enumerate() {
        let v = velocity(i, w[0], &x).map_err(|e| SamplingError::Velocity(e.to_string()))?;
        x = x.combine(&[(w[1] - w[0], &v)]);
        out.push(x.clone());
    }
    Ok(out)
}

/// Packs a latent `[B, C, H, W]` (H, W even) into FLUX tokens `[B, (H/2)(W/2), 4C]`: channel
/// `c·4 + ph·2 + pw`, tokens row-major (diffusers `_pack_latents`, BFL `prepare`).
pub fn pack_latents<B: Backend>(latent: Tensor<B, 4>) -> Tensor<B, 3> {
    crate::models::fitv2::patchify(latent, 2)
}

/// Inverse of [`pack_latents`] for an `h × w` token grid: `[B, h·w, 4C]` → `[B, C, 2h, 2w]`.
pub fn unpack_latents<B: Backend>(tokens: Tensor<B, 3>, h: usize, w: usize) -> Tensor<B, 4> {
    crate::models::fitv2::unpatchify(tokens, h, w, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mu_anchor_points() {
        let s = FlowShift::default();
        assert!((s.mu(256) - 0.5).abs() < 1e-12);
        assert!((s.mu(4096) - 1.15).abs() < 1e-12);
        assert!((s.mu(1024) - 0.63).abs() < 1e-12);
    }

    #[cfg(feature = "cpu")]
    #[test]
    fn packing_order_and_round_trip() {
        use burn::tensor::TensorData;
        type B = crate::backend::Cpu;
        let (c, h, w) = (2usize, 4usize, 6usize);
        let vals: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let latent =
            Tensor::<B, 4>::from_data(TensorData::new(vals, [1, c, h, w]), &Default::default());
        let tokens = pack_latents(latent.clone());
        assert_eq!(tokens.dims(), [1, (h / 2) * (w / 2), 4 * c]);
        let t: Vec<f32> = tokens.clone().into_data().into_vec().expect("f32");
        // token (row 1, col 2), channel c·4 + ph·2 + pw = latent[c, 2·1 + ph, 2·2 + pw]
        let (r, col) = (1, 2);
        let tok = r * (w / 2) + col;
        for ci in 0..c {
            for ph in 0..2 {
                for pw in 0..2 {
                    let want = (ci * h * w + (2 * r + ph) * w + 2 * col + pw) as f32;
                    assert_eq!(t[tok * 4 * c + ci * 4 + ph * 2 + pw], want);
                }
            }
        }
        let back = unpack_latents(tokens, h / 2, w / 2);
        let a: Vec<f32> = back.into_data().into_vec().expect("f32");
        let b: Vec<f32> = latent.into_data().into_vec().expect("f32");
        assert_eq!(a, b);
    }

    #[test]
    fn sigmas_shape_and_ends() {
        let s = flux_sigmas(28, 1.15);
        assert_eq!(s.len(), 29);
        assert_eq!(s[0], 1.0);
        assert_eq!(s[28], 0.0);
        assert!((s[1] - 0.988_408_625).abs() < 1e-6);
        assert!(flux_sigmas(0, 1.0).is_empty());
        assert_eq!(flux_sigmas(1, 1.0), vec![1.0, 0.0]);
    }
}
