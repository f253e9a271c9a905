//! The FiTv2 trained here on the procedural shapes (`examples/shapes/`, what `fitv2 --demo`
//! samples): it loads through the FiT checkpoint loader, and one sample per class at its training
//! size, with few steps, is recognised by the detector as its class (`shapes::classify`). The
//! stricter quality gate (one object of the right area, ≥ 90 % of 64 samples) is the `train`
//! example's `--gate`; its result is recorded in docs/training.md.

use std::path::Path;

use burn::tensor::FloatDType;
use dype_burn::backend::Cpu;
use dype_lab::shapes::{CLASS_NAMES, CLASSES, MIN_AREA_FRACTION, classify};
use dype_lab::train::{SampleOptions, load_bundle, sample};

#[test]
fn the_bundled_model_draws_every_class_recognisably() {
    let device = Default::default();
    let dir = workspace().join("examples/shapes");
    let (model, info) = load_bundle::<Cpu>(&dir, FloatDType::F32, &device).expect("bundle");
    let size = info.train.image_size;
    assert_eq!(model.config().num_classes, CLASSES);
    assert!(info.step > 0);
    let options = SampleOptions {
        steps: 16,
        ..SampleOptions::default()
    };
    let mut wrong = Vec::new();
    for (class, name) in CLASS_NAMES.iter().enumerate() {
        let image = sample(&model, class, size, size, 0, &options, &device).expect("sample");
        assert_eq!((image.height, image.width), (size, size));
        let seen = classify(&image, MIN_AREA_FRACTION).expect("classify");
        if seen != Some(class) {
            wrong.push(format!("{name} seen as {seen:?}"));
        }
    }
    assert!(wrong.is_empty(), "not recognised: {wrong:?}");
}

/// The workspace root (the bundled model, `docs/` and the fixtures live there).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
