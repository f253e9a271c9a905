//! `pipeline::prompt::PromptEncoder` on the tiny fixture encoders: it tokenizes and encodes exactly
//! as the tokenizers and encoders do one by one, reports truncation, and keeps T5 out of f16.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::text::{
    ClipConfig, ClipTextModel, ClipTokenizer, T5Config, T5Encoder, T5Tokenizer,
};
use dype_burn::pipeline::PipelineError;
use dype_burn::pipeline::prompt::{PromptEncoder, PromptFiles};
use support::{beside, load_json};

type B = Cpu;

fn values<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.cast(DType::F32).into_data().into_vec().expect("f32")
}

#[test]
fn prompt_encoder_matches_the_encoders_step_by_step() {
    let (json, v) = load_json("models/text_tiny.json");
    let t5_cfg = T5Config::from_json(&v["t5"]["config"]).expect("t5 config");
    let clip_cfg = ClipConfig::from_json(&v["clip"]["config"]).expect("clip config");
    let files = PromptFiles {
        t5: beside(&json, "t5_tiny.safetensors"),
        t5_tokenizer: beside(&json, "t5_tiny_tokenizer.json"),
        clip: beside(&json, "clip_tiny.safetensors"),
        clip_tokenizer: beside(&json, "clip_tiny_tokenizer.json"),
    };
    let device = Default::default();
    let encoder =
        PromptEncoder::<B>::load(&files, &t5_cfg, &clip_cfg, 16, FloatDType::F32, &device)
            .expect("load");
    let prompt = "a red fox in the snow";
    let got = encoder.encode(prompt).expect("encode");

    let ids = |ids: Vec<i64>| {
        let n = ids.len();
        Tensor::<B, 2, Int>::from_data(TensorData::new(ids, [1, n]), &device)
    };
    let t5_tokens = T5Tokenizer::from_file(&files.t5_tokenizer)
        .expect("t5 tokenizer")
        .encode(prompt, 16)
        .expect("t5 tokens");
    let clip_tokens = ClipTokenizer::from_file(&files.clip_tokenizer)
        .expect("clip tokenizer")
        .encode(prompt, 77)
        .expect("clip tokens");
    assert_eq!(got.t5_tokens, t5_tokens);
    assert_eq!(got.clip_tokens, clip_tokens);
    let t5 = T5Encoder::<B>::load(&files.t5, &t5_cfg, FloatDType::F32, &device).expect("t5");
    let clip =
        ClipTextModel::<B>::load(&files.clip, &clip_cfg, FloatDType::F32, &device).expect("clip");
    let want_t5 = t5.forward(ids(t5_tokens.ids_i64())).expect("t5 forward");
    let want_pooled = clip
        .forward(ids(clip_tokens.ids_i64()))
        .expect("clip")
        .pooled;
    assert_eq!(got.conditioning.t5.dims(), [1, 16, t5_cfg.d_model]);
    assert_eq!(got.conditioning.pooled.dims(), [1, clip_cfg.hidden_size]);
    assert_eq!(values(got.conditioning.t5), values(want_t5));
    assert_eq!(values(got.conditioning.pooled), values(want_pooled));

    // A prompt longer than T5's 16 tokens is cut, and the cut text is reported.
    let long = "a red fox ".repeat(20);
    let cut = encoder.encode(&long).expect("long prompt");
    assert!(cut.t5_tokens.dropped.is_some());
    assert_eq!(cut.conditioning.t5.dims(), [1, 16, t5_cfg.d_model]);

    // f16 is replaced by f32 for the encoders (T5 overflows in f16); outputs are f32.
    let half = PromptEncoder::<B>::load(&files, &t5_cfg, &clip_cfg, 16, FloatDType::F16, &device)
        .expect("load f16");
    let out = half.encode(prompt).expect("encode f16");
    assert_eq!(out.conditioning.t5.dtype(), DType::F32);

    // A missing file is a typed error, not a panic.
    let missing = PromptFiles {
        t5_tokenizer: beside(&json, "no_such_tokenizer.json"),
        ..files
    };
    assert!(matches!(
        PromptEncoder::<B>::load(&missing, &t5_cfg, &clip_cfg, 16, FloatDType::F32, &device),
        Err(PipelineError::Text(_))
    ));
}
