//! The burst chart: requests waiting and running per fal account over time, one panel per
//! strategy on the same axes.

use crate::analysis::Series;
use anyhow::anyhow;
use plotters::coord::Shift;
use plotters::prelude::*;
use serde::Serialize;
use std::path::Path;

/// One strategy's panel.
#[derive(Debug, Clone)]
pub struct Panel {
    /// Printed above the panel.
    pub title: String,
    /// What to draw.
    pub series: Series,
    /// Each account's limit (drawn as a thin line in the account's colour).
    pub limits: Vec<(String, u32)>,
}

/// What the lines of the chart mean (also printed on it).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Legend {
    /// Where the chart was written.
    pub path: String,
    /// Line colour → meaning, per panel.
    pub panels: Vec<(String, Vec<(String, String)>)>,
    /// What the axes are.
    pub axes: String,
}

const WIDTH: u32 = 1400;
const HEIGHT: u32 = 1000;
const INK: RGBColor = RGBColor(30, 30, 30);
const GRID: RGBColor = RGBColor(225, 225, 225);
const WAITING: (RGBColor, &str) = (RGBColor(200, 30, 30), "red");
const TOTAL: (RGBColor, &str) = (RGBColor(120, 120, 120), "grey");
const ACCOUNTS: [(RGBColor, &str); 3] =
    [(RGBColor(31, 119, 180), "blue"), (RGBColor(255, 140, 0), "orange"), (RGBColor(44, 160, 44), "green")];

/// Text size in pixels.
const TEXT_PX: u32 = 17;

fn text_style() -> TextStyle<'static> {
    (mediagen_reports::chart::embedded_font(), TEXT_PX).into_font().color(&INK)
}

/// Draws `text` with its top-left corner at `position`.
fn draw_text<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    position: (i32, i32),
    text: &str,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    area.draw_text(text, &text_style(), position)
}

/// Width in pixels of `text` as `draw_text` draws it.
fn text_width<DB: DrawingBackend>(area: &DrawingArea<DB, Shift>, text: &str) -> i32 {
    area.estimate_text_size(text, &text_style()).map_or(0, |(w, _)| i32::try_from(w).unwrap_or(i32::MAX))
}

fn err<E: std::fmt::Debug>(error: E) -> anyhow::Error {
    anyhow!("drawing the chart: {error:?}")
}

/// A round step that cuts `0..max` into about `parts` pieces.
fn nice_step(max: f64, parts: f64) -> f64 {
    let raw = (max / parts).max(1e-9);
    let magnitude = 10f64.powf(raw.log10().floor());
    [1.0, 2.0, 5.0, 10.0].iter().map(|m| m * magnitude).find(|s| *s >= raw).unwrap_or(10.0 * magnitude)
}

fn lighter(color: RGBColor) -> RGBColor {
    let mix = |c: u8| ((u16::from(c) + 2 * 255) / 3) as u8;
    RGBColor(mix(color.0), mix(color.1), mix(color.2))
}

/// Draws `panels` stacked, on shared axes, into the PNG at `path`.
///
/// # Errors
/// When the file cannot be written.
pub fn draw(path: &Path, title: &str, panels: &[Panel]) -> anyhow::Result<Legend> {
    let x_max = panels.iter().filter_map(|p| p.series.times.last().copied()).fold(1.0, f64::max);
    let y_max = panels
        .iter()
        .flat_map(|p| {
            let running: u32 = (0..p.series.times.len())
                .map(|i| p.series.running.iter().map(|(_, r)| r[i]).sum::<u32>())
                .max()
                .unwrap_or(0);
            let limits: u32 = p.limits.iter().map(|(_, l)| *l).sum();
            p.series.waiting.iter().copied().chain([running, limits])
        })
        .max()
        .unwrap_or(1)
        .max(1) as f64
        * 1.08;

    let root = BitMapBackend::new(path, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    draw_text(&root, (20, 14), title).map_err(err)?;
    let body = root.margin(44, 0, 0, 0);
    let areas = body.split_evenly((panels.len().max(1), 1));
    let mut legend = Vec::new();
    for (panel, area) in panels.iter().zip(&areas) {
        legend.push((panel.title.clone(), draw_panel(&root, area, panel, x_max, y_max)?));
    }
    root.present().map_err(err)?;
    Ok(Legend {
        path: path.display().to_string(),
        panels: legend,
        axes: "x: simulated seconds since the burst began; y: requests (waiting = sent by a user, not yet \
               running at fal, in our queue or fal's; running = IN_PROGRESS at fal per account; thin lines: \
               each account's limit and the total of the limits)"
            .to_owned(),
    })
}

fn draw_panel<DB: DrawingBackend>(
    root: &DrawingArea<DB, Shift>,
    area: &DrawingArea<DB, Shift>,
    panel: &Panel,
    x_max: f64,
    y_max: f64,
) -> anyhow::Result<Vec<(String, String)>>
where
    DB::ErrorType: 'static,
{
    let (left, top) = (area.get_base_pixel().0 + 70, area.get_base_pixel().1 + 34);
    let mut chart = ChartBuilder::on(area)
        .margin_left(70)
        .margin_right(30)
        .margin_top(34)
        .margin_bottom(44)
        .build_cartesian_2d(0f64..x_max, 0f64..y_max)
        .map_err(err)?;
    draw_text(root, (left, top - 26), &panel.title).map_err(err)?;

    let x_step = nice_step(x_max, 10.0);
    let y_step = nice_step(y_max, 6.0);
    let mut x = 0.0;
    while x <= x_max + 1e-9 {
        chart.draw_series(LineSeries::new([(x, 0.0), (x, y_max)], &GRID)).map_err(err)?;
        let (px, py) = chart.backend_coord(&(x, 0.0));
        let label = format!("{x:.0}");
        draw_text(root, (px - text_width(root, &label) / 2, py + 8), &label).map_err(err)?;
        x += x_step;
    }
    let mut y = 0.0;
    while y <= y_max + 1e-9 {
        chart.draw_series(LineSeries::new([(0.0, y), (x_max, y)], &GRID)).map_err(err)?;
        let (px, py) = chart.backend_coord(&(0.0, y));
        let label = format!("{y:.0}");
        draw_text(root, (px - 8 - text_width(root, &label), py - 8), &label).map_err(err)?;
        y += y_step;
    }
    chart.draw_series(LineSeries::new([(0.0, 0.0), (x_max, 0.0)], &INK)).map_err(err)?;
    chart.draw_series(LineSeries::new([(0.0, 0.0), (0.0, y_max)], &INK)).map_err(err)?;

    let times = &panel.series.times;
    let mut legend = Vec::new();
    for (n, (name, running)) in panel.series.running.iter().enumerate() {
        let (color, color_name) = ACCOUNTS[n % ACCOUNTS.len()];
        if let Some((_, limit)) = panel.limits.iter().find(|(a, _)| a == name) {
            let limit = f64::from(*limit);
            chart.draw_series(LineSeries::new([(0.0, limit), (x_max, limit)], &lighter(color))).map_err(err)?;
        }
        let points = times.iter().zip(running).map(|(t, r)| (*t, f64::from(*r)));
        chart.draw_series(LineSeries::new(points, color.stroke_width(2))).map_err(err)?;
        legend.push((color_name.to_owned(), format!("running on {name}")));
    }
    if panel.series.running.len() > 1 {
        let total: f64 = panel.limits.iter().map(|(_, l)| f64::from(*l)).sum();
        chart.draw_series(LineSeries::new([(0.0, total), (x_max, total)], &lighter(TOTAL.0))).map_err(err)?;
        let points = (0..times.len())
            .map(|i| (times[i], f64::from(panel.series.running.iter().map(|(_, r)| r[i]).sum::<u32>())));
        chart.draw_series(LineSeries::new(points, TOTAL.0.stroke_width(2))).map_err(err)?;
        legend.push((TOTAL.1.to_owned(), "running, all accounts".to_owned()));
    }
    let points = times.iter().zip(&panel.series.waiting).map(|(t, w)| (*t, f64::from(*w)));
    chart.draw_series(LineSeries::new(points, WAITING.0.stroke_width(2))).map_err(err)?;
    legend.push((WAITING.1.to_owned(), "waiting (sent, not yet running at fal)".to_owned()));

    let (right, _) = chart.backend_coord(&(x_max, y_max));
    let colors: Vec<RGBColor> = legend
        .iter()
        .map(|(name, _)| match name.as_str() {
            "red" => WAITING.0,
            "grey" => TOTAL.0,
            other => ACCOUNTS.iter().find(|(_, n)| *n == other).map_or(INK, |(c, _)| *c),
        })
        .collect();
    let widest = legend.iter().map(|(_, text)| text_width(root, text)).max().unwrap_or(0);
    let x0 = right - widest - 40;
    for (n, ((_, text), color)) in legend.iter().zip(colors).enumerate() {
        let y0 = top + 10 + n as i32 * 22;
        root.draw(&Rectangle::new([(x0, y0 + 4), (x0 + 18, y0 + 9)], color.filled())).map_err(err)?;
        draw_text(root, (x0 + 26, y0 - 2), text).map_err(err)?;
    }
    Ok(legend)
}
