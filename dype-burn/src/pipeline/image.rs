//! PNG output with the generation parameters as text metadata, written atomically (a temporary
//! file renamed into place), so nothing appears at the output path unless encoding succeeded.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};

use crate::vae::Rgb8Image;

/// Errors writing a PNG.
#[derive(Debug, thiserror::Error)]
pub enum PngError {
    /// File system error.
    #[error("{path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// Encoder error.
    #[error("{path}: PNG encoding failed: {reason}")]
    Encode {
        /// The path.
        path: PathBuf,
        /// Why.
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

/// Writes `image` as an 8-bit RGB PNG with `metadata` as `tEXt` chunks (key, value).
pub fn write_png(
    path: &Path,
    image: &Rgb8Image,
    metadata: &[(String, String)],
) -> Result<(), PngError> {
    if image.pixels.len() != image.width * image.height * 3 || image.width == 0 || image.height == 0
    {
        return Err(PngError::BadImage {
            width: image.width,
            height: image.height,
            len: image.pixels.len(),
        });
    }
    let io = |e| PngError::Io {
        path: path.to_path_buf(),
        source: e,
    };
    let enc = |e: png::EncodingError| PngError::Encode {
        path: path.to_path_buf(),
        reason: e.to_string(),
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
