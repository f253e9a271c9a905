//! Block streaming: [`StreamedFlux`] (blocks in host memory, uploaded one at a time) computes
//! exactly what the resident [`Flux`] computes, for the BFL and the diffusers file, in f32 and
//! bf16, through `forward` and through the pipeline's sampling loop.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{FloatDType, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::flux::{
    Flux, FluxConfig, FluxDenoiser, FluxInputs, StreamedFlux, flux_rope,
};
use dype_burn::pipeline::flux::{FluxConditioning, FluxGenerate, sample};
use dype_burn::pipeline::seeded_noise;
use dype_burn::rotary::PairLayout;
use dype_burn::rotary::RotaryEmbedding;
use dype_burn::rotary::SamplePositions;
use dype_core::Sigma;
use dype_core::presets::OfficialMethod;
use serde_json::Value;
use support::{Cases, beside, flag, load_json, num, string};

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

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, |m, d| if d.is_nan() { f32::NAN } else { m.max(d) })
}

/// Runs forward case `case` of the fixture through `model`.
fn run_case(
    model: &impl FluxDenoiser<B>,
    cfg: &FluxConfig,
    v: &Value,
    case: &Value,
    cases: &Cases,
) -> Vec<f32> {
    let k = num(case, "case") as usize;
    let method = match string(case, "method") {
        "base" => OfficialMethod::Base,
        "ntk" => OfficialMethod::Ntk,
        _ => OfficialMethod::Yarn,
    };
    let base_tokens = case
        .get("base_tokens")
        .and_then(|b| b.as_f64())
        .unwrap_or_else(|| num(&v["config"], "base_tokens"));
    let rope = flux_rope(cfg, method, flag(case, "dype", false), base_tokens).expect("rope");
    let txt = f32_tensor::<3>(cases, &format!("case{k}.txt"));
    let pos = SamplePositions::flux(
        txt.dims()[1],
        num(case, "height_tokens") as usize,
        num(case, "width_tokens") as usize,
    )
    .expect("positions");
    let mut rot = RotaryEmbedding::<B>::batch(
        rope,
        vec![pos],
        PairLayout::Interleaved,
        &Default::default(),
    )
    .expect("rotary");
    rot.set_timestep(Sigma::new(num(case, "t") as f32 as f64).expect("t"))
        .expect("step");
    let out = model
        .velocity(
            FluxInputs {
                img: f32_tensor::<3>(cases, &format!("case{k}.img")),
                txt,
                timesteps: f32_tensor::<1>(cases, &format!("case{k}.t")),
                y: f32_tensor::<2>(cases, &format!("case{k}.y")),
                guidance: Some(f32_tensor::<1>(cases, &format!("case{k}.guidance"))),
            },
            rot.tables(),
        )
        .expect("forward");
    to_vec(out)
}

#[test]
fn streamed_forward_equals_resident_forward() {
    let (json, v) = load_json("models/flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).expect("config");
    let cases = Cases::open(&beside(&json, "flux_tiny_cases.safetensors"));
    let forward_cases: Vec<&Value> = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .filter(|c| c.get("sampler").is_none())
        .collect();
    assert!(!forward_cases.is_empty(), "no forward case in the fixture");
    let device = Default::default();
    for file in [
        "flux_tiny_bfl.safetensors",
        "flux_tiny_diffusers.safetensors",
    ] {
        for dtype in [FloatDType::F32, FloatDType::BF16] {
            let path = beside(&json, file);
            let resident = Flux::<B>::load(&path, &cfg, dtype, &device).expect("load");
            let streamed = StreamedFlux::<B>::load(&path, &cfg, dtype, &device).expect("load");
            assert_eq!(streamed.config(), resident.config());
            assert!(streamed.host_bytes() > 0);
            for case in &forward_cases {
                let want = run_case(&resident, &cfg, &v, case, &cases);
                let got = run_case(&streamed, &cfg, &v, case, &cases);
                let err = max_abs_diff(&got, &want);
                assert!(
                    err <= 1e-6,
                    "{file} {dtype:?} case {}: max abs diff {err} > 1e-6",
                    case["case"]
                );
            }
        }
    }
}

#[test]
fn streamed_from_resident_model_and_sampling_loop_match() {
    let (json, v) = load_json("models/flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).expect("config");
    let device = Default::default();
    let path = beside(&json, "flux_tiny_bfl.safetensors");
    let resident = Flux::<B>::load(&path, &cfg, FloatDType::F32, &device).expect("load");
    let streamed = StreamedFlux::from_flux(
        Flux::<B>::load(&path, &cfg, FloatDType::F32, &device).expect("load"),
    );
    let cond = FluxConditioning {
        t5: seeded_noise::<B, 3>(1, [1, 5, cfg.context_in_dim], &device),
        pooled: seeded_noise::<B, 2>(2, [1, cfg.vec_in_dim], &device),
    };
    let request = FluxGenerate {
        steps: 3,
        base_tokens: num(&v["config"], "base_tokens"),
        ..FluxGenerate::new(160, 160)
    };
    let (h, w) = (10, 10);
    let x0 = || seeded_noise::<B, 3>(3, [1, h * w, cfg.in_channels], &device);
    let run = |model: &dyn FluxDenoiser<B>| {
        let x = sample(
            model,
            &cond,
            &request,
            x0(),
            (h, w),
            &device,
            |_| {},
            |_| {},
        );
        to_vec(x.expect("sample"))
    };
    let (want, got) = (run(&resident), run(&streamed));
    let err = max_abs_diff(&got, &want);
    assert!(err <= 1e-6, "sampling loop: max abs diff {err} > 1e-6");
    // The checks of `Flux::forward` apply unchanged: a missing guidance is an error.
    let rope = flux_rope(&cfg, OfficialMethod::Base, false, 8.0).expect("rope");
    let mut rot = RotaryEmbedding::<B>::batch(
        rope,
        vec![SamplePositions::flux(5, h, w).expect("ids")],
        PairLayout::Interleaved,
        &device,
    )
    .expect("rot");
    rot.set_static().expect("static");
    let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32], [1]), &device);
    assert!(
        streamed
            .velocity(
                FluxInputs {
                    img: x0(),
                    txt: cond.t5.clone(),
                    timesteps: t,
                    y: cond.pooled.clone(),
                    guidance: None
                },
                rot.tables()
            )
            .is_err()
    );
}
