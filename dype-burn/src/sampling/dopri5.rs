//! Adaptive Dormand–Prince 5(4) with torchdiffeq's step control and dense output.

use super::{OdeState, SamplingError, Step, check_times};

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

/// Adaptive Dormand–Prince 5(4) as torchdiffeq runs it (`ts` strictly increasing). Calls
/// `on_step` with the (interpolated) state at every `ts[k]` (`ts[0]`: `y0`) and returns the last
/// one with the run's counters.
pub fn dopri5<S, E>(
    mut f: impl FnMut(f64, &S) -> Result<S, E>,
    y0: S,
    ts: &[f64],
    opts: Dopri5Options,
    mut on_step: impl FnMut(Step<'_, S>),
) -> Result<(S, Dopri5Stats), E>
where
    S: OdeState,
    E: From<SamplingError>,
{
    check_times(ts, false)?;
    for (name, value) in [
        ("atol", opts.atol),
        ("rtol", opts.rtol),
        ("safety", opts.safety),
        ("ifactor", opts.ifactor),
        ("dfactor", opts.dfactor),
    ] {
        if !(value.is_finite() && value > 0.0) {
            return Err(SamplingError::BadOption { name, value }.into());
        }
    }
    let mut stats = Dopri5Stats::default();
    let mut eval = |t: f64, y: &S, stats: &mut Dopri5Stats| {
        stats.evaluations += 1;
        f(t, y)
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
    on_step(Step {
        index: 0,
        t: t_start,
        state: &y0,
    });
    drop(y0);
    let mut steps = 0usize;
    for (index, &next_t) in ts.iter().enumerate().skip(1) {
        while next_t > t {
            if steps >= opts.max_steps {
                return Err(SamplingError::TooManySteps {
                    max: opts.max_steps,
                    t: next_t,
                }
                .into());
            }
            steps += 1;
            if !dt.is_finite() || dt <= 0.0 || t + dt <= t {
                return Err(SamplingError::Breakdown {
                    t,
                    reason: "step size underflow",
                }
                .into());
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
                }
                .into());
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
        // Outputs are interpolated, reported and dropped; only the last one is returned.
        let state = interp.eval(next_t);
        on_step(Step {
            index,
            t: next_t,
            state: &state,
        });
        if index + 1 == ts.len() {
            return Ok((state, stats));
        }
    }
    // Not reached: `check_times` guarantees an output after `ts[0]`.
    Err(SamplingError::BadTimes.into())
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::super::test_support::{Census, Counted, TestError, decay};
    use super::*;

    #[test]
    fn dopri5_meets_its_tolerance_and_interpolates() {
        let ts = [0.0, 0.25, 0.5, 0.75, 1.0];
        let mut traj = Vec::new();
        let (last, stats) = dopri5(decay, vec![1.0, -2.0], &ts, Dopri5Options::default(), |s| {
            traj.push((s.index, s.t, s.state.clone()))
        })
        .expect("runs");
        assert_eq!(traj.len(), ts.len());
        assert_eq!(traj[4].2, last);
        for (k, (index, t, y)) in traj.iter().enumerate() {
            assert_eq!((*index, *t), (k, ts[k]));
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
        let (last2, stats2) = dopri5(decay, vec![1.0, -2.0], &ts, tight, |_| {}).expect("runs");
        assert!(stats2.accepted > stats.accepted);
        assert!((last2[0] - (-1.0f64).exp()).abs() < 1e-9);
    }

    #[test]
    fn dopri5_rejects_bad_input_without_panicking() {
        let solver = |ts: &[f64], opts| dopri5(decay, vec![1.0], ts, opts, |_| {}).map(|r| r.0);
        assert_eq!(
            solver(&[0.0], Dopri5Options::default()),
            Err(TestError::Solver(SamplingError::BadTimes))
        );
        assert_eq!(
            solver(&[1.0, 0.0], Dopri5Options::default()),
            Err(TestError::Solver(SamplingError::BadTimes))
        );
        let bad = Dopri5Options {
            atol: f64::NAN,
            ..Dopri5Options::default()
        };
        assert!(matches!(
            solver(&[0.0, 1.0], bad),
            Err(TestError::Solver(SamplingError::BadOption { .. }))
        ));
        let blow = |_t: f64, y: &Vec<f64>| -> Result<Vec<f64>, TestError> {
            Ok(y.iter().map(|v| v * v * 1e300).collect())
        };
        let limited = Dopri5Options {
            max_steps: 50,
            ..Dopri5Options::default()
        };
        assert!(matches!(
            dopri5(blow, vec![1e10], &[0.0, 1.0], limited, |_| {}),
            Err(TestError::Solver(_))
        ));
        let failing = |_t: f64, _y: &Vec<f64>| -> Result<Vec<f64>, TestError> {
            Err(TestError::Model("model failed"))
        };
        assert_eq!(
            dopri5(
                failing,
                vec![1.0],
                &[0.0, 1.0],
                Dopri5Options::default(),
                |_| {}
            )
            .map(|r| r.0),
            Err(TestError::Model("model failed"))
        );
    }

    #[test]
    fn live_states_do_not_grow_with_the_output_count() {
        let peak = |n: usize| {
            let census = Rc::new(Census::default());
            let ts: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
            let f = |_t: f64, y: &Counted| -> Result<Counted, TestError> {
                Ok(y.combine(&[(-2.0, y)]))
            };
            let (last, _) = dopri5(
                f,
                Counted::new(vec![1.0], &census),
                &ts,
                Dopri5Options::default(),
                |_| {},
            )
            .expect("runs");
            drop(last);
            assert_eq!(census.live.get(), 0, "every state is dropped");
            census.peak.get()
        };
        assert_eq!(peak(4), peak(400));
    }
}
