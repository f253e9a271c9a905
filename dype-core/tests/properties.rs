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
    let s = KappaSchedule::constant(k).expect("valid");
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
        prop_assume!(m0.kappa(Some(Sigma::NOISE)).expect("valid").is_some());
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
        prop_assume!(m1.kappa(Some(Sigma::NOISE)).expect("valid").is_some());
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
        dype_core::axis::correction_range(&axis, 1.25e-4, 0.75e-4, 64.0, RampClamp::Official)
            .expect("finite bounds");
    assert!(lo > hi, "official bounds should invert: {lo} {hi}");
    let (lo, hi) =
        dype_core::axis::correction_range(&axis, 1.25e-4, 0.75e-4, 64.0, RampClamp::Safe)
            .expect("finite bounds");
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
        thresholds: Some((KappaSchedule::DY_YARN, ThresholdKappa::Multiply)),
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
    )
    .expect("finite");
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
fn official_dy_yarn_is_the_native_rope_at_t_zero() {
    // The reference divides by zero at t = 0; we return the κ → 0 limit of the paper's form, the
    // native RoPE (both ramps have every pair on their high-frequency side), with τ(s) static.
    let m = dype_core::presets::method_by_name("official-dy-yarn").expect("known");
    let axis = Axis::new(56, 1e4).expect("valid");
    let rope = dype_core::AxialRope::new(
        &[dype_core::AxisConfig::scaled(56, 1e4, 64.0).expect("axis")],
        m,
        dype_core::AxisPolicy::PerAxis,
    )
    .expect("rope");
    let mut out = vec![0.0; axis.pairs()];
    let info = rope
        .step(&[256.0], Some(Sigma::CLEAN), &mut out)
        .expect("defined at t = 0");
    assert_eq!(out, base(&axis));
    assert!((info.axes()[0].attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
}

#[test]
fn official_preset_keeps_the_plain_rope_on_unscaled_axes() {
    // The reference only enters its YaRN/NTK branch when an axis is larger than its trained extent.
    use dype_core::presets::{FLUX_AXES, OfficialMethod, official_flux};
    for method in [OfficialMethod::Yarn, OfficialMethod::Ntk] {
        let rope = official_flux(method, true, 1e4, &FLUX_AXES, 64.0).expect("rope");
        let mut f = vec![0.0; rope.pairs()];
        for t in [0.0, 1e-6, 0.01, 0.3, 1.0] {
            let info = rope
                .step(&[1.0, 64.0, 64.0], Some(Sigma::new(t).expect("t")), &mut f)
                .expect("unscaled axes are defined at every t");
            let mut want = Vec::new();
            for d in FLUX_AXES {
                want.extend(base(&Axis::new(d, 1e4).expect("axis")));
            }
            assert_eq!(f, want, "{method:?} at t {t}");
            assert!(info.axes().iter().all(|a| a.attention_factor == 1.0));
            // 32 rows (below the trained extent) keep the base; 128 columns are extrapolated.
            let info = rope
                .step(&[1.0, 32.0, 128.0], Some(Sigma::new(t).expect("t")), &mut f)
                .expect("defined");
            assert_eq!(f[8..36], want[8..36], "rows at t {t}");
            assert_eq!(info.axes()[1].attention_factor, 1.0);
            assert_eq!(info.axes()[2].scales.linear, 2.0);
        }
    }
}

#[test]
fn kappa_zero_is_the_native_rope_for_every_clamp() {
    // Thresholds × κ with κ = 0: every pair rotates more than zero times, so every pair keeps its
    // base frequency under the HF, official and safe clamps alike (no 0/0).
    let axis = Axis::new(56, 1e4).expect("valid");
    for clamp in [
        RampClamp::Official,
        RampClamp::Safe,
        RampClamp::Hf { truncate: true },
        RampClamp::Hf { truncate: false },
    ] {
        let m = Method::NtkByParts(NtkByParts {
            clamp,
            thresholds: Some((
                KappaSchedule::constant(0.0).expect("k"),
                ThresholdKappa::Multiply,
            )),
            ..NtkByParts::default()
        });
        let (w, _) = freqs(
            &m,
            &axis,
            &AxisScales::uniform(4.0, 64.0),
            Some(Sigma::NOISE),
        );
        assert_eq!(w, base(&axis), "{clamp:?}");
    }
    // The paper's r-domain Dy-YaRN at t = 0.
    let (w, af) = freqs(
        &Method::dy_yarn(),
        &axis,
        &AxisScales::uniform(4.0, 64.0),
        Some(Sigma::CLEAN),
    );
    assert_eq!(w, base(&axis));
    assert!(
        (af - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12,
        "paper τ(s) is static"
    );
}

#[test]
fn paper_dy_yarn_keeps_the_static_attention_factor() {
    // Eq. 9: τ(s) = 0.1 ln s + 1 = 1.1386 at s = 4, at every t; the decaying variant gives 1.0347
    // at t = 0.5 (τ at s^κ = 4^0.25).
    let axis = Axis::new(56, 1e4).expect("valid");
    let sc = AxisScales::uniform(4.0, 64.0);
    let t = Some(Sigma::new(0.5).expect("t"));
    let (_, paper) = freqs(&Method::dy_yarn(), &axis, &sc, t);
    assert!((paper - 1.138_629_436_111_989).abs() < 1e-12, "{paper}");
    let by_name = dype_core::presets::method_by_name("dy-yarn").expect("name");
    assert_eq!(freqs(&by_name, &axis, &sc, t).1, paper);
    let p = dype_core::presets::paper_method(dype_core::presets::PaperMethod::Yarn, true);
    assert_eq!(freqs(&p, &axis, &sc, t).1, paper);
    let (_, decay) = freqs(&Method::dy_yarn_decaying(), &axis, &sc, t);
    assert!((decay - (0.1 * 4f64.powf(0.25).ln() + 1.0)).abs() < 1e-12);
    assert!((decay - 1.0347).abs() < 1e-4);
}

#[test]
fn hf_dynamic_ntk_is_the_base_at_its_own_length() {
    use dype_core::hf::HfRope;
    let mut failures = 0;
    let mut n = 0;
    for f10 in 10..=100 {
        let factor = f10 as f64 / 10.0;
        for l0 in [
            64.0, 512.0, 1536.0, 2048.0, 3072.0, 4096.0, 8192.0, 131072.0,
        ] {
            for dim in [64usize, 128] {
                n += 1;
                let mut got = vec![0.0; dim / 2];
                let mut want = vec![0.0; dim / 2];
                let r = HfRope::Dynamic {
                    factor,
                    max_position_embeddings: l0,
                    seq_len: None,
                }
                .inv_freq(dim, 1e4, &mut got);
                HfRope::Default
                    .inv_freq(dim, 1e4, &mut want)
                    .expect("default");
                if r.is_err() || got != want {
                    failures += 1;
                }
            }
        }
    }
    assert_eq!(
        failures, 0,
        "{failures} of {n} (factor, L0) pairs are not the base"
    );
    assert!(n > 1000);
}

#[test]
fn hf_longrope_uses_the_given_factor() {
    use dype_core::hf::HfRope;
    let short = vec![1.0; 32];
    let long = vec![2.0; 32];
    let mut out = vec![0.0; 32];
    let rope = |factor| HfRope::LongRope {
        short_factor: &short,
        long_factor: &long,
        factor,
        max_position_embeddings: 131072.0,
        original_max_position_embeddings: 4096.0,
        attention_factor: None,
        seq_len: None,
    };
    let with = rope(Some(8.0)).inv_freq(64, 1e4, &mut out).expect("valid");
    assert!((with - (1.0 + 8f64.ln() / 4096f64.ln()).sqrt()).abs() < 1e-12);
    let ratio = rope(None).inv_freq(64, 1e4, &mut out).expect("valid");
    assert!((ratio - (1.0 + 32f64.ln() / 4096f64.ln()).sqrt()).abs() < 1e-12);
    // A trained length of 1 has no defined factor (the reference divides by ln 1).
    let bad = HfRope::LongRope {
        short_factor: &short,
        long_factor: &long,
        factor: None,
        max_position_embeddings: 4.0,
        original_max_position_embeddings: 1.0,
        attention_factor: None,
        seq_len: None,
    };
    assert!(bad.inv_freq(64, 1e4, &mut out).is_err());
}

#[test]
fn comfy_vision_yarn_preset_carries_the_nodes_decaying_mscale() {
    // The node always passes its start-σ mscale: 0.1 ln s_global + 1 at σ = 1, 1 at σ = 0.
    let m = dype_core::presets::comfy_vision_yarn(true, 2.0, 2.0, 1.0).expect("valid");
    let axis = Axis::new(56, 1e4).expect("valid");
    let sc = AxisScales {
        linear: 2.0,
        ntk: 4.0,
        global: 4.0,
        area: 2.0f64.sqrt() * 2.0,
        train_len: 64.0,
    };
    let (_, at1) = freqs(&m, &axis, &sc, Some(Sigma::NOISE));
    assert!((at1 - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    let (_, at0) = freqs(&m, &axis, &sc, Some(Sigma::CLEAN));
    assert_eq!(at0, 1.0);
    let (_, half) = freqs(&m, &axis, &sc, Some(Sigma::new(0.5).expect("t")));
    assert!((half - (1.0 + 0.1 * 4f64.ln() * 0.25)).abs() < 1e-12);
    // The standalone function's own default (what the fixture records) is kept by name.
    let f = dype_core::presets::comfy_vision_yarn_function(true, 2.0, 2.0).expect("valid");
    let (_, own) = freqs(&f, &axis, &sc, Some(Sigma::NOISE));
    assert!((own - (1.0 + 0.1 * 4f64.ln() / 2.0)).abs() < 1e-12);
}

#[test]
fn lumina_switches_from_pi_to_ntk_at_the_watershed() {
    let axis = Axis::new(36, 1e4).expect("valid");
    let m = dype_core::presets::lumina(0.3, true).expect("valid");
    let sc = AxisScales {
        area: 2.0,
        ..AxisScales::uniform(2.0, 64.0)
    };
    let b = base(&axis);
    // σ = 0.8: Lumina time 0.2 < 0.3, PI.
    let (w, af) = freqs(&m, &axis, &sc, Some(Sigma::new(0.8).expect("t")));
    assert!(close(
        &w,
        &b.iter().map(|x| x / 2.0).collect::<Vec<_>>(),
        1e-15
    ));
    // logits × √(ln 4N/ln N) with N = 64²: on cos/sin the fourth root of the ratio.
    let ratio = (4.0 * 4096f64).ln() / 4096f64.ln();
    assert!((af * af - ratio.sqrt()).abs() < 1e-12);
    // σ = 0.5: Lumina time 0.5 >= 0.3, NTK with θ·s (no d/(d−2) exponent).
    let (w, _) = freqs(&m, &axis, &sc, Some(Sigma::new(0.5).expect("t")));
    for (i, &x) in w.iter().enumerate() {
        let want = (2e4f64).powf(-(2.0 * i as f64) / 36.0);
        assert!((x - want).abs() <= 1e-15 * want.max(1e-300) + 1e-18);
    }
    // Below the trained area the reference compresses (s < 1), and the factor drops below 1.
    let small = AxisScales {
        area: 0.5,
        ..AxisScales::uniform(1.0, 64.0)
    };
    let (w, af) = freqs(&m, &axis, &small, Some(Sigma::NOISE));
    assert!(close(
        &w,
        &b.iter().map(|x| x * 2.0).collect::<Vec<_>>(),
        1e-15
    ));
    assert!(af < 1.0);
    // Watershed outside [0, 1] is a typed error.
    assert!(dype_core::presets::lumina(1.5, true).is_err());
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
        let got = dype_core::schedule::start_sigma_mscale(m, Sigma::new(t).expect("t"), start, lt)
            .expect("finite");
        let tn: f64 = if t > start { 1.0 } else { t / start };
        assert!((got - (1.0 + (m - 1.0) * tn.powf(lt))).abs() < 1e-12);
    }
    // Through an AxialRope: the factor is 0.1 ln s_global + 1 at σ = 1 and 1 at σ = 0.
    let rope = dype_core::presets::paper_flux(
        dype_core::presets::comfy_vision_yarn(true, 2.0, 2.0, 1.0).expect("method"),
    )
    .expect("rope");
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
            KappaSchedule::new(2.0, 1.0).expect("valid"),
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
    let mut ids = flux_ids(3, 5, 7).expect("small");
    ids.extend_from_slice(&[0.0, 2.5, 6.25]); // a fractional position too
    let positions = TokenPositions::from_ids(&ids, 3).expect("ids");
    assert_eq!(
        positions.axes()[1].len(),
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
        let n = positions.tokens() * rope.head_dim();
        let (mut c1, mut s1) = (vec![0.0f32; n], vec![0.0f32; n]);
        table.expand(layout, &mut c1, &mut s1).expect("expand");
        let mut freqs = vec![0.0; rope.pairs()];
        rope.step(&extents, t, &mut freqs).expect("step");
        let (mut c2, mut s2) = (vec![0.0f32; n], vec![0.0f32; n]);
        dype_core::write_token_table(&rope, &freqs, &info, &ids, layout, &mut c2, &mut s2)
            .expect("table");
        assert_eq!(c1, c2);
        assert_eq!(s1, s2);
        // The rows of a step already computed are the table's rows; a wrong count is an error.
        let rows = FactorizedTable::rows_for_step(&rope, &positions, &freqs, &info).expect("rows");
        assert_eq!(rows.as_slice(), table.axes());
        let short = &freqs[..freqs.len() - 1];
        assert!(FactorizedTable::rows_for_step(&rope, &positions, short, &info).is_err());
    }
}

#[test]
fn at_scale_one_every_step_gives_bit_identical_base_frequencies() {
    // A per-step cache keyed by the frequencies must hit when nothing is extrapolated.
    for name in dype_core::presets::method_names() {
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
