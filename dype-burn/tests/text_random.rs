//! Random-weight text encoders (used by the GPU timing script) build in f32 and bf16 and run.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::text::{ClipConfig, ClipTextModel};
use dype_burn::models::text::{T5Config, T5Encoder};
use support::load_json;

type B = Cpu;

#[test]
fn random_encoders_run_in_f32_and_bf16() {
    let (_, v) = load_json("models/text_tiny.json");
    let t5_cfg = T5Config::from_json(&v["t5"]["config"]).expect("t5 config");
    let clip_cfg = ClipConfig::from_json(&v["clip"]["config"]).expect("clip config");
    let device = Default::default();
    let ids = |n: usize| {
        Tensor::<B, 2, Int>::from_data(
            TensorData::new((0..n as i64).map(|i| i % 5 + 1).collect::<Vec<_>>(), [1, n]),
            &device,
        )
    };
    for dtype in [FloatDType::F32, FloatDType::BF16] {
        let t5 = T5Encoder::<B>::random(&t5_cfg, dtype, &device).expect("t5");
        let h = t5.forward(ids(16)).expect("t5 forward");
        assert_eq!(h.dims(), [1, 16, t5_cfg.d_model]);
        let clip = ClipTextModel::<B>::random(&clip_cfg, dtype, &device).expect("clip");
        let out = clip
            .forward(ids(clip_cfg.max_position_embeddings))
            .expect("clip forward");
        assert_eq!(out.pooled.dims(), [1, clip_cfg.hidden_size]);
        let finite: Vec<f32> = h.cast(DType::F32).into_data().into_vec().expect("f32");
        assert!(
            finite.iter().all(|x| x.is_finite()),
            "{dtype:?}: non-finite T5 output"
        );
    }
}
