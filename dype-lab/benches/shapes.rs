//! Cost of training and sampling the shapes FiTv2 (`dype_lab::train::shapes_model`: 32² px, patch 4,
//! hidden 128, depth 6) on the burn Cpu backend (Flex):
//!
//! * `train_step`: one AdamW step at the default batch (32): batch rendering, forward, backward,
//!   optimiser and EMA update (`Trainer::step`);
//! * `sample_eval/{32,64,128}`: one model evaluation of sampling with guidance (batch 2 = cond +
//!   uncond) and Dy-YaRN RoPE at 1× (8 × 8 tokens), 2× (16 × 16) and 4× (32 × 32): a sampling step
//!   of Euler costs one, Heun two.
//!
//! `cargo bench -p dype-lab --bench shapes`; numbers are recorded in docs/performance.md.

mod bench {
    use std::hint::black_box;
    use std::time::Duration;

    use burn::backend::Autodiff;
    use burn::tensor::backend::Backend;
    use burn::tensor::{Device, Int, Tensor, TensorData};
    use criterion::Criterion;
    use dype_burn::backend::Cpu;
    use dype_burn::models::fitv2::{
        FitInputs, FitPosition, FitV2, GuidedChannels, fit_grid, fit_rope,
    };
    use dype_burn::rotary::{PairLayout, RotaryEmbedding};
    use dype_core::{FitTime, Method};
    use dype_lab::train::{TrainConfig, Trainer};

    type B = Cpu;

    pub fn train_step(c: &mut Criterion) {
        let device: Device<B> = Default::default();
        let mut trainer =
            Trainer::<Autodiff<B>>::new(TrainConfig::default(), &device).expect("trainer");
        let mut group = c.benchmark_group("shapes");
        group.sample_size(10);
        group.measurement_time(Duration::from_secs(30));
        group.bench_function("train_step", |b| {
            b.iter(|| black_box(trainer.step().expect("step")))
        });
        group.finish();
    }

    pub fn sample_eval(c: &mut Criterion) {
        let device: Device<B> = Default::default();
        let config = TrainConfig::default().model;
        let model = FitV2::<B>::init(&config, 0, &device).expect("model");
        let mut group = c.benchmark_group("shapes/sample_eval");
        group.sample_size(10);
        for side in [32usize, 64, 128] {
            let n = side / config.patch_size;
            let rope = fit_rope(&config, FitPosition::from(Method::dy_yarn()), true).expect("rope");
            let mut rotary = RotaryEmbedding::<B>::new(
                rope,
                fit_grid(n, n, n * n).expect("grid"),
                PairLayout::Interleaved,
                &device,
            )
            .expect("rotary");
            rotary
                .set_timestep(FitTime::new(0.5).expect("t").into())
                .expect("step");
            let x = Tensor::<B, 3>::ones([2, n * n, config.token_dim()], &device);
            let t = Tensor::<B, 1>::from_data(TensorData::new(vec![0.5f32; 2], [2]), &device);
            let y = Tensor::<B, 1, Int>::from_data(TensorData::new(vec![0i64, 8], [2]), &device);
            group.bench_function(format!("{side}"), |b| {
                b.iter(|| {
                    let v = model
                        .forward_with_cfg(
                            FitInputs {
                                x: x.clone(),
                                t: t.clone(),
                                y: y.clone(),
                                mask: None,
                            },
                            rotary.tables(),
                            1.5,
                            GuidedChannels::All,
                        )
                        .expect("forward");
                    B::sync(&device).expect("sync");
                    black_box(v)
                })
            });
        }
        group.finish();
    }
}

criterion::criterion_group!(benches, bench::train_step, bench::sample_eval);
criterion::criterion_main!(benches);
