//! Parity of the burn AutoencoderKL decoder against diffusers (`tests/fixtures/models/vae_tiny.json`,
//! or `$DYPE_FIXTURES_DIR/models/vae_tiny.json`). Each section (`sd`, `flux`) decodes every case's
//! stored latent with every weights file the section names (diffusers names and old attention
//! names for `sd`; diffusers and BFL `ae.safetensors` layouts for `flux`), on the Cpu (Flex)
//! backend in f32, and compares with the stored image by relative L2 error.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_burn::models::Pretrained;
use std::path::{Path, PathBuf};

use burn::tensor::{FloatDType, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::vae::{VaeConfig, VaeDecoder};
use dype_burn::weights::Checkpoint;
use serde_json::Value;
use support::{Tally, load_json};

const TOL: f64 = 1e-4;
const FIXTURE: &str = "models/vae_tiny.json";

/// ‖out − ref‖₂ / ‖ref‖₂ (infinite on length mismatch).
fn rel_l2(out: &[f32], reference: &[f32]) -> f64 {
    if out.len() != reference.len() {
        return f64::INFINITY;
    }
    let (mut num, mut den) = (0.0f64, 0.0f64);
    for (&o, &r) in out.iter().zip(reference) {
        num += (o as f64 - r as f64).powi(2);
        den += (r as f64).powi(2);
    }
    if den == 0.0 {
        num.sqrt()
    } else {
        (num / den).sqrt()
    }
}

/// The file names a section gives: `weights` and every `weights_*` field. A field may carry a
/// description after the name (`"x.safetensors (BFL layout …)"`): the first word is the file.
fn weight_files(vae: &Value) -> Vec<(String, String)> {
    let Some(obj) = vae.as_object() else {
        return Vec::new();
    };
    let mut files: Vec<(String, String)> = obj
        .iter()
        .filter(|(k, _)| *k == "weights" || k.starts_with("weights_"))
        .filter_map(|(k, v)| {
            v.as_str()
                .and_then(|s| s.split_whitespace().next())
                .map(|f| (k.clone(), f.to_string()))
        })
        .collect();
    files.sort();
    files
}

/// The cases file: `cases_file` when given, else `<weights stem>_cases.safetensors`.
fn cases_file(vae: &Value, dir: &Path) -> Option<PathBuf> {
    if let Some(f) = vae.get("cases_file").and_then(|f| f.as_str()) {
        return Some(dir.join(f));
    }
    let w = vae.get("weights")?.as_str()?.split_whitespace().next()?;
    let stem = w.strip_suffix(".safetensors")?;
    Some(dir.join(format!("{stem}_cases.safetensors")))
}

fn usize_field(v: &Value, key: &str) -> Option<usize> {
    v.get(key).and_then(|x| x.as_u64()).map(|x| x as usize)
}

fn run_section(kind: &str) {
    let (json_path, json) = load_json(FIXTURE);
    let dir = json_path
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let mut tally = Tally::new(&format!("vae_tiny.json#{kind}"));
    let device = Default::default();
    let sections: Vec<&Value> = json
        .get("vaes")
        .and_then(|v| v.as_array())
        .map(|a| {
            a.iter()
                .filter(|v| v.get("kind").and_then(|k| k.as_str()) == Some(kind))
                .collect()
        })
        .unwrap_or_default();
    for vae in sections {
        let cases: Vec<&Value> = vae
            .get("cases")
            .and_then(|c| c.as_array())
            .map(|a| a.iter().collect())
            .unwrap_or_default();
        let files = weight_files(vae);
        let fail_all = |tally: &mut Tally, why: String| {
            for _ in 0..(cases.len() * files.len()).max(1) {
                tally.fail(why.clone());
            }
        };
        let config = match vae
            .get("config")
            .ok_or_else(|| "no `config`".to_string())
            .and_then(|c| VaeConfig::from_diffusers_json(c).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                fail_all(&mut tally, format!("{kind}: config: {e}"));
                continue;
            }
        };
        let cases_ckpt = match cases_file(vae, &dir)
            .ok_or_else(|| "cannot name the cases file".to_string())
            .and_then(|p| Checkpoint::open(&p).map_err(|e| e.to_string()))
        {
            Ok(c) => c,
            Err(e) => {
                fail_all(&mut tally, format!("{kind}: cases file: {e}"));
                continue;
            }
        };
        for (field, file) in &files {
            let decoder =
                match VaeDecoder::<Cpu>::load(dir.join(file), &config, FloatDType::F32, &device) {
                    Ok(d) => d,
                    Err(e) => {
                        for _ in 0..cases.len().max(1) {
                            tally.fail(format!("{kind} {field} ({file}): {e}"));
                        }
                        continue;
                    }
                };
            for case in &cases {
                let id = case.get("case").map(|c| c.to_string()).unwrap_or_default();
                let what = format!("{kind} {file} case {id}");
                let (Some(h), Some(w)) =
                    (usize_field(case, "latent_h"), usize_field(case, "latent_w"))
                else {
                    tally.fail(format!("{what}: no latent_h/latent_w"));
                    continue;
                };
                let latent = cases_ckpt.read_f32(&format!("case{id}.latent"));
                let image = cases_ckpt.read_f32(&format!("case{id}.image"));
                let ((lat, lat_shape), (img, img_shape)) = match (latent, image) {
                    (Ok(l), Ok(i)) => (l, i),
                    (Err(e), _) | (_, Err(e)) => {
                        tally.fail(format!("{what}: {e}"));
                        continue;
                    }
                };
                let want_latent = vec![1, config.latent_channels, h, w];
                if lat_shape != want_latent {
                    tally.fail(format!(
                        "{what}: stored latent {lat_shape:?}, parameters say {want_latent:?}"
                    ));
                    continue;
                }
                let f = config.upscale();
                let want_image = vec![1, config.out_channels, h * f, w * f];
                if img_shape != want_image {
                    tally.fail(format!(
                        "{what}: stored image {img_shape:?}, decoder gives {want_image:?}"
                    ));
                    continue;
                }
                let input = Tensor::<Cpu, 4>::from_data(TensorData::new(lat, lat_shape), &device);
                let out = match decoder.decode(input) {
                    Ok(o) => o,
                    Err(e) => {
                        tally.fail(format!("{what}: {e}"));
                        continue;
                    }
                };
                if out.dims().to_vec() != want_image {
                    tally.fail(format!(
                        "{what}: output {:?}, expected {want_image:?}",
                        out.dims()
                    ));
                    continue;
                }
                let out = out
                    .into_data()
                    .convert::<f32>()
                    .into_vec::<f32>()
                    .unwrap_or_default();
                let err = rel_l2(&out, &img);
                tally.check(|| what.clone(), err, TOL);
            }
        }
    }
    tally.finish();
}

#[test]
fn parity_vae_sd() {
    run_section("sd");
}

#[test]
fn parity_vae_flux() {
    run_section("flux");
}
