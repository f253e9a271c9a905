//! Glue for the examples and for Rust callers: configuration in, image out, with a per-step
//! progress callback. Models, samplers and the VAE stay in their own modules.

mod error;
pub mod fitv2;
pub mod flux;
pub mod image;
pub mod imagenet;
#[cfg(feature = "text")]
pub mod prompt;

pub use error::PipelineError;
pub use image::{ImageError, Rgb8Image, check_output, write_png};
pub use imagenet::{ImageNetError, imagenet_class, imagenet_classes};

use burn::tensor::{Tensor, TensorData, backend::Backend};
use rand::SeedableRng;
use rand_distr::{Distribution, StandardNormal};

/// Standard-normal noise of `shape` from a seeded host RNG (ChaCha8), so the same seed gives the
/// same starting noise on every backend.
pub fn seeded_noise<B: Backend, const D: usize>(
    seed: u64,
    shape: [usize; D],
    device: &B::Device,
) -> Tensor<B, D> {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
    let n: usize = shape.iter().product();
    let values: Vec<f32> = (0..n).map(|_| StandardNormal.sample(&mut rng)).collect();
    Tensor::from_data(TensorData::new(values, shape), device)
}

/// The memory limit the pipelines check their estimate against before the first large
/// allocation, with where it comes from: `DYPE_MEMORY_LIMIT` (bytes, or with a `K`/`M`/`G`/`T`
/// suffix, powers of 1024) when set, else the host's available memory (`MemAvailable` of
/// `/proc/meminfo`, Linux), else no limit. On a GPU the device's own memory is the real bound:
/// set `DYPE_MEMORY_LIMIT` to it.
pub fn memory_limit() -> Option<(u64, &'static str)> {
    if let Some(v) = std::env::var_os("DYPE_MEMORY_LIMIT") {
        return parse_bytes(&v.to_string_lossy()).map(|b| (b, "DYPE_MEMORY_LIMIT"));
    }
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let line = meminfo.lines().find(|l| l.starts_with("MemAvailable:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some((kib.saturating_mul(1024), "the host's available memory"))
}

/// `123`, `64K`, `1.5G`, … in bytes (powers of 1024); `None` if it is not such a number.
fn parse_bytes(text: &str) -> Option<u64> {
    let t = text.trim();
    let (number, unit) = match t.char_indices().last() {
        Some((i, c)) if c.is_ascii_alphabetic() => (&t[..i], c.to_ascii_uppercase()),
        _ => (t, 'B'),
    };
    let exp = match unit {
        'B' => 0,
        'K' => 1,
        'M' => 2,
        'G' => 3,
        'T' => 4,
        _ => return None,
    };
    let v: f64 = number.trim().parse().ok()?;
    let bytes = v * 1024f64.powi(exp);
    (bytes.is_finite() && bytes >= 0.0 && bytes < u64::MAX as f64).then_some(bytes as u64)
}

/// Bytes in binary units (`1.50 GiB`).
pub(crate) fn format_bytes(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut v = bytes as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit + 1 < UNITS.len() {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{v:.2} {}", UNITS[unit])
    }
}

/// The working-memory estimate of one sampling run, in bytes (`None` on overflow): `batch`
/// states of `state` f32 values, kept about six times over by the solvers (state, noise,
/// velocity, stages), and the DiT's activations for `tokens` tokens of width `hidden`, about
/// sixteen f32 vectors per token in flight (q, k, v, the MLP's hidden, residuals); `cfg` doubles
/// the DiT's batch. Attention scores are bounded by the chunked attention and not counted.
pub(crate) fn sampling_bytes(
    batch: usize,
    state: usize,
    tokens: usize,
    hidden: usize,
    cfg: bool,
) -> Option<u64> {
    let b = batch as u64;
    let states = b.checked_mul(state as u64)?.checked_mul(6 * 4)?;
    let dit_batch = if cfg { b.checked_mul(2)? } else { b };
    let activations = dit_batch
        .checked_mul(tokens as u64)?
        .checked_mul(hidden as u64)?
        .checked_mul(16 * 4)?;
    states.checked_add(activations)
}

/// A `height × width` request must be a non-zero multiple of `unit` pixels on each side.
pub(crate) fn check_size(height: usize, width: usize, unit: usize) -> Result<(), PipelineError> {
    if height == 0 || width == 0 || !height.is_multiple_of(unit) || !width.is_multiple_of(unit) {
        return Err(PipelineError::Size {
            height,
            width,
            unit,
        });
    }
    Ok(())
}

/// Refuses a run whose estimate (`None`: it overflows) is above [`memory_limit`].
pub(crate) fn check_memory(
    what: impl FnOnce() -> String,
    needed: Option<u64>,
) -> Result<(), PipelineError> {
    let Some((limit, limit_from)) = memory_limit() else {
        return Ok(());
    };
    let needed = needed.unwrap_or(u64::MAX);
    if needed > limit {
        return Err(PipelineError::Memory {
            what: what(),
            needed,
            limit,
            limit_from,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn byte_sizes_parse_and_print() {
        assert_eq!(parse_bytes("123"), Some(123));
        assert_eq!(parse_bytes("64K"), Some(64 * 1024));
        assert_eq!(parse_bytes("1.5g"), Some(3 * 512 * 1024 * 1024));
        assert_eq!(parse_bytes("12Q"), None);
        assert_eq!(parse_bytes("-1"), None);
        assert_eq!(parse_bytes(""), None);
        assert_eq!(format_bytes(512), "512 B");
        assert_eq!(format_bytes(3 * 512 * 1024 * 1024), "1.50 GiB");
    }

    #[test]
    fn the_estimate_overflows_to_none_and_grows_with_the_request() {
        assert_eq!(sampling_bytes(usize::MAX, usize::MAX, 1, 1, true), None);
        let small = sampling_bytes(1, 3 * 32 * 32, 64, 128, true).unwrap();
        let large = sampling_bytes(1, 3 * 128 * 128, 1024, 128, true).unwrap();
        assert!(large > 15 * small, "{small} → {large}");
        assert!(sampling_bytes(1, 3 * 32 * 32, 64, 128, false).unwrap() < small);
    }
}
