//! The lab (`dype_lab::lab`): its metrics on known inputs (the calibration rows separate as the docs
//! claim), the 1× identity of every method, and a quick run writing all its outputs.

use dype_burn::models::Pretrained;
use std::path::Path;

use burn::tensor::FloatDType;
use dype_burn::backend::Cpu;
use dype_burn::models::fitv2::{FitPosition, FitV2};
use dype_lab::lab::metrics::{self, Reference, bootstrap, detail_error, mean_at};
use dype_lab::lab::progression::{Progression, gamma};
use dype_lab::lab::{Cell, LabConfig, RunOptions, frequency_rows, resize, tile};
use dype_lab::shapes::{CLASSES, Image, RenderConfig, Sample};
use dype_lab::train::{BundleInfo, SampleOptions, load_bundle, sample, shapes_model};

/// The bundled shapes model (`examples/shapes`, on the default CPU device) and its bundle info.
fn bundled() -> (FitV2<Cpu>, BundleInfo) {
    let dir = workspace().join("examples/shapes");
    load_bundle::<Cpu>(&dir, FloatDType::F32, &Default::default()).expect("bundle")
}

fn renders(n: usize, first_seed: u64, h: usize, w: usize) -> (Vec<Image>, Vec<usize>) {
    let render = RenderConfig::default();
    let classes: Vec<usize> = (0..n).map(|i| i % CLASSES).collect();
    let images = classes
        .iter()
        .enumerate()
        .map(|(i, &class)| {
            render
                .render(
                    Sample {
                        class,
                        seed: first_seed + i as u64,
                    },
                    h,
                    w,
                )
                .expect("render")
        })
        .collect();
    (images, classes)
}

/// At 2× and 4×: fresh renders score as the renderer (one object, no detail error); the 1×
/// render upscaled keeps the layout but loses detail (negative); the 1× render tiled has no
/// single object. The metrics separate the three.
#[test]
fn calibration_rows_separate_as_claimed() {
    let device = Default::default();
    let render = RenderConfig::default();
    for s in [2usize, 4] {
        let (h, w) = (32 * s, 32 * s);
        let reference = Reference::new(&render, h, w, 16, 1_000_000).expect("reference");
        let (fresh, classes) = renders(16, 5_000, h, w);
        let (small, _) = renders(16, 5_000, 32, 32);
        let up = resize::<Cpu>(&small, h, w, &device).expect("resize");
        let tiled = tile(&small, h, w).expect("tile");
        let row = |images: &[Image]| {
            metrics::row_metrics(images, &classes, &reference, 200, 7)
                .expect("metrics")
                .0
        };
        let (fresh, up, tiled) = (row(&fresh), row(&up), row(&tiled));
        assert!(
            fresh.one.mean >= 0.99,
            "renderer at {s}×: one = {:?}",
            fresh.one
        );
        assert!(
            fresh.detail.mean.abs() < 0.1,
            "renderer at {s}×: detail = {:?}",
            fresh.detail
        );
        assert!(up.one.mean >= 0.99, "upscaled at {s}×: one = {:?}", up.one);
        assert!(
            up.detail.hi < -0.2,
            "upscaled at {s}×: detail = {:?}",
            up.detail
        );
        assert!(
            up.detail.hi < fresh.detail.lo,
            "blur must separate from the renderer"
        );
        assert_eq!(tiled.one.mean, 0.0, "tiled at {s}×: one = {:?}", tiled.one);
        // Tiling keeps the texture (and adds edges): it fails on structure, not as blur.
        assert!(
            tiled.detail.lo > -0.1,
            "tiled at {s}×: detail = {:?}",
            tiled.detail
        );
        assert!(
            tiled.centre_err.mean > 0.1,
            "tiled at {s}×: centre = {:?}",
            tiled.centre_err
        );
        // Blur grows with the upscale factor.
        if s == 4 {
            assert!(up.detail.mean < -0.5, "4× upscale detail {:?}", up.detail);
        }
    }
}

/// The model's own 1× sample upscaled to 2× is blurred by the detail metric (the trivial
/// baseline every method must beat on detail).
#[test]
fn the_models_upscaled_output_reads_as_blurred() {
    let device = Default::default();
    let model = bundled().0;
    let options = SampleOptions {
        steps: 8,
        ..SampleOptions::default()
    };
    let classes: Vec<usize> = (0..CLASSES).collect();
    let small: Vec<Image> = classes
        .iter()
        .map(|&c| sample(&model, c, 32, 32, c as u64, &options, &device).expect("sample"))
        .collect();
    let up = resize::<Cpu>(&small, 64, 64, &device).expect("resize");
    let reference = Reference::new(&RenderConfig::default(), 64, 64, 8, 1_000_000).expect("ref");
    let (m, _) = metrics::row_metrics(&up, &classes, &reference, 200, 3).expect("metrics");
    assert!(
        m.detail.mean < -0.2,
        "upscaled model output: detail {:?}",
        m.detail
    );
}

/// At the training size every method of the full lab leaves the frequencies native with
/// attention factor 1, and samples the same bits as base RoPE (`lab::run` fails otherwise).
/// (FiT's `ntk-aware-pro1`/`pro2` are not in the lab: FiT's proportional attention is not 1 at
/// the training size.)
#[test]
fn every_method_is_the_base_rope_at_the_training_size() {
    let config = shapes_model();
    let cell = Cell::new("1x", 32, 32);
    let mut not_native = Vec::new();
    for entry in dype_core::presets::METHODS {
        let position: FitPosition = entry.name.parse().expect("registry name");
        let rows = frequency_rows(&config, entry.name, position, &cell, 8).expect("rows");
        if rows
            .iter()
            .any(|r| r.native_pairs != 1.0 || r.attention_factor != 1.0)
        {
            not_native.push(entry.name);
        }
    }
    eprintln!("not the base RoPE at 1×: {not_native:?}");
    for name in &LabConfig::full(32).methods {
        assert!(
            !not_native.contains(&name.as_str()),
            "{name} is not the base RoPE at 1×"
        );
    }
    let device = Default::default();
    let model = bundled().0;
    let mut lab = LabConfig::full(32);
    lab.cells.truncate(1);
    lab.samples = 2;
    lab.steps = 3;
    lab.bootstrap = 10;
    lab.reference_per_class = 2;
    let out = tempdir("identity");
    dype_lab::lab::run(
        &model,
        32,
        &lab,
        &out,
        &RunOptions::default(),
        &device,
        |_| {},
    )
    .expect("1× identical for every method");
    let _ = std::fs::remove_dir_all(&out);
}

/// `lab --quick`'s configuration writes every output, with a row per method and calibration.
#[test]
fn the_quick_lab_writes_all_its_outputs() {
    let device = Default::default();
    let (model, info) = bundled();
    let config = LabConfig::quick(info.train.image_size);
    let out = tempdir("quick");
    let report = dype_lab::lab::run(
        &model,
        32,
        &config,
        &out,
        &RunOptions::default(),
        &device,
        |_| {},
    )
    .expect("lab");
    for f in [
        "lab.json",
        "comparison.md",
        "comparison.png",
        "resolution_grid.png",
        "progression.md",
        "progression.png",
        "frequencies.md",
    ] {
        let len = std::fs::metadata(out.join(f)).map(|m| m.len()).unwrap_or(0);
        assert!(len > 100, "{f} missing or empty");
    }
    for cell in &config.cells {
        let f = out.join(format!("grid_{}.png", cell.label));
        assert!(f.exists(), "{} missing", f.display());
    }
    let json: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("lab.json")).expect("read"))
            .expect("json");
    assert_eq!(
        json["cells"].as_array().map(Vec::len),
        Some(config.cells.len())
    );
    for cell in &report.cells {
        let methods = cell.rows.iter().filter(|r| r.kind == "method").count();
        assert_eq!(methods, config.methods.len());
        let calibrations = cell.rows.len() - methods;
        let expected = if cell.cell.height == 32 && cell.cell.width == 32 {
            1
        } else {
            4
        };
        assert_eq!(
            calibrations, expected,
            "calibration rows at {}",
            cell.cell.label
        );
        assert_eq!(cell.progression.len(), config.methods.len());
        for map in cell.progression.values() {
            assert_eq!(map.t.len(), config.steps + 1);
            assert_eq!(map.t.first(), Some(&1.0));
            assert!(
                map.gamma
                    .last()
                    .is_some_and(|r| r.iter().all(|g| *g == 1.0 || *g == 0.0))
            );
        }
    }
    let md = std::fs::read_to_string(out.join("comparison.md")).expect("md");
    assert!(md.contains("render 1× tiled") && md.contains("dy-yarn"));
    // Resuming takes every saved cell as it is; another config samples again.
    let mut evaluations = 0;
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    let again = dype_lab::lab::run(&model, 32, &config, &out, &resume, &device, |p| {
        eprintln!("resumed run: {}", p.what);
        evaluations += 1
    })
    .expect("resumed lab");
    // (Compared as JSON: a statistic with no data is NaN, and NaN ≠ NaN.)
    assert_eq!(
        serde_json::to_string(&again.cells).expect("json"),
        serde_json::to_string(&report.cells).expect("json")
    );
    assert_eq!(
        evaluations, 0,
        "a resumed run of a finished lab samples nothing"
    );
    let mut other = config.clone();
    other.steps += 1;
    other.cells.truncate(1);
    dype_lab::lab::run(&model, 32, &other, &out, &resume, &device, |_| {
        evaluations += 1
    })
    .expect("other");
    assert!(evaluations > 0);
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn bootstrap_intervals_cover_the_mean_and_shrink_with_data() {
    let values: Vec<f64> = (0..200).map(|i| (i % 2) as f64).collect();
    let wide = bootstrap(20, 500, 1, |idx| mean_at(&values[..20], idx));
    let narrow = bootstrap(200, 500, 1, |idx| mean_at(&values, idx));
    assert_eq!(wide.mean, 0.5);
    assert!(wide.lo < 0.5 && wide.hi > 0.5);
    assert!(narrow.hi - narrow.lo < wide.hi - wide.lo);
    // A constant has a zero-width interval.
    let ones = vec![1.0; 10];
    let c = bootstrap(10, 100, 2, |idx| mean_at(&ones, idx));
    assert_eq!((c.lo, c.mean, c.hi), (1.0, 1.0, 1.0));
}

#[test]
fn gamma_is_clipped_and_zero_where_nothing_changes() {
    assert_eq!(gamma(-1.0, -1.0, -3.0), 0.0);
    assert_eq!(gamma(-3.0, -1.0, -3.0), 1.0);
    assert_eq!(gamma(-2.0, -1.0, -3.0), 0.5);
    assert_eq!(gamma(-5.0, -1.0, -3.0), 1.0);
    assert_eq!(gamma(0.0, -1.0, -3.0), 0.0);
    assert_eq!(gamma(-2.0, -1.0, -1.0), 0.0);
    assert_eq!(gamma(f64::NAN, -1.0, -3.0), 0.0);
}

/// A sharp image's spectrum settles as the state moves from noise to it: γ is 0 at the noise,
/// 1 at the result, and between for the halfway blend.
#[test]
fn progression_runs_from_noise_to_the_result() {
    let (images, _) = renders(2, 9, 32, 32);
    let noise: Vec<f32> = (0..2 * 3 * 32 * 32)
        .map(|i| ((i * 7919 % 1000) as f32 / 1000.0 - 0.5) * 2.0)
        .collect();
    let data: Vec<f32> = images
        .iter()
        .flat_map(|im| im.data.iter().copied())
        .collect();
    let mid: Vec<f32> = noise
        .iter()
        .zip(&data)
        .map(|(n, d)| 0.5 * n + 0.5 * d)
        .collect();
    let mut p = Progression::new();
    p.add(0, 1.0, &noise, 32, 32).expect("noise");
    p.add(1, 0.5, &mid, 32, 32).expect("mid");
    p.add(2, 0.0, &data, 32, 32).expect("data");
    let map = p.map().expect("map");
    assert_eq!(map.t, vec![1.0, 0.5, 0.0]);
    assert!(map.gamma[0].iter().all(|g| *g == 0.0));
    let moved = map.gamma[1]
        .iter()
        .filter(|g| **g > 0.0 && **g < 1.0)
        .count();
    assert!(
        moved > map.frequency.len() / 2,
        "γ at the blend: {:?}",
        map.gamma[1]
    );
    assert_eq!(map.defined.len(), map.frequency.len());
    // A state of another size is refused.
    assert!(p.add(3, 0.0, &vec![0.0; 3 * 16 * 16], 16, 16).is_err());
}

#[test]
fn detail_error_is_signed_and_zero_on_the_reference() {
    let reference = Reference::new(&RenderConfig::default(), 32, 32, 2, 0).expect("reference");
    let band = metrics::DETAIL_BAND;
    assert!(detail_error(&reference.power, &reference, band).abs() < 1e-12);
    let low: Vec<f64> = reference.power.iter().map(|p| p / 10.0).collect();
    let high: Vec<f64> = reference.power.iter().map(|p| p * 10.0).collect();
    assert!((detail_error(&low, &reference, band) + 1.0).abs() < 1e-6);
    assert!((detail_error(&high, &reference, band) - 1.0).abs() < 1e-6);
    // No power in the band at all: no ratio.
    let zeros = vec![0.0; reference.power.len()];
    assert!(detail_error(&zeros, &reference, band).is_nan());
    // Power moved between the band's bins (as a periodic image does) keeps the band's power.
    let mut moved = reference.power.clone();
    let in_band: Vec<usize> = (0..moved.len())
        .filter(|&k| (band.0..=band.1).contains(&reference.frequency[k]))
        .collect();
    let (a, b) = (in_band[0], in_band[1]);
    let total = reference.count[a] as f64 * moved[a] + reference.count[b] as f64 * moved[b];
    moved[a] = 0.0;
    moved[b] = total / reference.count[b] as f64;
    assert!(detail_error(&moved, &reference, band).abs() < 1e-12);
    assert!(detail_error(&reference.power, &reference, (0.9, 1.0)).is_nan());
}

#[test]
fn tile_repeats_and_refuses_non_multiples() {
    let (images, _) = renders(1, 3, 32, 32);
    let t = tile(&images, 64, 96).expect("tile");
    let im = &t[0];
    assert_eq!((im.height, im.width), (64, 96));
    for (r, c) in [(0, 0), (5, 7), (31, 31)] {
        for ch in 0..3 {
            let v = images[0].at(ch, r, c);
            assert_eq!(im.at(ch, r + 32, c + 64), v);
            assert_eq!(im.at(ch, r, c + 32), v);
        }
    }
    assert!(tile(&images, 48, 64).is_err());
}

fn tempdir(name: &str) -> std::path::PathBuf {
    let dir = std::env::temp_dir().join(format!("dype-lab-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// Two processes can share a run: each samples only its cells (`RunOptions::only`) into the same
/// directory, and a resumed run assembles them without sampling, equal to a run made in one go.
#[test]
fn cells_sampled_apart_assemble_into_the_same_report() {
    let device = Default::default();
    let model = bundled().0;
    let config = tiny_config(2);
    let whole_dir = tempdir("whole");
    let whole = dype_lab::lab::run(
        &model,
        32,
        &config,
        &whole_dir,
        &RunOptions::default(),
        &device,
        |_| {},
    )
    .expect("whole");
    assert!(whole.is_complete());
    let split = tempdir("split");
    let only = |label: &str| RunOptions {
        resume: true,
        only: vec![label.to_string()],
        ..RunOptions::default()
    };
    // The second cell first: its calibration needs the model's 1× samples, which it makes itself.
    let second = config.cells[1].label.clone();
    let part = dype_lab::lab::run(&model, 32, &config, &split, &only(&second), &device, |_| {})
        .expect("second cell");
    assert!(!part.is_complete());
    assert!(
        !split.join("lab.json").exists(),
        "combined outputs wait for every cell"
    );
    let first = config.cells[0].label.clone();
    dype_lab::lab::run(&model, 32, &config, &split, &only(&first), &device, |_| {}).expect("first");
    let mut evaluations = 0;
    let assembled = dype_lab::lab::run(
        &model,
        32,
        &config,
        &split,
        &RunOptions {
            resume: true,
            ..RunOptions::default()
        },
        &device,
        |_| evaluations += 1,
    )
    .expect("assembled");
    assert_eq!(evaluations, 0, "every cell was on disk");
    assert!(assembled.is_complete() && split.join("lab.json").exists());
    assert!(assembled.cell_seconds() > 0.0);
    let without_time = |r: &dype_lab::lab::LabReport| {
        r.cells
            .iter()
            .map(|c| {
                let mut c = c.clone();
                c.seconds = 0.0;
                serde_json::to_string(&c).expect("json")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(without_time(&assembled), without_time(&whole));
    let bad = RunOptions {
        only: vec!["no such cell".into()],
        ..RunOptions::default()
    };
    assert!(dype_lab::lab::run(&model, 32, &config, &split, &bad, &device, |_| {}).is_err());
    let _ = std::fs::remove_dir_all(&whole_dir);
    let _ = std::fs::remove_dir_all(&split);
}

/// The fingerprint that guards `--resume` is a function of the weights: stable for one model,
/// different for another.
#[test]
fn the_model_fingerprint_follows_the_weights() {
    let device = Default::default();
    let model = bundled().0;
    let a = dype_lab::lab::model_fingerprint(&model).expect("fingerprint");
    let b = dype_lab::lab::model_fingerprint(&model).expect("fingerprint");
    assert_eq!(a, b);
    assert_eq!(a.len(), 64);
    let other = FitV2::<Cpu>::init(&shapes_model(), 1, &device).expect("init");
    assert_ne!(
        a,
        dype_lab::lab::model_fingerprint(&other).expect("fingerprint")
    );
}

/// A cell interrupted after some of its methods resumes method by method: each method's results
/// are saved as soon as they are done, and the 1× identity check still holds across invocations.
#[test]
fn an_interrupted_cell_resumes_method_by_method() {
    let device = Default::default();
    let model = bundled().0;
    let config = tiny_config(2);
    let out = tempdir("methods");
    let first = dype_lab::lab::run(
        &model,
        32,
        &config,
        &out,
        &RunOptions::default(),
        &device,
        |_| {},
    )
    .expect("first");
    let resume = RunOptions {
        resume: true,
        ..RunOptions::default()
    };
    // As if the process had stopped after the last method of each cell, before the cell's file.
    for cell in &config.cells {
        std::fs::remove_file(out.join(format!("cells/{}.json", cell.label))).expect("remove");
    }
    let mut last = 0;
    let mut evaluations = 0;
    let again = dype_lab::lab::run(&model, 32, &config, &out, &resume, &device, |p| {
        if p.done > last {
            evaluations += p.done - last;
            last = p.done;
        }
    })
    .expect("resumed");
    let skipped = config.cells.len() * config.methods.len() * config.steps;
    assert_eq!(
        evaluations, skipped,
        "progress counts the saved methods as done"
    );
    let rows = |r: &dype_lab::lab::LabReport| {
        r.cells
            .iter()
            .map(|c| {
                serde_json::to_string(&(&c.rows, &c.frequencies, &c.progression)).expect("json")
            })
            .collect::<Vec<_>>()
    };
    assert_eq!(rows(&again), rows(&first));
    // A saved 1× method whose output differs from base RoPE's fails the identity check.
    let path = out.join("cells/1x/method_1.json");
    let mut saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read")).expect("json");
    saved["bits"] = serde_json::Value::String("0".repeat(64));
    std::fs::write(&path, saved.to_string()).expect("write");
    std::fs::remove_file(out.join("cells/1x.json")).expect("remove");
    let err = dype_lab::lab::run(&model, 32, &config, &out, &resume, &device, |_| {});
    assert!(
        matches!(err, Err(dype_lab::lab::LabError::NotIdentity { .. })),
        "{err:?}"
    );
    let _ = std::fs::remove_dir_all(&out);
}

/// One cell's methods split over two runs (`RunOptions::methods`): neither finishes the cell
/// alone, and a resumed run assembles it, equal to a run made in one go.
#[test]
fn a_cells_methods_can_be_split_over_two_runs() {
    let device = Default::default();
    let model = bundled().0;
    let config = tiny_config(1);
    let whole_dir = tempdir("split-whole");
    let whole = dype_lab::lab::run(
        &model,
        32,
        &config,
        &whole_dir,
        &RunOptions::default(),
        &device,
        |_| {},
    )
    .expect("whole");
    let out = tempdir("split-methods");
    let part = |method: &str| RunOptions {
        resume: true,
        methods: vec![method.to_string()],
        ..RunOptions::default()
    };
    let a = dype_lab::lab::run(&model, 32, &config, &out, &part("pi"), &device, |_| {}).expect("a");
    assert!(
        a.cells.is_empty(),
        "base is not on disk yet: the cell waits"
    );
    let b =
        dype_lab::lab::run(&model, 32, &config, &out, &part("base"), &device, |_| {}).expect("b");
    assert_eq!(b.cells.len(), 1, "with pi on disk, the cell is finished");
    let key = |r: &dype_lab::lab::LabReport| {
        serde_json::to_string(&(&r.cells[0].rows, &r.cells[0].progression)).expect("json")
    };
    assert_eq!(key(&b), key(&whole));
    let bad = RunOptions {
        methods: vec!["no-such-method".into()],
        ..RunOptions::default()
    };
    assert!(dype_lab::lab::run(&model, 32, &config, &out, &bad, &device, |_| {}).is_err());
    let _ = std::fs::remove_dir_all(&whole_dir);
    let _ = std::fs::remove_dir_all(&out);
}

/// The quick lab cut to base and PI, the first `cells` cells, 2 samples of 2 steps: seconds.
fn tiny_config(cells: usize) -> LabConfig {
    let mut config = LabConfig::quick(32);
    config.methods.truncate(2);
    config.cells.truncate(cells);
    config.samples = 2;
    config.steps = 2;
    config.batch = 2;
    config.bootstrap = 10;
    config.reference_per_class = 1;
    config
}

/// The full run committed in `docs/lab/` is the one the docs discuss and this code would make: it
/// is complete, ran the full config on the bundled weights under the current metric definitions,
/// its Markdown outputs are what [`dype_lab::lab::comparison_markdown`] and
/// [`dype_lab::lab::progression_markdown`] write from its `lab.json`, every row of its comparison
/// tables appears verbatim in docs/evidence.md, and all its methods gave the same bits at 1×.
#[test]
fn the_committed_full_run_matches_the_code_and_the_docs() {
    let root = workspace();
    let lab = root.join("docs/lab");
    let read =
        |p: &Path| std::fs::read_to_string(p).unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    let report = committed_report();
    assert!(report.is_complete());
    assert_eq!(report.config, LabConfig::full(32));
    assert_eq!(report.metrics_version, dype_lab::lab::METRICS_VERSION);
    let model = bundled().0;
    assert_eq!(
        report.model,
        dype_lab::lab::model_fingerprint(&model).expect("fingerprint"),
        "docs/lab was sampled with other weights than examples/shapes"
    );

    let comparison = dype_lab::lab::comparison_markdown(&report);
    assert_eq!(comparison, read(&lab.join("comparison.md")));
    assert_eq!(
        dype_lab::lab::progression_markdown(&report),
        read(&lab.join("progression.md"))
    );
    assert_eq!(
        dype_lab::lab::frequencies_markdown(&report),
        read(&lab.join("frequencies.md"))
    );
    let evidence = read(&root.join("docs/evidence.md"));
    let rows: Vec<&str> = comparison
        .lines()
        .filter(|l| l.starts_with("| ") && l.matches('|').count() == 6 && !l.starts_with("| row"))
        .collect();
    let expected_rows: usize = report.cells.iter().map(|c| c.rows.len()).sum();
    assert_eq!(rows.len(), expected_rows);
    for row in rows {
        assert!(
            evidence.contains(row),
            "docs/evidence.md lacks the row {row}"
        );
    }

    let bits: Vec<String> = (0..report.config.methods.len())
        .map(|i| {
            let v: serde_json::Value =
                serde_json::from_str(&read(&lab.join(format!("cells/1x/method_{i}.json"))))
                    .expect("method json");
            v["bits"].as_str().expect("bits").to_owned()
        })
        .collect();
    assert_eq!(bits.len(), 10);
    assert!(bits.iter().all(|b| b.len() == 64 && *b == bits[0]));
}

fn committed_report() -> dype_lab::lab::LabReport {
    let path = workspace().join("docs/lab/lab.json");
    let text = std::fs::read_to_string(&path).expect("docs/lab/lab.json");
    serde_json::from_str(&text).expect("lab.json")
}

/// The dynamic − static differences pair the samples: a method minus itself is exactly 0 with an
/// empty interval, `b − a` is `a − b` negated (the same resamples), the point estimate is the
/// difference of the rows' means, and at 1× (every method the base RoPE) every pair is 0.
#[test]
fn paired_differences_pair_the_samples() {
    use dype_lab::lab::{DYNAMIC_PAIRS, paired_difference};
    let report = committed_report();
    let resamples = report.config.bootstrap;
    for cell in &report.cells {
        let row = |name: &str| {
            cell.rows
                .iter()
                .find(|r| r.name == name)
                .expect("method row")
        };
        let own = paired_difference(cell, "yarn", "yarn", resamples).expect("yarn");
        for e in [own.one, own.area_err] {
            assert_eq!((e.mean, e.lo, e.hi), (0.0, 0.0, 0.0));
        }
        assert!(paired_difference(cell, "dy-yarn", "no-such-method", resamples).is_none());
        for (a, b) in DYNAMIC_PAIRS {
            let ab = paired_difference(cell, a, b, resamples).expect("pair");
            let ba = paired_difference(cell, b, a, resamples).expect("pair");
            for (x, y) in [(ab.one, ba.one), (ab.area_err, ba.area_err)] {
                assert_eq!((x.mean, x.lo, x.hi), (-y.mean, -y.hi, -y.lo));
            }
            assert_eq!(
                ab.one.mean,
                row(a).metrics.one.mean - row(b).metrics.one.mean
            );
            assert_eq!(
                ab.area_err.mean,
                row(a).metrics.area_err.mean - row(b).metrics.area_err.mean
            );
            if cell.cell.label == "1x" {
                assert_eq!(
                    (ab.one.lo, ab.one.hi, ab.area_err.lo, ab.area_err.hi),
                    (0.0, 0.0, 0.0, 0.0)
                );
            }
        }
    }
}

/// `generate` (FiTv2 + VAE) with a state callback returns the image it gives without one and lends every state from the
/// noise to the result; recorded on the latents and decoded, the progression of that one run is
/// written as JSON, Markdown and PNG and reads back (what `fitv2 --progression DIR` does with
/// real weights).
#[test]
fn a_pipeline_runs_progression_is_written_and_reads_back() {
    use dype_burn::models::fitv2::{FitConfig, GuidedChannels};
    use dype_burn::models::vae::{VaeConfig, VaeDecoder};
    use dype_burn::pipeline::fitv2::{FitGenerate, FitSampler, generate};
    use dype_lab::lab::progression::{ProgressionRun, run_markdown, write_run};

    let device = Default::default();
    let models = workspace().join("tests/fixtures/models");
    let json = |name: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(models.join(name)).expect("fixture"))
            .expect("json")
    };
    let config = FitConfig::from_json(&json("fitv2_tiny.json")["config"]).expect("config");
    let vaes = json("vae_tiny.json");
    let sd = vaes["vaes"]
        .as_array()
        .and_then(|a| a.iter().find(|v| v["kind"] == "sd"))
        .expect("sd vae");
    let vae_config = VaeConfig::from_diffusers_json(&sd["config"]).expect("vae config");
    let model = FitV2::<Cpu>::load(
        models.join("fitv2_tiny.safetensors"),
        &config,
        FloatDType::F32,
        &device,
    )
    .expect("model");
    let vae = VaeDecoder::<Cpu>::load(
        models.join("vae_sd_tiny.safetensors"),
        &vae_config,
        FloatDType::F32,
        &device,
    )
    .expect("vae");
    let unit = vae_config.upscale() * config.patch_size;
    let steps = 4;
    let request = FitGenerate {
        class: 3,
        height: 12 * unit,
        width: 12 * unit,
        position: "dy-yarn".parse().expect("method"),
        decouple: true,
        sampler: FitSampler::Euler { steps },
        cfg_scale: 1.5,
        guided: GuidedChannels::Reference,
        seed: 5,
    };
    let plain = generate(&model, &vae, &request, &device, |_| {}, |_| {}).expect("generate");
    let (mut latent, mut decoded) = (Progression::new(), Progression::new());
    let mut seen = Vec::new();
    let image = generate(
        &model,
        &vae,
        &request,
        &device,
        |_| {},
        |st| {
            seen.push((st.index, st.t_fit));
            let t = 1.0 - st.t_fit;
            latent
                .add_tensor(st.index, t, st.x.clone())
                .expect("latent");
            let image = vae.decode(st.x.clone()).expect("decode");
            decoded.add_tensor(st.index, t, image).expect("decoded");
        },
    )
    .expect("generate with states");
    assert_eq!(image, plain);
    assert_eq!(seen.len(), steps + 1);
    assert!(seen.iter().enumerate().all(|(i, s)| s.0 == i));
    assert_eq!((seen[0].1, seen[steps].1), (0.0, 1.0));

    let dir = tempdir("progression_run");
    for (prog, unit, side) in [
        (latent, "cycles/latent", 12 * config.patch_size),
        (decoded, "cycles/px", 12 * unit),
    ] {
        let run = ProgressionRun {
            title: format!("tiny FiTv2, {unit}"),
            unit: unit.into(),
            map: prog.map().expect("map"),
        };
        assert_eq!(run.map.t.len(), steps + 1);
        assert_eq!((run.map.t[0], run.map.t[steps]), (1.0, 0.0));
        // Radial bins of a side × side plane: up to the Nyquist frequency 1/2.
        assert_eq!(run.map.frequency.len(), side / 2);
        let out = dir.join(unit.replace('/', "_"));
        write_run(&out, &run).expect("write");
        let back: ProgressionRun = serde_json::from_str(
            &std::fs::read_to_string(out.join("progression.json")).expect("json"),
        )
        .expect("parse");
        assert_eq!(back, run);
        let md = std::fs::read_to_string(out.join("progression.md")).expect("md");
        assert_eq!(md, run_markdown(&run));
        assert!(
            ["| low |", "| middle |", "| high |"]
                .iter()
                .all(|b| md.contains(b))
        );
        assert!(
            std::fs::metadata(out.join("progression.png"))
                .expect("png")
                .len()
                > 0
        );
    }
}

/// The thirds of a map: bin ranges, and the mean settling time over the bins where γ is defined
/// and reaches the level.
#[test]
fn thirds_average_the_settling_times_of_each_third() {
    use dype_lab::lab::ProgressionMap;
    // Six bins, three steps (t = 1, 0.5, 0): bins 0–1 settle at t = 0.5, 2–5 at t = 0; bin 1 is
    // undefined, bin 4 never reaches the level.
    let map = ProgressionMap {
        frequency: vec![0.1, 0.2, 0.3, 0.4, 0.5, 0.6],
        t: vec![1.0, 0.5, 0.0],
        log_psd: vec![vec![0.0; 6]; 3],
        gamma: vec![
            vec![0.0; 6],
            vec![0.6, 0.6, 0.1, 0.1, 0.1, 0.1],
            vec![1.0, 1.0, 1.0, 1.0, 0.2, 1.0],
        ],
        defined: vec![true, false, true, true, true, true],
    };
    let [low, middle, high] = map.thirds(0.5);
    assert_eq!(low.frequencies, (0.1, 0.2));
    assert_eq!((low.t, low.used, low.bins), (Some(0.5), 1, 2));
    assert_eq!((middle.t, middle.used, middle.bins), (Some(0.0), 2, 2));
    assert_eq!((high.t, high.used, high.bins), (Some(0.0), 1, 2));
    assert_eq!(high.frequencies, (0.5, 0.6));
    let none = map.thirds(2.0);
    assert!(none.iter().all(|b| b.t.is_none() && b.used == 0));
}

/// At 4:1 (the training height, four times the width) the calibration rows separate too: fresh
/// renders are the floor, the 1× render stretched along the width keeps one object but leaves
/// the renderer's area range (per-axis PI's failure), and the 1× render tiled has no single
/// object and a large centre error.
#[test]
fn calibration_rows_separate_at_4_to_1() {
    let device = Default::default();
    let render = RenderConfig::default();
    let (h, w) = (32, 128);
    let reference = Reference::new(&render, h, w, 16, 1_000_000).expect("reference");
    let (fresh, classes) = renders(16, 5_000, h, w);
    let (small, _) = renders(16, 5_000, 32, 32);
    let stretched = resize::<Cpu>(&small, h, w, &device).expect("resize");
    let tiled = tile(&small, h, w).expect("tile");
    let row = |images: &[Image]| {
        metrics::row_metrics(images, &classes, &reference, 200, 7)
            .expect("metrics")
            .0
    };
    let (fresh, stretched, tiled) = (row(&fresh), row(&stretched), row(&tiled));
    assert!(fresh.one.mean >= 0.99, "renderer: {:?}", fresh.one);
    assert!(fresh.area_err.hi < 0.005, "renderer: {:?}", fresh.area_err);
    assert!(
        fresh.detail.mean.abs() < 0.1,
        "renderer: {:?}",
        fresh.detail
    );
    assert!(stretched.one.mean >= 0.99, "stretched: {:?}", stretched.one);
    assert!(
        stretched.area_err.lo > fresh.area_err.hi + 0.02,
        "stretched: {:?}",
        stretched.area_err
    );
    assert_eq!(tiled.one.mean, 0.0, "tiled: {:?}", tiled.one);
    assert!(tiled.centre_err.lo > 0.1, "tiled: {:?}", tiled.centre_err);
}

/// A diverged state (NaN, ∞) is refused by `Progression::add` instead of read as zero power, and
/// `write_run` refuses a malformed map (one state, rows of the wrong length, non-finite values)
/// before writing anything.
#[test]
fn malformed_progressions_are_refused() {
    use dype_lab::lab::ProgressionMap;
    use dype_lab::lab::progression::{ProgressionRun, write_run};
    let mut prog = Progression::new();
    let mut plane = vec![0.5f32; 16];
    prog.add(0, 1.0, &plane, 4, 4).expect("finite");
    plane[3] = f32::NAN;
    assert!(prog.add(1, 0.5, &plane, 4, 4).is_err());
    plane[3] = f32::INFINITY;
    assert!(prog.add(1, 0.5, &plane, 4, 4).is_err());

    let good = ProgressionMap {
        frequency: vec![0.25, 0.5],
        t: vec![1.0, 0.0],
        log_psd: vec![vec![0.0, 0.0], vec![1.0, -1.0]],
        gamma: vec![vec![0.0, 0.0], vec![1.0, 1.0]],
        defined: vec![true, true],
    };
    good.check().expect("good map");
    let dir = tempdir("malformed_progression");
    let broken = [
        ProgressionMap {
            t: vec![1.0],
            log_psd: vec![vec![0.0, 0.0]],
            gamma: vec![vec![0.0, 0.0]],
            ..good.clone()
        },
        ProgressionMap {
            log_psd: vec![vec![0.0], vec![1.0, -1.0]],
            ..good.clone()
        },
        ProgressionMap {
            gamma: vec![vec![0.0, f64::NAN], vec![1.0, 1.0]],
            ..good.clone()
        },
        ProgressionMap {
            frequency: vec![0.5, 0.25],
            ..good.clone()
        },
    ];
    for (i, map) in broken.into_iter().enumerate() {
        assert!(map.check().is_err(), "map {i}");
        let out = dir.join(format!("m{i}"));
        let run = ProgressionRun {
            title: "broken".into(),
            unit: "cycles/px".into(),
            map,
        };
        assert!(write_run(&out, &run).is_err(), "map {i}");
        assert!(!out.join("progression.json").exists());
    }
}

/// The workspace root (the bundled model, `docs/` and the fixtures live there).
fn workspace() -> &'static Path {
    Path::new(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
}
