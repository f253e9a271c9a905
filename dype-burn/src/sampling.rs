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

use burn::tensor::{ElementConversion, Tensor, backend::Backend};
use thiserror::Error;

/// What can go wrong while integrating.
#[derive(Debug, Error)]
pub enum SamplingError {
    /// The output times are not strictly monotonic in the integration direction, or fewer than 2.
    #[error("output times must hold at least two strictly increasing values")]
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
    /// The velocity function failed.
    #[error("velocity evaluation failed: {0}")]
    Velocity(String),
}

/// A state the solvers can integrate.
pub trait OdeState: Clone {
    /// `self + Σ cᵢ·xᵢ`.
    fn combine(&self, terms: &[(f64, &Self)]) -> Self;
    /// `RMS(x / (atol + rtol·max(|a|, |b|)))`, with `b = a` when `None` (torchdiffeq's scaled norms).
    fn scaled_rms(x: &Self, a: &Self, b: Option<&Self>, atol: f64, rtol: f64) -> f64;
    /// Whether every element is finite.
    fn all_finite(&self) -> bool;
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

    fn all_finite(&self) -> bool {
        self.iter().all(|v| v.is_finite())
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

    fn all_finite(&self) -> bool {
        let bad: i64 = self
            .clone()
            .is_nan()
            .bool_or(self.clone().is_inf())
            .int()
            .sum()
            .into_scalar()
            .elem();
        bad == 0
    }
}

fn check_times(ts: &[f64]) -> Result<(), SamplingError> {
    if ts.len() < 2 || ts.iter().any(|t| !t.is_finite()) || ts.windows(2).any(|w| w[1] <= w[0]) {
        return Err(SamplingError::BadTimes);
    }
    Ok(())
}

/// Explicit Euler over the grid `ts` (torchdiffeq `euler` with the output grid as step grid):
/// returns the state at every `ts[k]`, `ts[0]` being `y0`.
pub fn euler<S: OdeState, E: std::fmt::Display>(
    mut f: impl FnMut(f64, &S) -> Result<S, E>,
    y0: S,
    ts: &[f64],
) -> Result<Vec<S>, SamplingError> {
    check_times(ts)?;
    let mut out = Vec::with_capacity(ts.len());
    let mut y = y0;
    out.push(y.clone());
    for w in ts.windows(2) {
        let v = f(w[0], &y).map_err(|e| SamplingError::Velocity(e.to_string()))?;
        y = y.combine(&[(w[1] - w[0], &v)]);
        out.push(y.clone());
    }
    Ok(out)
}

/// Heun's second-order method (explicit trapezoid) over the grid `ts`: two evaluations per step.
pub fn heun<S: OdeState, E: std::fmt::Display>(
    mut f: impl FnMut(f64, &S) -> Result<S, E>,
    y0: S,
    ts: &[f64],
) -> Result<Vec<S>, SamplingError> {
    check_times(ts)?;
    let err = |e: E| SamplingError::Velocity(e.to_string());
    let mut out = Vec::with_capacity(ts.len());
    let mut y = y0;
    out.push(y.clone());
    for w in ts.windows(2) {
        let dt = w[1] - w[0];
        let k1 = f(w[0], &y).map_err(err)?;
        let pred = y.combine(&[(dt, &k1)]);
        let k2 = f(w[1], &pred).map_err(err)?;
        y = y.combine(&[(0.5 * dt, &k1), (0.5 * dt, &k2)]);
        out.push(y.clone());
    }
    Ok(out)
}

/// dopri5 options (torchdiffeq defaults).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Dopri5Options {
    /// Absolute tolerance.
    pub atol: f64,
    /// Relative tolerance.
    pub rtol: f64,
    /// Safety factor (0.9).
    pub safety: f64,
    /// Largest step growth (10).
    pub ifactor: f64,
    /// Largest step shrink (0.2), applied to rejected steps only.
    pub dfactor: f64,
    /// Step limit (attempted steps, accepted or not).
    pub max_steps: usize,
}

impl Default for Dopri5Options {
    fn default() -> Self {
        Dopri5Options {
            atol: 1e-6,
            rtol: 1e-3,
            safety: 0.9,
            ifactor: 10.0,
            dfactor: 0.2,
            max_steps: 100_000,
        }
    }
}

/// Counters of an adaptive run.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Dopri5Stats {
    /// Velocity evaluations.
    pub evaluations: usize,
    /// Accepted steps.
    pub accepted: usize,
    /// Rejected steps.
    pub rejected: usize,
}

const ALPHA: [f64; 6] = [1.0 / 5.0, 3.0 / 10.0, 4.0 / 5.0, 8.0 / 9.0, 1.0, 1.0];
const BETA: [&[f64]; 6] = [
    &[1.0 / 5.0],
    &[3.0 / 40.0, 9.0 / 40.0],
    &[44.0 / 45.0, -56.0 / 15.0, 32.0 / 9.0],
    &[
        19372.0 / 6561.0,
        -25360.0 / 2187.0,
        64448.0 / 6561.0,
        -212.0 / 729.0,
    ],
    &[
        9017.0 / 3168.0,
        -355.0 / 33.0,
        46732.0 / 5247.0,
        49.0 / 176.0,
        -5103.0 / 18656.0,
    ],
    &[
        35.0 / 384.0,
        0.0,
        500.0 / 1113.0,
        125.0 / 192.0,
        -2187.0 / 6784.0,
        11.0 / 84.0,
    ],
];
const C_ERROR: [f64; 7] = [
    35.0 / 384.0 - 1951.0 / 21600.0,
    0.0,
    500.0 / 1113.0 - 22642.0 / 50085.0,
    125.0 / 192.0 - 451.0 / 720.0,
    -2187.0 / 6784.0 - -12231.0 / 42400.0,
    11.0 / 84.0 - 649.0 / 6300.0,
    -1.0 / 60.0,
];
const C_MID: [f64; 7] = [
    6025192743.0 / 30085553152.0 / 2.0,
    0.0,
    51252292925.0 / 65400821598.0 / 2.0,
    -2691868925.0 / 45128329728.0 / 2.0,
    187940372067.0 / 1594534317056.0 / 2.0,
    -1776094331.0 / 19743644256.0 / 2.0,
    11237099.0 / 235043384.0 / 2.0,
];

struct Interp<S> {
    t0: f64,
    t1: f64,
    coeffs: [S; 5],
}

impl<S: OdeState> Interp<S> {
    fn fit(y0: &S, y1: &S, k: &[S], dt: f64, t0: f64, t1: f64) -> Self {
        let mid_terms: Vec<(f64, &S)> = k.iter().zip(C_MID).map(|(ki, c)| (dt * c, ki)).collect();
        let y_mid = y0.combine(&mid_terms);
        let (f0, f1) = (&k[0], &k[6]);
        let zero = y0.combine(&[(-1.0, y0)]);
        // p(x) = e + d x + c x² + b x³ + a x⁴ (torchdiffeq `_interp_fit`).
        let a = zero.combine(&[
            (2.0 * dt, f1),
            (-2.0 * dt, f0),
            (-8.0, y1),
            (-8.0, y0),
            (16.0, &y_mid),
        ]);
        let b = zero.combine(&[
            (5.0 * dt, f0),
            (-3.0 * dt, f1),
            (18.0, y0),
            (14.0, y1),
            (-32.0, &y_mid),
        ]);
        let c = zero.combine(&[
            (dt, f1),
            (-4.0 * dt, f0),
            (-11.0, y0),
            (-5.0, y1),
            (16.0, &y_mid),
        ]);
        let d = zero.combine(&[(dt, f0)]);
        Interp {
            t0,
            t1,
            coeffs: [y0.clone(), d, c, b, a],
        }
    }

    fn eval(&self, t: f64) -> S {
        let x = (t - self.t0) / (self.t1 - self.t0);
        let [e, d, c, b, a] = &self.coeffs;
        e.combine(&[(x, d), (x * x, c), (x * x * x, b), (x * x * x * x, a)])
    }
}

/// Adaptive Dormand–Prince 5(4) as torchdiffeq runs it; returns the state at every `ts[k]`
/// (interpolated), `ts[0]` being `y0`, and the run's counters.
pub fn dopri5<S: OdeState, E: std::fmt::Display>(
    mut f: impl FnMut(f64, &S) -> Result<S, E>,
    y0: S,
    ts: &[f64],
    opts: Dopri5Options,
) -> Result<(Vec<S>, Dopri5Stats), SamplingError> {
    check_times(ts)?;
    for (name, value) in [
        ("atol", opts.atol),
        ("rtol", opts.rtol),
        ("safety", opts.safety),
        ("ifactor", opts.ifactor),
        ("dfactor", opts.dfactor),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(SamplingError::BadOption { name, value });
        }
    }
    let mut stats = Dopri5Stats::default();
    let mut eval = |t: f64, y: &S, stats: &mut Dopri5Stats| {
        stats.evaluations += 1;
        f(t, y).map_err(|e| SamplingError::Velocity(e.to_string()))
    };
    let (atol, rtol) = (opts.atol, opts.rtol);
    let t_start = ts[0];
    let f0 = eval(t_start, &y0, &mut stats)?;

    // Hairer's initial step (order 4 here, as torchdiffeq passes `order − 1`).
    let d0 = S::scaled_rms(&y0, &y0, None, atol, rtol);
    let d1 = S::scaled_rms(&f0, &y0, None, atol, rtol);
    let h0 = if d0 < 1e-5 || d1 < 1e-5 {
        1e-6
    } else {
        0.01 * d0 / d1
    };
    let y1 = y0.combine(&[(h0, &f0)]);
    let f1 = eval(t_start + h0, &y1, &mut stats)?;
    let diff = f1.combine(&[(-1.0, &f0)]);
    let d2 = S::scaled_rms(&diff, &y0, None, atol, rtol) / h0;
    let h1 = if d1 <= 1e-15 && d2 <= 1e-15 {
        (h0 * 1e-3).max(1e-6)
    } else {
        (0.01 / d1.max(d2)).powf(1.0 / 5.0)
    };
    let mut dt = (100.0 * h0).min(h1);

    let mut y = y0.clone();
    let mut fy = f0;
    let mut t = t_start;
    let mut interp = Interp {
        t0: t,
        t1: t,
        coeffs: [y0.clone(), y0.clone(), y0.clone(), y0.clone(), y0.clone()],
    };
    let mut out = Vec::with_capacity(ts.len());
    out.push(y0);
    let mut steps = 0usize;
    for &next_t in &ts[1..] {
        while next_t > t {
            if steps >= opts.max_steps {
                return Err(SamplingError::TooManySteps {
                    max: opts.max_steps,
                    t: next_t,
                });
            }
            steps += 1;
            if !dt.is_finite() || dt <= 0.0 || t + dt <= t {
                return Err(SamplingError::Breakdown {
                    t,
                    reason: "step size underflow",
                });
            }
            let t1 = t + dt;
            let mut k: Vec<S> = Vec::with_capacity(7);
            k.push(fy.clone());
            let mut yi = y.clone();
            for (i, (alpha, beta)) in ALPHA.iter().zip(BETA).enumerate() {
                let ti = if *alpha == 1.0 { t1 } else { t + alpha * dt };
                let terms: Vec<(f64, &S)> = k[..=i]
                    .iter()
                    .zip(beta.iter())
                    .map(|(kj, b)| (b * dt, kj))
                    .collect();
                yi = y.combine(&terms);
                let fi = eval(ti, &yi, &mut stats)?;
                k.push(fi);
            }
            // FSAL: the last stage is the 5th-order solution and its derivative.
            let y_new = yi;
            let err_terms: Vec<(f64, &S)> =
                k.iter().zip(C_ERROR).map(|(kj, c)| (dt * c, kj)).collect();
            let zero = y.combine(&[(-1.0, &y)]);
            let err = zero.combine(&err_terms);
            let ratio = S::scaled_rms(&err, &y, Some(&y_new), atol, rtol);
            if !ratio.is_finite() {
                return Err(SamplingError::Breakdown {
                    t,
                    reason: "non-finite error estimate (state diverged)",
                });
            }
            let factor = if ratio == 0.0 {
                opts.ifactor
            } else {
                let dfactor = if ratio < 1.0 { 1.0 } else { opts.dfactor };
                opts.ifactor
                    .min((opts.safety / ratio.powf(1.0 / 5.0)).max(dfactor))
            };
            if ratio <= 1.0 {
                stats.accepted += 1;
                interp = Interp::fit(&y, &y_new, &k, dt, t, t1);
                fy = k.pop().unwrap_or_else(|| fy.clone());
                y = y_new;
                t = t1;
            } else {
                stats.rejected += 1;
            }
            dt *= factor;
        }
        out.push(interp.eval(next_t));
    }
    Ok((out, stats))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[allow(clippy::ptr_arg)] // the solver's state type is Vec<f64>
    fn decay(_t: f64, y: &Vec<f64>) -> Result<Vec<f64>, String> {
        Ok(y.iter().map(|v| -v).collect())
    }

    #[test]
    fn euler_and_heun_converge_at_their_orders() {
        let exact = (-1.0f64).exp();
        let err = |n: usize, heun_: bool| {
            let ts: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
            let traj = if heun_ {
                heun(decay, vec![1.0], &ts)
            } else {
                euler(decay, vec![1.0], &ts)
            }
            .expect("runs");
            (traj[n][0] - exact).abs()
        };
        assert!(
            (err(100, false) / err(200, false) - 2.0).abs() < 0.05,
            "Euler is first order"
        );
        assert!(
            (err(100, true) / err(200, true) - 4.0).abs() < 0.1,
            "Heun is second order"
        );
    }

    #[test]
    fn dopri5_meets_its_tolerance_and_interpolates() {
        let ts = [0.0, 0.25, 0.5, 0.75, 1.0];
        let (traj, stats) =
            dopri5(decay, vec![1.0, -2.0], &ts, Dopri5Options::default()).expect("runs");
        for (t, y) in ts.iter().zip(&traj) {
            // rtol 1e-3 bounds the local error; with two or three big steps the 4th-order
            // interpolant in between is within a few rtol. (Parity with torchdiffeq itself is
            // checked on the FiTv2 fixture's dopri5 trajectory.)
            assert!(
                (y[0] - (-t).exp()).abs() < 3e-3 * (-t).exp(),
                "t {t}: {} vs {}",
                y[0],
                (-t).exp()
            );
            assert!((y[1] + 2.0 * (-t).exp()).abs() < 6e-3 * (-t).exp());
        }
        assert!(
            stats.accepted >= 1 && stats.evaluations == 2 + 6 * (stats.accepted + stats.rejected)
        );
        // A tighter tolerance takes more steps and is more accurate.
        let tight = Dopri5Options {
            atol: 1e-10,
            rtol: 1e-10,
            ..Dopri5Options::default()
        };
        let (traj2, stats2) = dopri5(decay, vec![1.0, -2.0], &ts, tight).expect("runs");
        assert!(stats2.accepted > stats.accepted);
        assert!((traj2[4][0] - (-1.0f64).exp()).abs() < 1e-9);
    }

    #[test]
    fn dopri5_rejects_bad_input_without_panicking() {
        assert!(matches!(
            dopri5(decay, vec![1.0], &[0.0], Dopri5Options::default()),
            Err(SamplingError::BadTimes)
        ));
        assert!(matches!(
            dopri5(decay, vec![1.0], &[1.0, 0.0], Dopri5Options::default()),
            Err(SamplingError::BadTimes)
        ));
        let bad = Dopri5Options {
            atol: f64::NAN,
            ..Dopri5Options::default()
        };
        assert!(matches!(
            dopri5(decay, vec![1.0], &[0.0, 1.0], bad),
            Err(SamplingError::BadOption { .. })
        ));
        let blow = |_t: f64, y: &Vec<f64>| -> Result<Vec<f64>, String> {
            Ok(y.iter().map(|v| v * v * 1e300).collect())
        };
        assert!(
            dopri5(
                blow,
                vec![1e10],
                &[0.0, 1.0],
                Dopri5Options {
                    max_steps: 50,
                    ..Dopri5Options::default()
                }
            )
            .is_err()
        );
        let failing =
            |_t: f64, _y: &Vec<f64>| -> Result<Vec<f64>, String> { Err("model failed".into()) };
        assert!(matches!(
            euler(failing, vec![1.0], &[0.0, 1.0]),
            Err(SamplingError::Velocity(_))
        ));
    }
}
