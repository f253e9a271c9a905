//! The wgpu backend (CubeCL: fusion + autotune) against the Cpu (burn Flex) backend and a host f64
//! reference, on tiny shapes (≤ 64 tokens, head_dim ≤ 64).
//!
//! Runs anywhere a wgpu adapter exists — in CI that is Mesa's software Vulkan driver (lavapipe,
//! `apt-get install mesa-vulkan-drivers libvulkan1`):
//!
//! ```text
//! cargo test --release -p dype-burn --features wgpu --test wgpu
//! ```
//!
//! With the `wgpu` feature enabled these tests **fail** (they do not skip) when no adapter can be
//! initialised: every test starts by fetching the shared device, which runs
//! [`check_backend`] once and panics with its error.
//!
//! Everything lives in this one test binary so the compiled kernels and autotune results are
//! shared by all tests (on lavapipe each distinct kernel costs about a second to compile). Unless
//! the caller set it, `CUBECL_AUTOTUNE_LEVEL` is set to `minimal` before the device is created,
//! and the process works from cargo's test scratch directory so that cubecl's autotune cache is
//! not written into the source tree.
#![cfg(feature = "wgpu")]

#[cfg(not(feature = "cpu"))]
compile_error!("the wgpu tests compare against the Cpu backend: enable the `cpu` feature as well");

use std::sync::OnceLock;
use std::time::Instant;

use burn::tensor::backend::Backend;
use burn::tensor::{Bool, Device, Tensor, TensorData};
use dype_burn::attention::{
    AttentionOptions, AttentionPath, Masks, ResolvedPath, attention, resolve_path,
};
use dype_burn::backend::{BackendKind, Cpu, Wgpu, check_backend};
use dype_burn::rotary::{FactorizedTable, PairLayout, RotaryTables};
use dype_burn::rotary::{RotaryEmbedding, SamplePositions};
use dype_core::presets::{OfficialMethod, official_flux};
use dype_core::table::{ExtentRule, flux_ids};
use dype_core::{AxialRope, Sigma};

type WgpuDevice = Device<Wgpu>;
type CpuDevice = Device<Cpu>;

/// Absolute tolerance of wgpu vs Cpu for the rotary tables and rotations.
const ROTARY_TOL: f32 = 1e-5;
/// Relative tolerance (to `max(1, max |reference|)`) of attention vs the f64 reference.
const ATTENTION_TOL: f64 = 1e-4;

static DEVICE: OnceLock<Result<WgpuDevice, String>> = OnceLock::new();

/// The wgpu device shared by all tests; panics (fails the test) if the backend is unusable.
fn wgpu() -> WgpuDevice {
    let device = DEVICE.get_or_init(|| {
        if std::env::var_os("CUBECL_AUTOTUNE_LEVEL").is_none() {
            // SAFETY: runs once, inside the `OnceLock` initialiser that every test enters before
            // touching the wgpu backend, i.e. before any thread of this process has created a
            // Vulkan/wgpu instance (the only other readers of the environment here), and the
            // standard library serialises its own environment accesses.
            unsafe { std::env::set_var("CUBECL_AUTOTUNE_LEVEL", "minimal") };
        }
        // cubecl writes its autotune cache to `target/` beside the nearest `Cargo.toml` above the
        // working directory — for a test that is `dype-burn/target/`, inside the source tree.
        // Work from cargo's scratch directory for tests instead: the cache then lands in the
        // workspace's (ignored) target directory, or in `~/.cache/cubecl` for an out-of-tree
        // `CARGO_TARGET_DIR`.
        let scratch = env!("CARGO_TARGET_TMPDIR");
        std::fs::create_dir_all(scratch)
            .and_then(|()| std::env::set_current_dir(scratch))
            .map_err(|e| format!("cannot enter {scratch}: {e}"))?;
        let device = WgpuDevice::default();
        let start = Instant::now();
        check_backend::<Wgpu>(&device).map_err(|e| e.to_string())?;
        eprintln!(
            "wgpu backend `{}` ready in {:.1?}",
            <Wgpu as Backend>::name(&device),
            start.elapsed()
        );
        Ok(device)
    });
    match device {
        Ok(device) => device.clone(),
        Err(e) => panic!(
            "the `wgpu` feature is enabled but the wgpu backend is unusable: {e}\n\
             (no GPU? install Mesa's software Vulkan driver: \
             apt-get install mesa-vulkan-drivers libvulkan1)"
        ),
    }
}

fn cpu() -> CpuDevice {
    Default::default()
}

/// Deterministic xorshift generator of f32 in [-1, 1).
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn f32(&mut self) -> f32 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        ((x >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }

    fn vec(&mut self, n: usize, scale: f32) -> Vec<f32> {
        (0..n).map(|_| scale * self.f32()).collect()
    }
}

fn tensor<B: Backend, const D: usize>(
    data: &[f32],
    dims: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    Tensor::from_data(TensorData::new(data.to_vec(), dims), device)
}

fn host<B: Backend, const D: usize>(t: Tensor<B, D>) -> Vec<f32> {
    t.into_data()
        .convert::<f32>()
        .to_vec::<f32>()
        .expect("f32 data")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn assert_close(what: &str, got: &[f32], want: &[f32], tol: f32) {
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{what}: non-finite output"
    );
    let diff = max_abs_diff(got, want);
    assert!(diff <= tol, "{what}: max |wgpu − cpu| = {diff:e} > {tol:e}");
}

/// A FLUX-like 3-axis rope with head_dim 64 (axes 8/28/28 channels) whose 4-token training
/// extent makes the tiny test grids extrapolate (Dy-YaRN-style thresholds, YaRN mscale).
fn small_flux_rope() -> AxialRope {
    official_flux(OfficialMethod::Yarn, true, 10_000.0, &[8, 28, 28], 4.0).expect("rope")
}

/// FLUX ids (`text` zero rows, then an `h × w` grid) with `max + 1` extents.
fn flux_sample(text: usize, h: usize, w: usize) -> SamplePositions {
    SamplePositions::from_ids(
        &flux_ids(text, h, w).expect("ids"),
        3,
        ExtentRule::MaxPlusOne,
    )
    .expect("ids")
}

/// Two samples with equal token counts (4 + 48) but different grids, hence different row
/// counts and scales per axis.
fn two_samples() -> Vec<SamplePositions> {
    vec![flux_sample(4, 8, 6), flux_sample(4, 6, 8)]
}

fn host_tables(rope: &AxialRope, samples: &[SamplePositions], t: f64) -> Vec<FactorizedTable> {
    let t = Some(Sigma::new(t).expect("t"));
    samples
        .iter()
        .map(|s| {
            FactorizedTable::build(rope, &s.positions, &s.extents, t)
                .expect("table")
                .0
        })
        .collect()
}

#[test]
fn wgpu_backend_is_usable() {
    let device = wgpu();
    check_backend::<Wgpu>(&device).expect("wgpu backend");
    assert!(BackendKind::Wgpu.is_compiled());
    let name = <Wgpu as Backend>::name(&device);
    assert!(name.contains("cubecl"), "unexpected backend name {name}");
    // The automatic attention path runs burn's fused op on CubeCL backends, masked or not.
    for masked in [false, true] {
        assert_eq!(
            resolve_path::<Wgpu>(AttentionPath::Auto, &device, masked, [1, 2, 64, 64]),
            ResolvedPath::Fused
        );
    }
}

#[test]
fn rotary_tables_expand_like_cpu() {
    let device = wgpu();
    let rope = small_flux_rope();
    let samples = two_samples();
    let tables = host_tables(&rope, &samples, 0.7);
    let start = Instant::now();
    let gpu = RotaryTables::<Wgpu>::from_tables(&tables, &device).expect("wgpu tables");
    let reference = RotaryTables::<Cpu>::from_tables(&tables, &cpu()).expect("cpu tables");
    assert_eq!(gpu.cos().dims(), [2, 52, 32]);
    assert_eq!(gpu.axis_half_dims(), reference.axis_half_dims());
    let (cos, sin) = (host(gpu.cos().clone()), host(gpu.sin().clone()));
    assert_close("cos", &cos, &host(reference.cos().clone()), ROTARY_TOL);
    assert_close("sin", &sin, &host(reference.sin().clone()), ROTARY_TOL);

    // The gather is a copy: every device entry equals its host row value exactly.
    let half_total = 32;
    for (b, table) in tables.iter().enumerate() {
        let n_axes = table.axes().len();
        for token in 0..table.tokens() {
            let mut offset = 0;
            for (a, axis) in table.axes().iter().enumerate() {
                let row = table.token_rows()[token * n_axes + a] as usize;
                let (c, s) = axis.row(row).expect("row in range");
                for i in 0..axis.half_dim() {
                    let at = (b * table.tokens() + token) * half_total + offset + i;
                    assert_eq!(cos[at], c[i]);
                    assert_eq!(sin[at], s[i]);
                }
                offset += axis.half_dim();
            }
        }
    }
    eprintln!("rotary_tables_expand_like_cpu: {:.1?}", start.elapsed());
}

#[test]
fn rotation_matches_cpu_in_both_layouts() {
    let device = wgpu();
    let rope = small_flux_rope();
    let tables = host_tables(&rope, &two_samples(), 0.4);
    let gpu_tables = RotaryTables::<Wgpu>::from_tables(&tables, &device).expect("wgpu tables");
    let cpu_tables = RotaryTables::<Cpu>::from_tables(&tables, &cpu()).expect("cpu tables");
    // One table broadcast over a batch of 3.
    let gpu_single = RotaryTables::<Wgpu>::from_table(&tables[1], &device).expect("wgpu table");
    let cpu_single = RotaryTables::<Cpu>::from_table(&tables[1], &cpu()).expect("cpu table");

    let start = Instant::now();
    let mut rng = Rng::new(7);
    for layout in [PairLayout::Interleaved, PairLayout::HalfSplit] {
        for (batch, gpu_t, cpu_t) in [(2, &gpu_tables, &cpu_tables), (3, &gpu_single, &cpu_single)]
        {
            let dims = [batch, 3, 52, 64];
            let x = rng.vec(dims.iter().product(), 2.0);
            let got = gpu_t
                .with_layout(layout)
                .apply(tensor::<Wgpu, 4>(&x, dims, &device))
                .expect("wgpu rotate");
            let want = cpu_t
                .with_layout(layout)
                .apply(tensor::<Cpu, 4>(&x, dims, &cpu()))
                .expect("cpu rotate");
            assert_eq!(got.dims(), dims);
            assert_close(
                &format!("{layout:?}, batch {batch}"),
                &host(got),
                &host(want),
                ROTARY_TOL,
            );
        }
    }
    eprintln!(
        "rotation_matches_cpu_in_both_layouts: {:.1?}",
        start.elapsed()
    );
}

#[test]
fn timestep_rotary_follows_cpu_over_steps() {
    let device = wgpu();
    let start = Instant::now();
    let samples = two_samples();
    let layout = PairLayout::Interleaved;
    let mut gpu =
        RotaryEmbedding::<Wgpu>::batch(small_flux_rope(), samples.clone(), layout, &device)
            .expect("gpu");
    let mut reference =
        RotaryEmbedding::<Cpu>::batch(small_flux_rope(), samples, layout, &cpu()).expect("cpu");
    let mut rng = Rng::new(11);
    let dims = [2, 2, 52, 64];
    let x = rng.vec(dims.iter().product(), 1.0);
    for t in [1.0, 0.6, 0.6, 0.05] {
        let t = Sigma::new(t).expect("t");
        let uploaded = gpu.set_timestep(t).expect("gpu step").uploaded;
        assert_eq!(
            reference.set_timestep(t).expect("cpu step").uploaded,
            uploaded
        );
        let got = gpu
            .apply(tensor::<Wgpu, 4>(&x, dims, &device))
            .expect("gpu apply");
        let want = reference
            .apply(tensor::<Cpu, 4>(&x, dims, &cpu()))
            .expect("cpu apply");
        assert_close(
            &format!("t = {}", t.get()),
            &host(got),
            &host(want),
            ROTARY_TOL,
        );
    }
    // t = 0.6 twice: the second step is a cache hit on both.
    assert_eq!(gpu.upload_count(), 3);
    assert_eq!(reference.upload_count(), 3);
    eprintln!(
        "timestep_rotary_follows_cpu_over_steps: {:.1?}",
        start.elapsed()
    );
}

/// q/k/v data of one attention case plus its naive f64 reference.
struct AttnCase {
    batch: usize,
    heads: usize,
    nq: usize,
    nk: usize,
    dh: usize,
    q: Vec<f32>,
    k: Vec<f32>,
    v: Vec<f32>,
}

impl AttnCase {
    fn new(seed: u64, batch: usize, heads: usize, nq: usize, nk: usize, dh: usize) -> Self {
        let mut rng = Rng::new(seed);
        Self {
            batch,
            heads,
            nq,
            nk,
            dh,
            // A larger q keeps the softmax far from uniform.
            q: rng.vec(batch * heads * nq * dh, 2.5),
            k: rng.vec(batch * heads * nk * dh, 1.0),
            v: rng.vec(batch * heads * nk * dh, 1.0),
        }
    }

    /// `softmax(q kᵀ · scale) v` in f64 over the kept keys, `[batch, nq, heads · dh]`; zeros
    /// for a sample without kept keys.
    fn reference(&self, keep: Option<&[bool]>, scale: f64) -> Vec<f64> {
        let (b_n, h_n, nq, nk, dh) = (self.batch, self.heads, self.nq, self.nk, self.dh);
        let mut out = vec![0.0; b_n * nq * h_n * dh];
        for b in 0..b_n {
            let kept: Vec<usize> = (0..nk)
                .filter(|&j| keep.is_none_or(|m| m[b * nk + j]))
                .collect();
            if kept.is_empty() {
                continue;
            }
            for h in 0..h_n {
                let base_q = (b * h_n + h) * nq * dh;
                let base_k = (b * h_n + h) * nk * dh;
                for i in 0..nq {
                    let scores: Vec<f64> = kept
                        .iter()
                        .map(|&j| {
                            (0..dh)
                                .map(|d| {
                                    self.q[base_q + i * dh + d] as f64
                                        * self.k[base_k + j * dh + d] as f64
                                })
                                .sum::<f64>()
                                * scale
                        })
                        .collect();
                    let max = scores.iter().copied().fold(f64::NEG_INFINITY, f64::max);
                    let weights: Vec<f64> = scores.iter().map(|s| (s - max).exp()).collect();
                    let total: f64 = weights.iter().sum();
                    for d in 0..dh {
                        let value: f64 = kept
                            .iter()
                            .zip(&weights)
                            .map(|(&j, w)| w * self.v[base_k + j * dh + d] as f64)
                            .sum();
                        out[(b * nq + i) * h_n * dh + h * dh + d] = value / total;
                    }
                }
            }
        }
        out
    }

    fn run<B: Backend>(
        &self,
        device: &B::Device,
        keep: Option<&[bool]>,
        options: AttentionOptions,
    ) -> Vec<f32> {
        let q = tensor::<B, 4>(&self.q, [self.batch, self.heads, self.nq, self.dh], device);
        let k = tensor::<B, 4>(&self.k, [self.batch, self.heads, self.nk, self.dh], device);
        let v = tensor::<B, 4>(&self.v, [self.batch, self.heads, self.nk, self.dh], device);
        let mask = keep.map(|m| {
            Tensor::<B, 2, Bool>::from_data(
                TensorData::new(m.to_vec(), [self.batch, self.nk]),
                device,
            )
        });
        let out = attention(q, k, v, Masks::key_padding(mask), options).expect("attention");
        assert_eq!(out.dims(), [self.batch, self.nq, self.heads * self.dh]);
        host(out)
    }
}

fn assert_relative(what: &str, got: &[f32], want: &[f64]) {
    assert_eq!(got.len(), want.len(), "{what}: length mismatch");
    assert!(
        got.iter().all(|x| x.is_finite()),
        "{what}: non-finite output"
    );
    let peak = want.iter().fold(1.0f64, |m, x| m.max(x.abs()));
    let diff = got
        .iter()
        .zip(want)
        .map(|(g, w)| (*g as f64 - w).abs())
        .fold(0.0, f64::max);
    assert!(
        diff <= ATTENTION_TOL * peak,
        "{what}: max |got − reference| = {diff:e} > {ATTENTION_TOL:e} × {peak}"
    );
}

/// The wgpu paths under test: burn's fused op (explicitly and via `Auto`) and the chunked path
/// with a chunk that does not divide the query count.
fn wgpu_paths() -> [(&'static str, AttentionPath); 3] {
    [
        ("fused", AttentionPath::Fused),
        ("auto", AttentionPath::Auto),
        ("chunked", AttentionPath::Chunked { query_chunk: 17 }),
    ]
}

fn check_attention_case(case: &AttnCase, keep: Option<&[bool]>, label: &str) {
    let device = wgpu();
    for scale in [None, Some(0.3)] {
        let want = case.reference(keep, scale.unwrap_or(1.0 / (case.dh as f64).sqrt()));
        let base = AttentionOptions {
            scale,
            ..AttentionOptions::default()
        };
        for (name, path) in wgpu_paths() {
            let got = case.run::<Wgpu>(&device, keep, base.with_path(path));
            assert_relative(
                &format!("wgpu {name}, {label}, scale {scale:?}"),
                &got,
                &want,
            );
        }
        // The Cpu backend agrees with the same reference (sanity check of the reference).
        let got = case.run::<Cpu>(&cpu(), keep, base);
        assert_relative(&format!("cpu auto, {label}, scale {scale:?}"), &got, &want);
    }
}

#[test]
fn attention_without_mask_matches_reference() {
    wgpu();
    let start = Instant::now();
    // Self-attention and cross lengths (q 40, kv 64).
    check_attention_case(&AttnCase::new(1, 2, 3, 48, 48, 32), None, "self 48");
    check_attention_case(&AttnCase::new(2, 1, 2, 40, 64, 64), None, "cross 40×64");
    eprintln!(
        "attention_without_mask_matches_reference: {:.1?}",
        start.elapsed()
    );
}

#[test]
fn attention_with_key_padding_mask_matches_reference() {
    wgpu();
    let start = Instant::now();
    let case = AttnCase::new(3, 2, 3, 48, 48, 32);
    // Sample 0 keeps its first 37 keys (FiT-style tail padding), sample 1 drops every third key.
    let keep: Vec<bool> = (0..2 * 48)
        .map(|i| {
            let (b, j) = (i / 48, i % 48);
            if b == 0 { j < 37 } else { j % 3 != 0 }
        })
        .collect();
    check_attention_case(&case, Some(&keep), "masked");

    // A sample without any kept key yields zeros on every path (no NaN).
    let keep: Vec<bool> = (0..2 * 48).map(|i| i < 48 && i % 2 == 0).collect();
    check_attention_case(&case, Some(&keep), "sample 1 fully masked");
    eprintln!(
        "attention_with_key_padding_mask_matches_reference: {:.1?}",
        start.elapsed()
    );
}
