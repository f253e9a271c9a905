//! The detector the lab and the quality gate use: nearest class colour → mask of the requested
//! class → connected components above a minimum area → count, area fraction and centre.

use super::ShapesError;
use super::render::{BACKGROUND, CLASS_COLOURS, CLASSES, Image, check_class};

/// Components smaller than this fraction of the image are specks, not objects (0.5 %).
pub const MIN_AREA_FRACTION: f64 = 0.005;

/// A pixel farther than this (RGB distance) from every palette colour is unlabelled: blends along
/// an anti-aliased edge then do not pass for a third colour (3.5 σ of the detail texture).
pub const MAX_COLOUR_DISTANCE: f32 = 0.3;

/// The label of a pixel near no palette colour.
pub const UNLABELLED: u8 = u8::MAX;

/// What the detector found of one class in one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Detection {
    /// Components of the class's colour of at least the minimum area.
    pub count: usize,
    /// Area of the largest of them, as a fraction of the image (0 when there is none).
    pub area_fraction: f64,
    /// Centre of mass of the largest, `(row, column)` as fractions of the height and width.
    pub centre: Option<(f64, f64)>,
}

/// Per pixel, the nearest of the background (`0`) and the class colours (`1 + class`), row-major;
/// [`UNLABELLED`] when none is within [`MAX_COLOUR_DISTANCE`]. An image whose data does not match
/// its size is a [`ShapesError::Size`].
pub fn nearest_colours(image: &Image) -> Result<Vec<u8>, ShapesError> {
    if !image.is_consistent() {
        return Err(ShapesError::Size {
            height: image.height,
            width: image.width,
        });
    }
    let plane = image.height * image.width;
    let mut palette = vec![BACKGROUND];
    palette.extend_from_slice(&CLASS_COLOURS);
    let mut labels = Vec::with_capacity(image.height * image.width);
    for row in 0..image.height {
        for col in 0..image.width {
            let i = row * image.width + col;
            let px = [
                image.data[i],
                image.data[plane + i],
                image.data[2 * plane + i],
            ];
            let mut best = (f32::INFINITY, 0u8);
            for (i, c) in palette.iter().enumerate() {
                let d: f32 = (0..3).map(|k| (px[k] - c[k]).powi(2)).sum();
                if d < best.0 {
                    best = (d, i as u8);
                }
            }
            let near = best.0 <= MAX_COLOUR_DISTANCE * MAX_COLOUR_DISTANCE;
            labels.push(if near { best.1 } else { UNLABELLED });
        }
    }
    Ok(labels)
}

/// Detects `class` in `image` with components of at least `min_area_fraction` of the image
/// (4-connectivity).
pub fn detect(
    image: &Image,
    class: usize,
    min_area_fraction: f64,
) -> Result<Detection, ShapesError> {
    check_class(class)?;
    if !(min_area_fraction.is_finite() && (0.0..=1.0).contains(&min_area_fraction)) {
        return Err(ShapesError::Config);
    }
    let (h, w) = (image.height, image.width);
    let target = class as u8 + 1;
    let labels = nearest_colours(image)?;
    let mut seen = vec![false; h * w];
    let min_area = (min_area_fraction * (h * w) as f64).ceil().max(1.0) as usize;
    let (mut count, mut best) = (0usize, None::<(usize, f64, f64)>);
    let mut stack = Vec::new();
    for start in 0..h * w {
        if seen[start] || labels[start] != target {
            continue;
        }
        // Flood fill one component.
        let (mut area, mut sum_r, mut sum_c) = (0usize, 0.0f64, 0.0f64);
        seen[start] = true;
        stack.push(start);
        while let Some(i) = stack.pop() {
            let (r, c) = (i / w, i % w);
            area += 1;
            sum_r += r as f64 + 0.5;
            sum_c += c as f64 + 0.5;
            let mut visit = |j: usize| {
                if !seen[j] && labels[j] == target {
                    seen[j] = true;
                    stack.push(j);
                }
            };
            if r > 0 {
                visit(i - w);
            }
            if r + 1 < h {
                visit(i + w);
            }
            if c > 0 {
                visit(i - 1);
            }
            if c + 1 < w {
                visit(i + 1);
            }
        }
        if area >= min_area {
            count += 1;
            if best.is_none_or(|b| area > b.0) {
                best = Some((area, sum_r / area as f64, sum_c / area as f64));
            }
        }
    }
    Ok(Detection {
        count,
        area_fraction: best.map_or(0.0, |b| b.0 as f64 / (h * w) as f64),
        centre: best.map(|b| (b.1 / h as f64, b.2 / w as f64)),
    })
}

/// The class the detector recognises in `image`: the class colour that labels the most pixels
/// ([`nearest_colours`]), if it covers at least `min_area_fraction` of the image; `None` when no
/// class colour does. Weaker than [`passes`] (no count, no area range): it says which class an
/// image shows, not how well.
pub fn classify(image: &Image, min_area_fraction: f64) -> Result<Option<usize>, ShapesError> {
    if !(min_area_fraction.is_finite() && (0.0..=1.0).contains(&min_area_fraction)) {
        return Err(ShapesError::Config);
    }
    let labels = nearest_colours(image)?;
    let mut counts = [0usize; CLASSES];
    for &l in &labels {
        if let Some(c) = (l as usize).checked_sub(1).and_then(|i| counts.get_mut(i)) {
            *c += 1;
        }
    }
    let min_area = (min_area_fraction * labels.len() as f64).ceil().max(1.0) as usize;
    Ok(counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n >= min_area)
        .max_by_key(|(_, n)| **n)
        .map(|(class, _)| class))
}

/// Whether a detection passes the quality gate for its class: exactly one object, with an area
/// fraction inside `range` (the renderer's range at that size, see [`super::area_range`]).
pub fn passes(detection: &Detection, range: (f64, f64)) -> bool {
    detection.count == 1 && (range.0..=range.1).contains(&detection.area_fraction)
}

#[allow(dead_code)]
const _: () = assert!(CLASSES < u8::MAX as usize);
