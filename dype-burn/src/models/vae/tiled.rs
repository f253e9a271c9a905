//! Tiled decoding ([`VaeDecoder::decode_tiled`]): overlapping tiles, cross-faded at the seams.

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor, TensorData};

use super::model::VaeDecoder;
use crate::models::ModelError;

impl<B: Backend> VaeDecoder<B> {
    /// Decodes in overlapping tiles of `tile × tile` latent pixels (`overlap` latent pixels shared
    /// between neighbours) and blends them, so that peak memory depends on the tile, not on the
    /// image (a 4096² FLUX image is a 512² latent: `decode_tiled(latent, 64, 8)` runs 9 × 9 tiles of
    /// 512² pixels each).
    ///
    /// Blending: every output pixel is the weighted mean of the tiles covering it; a tile's weight
    /// ramps linearly from ≈0 to 1 across `overlap · f` pixels from each edge that borders
    /// another tile (edges on the image border keep weight 1), so seams are cross-faded.
    ///
    /// **Approximation**: each tile is decoded on its own, so GroupNorm statistics and the
    /// mid-block attention only see that tile, not the whole latent, and conv receptive fields
    /// are cut at tile borders (the cross-fade hides the latter). The result is therefore not
    /// bit-identical to [`VaeDecoder::decode`]; with large tiles (≥ 64 latent px) the difference
    /// is usually invisible, but global colour statistics may drift slightly between tiles —
    /// the same trade-off as diffusers' `enable_tiling`. A latent that fits in one tile is
    /// decoded exactly ([`VaeDecoder::decode`]).
    pub fn decode_tiled(
        &self,
        latent: Tensor<B, 4>,
        tile: usize,
        overlap: usize,
    ) -> Result<Tensor<B, 4>, ModelError> {
        self.check_latent(&latent)?;
        if tile == 0 || overlap >= tile {
            return Err(ModelError::Tiling { tile, overlap });
        }
        let [b, _, h, w] = latent.dims();
        if h <= tile && w <= tile {
            return self.decode(latent);
        }
        let f = self.config.upscale();
        let oc = self.config.out_channels;
        let device = latent.device();
        let dtype = self.dtype();
        let z = self.scale_latent(latent);
        let ys = tile_starts(h, tile, overlap);
        let xs = tile_starts(w, tile, overlap);
        let mut acc = Tensor::<B, 4>::zeros([b, oc, h * f, w * f], (&device, DType::F32));
        let mut wsum = Tensor::<B, 4>::zeros([1, 1, h * f, w * f], (&device, DType::F32));
        for &y0 in &ys {
            let y1 = (y0 + tile).min(h);
            let wy = ramp(y0, y1, h, overlap, f);
            for &x0 in &xs {
                let x1 = (x0 + tile).min(w);
                let wx = ramp(x0, x1, w, overlap, f);
                let zt = z
                    .clone()
                    .slice([0..b, 0..self.config.latent_channels, y0..y1, x0..x1]);
                let img = self.forward(zt)?.cast(DType::F32);
                let (th, tw) = ((y1 - y0) * f, (x1 - x0) * f);
                let wy_t = Tensor::<B, 4>::from_data(
                    TensorData::new(wy.clone(), [1, 1, th, 1]),
                    (&device, DType::F32),
                );
                let wx_t = Tensor::<B, 4>::from_data(
                    TensorData::new(wx, [1, 1, 1, tw]),
                    (&device, DType::F32),
                );
                let wt = wy_t * wx_t;
                let (ry, rx) = (y0 * f..y1 * f, x0 * f..x1 * f);
                let cur = acc.clone().slice([0..b, 0..oc, ry.clone(), rx.clone()]);
                acc = acc.slice_assign(
                    [0..b, 0..oc, ry.clone(), rx.clone()],
                    cur + img * wt.clone(),
                );
                let cw = wsum.clone().slice([0..1, 0..1, ry.clone(), rx.clone()]);
                wsum = wsum.slice_assign([0..1, 0..1, ry, rx], cw + wt);
            }
        }
        Ok((acc / wsum).cast(dtype))
    }
}

/// Tile start offsets covering `0..len` with tiles of `tile` and at least `overlap` shared.
fn tile_starts(len: usize, tile: usize, overlap: usize) -> Vec<usize> {
    if len <= tile {
        return vec![0];
    }
    let stride = tile - overlap;
    let mut starts = Vec::new();
    let mut s = 0;
    while s + tile < len {
        starts.push(s);
        s += stride;
    }
    starts.push(len - tile);
    starts.dedup();
    starts
}

/// Blend weights (output pixels) of a tile spanning latent `[s, e)` of `len`.
fn ramp(s: usize, e: usize, len: usize, overlap: usize, f: usize) -> Vec<f32> {
    let n = (e - s) * f;
    let width = (overlap * f) as f32;
    (0..n)
        .map(|i| {
            let mut wgt = 1.0f32;
            if width > 0.0 {
                if s > 0 {
                    wgt = wgt.min((i as f32 + 0.5) / width);
                }
                if e < len {
                    wgt = wgt.min((n as f32 - i as f32 - 0.5) / width);
                }
            }
            wgt
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::{fixture, tiny_flux};
    use super::*;
    use crate::models::Pretrained;
    use crate::pipeline::image::{to_rgb8_diffusers, to_rgb8_fit};
    use crate::weights::Checkpoint;
    use burn::tensor::FloatDType;

    #[test]
    fn tiles_cover_and_overlap() {
        assert_eq!(tile_starts(8, 8, 2), vec![0]);
        assert_eq!(tile_starts(10, 8, 2), vec![0, 2]);
        assert_eq!(tile_starts(20, 8, 2), vec![0, 6, 12]);
        let mut expect: Vec<usize> = (0..8).map(|i| i * 56).collect();
        expect.push(448);
        assert_eq!(tile_starts(512, 64, 8), expect);
        let w = ramp(0, 8, 20, 2, 2);
        assert_eq!(w[0], 1.0);
        assert!(w[15] < 0.5 && w[15] > 0.0);
    }

    type B = crate::backend::Cpu;

    fn rel_l2(a: Tensor<B, 4>, b: Tensor<B, 4>) -> f64 {
        let d = (a - b.clone()).square().sum().into_scalar() as f64;
        let n = b.square().sum().into_scalar() as f64;
        (d / n).sqrt()
    }

    #[test]
    fn tiled_decode_blends_and_bf16_decode_is_close() {
        let device = Default::default();
        let dec = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &tiny_flux(),
            FloatDType::F32,
            &device,
        )
        .unwrap();
        let cases = Checkpoint::open(fixture("vae_flux_tiny_cases.safetensors")).unwrap();
        let latent = cases
            .tensor::<B, 4>("case1.latent", FloatDType::F32, &device)
            .unwrap();
        let full = dec.decode(latent.clone()).unwrap();
        // One tile covering everything is exact.
        let one = dec.decode_tiled(latent.clone(), 16, 4).unwrap();
        assert_eq!(rel_l2(one, full.clone()), 0.0);
        // 6×10 latent in 4×4 tiles with overlap 2: per-tile norms/attention make it approximate.
        let tiled = dec.decode_tiled(latent.clone(), 4, 2).unwrap();
        assert_eq!(tiled.dims(), full.dims());
        let err = rel_l2(tiled, full.clone());
        assert!(err.is_finite() && err < 0.5, "tiled error {err}");
        assert!(dec.decode_tiled(latent.clone(), 4, 4).is_err());
        // bf16 weights and activations (GroupNorm and softmax upcast to f32 inside).
        let dec16 = VaeDecoder::<B>::load(
            fixture("vae_flux_tiny_bfl.safetensors"),
            &tiny_flux(),
            FloatDType::BF16,
            &device,
        )
        .unwrap();
        let out16 = dec16.decode(latent).unwrap();
        assert_eq!(out16.dtype(), DType::BF16);
        let err = rel_l2(out16.cast(DType::F32), full.clone());
        assert!(err < 3e-2, "bf16 error {err}");
        let imgs = to_rgb8_diffusers(full.clone()).unwrap();
        assert_eq!(
            (
                imgs.len(),
                imgs[0].width,
                imgs[0].height,
                imgs[0].pixels.len()
            ),
            (1, 20, 12, 720)
        );
        assert_eq!(to_rgb8_fit(full).unwrap()[0].pixels.len(), 720);
    }
}
