//! Per-step RoPE table generation at FLUX 4096² (65 536 image + 512 text tokens, 128 dims):
//! factorized per-axis rows, the fully expanded cos+sin table (67 MB of f32), and a naive per-token
//! build, for Dy-YaRN and Dy-NTK. Numbers are recorded in docs/performance.md.

use criterion::{Criterion, criterion_group, criterion_main};
use dype_core::table::{ExtentRule, FactorizedTable, TokenPositions, flux_ids};
use dype_core::{Method, PairLayout, Sigma, presets, write_token_table};
use std::hint::black_box;

fn tables(c: &mut Criterion) {
    let ids = flux_ids(512, 256, 256).expect("ids");
    let positions = TokenPositions::from_ids(&ids, 3).expect("ids");
    let extents = positions.extents(ExtentRule::MaxPlusOne);
    let tokens = positions.tokens();
    let t = Some(Sigma::new(0.7).expect("t"));
    let mut group = c.benchmark_group("flux_4096");
    group.sample_size(10);
    for (name, method) in [("dy-yarn", Method::dy_yarn()), ("dy-ntk", Method::dy_ntk())] {
        let rope = presets::paper_flux(method).expect("rope");
        group.bench_function(format!("{name}/factorized_rows"), |b| {
            b.iter(|| {
                black_box(
                    FactorizedTable::build_rows(&rope, &positions, &extents, t).expect("rows"),
                )
            })
        });
        let (mut table, _) = FactorizedTable::build(&rope, &positions, &extents, t).expect("table");
        let mut cos = vec![0.0f32; tokens * 128];
        let mut sin = vec![0.0f32; tokens * 128];
        group.bench_function(format!("{name}/expanded"), |b| {
            b.iter(|| {
                let (rows, _) =
                    FactorizedTable::build_rows(&rope, &positions, &extents, t).expect("rows");
                // The static token index stays; only the rows change per step.
                table.set_rows(rows).expect("same shape");
                table
                    .expand(PairLayout::Interleaved, &mut cos, &mut sin)
                    .expect("expand");
                black_box(&cos);
            })
        });
        group.bench_function(format!("{name}/naive_per_token"), |b| {
            b.iter(|| {
                let mut freqs = vec![0.0; rope.pairs()];
                let info = rope.step(&extents, t, &mut freqs).expect("step");
                write_token_table(
                    &rope,
                    &freqs,
                    &info,
                    &ids,
                    PairLayout::Interleaved,
                    &mut cos,
                    &mut sin,
                )
                .expect("table");
                black_box(&cos);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, tables);
criterion_main!(benches);
