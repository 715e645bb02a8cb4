//! `monitor`'s outputs for people and for alerting: `report.md`, the SVG time
//! series and `monitor.prom`.

use std::fmt::Write as _;

use anyhow::{Context, Result};
use kiln_config::MonitorConfig;
use kiln_core::StagedOutput;
use kiln_plots::{DRIFT_SVG, Guide, QUALITY_SVG, TimeSeries, time_series_svg};
use prometheus::{Encoder, Gauge, GaugeVec, Opts, Registry};

use crate::MonitorReport;
use crate::window::{Status, WindowReport};

/// The current window's gauges (after the `kiln_monitor_` prefix), in the
/// order [`prometheus`] fills them.
pub const WINDOW_GAUGES: [(&str, &str); 18] = [
    ("window_predictions", "Predictions in the current window"),
    ("prediction_psi", "PSI of the predicted labels against the reference"),
    ("prediction_jensen_shannon", "Jensen-Shannon distance of the predicted labels"),
    ("confidence_ks", "KS distance of the top probability against the reference"),
    ("mean_confidence", "Mean top probability"),
    ("token_length_psi", "PSI of the token length against the training data"),
    ("truncation_rate", "Share of texts cut at max_length"),
    ("unknown_token_rate", "Share of texts with an unknown token"),
    ("estimated_accuracy", "Accuracy estimated from calibrated confidence"),
    ("realised_accuracy", "Accuracy on the predictions with feedback"),
    ("feedback_share", "Share of predictions with feedback"),
    ("latency_p95_seconds", "Request latency p95"),
    ("error_share", "Share of prediction requests the server failed"),
    ("model_age_seconds", "Time since the model was registered or written"),
    ("entity_type_psi", "A tagger's PSI of the entity types against the reference"),
    ("entities_per_text", "A tagger's entities per text"),
    ("entity_score_ks", "A tagger's KS distance of the entity scores against the reference"),
    ("realised_entity_f1", "A tagger's entity micro-F1 on the texts with span feedback"),
];

/// Every gauge `monitor.prom` can hold, full names: what dashboards and alert
/// rules may refer to.
pub fn metric_names() -> Vec<String> {
    let plain = ["last_run_timestamp_seconds", "damaged_log_lines", "status"];
    plain
        .into_iter()
        .chain(WINDOW_GAUGES.iter().map(|(name, _)| *name))
        .map(|name| format!("kiln_monitor_{name}"))
        .collect()
}

/// The current window's figures as Prometheus gauges, labelled by model
/// version, for node_exporter's textfile collector (point its
/// `--collector.textfile.directory` at `[monitor] output_dir`). A figure the
/// window lacks (no feedback yet, no reference) is left out, not written as 0.
pub fn prometheus(report: &MonitorReport) -> Result<String> {
    let registry = Registry::new_custom(Some("kiln_monitor".into()), None).context("a metrics registry")?;
    let gauge = |name: &str, help: &str| -> Result<GaugeVec> {
        let gauge = GaugeVec::new(Opts::new(name, help), &["model_version"]).context("a gauge")?;
        registry.register(Box::new(gauge.clone())).context("a unique gauge")?;
        Ok(gauge)
    };
    let plain = |name: &str, help: &str, value: f64| -> Result<()> {
        let gauge = Gauge::with_opts(Opts::new(name, help)).context("a gauge")?;
        gauge.set(value);
        registry.register(Box::new(gauge)).context("a unique gauge")
    };
    let generated_s = crate::traffic::parse_time_ms(&report.generated_at).unwrap_or(0) as f64 / 1e3;
    plain("last_run_timestamp_seconds", "When monitor last ran (Unix seconds)", generated_s)?;
    plain("damaged_log_lines", "Prediction log lines that could not be read", report.damaged_lines as f64)?;
    let status = gauge("status", "0 ok, 1 warn, 2 alert: the current window's verdict")?;
    let version = report.current_version.clone().unwrap_or_default();
    status.with_label_values(&[&version]).set(f64::from(report.status.level()));
    if let Some(window) = report.current_window.map(|i| &report.windows[i]) {
        let entities = window.entities.as_ref();
        let values: [Option<f64>; 18] = [
            Some(window.predictions as f64),
            window.prediction_drift.as_ref().map(|d| d.psi),
            window.prediction_drift.as_ref().map(|d| d.jensen_shannon),
            window.confidence.as_ref().map(|c| c.ks),
            window.confidence.as_ref().map(|c| c.mean_top),
            window.input.token_length_psi,
            Some(window.input.truncation_rate),
            Some(window.input.unknown_token_text_rate),
            entities.is_none().then_some(window.estimated.accuracy),
            window.quality.accuracy.map(|a| a.value),
            Some(window.quality.feedback_share),
            Some(window.operations.latency_ms_p95 / 1e3),
            Some(window.operations.error_share),
            report.versions.iter().find(|v| v.model_version == version).and_then(|v| v.age_days).map(|d| d * 86_400.0),
            entities.and_then(|e| e.type_psi),
            entities.map(|e| e.entities_per_text),
            entities.and_then(|e| e.score_ks),
            window.quality.entities.as_ref().map(|q| q.micro_f1.value),
        ];
        for ((name, help), value) in WINDOW_GAUGES.into_iter().zip(values) {
            let gauge = gauge(name, help)?;
            if let Some(value) = value {
                gauge.with_label_values(&[&version]).set(value);
            }
        }
    }
    let mut buffer = Vec::new();
    prometheus::TextEncoder::new().encode(&registry.gather(), &mut buffer).context("Prometheus text")?;
    String::from_utf8(buffer).context("Prometheus text is UTF-8")
}

/// `drift.svg` and `quality.svg`: each window's scores, thresholds dashed, alerts shaded.
pub fn plots(report: &MonitorReport, config: &MonitorConfig, output: &mut StagedOutput) -> Result<()> {
    let windows = &report.windows;
    let series = |name: &'static str, pick: fn(&WindowReport) -> Option<f64>| TimeSeries {
        name,
        points: windows.iter().map(|w| (w.index as f64, if w.judged { pick(w) } else { None })).collect(),
    };
    let alerts: Vec<f64> = windows.iter().filter(|w| w.status == Status::Alert).map(|w| w.index as f64).collect();
    time_series_svg(
        "Drift by window (red: alert)",
        "window",
        &[
            series("predicted labels PSI", |w| w.prediction_drift.as_ref().map(|d| d.psi)),
            series("token length PSI", |w| w.input.token_length_psi),
            series("top probability KS", |w| w.confidence.as_ref().map(|c| c.ks)),
            series("entity types PSI", |w| w.entities.as_ref().and_then(|e| e.type_psi)),
            series("entity score KS", |w| w.entities.as_ref().and_then(|e| e.score_ks)),
        ],
        &[Guide { name: "PSI warn", y: config.psi_warn }, Guide { name: "PSI alert", y: config.psi_alert }],
        &alerts,
        &output.stage(DRIFT_SVG),
    )?;
    time_series_svg(
        "Quality by window (red: alert)",
        "window",
        &[
            series("estimated accuracy", |w| w.entities.is_none().then_some(w.estimated.accuracy)),
            series("accuracy with feedback", |w| w.quality.accuracy.map(|a| a.value)),
            series("mean top probability", |w| w.confidence.as_ref().map(|c| c.mean_top)),
            series("entity micro-F1 with feedback", |w| w.quality.entities.as_ref().map(|q| q.micro_f1.value)),
        ],
        &[],
        &alerts,
        &output.stage(QUALITY_SVG),
    )
}

fn percent(x: f64) -> String {
    format!("{:.1}%", 100.0 * x)
}

fn or_dash(x: Option<f64>, format: impl Fn(f64) -> String) -> String {
    x.map_or_else(|| "-".into(), format)
}

/// `report.md`: the verdict and its reasons first, then a table per window.
pub fn markdown(report: &MonitorReport) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# Monitoring report\n");
    let _ = writeln!(
        md,
        "**Status: {}** at {}, model version {}. {} predictions in {} window(s) from {} log file(s) in `{}`; \
         {} failed request(s); {} damaged line(s) skipped; {} feedback record(s) for predictions not in the log.\n",
        report.status.name().to_uppercase(),
        report.generated_at,
        report.current_version.as_deref().unwrap_or("-"),
        report.predictions,
        report.windows.len(),
        report.log_files,
        report.log_dir,
        report.failed_requests,
        report.damaged_lines,
        report.unmatched_feedback,
    );
    if report.findings.is_empty() {
        let _ = writeln!(md, "Nothing crossed a threshold.\n");
    }
    for finding in &report.findings {
        let _ = writeln!(md, "- **{}** ({}): {}", finding.status.name(), finding.check, finding.message);
    }
    let _ = writeln!(
        md,
        "\nAccuracy \"with feedback\" is measured on the predictions someone labelled. Feedback is not a \
         random sample (people tend to correct what looks wrong, and some classes get more of it), so it \
         can differ from accuracy on all traffic; the estimate from calibrated confidence covers every \
         prediction but assumes the model's calibration still holds.\n"
    );
    let _ = writeln!(md, "![drift](drift.svg)\n\n![quality](quality.svg)\n");
    let _ = writeln!(md, "## Model versions\n");
    let _ = writeln!(
        md,
        "| version | predictions | reference | reference accuracy | age (days) | estimated accuracy | accuracy with feedback | trained on |"
    );
    let _ = writeln!(md, "|---|---:|---|---:|---:|---:|---:|---|");
    for version in &report.versions {
        let overall = &version.overall;
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            version.model_version,
            overall.predictions,
            version.reference.as_deref().unwrap_or("none"),
            or_dash(version.reference_accuracy, |a| format!("{a:.3}")),
            or_dash(version.age_days, |d| format!("{d:.1}")),
            format_args!("{:.3}", overall.estimated.accuracy),
            or_dash(overall.quality.accuracy.map(|a| a.value), |a| format!(
                "{a:.3} (n={})",
                overall.quality.with_feedback
            )),
            version
                .training_data
                .iter()
                .map(|f| format!("`{}` ({})", f.path, &f.sha256[..f.sha256.len().min(12)]))
                .collect::<Vec<_>>()
                .join(", "),
        );
    }
    let _ = writeln!(md, "\n## Windows\n");
    let _ = writeln!(
        md,
        "| # | version | from | to | predictions | status | PSI labels | KS top p | PSI tokens | truncated | estimated acc. | acc. with feedback | p95 ms | errors |"
    );
    let _ = writeln!(md, "|---:|---|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|");
    for w in &report.windows {
        let _ = writeln!(
            md,
            "| {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {:.0} | {} |",
            w.index,
            w.model_version,
            w.start,
            w.end,
            w.predictions,
            if w.judged { w.status.name().to_owned() } else { format!("{} (too few to judge)", w.status.name()) },
            or_dash(w.prediction_drift.as_ref().map(|d| d.psi), |x| format!("{x:.3}")),
            or_dash(w.confidence.as_ref().map(|c| c.ks), |x| format!("{x:.3}")),
            or_dash(w.input.token_length_psi, |x| format!("{x:.3}")),
            percent(w.input.truncation_rate),
            or_dash(w.entities.is_none().then_some(w.estimated.accuracy), |x| format!("{x:.3}")),
            or_dash(w.quality.accuracy.map(|a| a.value), |a| format!("{a:.3} (n={})", w.quality.with_feedback)),
            w.operations.latency_ms_p95,
            w.operations.server_errors,
        );
    }
    entity_windows(report, &mut md);
    if !report.damaged_examples.is_empty() {
        let _ = writeln!(md, "\n## Damaged log lines (first {})\n", report.damaged_examples.len());
        for line in &report.damaged_examples {
            let _ = writeln!(md, "- `{}` line {}: {}", line.file.display(), line.line, line.error);
        }
    }
    md
}

/// A tagger's windows: its entities against the reference split's, and the
/// entity F1 where spans came back as feedback.
fn entity_windows(report: &MonitorReport, md: &mut String) {
    let tagged: Vec<(&WindowReport, &crate::window::EntityDrift)> =
        report.windows.iter().filter_map(|w| w.entities.as_ref().map(|e| (w, e))).collect();
    if tagged.is_empty() {
        return;
    }
    let _ = writeln!(md, "\n## Entities by window\n");
    let _ = writeln!(
        md,
        "Entity scores, types and span lengths against the reference split's (in parentheses); entity F1 as \
         seqeval's default mode scores it (type and both offsets right), with its bootstrap interval, on the texts \
         whose entities came back as feedback.\n"
    );
    let _ = writeln!(
        md,
        "| # | entities per text | per type | PSI types | KS scores | mean score | words per entity | no entity | \
         entity micro-F1 with feedback | macro-F1 |"
    );
    let _ = writeln!(md, "|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    let three = |x: Option<f64>| or_dash(x, |x| format!("{x:.3}"));
    for (w, e) in tagged {
        let per_type: Vec<String> = e
            .per_text
            .iter()
            .map(|(kind, now)| match e.reference_per_text.get(kind) {
                Some(then) => format!("{kind} {now:.2} ({then:.2})"),
                None => format!("{kind} {now:.2}"),
            })
            .collect();
        let quality = w.quality.entities.as_ref();
        let _ = writeln!(
            md,
            "| {} | {:.2} ({}) | {} | {} | {} | {} ({}) | {} ({}) | {} | {} | {} |",
            w.index,
            e.entities_per_text,
            or_dash(e.reference_entities_per_text, |x| format!("{x:.2}")),
            per_type.join(", "),
            three(e.type_psi),
            three(e.score_ks),
            three(e.mean_score),
            three(e.reference_mean_score),
            or_dash(e.mean_span_words, |x| format!("{x:.2}")),
            or_dash(e.reference_mean_span_words, |x| format!("{x:.2}")),
            percent(e.texts_without_entities),
            quality.map_or_else(
                || "-".to_owned(),
                |q| format!(
                    "{:.3} [{:.3}, {:.3}] (n={})",
                    q.micro_f1.value, q.micro_f1.low, q.micro_f1.high, w.quality.with_feedback
                )
            ),
            three(quality.map(|q| q.macro_f1.value)),
        );
    }
}
