//! Text-encoder checkpoint loading (T5 and CLIP) fails loudly and precisely: missing, unexpected
//! and misshaped tensors are named with the file, truncated files are rejected.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_burn::models::Pretrained;
use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use dype_burn::backend::Cpu;
use dype_burn::models::text::{ClipConfig, ClipTextModel};
use dype_burn::models::text::{T5Config, T5Encoder};
use support::{beside, load_json, rewrite, string, tempdir};

#[derive(Clone, Copy)]
enum Model {
    T5,
    Clip,
}

fn fixture(model: Model) -> PathBuf {
    let (json, v) = load_json("models/text_tiny.json");
    let sec = match model {
        Model::T5 => &v["t5"],
        Model::Clip => &v["clip"],
    };
    beside(&json, string(sec, "weights"))
}

fn load_err(model: Model, path: &Path) -> String {
    let (_, v) = load_json("models/text_tiny.json");
    let device = Default::default();
    let r = match model {
        Model::T5 => {
            let cfg = T5Config::from_json(&v["t5"]["config"]).expect("config");
            T5Encoder::<Cpu>::load(path, &cfg, FloatDType::F32, &device).map(|_| ())
        }
        Model::Clip => {
            let cfg = ClipConfig::from_json(&v["clip"]["config"]).expect("config");
            ClipTextModel::<Cpu>::load(path, &cfg, FloatDType::F32, &device).map(|_| ())
        }
    };
    match r {
        Ok(()) => panic!("{} loaded although it is broken", path.display()),
        Err(e) => e.to_string(),
    }
}

const T5_KEY: &str = "encoder.block.1.layer.1.DenseReluDense.wo.weight";
const CLIP_KEY: &str = "encoder.layers.1.mlp.fc2.weight";

#[test]
fn missing_key_is_named() {
    for (model, key, tag) in [(Model::T5, T5_KEY, "t5"), (Model::Clip, CLIP_KEY, "clip")] {
        let p = rewrite(&fixture(model), &tempdir(tag), "missing.safetensors", |m| {
            m.remove(key);
        });
        let e = load_err(model, &p);
        assert!(
            e.contains("missing") && e.contains(key) && e.contains("missing.safetensors"),
            "{tag}: {e}"
        );
    }
}

#[test]
fn unexpected_key_is_named() {
    for (model, key, tag) in [
        (
            Model::T5,
            "encoder.block.7.layer.0.SelfAttention.q.weight",
            "t5",
        ),
        (
            Model::Clip,
            "encoder.layers.7.self_attn.q_proj.weight",
            "clip",
        ),
    ] {
        let p = rewrite(&fixture(model), &tempdir(tag), "extra.safetensors", |m| {
            m.insert(key.into(), (safetensors::Dtype::F32, vec![2], vec![0; 8]));
        });
        let e = load_err(model, &p);
        assert!(
            e.contains("unexpected") && e.contains(key) && e.contains("extra.safetensors"),
            "{tag}: {e}"
        );
    }
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    for (model, key, tag) in [
        (Model::T5, "encoder.final_layer_norm.weight", "t5"),
        (Model::Clip, "final_layer_norm.bias", "clip"),
    ] {
        let p = rewrite(&fixture(model), &tempdir(tag), "shape.safetensors", |m| {
            let t = m.get_mut(key).expect("key in fixture");
            t.1 = vec![t.2.len() / 8, 2];
        });
        let e = load_err(model, &p);
        assert!(
            e.contains(key) && e.contains("expected shape") && e.contains("shape.safetensors"),
            "{tag}: {e}"
        );
    }
}

#[test]
fn truncated_files_are_rejected() {
    for (model, tag) in [(Model::T5, "t5"), (Model::Clip, "clip")] {
        let bytes = std::fs::read(fixture(model)).expect("read");
        let dir = tempdir(tag);
        for cut in [4usize, 100, bytes.len() / 2, bytes.len() - 1] {
            let p = dir.join(format!("truncated-{cut}.safetensors"));
            std::fs::write(&p, &bytes[..cut]).expect("write");
            let e = load_err(model, &p);
            assert!(
                e.contains(&format!("truncated-{cut}.safetensors")),
                "{tag}: {e}"
            );
            assert!(
                e.contains("truncated") || e.contains("corrupt"),
                "{tag}: {e}"
            );
        }
    }
}

#[test]
fn t5_loads_with_one_embedding_copy_and_clip_with_the_diffusers_prefix() {
    let (_, v) = load_json("models/text_tiny.json");
    let device = Default::default();
    let dir = tempdir("layout");
    let t5_cfg = T5Config::from_json(&v["t5"]["config"]).expect("config");
    let p = rewrite(
        &fixture(Model::T5),
        &dir,
        "t5_shared_only.safetensors",
        |m| {
            m.remove("encoder.embed_tokens.weight");
        },
    );
    T5Encoder::<Cpu>::load(&p, &t5_cfg, FloatDType::F32, &device).expect("shared.weight only");
    let clip_cfg = ClipConfig::from_json(&v["clip"]["config"]).expect("config");
    let p = rewrite(
        &fixture(Model::Clip),
        &dir,
        "clip_diffusers.safetensors",
        |m| {
            let old = std::mem::take(m);
            m.extend(old.into_iter().map(|(k, t)| (format!("text_model.{k}"), t)));
            m.insert(
                "text_model.embeddings.position_ids".into(),
                (safetensors::Dtype::I64, vec![1, 77], vec![0; 77 * 8]),
            );
        },
    );
    ClipTextModel::<Cpu>::load(&p, &clip_cfg, FloatDType::F32, &device)
        .expect("text_model. prefix");
}
