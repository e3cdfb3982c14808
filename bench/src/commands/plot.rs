//! `--plot FILE.svg`: throughput and p99 of every profile and system as two bar charts,
//! side by side, one bar per table row.

use std::path::Path;

use anyhow::{Result, anyhow};
use plotters::prelude::*;

use super::report::{Row, Table};

/// The colour of a system's bars (the same system has the same colour in every profile).
fn colour(row: &Row) -> RGBColor {
    match row.system.as_str() {
        "raw JetStream" => RGBColor(150, 150, 150),
        "covenant" => RGBColor(90, 140, 200),
        s if s.starts_with("covenant, group commit") => RGBColor(20, 70, 160),
        _ => RGBColor(200, 110, 40),
    }
}

/// Writes the two charts of `table` to `path`.
///
/// # Errors
/// When the file cannot be written.
pub(super) fn draw(path: &Path, table: &Table, workload: &str) -> Result<()> {
    let rows = &table.rows;
    let height = 140 + 34 * rows.len() as u32;
    let root = SVGBackend::new(path, (1200, height)).into_drawing_area();
    let fail = |e: DrawingAreaErrorKind<_>| anyhow!("drawing {}: {e:?}", path.display());
    root.fill(&WHITE).map_err(fail)?;
    let root = root.titled(&format!("covenant-bench commands: {workload}"), ("sans-serif", 18)).map_err(fail)?;
    let (left, right) = root.split_horizontally(640);
    let labels: Vec<String> = rows.iter().map(|r| format!("{} · {}", r.profile, r.system)).collect();
    panel(&left, rows, &labels, "stored commands per second", |r| r.figures.per_sec, true).map_err(fail)?;
    panel(&right, rows, &labels, "p99 latency (ms)", |r| r.figures.p99.as_secs_f64() * 1e3, false).map_err(fail)?;
    root.present().map_err(fail)?;
    Ok(())
}

fn panel<DB: DrawingBackend>(
    area: &DrawingArea<DB, plotters::coord::Shift>,
    rows: &[Row],
    labels: &[String],
    caption: &str,
    value: impl Fn(&Row) -> f64,
    with_labels: bool,
) -> Result<(), DrawingAreaErrorKind<DB::ErrorType>> {
    let max = rows.iter().map(&value).fold(0.0, f64::max).max(1.0) * 1.15;
    let n = rows.len() as u32;
    let mut chart = ChartBuilder::on(area)
        .caption(caption, ("sans-serif", 15))
        .margin(10)
        .x_label_area_size(30)
        .y_label_area_size(if with_labels { 300 } else { 10 })
        .build_cartesian_2d(0.0..max, (0u32..n.saturating_sub(1)).into_segmented())?;
    chart
        .configure_mesh()
        .disable_y_mesh()
        .y_labels(rows.len())
        .y_label_formatter(&|v| match v {
            // The first row at the top.
            SegmentValue::CenterOf(i) if with_labels && *i < n => labels[(n - 1 - *i) as usize].clone(),
            _ => String::new(),
        })
        .x_label_formatter(&|v| if *v >= 1000.0 { format!("{:.0}k", v / 1000.0) } else { format!("{v:.0}") })
        .draw()?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let i = n - 1 - i as u32;
        let mut bar =
            Rectangle::new([(0.0, SegmentValue::Exact(i)), (value(r), SegmentValue::Exact(i + 1))], colour(r).filled());
        bar.set_margin(4, 4, 0, 0);
        bar
    }))?;
    chart.draw_series(rows.iter().enumerate().map(|(i, r)| {
        let v = value(r);
        let text = if v >= 100.0 { format!("{v:.0}") } else { format!("{v:.1}") };
        Text::new(text, (v + max * 0.01, SegmentValue::CenterOf(n - 1 - i as u32)), ("sans-serif", 12))
    }))?;
    Ok(())
}
