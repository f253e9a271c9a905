//! The burn rotary module against dype-core and the reference cos/sin rows: device tables equal
//! dype-core's per-token tables (≤ 1e-6), and rotating random q/k on the device equals rotating with
//! the fixtures' cos/sin rows (official DyPE FLUX and FiT layouts).

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::rotary::{RotaryEmbedding, SamplePositions};
use dype_core::presets::{self, FitFreqs, OfficialMethod};
use dype_core::table::{ExtentRule, flux_ids, grid_ids};
use dype_core::{PairLayout, Sigma, write_token_table};
use serde_json::Value;
use support::{f64s, flag, load_json, num, string};

type B = Cpu;

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("rows")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row")
                .iter()
                .map(|x| x.as_f64().expect("num"))
                .collect()
        })
        .collect()
}

/// Pseudo-random but deterministic values in [-1, 1).
fn noise(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

/// Scalar interleaved rotation with expanded cos/sin rows.
fn rotate_ref(x: &[f32], cos: &[f64], sin: &[f64]) -> Vec<f64> {
    let mut out = vec![0.0; x.len()];
    for p in 0..x.len() / 2 {
        let (a, b) = (x[2 * p] as f64, x[2 * p + 1] as f64);
        out[2 * p] = a * cos[2 * p] - b * sin[2 * p];
        out[2 * p + 1] = b * cos[2 * p + 1] + a * sin[2 * p + 1];
    }
    out
}

/// Checks one case: device tables vs dype-core and vs fixture rows, and rotation of random q.
#[allow(clippy::too_many_arguments)]
fn check_case(
    id: &str,
    rot: &mut RotaryEmbedding<B>,
    ids: &[f64],
    token_of: &dyn Fn(&[f64]) -> usize,
    samples: &[Vec<f64>],
    cos_ref: &[Vec<f64>],
    sin_ref: &[Vec<f64>],
    t: Option<Sigma>,
    tol_rows: f64,
) -> (usize, f64) {
    let report = match t {
        Some(t) => rot.set_timestep(t).expect("step").clone(),
        None => rot.set_static().expect("step").clone(),
    };
    let rope = *rot.rope();
    let tables = rot.tables();
    let half = rope.pairs();
    let head = 2 * half;
    let tokens = tables.tokens();
    let cos_dev: Vec<f32> = tables.cos().clone().into_data().into_vec().expect("f32");
    let sin_dev: Vec<f32> = tables.sin().clone().into_data().into_vec().expect("f32");
    // 1. Device tables equal dype-core's expanded table (interleaved → every other value).
    let mut freqs = vec![0.0; half];
    let n_axes = rope.axes().len();
    let extents = SamplePositions::from_ids(ids, n_axes, ExtentRule::MaxPlusOne)
        .expect("ids")
        .extents;
    let info = rope.step(&extents, t, &mut freqs).expect("step");
    assert_eq!(info, report.samples[0], "{id}: diagnostics differ");
    let mut c = vec![0.0f32; tokens * head];
    let mut s = vec![0.0f32; tokens * head];
    write_token_table(
        &rope,
        &freqs,
        &info,
        ids,
        PairLayout::Interleaved,
        &mut c,
        &mut s,
    )
    .expect("table");
    let mut worst: f64 = 0.0;
    for tok in 0..tokens {
        for i in 0..half {
            worst = worst.max((cos_dev[tok * half + i] - c[tok * head + 2 * i]).abs() as f64);
            worst = worst.max((sin_dev[tok * half + i] - s[tok * head + 2 * i]).abs() as f64);
        }
    }
    assert!(
        worst <= 1e-6,
        "{id}: device tables differ from dype-core by {worst}"
    );
    // 2. Device rows equal the fixture rows; 3. rotating random q on the device equals rotating
    //    with the fixture rows.
    let mut checks = 0;
    let mut max_err: f64 = 0.0;
    for (k, sample) in samples.iter().enumerate() {
        let tok = token_of(sample);
        for i in 0..half {
            let e = ((cos_dev[tok * half + i] as f64) - cos_ref[k][2 * i])
                .abs()
                .max(((sin_dev[tok * half + i] as f64) - sin_ref[k][2 * i]).abs());
            assert!(e <= tol_rows, "{id} sample {k} pair {i}: {e}");
        }
        checks += 1;
    }
    let q = noise(tokens * head, 7);
    let qt = Tensor::<B, 4>::from_data(
        TensorData::new(q.clone(), [1, 1, tokens, head]),
        &Default::default(),
    );
    let rotated: Vec<f32> = rot
        .apply(qt)
        .expect("apply")
        .into_data()
        .into_vec()
        .expect("f32");
    for (k, sample) in samples.iter().enumerate() {
        let tok = token_of(sample);
        let want = rotate_ref(&q[tok * head..(tok + 1) * head], &cos_ref[k], &sin_ref[k]);
        for (a, b) in rotated[tok * head..(tok + 1) * head].iter().zip(&want) {
            max_err = max_err.max((*a as f64 - b).abs());
        }
        checks += 1;
    }
    assert!(
        max_err <= 1e-5,
        "{id}: device rotation differs from the fixture rotation by {max_err}"
    );
    (checks, max_err)
}

#[test]
fn rotary_module_matches_official_flux_rows() {
    let (_, v) = load_json("rope/official_flux.json");
    let mut total = 0;
    for case in v["cases"].as_array().expect("cases") {
        let id = string(case, "id");
        let p = &case["params"];
        let method = match string(p, "method") {
            "base" => OfficialMethod::Base,
            "ntk" => OfficialMethod::Ntk,
            _ => OfficialMethod::Yarn,
        };
        let axes_dim: Vec<usize> = f64s(p, "axes_dim").iter().map(|&d| d as usize).collect();
        let rope = presets::official_flux(
            method,
            flag(p, "dype", false),
            num(p, "theta"),
            &axes_dim,
            num(p, "base_tokens"),
        )
        .expect("rope");
        let (h, w, text) = (
            num(p, "height_tokens") as usize,
            num(p, "width_tokens") as usize,
            num(p, "text_tokens") as usize,
        );
        let ids = flux_ids(text, h, w).expect("ids");
        let sample = SamplePositions::from_ids(&ids, 3, ExtentRule::MaxPlusOne).expect("ids");
        let mut rot = RotaryEmbedding::<B>::batch(
            rope,
            vec![sample],
            PairLayout::Interleaved,
            &Default::default(),
        )
        .expect("rotary");
        let token_of = |s: &[f64]| {
            if s[1] == 0.0 && s[2] == 0.0 && s[0] == 0.0 {
                0
            } else {
                text + s[1] as usize * w + s[2] as usize
            }
        };
        let smp = &case["samples"];
        let t = Some(Sigma::new(num(p, "t")).expect("t"));
        let (n, _) = check_case(
            id,
            &mut rot,
            &ids,
            &token_of,
            &rows(&smp["ids"]),
            &rows(&smp["cos"]),
            &rows(&smp["sin"]),
            t,
            2e-6,
        );
        total += n;
    }
    assert!(total > 0);
}

#[test]
fn rotary_module_matches_fit_rows() {
    let (_, v) = load_json("rope/fit_rope.json");
    let mut total = 0;
    for case in v["cases"].as_array().expect("cases") {
        let id = string(case, "id");
        let p = &case["params"];
        let freqs: FitFreqs = string(p, "custom_freqs").parse().expect("known");
        let rope = presets::fit(
            freqs,
            flag(p, "decouple", true),
            num(p, "head_dim") as usize,
            num(p, "theta"),
            num(p, "ori_max_pe_len"),
        )
        .expect("rope");
        let (h, w) = (
            num(p, "height_tokens") as usize,
            num(p, "width_tokens") as usize,
        );
        let ids = grid_ids(h, w).expect("ids");
        let sample = SamplePositions::with_extents(&ids, 2, vec![h as f64, w as f64]).expect("ids");
        let mut rot = RotaryEmbedding::<B>::batch(
            rope,
            vec![sample],
            PairLayout::Interleaved,
            &Default::default(),
        )
        .expect("rotary");
        let token_of = |s: &[f64]| s[0] as usize * w + s[1] as usize;
        let smp = &case["samples"];
        let (n, _) = check_case(
            id,
            &mut rot,
            &ids,
            &token_of,
            &rows(&smp["rows_cols"]),
            &rows(&smp["cos"]),
            &rows(&smp["sin"]),
            None,
            1e-5,
        );
        total += n;
    }
    assert!(total > 0);
}

#[test]
fn dynamic_tables_are_rebuilt_only_when_frequencies_change() {
    let ids = flux_ids(4, 128, 128).expect("ids");
    let sample = SamplePositions::from_ids(&ids, 3, ExtentRule::MaxPlusOne).expect("ids");
    // Static method: one upload for the whole schedule.
    let rope = presets::paper_flux(dype_core::Method::Ntk { dynamic: None }).expect("rope");
    let mut rot = RotaryEmbedding::<B>::batch(
        rope,
        vec![sample.clone()],
        PairLayout::Interleaved,
        &Default::default(),
    )
    .expect("rotary");
    for t in [1.0, 0.8, 0.5, 0.1] {
        rot.set_timestep(Sigma::new(t).expect("t")).expect("step");
    }
    assert_eq!(rot.upload_count(), 1);
    // Dynamic method: a new table for every new t, none for a repeated t.
    let rope = presets::paper_flux(dype_core::Method::dy_yarn()).expect("rope");
    let mut rot = RotaryEmbedding::<B>::batch(
        rope,
        vec![sample],
        PairLayout::Interleaved,
        &Default::default(),
    )
    .expect("rotary");
    for t in [1.0, 0.8, 0.8, 0.5] {
        let r = rot.set_timestep(Sigma::new(t).expect("t")).expect("step");
        assert!(r.kappa().is_some());
    }
    assert_eq!(rot.upload_count(), 3);
    assert!(!rot.last_report().uploaded || rot.upload_count() == 3);
}

#[test]
fn rows_with_a_stored_index_expand_like_whole_tables() {
    use dype_burn::rotary::{RotaryError, RotaryIndex, RotaryTables};
    use dype_core::table::{FactorizedTable, TokenPositions};
    let device = Default::default();
    let rope = presets::paper_flux(dype_core::Method::dy_yarn()).expect("rope");
    let ids = flux_ids(3, 20, 30).expect("ids");
    let pos = TokenPositions::from_ids(&ids, 3).expect("ids");
    let ext = pos.extents(ExtentRule::MaxPlusOne);
    let t1 = Some(Sigma::new(0.9).expect("t"));
    let t2 = Some(Sigma::new(0.4).expect("t"));
    let (first, _) = FactorizedTable::build(&rope, &pos, &ext, t1).expect("table");
    let index =
        RotaryIndex::<B>::from_tables(std::slice::from_ref(&first), &device).expect("index");
    // A later step: only the rows are rebuilt and uploaded.
    let (rows, _) = FactorizedTable::build_rows(&rope, &pos, &ext, t2).expect("rows");
    let via_index =
        RotaryTables::<B>::from_rows(&[rows.as_slice()], &index, &device).expect("rows");
    let (second, _) = FactorizedTable::build(&rope, &pos, &ext, t2).expect("table");
    let whole = RotaryTables::<B>::from_table(&second, &device).expect("table");
    let a: Vec<f32> = via_index.cos().clone().into_data().into_vec().expect("f32");
    let b: Vec<f32> = whole.cos().clone().into_data().into_vec().expect("f32");
    assert_eq!(a, b);
    // Rows for other positions do not fit the stored index.
    let other = TokenPositions::from_ids(&flux_ids(3, 21, 30).expect("ids"), 3).expect("ids");
    let (bad, _) =
        FactorizedTable::build_rows(&rope, &other, &other.extents(ExtentRule::MaxPlusOne), t2)
            .expect("rows");
    assert!(matches!(
        RotaryTables::<B>::from_rows(&[bad.as_slice()], &index, &device),
        Err(RotaryError::RowCountMismatch { .. })
    ));
}
