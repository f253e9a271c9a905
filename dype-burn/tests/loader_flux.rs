//! FLUX checkpoint loading fails loudly and precisely: every failure mode names the file and the
//! offending key, in both the BFL and the diffusers layout, and nothing is built from a bad
//! checkpoint.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_burn::models::Pretrained;
use std::path::{Path, PathBuf};

use burn::tensor::FloatDType;
use dype_burn::backend::Cpu;
use dype_burn::models::flux::{Flux, FluxConfig};
use support::{beside, load_json, rewrite, tempdir};

fn tiny() -> (FluxConfig, PathBuf, PathBuf) {
    let (json, v) = load_json("models/flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).expect("config");
    (
        cfg,
        beside(&json, "flux_tiny_bfl.safetensors"),
        beside(&json, "flux_tiny_diffusers.safetensors"),
    )
}

fn load_err(cfg: &FluxConfig, path: &Path) -> String {
    match Flux::<Cpu>::load(path, cfg, FloatDType::F32, &Default::default()) {
        Ok(_) => panic!("{} loaded although it is broken", path.display()),
        Err(e) => e.to_string(),
    }
}

#[test]
fn flux_fixtures_load_in_both_layouts() {
    let (cfg, bfl, diff) = tiny();
    for p in [&bfl, &diff] {
        Flux::<Cpu>::load(p, &cfg, FloatDType::F32, &Default::default())
            .unwrap_or_else(|e| panic!("{e}"));
    }
}

#[test]
fn flux_missing_key_is_named() {
    let (cfg, bfl, diff) = tiny();
    let dir = tempdir("missing");
    let p = rewrite(&bfl, &dir, "missing_bfl.safetensors", |m| {
        m.remove("single_blocks.1.linear2.weight");
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("missing")
            && e.contains("single_blocks.1.linear2.weight")
            && e.contains("missing_bfl.safetensors"),
        "{e}"
    );
    let p = rewrite(&diff, &dir, "missing_diffusers.safetensors", |m| {
        m.remove("transformer_blocks.0.attn.to_k.weight");
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("missing")
            && e.contains("transformer_blocks.0.attn.to_k.weight")
            && e.contains("missing_diffusers.safetensors"),
        "{e}"
    );
}

#[test]
fn flux_unexpected_key_is_named() {
    let (cfg, bfl, diff) = tiny();
    let dir = tempdir("extra");
    let p = rewrite(&bfl, &dir, "extra_bfl.safetensors", |m| {
        m.insert(
            "double_blocks.5.img_attn.qkv.weight".into(),
            (safetensors::Dtype::F32, vec![2], vec![0; 8]),
        );
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("unexpected")
            && e.contains("double_blocks.5.img_attn.qkv.weight")
            && e.contains("extra_bfl.safetensors"),
        "{e}"
    );
    let p = rewrite(&diff, &dir, "extra_diffusers.safetensors", |m| {
        m.insert(
            "norm_out.norm.weight".into(),
            (safetensors::Dtype::F32, vec![2], vec![0; 8]),
        );
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("unexpected")
            && e.contains("norm_out.norm.weight")
            && e.contains("extra_diffusers.safetensors"),
        "{e}"
    );
}

#[test]
fn flux_misshaped_tensor_is_named() {
    let (cfg, bfl, diff) = tiny();
    let dir = tempdir("shape");
    let p = rewrite(&bfl, &dir, "shape_bfl.safetensors", |m| {
        if let Some(t) = m.get_mut("double_blocks.0.txt_attn.norm.key_norm.scale") {
            t.1 = vec![t.2.len() / 8, 2];
        }
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("double_blocks.0.txt_attn.norm.key_norm.scale")
            && e.contains("expected shape")
            && e.contains("shape_bfl.safetensors"),
        "{e}"
    );
    let p = rewrite(&diff, &dir, "shape_diffusers.safetensors", |m| {
        if let Some(t) = m.get_mut("norm_out.linear.bias") {
            t.1 = vec![t.2.len() / 8, 2];
        }
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("norm_out.linear.bias")
            && e.contains("expected shape")
            && e.contains("shape_diffusers.safetensors"),
        "{e}"
    );
}

#[test]
fn flux_truncated_files_are_rejected() {
    let (cfg, bfl, _) = tiny();
    let bytes = std::fs::read(&bfl).expect("read");
    let dir = tempdir("truncated");
    for cut in [4usize, 100, bytes.len() / 2, bytes.len() - 1] {
        let p = dir.join(format!("truncated-{cut}.safetensors"));
        std::fs::write(&p, &bytes[..cut]).expect("write");
        let e = load_err(&cfg, &p);
        assert!(e.contains(&format!("truncated-{cut}.safetensors")), "{e}");
        assert!(e.contains("truncated") || e.contains("corrupt"), "{e}");
    }
}

#[test]
fn flux_unknown_layout_and_wrong_config_are_reported() {
    let (mut cfg, bfl, diff) = tiny();
    let dir = tempdir("layout");
    let p = rewrite(&bfl, &dir, "neither.safetensors", |m| {
        m.retain(|k, _| k.starts_with("final_layer."));
    });
    let e = load_err(&cfg, &p);
    assert!(
        e.contains("neither.safetensors") && e.contains("BFL") && e.contains("diffusers"),
        "{e}"
    );
    cfg.depth_single_blocks += 1;
    let e = load_err(&cfg, &bfl);
    assert!(e.contains("single_blocks.2."), "{e}");
    let e = load_err(&cfg, &diff);
    assert!(e.contains("single_transformer_blocks.2."), "{e}");
}
