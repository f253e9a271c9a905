//! FLUX.1 DiT parity against the reference PyTorch models (`models/flux_tiny.json`): forward passes
//! for the official DyPE RoPE variants (base / ntk / yarn, static and DyPE) at native and
//! extrapolated token grids, from the BFL file, the diffusers file, the sharded diffusers folder
//! and the bf16 copy; a 6-step flow-match Euler trajectory with Dy-YaRN; and the diffusers
//! `FlowMatchEulerDiscreteScheduler` sigma schedules.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{FloatDType, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::flux::{Flux, FluxConfig, FluxInputs, flux_rope};
use dype_burn::rotary::PairLayout;
use dype_burn::rotary::RotaryEmbedding;
use dype_burn::rotary::SamplePositions;
use std::error::Error;
use support::{Cases, Tally, beside, flag, load_json, max_abs, num, rel_l2, string};

use dype_burn::sampling::{FixedMethod, fixed};
use dype_core::Sigma;
use dype_core::flow::{FlowShift, flux_sigmas};
use dype_core::presets::OfficialMethod;
use serde_json::Value;

type B = Cpu;

fn f32_tensor<const D: usize>(cases: &Cases, key: &str) -> Tensor<B, D> {
    let (v, shape) = cases.f32(key);
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

fn scalar(x: f64) -> Tensor<B, 1> {
    Tensor::from_data(TensorData::new(vec![x as f32], [1]), &Default::default())
}

fn method_of(case: &Value) -> OfficialMethod {
    match string(case, "method") {
        "base" => OfficialMethod::Base,
        "ntk" => OfficialMethod::Ntk,
        "yarn" => OfficialMethod::Yarn,
        other => panic!("unknown method {other}"),
    }
}

/// The weight files the index names: (label, path relative to the JSON, tolerance). A value may
/// carry a parenthesised note after the file name.
fn weight_files(v: &Value) -> Vec<(String, String, f64)> {
    v["weights"]
        .as_object()
        .expect("`weights` object")
        .iter()
        .map(|(label, name)| {
            let name = name.as_str().expect("weights entry is a string");
            let file = name.split(" (").next().unwrap_or(name).trim().to_string();
            let tol = if label.contains("bf16") { 2e-2 } else { 1e-4 };
            (label.clone(), file, tol)
        })
        .collect()
}

/// A rotary embedding for `text` text tokens and an `h × w` image grid with the case's method.
fn rotary(cfg: &FluxConfig, case: &Value, text: usize, h: usize, w: usize) -> RotaryEmbedding<B> {
    let rope = flux_rope(
        cfg,
        method_of(case),
        flag(case, "dype", false),
        num(case, "base_tokens"),
    )
    .expect("rope");
    let pos = SamplePositions::flux(text, h, w).expect("positions");
    RotaryEmbedding::<B>::batch(
        rope,
        vec![pos],
        PairLayout::Interleaved,
        &Default::default(),
    )
    .expect("rotary")
}

/// The RoPE time of a step as the official code sees it: the f32 timestep tensor's `.item()`.
fn rope_time(t: f64) -> Sigma {
    Sigma::new(t as f32 as f64).expect("t in [0, 1]")
}

#[test]
fn parity_flux() {
    let (json_path, v) = load_json("models/flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).unwrap_or_else(|e| panic!("{e}"));
    let cases = Cases::open(&beside(&json_path, "flux_tiny_cases.safetensors"));
    let device = Default::default();
    let mut tally = Tally::new("flux_tiny.json");
    let all_cases = v["cases"].as_array().expect("cases");
    for (label, file, tol) in weight_files(&v) {
        let path = beside(&json_path, &file);
        let model = match Flux::<B>::load(&path, &cfg, FloatDType::F32, &device) {
            Ok(m) => m,
            Err(e) => {
                tally.fail(format!("{label} ({}): {e}", path.display()));
                continue;
            }
        };
        for case in all_cases {
            let k = num(case, "case") as usize;
            let what = format!("{label} case {k}");
            if case.get("sampler").is_some() {
                trajectory(&mut tally, &what, &model, &cfg, &cases, case, k, tol);
                continue;
            }
            let (h, w) = (
                num(case, "height_tokens") as usize,
                num(case, "width_tokens") as usize,
            );
            let txt = f32_tensor::<3>(&cases, &format!("case{k}.txt"));
            let text = txt.dims()[1];
            let mut rot = rotary(&cfg, case, text, h, w);
            let t = num(case, "t");
            let stepped = rot
                .set_timestep(rope_time(t))
                .map(|_| ())
                .map_err(|e| e.to_string());
            let out = stepped.map(|_| rot.tables()).and_then(|tables| {
                model
                    .forward(
                        FluxInputs {
                            img: f32_tensor::<3>(&cases, &format!("case{k}.img")),
                            txt,
                            timesteps: f32_tensor::<1>(&cases, &format!("case{k}.t")),
                            y: f32_tensor::<2>(&cases, &format!("case{k}.y")),
                            guidance: Some(f32_tensor::<1>(&cases, &format!("case{k}.guidance"))),
                        },
                        tables,
                    )
                    .map_err(|e| e.to_string())
            });
            match out {
                Ok(out) => {
                    let (want, _) = cases.f32(&format!("case{k}.out"));
                    tally.check(|| what.clone(), rel_l2(&to_vec(out), &want), tol);
                }
                Err(e) => tally.fail(format!("{what}: {e}")),
            }
        }
    }
    tally.finish();
}

/// The flow-match Euler trajectory: σ from the pinned-μ schedule, t = σ for the transformer and
/// the RoPE, `traj[0]` the initial noise; the check is the largest per-step relative L2 error.
#[allow(clippy::too_many_arguments)]
fn trajectory(
    tally: &mut Tally,
    what: &str,
    model: &Flux<B>,
    cfg: &FluxConfig,
    cases: &Cases,
    case: &Value,
    k: usize,
    tol: f64,
) {
    let (h, w) = (
        num(case, "height_tokens") as usize,
        num(case, "width_tokens") as usize,
    );
    let steps = num(case, "steps") as usize;
    let guidance = num(case, "guidance");
    // The reference sampler works with f32 sigmas.
    let sigmas: Vec<f64> = flux_sigmas(steps, num(case, "mu"))
        .expect("schedule")
        .map(|s| s as f32 as f64)
        .collect();
    let txt = f32_tensor::<3>(cases, &format!("case{k}.txt"));
    let y = f32_tensor::<2>(cases, &format!("case{k}.y"));
    let text = txt.dims()[1];
    let (want, shape) = cases.f32(&format!("case{k}.traj"));
    let per: usize = shape[1..].iter().product();
    let x0 = Tensor::<B, 3>::from_data(
        TensorData::new(want[..per].to_vec(), [1, shape[1], shape[2]]),
        &Default::default(),
    );
    let mut rot = rotary(cfg, case, text, h, w);
    let velocity = |sigma: f64, x: &Tensor<B, 3>| -> Result<Tensor<B, 3>, Box<dyn Error>> {
        rot.set_timestep(rope_time(sigma))?;
        let tables = rot.tables();
        Ok(model.forward(
            FluxInputs {
                img: x.clone(),
                txt: txt.clone(),
                timesteps: scalar(sigma),
                y: y.clone(),
                guidance: Some(scalar(guidance)),
            },
            tables,
        )?)
    };
    // Every state against the reference trajectory, through the solver's per-step callback.
    let (mut states, mut err) = (0, 0.0f64);
    let result = fixed(FixedMethod::Euler, velocity, x0, &sigmas, |s| {
        states += 1;
        if let Some(w) = want.get(s.index * per..(s.index + 1) * per) {
            err = err.max(rel_l2(&to_vec(s.state.clone()), w));
        }
    });
    if let Err(e) = result {
        return tally.fail(format!("{what}: {e}"));
    }
    if states != shape[0] {
        return tally.fail(format!(
            "{what}: {states} states, the reference has {}",
            shape[0]
        ));
    }
    tally.check(
        || format!("{what} flow-match euler (max over steps)"),
        err,
        tol,
    );
}

#[test]
fn parity_flux_schedules() {
    let (json_path, v) = load_json("models/flux_tiny.json");
    let mut tally = Tally::new("flux_tiny.json#schedules");
    let shift = FlowShift::default();
    for s in v["schedules"].as_array().expect("schedules") {
        let (len, steps) = (num(s, "image_seq_len") as usize, num(s, "steps") as usize);
        let mu = shift.mu(len).expect("mu");
        let want = support::f64s(s, "sigmas");
        let got: Vec<f64> = flux_sigmas(steps, mu).expect("schedule").collect();
        let err = max_abs(&got, &want).max((mu - num(s, "mu")).abs());
        tally.check(|| format!("image_seq_len {len}, {steps} steps"), err, 1e-6);
    }
    // The trajectory case's pinned-μ schedule against the sigmas the reference sampler used.
    let cases = Cases::open(&beside(&json_path, "flux_tiny_cases.safetensors"));
    for case in v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c.get("sampler").is_some())
    {
        let k = num(case, "case") as usize;
        let (want, _) = cases.f32(&format!("case{k}.sigmas"));
        let want: Vec<f64> = want.into_iter().map(f64::from).collect();
        let got: Vec<f64> = flux_sigmas(num(case, "steps") as usize, num(case, "mu"))
            .expect("schedule")
            .collect();
        tally.check(
            || format!("case {k} sigmas (pinned mu)"),
            max_abs(&got, &want),
            1e-6,
        );
    }
    tally.finish();
}
