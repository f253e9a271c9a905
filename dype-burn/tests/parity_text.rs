//! FLUX.1 text-encoder parity against HF transformers (`models/text_tiny.json`): token ids of both
//! tokenizers exactly, T5 encoder hidden states and CLIP hidden/pooled outputs to 1e-4 relative L2.

#[path = "../../tests/support/mod.rs"]
mod support;

use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::Pretrained;
use dype_burn::models::text::{ClipConfig, ClipTextModel};
use dype_burn::models::text::{ClipTokenizer, T5Tokenizer};
use dype_burn::models::text::{T5Config, T5Encoder, relative_position_bucket};
use support::{Cases, Tally, beside, load_json, num, rel_l2, string};

type B = Cpu;

const TOL: f64 = 1e-4;

fn to_vec<const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .expect("f32 data")
}

fn ids_tensor(ids: &[i64]) -> Tensor<B, 2, Int> {
    Tensor::from_data(
        TensorData::new(ids.to_vec(), [1, ids.len()]),
        &Default::default(),
    )
}

/// Records the id sequence as one check: error 0 when equal, 1 otherwise.
fn check_ids(tally: &mut Tally, what: String, ours: &[i64], reference: &[i64]) {
    let err = if ours == reference { 0.0 } else { 1.0 };
    tally.check(
        || format!("{what}: ids {ours:?} vs reference {reference:?}"),
        err,
        0.0,
    );
}

#[test]
fn parity_text() {
    let (json, v) = load_json("models/text_tiny.json");
    let cases = Cases::open(&beside(&json, "text_tiny_cases.safetensors"));
    let device = Default::default();
    let t5_cfg = T5Config::from_json(&v["t5"]["config"]).expect("t5 config");
    let clip_cfg = ClipConfig::from_json(&v["clip"]["config"]).expect("clip config");
    let t5_tok = T5Tokenizer::from_file(beside(&json, string(&v["t5"], "tokenizer")))
        .unwrap_or_else(|e| panic!("{e}"));
    let clip_tok = ClipTokenizer::from_file(beside(&json, string(&v["clip"], "tokenizer")))
        .unwrap_or_else(|e| panic!("{e}"));
    let t5 = T5Encoder::<B>::load(
        beside(&json, string(&v["t5"], "weights")),
        &t5_cfg,
        FloatDType::F32,
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let clip = ClipTextModel::<B>::load(
        beside(&json, string(&v["clip"], "weights")),
        &clip_cfg,
        FloatDType::F32,
        &device,
    )
    .unwrap_or_else(|e| panic!("{e}"));

    let mut tally = Tally::new("text_tiny.json");
    for case in v["cases"].as_array().expect("cases") {
        let k = num(case, "case") as usize;
        let prompt = string(case, "prompt");

        // T5: tokenizer, then the encoder on the reference ids.
        let (ref_ids, _) = cases.i64(&format!("case{k}.t5_ids"));
        match t5_tok.encode(prompt, num(case, "t5_max_length") as usize) {
            Ok(t) => check_ids(&mut tally, format!("case {k} t5"), &t.ids_i64(), &ref_ids),
            Err(e) => tally.fail(format!("case {k} t5 tokenizer: {e}")),
        }
        let (want, _) = cases.f32(&format!("case{k}.t5_hidden"));
        match t5.forward(ids_tensor(&ref_ids)) {
            Ok(h) => {
                let got = to_vec(h);
                tally.check(|| format!("case {k} t5 hidden"), rel_l2(&got, &want), TOL);
            }
            Err(e) => tally.fail(format!("case {k} t5 forward: {e}")),
        }

        // CLIP.
        let (ref_ids, _) = cases.i64(&format!("case{k}.clip_ids"));
        match clip_tok.encode(prompt, num(case, "clip_max_length") as usize) {
            Ok(t) => check_ids(&mut tally, format!("case {k} clip"), &t.ids_i64(), &ref_ids),
            Err(e) => tally.fail(format!("case {k} clip tokenizer: {e}")),
        }
        let (want_hidden, _) = cases.f32(&format!("case{k}.clip_hidden"));
        let (want_pooled, _) = cases.f32(&format!("case{k}.clip_pooled"));
        match clip.forward(ids_tensor(&ref_ids)) {
            Ok(out) => {
                let got = to_vec(out.hidden);
                tally.check(
                    || format!("case {k} clip hidden"),
                    rel_l2(&got, &want_hidden),
                    TOL,
                );
                let got = to_vec(out.pooled);
                tally.check(
                    || format!("case {k} clip pooled"),
                    rel_l2(&got, &want_pooled),
                    TOL,
                );
            }
            Err(e) => tally.fail(format!("case {k} clip forward: {e}")),
        }
    }
    tally.finish();
}

/// Long prompts are cut like diffusers: the last real token is still `</s>` / `<|endoftext|>`, and
/// the dropped text is returned.
#[test]
fn parity_text_truncation_reports_dropped_words() {
    let (json, v) = load_json("models/text_tiny.json");
    let t5 = T5Tokenizer::from_file(beside(&json, string(&v["t5"], "tokenizer"))).expect("t5");
    let clip =
        ClipTokenizer::from_file(beside(&json, string(&v["clip"], "tokenizer"))).expect("clip");
    let prompt = "a photo of a cat riding a horse on mars ".repeat(20);

    let t = t5.encode(&prompt, 16).expect("t5 encode");
    assert_eq!(t.ids.len(), 16);
    assert_eq!(t.len, 16);
    assert_eq!(t.ids[15], t5.eos_id());
    assert!(
        t.dropped.as_deref().is_some_and(|d| d.contains("horse")),
        "{t:?}"
    );
    let short = t5.encode("a cat", 16).expect("t5 encode");
    assert!(short.dropped.is_none());
    assert_eq!(short.ids[short.len - 1], t5.eos_id());
    assert!(short.ids[short.len..].iter().all(|&i| i == t5.pad_id()));

    let c = clip.encode(&prompt, 77).expect("clip encode");
    assert_eq!(c.ids.len(), 77);
    assert_eq!((c.ids[0], c.ids[76]), (clip.bos_id(), clip.eos_id()));
    assert!(
        c.dropped.as_deref().is_some_and(|d| d.contains("mars")),
        "{c:?}"
    );
    assert!(clip.encode("", 1).is_err());
    assert!(t5.encode("", 0).is_err());
    assert!(T5Tokenizer::from_file(json.with_file_name("no_such_tokenizer.json")).is_err());
}

/// HF's bidirectional buckets (32 buckets, max distance 128) at hand-computed points.
#[test]
fn parity_text_relative_buckets() {
    for (rel, want) in [
        (0, 0),
        (-1, 1),
        (1, 17),
        (-7, 7),
        (8, 24),
        (-16, 10),
        (16, 26),
        (-200, 15),
        (200, 31),
    ] {
        assert_eq!(
            relative_position_bucket(rel, 32, 128),
            want,
            "relative {rel}"
        );
    }
}
