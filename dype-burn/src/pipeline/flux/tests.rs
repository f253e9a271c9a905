//! Unit tests of the FLUX pipeline on the tiny fixture models.

use super::*;
use crate::models::Pretrained;
use crate::models::flux::Flux;
use crate::models::vae::VaeConfig;
use std::path::PathBuf;

type B = crate::backend::Cpu;

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/fixtures/models")
}

fn json(name: &str) -> serde_json::Value {
    let text = std::fs::read_to_string(fixtures().join(name)).expect("fixture");
    serde_json::from_str(&text).expect("json")
}

fn tiny() -> (Flux<B>, VaeDecoder<B>, FluxConditioning<B>, FluxGenerate) {
    let device = Default::default();
    let v = json("flux_tiny.json");
    let cfg = FluxConfig::from_json(&v["config"]).expect("config");
    let model = Flux::<B>::load(
        fixtures().join("flux_tiny_bfl.safetensors"),
        &cfg,
        FloatDType::F32,
        &device,
    )
    .expect("model");
    let vaes = json("vae_tiny.json");
    let entry = vaes["vaes"]
        .as_array()
        .and_then(|a| a.iter().find(|x| x["kind"] == "flux"))
        .expect("flux vae");
    let vcfg = VaeConfig::from_diffusers_json(&entry["config"]).expect("vae config");
    let vae = VaeDecoder::<B>::load(
        fixtures().join("vae_flux_tiny.safetensors"),
        &vcfg,
        FloatDType::F32,
        &device,
    )
    .expect("vae");
    let cond = FluxConditioning {
        t5: crate::pipeline::seeded_noise::<B, 3>(7, [1, 5, cfg.context_in_dim], &device),
        pooled: crate::pipeline::seeded_noise::<B, 2>(8, [1, cfg.vec_in_dim], &device),
    };
    // 12×12 tokens against 8 trained: extrapolation, like the fixture's DyPE cases.
    let request = FluxGenerate {
        steps: 4,
        base_tokens: 8.0,
        ..FluxGenerate::new(48, 48)
    };
    (model, vae, cond, request)
}

#[test]
fn method_names() {
    assert_eq!(
        FluxMethod::by_name("official-dy-yarn").expect("name"),
        FluxMethod::default()
    );
    for name in presets::method_names() {
        // Every registry name works on FLUX.
        let m = FluxMethod::by_name(name).expect("name");
        m.rope(&FluxConfig::dev(), FLUX_BASE_TOKENS).expect("rope");
    }
    assert!(FluxMethod::by_name("nope").is_err());
}

#[test]
fn generates_deterministic_batches_with_progress() {
    let (model, vae, cond, request) = tiny();
    let device = Default::default();
    let mut seen = Vec::new();
    let one = generate(
        &model,
        &vae,
        &cond,
        &request,
        &device,
        |p| {
            seen.push((p.step, p.sigma, p.kappa, p.max_scale, p.report.uploaded));
        },
        |_| {},
    )
    .expect("generate");
    assert_eq!(one.len(), 1);
    assert_eq!((one[0].width, one[0].height), (48, 48));
    assert_eq!(seen.len(), 4);
    assert_eq!(seen[0].1, 1.0);
    // Official Dy-YaRN: κ = σ² (λt = 2); tables are rebuilt only when the frequencies change
    // (the tiny model's 6 pairs per axis often keep them). The embedding was built at σ = 1
    // (its t = None setting), so the first step, at σ = 1, uploads nothing.
    assert!(
        seen.iter()
            .all(|s| (s.2.expect("dynamic") - s.1 * s.1).abs() < 1e-9 && s.3 == 1.5),
        "{seen:?}"
    );
    assert!(!seen[0].4);
    assert!(seen.windows(2).all(|w| w[1].1 < w[0].1));

    // Sample i of a batch equals a single run with seed + i.
    let batch = generate(
        &model,
        &vae,
        &cond,
        &FluxGenerate {
            batch: 2,
            ..request.clone()
        },
        &device,
        |_| {},
        |_| {},
    )
    .expect("batch");
    let second = generate(
        &model,
        &vae,
        &cond,
        &FluxGenerate {
            seed: 1,
            ..request.clone()
        },
        &device,
        |_| {},
        |_| {},
    )
    .expect("seed 1");
    let close = |a: &Rgb8Image, b: &Rgb8Image| {
        a.pixels
            .iter()
            .zip(&b.pixels)
            .all(|(x, y)| x.abs_diff(*y) <= 1)
    };
    assert_eq!(batch.len(), 2);
    assert!(close(&batch[0], &one[0]));
    assert!(close(&batch[1], &second[0]));
    assert!(!close(&batch[0], &batch[1]));

    // Tiled decoding kicks in above `vae_tile` latent pixels and keeps the image size.
    let tiled = generate(
        &model,
        &vae,
        &cond,
        &FluxGenerate {
            vae_tile: 16,
            steps: 1,
            ..request.clone()
        },
        &device,
        |_| {},
        |_| {},
    )
    .expect("tiled");
    assert_eq!((tiled[0].width, tiled[0].height), (48, 48));
}

/// The sampling loop against the reference trajectory (`flux_tiny.json` case 22: official
/// DyPE Dy-YaRN, 12×12 tokens against 8, 6 steps, μ pinned at 1.15, guidance 3.5).
#[test]
fn sample_matches_reference_trajectory() {
    let (model, _, _, _) = tiny();
    let device = Default::default();
    let cases = Checkpoint::open(fixtures().join("flux_tiny_cases.safetensors")).expect("cases");
    let tensor = |k: &str| cases.read_f32(k).expect("case tensor");
    let (traj, shape) = tensor("case22.traj");
    let per = shape[1] * shape[2];
    let x0 = Tensor::<B, 3>::from_data(
        TensorData::new(traj[..per].to_vec(), [1, shape[1], shape[2]]),
        &device,
    );
    let (t5, ts) = tensor("case22.txt");
    let (pooled, ps) = tensor("case22.y");
    let cond = FluxConditioning {
        t5: Tensor::<B, 3>::from_data(TensorData::new(t5, [ts[0], ts[1], ts[2]]), &device),
        pooled: Tensor::<B, 2>::from_data(TensorData::new(pooled, [ps[0], ps[1]]), &device),
    };
    let request = FluxGenerate {
        steps: 6,
        mu: Some(OFFICIAL_DYPE_MU),
        guidance: 3.5,
        base_tokens: 8.0,
        ..FluxGenerate::new(48, 48)
    };
    let out = sample(
        &model,
        &cond,
        &request,
        x0,
        (12, 12),
        &device,
        |_| {},
        |_| {},
    )
    .expect("sample");
    let got: Vec<f32> = out.into_data().into_vec().expect("f32");
    let want = &traj[(shape[0] - 1) * per..];
    let num: f64 = got
        .iter()
        .zip(want)
        .map(|(a, b)| (*a as f64 - *b as f64).powi(2))
        .sum();
    let den: f64 = want.iter().map(|b| (*b as f64).powi(2)).sum();
    let err = (num / den).sqrt();
    eprintln!("pipeline sample vs reference trajectory: relative L2 {err:e}");
    assert!(err < 1e-4, "relative L2 error {err:e}");
}

#[test]
fn rejects_bad_requests() {
    let (model, vae, cond, request) = tiny();
    let device = Default::default();
    let bad = |r: FluxGenerate| generate(&model, &vae, &cond, &r, &device, |_| {}, |_| {}).is_err();
    assert!(bad(FluxGenerate {
        height: 50,
        ..request.clone()
    }));
    assert!(bad(FluxGenerate {
        steps: 0,
        ..request.clone()
    }));
    assert!(bad(FluxGenerate {
        batch: 0,
        ..request.clone()
    }));
    assert!(bad(FluxGenerate {
        guidance: f64::NAN,
        ..request.clone()
    }));
    let three = FluxConditioning {
        t5: cond.t5.clone().repeat_dim(0, 3),
        pooled: cond.pooled.clone(),
    };
    let r = FluxGenerate {
        batch: 2,
        ..request.clone()
    };
    assert!(generate(&model, &vae, &three, &r, &device, |_| {}, |_| {}).is_err());
}

#[test]
fn loads_embeddings_by_name() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("emb.safetensors");
    let t5: Vec<f32> = (0..2 * 3 * 4).map(|i| i as f32).collect();
    let pooled: Vec<f32> = (0..2 * 5).map(|i| -(i as f32)).collect();
    let bytes = |v: &[f32]| v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<u8>>();
    let (tb, pb) = (bytes(&t5), bytes(&pooled));
    let views = vec![
        (
            T5_KEY,
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 3, 4], &tb)
                .expect("view"),
        ),
        (
            POOLED_KEY,
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, vec![2, 5], &pb)
                .expect("view"),
        ),
    ];
    safetensors::serialize_to_file(views, None, &path).expect("write");
    let cond = load_embeddings::<B>(&path, &Default::default()).expect("load");
    assert_eq!(cond.t5.dims(), [2, 3, 4]);
    assert_eq!(cond.pooled.dims(), [2, 5]);
    let back: Vec<f32> = cond.pooled.into_data().into_vec().expect("f32");
    assert_eq!(back, pooled);
    assert!(load_embeddings::<B>(dir.path().join("missing"), &Default::default()).is_err());
}

#[test]
fn comfy_variants_resolve_with_their_policies() {
    let cfg = FluxConfig::dev();
    let vision = FluxMethod::by_name("comfy-vision-yarn")
        .expect("known")
        .rope(&cfg, 64.0)
        .expect("rope");
    assert_eq!(vision.policy(), dype_core::AxisPolicy::VisionYarn);
    let mut freqs = vec![0.0; vision.pairs()];
    let noise = vision
        .step(&[1.0, 128.0, 256.0], Some(Sigma::NOISE), &mut freqs)
        .expect("step");
    assert_eq!(
        (noise.axes()[1].scales.linear, noise.axes()[1].scales.ntk),
        (2.0, 4.0)
    );
    assert!((noise.axes()[1].attention_factor - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
    let clean = vision
        .step(&[1.0, 128.0, 256.0], Some(Sigma::CLEAN), &mut freqs)
        .expect("step");
    assert_eq!(
        clean.axes()[2].attention_factor,
        1.0,
        "the node's mscale decays to 1"
    );
    let iso = FluxMethod::by_name("comfy-yarn")
        .expect("known")
        .rope(&cfg, 64.0)
        .expect("rope");
    assert_eq!(iso.policy(), dype_core::AxisPolicy::Isotropic);
    let info = iso
        .step(&[1.0, 128.0, 256.0], Some(Sigma::NOISE), &mut freqs)
        .expect("step");
    assert_eq!(
        info.axes()[1].scales.linear,
        4.0,
        "isotropic: both axes at the largest scale"
    );
}

/// `generate` with a state callback is `generate` without one plus a view of every state: the same images, and the
/// packed state at every σ of the grid from the noise (σ = 1) to the result (σ = 0).
#[test]
fn states_are_seen_at_every_sigma_without_changing_the_images() {
    let (model, vae, cond, request) = tiny();
    let device = Default::default();
    let plain = generate(&model, &vae, &cond, &request, &device, |_| {}, |_| {}).expect("generate");
    let mut states = Vec::new();
    let mut last = None;
    let seen = generate(
        &model,
        &vae,
        &cond,
        &request,
        &device,
        |_| {},
        |s| {
            states.push((s.index, s.sigma, s.x.dims()));
            last = Some(s.x.clone());
        },
    )
    .expect("generate with states");
    assert_eq!(seen, plain);
    // The request is 48 × 48 px; a token is 2 × 2 latent values of the VAE's `upscale` px each.
    let side = 48 / (2 * vae.config().upscale());
    let tokens = side * side;
    let channels = model.config().in_channels;
    assert_eq!(states.len(), request.steps + 1);
    for (i, (index, sigma, dims)) in states.iter().enumerate() {
        assert_eq!(*index, i);
        assert_eq!(*dims, [1, tokens, channels]);
        assert!((0.0..=1.0).contains(sigma));
    }
    assert_eq!(states.first().map(|s| s.1), Some(1.0));
    assert_eq!(states.last().map(|s| s.1), Some(0.0));
    // The last state, decoded by `decode_latents`, is the image `generate` returned.
    let result = unpack_latents(last.expect("states"), side, side);
    let decoded = decode_latents(&vae, result, request.vae_tile).expect("decode");
    assert_eq!(to_rgb8_diffusers(decoded).expect("rgb8"), plain);

    // Decoding an unpacked state gives an image of the request's size, whole or tiled.
    let latent = unpack_latents(
        crate::pipeline::seeded_noise::<B, 3>(3, [2, tokens, channels], &device),
        side,
        side,
    );
    // A tile of exactly the latent's side decodes it whole; one value less tiles it.
    let whole = decode_latents(&vae, latent.clone(), 2 * side).expect("decode");
    assert_eq!(whole.dims(), [2, 3, 48, 48]);
    let one = decode_latents(&vae, latent.clone().narrow(0, 1, 1), 2 * side).expect("one");
    let direct = vae.decode(latent.clone().narrow(0, 1, 1)).expect("vae");
    assert_eq!(
        one.into_data().to_vec::<f32>().expect("f32"),
        direct
            .cast(DType::F32)
            .into_data()
            .to_vec::<f32>()
            .expect("f32")
    );
    let tiled = decode_latents(&vae, latent.clone(), 2 * side - 1).expect("tiled");
    assert_eq!(tiled.dims(), [2, 3, 48, 48]);
    assert!(decode_latents(&vae, latent, 0).is_err());
}
