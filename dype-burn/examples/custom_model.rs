//! DyPE in someone else's model: a tiny burn self-attention layer (not one of dype's), with the
//! timestep-aware rotary embedding injected through the public API, run for a few sampler steps
//! with the paper's Dy-YaRN and with a frequency rule of our own, and its rotation checked against
//! dype-core's expanded table.
//!
//! `cargo run -p dype-burn --example custom_model`
use burn::module::Module;
use burn::nn::{Linear, LinearConfig};
use burn::tensor::{Distribution, Tensor, backend::Backend};
use dype_burn::prelude::*;

/// Someone else's self-attention: fused qkv projection, multi-head attention.
#[derive(Module, Debug)]
struct SelfAttention<B: Backend> {
    qkv: Linear<B>,
    proj: Linear<B>,
    heads: usize,
}

impl<B: Backend> SelfAttention<B> {
    fn new(dim: usize, heads: usize, device: &B::Device) -> Self {
        let qkv = LinearConfig::new(dim, 3 * dim).init(device);
        let proj = LinearConfig::new(dim, dim).init(device);
        Self { qkv, proj, heads }
    }

    /// `x`: `[batch, tokens, dim]`. The only change for RoPE is the `rope` argument.
    fn forward(&self, x: Tensor<B, 3>, rope: &RotaryEmbedding<B>) -> Result<Tensor<B, 3>, Error> {
        let [batch, tokens, dim] = x.dims();
        let head_dim = dim / self.heads;
        let qkv = self
            .qkv
            .forward(x)
            .reshape([batch, tokens, 3, self.heads, head_dim]);
        let qkv = qkv.permute([2, 0, 3, 1, 4]); // [3, batch, heads, tokens, head_dim]
        let part = |i| {
            qkv.clone()
                .narrow(0, i, 1)
                .reshape([batch, self.heads, tokens, head_dim])
        };
        let (q, k) = rope.apply_qk(part(0), part(1))?; // ← DyPE: rotate q and k
        let out = attention(q, k, part(2), Masks::default(), AttentionOptions::default())?;
        let out = out.swap_dims(1, 2).reshape([batch, tokens, dim]);
        Ok(self.proj.forward(out))
    }
}

type Error = Box<dyn std::error::Error>;

/// A frequency rule of our own, not one of dype's methods: PI whose strength follows σ linearly
/// (`ω / s^σ`). It gets what the built-in methods get and goes everywhere they do.
struct LinearDyPi;

impl FrequencyRule for LinearDyPi {
    fn name(&self) -> &str {
        "linear-dy-pi"
    }
    fn is_dynamic(&self) -> bool {
        true
    }
    fn kappa(&self, sigma: Sigma) -> Result<Option<f64>, DypeError> {
        Ok(Some(sigma.get()))
    }
    fn frequencies(&self, input: &RuleInput<'_>, out: &mut [f64]) -> Result<f64, DypeError> {
        let s = input.scales.linear.powf(input.kappa.unwrap_or(1.0));
        for w in out.iter_mut() {
            *w /= s; // `out` holds the base frequencies on entry
        }
        Ok(1.0) // the attention factor
    }
}

static LINEAR_DY_PI: LinearDyPi = LinearDyPi;

fn main() -> Result<(), Error> {
    type B = dype_burn::backend::Cpu;
    let device = Default::default();
    // Trained on 8×8 tokens, sampled at 16×12 with the paper's Dy-YaRN; heads of 32 channels,
    // 16 per image axis.
    let (train, height, width, heads, head_dim) = (8.0, 16, 12, 2, 32);

    let layer = SelfAttention::<B>::new(heads * head_dim, heads, &device);
    let axis = AxisConfig::scaled(head_dim / 2, 10_000.0, train)?;
    let mut x = Tensor::<B, 3>::random(
        [1, height * width, heads * head_dim],
        Distribution::Normal(0.0, 1.0),
        &device,
    );
    for (name, method) in [
        ("dy-yarn", presets::method_by_name("dy-yarn")?),
        (LINEAR_DY_PI.name(), Method::custom(&LINEAR_DY_PI)),
    ] {
        // Injecting DyPE: a rope over the model's axes, the token positions, one embedding.
        let rope = AxialRope::new(&[axis, axis], method, AxisPolicy::PerAxis)?;
        let positions = SamplePositions::grid(height, width)?;
        let mut rotary =
            RotaryEmbedding::<B>::new(rope, positions, PairLayout::Interleaved, &device)?;
        for sigma in [1.0, 0.75, 0.5, 0.25, 0.0] {
            let report = rotary.set_timestep(Sigma::new(sigma)?)?; // once per sampler step
            let kappa = report.kappa().unwrap_or(0.0);
            let attn = report.max_attention_factor();
            x = x.clone() + layer.forward(x, &rotary)?.mul_scalar(0.1); // a stand-in for a DiT step
            let err = check_against_dype_core(&rotary, sigma)?;
            println!(
                "{name} σ {sigma:.2}: κ {kappa:.4}, attention {attn:.4}, |burn − dype-core| {err:.1e}"
            );
            if err > 1e-5 {
                return Err(format!("rotation differs from dype-core's table by {err}").into());
            }
        }
    }
    println!("output {:?}, all finite", x.dims());
    Ok(())
}

/// Rotates a probe with the embedding and with dype-core's expanded table (host, f64 angles);
/// returns the largest difference.
fn check_against_dype_core<B: Backend>(
    rotary: &RotaryEmbedding<B>,
    sigma: f64,
) -> Result<f64, Error> {
    let sample = &rotary.samples()[0];
    let rope = rotary.rope();
    let t = Some(Sigma::new(sigma)?);
    let (table, _) =
        dype_core::table::FactorizedTable::build(rope, &sample.positions, &sample.extents, t)?;
    let (tokens, head_dim) = (table.tokens(), rope.head_dim());
    let (mut cos, mut sin) = (
        vec![0.0f32; tokens * head_dim],
        vec![0.0f32; tokens * head_dim],
    );
    table.expand(rotary.layout(), &mut cos, &mut sin)?;

    let probe: Vec<f32> = (0..tokens * head_dim)
        .map(|i| ((i * 7919) % 23) as f32 / 11.0 - 1.0)
        .collect();
    let device = rotary.tables().cos().device();
    let x =
        Tensor::<B, 1>::from_floats(probe.as_slice(), &device).reshape([1, 1, tokens, head_dim]);
    let ours: Vec<f32> = rotary
        .apply(x)?
        .into_data()
        .into_vec()
        .map_err(|e| format!("{e:?}"))?;
    let mut worst = 0.0f64;
    for tok in 0..tokens {
        let row = tok * head_dim..(tok + 1) * head_dim;
        let mut want = probe[row.clone()].to_vec();
        dype_core::rotate(
            &mut want,
            &cos[row.clone()],
            &sin[row.clone()],
            rotary.layout(),
        )?;
        for (a, b) in want.iter().zip(&ours[row]) {
            worst = worst.max(f64::from((a - b).abs()));
        }
    }
    Ok(worst)
}
