//! The core's promise, tested as a hostile user would: every public constructor and function,
//! driven with NaN, ±∞, subnormals, zero, negative and huge numbers, `usize::MAX` sizes, huge grids
//! and public-field struct literals, either returns a typed error or an `Ok` whose every number is
//! finite — and never panics.
//!
//! 100 000 cases in a release build (10 000 in debug); `PROPTEST_CASES` overrides.

use dype_core::attention as att;
use dype_core::axis::{self, Axis};
use dype_core::hf::{self, HfRope};
use dype_core::presets::{self, FitFreqs, OfficialMethod};
use dype_core::strategies::{
    any_dim, axis_policy, hostile_attention, hostile_axis_config, hostile_f64, hostile_method,
    hostile_mscale, hostile_scales, hostile_size, mixed_f64, pair_layout, ramp_clamp,
};
use dype_core::table::{AxisRows, ExtentRule, FactorizedTable, TokenPositions, flux_ids, grid_ids};
use dype_core::{
    AxialRope, AxisConfig, FitTime, KappaSchedule, Method, NtkKappa, Sigma, ThresholdKappa,
    Timestep1000, rotate, write_axis_rows, write_token_table,
};
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

fn cases() -> u32 {
    std::env::var("PROPTEST_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(if cfg!(debug_assertions) {
            10_000
        } else {
            100_000
        })
}

type Check = Result<(), TestCaseError>;

fn num(what: &str, r: dype_core::Result<f64>) -> Check {
    if let Ok(v) = r {
        prop_assert!(v.is_finite(), "{what} returned Ok({v})");
    }
    Ok(())
}

fn all<T: Copy + Into<f64>>(what: &str, ok: bool, xs: &[T]) -> Check {
    if ok {
        for (i, &x) in xs.iter().enumerate() {
            let v: f64 = x.into();
            prop_assert!(v.is_finite(), "{what}[{i}] = {v} in an Ok result");
        }
    }
    Ok(())
}

fn sigma(x: f64) -> Option<Sigma> {
    Sigma::new(x).ok()
}

/// Numbers, time and the scalar helpers.
fn scalars(a: f64, b: f64, c: f64, d: f64, n: usize) -> Check {
    num("Sigma", Sigma::new(a).map(Sigma::get))?;
    num("FitTime", FitTime::new(a).map(|t| Sigma::from(t).get()))?;
    num(
        "Timestep1000",
        Timestep1000::new(b).map(|t| Sigma::from(t).get()),
    )?;
    if let Some(s) = sigma(a) {
        prop_assert!(Timestep1000::from(s).get().is_finite());
        prop_assert!(FitTime::from(s).get().is_finite());
    }
    num("kappa", dype_core::kappa(a, b, c))?;
    num(
        "KappaSchedule::kappa",
        KappaSchedule::new(a, b).and_then(|k| k.kappa(Sigma::new(c)?)),
    )?;
    num(
        "constant",
        KappaSchedule::constant(a).and_then(|k| k.kappa(Sigma::NOISE)),
    )?;
    num(
        "dy_yarn",
        KappaSchedule::dy_yarn(a).and_then(|k| k.kappa(Sigma::CLEAN)),
    )?;
    for form in [ThresholdKappa::Multiply, ThresholdKappa::Power] {
        num("ThresholdKappa", form.apply(a, Some(b)))?;
        num("ThresholdKappa", form.apply(a, None))?;
    }
    if let Some(s) = sigma(c) {
        num(
            "start_sigma_mscale",
            dype_core::schedule::start_sigma_mscale(a, s, b, d),
        )?;
        num(
            "lumina_factors",
            dype_core::method::lumina_factors(a, s, b).map(|x| x.0 * x.1),
        )?;
    }
    num("yarn_mscale", att::yarn_mscale(a))?;
    num("yarn_mscale_with", att::yarn_mscale_with(a, b))?;
    num("deepseek", att::deepseek_attention_factor(a, b, c))?;
    num("sqrt_damped", att::sqrt_damped_mscale(a))?;
    num("fit_proportion", att::fit_proportion(a, b))?;
    num("longrope", att::longrope_attention_factor(a, b))?;
    num("proportional", att::proportional_attention(a, b))?;
    num(
        "lumina_attention",
        dype_core::method::lumina_attention_factor(a, b),
    )?;
    num("inv_freq_with_base", axis::inv_freq_with_base(a, n, n / 2))?;
    num("wavelength", axis::wavelength(a))?;
    num("rotations", axis::rotations(a, b))?;
    num("ntk_base", axis::ntk_base(a, n, b))?;
    prop_assert!(axis::linear_ramp(n, a, b).is_finite());
    prop_assert!(axis::yarn_ramp(a, b, c).is_finite());
    num("llama3", hf::llama3_inv_freq(a, b, c, d, 8192.0))?;
    num("llama3", hf::llama3_inv_freq(0.01, a, 1.0, 4.0, b))?;
    num("time_shift", dype_core::time_shift(a, b))?;
    let shift = dype_core::FlowShift {
        base_image_seq_len: a,
        max_image_seq_len: b,
        base_shift: c,
        max_shift: d,
    };
    num("FlowShift::mu", shift.mu(n))?;
    num("FlowShift::mu", dype_core::FlowShift::FLUX_DEV.mu(n))?;
    if let Ok(sigmas) = dype_core::flux_sigmas(n % 4096, a) {
        let len = sigmas.len();
        let mut count = 0;
        for s in sigmas {
            prop_assert!((0.0..=1.0).contains(&s), "flux_sigmas gave {s}");
            count += 1;
        }
        prop_assert_eq!(count, len);
    }
    prop_assert!(dype_core::flux_sigmas(n, a).is_err() || n <= dype_core::flow::MAX_STEPS);
    Ok(())
}

/// One axis and a method on it.
fn one_axis(
    dim: usize,
    theta: f64,
    m: &Method,
    sc: &dype_core::AxisScales,
    a: f64,
    b: f64,
) -> Check {
    let Ok(ax) = Axis::new(dim, theta) else {
        return Ok(());
    };
    prop_assert!(ax.inv_freq(dim).is_finite() && ax.inv_freq(usize::MAX).is_finite());
    num("correction_dim", ax.correction_dim(a, b))?;
    for clamp in [
        dype_core::RampClamp::Official,
        dype_core::RampClamp::Safe,
        dype_core::RampClamp::Hf { truncate: false },
    ] {
        if let Ok((l, h)) = axis::correction_range(&ax, a, b, 64.0, clamp) {
            prop_assert!(l.is_finite() && h.is_finite());
        }
    }
    num(
        "dy_ntk_exponential_base",
        dype_core::method::dy_ntk_exponential_base(&ax, a, b),
    )?;
    num(
        "dy_ntk_multiplicative_base",
        dype_core::method::dy_ntk_multiplicative_base(&ax, a, b),
    )?;
    let mut out = vec![0.0; ax.pairs()];
    for t in [sigma(a), None, Some(Sigma::CLEAN), Some(Sigma::NOISE)] {
        let r = m.frequencies(&ax, sc, t, &mut out);
        if let Ok(o) = &r {
            prop_assert!(
                o.attention_factor.is_finite() && o.attention_factor > 0.0,
                "{m:?} {sc:?}: factor {}",
                o.attention_factor
            );
            prop_assert!(o.kappa.is_none_or(f64::is_finite));
        }
        all("frequencies", r.is_ok(), &out)?;
        let r = m.frequencies(
            &ax,
            &dype_core::AxisScales::uniform(b.abs().max(1.0), 16.0),
            t,
            &mut out,
        );
        all("frequencies", r.is_ok(), &out)?;
    }
    num("kappa", m.kappa(sigma(a)).map(|k| k.unwrap_or(0.0)))?;
    // A wrong-length output is an error, not a panic.
    let half = out.len() / 2;
    let _ = m.frequencies(&ax, sc, None, &mut out[..half]);
    let mut c = vec![0.0f32; out.len()];
    let mut s = vec![0.0f32; out.len()];
    let r = write_axis_rows(&out, a, &[b], &mut c, &mut s);
    all("write_axis_rows cos", r.is_ok(), &c)?;
    all("write_axis_rows sin", r.is_ok(), &s)?;
    let freqs = vec![a; ax.pairs()];
    let r = write_axis_rows(&freqs, 1.0, &[b, 1.0], &mut [0.0f64; 0], &mut [0.0f64; 0]);
    prop_assert!(r.is_err() || freqs.is_empty());
    Ok(())
}

/// Axial ropes from literals, their steps and tables.
#[allow(clippy::too_many_arguments)]
fn axial(
    configs: &[AxisConfig],
    m: Method,
    policy: dype_core::AxisPolicy,
    attention: dype_core::AttentionFactor,
    extents: &[f64],
    t: f64,
    ids: &[f64],
    layout: dype_core::PairLayout,
) -> Check {
    let Ok(rope) = AxialRope::new(configs, m, policy) else {
        return Ok(());
    };
    let rope = rope.with_attention(attention);
    prop_assert!(rope.pairs() <= dype_core::MAX_AXES * dype_core::MAX_DIM);
    if let Ok(sc) = rope.scales(extents) {
        for s in &sc[..rope.axes().len()] {
            prop_assert!(
                [s.linear, s.ntk, s.global, s.area, s.train_len]
                    .iter()
                    .all(|x| x.is_finite()),
                "{s:?}"
            );
        }
    }
    let mut freqs = vec![0.0; rope.pairs()];
    let step = rope.step(extents, sigma(t), &mut freqs);
    all("step freqs", step.is_ok(), &freqs)?;
    if let Ok(info) = &step {
        prop_assert!(info.kappa().is_none_or(f64::is_finite));
        for a in info.axes() {
            prop_assert!(a.attention_factor.is_finite() && a.attention_factor > 0.0);
        }
        let n_axes = rope.axes().len();
        let tokens = ids.len() / n_axes;
        let n = tokens * rope.head_dim();
        if n <= 1 << 16 {
            let (mut c, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
            let r = write_token_table(
                &rope,
                &freqs,
                info,
                &ids[..tokens * n_axes],
                layout,
                &mut c,
                &mut s,
            );
            all("token table", r.is_ok(), &c)?;
            all("token table", r.is_ok(), &s)?;
        }
    }
    if let Ok(pos) = TokenPositions::from_ids(ids, rope.axes().len()) {
        for rule in [ExtentRule::MaxPlusOne, ExtentRule::Span] {
            let e = pos.extents(rule);
            prop_assert!(e.iter().all(|x| x.is_finite() && *x >= 1.0));
        }
        let ext = pos.extents(ExtentRule::MaxPlusOne);
        if let Ok((table, info)) = FactorizedTable::build(&rope, &pos, &ext, sigma(t)) {
            for a in info.axes() {
                prop_assert!(a.attention_factor.is_finite());
            }
            // Frequencies of the wrong count or not finite are errors, never a panic.
            let hostile = vec![f64::NAN; rope.pairs() + 1];
            for freqs in [&hostile[..], &hostile[1..], &[][..]] {
                let r = FactorizedTable::rows_for_step(&rope, &pos, freqs, &info);
                prop_assert!(r.is_err());
            }
            for ax in table.axes() {
                all("rows cos", true, ax.cos())?;
                all("rows sin", true, ax.sin())?;
            }
            let n = table.tokens() * 2 * table.pairs();
            if n <= 1 << 16 {
                let (mut c, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
                let r = table.expand(layout, &mut c, &mut s);
                prop_assert!(r.is_ok(), "{r:?}");
                all("expand", true, &c)?;
                // Rebuilt by hand through the validating constructor, it is the same table.
                let rebuilt = FactorizedTable::new(
                    table.axes().to_vec(),
                    table.tokens(),
                    table.token_rows().to_vec(),
                );
                prop_assert_eq!(rebuilt.as_ref(), Ok(&table));
            }
        }
    }
    Ok(())
}

/// Hand-built tables with hostile shapes.
fn tables(
    half: usize,
    rows: usize,
    tokens: usize,
    idx: u32,
    v: f64,
    layout: dype_core::PairLayout,
) -> Check {
    let n = half.saturating_mul(rows);
    let buf = if n <= 4096 { vec![v as f32; n] } else { vec![] };
    let ax = AxisRows::new(half, rows, buf.clone(), buf);
    if let Ok(ax) = &ax {
        all("AxisRows", true, ax.cos())?;
    }
    let axes: Vec<AxisRows> = ax.into_iter().collect();
    let token_rows = if tokens.saturating_mul(axes.len()) <= 4096 {
        vec![idx; tokens * axes.len()]
    } else {
        vec![]
    };
    let _ = FactorizedTable::new(vec![], tokens, vec![]);
    if let Ok(t) = FactorizedTable::new(axes, tokens, token_rows) {
        let n = t.tokens() * 2 * t.pairs();
        if n <= 1 << 16 {
            let (mut c, mut s) = (vec![0.0f32; n], vec![0.0f32; n]);
            prop_assert!(t.expand(layout, &mut c, &mut s).is_ok());
            all("expand", true, &c)?;
        }
        let _ = t.expand(layout, &mut [], &mut []);
    }
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn ids_and_presets(
    h: usize,
    w: usize,
    text: usize,
    a: f64,
    b: f64,
    c: f64,
    dim: usize,
    name: &str,
) -> Check {
    for ids in [flux_ids(text, h, w), grid_ids(h, w)].into_iter().flatten() {
        prop_assert!(ids.len() <= dype_core::MAX_ELEMENTS);
    }
    for method in [
        OfficialMethod::Base,
        OfficialMethod::Ntk,
        OfficialMethod::Yarn,
    ] {
        if let Ok(rope) = presets::official_flux(method, true, a, &[dim, 56, 56], b) {
            let mut f = vec![0.0; rope.pairs()];
            let r = rope.step(&[1.0, c, c], sigma(a), &mut f);
            all("official", r.is_ok(), &f)?;
        }
    }
    for ff in [
        FitFreqs::Normal,
        FitFreqs::Linear,
        FitFreqs::NtkAware,
        FitFreqs::NtkAwarePro1,
        FitFreqs::NtkAwarePro2,
        FitFreqs::NtkByParts,
        FitFreqs::Yarn,
    ] {
        if let Ok(rope) = presets::fit(ff, a > 0.5, dim, b, c) {
            let mut f = vec![0.0; rope.pairs()];
            let r = rope.step(&[a, b], None, &mut f);
            all("fit", r.is_ok(), &f)?;
        }
    }
    for m in [
        presets::comfy_yarn(a > 0.0, b, c, true),
        presets::comfy_vision_yarn(true, a, b, c),
        presets::comfy_vision_yarn_function(true, a, b),
        presets::lumina(a, b > 0.0),
        presets::method_by_name(name),
    ] {
        if let Ok(m) = m
            && let Ok(rope) = presets::paper_flux(m)
        {
            let mut f = vec![0.0; rope.pairs()];
            let r = rope.step(&[1.0, a, b], sigma(c), &mut f);
            all("preset", r.is_ok(), &f)?;
        }
    }
    let _ = name.parse::<FitFreqs>();
    Ok(())
}

fn hf_ropes(dim: usize, theta: f64, a: f64, b: f64, c: f64, d: f64, factors: &[f64]) -> Check {
    let pairs = if dim <= 4096 { dim / 2 } else { 0 };
    let mut out = vec![0.0; pairs];
    let variants = [
        HfRope::Default,
        HfRope::Linear { factor: a },
        HfRope::Dynamic {
            factor: a,
            max_position_embeddings: b,
            seq_len: Some(c),
        },
        HfRope::Dynamic {
            factor: a,
            max_position_embeddings: b,
            seq_len: None,
        },
        HfRope::Yarn {
            factor: a,
            original_max_position_embeddings: b,
            beta_fast: Some(c),
            beta_slow: Some(d),
            truncate: Some(a > 2.0),
            attention_factor: None,
            mscale: Some(c),
            mscale_all_dim: Some(d),
        },
        HfRope::Yarn {
            factor: a,
            original_max_position_embeddings: b,
            beta_fast: None,
            beta_slow: None,
            truncate: None,
            attention_factor: Some(c),
            mscale: None,
            mscale_all_dim: None,
        },
        HfRope::Llama3 {
            factor: a,
            low_freq_factor: c,
            high_freq_factor: d,
            original_max_position_embeddings: b,
        },
        HfRope::LongRope {
            short_factor: factors,
            long_factor: factors,
            factor: Some(d),
            max_position_embeddings: a,
            original_max_position_embeddings: b,
            attention_factor: None,
            seq_len: Some(c),
        },
        HfRope::LongRope {
            short_factor: factors,
            long_factor: factors,
            factor: None,
            max_position_embeddings: a,
            original_max_position_embeddings: b,
            attention_factor: Some(d),
            seq_len: None,
        },
    ];
    for v in variants {
        let r = v.inv_freq(dim, theta, &mut out);
        num("hf attention factor", r)?;
        all("hf inv_freq", r.is_ok(), &out)?;
    }
    Ok(())
}

fn rotations(n: usize, x: f64, cs: f64, sn: f64, layout: dype_core::PairLayout) -> Check {
    let n = n.min(512);
    let mut v = vec![x; n];
    let r = rotate(&mut v, &vec![cs; n], &vec![sn; n], layout);
    all("rotate", r.is_ok(), &v)?;
    let mut v32 = vec![x as f32; n];
    let r = rotate(&mut v32, &vec![cs as f32; n], &vec![sn as f32; n], layout);
    all("rotate f32", r.is_ok(), &v32)?;
    Ok(())
}

/// Everything one case needs, drawn together.
#[allow(clippy::type_complexity)]
fn case() -> impl Strategy<
    Value = (
        (
            (f64, f64, f64, f64),
            (usize, f64, usize),
            Method,
            dype_core::AxisScales,
        ),
        (
            Vec<AxisConfig>,
            (
                dype_core::AxisPolicy,
                dype_core::AttentionFactor,
                dype_core::PairLayout,
                dype_core::RampClamp,
            ),
            Vec<f64>,
            Vec<f64>,
        ),
        (
            (usize, usize, usize),
            (usize, usize, usize, u32),
            String,
            Vec<f64>,
        ),
        (dype_core::Mscale, NtkKappa),
    ),
> {
    (
        (
            (mixed_f64(), mixed_f64(), mixed_f64(), hostile_f64()),
            (any_dim(), mixed_f64(), any_dim()),
            hostile_method(),
            hostile_scales(),
        ),
        (
            proptest::collection::vec(hostile_axis_config(), 0..=5),
            (
                axis_policy(),
                hostile_attention(),
                pair_layout(),
                ramp_clamp(),
            ),
            proptest::collection::vec(mixed_f64(), 0..=5),
            proptest::collection::vec(mixed_f64(), 0..=24),
        ),
        (
            (hostile_size(), hostile_size(), hostile_size()),
            (hostile_size(), hostile_size(), hostile_size(), 0u32..4),
            "[a-z-]{0,24}",
            proptest::collection::vec(mixed_f64(), 0..=4),
        ),
        (
            hostile_mscale(),
            prop_oneof![Just(NtkKappa::Exponential), Just(NtkKappa::Multiplicative)],
        ),
    )
}

#[test]
fn hostile_inputs_give_typed_errors_or_finite_results() {
    // Deeply nested strategies need more stack than a test thread has in debug builds.
    std::thread::Builder::new()
        .stack_size(256 << 20)
        .spawn(sweep)
        .expect("spawn")
        .join()
        .expect("the sweep thread");
}

fn sweep() {
    let config = ProptestConfig {
        cases: cases(),
        source_file: Some(file!()),
        failure_persistence: Some(Box::new(
            proptest::test_runner::FileFailurePersistence::SourceParallel("proptest-regressions"),
        )),
        ..ProptestConfig::default()
    };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let result = runner.run(&case(), |(first, second, third, fourth)| {
        let ((a, b, c, d), (dim, theta, n), m, sc) = first;
        let (configs, (policy, attention, layout, _clamp), extents, ids) = second;
        let ((h, w, text), (half, rows, tokens, idx), name, factors) = third;
        let (mscale, ntk_form) = fourth;
        scalars(a, b, c, d, n)?;
        one_axis(dim, theta, &m, &sc, a, b)?;
        one_axis(dim, 1e4, &m, &sc, c, d)?;
        if let Some(t) = sigma(c) {
            num(
                "Mscale::evaluate",
                mscale.evaluate(&sc, Some(a).filter(|_| b > 0.0), t),
            )?;
        }
        axial(&configs, m, policy, attention, &extents, c, &ids, layout)?;
        // A fixed FLUX-like layout with the hostile method, so deep paths are reached often.
        let flux: Vec<AxisConfig> = [(16, false), (56, true), (56, true)]
            .iter()
            .map(|&(d, s)| AxisConfig {
                axis: Axis::new(d, 1e4).expect("valid"),
                train_len: 64.0,
                scaled: s,
            })
            .collect();
        axial(
            &flux,
            m,
            policy,
            attention,
            &[1.0, a.abs() * 64.0, b.abs() * 64.0],
            c,
            &ids,
            layout,
        )?;
        let _ = Method::Ntk {
            dynamic: KappaSchedule::new(a, b).ok().map(|k| (k, ntk_form)),
        }
        .frequencies(
            &Axis::new(8, 1e4).expect("valid"),
            &sc,
            sigma(c),
            &mut [0.0; 4],
        );
        tables(half, rows, tokens, idx, a, layout)?;
        ids_and_presets(h, w, text, a, b, c, dim, &name)?;
        hf_ropes(dim, theta, a, b, c, d, &factors)?;
        rotations(n, a, b, c, layout)?;
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}\n{runner}");
    }
}

#[test]
fn sizes_above_the_caps_are_typed_errors() {
    use dype_core::DypeError;
    assert!(matches!(
        grid_ids(60_000, 60_000),
        Err(DypeError::TooLarge { .. })
    ));
    assert!(matches!(
        flux_ids(0, usize::MAX, 2),
        Err(DypeError::TooLarge { .. })
    ));
    assert!(matches!(
        grid_ids(usize::MAX, 2),
        Err(DypeError::TooLarge { .. })
    ));
    assert!(matches!(
        Axis::new(usize::MAX - 1, 1e4),
        Err(DypeError::TooLarge { .. })
    ));
    assert!(matches!(
        AxisRows::new(usize::MAX, 2, vec![], vec![]),
        Err(DypeError::TooLarge { .. })
    ));
    assert!(matches!(
        FactorizedTable::new(vec![], 1, vec![]),
        Err(DypeError::Empty { .. })
    ));
    assert!(matches!(
        AxisRows::new(0, 1, vec![], vec![]),
        Err(DypeError::InvalidDim { .. })
    ));
    assert_eq!(grid_ids(3, 2).expect("small").len(), 12);
    // Empty grids with a huge side are empty at once (no walk over the huge side).
    assert!(grid_ids(usize::MAX, 0).expect("empty").is_empty());
    assert_eq!(flux_ids(2, usize::MAX / 2, 0).expect("text only").len(), 6);
}
