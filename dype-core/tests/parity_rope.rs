//! Parity of dype-core against the reference RoPE implementations (`tests/fixtures/rope/*.json`,
//! or `$DYPE_FIXTURES_DIR/rope/`). Every case is computed from its parameters through the public API.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_core::hf::HfRope;
use dype_core::presets::{self, FitFreqs, OfficialMethod};
use dype_core::table::TokenPositions;
use dype_core::{AxisScales, PairLayout, Sigma, write_token_table};
use serde_json::Value;
use support::{Tally, f64s, flag, load_json, max_abs, max_rel, num, opt_num, string};

const FREQ_TOL_F64: f64 = 1e-6;
const FREQ_TOL_F32: f64 = 3e-6;
const ATTN_TOL: f64 = 1e-6;

fn cases(v: &Value) -> &Vec<Value> {
    v.get("cases")
        .and_then(|c| c.as_array())
        .expect("fixture has no `cases` array")
}

fn rows(v: &Value) -> Vec<Vec<f64>> {
    v.as_array()
        .expect("rows must be an array")
        .iter()
        .map(|r| {
            r.as_array()
                .expect("row must be an array")
                .iter()
                .map(|x| x.as_f64().expect("number"))
                .collect()
        })
        .collect()
}

/// Compares the expanded (interleaved) cos/sin rows of sample `ids` with the fixture's.
#[allow(clippy::too_many_arguments)]
fn check_rows(
    tally: &mut Tally,
    id: &str,
    rope: &dype_core::AxialRope,
    freqs: &[f64],
    info: &dype_core::StepInfo,
    sample_ids: &[Vec<f64>],
    cos_ref: &[Vec<f64>],
    sin_ref: &[Vec<f64>],
    tol: f64,
) {
    let head = rope.head_dim();
    for (k, ids) in sample_ids.iter().enumerate() {
        let mut cos = vec![0.0f32; head];
        let mut sin = vec![0.0f32; head];
        if let Err(e) = write_token_table(
            rope,
            freqs,
            info,
            ids,
            PairLayout::Interleaved,
            &mut cos,
            &mut sin,
        ) {
            tally.fail(format!("{id} sample {k}: {e}"));
            continue;
        }
        let c: Vec<f64> = cos.iter().map(|&x| x as f64).collect();
        let s: Vec<f64> = sin.iter().map(|&x| x as f64).collect();
        tally.check(
            || format!("{id} cos sample {k}"),
            max_abs(&c, &cos_ref[k]),
            tol,
        );
        tally.check(
            || format!("{id} sin sample {k}"),
            max_abs(&s, &sin_ref[k]),
            tol,
        );
    }
}

#[test]
fn parity_official_flux() {
    let (_, v) = load_json("rope/official_flux.json");
    let mut tally = Tally::new("official_flux.json");
    for case in cases(&v) {
        let id = string(case, "id");
        let p = &case["params"];
        let method = match string(p, "method") {
            "base" => OfficialMethod::Base,
            "ntk" => OfficialMethod::Ntk,
            "yarn" => OfficialMethod::Yarn,
            other => panic!("{id}: unknown official method {other}"),
        };
        let axes_dim: Vec<usize> = f64s(p, "axes_dim").iter().map(|&d| d as usize).collect();
        let (h, w, text) = (
            num(p, "height_tokens") as usize,
            num(p, "width_tokens") as usize,
            num(p, "text_tokens") as usize,
        );
        let rope = match presets::official_flux(
            method,
            flag(p, "dype", false),
            num(p, "theta"),
            &axes_dim,
            num(p, "base_tokens"),
        ) {
            Ok(r) => r,
            Err(e) => {
                tally.fail(format!("{id}: {e}"));
                continue;
            }
        };
        // Extents as the reference measures them: max id + 1 over all tokens, text ids included.
        let ids = dype_core::table::flux_ids(text, h, w).expect("ids");
        let extents = TokenPositions::from_ids(&ids, axes_dim.len())
            .expect("ids")
            .extents(dype_core::table::ExtentRule::MaxPlusOne);
        let mut freqs = vec![0.0; rope.pairs()];
        let info =
            match Sigma::new(num(p, "t")).and_then(|t| rope.step(&extents, Some(t), &mut freqs)) {
                Ok(i) => i,
                Err(e) => {
                    tally.fail(format!("{id}: {e}"));
                    continue;
                }
            };
        let mut off = 0;
        for (k, ax) in case["axes"].as_array().expect("axes").iter().enumerate() {
            let want = f64s(ax, "freqs");
            let got = &freqs[off..off + want.len()];
            off += want.len();
            tally.check(
                || format!("{id} axis {k} freqs"),
                max_rel(got, &want),
                FREQ_TOL_F64,
            );
            tally.check(
                || format!("{id} axis {k} mscale"),
                (info.axes()[k].attention_factor - num(ax, "mscale")).abs(),
                ATTN_TOL,
            );
        }
        let s = &case["samples"];
        check_rows(
            &mut tally,
            id,
            &rope,
            &freqs,
            &info,
            &rows(&s["ids"]),
            &rows(&s["cos"]),
            &rows(&s["sin"]),
            2e-6,
        );
    }
    tally.finish();
}

#[test]
fn parity_fit_rope() {
    let (_, v) = load_json("rope/fit_rope.json");
    let mut tally = Tally::new("fit_rope.json");
    for case in cases(&v) {
        let id = string(case, "id");
        let p = &case["params"];
        let freqs_kind: FitFreqs = string(p, "custom_freqs")
            .parse()
            .unwrap_or_else(|e| panic!("{id}: {e}"));
        let (h, w) = (num(p, "height_tokens"), num(p, "width_tokens"));
        let rope = match presets::fit(
            freqs_kind,
            flag(p, "decouple", true),
            num(p, "head_dim") as usize,
            num(p, "theta"),
            num(p, "ori_max_pe_len"),
        ) {
            Ok(r) => r,
            Err(e) => {
                tally.fail(format!("{id}: {e}"));
                continue;
            }
        };
        let mut freqs = vec![0.0; rope.pairs()];
        let info = match rope.step(&[h, w], None, &mut freqs) {
            Ok(i) => i,
            Err(e) => {
                tally.fail(format!("{id}: {e}"));
                continue;
            }
        };
        let half = rope.pairs() / 2;
        tally.check(
            || format!("{id} freqs_h"),
            max_rel(&freqs[..half], &f64s(case, "freqs_h")),
            FREQ_TOL_F32,
        );
        tally.check(
            || format!("{id} freqs_w"),
            max_rel(&freqs[half..], &f64s(case, "freqs_w")),
            FREQ_TOL_F32,
        );
        for (k, a) in info.axes().iter().enumerate() {
            tally.check(
                || format!("{id} multiplier axis {k}"),
                (a.attention_factor - num(case, "multiplier")).abs(),
                ATTN_TOL,
            );
        }
        let s = &case["samples"];
        check_rows(
            &mut tally,
            id,
            &rope,
            &freqs,
            &info,
            &rows(&s["rows_cols"]),
            &rows(&s["cos"]),
            &rows(&s["sin"]),
            1e-5,
        );
    }
    tally.finish();
}

#[test]
fn parity_hf_rope() {
    let (_, v) = load_json("rope/hf_rope.json");
    let mut tally = Tally::new("hf_rope.json");
    for case in cases(&v) {
        let id = string(case, "id");
        let p = &case["params"];
        let max_pos = num(p, "max_position_embeddings");
        let orig = opt_num(p, "original_max_position_embeddings");
        let seq = opt_num(p, "seq_len");
        let short = p
            .get("short_factor")
            .map(|_| f64s(p, "short_factor"))
            .unwrap_or_default();
        let long = p
            .get("long_factor")
            .map(|_| f64s(p, "long_factor"))
            .unwrap_or_default();
        let rope = match string(p, "rope_type") {
            "default" => HfRope::Default,
            "linear" => HfRope::Linear {
                factor: num(p, "factor"),
            },
            "dynamic" => HfRope::Dynamic {
                factor: num(p, "factor"),
                max_position_embeddings: max_pos,
                seq_len: seq,
            },
            "yarn" => HfRope::Yarn {
                factor: num(p, "factor"),
                original_max_position_embeddings: orig.unwrap_or(max_pos),
                beta_fast: opt_num(p, "beta_fast"),
                beta_slow: opt_num(p, "beta_slow"),
                truncate: p.get("truncate").and_then(|x| x.as_bool()),
                attention_factor: opt_num(p, "attention_factor"),
                mscale: opt_num(p, "mscale"),
                mscale_all_dim: opt_num(p, "mscale_all_dim"),
            },
            "llama3" => HfRope::Llama3 {
                factor: num(p, "factor"),
                low_freq_factor: num(p, "low_freq_factor"),
                high_freq_factor: num(p, "high_freq_factor"),
                original_max_position_embeddings: orig.unwrap_or(max_pos),
            },
            "longrope" => HfRope::LongRope {
                short_factor: &short,
                long_factor: &long,
                factor: opt_num(p, "factor"),
                max_position_embeddings: max_pos,
                original_max_position_embeddings: orig.unwrap_or(max_pos),
                attention_factor: opt_num(p, "attention_factor"),
                seq_len: seq,
            },
            other => panic!("{id}: unknown rope_type {other}"),
        };
        let dim = num(p, "head_dim") as usize;
        let mut inv = vec![0.0; dim / 2];
        match rope.inv_freq(dim, num(p, "rope_theta"), &mut inv) {
            Ok(af) => {
                tally.check(
                    || format!("{id} inv_freq"),
                    max_rel(&inv, &f64s(case, "inv_freq")),
                    FREQ_TOL_F32,
                );
                tally.check(
                    || format!("{id} attention_factor"),
                    (af - num(case, "attention_factor")).abs(),
                    ATTN_TOL,
                );
            }
            Err(e) => tally.fail(format!("{id}: {e}")),
        }
    }
    tally.finish();
}

#[test]
fn parity_comfy_rope() {
    let (_, v) = load_json("rope/comfy_rope.json");
    let mut tally = Tally::new("comfy_rope.json");
    for case in cases(&v) {
        let id = string(case, "id");
        let p = &case["params"];
        let dim = num(p, "dim") as usize;
        let l = num(p, "ori_max_pe_len");
        let dype = flag(p, "dype", true);
        let (method, scales) = match string(case, "fn") {
            "yarn" => {
                let s = num(p, "scale").max(1.0);
                (
                    presets::comfy_yarn(
                        dype,
                        num(p, "dype_scale"),
                        num(p, "dype_exponent"),
                        flag(p, "aggressive_mscale", false),
                    ),
                    AxisScales::uniform(s, l),
                )
            }
            "vision_yarn" => {
                let (lin, ntk) = (
                    num(p, "linear_scale").max(1.0),
                    num(p, "ntk_scale").max(1.0),
                );
                (
                    presets::comfy_vision_yarn_function(
                        dype,
                        num(p, "dype_scale"),
                        num(p, "dype_exponent"),
                    ),
                    AxisScales {
                        linear: lin,
                        ntk,
                        global: ntk,
                        area: ntk,
                        train_len: l,
                    },
                )
            }
            other => panic!("{id}: unknown comfy fn {other}"),
        };
        let result = method.and_then(|m| {
            let axis = dype_core::Axis::new(dim, num(p, "theta"))?;
            let mut out = vec![0.0; dim / 2];
            let o = m.frequencies(&axis, &scales, Some(Sigma::new(num(p, "t"))?), &mut out)?;
            Ok((out, o.attention_factor))
        });
        match result {
            Ok((freqs, mscale)) => {
                tally.check(
                    || format!("{id} freqs"),
                    max_rel(&freqs, &f64s(case, "freqs")),
                    FREQ_TOL_F64,
                );
                tally.check(
                    || format!("{id} mscale"),
                    (mscale - num(case, "mscale")).abs(),
                    ATTN_TOL,
                );
            }
            Err(e) => tally.fail(format!("{id}: {e}")),
        }
    }
    tally.finish();
}

/// Lumina-Next's time-aware scaled RoPE (diffusers), through the registry's method on a two-axis
/// layout of `head_dim/2` per axis: the switch (`linear_factor`, `ntk_factor`), the frequencies of
/// both axes, and the proportional attention — `softmax_scale_factor` multiplies the logits, so the
/// factor dype folds into cos and sin is its square root.
#[test]
fn parity_lumina_rope() {
    let (_, v) = load_json("rope/lumina_rope.json");
    let mut tally = Tally::new("lumina_rope.json");
    for case in cases(&v) {
        let id = string(case, "id");
        let p = &case["params"];
        let head_dim = num(p, "head_dim") as usize;
        let ppt = num(p, "px_per_token");
        let train = num(p, "default_image_size") / ppt;
        let extents = [num(p, "height_px") / ppt, num(p, "width_px") / ppt];
        let watershed = num(p, "watershed");
        let result = (|| -> dype_core::Result<_> {
            let sigma = Sigma::new(num(p, "sigma"))?;
            let method = presets::lumina(watershed, flag(p, "proportional_attn", true))?;
            let axis = dype_core::AxisConfig::scaled(head_dim / 2, num(p, "theta"), train)?;
            let rope =
                dype_core::AxialRope::new(&[axis, axis], method, dype_core::AxisPolicy::PerAxis)?;
            let mut freqs = vec![0.0; rope.pairs()];
            let info = rope.step(&extents, Some(sigma), &mut freqs)?;
            let area = info.axes()[0].scales.area;
            let factors = dype_core::method::lumina_factors(area, sigma, watershed)?;
            Ok((freqs, info, area, factors))
        })();
        let (freqs, info, area, (linear, ntk)) = match result {
            Ok(r) => r,
            Err(e) => {
                tally.fail(format!("{id}: {e}"));
                continue;
            }
        };
        let want = f64s(case, "freqs_per_axis");
        let half = freqs.len() / 2;
        tally.check(
            || format!("{id} freqs rows"),
            max_rel(&freqs[..half], &want),
            FREQ_TOL_F64,
        );
        tally.check(
            || format!("{id} freqs cols"),
            max_rel(&freqs[half..], &want),
            FREQ_TOL_F64,
        );
        tally.check(
            || format!("{id} scaling_factor"),
            (area - num(case, "scaling_factor")).abs(),
            ATTN_TOL,
        );
        tally.check(
            || format!("{id} linear_factor"),
            (linear - num(case, "linear_factor")).abs(),
            ATTN_TOL,
        );
        tally.check(
            || format!("{id} ntk_factor"),
            (ntk - num(case, "ntk_factor")).abs(),
            ATTN_TOL,
        );
        let logits = num(case, "softmax_scale_factor");
        for (k, a) in info.axes().iter().enumerate() {
            tally.check(
                || format!("{id} attention axis {k} (cos/sin factor² = logit factor)"),
                (a.attention_factor * a.attention_factor - logits).abs(),
                ATTN_TOL,
            );
        }
    }
    tally.finish();
}
