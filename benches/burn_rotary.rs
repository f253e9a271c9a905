//! Per-step cost of DyPE's rotary embedding on the burn Cpu backend (Flex), FLUX layout
//! (`presets::paper_flux(Method::dy_yarn())`, 512 text + h·w image tokens, 24 heads × 128):
//!
//! * `set_timestep`: `RotaryEmbedding::set_timestep` with a new t every call — the real per-step
//!   update: frequencies and, when they changed, per-axis host rows, upload and the device-side
//!   gather/expansion. At 1024² the grid (64 × 64 latent patches) equals FLUX's training extent,
//!   so Dy-YaRN's scale is 1, the frequencies never change and every step is a cache hit;
//! * `set_timestep_same_t`: the same t again (frequencies only, nothing uploaded);
//! * `rebuild`: an update that always rebuilds — `FactorizedTable::build` + `RotaryTables::from_table`
//!   (host rows, upload, device expansion), also at 1024²;
//! * `apply_qk`: rotating q and k `[1, 24, N, 128]` with the current tables;
//!
//! at 1024² (4096 + 512 tokens), 2048² (16384 + 512) and 4096² (65536 + 512), plus one attention
//! layer (`attention(q, k, v, Masks::default(), default)`, 24 × 128, N = 4608) at 1024² as the yardstick.
//! Numbers are recorded in docs/performance.md.
//!
//! `cargo bench -p dype-benches --bench burn_rotary` (takes a few minutes on 2 cores, ~6 GB peak memory at 4096²).

mod bench {
    use std::hint::black_box;
    use std::time::Duration;

    use burn::tensor::backend::Backend;
    use burn::tensor::{Device, Distribution, Tensor};
    use criterion::Criterion;
    use dype_burn::attention::{AttentionOptions, Masks, attention};
    use dype_burn::backend::Cpu;
    use dype_burn::rotary::{FactorizedTable, PairLayout, RotaryTables};
    use dype_burn::rotary::{RotaryEmbedding, SamplePositions};
    use dype_core::table::{ExtentRule, flux_ids};
    use dype_core::{Method, Sigma, presets};

    type B = Cpu;

    const HEADS: usize = 24;
    const HEAD_DIM: usize = 128;
    const TEXT_TOKENS: usize = 512;

    fn sync(device: &Device<B>) {
        B::sync(device).expect("sync");
    }

    fn rope_sample(grid: usize) -> SamplePositions {
        let ids = flux_ids(TEXT_TOKENS, grid, grid).expect("ids");
        SamplePositions::from_ids(&ids, 3, ExtentRule::MaxPlusOne).expect("ids")
    }

    fn rotary_for(grid: usize, device: &Device<B>) -> RotaryEmbedding<B> {
        let rope = presets::paper_flux(Method::dy_yarn()).expect("rope");
        RotaryEmbedding::new(rope, rope_sample(grid), PairLayout::Interleaved, device)
            .expect("rotary")
    }

    pub fn rotary(c: &mut Criterion) {
        let device = Default::default();
        // (label, latent grid side = pixels / 16)
        for (label, grid) in [("1024", 64usize), ("2048", 128), ("4096", 256)] {
            let tokens = TEXT_TOKENS + grid * grid;
            let mut rope = rotary_for(grid, &device);
            let mut group = c.benchmark_group(format!("flux_{label}"));
            group
                .sample_size(10)
                .warm_up_time(Duration::from_millis(500))
                .measurement_time(Duration::from_secs(if grid >= 256 { 8 } else { 3 }));

            // A different t on every call: rebuilds whenever the frequencies depend on t.
            let mut step = 0u64;
            let mut next_t = move || {
                step += 1;
                Sigma::new(0.05 + 0.9 * ((step % 997) as f64 / 997.0)).expect("t")
            };
            group.bench_function("set_timestep", |b| {
                b.iter(|| {
                    black_box(rope.set_timestep(next_t()).expect("step").uploaded);
                    sync(&device);
                })
            });
            eprintln!(
                "flux_{label}: {tokens} tokens, max Dy-YaRN scale {:.2}, {} table uploads so far",
                rope.last_report().max_scale(),
                rope.upload_count()
            );
            let t = Sigma::new(0.5).expect("t");
            rope.set_timestep(t).expect("step");
            group.bench_function("set_timestep_same_t", |b| {
                b.iter(|| {
                    let report = rope.set_timestep(t).expect("step");
                    assert!(!report.uploaded);
                })
            });
            let sample = rope_sample(grid);
            let flux = presets::paper_flux(Method::dy_yarn()).expect("rope");
            group.bench_function("rebuild", |b| {
                b.iter(|| {
                    let t = Some(next_t());
                    let (table, _) =
                        FactorizedTable::build(&flux, &sample.positions, &sample.extents, t)
                            .expect("table");
                    let tables = RotaryTables::<B>::from_table(&table, &device).expect("upload");
                    sync(&device);
                    black_box(tables)
                })
            });

            let shape = [1, HEADS, tokens, HEAD_DIM];
            let q = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
            let k = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
            group.bench_function("apply_qk", |b| {
                b.iter(|| {
                    let q = rope.apply(q.clone()).expect("q");
                    let k = rope.apply(k.clone()).expect("k");
                    sync(&device);
                    black_box((q, k))
                })
            });
            group.finish();
        }
    }

    pub fn attention_layer(c: &mut Criterion) {
        let device = Default::default();
        let tokens = TEXT_TOKENS + 64 * 64;
        let shape = [1, HEADS, tokens, HEAD_DIM];
        let q = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
        let k = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
        let v = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
        let mut group = c.benchmark_group("flux_1024");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(20));
        group.bench_function("attention", |b| {
            b.iter(|| {
                let out = attention(
                    q.clone(),
                    k.clone(),
                    v.clone(),
                    Masks::default(),
                    AttentionOptions::default(),
                )
                .expect("attention");
                sync(&device);
                black_box(out)
            })
        });
        group.finish();
    }

    /// What rotating q and k at 1024² should cost: the same tensors through the half-split
    /// layout, and a plain broadcast `x · cos` (one multiply per element, no pairing).
    pub fn elementwise_baselines(c: &mut Criterion) {
        let device = Default::default();
        let tokens = TEXT_TOKENS + 64 * 64;
        let shape = [1, HEADS, tokens, HEAD_DIM];
        let q = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
        let k = Tensor::<B, 4>::random(shape, Distribution::Default, &device);
        let cos = Tensor::<B, 4>::random([1, 1, tokens, HEAD_DIM], Distribution::Default, &device);
        let mut rope = rotary_for(64, &device);
        rope.set_timestep(Sigma::new(0.5).expect("t"))
            .expect("step");
        let tables = rope.tables().clone();
        let mut group = c.benchmark_group("flux_1024_baselines");
        group
            .sample_size(10)
            .warm_up_time(Duration::from_millis(500))
            .measurement_time(Duration::from_secs(3));
        group.bench_function("apply_qk_half_split", |b| {
            b.iter(|| {
                let q = tables
                    .with_layout(PairLayout::HalfSplit)
                    .apply(q.clone())
                    .expect("q");
                let k = tables
                    .with_layout(PairLayout::HalfSplit)
                    .apply(k.clone())
                    .expect("k");
                sync(&device);
                black_box((q, k))
            })
        });
        group.bench_function("broadcast_mul_qk", |b| {
            b.iter(|| {
                let q = q.clone() * cos.clone();
                let k = k.clone() * cos.clone();
                sync(&device);
                black_box((q, k))
            })
        });
        group.finish();
    }
}

criterion::criterion_group!(
    benches,
    bench::rotary,
    bench::attention_layer,
    bench::elementwise_baselines
);
criterion::criterion_main!(benches);
