//! Latent ↔ token packing: FiT's patchify and FLUX's 2×2 latent packing (the same layout).

use burn::tensor::Tensor;
use burn::tensor::backend::Backend;

/// Patchifies a latent `[B, C, H, W]` into tokens `[B, (H/p)(W/p), C·p·p]` (channel index
/// `c·p² + p1·p + p2`, tokens row-major), as FiT and FLUX pack latents.
pub fn patchify<B: Backend>(latent: Tensor<B, 4>, p: usize) -> Tensor<B, 3> {
    let [b, c, h, w] = latent.dims();
    latent
        .reshape([b, c, h / p, p, w / p, p])
        .permute([0, 2, 4, 1, 3, 5])
        .reshape([b, (h / p) * (w / p), c * p * p])
}

/// Inverse of [`patchify`]: tokens `[B, h·w, C·p·p]` of an `h × w` token grid → `[B, C, h·p, w·p]`.
pub fn unpatchify<B: Backend>(tokens: Tensor<B, 3>, h: usize, w: usize, p: usize) -> Tensor<B, 4> {
    let [b, _, cpp] = tokens.dims();
    let c = cpp / (p * p);
    tokens
        .reshape([b, h, w, c, p, p])
        .permute([0, 3, 1, 4, 2, 5])
        .reshape([b, c, h * p, w * p])
}

/// Packs a latent `[B, C, H, W]` (H, W even) into FLUX tokens `[B, (H/2)(W/2), 4C]`: channel
/// `c·4 + ph·2 + pw`, tokens row-major (diffusers `_pack_latents`, BFL `prepare`).
pub fn pack_latents<B: Backend>(latent: Tensor<B, 4>) -> Tensor<B, 3> {
    patchify(latent, 2)
}

/// Inverse of [`pack_latents`] for an `h × w` token grid: `[B, h·w, 4C]` → `[B, C, 2h, 2w]`.
pub fn unpack_latents<B: Backend>(tokens: Tensor<B, 3>, h: usize, w: usize) -> Tensor<B, 4> {
    unpatchify(tokens, h, w, 2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "cpu")]
    #[test]
    fn packing_order_and_round_trip() {
        use burn::tensor::TensorData;
        type B = crate::backend::Cpu;
        let (c, h, w) = (2usize, 4usize, 6usize);
        let vals: Vec<f32> = (0..c * h * w).map(|i| i as f32).collect();
        let latent =
            Tensor::<B, 4>::from_data(TensorData::new(vals, [1, c, h, w]), &Default::default());
        let tokens = pack_latents(latent.clone());
        assert_eq!(tokens.dims(), [1, (h / 2) * (w / 2), 4 * c]);
        let t: Vec<f32> = tokens.clone().into_data().into_vec().expect("f32");
        // token (row 1, col 2), channel c·4 + ph·2 + pw = latent[c, 2·1 + ph, 2·2 + pw]
        let (r, col) = (1, 2);
        let tok = r * (w / 2) + col;
        for ci in 0..c {
            for ph in 0..2 {
                for pw in 0..2 {
                    let want = (ci * h * w + (2 * r + ph) * w + 2 * col + pw) as f32;
                    assert_eq!(t[tok * 4 * c + ci * 4 + ph * 2 + pw], want);
                }
            }
        }
        let back = unpack_latents(tokens, h / 2, w / 2);
        let a: Vec<f32> = back.into_data().into_vec().expect("f32");
        let b: Vec<f32> = latent.into_data().into_vec().expect("f32");
        assert_eq!(a, b);
    }
}
