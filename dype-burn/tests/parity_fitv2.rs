//! FiTv2 parity against the reference PyTorch model (`models/fitv2_tiny.json`): forward for every
//! RoPE variant at extrapolated sizes, a padded two-size batch, classifier-free guidance, and whole
//! Euler / dopri5 trajectories — each from both the safetensors and the .pt weights.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{Bool, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::fitv2::{
    FitConfig, FitInputs, FitPosition, FitV2, GuidedChannels, fit_rope,
};
use dype_burn::rotary::{PairLayout, RotaryTables};
use dype_burn::rotary::{RotaryEmbedding, SamplePositions};
use dype_burn::sampling::{Dopri5Options, FixedMethod, Step, dopri5, fixed};
use dype_burn::weights::Checkpoint;
use dype_core::presets::FitFreqs;
use serde_json::Value;
use std::error::Error;
use support::{Cases, Tally, beside, flag, load_json, num, rel_l2};

type B = Cpu;

fn config_from(v: &Value) -> FitConfig {
    FitConfig::from_json(&v["config"]).unwrap_or_else(|e| panic!("fitv2_tiny.json: {e}"))
}

fn f32_tensor<const D: usize>(cases: &Cases, key: &str) -> Tensor<B, D> {
    let (v, shape) = cases.f32(key);
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn int_tensor<const D: usize>(cases: &Cases, key: &str) -> Tensor<B, D, Int> {
    let (v, shape) = cases.i64(key);
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn to_vec(t: Tensor<B, 3>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

/// Rotary tables for a batch from the case's grid tensor `(B, 2, N)` (row 0 = column, row 1 = row)
/// and each sample's extents.
fn tables_from_grid(
    cfg: &FitConfig,
    position: FitPosition,
    decouple: bool,
    grid: &[i64],
    batch: usize,
    n: usize,
    extents: &[[usize; 2]],
) -> RotaryTables<B> {
    let rope = fit_rope(cfg, position, decouple).expect("rope");
    let samples: Vec<SamplePositions> = (0..batch)
        .map(|b| {
            let mut ids = Vec::with_capacity(2 * n);
            for j in 0..n {
                let col = grid[b * 2 * n + j] as f64;
                let row = grid[b * 2 * n + n + j] as f64;
                ids.extend_from_slice(&[row, col]);
            }
            SamplePositions::with_extents(&ids, 2, vec![extents[b][0] as f64, extents[b][1] as f64])
                .expect("ids")
        })
        .collect();
    let mut rot =
        RotaryEmbedding::<B>::batch(rope, samples, PairLayout::Interleaved, &Default::default())
            .expect("rotary");
    rot.set_static().expect("step");
    rot.tables().clone()
}

#[test]
fn parity_fitv2() {
    let (json_path, v) = load_json("models/fitv2_tiny.json");
    let cfg = config_from(&v);
    let cases = Cases::open(&beside(&json_path, "fitv2_tiny_cases.safetensors"));
    let device = Default::default();
    let mut tally = Tally::new("fitv2_tiny.json");
    let weight_files: Vec<String> = v["weights"]
        .as_array()
        .expect("weights")
        .iter()
        .map(|w| w.as_str().expect("name").to_string())
        .collect();
    for wf in &weight_files {
        let ckpt = Checkpoint::open(beside(&json_path, wf)).unwrap_or_else(|e| panic!("{e}"));
        let map = cfg.key_map();
        let w = ckpt
            .load::<B>(&map, burn::tensor::FloatDType::F32, &device)
            .unwrap_or_else(|e| panic!("{e}"));
        let model = FitV2::<B>::from_weights(&cfg, &w).unwrap_or_else(|e| panic!("{e}"));
        for case in v["cases"].as_array().expect("cases") {
            let k = num(case, "case") as usize;
            let label = format!("{wf} case {k}");
            // `custom_freqs` is FiT's own vocabulary (its `ntk-by-parts` and `yarn` are FiT's forms).
            let freqs: FitFreqs = case
                .get("custom_freqs")
                .and_then(|x| x.as_str())
                .unwrap_or("normal")
                .parse()
                .expect("known custom_freqs");
            let position = FitPosition::Fit(freqs);
            let decouple = flag(case, "decouple", true);
            if let Some(sampler) = case.get("sampler").and_then(|s| s.as_str()) {
                trajectory(
                    &mut tally, &label, &model, &cfg, &cases, case, k, sampler, position, decouple,
                );
                continue;
            }
            let (_, xs) = cases.f32(&format!("case{k}.x"));
            let (batch, n) = (xs[0], xs[1]);
            let (grid, _) = cases.i64(&format!("case{k}.grid"));
            let extents: Vec<[usize; 2]> = match case.get("padded_sizes") {
                Some(p) => p
                    .as_array()
                    .expect("sizes")
                    .iter()
                    .map(|s| {
                        [
                            s[0].as_u64().expect("h") as usize,
                            s[1].as_u64().expect("w") as usize,
                        ]
                    })
                    .collect(),
                None => vec![
                    [
                        num(case, "height_tokens") as usize,
                        num(case, "width_tokens") as usize
                    ];
                    batch
                ],
            };
            let rope = tables_from_grid(&cfg, position, decouple, &grid, batch, n, &extents);
            let (mask_v, _) = cases.f32(&format!("case{k}.mask"));
            let mask = if mask_v.iter().all(|m| *m > 0.5) {
                None
            } else {
                let m: Vec<bool> = mask_v.iter().map(|m| *m > 0.5).collect();
                Some(Tensor::<B, 2, Bool>::from_data(
                    TensorData::new(m, [batch, n]),
                    &device,
                ))
            };
            let x = f32_tensor::<3>(&cases, &format!("case{k}.x"));
            let t = f32_tensor::<1>(&cases, &format!("case{k}.t"));
            let y = int_tensor::<1>(&cases, &format!("case{k}.y"));
            let inputs = FitInputs { x, t, y, mask };
            let out = match case.get("cfg_scale").and_then(|c| c.as_f64()) {
                Some(s) => model.forward_with_cfg(inputs, &rope, s, GuidedChannels::Reference),
                None => model.forward(inputs, &rope),
            };
            match out {
                Ok(out) => {
                    let (want, _) = cases.f32(&format!("case{k}.out"));
                    tally.check(|| label.clone(), rel_l2(&to_vec(out), &want), 1e-4);
                }
                Err(e) => tally.fail(format!("{label}: {e}")),
            }
        }
    }
    tally.finish();
}

#[allow(clippy::too_many_arguments)]
fn trajectory(
    tally: &mut Tally,
    label: &str,
    model: &FitV2<B>,
    cfg: &FitConfig,
    cases: &Cases,
    case: &Value,
    k: usize,
    sampler: &str,
    position: FitPosition,
    decouple: bool,
) {
    let device = Default::default();
    let (h, w) = (
        num(case, "height_tokens") as usize,
        num(case, "width_tokens") as usize,
    );
    let steps = num(case, "num_steps") as usize;
    let scale = num(case, "cfg_scale");
    let class = num(case, "class") as i64;
    let z = f32_tensor::<3>(cases, &format!("case{k}.z"));
    let [b, n, _] = z.dims();
    let state = Tensor::cat(vec![z.clone(), z], 0);
    let mut labels = vec![class; b];
    labels.extend(std::iter::repeat_n(cfg.null_class() as i64, b));
    let y = Tensor::<B, 1, Int>::from_data(TensorData::new(labels, [2 * b]), &device);
    let rope_cfg = fit_rope(cfg, position, decouple).expect("rope");
    let grid = dype_burn::models::fitv2::fit_grid(h, w, n).expect("grid");
    let mut rot =
        RotaryEmbedding::<B>::batch(rope_cfg, vec![grid], PairLayout::Interleaved, &device)
            .expect("rotary");
    // t = linspace(0, 1, num_steps), in f32 as the reference builds it.
    let ts: Vec<f64> = (0..steps)
        .map(|i| (i as f32 / (steps - 1) as f32) as f64)
        .collect();
    let velocity = |t: f64, x: &Tensor<B, 3>| -> Result<Tensor<B, 3>, Box<dyn Error>> {
        let tt =
            Tensor::<B, 1>::from_data(TensorData::new(vec![t as f32; 2 * b], [2 * b]), &device);
        rot.set_timestep(dype_core::FitTime::new(t.clamp(0.0, 1.0))?.into())?;
        let tables = rot.tables();
        Ok(model.forward_with_cfg(
            FitInputs {
                x: x.clone(),
                t: tt,
                y: y.clone(),
                mask: None,
            },
            tables,
            scale,
            GuidedChannels::Reference,
        )?)
    };
    let (want, shape) = cases.f32(&format!("case{k}.traj"));
    let per = shape[1..].iter().product::<usize>();
    // Each state against the reference trajectory, through the solver's per-step callback.
    let mut errs: Vec<f64> = Vec::new();
    let on_step = |s: Step<'_, Tensor<B, 3>>| {
        let err = match want.get(s.index * per..(s.index + 1) * per) {
            Some(w) => rel_l2(&to_vec(s.state.clone().narrow(0, 0, b)), w),
            None => f64::INFINITY,
        };
        errs.push(err);
    };
    let solved = match sampler {
        "euler" => fixed(FixedMethod::Euler, velocity, state, &ts, on_step).map(drop),
        "dopri5" => {
            let opts = Dopri5Options {
                atol: num(case, "atol"),
                rtol: num(case, "rtol"),
                ..Dopri5Options::default()
            };
            dopri5(velocity, state, &ts, opts, on_step).map(drop)
        }
        other => panic!("{label}: unknown sampler {other}"),
    };
    if let Err(e) = solved {
        return tally.fail(format!("{label}: {e}"));
    }
    if errs.len() != shape[0] {
        return tally.fail(format!(
            "{label}: {} states, the reference has {}",
            errs.len(),
            shape[0]
        ));
    }
    match sampler {
        "euler" => tally.check(
            || format!("{label} euler (max over steps)"),
            errs.iter().copied().fold(0.0, f64::max),
            1e-4,
        ),
        _ => tally.check(
            || format!("{label} dopri5 end"),
            *errs.last().unwrap_or(&f64::INFINITY),
            1e-3,
        ),
    }
}
