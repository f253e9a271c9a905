//! FiTv2 in half precision: the f32 checkpoint cast to bf16/f16 on load runs with f32 states and
//! stays close to the f32 reference output (RoPE and norms in f32 inside).

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::fitv2::{FitConfig, FitInputs, FitPosition, FitV2, fit_grid, fit_rope};
use dype_burn::rotary::PairLayout;
use dype_burn::rotary::RotaryEmbedding;
use dype_core::presets::FitFreqs;
use support::{Cases, beside, load_json, rel_l2};

type B = Cpu;

#[test]
fn half_precision_weights_match_f32_reference() {
    let (json, v) = load_json("models/fitv2_tiny.json");
    let cfg = FitConfig::from_json(&v["config"]).expect("config");
    let cases = Cases::open(&beside(&json, "fitv2_tiny_cases.safetensors"));
    let device = Default::default();
    // Case 1: normal RoPE, 12×12 tokens, batch 2, no padding.
    let (x, xs) = cases.f32("case1.x");
    let (t, _) = cases.f32("case1.t");
    let (y, _) = cases.i64("case1.y");
    let (want, _) = cases.f32("case1.out");
    let rope = fit_rope(&cfg, FitPosition::Fit(FitFreqs::Normal), true).expect("rope");
    let mut rot = RotaryEmbedding::<B>::batch(
        rope,
        vec![fit_grid(12, 12, xs[1]).expect("grid")],
        PairLayout::Interleaved,
        &device,
    )
    .expect("rotary");
    rot.set_static().expect("tables");
    for (dtype, tol) in [
        (FloatDType::F32, 1e-5),
        (FloatDType::BF16, 5e-2),
        (FloatDType::F16, 1e-2),
    ] {
        let model = FitV2::<B>::load(
            beside(&json, "fitv2_tiny.safetensors"),
            &cfg,
            dtype,
            &device,
        )
        .expect("load");
        let out = model
            .forward(
                FitInputs {
                    x: Tensor::from_data(TensorData::new(x.clone(), xs.clone()), &device),
                    t: Tensor::from_data(TensorData::new(t.clone(), [xs[0]]), &device),
                    y: Tensor::<B, 1, Int>::from_data(TensorData::new(y.clone(), [xs[0]]), &device),
                    mask: None,
                },
                rot.tables(),
            )
            .expect("forward");
        assert_eq!(
            out.dtype(),
            burn::tensor::DType::F32,
            "the velocity comes back in the state's dtype"
        );
        let got: Vec<f32> = out.into_data().into_vec().expect("f32");
        let err = rel_l2(&got, &want);
        assert!(err <= tol, "{dtype:?}: relative L2 error {err} > {tol}");
    }
}
