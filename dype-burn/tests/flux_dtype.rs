//! FLUX in half precision: the f32 checkpoint cast to bf16/f16 on load takes f32 states, returns
//! f32 velocities and stays close to the f32 reference (norms, RoPE and timestep features in f32).

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{DType, FloatDType, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::flux::{Flux, FluxConfig, FluxInputs, flux_rope};
use dype_burn::rotary::PairLayout;
use dype_burn::rotary::RotaryEmbedding;
use dype_burn::rotary::SamplePositions;
use dype_core::Sigma;
use dype_core::presets::OfficialMethod;
use support::{Cases, beside, flag, load_json, num, rel_l2, string};

type B = Cpu;

fn f32_tensor<const D: usize>(cases: &Cases, key: &str) -> Tensor<B, D> {
    let (v, shape) = cases.f32(key);
    Tensor::from_data(TensorData::new(v, shape), &Default::default())
}

#[test]
fn half_precision_flux_matches_f32_reference() {
    let (json, v) = load_json("models/flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).expect("config");
    let cases = Cases::open(&beside(&json, "flux_tiny_cases.safetensors"));
    let case = v["cases"]
        .as_array()
        .expect("cases")
        .iter()
        .find(|c| c.get("sampler").is_none())
        .expect("a forward case");
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
    let rope = flux_rope(&cfg, method, flag(case, "dype", false), base_tokens).expect("rope");
    let txt = f32_tensor::<3>(&cases, &format!("case{k}.txt"));
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
    let (want, _) = cases.f32(&format!("case{k}.out"));
    for (dtype, tol) in [
        (FloatDType::F32, 1e-4),
        (FloatDType::BF16, 5e-2),
        (FloatDType::F16, 1e-2),
    ] {
        let model = Flux::<B>::load(
            beside(&json, "flux_tiny_bfl.safetensors"),
            &cfg,
            dtype,
            &Default::default(),
        )
        .expect("load");
        let out = model
            .forward(
                FluxInputs {
                    img: f32_tensor::<3>(&cases, &format!("case{k}.img")),
                    txt: txt.clone(),
                    timesteps: f32_tensor::<1>(&cases, &format!("case{k}.t")),
                    y: f32_tensor::<2>(&cases, &format!("case{k}.y")),
                    guidance: Some(f32_tensor::<1>(&cases, &format!("case{k}.guidance"))),
                },
                rot.tables(),
            )
            .expect("forward");
        assert_eq!(out.dtype(), DType::F32);
        let got: Vec<f32> = out.into_data().into_vec().expect("f32");
        let err = rel_l2(&got, &want);
        assert!(err <= tol, "{dtype:?}: relative L2 error {err} > {tol}");
    }
}
