//! FiTv2 checkpoint loading fails loudly and precisely: every failure mode names the file and the
//! offending key, and nothing is built from a bad checkpoint.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_burn::models::Pretrained;
use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use dype_burn::backend::Cpu;
use dype_burn::models::fitv2::{FitConfig, FitV2};
use support::{beside, load_json, rewrite, tempdir};

fn tiny_config() -> (FitConfig, PathBuf) {
    let (json, v) = load_json("models/fitv2_tiny.json");
    let cfg = FitConfig::from_json(&v["config"]).expect("config");
    (cfg, beside(&json, "fitv2_tiny.safetensors"))
}

fn load_err(cfg: &FitConfig, path: &Path) -> String {
    match FitV2::<Cpu>::load(path, cfg, FloatDType::F32, &Default::default()) {
        Ok(_) => panic!("{} loaded although it is broken", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn missing_key_is_named() {
    let (cfg, src) = tiny_config();
    let p = rewrite(&src, &tempdir("fitv2"), "missing.safetensors", |m| {
        m.remove("blocks.1.mlp.fc2.weight");
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("missing")
            && e.contains("blocks.1.mlp.fc2.weight")
            && e.contains("missing.safetensors"),
        "{e}"
    );
}

#[test]
fn unexpected_key_is_named() {
    let (cfg, src) = tiny_config();
    let p = rewrite(&src, &tempdir("fitv2"), "extra.safetensors", |m| {
        m.insert(
            "blocks.9.attn.qkv.weight".into(),
            (safetensors::Dtype::F32, vec![2], vec![0; 8]),
        );
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("unexpected")
            && e.contains("blocks.9.attn.qkv.weight")
            && e.contains("extra.safetensors"),
        "{e}"
    );
}

#[test]
fn misshaped_tensor_is_named_with_both_shapes() {
    let (cfg, src) = tiny_config();
    let p = rewrite(&src, &tempdir("fitv2"), "shape.safetensors", |m| {
        if let Some(t) = m.get_mut("final_layer.linear.bias") {
            t.1 = vec![t.2.len() / 8, 2];
        }
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("final_layer.linear.bias")
            && e.contains("expected shape")
            && e.contains("shape.safetensors"),
        "{e}"
    );
}

#[test]
fn truncated_files_are_rejected() {
    let (cfg, src) = tiny_config();
    let bytes = std::fs::read(&src).expect("read");
    let dir = tempdir("fitv2");
    for cut in [4usize, 100, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.join(format!("truncated-{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).expect("write");
        let e = load_err(&cfg, &p);
        assert!(e.contains(&format!("truncated-{cut}.safetensors")), "{e}");
        assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
    }
    // The PyTorch pickle too.
    let (json, _) = load_json("models/fitv2_tiny.json");
    let pt = std::fs::read(beside(&json, "fitv2_tiny.pt")).expect("read pt");
    let p = dir.join("truncated.pt");
    std::fs::write(&p, &pt[..pt.len() / 2]).expect("write");
    let e = load_err(&cfg, &p);
    assert!(e.contains("truncated.pt"), "{e}");
}

#[test]
fn wrong_config_for_the_checkpoint_is_reported_not_panicked() {
    let (mut cfg, src) = tiny_config();
    cfg.depth += 1;
    let e = load_err(&cfg, &src);
    assert!(e.contains("blocks.2."), "{e}");
    cfg.depth -= 1;
    cfg.hidden_size += 4;
    let e = load_err(&cfg, &src);
    assert!(
        e.contains("expected shape") || e.contains("invalid configuration"),
        "{e}"
    );
}
