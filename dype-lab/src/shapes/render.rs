//! The renderer: one class-coloured shape per image over a grey background, both carrying a
//! low-contrast detail texture at a fixed pixel scale.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::ShapesError;

/// Classes of the dataset.
pub const CLASSES: usize = 8;

/// Class names, by id: the colour and the shape.
pub const CLASS_NAMES: [&str; CLASSES] = [
    "red disc",
    "green square",
    "blue triangle",
    "yellow ring",
    "magenta cross",
    "cyan diamond",
    "orange hexagon",
    "white ellipse",
];

/// Class colours (RGB in [0, 1]), by id: far apart from each other and from the background, so the
/// nearest colour names a pixel's class even under the detail texture.
pub const CLASS_COLOURS: [[f32; 3]; CLASSES] = [
    [0.90, 0.20, 0.20],
    [0.20, 0.80, 0.25],
    [0.25, 0.40, 0.95],
    [0.95, 0.85, 0.20],
    [0.85, 0.25, 0.85],
    [0.20, 0.85, 0.90],
    [0.95, 0.55, 0.15],
    [0.92, 0.92, 0.92],
];

/// Background colour (dark grey).
pub const BACKGROUND: [f32; 3] = [0.18, 0.18, 0.20];

/// Largest side the renderer draws (pixels).
pub const MAX_SIDE: usize = 4096;

/// What the renderer draws, in units of the image that do not depend on its resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RenderConfig {
    /// Object size range: the diameter of the circle around the shape, as a fraction of the
    /// shorter side (0.4–0.7).
    pub size: (f32, f32),
    /// Largest offset of the object's centre from the image centre, as a fraction of each side.
    pub centre_offset: f32,
    /// Wavelength range of the detail texture in **pixels** (the same at every resolution).
    pub detail_wavelength: (f32, f32),
    /// Standard deviation of the detail texture (low contrast).
    pub detail_std: f32,
    /// Plane waves summed into the detail texture.
    pub detail_waves: usize,
}

impl Default for RenderConfig {
    /// 40–70 % of the shorter side, centre within ±10 % of the middle, detail of 8–16 px
    /// wavelength (2–4 tokens of a 4-pixel patch) with a standard deviation of 0.05.
    fn default() -> Self {
        RenderConfig {
            size: (0.4, 0.7),
            centre_offset: 0.1,
            detail_wavelength: (8.0, 16.0),
            detail_std: 0.05,
            detail_waves: 32,
        }
    }
}

/// The layout of one sample: everything about its object, independent of the resolution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Layout {
    /// Class id.
    pub class: usize,
    /// Diameter of the circle around the shape, as a fraction of the shorter side.
    pub size: f32,
    /// Centre `(row, column)` as fractions of the height and the width.
    pub centre: (f32, f32),
}

/// One plane wave of the detail texture.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Wave {
    /// Wave vector, radians per pixel (row, column).
    k: (f32, f32),
    phase: f32,
    amplitude: f32,
}

/// An RGB image, channels first (`[3, height, width]`), values in [0, 1].
#[derive(Debug, Clone, PartialEq)]
pub struct Image {
    /// Rows.
    pub height: usize,
    /// Columns.
    pub width: usize,
    /// `3 · height · width` values, channel-major.
    pub data: Vec<f32>,
}

impl Image {
    /// The value of channel `c` at `(row, col)`, `None` outside the image or its data.
    pub fn at(&self, c: usize, row: usize, col: usize) -> Option<f32> {
        if c >= 3 || row >= self.height || col >= self.width {
            return None;
        }
        self.data
            .get((c * self.height + row) * self.width + col)
            .copied()
    }

    /// Whether `data` holds exactly `3 · height · width` values.
    pub fn is_consistent(&self) -> bool {
        self.height
            .checked_mul(self.width)
            .and_then(|n| n.checked_mul(3))
            .is_some_and(|n| n == self.data.len())
    }
}

/// A seeded sample: its class and seed fix the layout and the texture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Sample {
    /// Class id (`< CLASSES`).
    pub class: usize,
    /// Seed of the layout and the texture.
    pub seed: u64,
}

impl RenderConfig {
    fn check(&self) -> Result<(), ShapesError> {
        let (lo, hi) = self.size;
        let (wl, wh) = self.detail_wavelength;
        let ok = lo.is_finite()
            && hi.is_finite()
            && 0.0 < lo
            && lo <= hi
            && hi <= 1.0
            && (0.0..=0.5).contains(&self.centre_offset)
            && wl.is_finite()
            && wh.is_finite()
            && 2.0 <= wl
            && wl <= wh
            && self.detail_std.is_finite()
            && (0.0..=0.5).contains(&self.detail_std)
            && self.detail_waves <= 4096;
        if ok { Ok(()) } else { Err(ShapesError::Config) }
    }

    /// The layout of `sample`: size and centre drawn from the sample's seed.
    pub fn layout(&self, sample: Sample) -> Result<Layout, ShapesError> {
        self.check()?;
        check_class(sample.class)?;
        let mut rng = ChaCha8Rng::seed_from_u64(sample.seed);
        let size = self.size.0 + (self.size.1 - self.size.0) * rng.random::<f32>();
        let mut offset = || self.centre_offset * (2.0 * rng.random::<f32>() - 1.0);
        let centre = (0.5 + offset(), 0.5 + offset());
        Ok(Layout {
            class: sample.class,
            size,
            centre,
        })
    }

    fn waves(&self, seed: u64) -> Vec<Wave> {
        // A stream apart from the layout's.
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let (wl, wh) = self.detail_wavelength;
        let mut waves: Vec<Wave> = (0..self.detail_waves)
            .map(|_| {
                // Log-uniform wavelength; amplitude ∝ wavelength (a spectrum falling as 1/f).
                let lambda = wl * (wh / wl).powf(rng.random::<f32>());
                let angle = std::f32::consts::TAU * rng.random::<f32>();
                let k = std::f32::consts::TAU / lambda;
                Wave {
                    k: (k * angle.sin(), k * angle.cos()),
                    phase: std::f32::consts::TAU * rng.random::<f32>(),
                    amplitude: lambda,
                }
            })
            .collect();
        // Σ a cos(·) has variance Σ a²/2: scale it to `detail_std`.
        let var: f32 = waves.iter().map(|w| w.amplitude * w.amplitude / 2.0).sum();
        let norm = if var > 0.0 {
            self.detail_std / var.sqrt()
        } else {
            0.0
        };
        for w in &mut waves {
            w.amplitude *= norm;
        }
        waves
    }

    /// Renders `sample` at `height × width` pixels.
    pub fn render(
        &self,
        sample: Sample,
        height: usize,
        width: usize,
    ) -> Result<Image, ShapesError> {
        if height == 0 || width == 0 || height > MAX_SIDE || width > MAX_SIDE {
            return Err(ShapesError::Size { height, width });
        }
        let layout = self.layout(sample)?;
        let waves = self.waves(sample.seed);
        let extent = layout.size * height.min(width) as f32;
        let (cy, cx) = (
            layout.centre.0 * height as f32,
            layout.centre.1 * width as f32,
        );
        let colour = CLASS_COLOURS[layout.class];
        let plane = height * width;
        let mut data = vec![0.0f32; 3 * plane];
        for row in 0..height {
            for col in 0..width {
                let (y, x) = (row as f32 + 0.5, col as f32 + 0.5);
                // Shape coordinates: the circle around the shape has radius 0.5.
                let p = ((x - cx) / extent, (y - cy) / extent);
                let sdf_px = shape_sdf(layout.class, p) * extent;
                let alpha = (0.5 - sdf_px).clamp(0.0, 1.0);
                let detail: f32 = waves
                    .iter()
                    .map(|w| w.amplitude * (w.k.0 * y + w.k.1 * x + w.phase).cos())
                    .sum();
                for c in 0..3 {
                    let base = BACKGROUND[c] + alpha * (colour[c] - BACKGROUND[c]);
                    data[c * plane + row * width + col] = (base + detail).clamp(0.0, 1.0);
                }
            }
        }
        Ok(Image {
            height,
            width,
            data,
        })
    }
}

pub(super) fn check_class(class: usize) -> Result<usize, ShapesError> {
    if class < CLASSES {
        Ok(class)
    } else {
        Err(ShapesError::Class { class })
    }
}

/// Signed distance of a convex polygon around the origin (max over edges of the distance to the
/// edge's line): exact inside and along the edges, which is where anti-aliasing needs it.
fn polygon_sdf(p: (f32, f32), vertices: &[(f32, f32)]) -> f32 {
    let mut d = f32::NEG_INFINITY;
    for (i, &a) in vertices.iter().enumerate() {
        let b = vertices[(i + 1) % vertices.len()];
        let (ex, ey) = (b.0 - a.0, b.1 - a.1);
        let len = (ex * ex + ey * ey).sqrt().max(f32::MIN_POSITIVE);
        let (mut nx, mut ny) = (ey / len, -ex / len);
        // The normal points away from the origin (inside the polygon).
        if nx * a.0 + ny * a.1 < 0.0 {
            (nx, ny) = (-nx, -ny);
        }
        d = d.max((p.0 - a.0) * nx + (p.1 - a.1) * ny);
    }
    d
}

/// The regular `n`-gon inscribed in the circle of radius 0.5, first vertex at `angle`.
fn regular(n: usize, angle: f32) -> Vec<(f32, f32)> {
    (0..n)
        .map(|i| {
            let a = angle - std::f32::consts::TAU * i as f32 / n as f32;
            (0.5 * a.cos(), 0.5 * a.sin())
        })
        .collect()
}

/// Signed distance (units of the shape's circle diameter) of class `class`'s shape at `p`.
fn shape_sdf(class: usize, p: (f32, f32)) -> f32 {
    use std::f32::consts::{FRAC_PI_2, FRAC_PI_4};
    let r = (p.0 * p.0 + p.1 * p.1).sqrt();
    let boxed = |p: (f32, f32), a: f32, b: f32| (p.0.abs() - a).max(p.1.abs() - b);
    match class {
        0 => r - 0.5,
        1 => polygon_sdf(p, &regular(4, FRAC_PI_4)),
        2 => polygon_sdf(p, &regular(3, -FRAC_PI_2)),
        3 => (r - 0.375).abs() - 0.125,
        4 => boxed(p, 0.48, 0.14).min(boxed(p, 0.14, 0.48)),
        5 => polygon_sdf(p, &regular(4, 0.0)),
        6 => polygon_sdf(p, &regular(6, 0.0)),
        _ => {
            // Ellipse with semi-axes 0.5 × 0.28 (scaled distance; exact on the axes).
            let (a, b) = (0.5, 0.28);
            ((p.0 / a).powi(2) + (p.1 / b).powi(2))
                .sqrt()
                .mul_add(b, -b)
        }
    }
}
