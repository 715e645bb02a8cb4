//! `monitor`: is the served model still good? Reads `serve`'s prediction log
//! and feedback, cuts it into windows per model version, and compares each
//! window with what the model saw when it was made (its reference, carried in
//! the model folder): prediction, confidence and input drift, realised and
//! estimated accuracy, latency and errors, and the model's age. Writes
//! `monitor.json`, `monitor.prom` (for node_exporter's textfile collector),
//! SVG time series and `report.md`.

pub mod reference;
pub mod report;
/// The statistics live in kiln-core (the gate uses them too); re-exported for monitor's own paths.
pub use kiln_core::stats;
pub mod stream;
pub mod traffic;
pub mod window;

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use kiln_config::MonitorConfig;
use kiln_core::prediction_log::DamagedLine;
use kiln_core::{Manifest, StagedOutput};
use serde::{Deserialize, Serialize};

pub use reference::ModelReference;
pub use window::{Finding, Status, WindowReport};

use crate::traffic::Failure;

pub const MONITOR_JSON: &str = "monitor.json";
pub const PROMETHEUS: &str = "monitor.prom";
pub const REPORT: &str = kiln_core::stages::REPORT;
pub use kiln_core::stages::MONITOR_DONE;
/// Damaged log lines listed in the report (all are counted).
const DAMAGED_SHOWN: usize = 5;
const DAY_MS: f64 = 86_400_000.0;

/// One model version's traffic.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionReport {
    pub model_version: String,
    /// Where its reference came from; `None`: an unknown version, judged on operations only.
    pub reference: Option<String>,
    pub reference_accuracy: Option<f64>,
    pub created: Option<String>,
    pub age_days: Option<f64>,
    /// The files it was trained on (path and sha256).
    pub training_data: Vec<kiln_core::FileHash>,
    /// Every prediction of this version as one window.
    pub overall: WindowReport,
    /// Indices into [`MonitorReport::windows`].
    pub windows: Vec<usize>,
}

/// `monitor.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MonitorReport {
    pub generated_at: String,
    pub log_dir: String,
    pub log_files: usize,
    pub predictions: usize,
    pub failed_requests: usize,
    pub unmatched_feedback: usize,
    /// Lines that could not be read: skipped and counted.
    pub damaged_lines: usize,
    pub damaged_examples: Vec<DamagedLine>,
    /// Now: the latest judged window of the version serving last, and its age.
    pub status: Status,
    pub current_version: Option<String>,
    pub current_window: Option<usize>,
    pub findings: Vec<Finding>,
    pub versions: Vec<VersionReport>,
    /// Every window, in time order.
    pub windows: Vec<WindowReport>,
    pub settings: MonitorConfig,
}

/// Reads the log and the references, writes the outputs; `config` is resolved
/// ([`MonitorConfig::resolved`]).
pub fn run(config: &MonitorConfig) -> Result<MonitorReport> {
    config.validate()?;
    let log_dir = config.log_dir.as_deref().context("monitor.log_dir is not resolved. This is a bug.")?;
    let model_dir = config.model_dir.as_deref().context("monitor.model_dir is not resolved. This is a bug.")?;
    let registry_dir =
        config.registry_dir.as_deref().context("monitor.registry_dir is not resolved. This is a bug.")?;
    let references = reference::load_all(model_dir, registry_dir, config.reference_split)?;
    let report = analyse(&references, config, log_dir, now_ms())?;
    write(&report, config)?;
    Ok(report)
}

fn now_ms() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// Predictions of a version its overall figures are computed on, at most: a
/// uniform sample beyond that (the counts stay exact).
const OVERALL_SAMPLE: usize = 200_000;

/// The whole report from the log in `log_dir`: windows per version, their
/// figures, the current status. `now_ms` sets the models' ages. The log is
/// streamed three times (feedback and failures; where windows end; the
/// windows' figures), so memory holds one window per version, not the log.
pub fn analyse(
    references: &BTreeMap<String, ModelReference>,
    config: &MonitorConfig,
    log_dir: &Path,
    now_ms: u64,
) -> Result<MonitorReport> {
    let stream::FirstPass { mut feedback, failures, bad_times, log } = stream::first_pass(log_dir)?;
    let log_files = log.files.len();
    let mut damaged = log.damaged;
    if !damaged.is_empty() {
        tracing::warn!("{} damaged line(s) in the prediction log skipped, the first: {:?}", damaged.len(), damaged[0]);
    }
    let damaged_lines = damaged.len() + bad_times;
    damaged.truncate(DAMAGED_SHOWN);
    let duration_ms = config.window_duration()?.as_millis() as u64;
    let cutter = || traffic::Cutter::new(config.window, config.window_predictions, duration_ms);

    // Where the windows of every version end; then their order in time across versions.
    let mut cuts = Vec::new();
    let mut cutting = cutter();
    stream::for_each_observation(log_dir, &mut feedback, |version, o| cuts.extend(cutting.push(&version, o.time_ms)))?;
    cuts.extend(cutting.finish());
    let unmatched_feedback = feedback.unmatched();
    cuts.sort_by_key(|c| (c.first_ms, c.last_ms, c.version.clone()));
    let spans: Vec<(String, traffic::Span, u64, u64)> = cuts
        .iter()
        .map(|c| (c.version.clone(), traffic::Span { start: c.ordinal, end: c.ordinal + 1 }, c.first_ms, c.last_ms))
        .collect();
    let assigned = assign_failures(&failures, &spans);
    let position: BTreeMap<(&str, usize), usize> =
        cuts.iter().enumerate().map(|(i, c)| ((c.version.as_str(), c.ordinal), i)).collect();

    // Each window analysed as it closes; a sample of each version for its overall figures.
    let mut windows: Vec<Option<WindowReport>> = (0..cuts.len()).map(|_| None).collect();
    let mut open: BTreeMap<String, Vec<traffic::Observation>> = BTreeMap::new();
    let mut samples: BTreeMap<String, stream::Reservoir<traffic::Observation>> = BTreeMap::new();
    let mut cutting = cutter();
    let mut close = |cut: &traffic::Cut, observations: &[traffic::Observation]| {
        if let Some(&index) = position.get(&(cut.version.as_str(), cut.ordinal)) {
            let reference = references.get(&cut.version);
            windows[index] =
                Some(window::analyse(index, &cut.version, observations, &assigned[index], reference, config));
        }
    };
    stream::for_each_observation(log_dir, &mut feedback, |version, o| {
        if let Some(cut) = cutting.push(&version, o.time_ms) {
            close(&cut, &open.remove(&version).unwrap_or_default());
        }
        samples
            .entry(version.clone())
            .or_insert_with(|| stream::Reservoir::new(OVERALL_SAMPLE, config.seed))
            .push(o.clone());
        open.entry(version).or_default().push(o);
    })?;
    for cut in cutting.finish() {
        close(&cut, &open.remove(&cut.version).unwrap_or_default());
    }
    let windows: Vec<WindowReport> = windows.into_iter().flatten().collect();

    let mut versions = Vec::new();
    let mut predictions = 0;
    for (version, sample) in samples {
        let reference = references.get(&version);
        let own: Vec<&Failure> = failures.iter().filter(|f| f.model_version.as_ref() == Some(&version)).collect();
        let mut observations = sample.items;
        observations.sort_by_key(|o| o.time_ms);
        // Index 0: the overall is no window of the time series.
        let mut overall = window::analyse(0, &version, &observations, &own, reference, config);
        overall.predictions = sample.seen;
        predictions += sample.seen;
        let created_ms = reference.and_then(|r| r.created_ms);
        versions.push(VersionReport {
            model_version: version.clone(),
            reference: reference.map(|r| r.source.clone()),
            reference_accuracy: reference.and_then(|r| r.predictions.as_ref()).map(|p| p.accuracy),
            created: created_ms.map(window::format_time),
            age_days: created_ms.map(|c| now_ms.saturating_sub(c) as f64 / DAY_MS),
            training_data: reference.map(|r| r.training_data.clone()).unwrap_or_default(),
            overall,
            windows: windows.iter().filter(|w| w.model_version == version).map(|w| w.index).collect(),
        });
    }

    // Now: the version that served last, its latest judged window (or its latest).
    let current_version = windows.last().map(|w| w.model_version.clone());
    let current_window = current_version.as_ref().and_then(|version| {
        let mut own = windows.iter().filter(|w| &w.model_version == version);
        own.clone().rfind(|w| w.judged).or_else(|| own.next_back()).map(|w| w.index)
    });
    let mut findings: Vec<Finding> = current_window.map(|i| windows[i].findings.clone()).unwrap_or_default();
    if let Some(version) = versions.iter().find(|v| Some(&v.model_version) == current_version.as_ref()) {
        if version.reference.is_none() {
            findings.push(Finding {
                status: Status::Warn,
                check: "reference".into(),
                message: format!(
                    "no reference for model version {}: drift and estimated accuracy are not measured \
                     (monitor.model_dir and monitor.registry_dir hold no model with these weights)",
                    version.model_version
                ),
            });
        }
        if let Some(age) = version.age_days.filter(|&age| age >= config.max_model_age_days) {
            findings.push(Finding {
                status: Status::Warn,
                check: "staleness".into(),
                message: format!(
                    "the model is {age:.0} days old (warn at {:.0}): retrain on fresh data",
                    config.max_model_age_days
                ),
            });
        }
    }
    if versions.is_empty() {
        findings.push(Finding {
            status: Status::Ok,
            check: "operations".into(),
            message: "no predictions logged yet".into(),
        });
    }
    let status = findings.iter().map(|f| f.status).max().unwrap_or_default();
    Ok(MonitorReport {
        generated_at: window::format_time(now_ms),
        log_dir: log_dir.display().to_string(),
        log_files,
        predictions,
        failed_requests: failures.len(),
        unmatched_feedback,
        damaged_lines,
        damaged_examples: damaged,
        status,
        current_version,
        current_window,
        findings,
        versions,
        windows,
        settings: config.clone(),
    })
}

/// Each failed request goes to the first window (of its model version, when
/// it names one) that ends at or after it, else to the last such window.
fn assign_failures<'a>(failures: &'a [Failure], spans: &[(String, traffic::Span, u64, u64)]) -> Vec<Vec<&'a Failure>> {
    let mut assigned = vec![Vec::new(); spans.len()];
    for failure in failures {
        let candidates: Vec<usize> =
            (0..spans.len()).filter(|&i| failure.model_version.as_ref().is_none_or(|v| *v == spans[i].0)).collect();
        let chosen = candidates.iter().copied().find(|&i| spans[i].3 >= failure.time_ms).or(candidates.last().copied());
        if let Some(i) = chosen {
            assigned[i].push(failure);
        }
    }
    assigned
}

fn write(report: &MonitorReport, config: &MonitorConfig) -> Result<()> {
    let mut output = StagedOutput::new(&config.output_dir)?;
    output.write_json(MONITOR_JSON, report)?;
    output.write_bytes(PROMETHEUS, report::prometheus(report)?.as_bytes())?;
    report::plots(report, config, &mut output)?;
    output.write_bytes(REPORT, report::markdown(report).as_bytes())?;
    let summary = serde_json::json!({
        "status": report.status,
        "predictions": report.predictions,
        "windows": report.windows.len(),
        "damaged_lines": report.damaged_lines,
    });
    let mut manifest = Manifest::new("monitor", config, &summary);
    manifest.outputs = output.hashes()?;
    output.commit(MONITOR_DONE, &manifest)
}

/// What a `monitor` run adds to its run record (and MLflow): one step per
/// window, so a tracking UI draws the drift and quality over time.
pub fn record(run: &mut kiln_track::Run, report: &MonitorReport) {
    run.tag("status", report.status.name());
    if let Some(version) = &report.current_version {
        run.tag("model_version", version.clone());
    }
    for window in &report.windows {
        let step = window.index as u64;
        let mut figures = vec![
            ("predictions", Some(window.predictions as f64)),
            ("status_level", Some(f64::from(window.status.level()))),
            ("estimated_accuracy", window.entities.is_none().then_some(window.estimated.accuracy)),
            ("realised_accuracy", window.quality.accuracy.map(|a| a.value)),
            ("feedback_share", Some(window.quality.feedback_share)),
            ("prediction_psi", window.prediction_drift.as_ref().map(|d| d.psi)),
            ("confidence_ks", window.confidence.as_ref().map(|c| c.ks)),
            ("mean_confidence", window.confidence.as_ref().map(|c| c.mean_top)),
            ("token_length_psi", window.input.token_length_psi),
            ("truncation_rate", Some(window.input.truncation_rate)),
            ("latency_p95_ms", Some(window.operations.latency_ms_p95)),
            ("error_share", Some(window.operations.error_share)),
            ("entity_type_psi", window.entities.as_ref().and_then(|e| e.type_psi)),
            ("entities_per_text", window.entities.as_ref().map(|e| e.entities_per_text)),
            ("entity_score_ks", window.entities.as_ref().and_then(|e| e.score_ks)),
            ("realised_entity_f1", window.quality.entities.as_ref().map(|q| q.micro_f1.value)),
        ];
        for (key, value) in figures.drain(..) {
            if let Some(value) = value {
                run.metric(&format!("window_{key}"), value, step);
            }
        }
    }
    run.output(Path::new(&report.settings.output_dir));
}
