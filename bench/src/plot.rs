//! Plots of a run (SVG, with plotters): for each scenario, end-to-end latency percentile
//! curves on log scales, one line per system, and received msgs/s second by second.

use std::path::Path;

use plotters::prelude::*;

use crate::scenario::{Outcome, Scenario};

const COLOURS: [RGBColor; 6] = [
    RGBColor(31, 119, 180),
    RGBColor(174, 199, 232),
    RGBColor(214, 39, 40),
    RGBColor(255, 127, 14),
    RGBColor(44, 160, 44),
    RGBColor(148, 103, 189),
];

/// (percentile, µs) pairs from an `.hgrm` file, percentiles below 1.
fn percentiles(hgrm: &str) -> Vec<(f64, f64)> {
    hgrm.lines()
        .filter_map(|line| {
            let mut fields = line.split_whitespace();
            let value: f64 = fields.next()?.parse().ok()?;
            let percentile: f64 = fields.next()?.parse().ok()?;
            (percentile < 1.0).then_some((percentile, value.max(1.0)))
        })
        .collect()
}

/// (second, received msgs/s) from `seconds.csv`.
fn seconds(csv: &str) -> Vec<(f64, f64)> {
    csv.lines()
        .skip(1)
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(',').collect();
            Some((fields.first()?.parse().ok()?, fields.get(3)?.parse().ok()?))
        })
        .collect()
}

pub fn write(folder: &Path, scenarios: &[&Scenario], outcomes: &[Outcome]) -> Result<(), String> {
    for scenario in scenarios.iter().filter(|s| s.pending.is_none() && s.workload.receives()) {
        let mut curves = Vec::new();
        let mut rates = Vec::new();
        for outcome in outcomes.iter().filter(|o| o.scenario == scenario.name && o.summary.is_some()) {
            let dir = folder.join(scenario.name).join(outcome.system.name());
            let name = outcome.system.name();
            let curve = percentiles(&std::fs::read_to_string(dir.join("end_to_end.hgrm")).unwrap_or_default());
            if !curve.is_empty() {
                // x: 1/(1-p) ("nines"), so p99 is at 100 and p99.99 at 10,000.
                curves.push((name, curve.into_iter().map(|(p, v)| (1.0 / (1.0 - p), v)).collect::<Vec<_>>()));
            }
            rates.push((name, seconds(&std::fs::read_to_string(dir.join("seconds.csv")).unwrap_or_default())));
        }
        if !curves.is_empty() {
            latency_plot(&folder.join(format!("latency-{}.svg", scenario.name)), scenario, &curves)
                .map_err(|e| format!("plotting: {e}"))?;
        }
        if rates.iter().any(|(_, r)| !r.is_empty()) {
            rate_plot(&folder.join(format!("throughput-{}.svg", scenario.name)), scenario, &rates).map_err(|e| format!("plotting: {e}"))?;
        }
    }
    Ok(())
}

type Series<'a> = [(&'a str, Vec<(f64, f64)>)];

/// One coloured line per system, and the legend naming them.
fn draw_lines<'a, DB, X, Y>(
    chart: &mut ChartContext<'a, DB, Cartesian2d<X, Y>>,
    series: &Series,
    legend: SeriesLabelPosition,
) -> Result<(), String>
where
    DB: DrawingBackend + 'a,
    X: Ranged<ValueType = f64>,
    Y: Ranged<ValueType = f64>,
{
    for (i, (name, points)) in series.iter().enumerate() {
        let colour = COLOURS[i % COLOURS.len()];
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)))
            .map_err(|e| e.to_string())?
            .label(*name)
            .legend(move |(x, y)| PathElement::new(vec![(x, y), (x + 20, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().position(legend).background_style(WHITE.mix(0.8)).border_style(BLACK).draw().map_err(|e| e.to_string())
}

fn latency_plot(path: &Path, scenario: &Scenario, curves: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.0)).fold(10.0, f64::max);
    let y_max = curves.iter().flat_map(|(_, c)| c.iter().map(|p| p.1)).fold(10.0, f64::max) * 1.5;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: end-to-end latency by percentile", scenario.name), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(70)
        .build_cartesian_2d((1.0..x_max).log_scale(), (1.0..y_max).log_scale())?;
    chart.configure_mesh().x_desc("percentile").y_desc("latency (µs)").x_label_formatter(&|x| format!("{}%", 100.0 - 100.0 / x)).draw()?;
    draw_lines(&mut chart, curves, SeriesLabelPosition::UpperLeft)?;
    root.present()?;
    Ok(())
}

fn rate_plot(path: &Path, scenario: &Scenario, rates: &Series) -> Result<(), Box<dyn std::error::Error>> {
    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE)?;
    let x_max = rates.iter().flat_map(|(_, r)| r.iter().map(|p| p.0)).fold(1.0, f64::max);
    let y_max = rates.iter().flat_map(|(_, r)| r.iter().map(|p| p.1)).fold(1.0, f64::max) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(format!("{}: messages received per second", scenario.name), ("sans-serif", 22))
        .margin(15)
        .x_label_area_size(45)
        .y_label_area_size(80)
        .build_cartesian_2d(0.0..x_max, 0.0..y_max)?;
    chart.configure_mesh().x_desc("second of the run (warm-up included)").y_desc("msgs/s").draw()?;
    draw_lines(&mut chart, rates, SeriesLabelPosition::LowerRight)?;
    root.present()?;
    Ok(())
}
