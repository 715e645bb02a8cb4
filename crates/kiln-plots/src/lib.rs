//! Pictures for people, as self-contained SVG (plotters): `eval`'s confusion
//! matrix as a heat map and its training curves, `profile`'s class balance,
//! length histograms and tokens per label. Sized from the class count so 77
//! labelled rows stay readable.

use std::path::Path;

use anyhow::{Result, anyhow};
use kiln_core::LabelMap;
use kiln_core::metrics::{TrainLogLine, TrainLogRecord};
use kiln_core::scores::Confusion;
use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

pub const CONFUSION_SVG: &str = "confusion.svg";
pub const CURVES_SVG: &str = "training_curves.svg";

fn plot_error(error: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("cannot draw: {error}")
}

/// Rows are true labels, columns predictions, each cell shaded by its share of
/// the row (so small classes show as clearly as large ones) and labelled with
/// its count when non-zero.
pub fn confusion_svg(confusion: &Confusion, labels: &LabelMap, path: &Path) -> Result<()> {
    let n = labels.len();
    let cell = if n > 30 { 16 } else { 40 };
    let longest = labels.labels().iter().map(|l| l.chars().count()).max().unwrap_or(1) as u32;
    let margin = 40 + longest * 7;
    let side = n as u32 * cell;
    let (width, height) = (side + margin + 40, side + margin + 60);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let title = format!("Confusion matrix ({} examples; shade = share of the true class)", confusion.total());
    root.draw(&Text::new(title, (margin as i32, 10), ("sans-serif", 16).into_font())).map_err(plot_error)?;
    let origin = (margin as i32, 40);
    let label_style = ("sans-serif", if n > 30 { 14 } else { 16 }).into_font().color(&BLACK);
    for actual in 0..n {
        let row_total: u64 = (0..n).map(|p| confusion.count(actual, p)).sum();
        let y = origin.1 + (actual as u32 * cell) as i32;
        root.draw(&Text::new(
            labels.labels()[actual].clone(),
            (origin.0 - 6, y + cell as i32 / 2),
            label_style.clone().pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(plot_error)?;
        for predicted in 0..n {
            let count = confusion.count(actual, predicted);
            let share = if row_total == 0 { 0.0 } else { count as f64 / row_total as f64 };
            let x = origin.0 + (predicted as u32 * cell) as i32;
            let shade = |full: u8| (255.0 - share * (255.0 - f64::from(full))) as u8;
            let colour = RGBColor(shade(8), shade(48), shade(107));
            root.draw(&Rectangle::new([(x, y), (x + cell as i32, y + cell as i32)], colour.filled()))
                .map_err(plot_error)?;
            if count > 0 && cell >= 16 {
                let ink = if share > 0.5 { WHITE } else { BLACK };
                let style = ("sans-serif", if n > 30 { 9 } else { 13 })
                    .into_font()
                    .color(&ink)
                    .pos(Pos::new(HPos::Center, VPos::Center));
                root.draw(&Text::new(count.to_string(), (x + cell as i32 / 2, y + cell as i32 / 2), style))
                    .map_err(plot_error)?;
            }
        }
    }
    for predicted in 0..n {
        let x = origin.0 + (predicted as u32 * cell) as i32 + cell as i32 / 2;
        let style = label_style.clone().transform(FontTransform::Rotate90).pos(Pos::new(HPos::Left, VPos::Center));
        root.draw(&Text::new(labels.labels()[predicted].clone(), (x, origin.1 + side as i32 + 6), style))
            .map_err(plot_error)?;
    }
    root.draw(&Rectangle::new([origin, (origin.0 + side as i32, origin.1 + side as i32)], BLACK.stroke_width(1)))
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// Points of the training curves, from `train`'s metrics log.
#[derive(Debug, Default)]
pub struct Curves {
    /// (step, training loss)
    pub train_loss: Vec<(f64, f64)>,
    /// (step, validation loss / accuracy / macro-F1)
    pub eval_loss: Vec<(f64, f64)>,
    pub eval_accuracy: Vec<(f64, f64)>,
    pub eval_macro_f1: Vec<(f64, f64)>,
}

impl Curves {
    /// Reads `metrics.jsonl`; `None` when it is absent (a model trained elsewhere).
    pub fn load(path: &Path) -> Result<Option<Self>> {
        if !path.is_file() {
            return Ok(None);
        }
        let mut curves = Self::default();
        for line in TrainLogLine::read_all(path)? {
            match line.record {
                TrainLogRecord::Train { step, loss, .. } => curves.train_loss.push((step as f64, loss)),
                TrainLogRecord::Eval { step, loss, accuracy, macro_f1, .. } => {
                    let step = step as f64;
                    curves.eval_loss.push((step, loss));
                    curves.eval_accuracy.push((step, accuracy));
                    curves.eval_macro_f1.push((step, macro_f1));
                }
                TrainLogRecord::Epoch { .. } | TrainLogRecord::Other => {}
            }
        }
        Ok(Some(curves))
    }
}

/// Loss (training and validation) and validation accuracy / macro-F1 by step.
pub fn curves_svg(curves: &Curves, path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (1200, 480)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let (left, right) = root.split_horizontally(600);
    let last_step = curves.train_loss.iter().chain(&curves.eval_loss).map(|p| p.0).fold(1.0, f64::max);
    let top_loss = curves.train_loss.iter().chain(&curves.eval_loss).map(|p| p.1).fold(0.0, f64::max) * 1.05;

    let mut loss = ChartBuilder::on(&left)
        .caption("Loss", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..last_step, 0.0..top_loss.max(1e-3))
        .map_err(plot_error)?;
    loss.configure_mesh().x_desc("step").y_desc("cross-entropy").draw().map_err(plot_error)?;
    loss.draw_series(LineSeries::new(curves.train_loss.iter().copied(), BLUE.stroke_width(2)))
        .map_err(plot_error)?
        .label("training")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLUE.stroke_width(2)));
    loss.draw_series(LineSeries::new(curves.eval_loss.iter().copied(), RED.stroke_width(2)).point_size(3))
        .map_err(plot_error)?
        .label("validation")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], RED.stroke_width(2)));
    loss.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(plot_error)?;

    let low = curves.eval_accuracy.iter().chain(&curves.eval_macro_f1).map(|p| p.1).fold(1.0, f64::min);
    let mut scores = ChartBuilder::on(&right)
        .caption("Validation", ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(0.0..last_step, (low - 0.05).clamp(0.0, 0.95)..1.0)
        .map_err(plot_error)?;
    scores.configure_mesh().x_desc("step").draw().map_err(plot_error)?;
    scores
        .draw_series(LineSeries::new(curves.eval_accuracy.iter().copied(), GREEN.stroke_width(2)).point_size(3))
        .map_err(plot_error)?
        .label("accuracy")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], GREEN.stroke_width(2)));
    scores
        .draw_series(LineSeries::new(curves.eval_macro_f1.iter().copied(), MAGENTA.stroke_width(2)).point_size(3))
        .map_err(plot_error)?
        .label("macro-F1")
        .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], MAGENTA.stroke_width(2)));
    scores
        .configure_series_labels()
        .position(SeriesLabelPosition::LowerRight)
        .background_style(WHITE)
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

pub const CLASS_BALANCE_SVG: &str = "class_balance.svg";
pub const TOKEN_LENGTHS_SVG: &str = "token_lengths.svg";
pub const CHAR_LENGTHS_SVG: &str = "char_lengths.svg";
pub const TOKENS_PER_LABEL_SVG: &str = "tokens_per_label.svg";

/// Colours of the series (splits), in order.
const SERIES: [RGBColor; 4] =
    [RGBColor(31, 119, 180), RGBColor(255, 127, 14), RGBColor(44, 160, 44), RGBColor(148, 103, 189)];

/// One labelled row of bars, a bar per series.
pub struct BarRow {
    pub label: String,
    pub values: Vec<f64>,
}

/// Horizontal bars: a row per label (so 77 labels stay readable), a bar per
/// series in each row, the value written at the bar's end by `format`.
pub fn horizontal_bars_svg(
    title: &str,
    series: &[String],
    rows: &[BarRow],
    format: impl Fn(f64) -> String,
    path: &Path,
) -> Result<()> {
    let bar = 12u32;
    let row_height = bar * series.len().max(1) as u32 + 8;
    let longest = rows.iter().map(|r| r.label.chars().count()).max().unwrap_or(1) as u32;
    let margin = 20 + longest * 7;
    let plot_width = 520u32;
    let (width, height) = (margin + plot_width + 90, 70 + rows.len() as u32 * row_height + 10);
    let root = SVGBackend::new(path, (width, height)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    root.draw(&Text::new(title.to_owned(), (10, 10), ("sans-serif", 16).into_font())).map_err(plot_error)?;
    for (index, name) in series.iter().enumerate() {
        let x = 10 + index as i32 * 140;
        let colour = SERIES[index % SERIES.len()];
        root.draw(&Rectangle::new([(x, 36), (x + 12, 48)], colour.filled())).map_err(plot_error)?;
        root.draw(&Text::new(name.clone(), (x + 18, 36), ("sans-serif", 13).into_font())).map_err(plot_error)?;
    }
    let top = rows.iter().flat_map(|r| r.values.iter().copied()).fold(0.0, f64::max).max(f64::MIN_POSITIVE);
    let label_style = ("sans-serif", 13).into_font().color(&BLACK);
    for (row_index, row) in rows.iter().enumerate() {
        let y = 60 + (row_index as u32 * row_height) as i32;
        root.draw(&Text::new(
            row.label.clone(),
            (margin as i32 - 6, y + row_height as i32 / 2),
            label_style.clone().pos(Pos::new(HPos::Right, VPos::Center)),
        ))
        .map_err(plot_error)?;
        for (index, &value) in row.values.iter().enumerate() {
            let y = y + 4 + (index as u32 * bar) as i32;
            let length = (value / top * f64::from(plot_width)) as i32;
            let colour = SERIES[index % SERIES.len()];
            root.draw(&Rectangle::new(
                [(margin as i32, y), (margin as i32 + length, y + bar as i32 - 2)],
                colour.filled(),
            ))
            .map_err(plot_error)?;
            root.draw(&Text::new(
                format(value),
                (margin as i32 + length + 4, y + bar as i32 / 2),
                ("sans-serif", 11).into_font().color(&BLACK).pos(Pos::new(HPos::Left, VPos::Center)),
            ))
            .map_err(plot_error)?;
        }
    }
    root.present().map_err(plot_error)
}

/// One histogram of a series: counts in bins of `width` from 0, plus what fell past the last bin.
pub struct HistogramSeries<'a> {
    pub name: String,
    pub width: f64,
    pub counts: &'a [u64],
    pub overflow: u64,
}

/// Histograms as lines of each bin's share of its series (so splits of any
/// size compare), with the share past the last bin in the legend.
pub fn histograms_svg(title: &str, x_desc: &str, series: &[HistogramSeries], path: &Path) -> Result<()> {
    let root = SVGBackend::new(path, (760, 440)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let shares: Vec<Vec<(f64, f64)>> = series
        .iter()
        .map(|s| {
            let total = (s.counts.iter().sum::<u64>() + s.overflow).max(1) as f64;
            s.counts
                .iter()
                .enumerate()
                .map(|(bin, &count)| ((bin as f64 + 0.5) * s.width, count as f64 / total))
                .collect()
        })
        .collect();
    let right = series.iter().map(|s| s.width * s.counts.len() as f64).fold(1.0, f64::max);
    let top = shares.iter().flatten().map(|p| p.1).fold(0.0, f64::max).max(0.01) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(56)
        .build_cartesian_2d(0.0..right, 0.0..top)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc(x_desc).y_desc("share of rows").draw().map_err(plot_error)?;
    for (index, (s, points)) in series.iter().zip(&shares).enumerate() {
        let colour = SERIES[index % SERIES.len()];
        let total = (s.counts.iter().sum::<u64>() + s.overflow).max(1) as f64;
        let past = 100.0 * s.overflow as f64 / total;
        chart
            .draw_series(LineSeries::new(points.iter().copied(), colour.stroke_width(2)).point_size(2))
            .map_err(plot_error)?
            .label(format!("{} ({past:.1}% past {right:.0})", s.name))
            .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
    }
    chart.configure_series_labels().background_style(WHITE).border_style(BLACK).draw().map_err(plot_error)?;
    root.present().map_err(plot_error)
}

pub const DRIFT_SVG: &str = "drift.svg";
pub const QUALITY_SVG: &str = "quality.svg";

/// One named line of a time series; `None` points (a figure a window lacks) break the line.
pub struct TimeSeries<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, Option<f64>)>,
}

/// A horizontal guide line (a threshold) with its name.
pub struct Guide<'a> {
    pub name: &'a str,
    pub y: f64,
}

/// Lines over windows (monitoring's time series), with threshold guides and
/// the windows marked `alert` shaded, so a reader sees when and why.
pub fn time_series_svg(
    title: &str,
    x_desc: &str,
    series: &[TimeSeries],
    guides: &[Guide],
    alerts: &[f64],
    path: &Path,
) -> Result<()> {
    let root = SVGBackend::new(path, (1000, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let xs = series.iter().flat_map(|s| s.points.iter().map(|p| p.0));
    let (x_low, x_high) = xs.fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), x| (l.min(x), h.max(x)));
    let (x_low, x_high) = if x_low.is_finite() { (x_low - 0.5, x_high + 0.5) } else { (0.0, 1.0) };
    let ys = series.iter().flat_map(|s| s.points.iter().filter_map(|p| p.1)).chain(guides.iter().map(|g| g.y));
    let y_high = ys.fold(0.0f64, f64::max).max(1e-3) * 1.1;
    let mut chart = ChartBuilder::on(&root)
        .caption(title, ("sans-serif", 18))
        .margin(12)
        .x_label_area_size(36)
        .y_label_area_size(50)
        .build_cartesian_2d(x_low..x_high, 0.0..y_high)
        .map_err(plot_error)?;
    chart.configure_mesh().x_desc(x_desc).draw().map_err(plot_error)?;
    chart
        .draw_series(
            alerts.iter().map(|&x| {
                Rectangle::new([(x - 0.5, 0.0), (x + 0.5, y_high)], RGBColor(255, 200, 200).mix(0.5).filled())
            }),
        )
        .map_err(plot_error)?;
    for (i, line) in series.iter().enumerate() {
        let colour = SERIES[i % SERIES.len()];
        // Each unbroken run of points is its own path.
        let mut runs: Vec<Vec<(f64, f64)>> = vec![Vec::new()];
        for &(x, y) in &line.points {
            match (y, runs.last_mut()) {
                (Some(y), Some(run)) => run.push((x, y)),
                _ => runs.push(Vec::new()),
            }
        }
        for (r, run) in runs.into_iter().filter(|r| !r.is_empty()).enumerate() {
            let drawn =
                chart.draw_series(LineSeries::new(run, colour.stroke_width(2)).point_size(3)).map_err(plot_error)?;
            if r == 0 {
                drawn
                    .label(line.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 16, y)], colour.stroke_width(2)));
            }
        }
    }
    for guide in guides {
        chart
            .draw_series(DashedLineSeries::new(
                [(x_low, guide.y), (x_high, guide.y)],
                6,
                4,
                BLACK.mix(0.5).stroke_width(1),
            ))
            .map_err(plot_error)?
            .label(guide.name)
            .legend(|(x, y)| PathElement::new([(x, y), (x + 16, y)], BLACK.mix(0.5)));
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_error)?;
    root.present().map_err(plot_error)
}

/// Points of one kind on a [`scatter_svg`]: filled dots, or hollow ones
/// (e.g. pruned trials), optionally joined as a step line (best so far).
pub struct Scatter<'a> {
    pub name: &'a str,
    pub points: Vec<(f64, f64)>,
    pub hollow: bool,
    pub line: bool,
}

/// A scatter plot: `tune`'s optimisation history (value by trial) and each
/// setting against the objective. `log_x` for settings searched on a log scale.
pub fn scatter_svg(
    title: &str,
    x_desc: &str,
    y_desc: &str,
    series: &[Scatter],
    log_x: bool,
    path: &Path,
) -> Result<()> {
    let root = SVGBackend::new(path, (800, 420)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_error)?;
    let all = || series.iter().flat_map(|s| s.points.iter().copied()).filter(|p| p.0.is_finite() && p.1.is_finite());
    let range = |values: Vec<f64>| {
        let (low, high) = values.iter().fold((f64::INFINITY, f64::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        if !low.is_finite() {
            (0.0, 1.0)
        } else if high - low < 1e-12 {
            (low - 0.5, high + 0.5)
        } else {
            (low - 0.05 * (high - low), high + 0.05 * (high - low))
        }
    };
    let (y_low, y_high) = range(all().map(|p| p.1).collect());
    let mut chart = ChartBuilder::on(&root);
    chart.caption(title, ("sans-serif", 18)).margin(12).x_label_area_size(36).y_label_area_size(60);
    if log_x {
        let xs: Vec<f64> = all().map(|p| p.0).filter(|x| *x > 0.0).collect();
        let (low, high) = xs.iter().fold((f64::INFINITY, 0.0f64), |(l, h), &x| (l.min(x), h.max(x)));
        let (low, high) = if low.is_finite() { (low / 1.2, high * 1.2) } else { (1e-6, 1.0) };
        let mut chart = chart.build_cartesian_2d((low..high).log_scale(), y_low..y_high).map_err(plot_error)?;
        chart
            .configure_mesh()
            .x_desc(x_desc)
            .y_desc(y_desc)
            .x_label_formatter(&|x| format!("{x:.0e}"))
            .draw()
            .map_err(plot_error)?;
        draw_scatter(&mut chart, series)?;
    } else {
        let (x_low, x_high) = range(all().map(|p| p.0).collect());
        let mut chart = chart.build_cartesian_2d(x_low..x_high, y_low..y_high).map_err(plot_error)?;
        chart.configure_mesh().x_desc(x_desc).y_desc(y_desc).draw().map_err(plot_error)?;
        draw_scatter(&mut chart, series)?;
    }
    root.present().map_err(plot_error)
}

fn draw_scatter<'a, 'b: 'a, X>(
    chart: &mut ChartContext<'a, SVGBackend<'b>, Cartesian2d<X, plotters::coord::types::RangedCoordf64>>,
    series: &[Scatter],
) -> Result<()>
where
    X: Ranged<ValueType = f64>,
{
    for (i, s) in series.iter().enumerate() {
        let colour = SERIES[i % SERIES.len()];
        let style = if s.hollow { colour.stroke_width(2) } else { colour.filled() };
        let points = s.points.clone();
        let drawn = if s.line {
            chart.draw_series(LineSeries::new(points, colour.stroke_width(2))).map_err(plot_error)?
        } else {
            chart.draw_series(points.into_iter().map(|p| Circle::new(p, 4, style))).map_err(plot_error)?
        };
        drawn.label(s.name).legend(move |(x, y)| Circle::new((x + 8, y), 4, style));
    }
    if !series.is_empty() {
        chart
            .configure_series_labels()
            .position(SeriesLabelPosition::LowerRight)
            .background_style(WHITE.mix(0.8))
            .border_style(BLACK)
            .draw()
            .map_err(plot_error)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heat_map_has_a_cell_per_pair_and_every_label() {
        let labels = LabelMap::from_labels(["alpha", "beta", "gamma"]);
        let mut confusion = Confusion::new(3);
        for (a, p) in [(0, 0), (0, 1), (1, 1), (2, 2), (2, 2)] {
            confusion.add(a, p);
        }
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("c.svg");
        confusion_svg(&confusion, &labels, &path).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert_eq!(svg.matches("<rect").count(), 1 + 9 + 1, "background, 9 cells, frame");
        for label in ["alpha", "beta", "gamma"] {
            assert_eq!(svg.matches(&format!("\n{label}\n</text>")).count(), 2, "{label} on both axes");
        }
        assert!(svg.contains("\n2\n</text>"), "counts are written in their cells");
    }

    #[test]
    fn curves_read_the_metrics_log_and_draw() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join("metrics.jsonl");
        std::fs::write(
            &log,
            "{\"kind\":\"train\",\"step\":10,\"epoch\":0.5,\"loss\":0.9,\"lr\":1e-5,\"grad_norm\":1.0,\"samples\":8,\"tokens\":80,\"seconds\":1.0,\"samples_per_second\":8.0,\"tokens_per_second\":80.0}\n\
             {\"kind\":\"train\",\"step\":20,\"epoch\":0.5,\"loss\":0.5,\"lr\":1e-5,\"grad_norm\":1.0,\"samples\":8,\"tokens\":80,\"seconds\":1.0,\"samples_per_second\":8.0,\"tokens_per_second\":80.0}\n\
             {\"kind\":\"eval\",\"step\":20,\"epoch\":1.0,\"loss\":0.6,\"accuracy\":0.8,\"macro_f1\":0.75,\"best\":true}\n\
             {\"kind\":\"epoch\",\"epoch\":1,\"step\":20,\"train_loss\":0.7}\n",
        )
        .expect("write");
        let curves = Curves::load(&log).expect("reads").expect("present");
        assert_eq!(curves.train_loss, [(10.0, 0.9), (20.0, 0.5)]);
        assert_eq!(curves.eval_macro_f1, [(20.0, 0.75)]);
        assert!(Curves::load(&dir.path().join("none.jsonl")).expect("absent is fine").is_none());
        let path = dir.path().join("curves.svg");
        curves_svg(&curves, &path).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.contains("macro-F1") && svg.contains("validation") && svg.contains("<polyline"));
    }

    #[test]
    fn bars_draw_a_row_per_label_and_a_bar_per_series() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bars.svg");
        let rows = vec![
            BarRow { label: "negative".into(), values: vec![0.5, 0.25] },
            BarRow { label: "positive".into(), values: vec![0.5, 0.75] },
        ];
        let series = ["train".to_owned(), "test".into()];
        horizontal_bars_svg("Class balance", &series, &rows, |v| format!("{:.0}%", 100.0 * v), &path).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert_eq!(svg.matches("<rect").count(), 1 + 2 + 4, "background, two legend keys, four bars");
        assert!(svg.contains("\n75%\n</text>") && svg.contains("\nnegative\n</text>"), "{svg}");
    }

    #[test]
    fn histograms_draw_a_line_per_series_with_the_share_past_the_end() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("h.svg");
        let series = [
            HistogramSeries { name: "train".into(), width: 8.0, counts: &[1, 2, 1], overflow: 0 },
            HistogramSeries { name: "test".into(), width: 8.0, counts: &[0, 1, 0], overflow: 1 },
        ];
        histograms_svg("Tokens per text", "tokens", &series, &path).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        // Each series' colour draws its line and its legend key (the grid is grey).
        for colour in ["#1F77B4", "#FF7F0E"] {
            let lines = svg
                .split("<polyline")
                .skip(1)
                .filter(|element| element.split('>').next().is_some_and(|tag| tag.contains(colour)));
            assert_eq!(lines.count(), 2, "{colour}: {svg}");
        }
        assert!(svg.contains("test (50.0% past 24)"), "{svg}");
    }

    #[test]
    fn scatter_plots_draw_a_dot_per_point_hollow_or_filled() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.svg");
        let series = [
            Scatter { name: "complete", points: vec![(1e-5, 0.8), (3e-5, 0.9)], hollow: false, line: false },
            Scatter { name: "pruned", points: vec![(1e-4, 0.4)], hollow: true, line: false },
        ];
        scatter_svg("learning_rate", "learning_rate", "macro_f1", &series, true, &path).expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert_eq!(svg.matches("<circle").count(), 3 + 2, "three points and two legend keys: {svg}");
        assert!(svg.contains("pruned") && svg.contains("fill=\"none\""), "{svg}");
    }

    #[test]
    fn time_series_break_at_missing_points_and_shade_alerts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(DRIFT_SVG);
        let series = [
            TimeSeries {
                name: "labels PSI",
                points: vec![(0.0, Some(0.02)), (1.0, None), (2.0, Some(0.4)), (3.0, Some(0.5))],
            },
            TimeSeries { name: "token PSI", points: vec![(0.0, None), (1.0, None), (2.0, None), (3.0, None)] },
        ];
        time_series_svg("Drift", "window", &series, &[Guide { name: "PSI alert", y: 0.25 }], &[2.0, 3.0], &path)
            .expect("draws");
        let svg = std::fs::read_to_string(&path).expect("svg");
        assert!(svg.contains("labels PSI") && svg.contains("PSI alert"), "legend");
        assert!(!svg.contains("token PSI"), "a series with no points has no legend entry");
        // A dot for each of the three points, none for the missing ones.
        assert_eq!(svg.matches("<circle").count(), 3, "{svg}");
        // The two alert windows are shaded.
        assert_eq!(svg.matches("fill=\"#FFC8C8\"").count(), 2, "{svg}");
    }
}
