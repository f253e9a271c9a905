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
use crate::method::{
    AxisScales, Lumina, Method, Mscale, NtkByParts, NtkKappa, ScaleSource, Yarn, YarnLlm,
};
use crate::schedule::{KappaSchedule, ThresholdKappa};
use crate::time::Sigma;
use crate::{AttentionFactor, AxialRope, AxisConfig, AxisPolicy, PairLayout, RampClamp};

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
    (0.0f64..3.0, 0.0f64..4.0)
        .prop_map(|(s, t)| KappaSchedule::new(s, t).expect("valid by construction"))
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
        (0.0f64..=1.0, any::<bool>()).prop_map(|(w, p)| Method::Lumina(Lumina {
            watershed: w,
            proportional_attention: p
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

/// Deliberately invalid rotary dims (odd, zero, above [`crate::MAX_DIM`], `usize::MAX`) mixed
/// with valid ones (mostly small, so that a sweep stays fast).
pub fn any_dim() -> impl Strategy<Value = usize> {
    prop_oneof![
        8 => 0usize..300,
        1 => Just(0usize),
        1 => Just(1usize),
        1 => Just(2usize),
        1 => Just(3usize),
        1 => Just(crate::MAX_DIM + 2),
        1 => Just(usize::MAX - 1),
        1 => Just(usize::MAX),
    ]
}

/// Hostile sizes for grids and counts: zero, small, just above the caps
/// ([`crate::MAX_TOKENS`], [`crate::MAX_ELEMENTS`]) and near `usize::MAX`. Never a size just under
/// a cap, so a sweep does not allocate gigabytes on purpose.
pub fn hostile_size() -> impl Strategy<Value = usize> {
    prop_oneof![
        6 => 0usize..24,
        1 => Just(crate::MAX_TOKENS + 1),
        1 => Just(crate::MAX_ELEMENTS + 1),
        1 => Just(1usize << 40),
        1 => Just(usize::MAX / 2),
        1 => Just(usize::MAX),
    ]
}

/// A hostile number that is mostly ordinary: half from [`hostile_f64`], half a plausible value
/// (so that deeper code paths are reached, not only the first validation).
pub fn mixed_f64() -> impl Strategy<Value = f64> {
    prop_oneof![
        1 => hostile_f64(),
        1 => -4.0f64..300.0,
        1 => 0.0f64..=1.0,
        1 => 1.0f64..16.0,
    ]
}

/// A κ schedule built from hostile numbers through its validating constructor (`None` where it
/// refuses them).
pub fn hostile_schedule() -> impl Strategy<Value = Option<KappaSchedule>> {
    (mixed_f64(), mixed_f64()).prop_map(|(s, t)| KappaSchedule::new(s, t).ok())
}

/// Any attention-factor rule, with hostile parameters.
pub fn hostile_mscale() -> impl Strategy<Value = Mscale> {
    let src = prop_oneof![
        Just(ScaleSource::Linear),
        Just(ScaleSource::Ntk),
        Just(ScaleSource::Global)
    ];
    prop_oneof![
        Just(Mscale::None),
        src.clone().prop_map(Mscale::Yarn),
        src.prop_map(Mscale::SqrtDamped),
        (mixed_f64(), mixed_f64()).prop_map(|(m, a)| Mscale::DeepSeek {
            mscale: m,
            mscale_all_dim: a
        }),
        mixed_f64().prop_map(Mscale::Fixed),
        (mixed_f64(), mixed_f64()).prop_map(|(s, l)| Mscale::StartSigmaDecay {
            start_sigma: s,
            lambda_t: l
        }),
    ]
}

/// Any ramp clamp rule.
pub fn ramp_clamp() -> impl Strategy<Value = RampClamp> {
    prop_oneof![
        any::<bool>().prop_map(|truncate| RampClamp::Hf { truncate }),
        Just(RampClamp::Official),
        Just(RampClamp::Safe),
    ]
}

/// Any method, public-field literals with hostile parameters included (the official clamp, the
/// exponent-form thresholds, negative or non-finite thresholds, any mscale rule).
pub fn hostile_method() -> impl Strategy<Value = Method> {
    let form = prop_oneof![Just(ThresholdKappa::Multiply), Just(ThresholdKappa::Power)];
    let ntk_form = prop_oneof![Just(NtkKappa::Exponential), Just(NtkKappa::Multiplicative)];
    prop_oneof![
        Just(Method::Base),
        hostile_schedule().prop_map(|d| Method::Pi { dynamic: d }),
        (hostile_schedule(), ntk_form).prop_map(|(d, f)| Method::Ntk {
            dynamic: d.map(|d| (d, f))
        }),
        (
            mixed_f64(),
            mixed_f64(),
            hostile_schedule(),
            hostile_mscale(),
            any::<bool>()
        )
            .prop_map(|(a, b, d, m, f)| Method::Yarn(Yarn {
                alpha: a,
                beta: b,
                dynamic: d,
                mscale: m,
                mscale_follows_kappa: f
            })),
        (mixed_f64(), mixed_f64(), any::<bool>(), hostile_mscale()).prop_map(|(f, s, t, m)| {
            Method::YarnLlm(YarnLlm {
                beta_fast: f,
                beta_slow: s,
                truncate: t,
                mscale: m,
            })
        }),
        (
            (mixed_f64(), mixed_f64(), mixed_f64(), mixed_f64()),
            ramp_clamp(),
            hostile_schedule(),
            form,
            hostile_schedule(),
            hostile_mscale()
        )
            .prop_map(|((b0, b1, g0, g1), clamp, th, form, ntk, m)| {
                Method::NtkByParts(NtkByParts {
                    beta0: b0,
                    beta1: b1,
                    gamma0: g0,
                    gamma1: g1,
                    clamp,
                    thresholds: th.map(|s| (s, form)),
                    ntk,
                    mscale: m,
                })
            }),
        (mixed_f64(), any::<bool>()).prop_map(|(w, p)| Method::Lumina(Lumina {
            watershed: w,
            proportional_attention: p
        })),
    ]
}

/// An [`AxisScales`] literal with hostile fields.
pub fn hostile_scales() -> impl Strategy<Value = AxisScales> {
    (
        mixed_f64(),
        mixed_f64(),
        mixed_f64(),
        mixed_f64(),
        mixed_f64(),
    )
        .prop_map(|(linear, ntk, global, area, train_len)| AxisScales {
            linear,
            ntk,
            global,
            area,
            train_len,
        })
}

/// Any axis policy.
pub fn axis_policy() -> impl Strategy<Value = AxisPolicy> {
    prop_oneof![
        Just(AxisPolicy::PerAxis),
        Just(AxisPolicy::Isotropic),
        Just(AxisPolicy::VisionYarn)
    ]
}

/// Any attention-factor rule of an [`AxialRope`], with hostile parameters.
pub fn hostile_attention() -> impl Strategy<Value = AttentionFactor> {
    prop_oneof![
        Just(AttentionFactor::FromMethod),
        Just(AttentionFactor::None),
        mixed_f64().prop_map(AttentionFactor::Fixed),
        Just(AttentionFactor::FitPro1),
        Just(AttentionFactor::FitPro2),
    ]
}

/// An [`AxisConfig`]: built through its constructors from hostile numbers where they accept them,
/// otherwise a public-field literal over a valid axis with a hostile trained extent.
pub fn hostile_axis_config() -> impl Strategy<Value = AxisConfig> {
    (any_dim(), mixed_f64(), mixed_f64(), any::<bool>()).prop_map(|(dim, theta, l, scaled)| {
        let axis = Axis::new(dim, theta)
            .or_else(|_| Axis::new(2 * (dim % 64 + 1), 1e4))
            .expect("fallback axis is valid");
        AxisConfig {
            axis,
            train_len: l,
            scaled,
        }
    })
}

/// Either pair layout.
pub fn pair_layout() -> impl Strategy<Value = PairLayout> {
    prop_oneof![Just(PairLayout::Interleaved), Just(PairLayout::HalfSplit)]
}
