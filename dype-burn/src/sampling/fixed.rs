//! Fixed-grid solvers: explicit Euler and Heun.

use super::{OdeState, SamplingError, Step, check_times};

/// A fixed-grid method of [`fixed`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FixedMethod {
    /// Explicit Euler (torchdiffeq `euler` with the output grid as step grid):
    /// `y ← y + (t_{k+1} − t_k)·f(t_k, y)`, one evaluation per step.
    Euler,
    /// Heun's second-order method (explicit trapezoid): two evaluations per step,
    /// `y ← y + ½·dt·(f(t_k, y) + f(t_{k+1}, y + dt·f(t_k, y)))`.
    Heun,
}

/// Integrates `dy/dt = f(t, y)` from `y0` over the grid `ts` (strictly increasing, or strictly
/// decreasing as FLUX's σ) with `method`. Calls `on_step` with the state at every `ts[k]`
/// (`ts[0]`: `y0`) and returns the last one; only the current state and the evaluations of the
/// step in progress are alive at once.
pub fn fixed<S, E>(
    method: FixedMethod,
    mut f: impl FnMut(f64, &S) -> Result<S, E>,
    y0: S,
    ts: &[f64],
    mut on_step: impl FnMut(Step<'_, S>),
) -> Result<S, E>
where
    S: OdeState,
    E: From<SamplingError>,
{
    check_times(ts, true)?;
    let mut y = y0;
    on_step(Step {
        index: 0,
        t: ts[0],
        state: &y,
    });
    for (k, w) in ts.windows(2).enumerate() {
        let dt = w[1] - w[0];
        let k1 = f(w[0], &y)?;
        y = match method {
            FixedMethod::Euler => y.combine(&[(dt, &k1)]),
            FixedMethod::Heun => {
                let pred = y.combine(&[(dt, &k1)]);
                let k2 = f(w[1], &pred)?;
                drop(pred);
                y.combine(&[(0.5 * dt, &k1), (0.5 * dt, &k2)])
            }
        };
        drop(k1);
        on_step(Step {
            index: k + 1,
            t: w[1],
            state: &y,
        });
    }
    Ok(y)
}

#[cfg(test)]
mod tests {
    use std::rc::Rc;

    use super::super::test_support::{Census, Counted, TestError, decay};
    use super::*;

    #[test]
    fn euler_and_heun_converge_at_their_orders() {
        let exact = (-1.0f64).exp();
        let err = |n: usize, heun_: bool| {
            let ts: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
            let mut seen = Vec::new();
            let last = if heun_ {
                fixed(FixedMethod::Heun, decay, vec![1.0], &ts, |s| {
                    seen.push((s.index, s.t))
                })
            } else {
                fixed(FixedMethod::Euler, decay, vec![1.0], &ts, |s| {
                    seen.push((s.index, s.t))
                })
            }
            .expect("runs");
            assert_eq!(seen, ts.iter().copied().enumerate().collect::<Vec<_>>());
            (last[0] - exact).abs()
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
    fn decreasing_grids_integrate_backwards() {
        // y' = −y from t = 1 down to 0: y(0) = y(1)·e.
        let ts: Vec<f64> = (0..=400).map(|i| 1.0 - i as f64 / 400.0).collect();
        let last = fixed(FixedMethod::Heun, decay, vec![1.0], &ts, |_| {}).expect("runs");
        assert!((last[0] - 1f64.exp()).abs() < 1e-4);
    }

    #[test]
    fn errors_are_typed_and_the_callers_error_comes_back() {
        for ts in [
            &[0.0][..],
            &[0.0, 0.0][..],
            &[0.0, 1.0, 0.5][..],
            &[0.0, f64::NAN][..],
        ] {
            assert_eq!(
                fixed(FixedMethod::Euler, decay, vec![1.0], ts, |_| {}),
                Err(TestError::Solver(SamplingError::BadTimes))
            );
        }
        let failing = |_t: f64, _y: &Vec<f64>| -> Result<Vec<f64>, TestError> {
            Err(TestError::Model("model failed"))
        };
        assert_eq!(
            fixed(FixedMethod::Heun, failing, vec![1.0], &[0.0, 1.0], |_| {}),
            Err(TestError::Model("model failed"))
        );
    }

    #[test]
    fn live_states_do_not_grow_with_the_step_count() {
        let peak = |n: usize, heun_: bool| {
            let census = Rc::new(Census::default());
            let ts: Vec<f64> = (0..=n).map(|i| i as f64 / n as f64).collect();
            let f = |_t: f64, y: &Counted| -> Result<Counted, TestError> {
                Ok(y.combine(&[(-2.0, y)]))
            };
            let y0 = Counted::new(vec![1.0, 2.0], &census);
            let last = if heun_ {
                fixed(FixedMethod::Heun, f, y0, &ts, |_| {})
            } else {
                fixed(FixedMethod::Euler, f, y0, &ts, |_| {})
            }
            .expect("runs");
            drop(last);
            assert_eq!(census.live.get(), 0, "every state is dropped");
            census.peak.get()
        };
        for heun_ in [false, true] {
            let (few, many) = (peak(4, heun_), peak(400, heun_));
            assert_eq!(few, many, "heun: {heun_}");
            assert!(many <= 4, "heun: {heun_}: {many} states alive at once");
        }
    }
}
