//! Ordinary bad input to the pipelines is refused with a clear, typed error before the work (and
//! its allocations) starts: an output path whose folder is missing, a size whose working memory is
//! far above the limit, a FLUX size whose time shift μ collapses the σ schedule.

#[path = "../../tests/support/mod.rs"]
mod support;

use dype_burn::models::Pretrained;
use std::error::Error;

use dype_burn::backend::Cpu;
use dype_burn::models::fitv2::{FitConfig, FitPosition, FitV2, GuidedChannels};
use dype_burn::pipeline::fitv2::{FitGenerate, FitSampler, generate_pixels};
use dype_burn::pipeline::flux::{FluxGenerate, schedule};
use dype_burn::pipeline::{
    ImageError, PipelineError, Rgb8Image, check_output, memory_limit, write_png,
};
use support::{beside, load_json, tempdir};

#[test]
fn an_output_folder_that_does_not_exist_is_found_before_any_work() {
    let dir = tempdir("bad_input_out");
    let missing = dir.join("no-such-folder").join("image.png");
    let e = check_output(&missing).unwrap_err();
    assert!(matches!(e, ImageError::NoFolder { .. }), "{e:?}");
    assert!(e.to_string().contains("no-such-folder"), "{e}");
    let e = check_output(&dir).unwrap_err();
    assert!(matches!(e, ImageError::IsFolder { .. }), "{e:?}");
    check_output(&dir.join("image.png")).expect("a file in an existing folder");
    check_output(std::path::Path::new("image.png")).expect("a bare file name: the working folder");
}

#[test]
fn a_failed_write_says_the_os_error_once() {
    let dir = tempdir("bad_input_write");
    let image = Rgb8Image {
        width: 1,
        height: 1,
        pixels: vec![0, 0, 0],
    };
    let e = write_png(&dir.join("missing").join("x.png"), &image, &[]).unwrap_err();
    let mut chain = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        chain.push_str(": ");
        chain.push_str(&s.to_string());
        source = s.source();
    }
    assert_eq!(chain.matches("os error").count(), 1, "{chain}");
}

#[test]
fn a_size_far_above_the_memory_limit_is_refused_before_sampling() {
    let (json, v) = load_json("models/fitv2_tiny.json");
    let cfg = FitConfig::from_json(&v["config"]).expect("config");
    let device = Default::default();
    let model = FitV2::<Cpu>::load(
        beside(&json, "fitv2_tiny.safetensors"),
        &cfg,
        burn::tensor::FloatDType::F32,
        &device,
    )
    .expect("load");
    let side = 100_000 / cfg.patch_size * cfg.patch_size;
    let request = FitGenerate {
        class: 0,
        height: side,
        width: side,
        position: FitPosition::Fit(dype_core::presets::FitFreqs::Normal),
        decouple: true,
        sampler: FitSampler::Euler { steps: 2 },
        cfg_scale: 1.5,
        guided: GuidedChannels::default(),
        seed: 0,
    };
    let (limit, _) = memory_limit().expect("Linux reports the available memory");
    // The state alone is 4·C·side² bytes, far beyond any host here.
    assert!((limit as f64) < 4.0 * cfg.in_channels as f64 * (side as f64).powi(2));
    let e = generate_pixels(&model, &request, &device, |_| {}).unwrap_err();
    match &e {
        PipelineError::Memory {
            needed, limit: l, ..
        } => assert!(needed > l),
        other => panic!("expected a memory error, got {other:?}"),
    }
    let text = e.to_string();
    assert!(
        text.contains("DYPE_MEMORY_LIMIT") && text.contains("px"),
        "{text}"
    );
}

#[test]
fn a_collapsing_time_shift_names_mu_and_how_to_pin_it() {
    // 100 000² px: 6 250² image tokens; diffusers' linear μ is far out of range there.
    let request = FluxGenerate::new(100_000, 100_000);
    let e = schedule(&request, 6_250 * 6_250).unwrap_err();
    assert!(
        matches!(e, PipelineError::ScheduleCollapse { tokens, .. } if tokens == 6_250 * 6_250),
        "{e:?}"
    );
    assert!(e.to_string().contains("--pin-mu"), "{e}");
    // A μ in range whose exp swamps the shift: every σ but the last rounds to 1.
    let pinned = FluxGenerate {
        mu: Some(60.0),
        ..FluxGenerate::new(1024, 1024)
    };
    let e = schedule(&pinned, 4096).unwrap_err();
    assert!(
        matches!(e, PipelineError::ScheduleCollapse { mu, .. } if mu == 60.0),
        "{e:?}"
    );
    // An ordinary size keeps its strictly decreasing schedule.
    let (mu, sigmas) = schedule(&FluxGenerate::new(1024, 1024), 4096).expect("1024²");
    assert!((mu - 1.15).abs() < 1e-12);
    assert_eq!(sigmas.len(), 29);
    assert!(sigmas.windows(2).all(|p| p[1] < p[0]));
}
