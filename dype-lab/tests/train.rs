//! Training the shapes FiTv2 (`dype_lab::train`): seeded initialisation, the loss going down on a
//! fixed batch, exact resume, the FiT-layout checkpoint round trip, the batch stream.

use burn::backend::Autodiff;
use burn::tensor::{FloatDType, Int, Tensor, TensorData};
use dype_burn::backend::Cpu;
use dype_burn::models::fitv2::{FitConfig, FitInputs, FitPosition, FitV2, fit_grid, fit_rope};
use dype_burn::rotary::{PairLayout, RotaryEmbedding};
use dype_lab::train::{
    BundleInfo, TrainConfig, Trainer, TrainingError, batch, export_bundle, load_bundle,
};

type Ad = Autodiff<Cpu>;

/// A model small enough for seconds: 16² px, patch 4 (4 × 4 tokens), hidden 32, one block.
fn tiny() -> TrainConfig {
    TrainConfig {
        model: FitConfig {
            patch_size: 4,
            in_channels: 3,
            hidden_size: 32,
            depth: 1,
            num_heads: 1,
            mlp_ratio: 2.0,
            num_classes: 8,
            adaln_lora_dim: 8,
            learn_sigma: false,
            rope_theta: 10_000.0,
            ori_max_pe_len: 4,
        },
        image_size: 16,
        batch: 8,
        learning_rate: 3e-3,
        warmup_steps: 1,
        weight_decay: 0.0,
        grad_clip: 1.0,
        ema_decay: 0.9,
        label_dropout: 0.1,
        seed: 7,
        cooldown: Vec::new(),
    }
}

fn scratch(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dype-train-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

fn weights<B: burn::tensor::backend::Backend>(m: &FitV2<B>) -> Vec<(String, Vec<usize>, Vec<f32>)> {
    m.state_dict().expect("state dict")
}

#[test]
fn a_few_steps_on_a_fixed_batch_lower_the_loss() {
    let device = Default::default();
    let config = tiny();
    let mut trainer = Trainer::<Ad>::new(config.clone(), &device).expect("trainer");
    let fixed = batch(&config, 0).expect("batch");
    let before = trainer.loss_on(&fixed).expect("loss");
    for _ in 0..20 {
        let loss = trainer.step_on(&fixed).expect("step");
        assert!(loss.is_finite());
    }
    let after = trainer.loss_on(&fixed).expect("loss");
    assert_eq!(trainer.step_count(), 20);
    assert_eq!(trainer.losses().len(), 20);
    assert!(
        after < 0.85 * before,
        "20 steps on one batch should lower the loss: {before} → {after}"
    );
}

#[test]
fn initialisation_is_seeded_and_starts_at_zero_velocity() {
    let device = Default::default();
    let config = tiny().model;
    let a = FitV2::<Cpu>::init(&config, 3, &device).expect("init");
    let b = FitV2::<Cpu>::init(&config, 3, &device).expect("init");
    let c = FitV2::<Cpu>::init(&config, 4, &device).expect("init");
    assert_eq!(weights(&a), weights(&b));
    assert_ne!(weights(&a), weights(&c));
    // adaLN-zero: the final layer and every modulation start at zero, so the first velocity is 0.
    let zero = |name: &str| {
        weights(&a)
            .iter()
            .filter(|(k, _, _)| k.starts_with(name))
            .all(|(_, _, v)| v.iter().all(|x| *x == 0.0))
    };
    assert!(
        zero("final_layer.")
            && zero("global_adaLN_modulation.")
            && zero("blocks.0.adaLN_modulation.2")
    );
    assert!(!zero("blocks.0.attn.qkv.weight"));
    let n = config.ori_max_pe_len;
    let rope = fit_rope(&config, FitPosition::from(dype_core::Method::Base), true).expect("rope");
    let rotary = RotaryEmbedding::<Cpu>::new(
        rope,
        fit_grid(n, n, n * n).expect("grid"),
        PairLayout::Interleaved,
        &device,
    )
    .expect("rotary");
    let x = Tensor::<Cpu, 3>::ones([2, n * n, config.token_dim()], &device);
    let t = Tensor::<Cpu, 1>::from_data(TensorData::new(vec![0.3f32, 0.7], [2]), &device);
    let y = Tensor::<Cpu, 1, Int>::from_data(TensorData::new(vec![1i64, 8], [2]), &device);
    let v = a
        .forward(
            FitInputs {
                x,
                t,
                y,
                mask: None,
            },
            rotary.tables(),
        )
        .expect("forward");
    let v: Vec<f32> = v.into_data().to_vec().expect("read");
    assert!(v.iter().all(|x| *x == 0.0));
}

#[test]
fn resume_continues_the_run_exactly() {
    let device = Default::default();
    let config = tiny();
    let dir = scratch("resume");
    let mut straight = Trainer::<Ad>::new(config.clone(), &device).expect("trainer");
    for _ in 0..3 {
        straight.step().expect("step");
    }
    let mut first = Trainer::<Ad>::new(config.clone(), &device).expect("trainer");
    for _ in 0..2 {
        first.step().expect("step");
    }
    first.save(&dir).expect("save");
    drop(first);
    let mut resumed = Trainer::<Ad>::resume(&dir, &device).expect("resume");
    assert_eq!(resumed.step_count(), 2);
    assert_eq!(resumed.config(), &config);
    resumed.step().expect("step");
    assert_eq!(resumed.losses(), straight.losses());
    assert_eq!(weights(resumed.ema()), weights(straight.ema()));
    assert_eq!(weights(resumed.model()), weights(straight.model()));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_bundle_round_trips_through_the_fit_checkpoint_loader() {
    let device = Default::default();
    let config = tiny();
    let dir = scratch("bundle");
    let mut trainer = Trainer::<Ad>::new(config.clone(), &device).expect("trainer");
    trainer.step().expect("step");
    let info = BundleInfo {
        train: config.clone(),
        step: trainer.step_count(),
        command: Some("test".into()),
    };
    export_bundle(trainer.ema(), &info, &dir).expect("export");
    let (model, back) = load_bundle::<Cpu>(&dir, FloatDType::F32, &device).expect("load");
    assert_eq!(back, info);
    assert_eq!(weights(&model), weights(trainer.ema()));
    // The weights file is a FiT checkpoint: the reference's key names, PyTorch [out, in] layout.
    let raw = std::fs::read(dir.join(dype_lab::train::bundle::WEIGHTS)).expect("read");
    let st = safetensors::SafeTensors::deserialize(&raw).expect("safetensors");
    let qkv = st.tensor("blocks.0.attn.qkv.weight").expect("qkv");
    assert_eq!(qkv.shape(), &[96, 32]);
    assert_eq!(st.len(), config.model.key_map().len());
    // A truncated file is rejected by name.
    std::fs::write(
        dir.join(dype_lab::train::bundle::WEIGHTS),
        &raw[..raw.len() / 2],
    )
    .expect("write");
    assert!(load_bundle::<Cpu>(&dir, FloatDType::F32, &device).is_err());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn batches_are_a_function_of_seed_and_step() {
    let config = TrainConfig {
        batch: 64,
        ..tiny()
    };
    let a = batch(&config, 5).expect("batch");
    assert_eq!(a, batch(&config, 5).expect("batch"));
    assert_ne!(a, batch(&config, 6).expect("batch"));
    let other = TrainConfig {
        seed: 8,
        ..config.clone()
    };
    assert_ne!(a, batch(&other, 5).expect("batch"));
    let n = 3 * 16 * 16;
    assert_eq!(a.images.len(), 64 * n);
    assert_eq!(a.noise.len(), 64 * n);
    assert!(a.images.iter().all(|v| (-1.0..=1.0).contains(v)));
    assert!(a.t.iter().all(|t| (0.0..1.0).contains(t)));
    for (label, class) in a.labels.iter().zip(&a.classes) {
        assert!(
            *label == *class as i64 || *label == 8,
            "label {label} for class {class}"
        );
    }
    // Label dropout happens, but not to most samples.
    let dropped = a.labels.iter().filter(|l| **l == 8).count();
    assert!(dropped > 0 && dropped < 20, "dropped {dropped} of 64");
}

#[test]
fn bad_configurations_are_typed_errors() {
    let device: burn::tensor::Device<Cpu> = Default::default();
    let bad = [
        TrainConfig { batch: 0, ..tiny() },
        TrainConfig {
            image_size: 18,
            ..tiny()
        },
        TrainConfig {
            learning_rate: f64::NAN,
            ..tiny()
        },
        TrainConfig {
            ema_decay: 1.0,
            ..tiny()
        },
        TrainConfig {
            label_dropout: 1.5,
            ..tiny()
        },
    ];
    for config in bad {
        assert!(
            matches!(batch(&config, 0), Err(TrainingError::Config(_))),
            "{config:?}"
        );
        assert!(Trainer::<Ad>::new(config, &device).is_err());
    }
    let mut model = tiny();
    model.model.num_heads = 3;
    assert!(matches!(batch(&model, 0), Err(TrainingError::Model(_))));
}

#[test]
fn the_learning_rate_warms_up_and_cools_down() {
    let config = TrainConfig {
        learning_rate: 1e-3,
        warmup_steps: 10,
        cooldown: vec![[100, 200], [200, 300], [400, 500]],
        ..tiny()
    };
    let lr = |s| config.learning_rate_at(s);
    assert!((lr(0) - 1e-4).abs() < 1e-12);
    assert!((lr(9) - 1e-3).abs() < 1e-12);
    assert!((lr(100) - 1e-3).abs() < 1e-12);
    assert!((lr(150) - 5e-4).abs() < 1e-12);
    // A second phase restarts at the peak; after a phase the rate is 0 until the next one.
    assert!((lr(200) - 1e-3).abs() < 1e-12);
    assert!((lr(250) - 5e-4).abs() < 1e-12);
    assert_eq!(lr(300), 0.0);
    assert_eq!(lr(350), 0.0);
    assert!((lr(400) - 1e-3).abs() < 1e-12);
    assert_eq!(lr(500), 0.0);
    assert_eq!(lr(900), 0.0);
    let bad = TrainConfig {
        cooldown: vec![[200, 100]],
        ..tiny()
    };
    assert!(matches!(bad.validate(), Err(TrainingError::Config(_))));
    let overlapping = TrainConfig {
        cooldown: vec![[100, 200], [150, 300]],
        ..tiny()
    };
    assert!(matches!(
        overlapping.validate(),
        Err(TrainingError::Config(_))
    ));
    // The first format, one phase, still reads.
    let json = serde_json::to_value(tiny()).expect("json");
    let mut one = json.clone();
    one["cooldown"] = serde_json::json!([10, 20]);
    let parsed: TrainConfig = serde_json::from_value(one).expect("one phase");
    assert_eq!(parsed.cooldown, vec![[10, 20]]);
    // A cool-down may be added to a run, but not in its past.
    let device = Default::default();
    let mut trainer = Trainer::<Ad>::new(tiny(), &device).expect("trainer");
    trainer.step().expect("step");
    assert!(trainer.add_cooldown(0, 10).is_err());
    trainer
        .add_cooldown(1, 10)
        .expect("cool-down from the current step");
    trainer.add_cooldown(1, 10).expect("a phase the run has");
    assert!(
        trainer.add_cooldown(5, 20).is_err(),
        "overlaps the last phase"
    );
    trainer.add_cooldown(10, 20).expect("a second phase");
    assert_eq!(trainer.config().cooldown, vec![[1, 10], [10, 20]]);
}
