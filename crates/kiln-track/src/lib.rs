//! Experiment tracking. Every `train` and `eval` run leaves a record under
//! `<runs_dir>/<run-id>/`: `run.json` (the full resolved config as params,
//! tags, final metrics, input hashes, output paths, status) and `metric_history.jsonl`
//! (every metric by step and time). `runs` lists and compares them ([`table`]).
//!
//! A record is written when the run starts (status `running`, so a killed run
//! still shows) and rewritten when it ends; each write goes to a temp file that
//! is renamed into place, so a reader never sees half a record.

pub mod cli;
pub mod mlflow;
pub mod pipeline;
pub mod registry;
pub mod stage;
pub mod table;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::SystemTime;

use anyhow::{Context, Result, bail};
use kiln_core::metrics::{TrainLogLine, TrainLogRecord};
pub use kiln_core::output::now_ms;
use kiln_core::output::{FileHash, write_file_atomically};
use serde::{Deserialize, Serialize};

pub const RECORD: &str = "run.json";
/// Every metric of a run by step and time. Not `metrics.jsonl`: that is
/// `train`'s own log ([`kiln_core::metrics::TrainLogLine`]), another format.
pub const HISTORY: &str = "metric_history.jsonl";
/// What [`HISTORY`] was called in older run records; still read.
const OLD_HISTORY: &str = "metrics.jsonl";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    Running,
    Finished,
    Failed,
    Interrupted,
    /// Stopped early by `tune`'s pruner: a clean end, not a failure.
    Pruned,
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Finished => "finished",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
            Self::Pruned => "pruned",
        })
    }
}

/// `run.json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: String,
    pub stage: String,
    pub status: RunStatus,
    /// Unix milliseconds.
    pub started_ms: u64,
    pub ended_ms: Option<u64>,
    /// The config file the run was given, if any.
    pub config_file: Option<String>,
    /// The full resolved config (defaults < file < flags).
    pub params: serde_json::Value,
    /// git commit and dirty flag, host, device, kiln version.
    pub tags: BTreeMap<String, String>,
    /// Final figures (the last value of each per-step metric is in `metric_history.jsonl`).
    pub metrics: BTreeMap<String, f64>,
    pub inputs: Vec<FileHash>,
    pub outputs: Vec<String>,
    pub error: Option<String>,
}

impl RunRecord {
    pub fn seconds(&self) -> Option<f64> {
        Some(self.ended_ms?.saturating_sub(self.started_ms) as f64 / 1000.0)
    }
}

/// One metric value at one step (a line of `metric_history.jsonl`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct MetricPoint {
    pub key: String,
    pub value: f64,
    pub step: u64,
    pub timestamp_ms: u64,
}

/// A run being recorded.
#[derive(Debug)]
pub struct Run {
    dir: PathBuf,
    record: RunRecord,
    points: Vec<MetricPoint>,
}

impl Run {
    /// Creates `<runs_dir>/<run-id>/` and writes the `running` record.
    pub fn start(runs_dir: &Path, stage: &str, config_file: Option<&Path>, params: &impl Serialize) -> Result<Self> {
        let started_ms = now_ms();
        let id = run_id(stage);
        let dir = runs_dir.join(&id);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create the run record {}", dir.display()))?;
        let mut tags = git_tags();
        tags.insert("host".into(), host());
        tags.insert("kiln.version".into(), kiln_core::KILN_VERSION.into());
        let record = RunRecord {
            id,
            stage: stage.into(),
            status: RunStatus::Running,
            started_ms,
            ended_ms: None,
            config_file: config_file.map(|p| p.display().to_string()),
            params: serde_json::to_value(params).context("params")?,
            tags,
            metrics: BTreeMap::new(),
            inputs: Vec::new(),
            outputs: Vec::new(),
            error: None,
        };
        let run = Self { dir, record, points: Vec::new() };
        run.save()?;
        Ok(run)
    }

    pub fn id(&self) -> &str {
        &self.record.id
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn tag(&mut self, key: &str, value: impl Into<String>) {
        self.record.tags.insert(key.into(), value.into());
    }

    pub fn log(&mut self, point: MetricPoint) {
        self.points.push(point);
    }

    /// A final figure; also logged as a point at `step`, so step-wise viewers see it.
    pub fn metric(&mut self, key: &str, value: f64, step: u64) {
        if value.is_finite() {
            self.record.metrics.insert(key.into(), value);
            self.points.push(MetricPoint { key: key.into(), value, step, timestamp_ms: now_ms() });
        }
    }

    pub fn inputs(&mut self, inputs: impl IntoIterator<Item = FileHash>) {
        self.record.inputs.extend(inputs);
    }

    pub fn output(&mut self, path: &Path) {
        self.record.outputs.push(path.display().to_string());
    }

    pub fn record(&self) -> &RunRecord {
        &self.record
    }

    pub fn points(&self) -> &[MetricPoint] {
        &self.points
    }

    /// Writes the final record and the metrics; returns the record.
    pub fn finish(mut self, status: RunStatus, error: Option<String>) -> Result<(RunRecord, Vec<MetricPoint>)> {
        self.record.status = status;
        self.record.ended_ms = Some(now_ms());
        self.record.error = error;
        let mut lines = Vec::new();
        for point in &self.points {
            serde_json::to_writer(&mut lines, point).context("metric point")?;
            lines.push(b'\n');
        }
        write_file_atomically(&self.dir.join(HISTORY), &lines)?;
        self.save()?;
        Ok((self.record, self.points))
    }

    fn save(&self) -> Result<()> {
        let json = serde_json::to_vec_pretty(&self.record).context("run record")?;
        write_file_atomically(&self.dir.join(RECORD), &json)
    }
}

/// `train`'s metrics log as points: `train_loss`, `learning_rate`, ... for
/// training records, `val_loss`, `val_accuracy`, `val_macro_f1` for validations.
pub fn points_from_train_log(path: &Path, fallback_ms: u64) -> Result<Vec<MetricPoint>> {
    let mut points = Vec::new();
    for line in TrainLogLine::read_all(path)? {
        let timestamp_ms = line.time_ms.unwrap_or(fallback_ms);
        let (step, figures) = match line.record {
            TrainLogRecord::Train { step, loss, lr, grad_norm, samples_per_second, .. } => (
                step,
                vec![
                    ("train_loss", loss),
                    ("learning_rate", lr),
                    ("grad_norm", grad_norm),
                    ("samples_per_second", samples_per_second),
                ],
            ),
            TrainLogRecord::Eval { step, loss, accuracy, macro_f1, .. } => {
                (step, vec![("val_loss", loss), ("val_accuracy", accuracy), ("val_macro_f1", macro_f1)])
            }
            TrainLogRecord::Epoch { .. } | TrainLogRecord::Other => continue,
        };
        for (key, value) in figures.into_iter().filter(|(_, value)| value.is_finite()) {
            points.push(MetricPoint { key: key.into(), value, step: step as u64, timestamp_ms });
        }
    }
    Ok(points)
}

/// Every readable record under `runs_dir`, oldest first. Unreadable ones are
/// reported and skipped: one damaged folder must not hide the others.
pub fn list(runs_dir: &Path) -> Result<Vec<RunRecord>> {
    let entries = match std::fs::read_dir(runs_dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("cannot list {}", runs_dir.display())),
    };
    let mut records = Vec::new();
    for entry in entries.flatten() {
        let path = entry.path().join(RECORD);
        if !path.exists() {
            continue;
        }
        match read_record(&path) {
            Ok(record) => records.push(record),
            Err(error) => tracing::warn!("skipping {}: {error:#}", path.display()),
        }
    }
    records.sort_by(|a, b| (a.started_ms, &a.id).cmp(&(b.started_ms, &b.id)));
    Ok(records)
}

/// The record whose id is or starts with `id` (a unique prefix is enough).
pub fn find(runs_dir: &Path, id: &str) -> Result<RunRecord> {
    let records = list(runs_dir)?;
    let mut matches = records.into_iter().filter(|r| r.id.starts_with(id));
    match (matches.next(), matches.next()) {
        (Some(record), None) => Ok(record),
        (None, _) => bail!("no run '{id}' in {} (`runs list` shows them)", runs_dir.display()),
        (Some(a), Some(b)) => bail!("'{id}' matches several runs ({}, {}, ...): give more of the id", a.id, b.id),
    }
}

pub fn read_record(path: &Path) -> Result<RunRecord> {
    kiln_core::output::read_json(path, "a kiln run record")
}

pub fn read_points(run_dir: &Path) -> Result<Vec<MetricPoint>> {
    let mut path = run_dir.join(HISTORY);
    if !path.exists() && run_dir.join(OLD_HISTORY).exists() {
        path = run_dir.join(OLD_HISTORY);
    }
    let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .enumerate()
        .map(|(n, line)| {
            serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: not a metric point", path.display(), n + 1))
        })
        .collect()
}

/// `{"train": {"seed": 42}}` -> `train.seed` = `42`: the flat string params
/// that `runs compare` shows and MLflow stores.
pub fn flatten_params(value: &serde_json::Value) -> BTreeMap<String, String> {
    fn walk(prefix: &str, value: &serde_json::Value, out: &mut BTreeMap<String, String>) {
        match value {
            serde_json::Value::Object(map) => {
                for (key, value) in map {
                    let key = if prefix.is_empty() { key.clone() } else { format!("{prefix}.{key}") };
                    walk(&key, value, out);
                }
            }
            serde_json::Value::String(s) => {
                out.insert(prefix.into(), s.clone());
            }
            other => {
                out.insert(prefix.into(), other.to_string());
            }
        }
    }
    let mut out = BTreeMap::new();
    walk("", value, &mut out);
    out
}

/// `20261122T193012Z-train-3fa9c01d`: sorts by time, names the stage, and the
/// random suffix keeps two runs started in the same second apart.
fn run_id(stage: &str) -> String {
    let time = humantime::format_rfc3339_seconds(SystemTime::now()).to_string().replace(['-', ':'], "");
    format!("{time}-{stage}-{:08x}", rand::random::<u32>())
}

/// `git.commit` and `git.dirty` of the working directory; `unknown` outside a
/// git checkout (a user's copy of the binaries, a release tarball).
fn git_tags() -> BTreeMap<String, String> {
    let git = |args: &[&str]| {
        Command::new("git")
            .args(args)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
    };
    let commit = git(&["rev-parse", "HEAD"]);
    let dirty = commit.as_ref().and_then(|_| git(&["status", "--porcelain", "--untracked-files=no"]));
    BTreeMap::from([
        ("git.commit".into(), commit.unwrap_or_else(|| "unknown".into())),
        ("git.dirty".into(), dirty.map_or_else(|| "unknown".into(), |s| (!s.is_empty()).to_string())),
    ])
}

/// This machine's name, for records and worker ids.
pub fn host() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .or_else(|| std::env::var("HOSTNAME").ok())
        .map(|h| h.trim().to_owned())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "unknown".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_is_recorded_at_start_and_at_finish() {
        let dir = tempfile::tempdir().expect("tempdir");
        let params = serde_json::json!({ "train": { "learning_rate": 5e-5 } });
        let mut run = Run::start(dir.path(), "train", Some(Path::new("configs/x.toml")), &params).expect("start");
        let started = read_record(&run.dir().join(RECORD)).expect("record at start");
        assert_eq!(started.status, RunStatus::Running);
        assert_eq!(started.params, params);
        assert!(started.tags.contains_key("git.commit") && started.tags.contains_key("host"));

        run.log(MetricPoint { key: "train_loss".into(), value: 0.7, step: 1, timestamp_ms: 5 });
        run.metric("val_accuracy", 0.9, 2);
        run.metric("nan", f64::NAN, 2);
        run.output(Path::new("artifacts/model"));
        let id = run.id().to_owned();
        let (record, points) = run.finish(RunStatus::Finished, None).expect("finish");
        assert_eq!(find(dir.path(), &id[..id.len() - 2]).expect("found by prefix"), record);
        assert_eq!(record.metrics, BTreeMap::from([("val_accuracy".into(), 0.9)]), "non-finite values are dropped");
        assert_eq!(read_points(&dir.path().join(&id)).expect("points"), points);
        assert_eq!(points.len(), 2);
        assert!(record.seconds().is_some());
    }

    #[test]
    fn params_flatten_to_dotted_string_keys() {
        let params = serde_json::json!({ "train": { "seed": 42, "device": "cpu", "dir": null }, "x": [1, 2] });
        let flat = flatten_params(&params);
        let expected = [("train.seed", "42"), ("train.device", "cpu"), ("train.dir", "null"), ("x", "[1,2]")];
        assert_eq!(flat, expected.into_iter().map(|(k, v)| (k.to_owned(), v.to_owned())).collect());
    }

    #[test]
    fn the_train_log_becomes_points() {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = dir.path().join(kiln_core::metrics::TrainLogLine::FILE);
        std::fs::write(
            &log,
            "{\"kind\":\"train\",\"step\":10,\"epoch\":0.5,\"loss\":0.9,\"lr\":1e-5,\"grad_norm\":2.0,\"samples\":160,\
             \"tokens\":4000,\"seconds\":3.2,\"samples_per_second\":50.0,\"tokens_per_second\":1250.0,\"time_ms\":1000}\n\
             {\"kind\":\"eval\",\"step\":10,\"epoch\":0.5,\"loss\":0.6,\"accuracy\":0.8,\"macro_f1\":0.75,\"best\":true}\n\
             {\"kind\":\"epoch\",\"epoch\":1,\"step\":10,\"train_loss\":0.7}\n",
        )
        .expect("write");
        let points = points_from_train_log(&log, 7).expect("points");
        let keys: Vec<(&str, f64, u64)> = points.iter().map(|p| (p.key.as_str(), p.value, p.timestamp_ms)).collect();
        assert_eq!(
            keys,
            [
                ("train_loss", 0.9, 1000),
                ("learning_rate", 1e-5, 1000),
                ("grad_norm", 2.0, 1000),
                ("samples_per_second", 50.0, 1000),
                ("val_loss", 0.6, 7),
                ("val_accuracy", 0.8, 7),
                ("val_macro_f1", 0.75, 7),
            ]
        );
        std::fs::write(&log, "not json\n").expect("write");
        let error = points_from_train_log(&log, 0).expect_err("refused");
        assert!(format!("{error:#}").contains("line 1"), "{error:#}");
    }

    #[test]
    fn a_damaged_record_is_skipped_and_ambiguous_ids_are_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = Run::start(dir.path(), "eval", None, &1).expect("a").finish(RunStatus::Failed, Some("boom".into()));
        let b = Run::start(dir.path(), "eval", None, &2).expect("b").finish(RunStatus::Finished, None);
        let (a, b) = (a.expect("a").0, b.expect("b").0);
        std::fs::create_dir_all(dir.path().join("broken")).expect("mkdir");
        std::fs::write(dir.path().join("broken").join(RECORD), "{").expect("write");
        let listed = list(dir.path()).expect("list");
        assert_eq!(listed.len(), 2);
        assert!(listed.contains(&a) && listed.contains(&b));
        let common: String = a.id.chars().zip(b.id.chars()).take_while(|(x, y)| x == y).map(|(x, _)| x).collect();
        let error = find(dir.path(), &common).expect_err("ambiguous");
        assert!(error.to_string().contains("several runs"), "{error}");
        assert!(find(dir.path(), "nope").is_err());
    }
}
