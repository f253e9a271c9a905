//! Property tests of the paper-faithful methods, plus documented-behaviour tests of the presets that
//! break an invariant on purpose.

use dype_core::strategies;
use dype_core::{
    Axis, AxisScales, KappaSchedule, Method, Mscale, NtkByParts, NtkKappa, PairLayout, RampClamp,
    ScaleSource, Sigma, ThresholdKappa, Yarn, rotate, write_axis_rows,
};
use proptest::prelude::*;

fn freqs(m: &Method, axis: &Axis, s: &AxisScales, t: Option<Sigma>) -> (Vec<f64>, f64) {
    let mut out = vec![0.0; axis.pairs()];
    let o = m.frequencies(axis, s, t, &mut out).expect("valid inputs");
    (out, o.attention_factor)
}

fn base(axis: &Axis) -> Vec<f64> {
    let mut out = vec![0.0; axis.pairs()];
    axis.base_frequencies(&mut out).expect("length");
    out
}

fn close(a: &[f64], b: &[f64], rel: f64) -> bool {
    a.iter()
        .zip(b)
        .all(|(x, y)| (x - y).abs() <= rel * y.abs().max(1e-300))
}

/// A method with its schedule forced to a constant κ (λt = 0 ⇒ κ(t) = λs).
fn with_kappa(m: &Method, k: f64) -> Method {
    let s = KappaSchedule {
        lambda_s: k,
        lambda_t: 0.0,
    };
    match *m {
        Method::Pi { .. } => Method::Pi { dynamic: Some(s) },
        Method::Ntk {
            dynamic: Some((_, f)),
        } => Method::Ntk {
            dynamic: Some((s, f)),
        },
        Method::Ntk { dynamic: None } => Method::Ntk {
            dynamic: Some((s, NtkKappa::Exponential)),
        },
        Method::Yarn(y) => Method::Yarn(Yarn {
            dynamic: Some(s),
            ..y
        }),
        Method::NtkByParts(p) => Method::NtkByParts(NtkByParts {
            thresholds: Some((s, ThresholdKappa::Multiply)),
            ntk: p.ntk.map(|_| s),
            ..p
        }),
        other => other,
    }
}

fn static_form(m: &Method) -> Method {
    match *m {
        Method::Pi { .. } => Method::Pi { dynamic: None },
        Method::Ntk { .. } => Method::Ntk { dynamic: None },
        Method::Yarn(y) => Method::Yarn(Yarn { dynamic: None, ..y }),
        Method::NtkByParts(p) => Method::NtkByParts(NtkByParts {
            thresholds: None,
            ntk: None,
            ..p
        }),
        other => other,
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn every_method_is_base_rope_at_scale_one(axis in strategies::axis(), m in strategies::method(), t in strategies::sigma(), l in 1.0f64..256.0) {
        let (w, af) = freqs(&m, &axis, &AxisScales::uniform(1.0, l), Some(t));
        prop_assert!(close(&w, &base(&axis), 1e-12), "{m:?}: {w:?}");
        prop_assert!((af - 1.0).abs() < 1e-12);
    }

    #[test]
    fn every_dynamic_method_is_base_rope_at_kappa_zero(axis in strategies::axis(), m in strategies::method(), s in strategies::scale(), l in 1.0f64..256.0) {
        prop_assume!(axis.dim() > 2);
        let m0 = with_kappa(&m, 0.0);
        prop_assume!(m0.is_dynamic());
        let (w, af) = freqs(&m0, &axis, &AxisScales::uniform(s, l), Some(Sigma::NOISE));
        prop_assert!(close(&w, &base(&axis), 1e-12), "{m0:?}: {w:?}");
        if let Method::Yarn(y) = m0 && y.mscale_follows_kappa {
            prop_assert!((af - 1.0).abs() < 1e-12);
        }
    }

    #[test]
    fn every_dy_method_equals_its_static_form_at_kappa_one(axis in strategies::axis(), m in strategies::method(), s in strategies::scale(), l in 1.0f64..256.0) {
        prop_assume!(axis.dim() > 2);
        let m1 = with_kappa(&m, 1.0);
        prop_assume!(m1.is_dynamic());
        let (w1, a1) = freqs(&m1, &axis, &AxisScales::uniform(s, l), Some(Sigma::NOISE));
        let (w0, a0) = freqs(&static_form(&m1), &axis, &AxisScales::uniform(s, l), None);
        prop_assert!(close(&w1, &w0, 1e-12));
        prop_assert!((a1 - a0).abs() < 1e-12);
    }

    #[test]
    fn frequencies_stay_within_bounds(axis in strategies::axis(), m in strategies::method(), s in strategies::scale(), t in strategies::sigma(), l in 1.0f64..256.0) {
        prop_assume!(axis.dim() > 2);
        let k = m.kappa(Some(t)).expect("valid").unwrap_or(1.0);
        let (w, _) = freqs(&m, &axis, &AxisScales::uniform(s, l), Some(t));
        let b = base(&axis);
        let lo = b[b.len() - 1] / s.powf(k.max(1.0));
        for &x in &w {
            prop_assert!(x >= lo * (1.0 - 1e-12) && x <= b[0] * (1.0 + 1e-12), "{x} outside [{lo}, {}] for {m:?}", b[0]);
        }
    }

    #[test]
    fn rotation_preserves_norm_up_to_attention_factor(axis in strategies::axis(), m in strategies::method(), s in strategies::scale(), t in strategies::sigma(),
                                                     p in strategies::position(), x in proptest::collection::vec(-4.0f64..4.0, 128), half in any::<bool>()) {
        let (w, af) = freqs(&m, &axis, &AxisScales::uniform(s, 16.0), Some(t));
        let d = axis.dim();
        let layout = if half { PairLayout::HalfSplit } else { PairLayout::Interleaved };
        let (cos, sin) = expanded(&w, af, p, layout);
        let mut v = x[..d].to_vec();
        rotate(&mut v, &cos, &sin, layout).expect("valid");
        let n0: f64 = x[..d].iter().map(|a| a * a).sum::<f64>().sqrt();
        let n1: f64 = v.iter().map(|a| a * a).sum::<f64>().sqrt();
        prop_assert!((n1 - af * n0).abs() <= 1e-9 * (1.0 + n0));
    }

    #[test]
    fn rotated_dot_product_depends_only_on_offset(axis in strategies::axis(), m in strategies::method(), s in strategies::scale(), t in strategies::sigma(),
                                                  p in -200.0f64..200.0, q in -200.0f64..200.0, shift in -300.0f64..300.0,
                                                  a in proptest::collection::vec(-2.0f64..2.0, 128), b in proptest::collection::vec(-2.0f64..2.0, 128)) {
        let (w, af) = freqs(&m, &axis, &AxisScales::uniform(s, 16.0), Some(t));
        let d = axis.dim();
        let dot = |pa: f64, pb: f64| {
            let (c1, s1) = expanded(&w, af, pa, PairLayout::Interleaved);
            let (c2, s2) = expanded(&w, af, pb, PairLayout::Interleaved);
            let mut x = a[..d].to_vec();
            let mut y = b[..d].to_vec();
            rotate(&mut x, &c1, &s1, PairLayout::Interleaved).expect("valid");
            rotate(&mut y, &c2, &s2, PairLayout::Interleaved).expect("valid");
            x.iter().zip(&y).map(|(u, v)| u * v).sum::<f64>()
        };
        let d1 = dot(p, q);
        let d2 = dot(p + shift, q + shift);
        prop_assert!((d1 - d2).abs() <= 1e-8 * (1.0 + d1.abs()) * (1.0 + shift.abs() + p.abs() + q.abs()));
    }

    #[test]
    fn no_public_function_panics_on_hostile_inputs(dim in strategies::any_dim(), theta in strategies::hostile_f64(), s in strategies::hostile_f64(),
                                                   l in strategies::hostile_f64(), t in strategies::hostile_f64(), p in strategies::hostile_f64(),
                                                   m in strategies::method()) {
        let _ = Sigma::new(t);
        let _ = dype_core::FitTime::new(t);
        let _ = dype_core::Timestep1000::new(t);
        let _ = KappaSchedule::new(s, t);
        if let Ok(axis) = Axis::new(dim.min(4096), theta) {
            let mut out = vec![0.0; axis.pairs()];
            let scales = AxisScales { linear: s, ntk: s, global: s, train_len: l };
            let _ = m.frequencies(&axis, &scales, Sigma::new(t).ok(), &mut out);
            let n = out.len() / 2;
            let _ = m.frequencies(&axis, &AxisScales::uniform(2.0, 16.0), None, &mut out[..n]);
            let mut c = vec![0.0f32; out.len()];
            let mut sn = vec![0.0f32; out.len()];
            let _ = write_axis_rows(&out, s, &[p], &mut c, &mut sn);
        }
        if let Ok(rope) = dype_core::presets::official_flux(dype_core::presets::OfficialMethod::Yarn, true, theta, &[16, 56, 56], l) {
            let mut f = vec![0.0; rope.pairs()];
            let _ = rope.step(&[1.0, s, s], Sigma::new(t).ok(), &mut f);
        }
        let _ = dype_core::table::TokenPositions::from_ids(&[p, s, t], 3);
    }
}

fn expanded(w: &[f64], af: f64, p: f64, layout: PairLayout) -> (Vec<f64>, Vec<f64>) {
    let h = w.len();
    let mut cos = vec![0.0; 2 * h];
    let mut sin = vec![0.0; 2 * h];
    for (i, &wi) in w.iter().enumerate() {
        let (c, s) = ((p * wi).cos() * af, (p * wi).sin() * af);
        let (a, b) = match layout {
            PairLayout::Interleaved => (2 * i, 2 * i + 1),
            PairLayout::HalfSplit => (i, i + h),
        };
        cos[a] = c;
        cos[b] = c;
        sin[a] = s;
        sin[b] = s;
    }
    (cos, sin)
}

// ---- Presets that break an invariant on purpose: their documented behaviour. ----

fn official_parts(t: f64) -> Vec<f64> {
    let m = dype_core::presets::method_by_name("official-dy-yarn").expect("known");
    let axis = Axis::new(56, 1e4).expect("valid");
    let mut out = vec![0.0; 28];
    m.frequencies(
        &axis,
        &AxisScales::uniform(4.0, 64.0),
        Some(Sigma::new(t).expect("t")),
        &mut out,
    )
    .expect("defined for t > 0");
    out
}

#[test]
fn official_dy_yarn_ramp_inverts_below_t_002() {
    // d = 56, θ = 1e4, L = 64, s = 4, t = 0.01 (κ = t² = 1e-4). The official β-band bounds come out
    // as low = 34 > high = 28: its ramp inverts and the β-band becomes PI on every pair, where it
    // should hand the low frequencies to the NTK-aware base. The γ-band (26..28) then blends that
    // PI into the last pair: ω/4 · ½ + ω · ½ instead of ω_ntk · ½ + ω · ½.
    let axis = Axis::new(56, 1e4).expect("valid");
    let (lo, hi) =
        dype_core::axis::correction_range(&axis, 1.25e-4, 0.75e-4, 64.0, RampClamp::Official);
    assert!(lo > hi, "official bounds should invert: {lo} {hi}");
    let (lo, hi) =
        dype_core::axis::correction_range(&axis, 1.25e-4, 0.75e-4, 64.0, RampClamp::Safe);
    assert!(lo <= hi && hi == 28.0);
    let b = base(&axis);
    let w = official_parts(0.01);
    assert!(
        (w[27] - (0.5 * b[27] / 4.0 + 0.5 * b[27])).abs() <= 1e-12 * b[27],
        "{} vs {}",
        w[27],
        b[27]
    );
    // At t = 0.05 (no inversion) the last pair is pure PI, as the reference fixtures show for t >= 0.05.
    let w = official_parts(0.05);
    assert!((w[27] - b[27] / 4.0).abs() <= 1e-12 * b[27]);
    // The well-defined form relaxes: at t = 0.01 the last pair blends NTK, not PI, into the base.
    let safe = Method::NtkByParts(NtkByParts {
        clamp: RampClamp::Safe,
        thresholds: Some((
            KappaSchedule {
                lambda_s: 1.0,
                lambda_t: 2.0,
            },
            ThresholdKappa::Multiply,
        )),
        ..NtkByParts::default()
    });
    let (w, _) = freqs(
        &safe,
        &axis,
        &AxisScales::uniform(4.0, 64.0),
        Some(Sigma::new(0.01).expect("t")),
    );
    let ntk = dype_core::axis::inv_freq_with_base(
        dype_core::axis::ntk_base(1e4, 56, 4.0).expect("base"),
        56,
        27,
    );
    assert!((w[27] - (0.5 * ntk + 0.5 * b[27])).abs() <= 1e-12 * b[27]);
    // And as t → 0 it is the base RoPE.
    let (w, _) = freqs(
        &safe,
        &axis,
        &AxisScales::uniform(4.0, 64.0),
        Some(Sigma::new(1e-4).expect("t")),
    );
    assert!(close(&w, &b, 1e-12));
}

#[test]
fn official_dy_yarn_is_an_error_at_t_zero() {
    // The reference divides by zero at t = 0; we return a typed error instead of NaN.
    let m = dype_core::presets::method_by_name("official-dy-yarn").expect("known");
    let axis = Axis::new(56, 1e4).expect("valid");
    let rope = dype_core::AxialRope::new(
        &[dype_core::AxisConfig::scaled(56, 1e4, 64.0).expect("axis")],
        m,
        dype_core::AxisPolicy::PerAxis,
    )
    .expect("rope");
    let mut out = vec![0.0; axis.pairs()];
    assert!(rope.step(&[256.0], Some(Sigma::CLEAN), &mut out).is_err());
}

#[test]
fn comfy_exponent_form_does_not_relax_at_kappa_zero() {
    // β^κ → 1 for every threshold at κ = 0, so the bands stay partly PI/NTK (guyyariv/DyPE#17).
    let m = dype_core::presets::comfy_yarn(true, 0.0, 1.0, true).expect("valid");
    let axis = Axis::new(56, 1e4).expect("valid");
    let (w, af) = freqs(
        &m,
        &axis,
        &AxisScales::uniform(4.0, 64.0),
        Some(Sigma::NOISE),
    );
    assert!(
        !close(&w, &base(&axis), 1e-6),
        "exponent form unexpectedly equals the base RoPE"
    );
    assert!(
        (af - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12,
        "its mscale is static"
    );
}

#[test]
fn start_sigma_mscale_follows_its_formula() {
    let m = 1.3;
    for &(t, start, lt) in &[
        (1.0, 1.0, 2.0),
        (0.5, 1.0, 2.0),
        (0.5, 0.25, 2.0),
        (0.1, 0.5, 1.0),
        (0.0, 0.7, 3.0),
    ] {
        let got = dype_core::schedule::start_sigma_mscale(m, Sigma::new(t).expect("t"), start, lt);
        let tn: f64 = if t > start { 1.0 } else { t / start };
        assert!((got - (1.0 + (m - 1.0) * tn.powf(lt))).abs() < 1e-12);
    }
    // Through an AxialRope: the factor is 0.1 ln s_global + 1 at σ = 1 and 1 at σ = 0.
    let rope = dype_core::presets::paper_flux(Method::Base)
        .expect("rope")
        .with_attention(dype_core::AttentionFactor::StartSigmaDecay {
            start_sigma: 1.0,
            lambda_t: 2.0,
        });
    let mut f = vec![0.0; rope.pairs()];
    let i1 = rope
        .step(&[1.0, 128.0, 256.0], Some(Sigma::NOISE), &mut f)
        .expect("step");
    assert!((i1.axes()[1].attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    let i0 = rope
        .step(&[1.0, 128.0, 256.0], Some(Sigma::CLEAN), &mut f)
        .expect("step");
    assert!((i0.axes()[2].attention_factor - 1.0).abs() < 1e-12);
    assert_eq!(
        i0.axes()[0].attention_factor,
        1.0,
        "the unscaled axis never gets a factor"
    );
}

#[test]
fn timestep_conventions_convert_explicitly() {
    let fit = dype_core::FitTime::new(0.25).expect("t");
    assert_eq!(Sigma::from(fit).get(), 0.75);
    let ts = dype_core::Timestep1000::new(750.0).expect("t");
    assert_eq!(Sigma::from(ts).get(), 0.75);
    assert!(Sigma::new(1.5).is_err());
    assert!(Sigma::new(f64::NAN).is_err());
    assert!(dype_core::Timestep1000::new(-1.0).is_err());
}

#[test]
fn dy_ntk_multiplicative_matches_eq_19() {
    let axis = Axis::new(56, 1e4).expect("valid");
    let m = Method::Ntk {
        dynamic: Some((
            KappaSchedule {
                lambda_s: 2.0,
                lambda_t: 1.0,
            },
            NtkKappa::Multiplicative,
        )),
    };
    let t = 0.75;
    let (w, _) = freqs(
        &m,
        &axis,
        &AxisScales::uniform(3.0, 64.0),
        Some(Sigma::new(t).expect("t")),
    );
    let k = 2.0 * t;
    for (i, &x) in w.iter().enumerate() {
        let want = axis.inv_freq(i) / (1.0 + 2.0 * k).powf(2.0 * i as f64 / 54.0);
        assert!((x - want).abs() <= 1e-12 * want);
    }
}

#[test]
fn paper_yarn_ramp_is_linear_in_rotations() {
    let axis = Axis::new(56, 1e4).expect("valid");
    let y = Method::Yarn(Yarn {
        alpha: 1.0,
        beta: 32.0,
        dynamic: None,
        mscale: Mscale::Yarn(ScaleSource::Linear),
        mscale_follows_kappa: false,
    });
    let (w, af) = freqs(&y, &axis, &AxisScales::uniform(2.0, 64.0), None);
    for (i, &x) in w.iter().enumerate() {
        let b = axis.inv_freq(i);
        let r = 64.0 * b / (2.0 * std::f64::consts::PI);
        let g = ((r - 1.0) / 31.0).clamp(0.0, 1.0);
        assert!((x - ((1.0 - g) * b / 2.0 + g * b)).abs() <= 1e-12 * b);
    }
    assert!((af - (0.1 * 2f64.ln() + 1.0)).abs() < 1e-12);
}

#[test]
fn invalid_inputs_are_typed_errors() {
    assert!(Axis::new(0, 1e4).is_err());
    assert!(Axis::new(7, 1e4).is_err());
    assert!(Axis::new(8, f64::NAN).is_err());
    assert!(Axis::new(8, -3.0).is_err());
    let axis = Axis::new(8, 1e4).expect("valid");
    let mut short = vec![0.0; 3];
    assert!(
        Method::Base
            .frequencies(&axis, &AxisScales::uniform(1.0, 16.0), None, &mut short)
            .is_err()
    );
    let mut out = vec![0.0; 4];
    assert!(
        Method::Base
            .frequencies(&axis, &AxisScales::uniform(0.5, 16.0), None, &mut out)
            .is_err()
    );
    assert!(
        Method::Base
            .frequencies(
                &axis,
                &AxisScales::uniform(f64::INFINITY, 16.0),
                None,
                &mut out
            )
            .is_err()
    );
    assert!(
        Method::Ntk { dynamic: None }
            .frequencies(
                &Axis::new(2, 1e4).expect("valid"),
                &AxisScales::uniform(2.0, 16.0),
                None,
                &mut [0.0]
            )
            .is_err()
    );
    assert!(dype_core::AxialRope::new(&[], Method::Base, dype_core::AxisPolicy::PerAxis).is_err());
    assert!(dype_core::table::TokenPositions::from_ids(&[], 2).is_err());
    assert!(dype_core::table::TokenPositions::from_ids(&[1.0, f64::NAN], 2).is_err());
    let mut c = [0.0f32; 2];
    assert!(write_axis_rows(&[1.0], 1.0, &[0.0, 1.0], &mut c, &mut [0.0f32; 1]).is_err());
}

#[test]
fn factorized_table_expands_to_the_per_token_table() {
    use dype_core::table::{ExtentRule, FactorizedTable, TokenPositions, flux_ids};
    let mut ids = flux_ids(3, 5, 7);
    ids.extend_from_slice(&[0.0, 2.5, 6.25]); // a fractional position too
    let positions = TokenPositions::from_ids(&ids, 3).expect("ids");
    assert_eq!(
        positions.axes[1].len(),
        6,
        "5 rows + the fractional one: H + W rows, not H·W"
    );
    for (method, layout) in [
        (Method::dy_yarn(), PairLayout::Interleaved),
        (Method::dy_ntk(), PairLayout::HalfSplit),
        (Method::Base, PairLayout::Interleaved),
    ] {
        let rope = dype_core::presets::paper_flux(method)
            .expect("rope")
            .with_attention(dype_core::AttentionFactor::FromMethod);
        let extents = positions.extents(ExtentRule::MaxPlusOne);
        let t = Some(Sigma::new(0.6).expect("t"));
        let (table, info) = FactorizedTable::build(&rope, &positions, &extents, t).expect("table");
        let n = positions.tokens * rope.head_dim();
        let (mut c1, mut s1) = (vec![0.0f32; n], vec![0.0f32; n]);
        table.expand(layout, &mut c1, &mut s1).expect("expand");
        let mut freqs = vec![0.0; rope.pairs()];
        rope.step(&extents, t, &mut freqs).expect("step");
        let (mut c2, mut s2) = (vec![0.0f32; n], vec![0.0f32; n]);
        dype_core::write_token_table(&rope, &freqs, &info, &ids, layout, &mut c2, &mut s2)
            .expect("table");
        assert_eq!(c1, c2);
        assert_eq!(s1, s2);
    }
}

#[test]
fn at_scale_one_every_step_gives_bit_identical_base_frequencies() {
    // A per-step cache keyed by the frequencies must hit when nothing is extrapolated.
    for name in dype_core::presets::METHOD_NAMES {
        let m = dype_core::presets::method_by_name(name).expect("known");
        let axis = Axis::new(56, 1e4).expect("valid");
        let b = base(&axis);
        for t in [1.0, 0.7, 0.3, 0.05] {
            let (w, af) = freqs(
                &m,
                &axis,
                &AxisScales::uniform(1.0, 64.0),
                Some(Sigma::new(t).expect("t")),
            );
            assert_eq!(w, b, "{name} at t {t}");
            assert_eq!(af, 1.0, "{name} at t {t}");
        }
    }
}
