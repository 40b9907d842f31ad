//! The report chart: one PNG with three panels over the trend days.
//!
//! Text is drawn with DejaVu Sans embedded from the `dejavu` crate (plotters' `ab_glyph`
//! backend), so no system font library is needed.

use mediagen_domain::insights::Report;
use plotters::prelude::*;
use plotters::style::{FontStyle, register_font};
use std::sync::Once;

/// Width of the PNG in pixels.
pub const WIDTH: u32 = 1200;
/// Height of the PNG in pixels.
pub const HEIGHT: u32 = 1350;

/// The family name the embedded font is registered under.
const FONT: &str = "sans-serif";

/// Series colors, cycled.
const PALETTE: [RGBColor; 8] = [
    RGBColor(31, 119, 180),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(214, 39, 40),
    RGBColor(148, 103, 189),
    RGBColor(140, 86, 75),
    RGBColor(227, 119, 194),
    RGBColor(127, 127, 127),
];

/// Drawing or encoding failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChartError(pub String);

impl std::fmt::Display for ChartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "chart: {}", self.0)
    }
}

impl std::error::Error for ChartError {}

fn err(error: impl std::fmt::Display) -> ChartError {
    ChartError(error.to_string())
}

static FONT_ONCE: Once = Once::new();

/// The family name of the embedded DejaVu Sans, registered with plotters on first use:
/// every chart of the workspace draws its text with it, no system font library needed.
pub fn embedded_font() -> &'static str {
    register();
    FONT
}

fn register() {
    FONT_ONCE.call_once(|| {
        // The embedded font is a valid TTF: registration only fails on corrupt bytes.
        let _ = register_font(FONT, FontStyle::Normal, dejavu::sans::regular());
        let _ = register_font(FONT, FontStyle::Bold, dejavu::sans::bold());
    });
}

/// The file name of `report`'s chart: `mediagen-day-2026-11-25.png`.
pub fn file_name(report: &Report) -> String {
    format!("mediagen-{}-{}.png", report.period.kind, report.period.from.format("%Y-%m-%d"))
}

/// The chart of `report` as a `WIDTH × HEIGHT` PNG.
///
/// # Errors
/// [`ChartError`] when drawing or encoding fails.
pub fn render(report: &Report) -> Result<Vec<u8>, ChartError> {
    register();
    let mut pixels = vec![0u8; (WIDTH * HEIGHT * 3) as usize];
    draw(report, &mut pixels)?;
    encode(&pixels)
}

fn draw(report: &Report, pixels: &mut [u8]) -> Result<(), ChartError> {
    let root = BitMapBackend::with_buffer(pixels, (WIDTH, HEIGHT)).into_drawing_area();
    root.fill(&WHITE).map_err(err)?;
    let title = format!("mediagen — {} report {}", report.period.kind, report.period.label());
    let root = root.titled(&title, (FONT, 30).into_font().style(FontStyle::Bold)).map_err(err)?;
    let panels = root.split_evenly((3, 1));
    let days = &report.trend_days;
    let n = days.len().max(1);
    let x_range = -0.5f64..(n as f64 - 0.5);
    let label = |x: &f64| {
        let i = x.round();
        if (x - i).abs() > 1e-6 || i < 0.0 {
            return String::new();
        }
        days.get(i as usize).map_or_else(String::new, |d| d.format("%m-%d").to_string())
    };

    // Jobs per day by model.
    let max_jobs = report.models.iter().flat_map(|m| m.days.iter().map(|(jobs, _)| *jobs)).max().unwrap_or(0);
    let mut chart = ChartBuilder::on(&panels[0])
        .caption("Jobs per day by model", (FONT, 22))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), 0f64..(max_jobs as f64 * 1.15).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc("jobs")
        .label_style((FONT, 15))
        .draw()
        .map_err(err)?;
    for (i, model) in report.models.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let points: Vec<(f64, f64)> =
            model.days.iter().enumerate().map(|(x, (jobs, _))| (x as f64, *jobs as f64)).collect();
        chart
            .draw_series(LineSeries::new(points.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(model.model.clone())
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(err)?;
    }
    if !report.models.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }

    // fal list cost per day by model, stacked.
    let mut totals = vec![0f64; n];
    for model in &report.models {
        for (x, (_, cost)) in model.days.iter().enumerate() {
            totals[x] += cost.dollars_f64();
        }
    }
    let max_cost = totals.iter().copied().fold(0.0, f64::max);
    let mut chart = ChartBuilder::on(&panels[1])
        .caption("fal cost per day by model (list price, $; stacked)", (FONT, 22))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range.clone(), 0f64..(max_cost * 1.15).max(0.01))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_label_formatter(&|y| format!("${y:.2}"))
        .label_style((FONT, 15))
        .draw()
        .map_err(err)?;
    let mut base = vec![0f64; n];
    for (i, model) in report.models.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let top: Vec<f64> = model.days.iter().enumerate().map(|(x, (_, c))| base[x] + c.dollars_f64()).collect();
        let mut polygon: Vec<(f64, f64)> = top.iter().enumerate().map(|(x, y)| (x as f64, *y)).collect();
        polygon.extend(base.iter().enumerate().rev().map(|(x, y)| (x as f64, *y)));
        chart.draw_series(std::iter::once(Polygon::new(polygon, color.mix(0.55).filled()))).map_err(err)?;
        chart
            .draw_series(LineSeries::new(top.iter().enumerate().map(|(x, y)| (x as f64, *y)), color.stroke_width(2)))
            .map_err(err)?
            .label(model.model.clone())
            .legend(move |(x, y)| Rectangle::new([(x, y - 6), (x + 20, y + 6)], color.mix(0.55).filled()));
        base = top;
    }
    if !report.models.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }

    // Peak concurrency per account against its limit.
    let max_slots = report
        .accounts
        .iter()
        .flat_map(|a| a.days.iter().map(|(_, peak, limit)| (*peak).max(*limit)))
        .max()
        .unwrap_or(0);
    let mut chart = ChartBuilder::on(&panels[2])
        .caption("Peak jobs in flight per account (solid) and its limit (dashed)", (FONT, 22))
        .margin(12)
        .x_label_area_size(32)
        .y_label_area_size(64)
        .build_cartesian_2d(x_range, 0f64..(f64::from(max_slots) * 1.2).max(1.0))
        .map_err(err)?;
    chart
        .configure_mesh()
        .x_labels(n)
        .x_label_formatter(&label)
        .y_desc("jobs at once")
        .label_style((FONT, 15))
        .draw()
        .map_err(err)?;
    for (i, account) in report.accounts.iter().enumerate() {
        let color = PALETTE[i % PALETTE.len()];
        let peaks: Vec<(f64, f64)> =
            account.days.iter().enumerate().map(|(x, (_, peak, _))| (x as f64, f64::from(*peak))).collect();
        let limits: Vec<(f64, f64)> =
            account.days.iter().enumerate().map(|(x, (_, _, limit))| (x as f64, f64::from(*limit))).collect();
        chart
            .draw_series(LineSeries::new(peaks.clone(), color.stroke_width(3)))
            .map_err(err)?
            .label(format!("{} peak", account.id))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(3)));
        chart.draw_series(peaks.into_iter().map(|p| Circle::new(p, 4, color.filled()))).map_err(err)?;
        chart
            .draw_series(DashedLineSeries::new(limits, 10, 6, color.stroke_width(2)))
            .map_err(err)?
            .label(format!("{} limit", account.id))
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 8, y)], color.stroke_width(2)));
    }
    if !report.accounts.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::UpperLeft)
            .label_font((FONT, 14))
            .background_style(WHITE.mix(0.85))
            .border_style(BLACK)
            .draw()
            .map_err(err)?;
    }
    root.present().map_err(err)
}

fn encode(pixels: &[u8]) -> Result<Vec<u8>, ChartError> {
    let mut png_bytes = Vec::new();
    let mut encoder = png::Encoder::new(&mut png_bytes, WIDTH, HEIGHT);
    encoder.set_color(png::ColorType::Rgb);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(err)?;
    writer.write_image_data(pixels).map_err(err)?;
    writer.finish().map_err(err)?;
    Ok(png_bytes)
}
