//! Images out of the pipelines: decoded tensors to RGB8 (FiT's and diffusers' conventions) and
//! PNG output with the generation parameters as text metadata, written atomically (a temporary
//! file renamed into place), so nothing appears at the output path unless encoding succeeded.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use burn::tensor::backend::Backend;
use burn::tensor::{DType, Tensor};

/// Errors converting or writing an image.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ImageError {
    /// File system error (its cause follows as the error's source).
    #[error("cannot write {path}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Encoder error (its cause follows as the error's source).
    #[error("{path}: PNG encoding failed")]
    Encode {
        /// The path.
        path: PathBuf,
        /// The encoder's error.
        source: png::EncodingError,
    },
    /// A decoded image tensor without 3 channels.
    #[error("cannot convert {channels} channels to RGB8 (3 expected)")]
    Channels {
        /// Channels of the tensor.
        channels: usize,
    },
    /// The folder an output file would go into does not exist (or is not a folder).
    #[error("cannot write {path}: the folder {folder} does not exist")]
    NoFolder {
        /// The output path.
        path: PathBuf,
        /// Its folder.
        folder: PathBuf,
    },
    /// The output path is a folder.
    #[error("cannot write {path}: it is a folder (give a file name)")]
    IsFolder {
        /// The output path.
        path: PathBuf,
    },
    /// The image tensor could not be read back to the host.
    #[error("cannot read the image back from the device: {reason}")]
    ReadBack {
        /// burn's description of the failure.
        reason: String,
    },
    /// The image buffer does not match its size.
    #[error("image is {width}×{height} but holds {len} bytes")]
    BadImage {
        /// Width.
        width: usize,
        /// Height.
        height: usize,
        /// Bytes held.
        len: usize,
    },
}

/// Checks that a file can be written at `path` before any work starts (a sampling run that ends
/// in a missing folder loses the whole run): its folder exists and `path` is not a folder.
pub fn check_output(path: &Path) -> Result<(), ImageError> {
    if path.is_dir() {
        return Err(ImageError::IsFolder {
            path: path.to_path_buf(),
        });
    }
    let folder = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    if !folder.is_dir() {
        return Err(ImageError::NoFolder {
            path: path.to_path_buf(),
            folder: folder.to_path_buf(),
        });
    }
    Ok(())
}

/// Writes `image` as an 8-bit RGB PNG with `metadata` as `tEXt` chunks (key, value).
pub fn write_png(
    path: &Path,
    image: &Rgb8Image,
    metadata: &[(String, String)],
) -> Result<(), ImageError> {
    if image.pixels.len() != image.width * image.height * 3 || image.width == 0 || image.height == 0
    {
        return Err(ImageError::BadImage {
            width: image.width,
            height: image.height,
            len: image.pixels.len(),
        });
    }
    let io = |e| ImageError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let enc = |e: png::EncodingError| ImageError::Encode {
        path: path.to_path_buf(),
        source: e,
    };
    let tmp = path.with_extension("png.partial");
    {
        let file = File::create(&tmp).map_err(io)?;
        let mut encoder = png::Encoder::new(
            BufWriter::new(file),
            image.width as u32,
            image.height as u32,
        );
        encoder.set_color(png::ColorType::Rgb);
        encoder.set_depth(png::BitDepth::Eight);
        for (k, v) in metadata {
            encoder.add_text_chunk(k.clone(), v.clone()).map_err(enc)?;
        }
        let mut writer = encoder.write_header().map_err(enc)?;
        writer.write_image_data(&image.pixels).map_err(enc)?;
        writer.finish().map_err(enc)?;
    }
    std::fs::rename(&tmp, path).map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io(e)
    })
}

/// An 8-bit RGB image, rows top to bottom, pixels interleaved `RGBRGB…`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rgb8Image {
    /// Width in pixels.
    pub width: usize,
    /// Height in pixels.
    pub height: usize,
    /// `height · width · 3` bytes.
    pub pixels: Vec<u8>,
}

/// FiT's conversion of one decoded value: `clamp(127.5·x + 128, 0, 255)`, truncated (note
/// **+128**, not +127.5; FiT `sample_fitv2_ddp.py`). NaN maps to 0.
pub fn fit_to_u8(x: f32) -> u8 {
    (127.5f32 * x + 128.0).clamp(0.0, 255.0) as u8
}

/// diffusers/FLUX conversion of one decoded value: `round(clamp(x/2 + 0.5, 0, 1) · 255)`
/// (ties to even, as NumPy's `round`; `VaeImageProcessor.denormalize` + `numpy_to_pil`).
/// NaN maps to 0.
pub fn diffusers_to_u8(x: f32) -> u8 {
    ((x * 0.5 + 0.5).clamp(0.0, 1.0) * 255.0).round_ties_even() as u8
}

fn to_rgb8<B: Backend>(
    image: Tensor<B, 4>,
    f: fn(f32) -> u8,
) -> Result<Vec<Rgb8Image>, ImageError> {
    let [b, c, h, w] = image.dims();
    if c != 3 {
        return Err(ImageError::Channels { channels: c });
    }
    let v = image
        .cast(DType::F32)
        .into_data()
        .convert::<f32>()
        .into_vec::<f32>()
        .map_err(|e| ImageError::ReadBack {
            reason: format!("{e:?}"),
        })?;
    let plane = h * w;
    Ok((0..b)
        .map(|i| {
            let base = i * 3 * plane;
            let mut pixels = Vec::with_capacity(3 * plane);
            for p in 0..plane {
                for ch in 0..3 {
                    pixels.push(f(v[base + ch * plane + p]));
                }
            }
            Rgb8Image {
                width: w,
                height: h,
                pixels,
            }
        })
        .collect())
}

/// Converts decoded images `[batch, 3, h, w]` to RGB8 as FiT does ([`fit_to_u8`]).
pub fn to_rgb8_fit<B: Backend>(image: Tensor<B, 4>) -> Result<Vec<Rgb8Image>, ImageError> {
    to_rgb8(image, fit_to_u8)
}

/// Converts decoded images `[batch, 3, h, w]` to RGB8 as diffusers/FLUX do
/// ([`diffusers_to_u8`]).
pub fn to_rgb8_diffusers<B: Backend>(image: Tensor<B, 4>) -> Result<Vec<Rgb8Image>, ImageError> {
    to_rgb8(image, diffusers_to_u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rgb_conventions() {
        assert_eq!(fit_to_u8(0.0), 128);
        assert_eq!(fit_to_u8(-1.0), 0);
        assert_eq!(fit_to_u8(1.0), 255);
        assert_eq!(fit_to_u8(f32::NAN), 0);
        assert_eq!(diffusers_to_u8(0.0), 128); // 127.5 rounds to even 128
        assert_eq!(diffusers_to_u8(-1.0), 0);
        assert_eq!(diffusers_to_u8(1.0), 255);
        assert_eq!(diffusers_to_u8(2.0), 255);
    }
}
