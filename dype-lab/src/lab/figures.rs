//! The lab's figures (plotters): the comparison chart, the progression maps and the sample grids.
//! Text needs DejaVu Sans ([`fonts`]); without it the figures are drawn without text.

use std::path::Path;
use std::sync::OnceLock;

use dype_burn::pipeline::{Rgb8Image, write_png};
use plotters::prelude::*;
use plotters::style::colors::colormaps::ViridisRGB;

use super::{LabError, LabReport, ProgressionMap};
use crate::shapes::Image;

/// Registers DejaVu Sans as plotters' `sans-serif` once; whether text can be drawn.
pub fn fonts() -> bool {
    static FOUND: OnceLock<bool> = OnceLock::new();
    *FOUND.get_or_init(|| {
        [
            "/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf",
            "/usr/share/fonts/TTF/DejaVuSans.ttf",
        ]
        .iter()
        .find_map(|p| std::fs::read(p).ok())
        .is_some_and(|bytes| {
            let leaked: &'static [u8] = Box::leak(bytes.into_boxed_slice());
            plotters::style::register_font("sans-serif", FontStyle::Normal, leaked).is_ok()
        })
    })
}

fn fig_err(path: &Path) -> impl Fn(String) -> LabError + '_ {
    move |reason| LabError::Figure {
        path: path.to_path_buf(),
        reason,
    }
}

/// Per cell, two panels: the fraction with exactly one object and the detail error, a point with
/// its 95 % interval for every row (methods, then calibrations, top to bottom).
pub fn comparison_chart(report: &LabReport, path: &Path) -> Result<(), LabError> {
    let text = fonts();
    let err = fig_err(path);
    let cells = report.cells.len().max(1);
    let height = report
        .cells
        .iter()
        .map(|c| c.rows.len())
        .max()
        .unwrap_or(1)
        .max(1) as u32
        * 24
        + 90;
    let root = BitMapBackend::new(path, (560 * 2, height * cells as u32)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let panels = root.split_evenly((cells, 2));
    for (i, cell) in report.cells.iter().enumerate() {
        let rows = &cell.rows;
        let n = rows.len().max(1);
        for which in 0..2usize {
            let Some(area) = panels.get(2 * i + which) else {
                continue;
            };
            let values: Vec<(f64, f64, f64)> = rows
                .iter()
                .map(|r| {
                    let e = if which == 0 {
                        r.metrics.one
                    } else {
                        r.metrics.detail
                    };
                    (e.mean, e.lo, e.hi)
                })
                .collect();
            let (mut lo, mut hi): (f64, f64) = if which == 0 { (0.0, 1.0) } else { (-0.1, 0.1) };
            for (m, l, h) in &values {
                for v in [m, l, h] {
                    if v.is_finite() {
                        lo = lo.min(*v);
                        hi = hi.max(*v);
                    }
                }
            }
            let pad = 0.05 * (hi - lo).max(0.1);
            let mut builder = ChartBuilder::on(area);
            builder.margin(8);
            if text {
                let title = if which == 0 {
                    format!("{}: exactly one object (↑)", cell.cell.label)
                } else {
                    format!(
                        "{}: detail, log10 PSD ratio (0 = renderer)",
                        cell.cell.label
                    )
                };
                builder
                    .caption(title, ("sans-serif", 16))
                    .x_label_area_size(24)
                    .y_label_area_size(150);
            }
            // Row k is drawn at y = n − 1 − k: the first row on top.
            let mut chart = builder
                .build_cartesian_2d((lo - pad)..(hi + pad), -0.5f64..(n as f64 - 0.5))
                .map_err(|e| err(e.to_string()))?;
            if text {
                let names: Vec<String> = rows
                    .iter()
                    .map(|r| {
                        if r.kind == "calibration" {
                            format!("[{}]", r.name)
                        } else {
                            r.name.clone()
                        }
                    })
                    .collect();
                chart
                    .configure_mesh()
                    .y_labels(n)
                    .y_label_formatter(&|y| {
                        let k = y.round();
                        if (y - k).abs() > 0.01 || k < 0.0 {
                            return String::new();
                        }
                        let idx = n as i64 - 1 - k as i64;
                        usize::try_from(idx)
                            .ok()
                            .and_then(|i| names.get(i).cloned())
                            .unwrap_or_default()
                    })
                    .x_labels(6)
                    .label_style(("sans-serif", 12))
                    .disable_y_mesh()
                    .draw()
                    .map_err(|e| err(e.to_string()))?;
            }
            if which == 1 {
                chart
                    .draw_series(LineSeries::new(
                        [(0.0, -0.5), (0.0, n as f64 - 0.5)],
                        BLACK.mix(0.4),
                    ))
                    .map_err(|e| err(e.to_string()))?;
            }
            for (k, ((m, l, h), row)) in values.iter().zip(rows).enumerate() {
                if !m.is_finite() {
                    continue;
                }
                let colour = if row.kind == "calibration" {
                    RGBColor(200, 90, 40)
                } else {
                    RGBColor(40, 80, 200)
                };
                let y = (n - 1 - k) as f64;
                chart
                    .draw_series([
                        PathElement::new(vec![(*l, y), (*h, y)], colour.stroke_width(2)),
                        PathElement::new(
                            vec![(*l, y - 0.2), (*l, y + 0.2)],
                            colour.stroke_width(1),
                        ),
                        PathElement::new(
                            vec![(*h, y - 0.2), (*h, y + 0.2)],
                            colour.stroke_width(1),
                        ),
                    ])
                    .map_err(|e| err(e.to_string()))?;
                chart
                    .draw_series([Circle::new((*m, y), 4, colour.filled())])
                    .map_err(|e| err(e.to_string()))?;
            }
        }
    }
    root.present().map_err(|e| err(e.to_string()))
}

/// γ(f, t) maps: one row per cell, one column per method, frequency to the right and the
/// paper's t from 1 (noise, top) to 0 (bottom), viridis from 0 (dark) to 1 (yellow); bins where
/// γ is not defined ([`ProgressionMap::defined`](super::ProgressionMap::defined)) in grey.
pub fn progression_figure(report: &LabReport, path: &Path) -> Result<(), LabError> {
    let rows: Vec<Vec<(String, &ProgressionMap)>> = report
        .cells
        .iter()
        .map(|cell| {
            cell.progression
                .iter()
                .map(|(name, map)| (format!("{} · {name}", cell.cell.label), map))
                .collect()
        })
        .collect();
    gamma_panels(&rows, "cycles/px", (260, 230), path)
}

/// Viridis at `v` in [0, 1]; grey for a non-finite value.
fn viridis(v: f64) -> RGBColor {
    if v.is_finite() {
        ViridisRGB.get_color(v.clamp(0.0, 1.0) as f32)
    } else {
        RGBColor(190, 190, 190)
    }
}

/// Height of the γ colour bar under a figure of γ maps.
const BAR: u32 = 44;

/// γ(f, t) maps as [`progression_figure`] draws them, one panel of `panel` pixels per
/// `(title, map)`, in rows, with a γ colour bar underneath; `unit` labels the frequency axis.
pub fn gamma_panels(
    rows: &[Vec<(String, &ProgressionMap)>],
    unit: &str,
    panel: (u32, u32),
    path: &Path,
) -> Result<(), LabError> {
    let err = fig_err(path);
    let cols = rows.iter().map(Vec::len).max().unwrap_or(1).max(1);
    let n_rows = rows.len().max(1);
    let height = panel.1 * n_rows as u32 + 10;
    // At least wide enough for the colour bar's caption.
    let width = (panel.0 * cols as u32).max(760);
    let root = BitMapBackend::new(path, (width, height + BAR)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (maps, bar) = root.split_vertically(height);
    let panels = maps.split_evenly((n_rows, cols));
    for (i, row) in rows.iter().enumerate() {
        for (j, (title, map)) in row.iter().enumerate() {
            if let Some(area) = panels.get(i * cols + j) {
                draw_gamma(area, title, map, unit).map_err(&err)?;
            }
        }
    }
    draw_gamma_bar(&bar, GAMMA_CAPTION).map_err(&err)?;
    root.present().map_err(|e| err(e.to_string()))
}

/// What the γ colours mean.
const GAMMA_CAPTION: &str =
    "γ(f, t): 0 = the noise's power still, 1 = the result's (DyPE Eq. 12); t = 1 is the noise";

/// One run's progression as DyPE's Fig. 2 shows it: the mean PSD of `x_t` at every recorded step
/// (log–log, coloured by t from the noise to the result) beside the γ(f, t) map, with the γ colour
/// bar underneath.
pub fn progression_run_figure(
    title: &str,
    map: &ProgressionMap,
    unit: &str,
    path: &Path,
) -> Result<(), LabError> {
    let err = fig_err(path);
    let (w, h) = (1280u32, 560u32);
    let root = BitMapBackend::new(path, (w, h + BAR)).into_drawing_area();
    root.fill(&WHITE).map_err(|e| err(e.to_string()))?;
    let (top, bar) = root.split_vertically(h);
    let top = if fonts() {
        top.titled(title, ("sans-serif", 16))
            .map_err(|e| err(e.to_string()))?
    } else {
        top
    };
    let (left, right) = top.split_horizontally(w / 2);
    draw_psd(&left, "mean PSD of x_t at every step", map, unit).map_err(&err)?;
    draw_gamma(&right, "γ(f, t), DyPE Eq. 12", map, unit).map_err(&err)?;
    draw_gamma_bar(
        &bar,
        "colours: γ in the map (0 = the noise's power, 1 = the result's); t in the PSD lines (0 = t 1, the noise; 1 = t 0, the result)",
    )
    .map_err(&err)?;
    root.present().map_err(|e| err(e.to_string()))
}

type Area<'a> = DrawingArea<BitMapBackend<'a>, plotters::coord::Shift>;

/// A progression panel's chart builder: its title and label areas when text can be drawn.
fn panel_frame<'a, 'b>(
    area: &'a Area<'b>,
    title: &str,
    y_labels: u32,
) -> ChartBuilder<'a, 'b, BitMapBackend<'b>> {
    let mut builder = ChartBuilder::on(area);
    builder.margin(6);
    if fonts() {
        builder
            .caption(title, ("sans-serif", 14))
            .x_label_area_size(28)
            .y_label_area_size(y_labels);
    }
    builder
}

/// One γ map: frequency to the right, the paper's t from 1 (top) to 0, viridis, undefined bins
/// grey.
fn draw_gamma(
    area: &Area<'_>,
    title: &str,
    map: &ProgressionMap,
    unit: &str,
) -> Result<(), String> {
    let text = fonts();
    let bins = map.frequency.len();
    let fmax = map.frequency.last().copied().unwrap_or(0.5);
    let fmin = map.frequency.first().copied().unwrap_or(0.0);
    let df = if bins > 1 {
        (fmax - fmin) / (bins - 1) as f64
    } else {
        0.1
    };
    let mut chart = panel_frame(area, title, 34)
        .build_cartesian_2d((fmin - df / 2.0)..(fmax + df / 2.0), 0f64..1f64)
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(4)
            .y_labels(3)
            .x_desc(unit)
            .y_desc("t")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    let steps = map.t.len();
    for (s, (t, row)) in map.t.iter().zip(&map.gamma).enumerate() {
        // Each recorded step covers half-way to its neighbours in t.
        let t_hi = if s == 0 {
            1.0
        } else {
            (t + map.t[s - 1]) / 2.0
        };
        let t_lo = if s + 1 == steps {
            0.0
        } else {
            (t + map.t[s + 1]) / 2.0
        };
        chart
            .draw_series(
                row.iter()
                    .zip(&map.frequency)
                    .enumerate()
                    .map(|(k, (g, f))| {
                        let colour: RGBColor = if map.defined.get(k).copied().unwrap_or(true) {
                            viridis(*g)
                        } else {
                            RGBColor(190, 190, 190)
                        };
                        Rectangle::new(
                            [(f - df / 2.0, t_lo), (f + df / 2.0, t_hi)],
                            colour.filled(),
                        )
                    }),
            )
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The mean PSD at every recorded step, log10 power over log10 frequency, one line per step
/// coloured by its t (the noise dark, the result yellow).
fn draw_psd(area: &Area<'_>, title: &str, map: &ProgressionMap, unit: &str) -> Result<(), String> {
    let text = fonts();
    let finite = || {
        map.log_psd
            .iter()
            .flatten()
            .copied()
            .filter(|v| v.is_finite())
    };
    let lo = finite().fold(f64::INFINITY, f64::min);
    let hi = finite().fold(f64::NEG_INFINITY, f64::max);
    // A constant plane's floor (log10 of the smallest positive power) would flatten the rest.
    let lo = lo.max(hi - 12.0);
    let (lo, hi) = if lo.is_finite() && lo < hi {
        (lo, hi)
    } else {
        (0.0, 1.0)
    };
    let fmin = map.frequency.first().copied().unwrap_or(0.01).max(1e-6);
    let fmax = map
        .frequency
        .last()
        .copied()
        .unwrap_or(0.5)
        .max(fmin * 1.01);
    let mut chart = panel_frame(area, title, 44)
        .build_cartesian_2d((fmin..fmax).log_scale(), lo..hi)
        .map_err(|e| e.to_string())?;
    if text {
        chart
            .configure_mesh()
            .disable_mesh()
            .x_labels(5)
            .y_labels(5)
            .x_desc(unit)
            .y_desc("log10 PSD of x_t")
            .label_style(("sans-serif", 11))
            .draw()
            .map_err(|e| e.to_string())?;
    }
    for (t, row) in map.t.iter().zip(&map.log_psd) {
        let colour = viridis(1.0 - t);
        chart
            .draw_series(LineSeries::new(
                map.frequency
                    .iter()
                    .zip(row)
                    .filter(|(f, v)| **f > 0.0 && v.is_finite())
                    .map(|(f, v)| (*f, *v)),
                colour.stroke_width(2),
            ))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// The colour bar (viridis 0 → 1, then grey for undefined bins) with `caption` under it.
fn draw_gamma_bar(area: &Area<'_>, caption: &str) -> Result<(), String> {
    let (w, _) = area.dim_in_pixel();
    let (x0, x1) = (w as i32 / 3, 2 * w as i32 / 3);
    let (y0, y1) = (4, 18);
    let n = 100;
    for k in 0..n {
        let a = x0 + (x1 - x0) * k / n;
        let b = x0 + (x1 - x0) * (k + 1) / n;
        area.draw(&Rectangle::new(
            [(a, y0), (b, y1)],
            ViridisRGB.get_color(k as f32 / (n - 1) as f32).filled(),
        ))
        .map_err(|e| e.to_string())?;
    }
    area.draw(&Rectangle::new(
        [(x1 + 30, y0), (x1 + 50, y1)],
        RGBColor(190, 190, 190).filled(),
    ))
    .map_err(|e| e.to_string())?;
    if fonts() {
        let style = ("sans-serif", 12).into_font().color(&BLACK);
        for (x, label) in [(x0 - 14, "0"), (x1 + 6, "1"), (x1 + 56, "undefined")] {
            area.draw(&Text::new(label, (x, y0 + 1), style.clone()))
                .map_err(|e| e.to_string())?;
        }
        let width = 6 * caption.chars().count() as i32;
        area.draw(&Text::new(caption, ((w as i32 - width) / 2, y1 + 6), style))
            .map_err(|e| e.to_string())?;
    }
    Ok(())
}

/// A grid of samples: one row per entry (its name on the left when text can be drawn), one column
/// per image; small images are zoomed (nearest neighbour) to at least 96 px high.
pub fn grid(rows: &[(String, Vec<Image>)], path: &Path) -> Result<(), LabError> {
    let err = fig_err(path);
    let text = fonts();
    let Some(first) = rows.iter().flat_map(|r| r.1.first()).next() else {
        return Err(err("no images".into()));
    };
    let (ih, iw) = (first.height, first.width);
    let zoom = 96usize.div_ceil(ih.max(1)).max(1);
    let (th, tw) = (ih * zoom, iw * zoom);
    let gap = 4usize;
    let label = if text { 170usize } else { 0 };
    let cols = rows.iter().map(|r| r.1.len()).max().unwrap_or(1).max(1);
    let width = label + cols * (tw + gap) + gap;
    let height = rows.len() * (th + gap) + gap;
    let mut pixels = vec![255u8; width * height * 3];
    for (r, (_, images)) in rows.iter().enumerate() {
        for (c, im) in images.iter().enumerate() {
            if im.height != ih || im.width != iw || !im.is_consistent() {
                return Err(err("grid: images of one size expected".into()));
            }
            let (y0, x0) = (gap + r * (th + gap), label + gap + c * (tw + gap));
            for y in 0..th {
                for x in 0..tw {
                    let o = ((y0 + y) * width + x0 + x) * 3;
                    for ch in 0..3 {
                        let v = im.data[(ch * ih + y / zoom) * iw + x / zoom];
                        pixels[o + ch] = (v.clamp(0.0, 1.0) * 255.0).round() as u8;
                    }
                }
            }
        }
    }
    if text {
        let root = BitMapBackend::with_buffer(&mut pixels, (width as u32, height as u32))
            .into_drawing_area();
        for (r, (name, _)) in rows.iter().enumerate() {
            let y = (gap + r * (th + gap) + th / 2) as i32 - 8;
            root.draw(&Text::new(
                name.clone(),
                (6, y),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let image = Rgb8Image {
        width,
        height,
        pixels,
    };
    write_png(path, &image, &[]).map_err(|e| err(e.to_string()))
}

/// Samples per grid row kept for the resolution figure ([`save_showcase`], [`resolution_grid`]).
pub const SHOWCASE: usize = 2;

/// Saves the images of grid rows `first_row`, `first_row + 1`, … (row 0 the renderer, then the
/// methods in order) as `dir/<row>_<k>.png`, so that a resumed cell can draw its grid and
/// [`resolution_grid`] can draw cells sampled by other processes.
pub fn save_samples(
    rows: &[(String, Vec<Image>)],
    first_row: usize,
    dir: &Path,
) -> Result<(), LabError> {
    std::fs::create_dir_all(dir).map_err(|source| LabError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    for (r, (_, images)) in rows.iter().enumerate() {
        for (k, im) in images.iter().enumerate() {
            let path = dir.join(format!("{}_{k}.png", first_row + r));
            if !im.is_consistent() {
                return Err(fig_err(&path)("inconsistent image".into()));
            }
            let plane = im.height * im.width;
            let pixels = (0..plane)
                .flat_map(|i| (0..3).map(move |c| (c, i)))
                .map(|(c, i)| (im.data[c * plane + i].clamp(0.0, 1.0) * 255.0).round() as u8)
                .collect();
            let rgb = Rgb8Image {
                width: im.width,
                height: im.height,
                pixels,
            };
            write_png(&path, &rgb, &[]).map_err(|e| fig_err(&path)(e.to_string()))?;
        }
    }
    Ok(())
}

/// Reads a sample saved by [`save_samples`] back (8-bit values over 255).
pub fn read_sample(path: &Path) -> Result<Image, LabError> {
    let rgb = read_png(path)?;
    let plane = rgb.width * rgb.height;
    let mut data = vec![0.0f32; 3 * plane];
    for (i, px) in rgb.pixels.chunks_exact(3).enumerate() {
        for (c, v) in px.iter().enumerate() {
            data[c * plane + i] = *v as f32 / 255.0;
        }
    }
    Ok(Image {
        height: rgb.height,
        width: rgb.width,
        data,
    })
}

fn read_png(path: &Path) -> Result<Rgb8Image, LabError> {
    let err = fig_err(path);
    let file = std::fs::File::open(path).map_err(|source| LabError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let mut reader = png::Decoder::new(std::io::BufReader::new(file))
        .read_info()
        .map_err(|e| err(e.to_string()))?;
    let mut buf = vec![
        0;
        reader
            .output_buffer_size()
            .ok_or_else(|| err("too large".into()))?
    ];
    let info = reader
        .next_frame(&mut buf)
        .map_err(|e| err(e.to_string()))?;
    if info.color_type != png::ColorType::Rgb || info.bit_depth != png::BitDepth::Eight {
        return Err(err("not an 8-bit RGB PNG".into()));
    }
    buf.truncate(info.buffer_size());
    Ok(Rgb8Image {
        width: info.width as usize,
        height: info.height as usize,
        pixels: buf,
    })
}

/// The method × resolution figure: one row per method (the renderer first), one column per
/// cell, each panel the first [`SHOWCASE`] samples of that cell (nearest-neighbour zoom to the
/// tallest cell's height), read from the strips [`save_showcase`] wrote under
/// `cells_dir/<cell>/`.
pub fn resolution_grid(report: &LabReport, cells_dir: &Path, path: &Path) -> Result<(), LabError> {
    let err = fig_err(path);
    let text = fonts();
    let names: Vec<String> = std::iter::once("renderer".to_string())
        .chain(report.config.methods.iter().cloned())
        .collect();
    let tallest = report
        .cells
        .iter()
        .map(|c| c.cell.height)
        .max()
        .ok_or_else(|| err("no cells".into()))?;
    // Per cell: the zoom and the panel width.
    let columns: Vec<(usize, usize)> = report
        .cells
        .iter()
        .map(|c| {
            let zoom = (tallest / c.cell.height.max(1)).max(1);
            (zoom, SHOWCASE * (c.cell.width * zoom + 2))
        })
        .collect();
    let panel_h = report
        .cells
        .iter()
        .zip(&columns)
        .map(|(c, (zoom, _))| c.cell.height * zoom)
        .max()
        .unwrap_or(tallest);
    let (gap, label, header) = (
        6usize,
        if text { 150 } else { 0 },
        if text { 22 } else { 0 },
    );
    let width = label + columns.iter().map(|(_, w)| w + gap).sum::<usize>() + gap;
    let height = header + names.len() * (panel_h + gap) + gap;
    let mut pixels = vec![255u8; width * height * 3];
    let mut x0 = label + gap;
    for (cell, (zoom, panel_w)) in report.cells.iter().zip(&columns) {
        for r in 0..names.len() {
            let y0 = header + gap + r * (panel_h + gap);
            for k in 0..SHOWCASE {
                let file = cells_dir
                    .join(&cell.cell.label)
                    .join(format!("{r}_{k}.png"));
                if !file.exists() {
                    continue;
                }
                let im = read_png(&file)?;
                let xk = x0 + k * (cell.cell.width * zoom + 2);
                for y in 0..(im.height * zoom).min(panel_h) {
                    for x in 0..im.width * zoom {
                        let (px, py) = (xk + x, y0 + y);
                        if px >= width || py >= height {
                            continue;
                        }
                        let src = ((y / zoom) * im.width + x / zoom) * 3;
                        let dst = (py * width + px) * 3;
                        if let (Some(s), Some(d)) =
                            (im.pixels.get(src..src + 3), pixels.get_mut(dst..dst + 3))
                        {
                            d.copy_from_slice(s);
                        }
                    }
                }
            }
        }
        x0 += panel_w + gap;
    }
    if text {
        let root = BitMapBackend::with_buffer(&mut pixels, (width as u32, height as u32))
            .into_drawing_area();
        for (r, name) in names.iter().enumerate() {
            let y = (header + gap + r * (panel_h + gap) + panel_h / 2) as i32 - 8;
            root.draw(&Text::new(
                name.clone(),
                (6, y),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(|e| err(e.to_string()))?;
        }
        let mut x = label + gap;
        for (cell, (_, panel_w)) in report.cells.iter().zip(&columns) {
            root.draw(&Text::new(
                format!(
                    "{} ({}×{})",
                    cell.cell.label, cell.cell.height, cell.cell.width
                ),
                (x as i32, 3),
                ("sans-serif", 16).into_font().color(&BLACK),
            ))
            .map_err(|e| err(e.to_string()))?;
            x += panel_w + gap;
        }
        root.present().map_err(|e| err(e.to_string()))?;
    }
    let image = Rgb8Image {
        width,
        height,
        pixels,
    };
    write_png(path, &image, &[]).map_err(|e| err(e.to_string()))
}
