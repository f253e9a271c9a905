//! `proptest` strategies for downstream property tests (feature `proptest`): valid (and deliberately
//! invalid) axes, scales, DyPE times, positions and whole methods, so a crate can property-test its
//! own attention code against the extrapolation math.
//!
//! ```
//! use dype_core::strategies;
//! use proptest::prelude::*;
//!
//! proptest! {
//!     // A downstream crate checking that its rotation keeps q·k a function of the offset only
//!     // (in its own tests, put `#[test]` on the function).
//!     fn my_attention_is_relative(axis in strategies::axis(), m in strategies::method(),
//!                                 s in strategies::scale(), t in strategies::sigma(),
//!                                 p in -64.0f64..64.0, off in -64.0f64..64.0) {
//!         let scales = dype_core::AxisScales::uniform(s, 16.0);
//!         let mut w = vec![0.0; axis.pairs()];
//!         m.frequencies(&axis, &scales, Some(t), &mut w).unwrap();
//!         for &wi in &w {
//!             let a = (p + off) * wi - p * wi; // relative angle
//!             prop_assert!((a - off * wi).abs() < 1e-6 * (1.0 + (p * wi).abs()));
//!         }
//!     }
//! }
//! my_attention_is_relative();
//! ```

use proptest::prelude::*;

use crate::axis::Axis;
use crate::method::{Method, Mscale, NtkByParts, NtkKappa, ScaleSource, Yarn, YarnLlm};
use crate::schedule::{KappaSchedule, ThresholdKappa};
use crate::time::Sigma;
use crate::{AxialRope, AxisConfig, AxisPolicy, RampClamp};

/// A valid axis: even rotary dim in 4..=128, θ in [100, 1e6].
pub fn axis() -> impl Strategy<Value = Axis> {
    (2usize..=64, 100.0f64..1.0e6)
        .prop_map(|(h, theta)| Axis::new(2 * h, theta).expect("valid by construction"))
}

/// A valid extrapolation scale in [1, 16].
pub fn scale() -> impl Strategy<Value = f64> {
    1.0f64..16.0
}

/// A valid DyPE time σ in [0, 1].
pub fn sigma() -> impl Strategy<Value = Sigma> {
    (0.0f64..=1.0).prop_map(|t| Sigma::new(t).expect("in range"))
}

/// A valid κ schedule (λs in [0, 3], λt in [0, 4]).
pub fn schedule() -> impl Strategy<Value = KappaSchedule> {
    (0.0f64..3.0, 0.0f64..4.0).prop_map(|(s, t)| KappaSchedule {
        lambda_s: s,
        lambda_t: t,
    })
}

/// Any well-defined method (paper-faithful and reference forms, excluding the official clamp,
/// which is only defined for t ≥ 0.05).
pub fn method() -> impl Strategy<Value = Method> {
    prop_oneof![
        Just(Method::Base),
        proptest::option::of(schedule()).prop_map(|d| Method::Pi { dynamic: d }),
        proptest::option::of((
            schedule(),
            prop_oneof![Just(NtkKappa::Exponential), Just(NtkKappa::Multiplicative)]
        ))
        .prop_map(|d| Method::Ntk { dynamic: d }),
        (
            0.0f64..4.0,
            4.0f64..64.0,
            proptest::option::of(schedule()),
            any::<bool>()
        )
            .prop_map(|(a, b, d, f)| Method::Yarn(Yarn {
                alpha: a,
                beta: b,
                dynamic: d,
                mscale: Mscale::Yarn(ScaleSource::Linear),
                mscale_follows_kappa: f
            })),
        (8.0f64..64.0, 0.5f64..4.0, any::<bool>()).prop_map(|(f, s, t)| Method::YarnLlm(YarnLlm {
            beta_fast: f,
            beta_slow: s,
            truncate: t,
            ..YarnLlm::default()
        })),
        (
            proptest::option::of(schedule()),
            proptest::option::of(schedule())
        )
            .prop_map(|(th, ntk)| Method::NtkByParts(NtkByParts {
                thresholds: th.map(|s| (s, ThresholdKappa::Multiply)),
                ntk,
                clamp: RampClamp::Safe,
                ..NtkByParts::default()
            })),
    ]
}

/// A FLUX-like or FiT-like axial rope with a random method and policy.
pub fn axial_rope() -> impl Strategy<Value = AxialRope> {
    let policy = prop_oneof![
        Just(AxisPolicy::PerAxis),
        Just(AxisPolicy::Isotropic),
        Just(AxisPolicy::VisionYarn)
    ];
    (method(), policy, any::<bool>(), 4.0f64..128.0).prop_map(|(m, p, flux, l)| {
        let axes: Vec<AxisConfig> = if flux {
            vec![
                AxisConfig::unscaled(16, 1e4).expect("valid"),
                AxisConfig::scaled(56, 1e4, l).expect("valid"),
                AxisConfig::scaled(56, 1e4, l).expect("valid"),
            ]
        } else {
            vec![
                AxisConfig::scaled(36, 1e4, l).expect("valid"),
                AxisConfig::scaled(36, 1e4, l).expect("valid"),
            ]
        };
        AxialRope::new(&axes, m, p).expect("valid")
    })
}

/// Positions: finite values in [−512, 4096], fractional allowed.
pub fn position() -> impl Strategy<Value = f64> {
    prop_oneof![(-512i32..4096).prop_map(f64::from), -512.0f64..4096.0]
}

/// Deliberately invalid or hostile numbers: NaN, ±∞, negatives, zero, huge and tiny values.
pub fn hostile_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        Just(f64::NAN),
        Just(f64::INFINITY),
        Just(f64::NEG_INFINITY),
        Just(0.0),
        Just(-0.0),
        Just(-1.0),
        Just(1e308),
        Just(-1e308),
        Just(f64::MIN_POSITIVE),
        Just(5e-324),
        any::<f64>(),
    ]
}

/// Deliberately invalid rotary dims (odd, zero) mixed with valid ones.
pub fn any_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        Just(0usize),
        Just(1),
        Just(2),
        Just(3),
        0usize..300,
        Just(usize::MAX)
    ]
}
