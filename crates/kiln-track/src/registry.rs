//! Model versions: each exported model that `registry add` records becomes
//! version N, a copy in `<dir>/v<N>/` with its metrics, the hashes of its
//! weights, training config and data, and a stage: `candidate`, `production`
//! (one at most) or `archived`. `<dir>/production` is a link to the production
//! version's folder, which is what `serve` serves; `promote` swaps it in one
//! rename, so a reader sees the old model or the new one, never neither.
//!
//! `<dir>/registry.json` is the index. Every change takes `<dir>/.lock` first
//! (two `add`s at once get two numbers) and writes the index to a temp file,
//! synced and renamed into place. A version folder is copied under a temp name
//! with its own record (`registry_version.json`), synced and renamed into place
//! before the index names it, so a crash leaves at most a whole folder the
//! index does not name yet: the next change records it (rolls the `add`
//! forward). No code path deletes a version folder: a missing or unreadable
//! index beside version folders is an error naming them, and `rebuild`
//! recreates it from each version's own files and the production link.

use std::collections::BTreeMap;
use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::time::UNIX_EPOCH;

use anyhow::{Context, Result};
use kiln_config::RegistryConfig;
use kiln_core::gate::GateDecision;
use kiln_core::model_folder::{EVAL_METRICS, SETTINGS, TRAIN_MANIFEST, WEIGHTS};
use kiln_core::output::{FileHash, now_ms, read_manifest, write_file_atomically};
use kiln_core::{EvalMetrics, Metric};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};

pub const INDEX: &str = kiln_core::stages::REGISTRY_DONE;
pub const PRODUCTION: &str = "production";
/// Each version folder's own record of what `add` recorded (the index's entry as added).
pub const VERSION_RECORD: &str = "registry_version.json";
const LOCK: &str = ".lock";
/// `add` copies a version in under this prefix, then renames it to `v<N>`.
const STAGING: &str = ".kiln-add-";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Stage {
    Candidate,
    Production,
    Archived,
}

impl fmt::Display for Stage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Candidate => "candidate",
            Self::Production => "production",
            Self::Archived => "archived",
        })
    }
}

/// One registered model.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Version {
    pub version: u32,
    pub stage: Stage,
    /// Unix milliseconds.
    pub created_ms: u64,
    /// The folder it was copied from.
    pub source: String,
    pub weights_sha256: String,
    /// sha256 of the training config saved with the weights (`kiln.toml`).
    pub config_sha256: Option<String>,
    /// Every file training read (from the export's training manifest).
    pub data: Vec<FileHash>,
    /// The data the metrics were measured on: metrics compare only on the same.
    pub test_data: Option<FileHash>,
    /// `eval`'s figures (accuracy, macro_f1, loss, ...), empty when not evaluated.
    pub metrics: BTreeMap<String, f64>,
    /// Every stage change: (stage, unix milliseconds).
    pub history: Vec<(Stage, u64)>,
    /// The last champion/challenger comparison of this version (`gate`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gate: Option<GateDecision>,
}

impl Version {
    pub fn name(&self) -> String {
        format!("v{}", self.version)
    }

    fn set_stage(&mut self, stage: Stage) {
        self.stage = stage;
        self.history.push((stage, now_ms()));
    }
}

/// `registry.json`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub versions: Vec<Version>,
}

impl Index {
    pub fn get(&self, version: u32) -> Option<&Version> {
        self.versions.iter().find(|v| v.version == version)
    }

    pub fn production(&self) -> Option<&Version> {
        self.versions.iter().find(|v| v.stage == Stage::Production)
    }
}

/// What callers branch on: a refused promotion is an expected outcome (the
/// retrain gate, scripts), not a broken registry. `registry` exits 1 on each.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("no version {0} in the registry (`registry list` shows them)")]
    NoSuchVersion(u32),
    #[error(
        "v{candidate} has {metric} {candidate_value:.4}, worse than production v{production}'s \
         {production_value:.4} on the same test data: not promoted (--force promotes it anyway)"
    )]
    WorseThanProduction { candidate: u32, production: u32, metric: Metric, candidate_value: f64, production_value: f64 },
    #[error(
        "v{candidate} has no {metric} to compare with production v{production}'s (was it evaluated \
         before export?): not promoted (--force promotes it anyway)"
    )]
    NotComparable { candidate: u32, production: u32, metric: Metric },
    #[error("v{0} is in production: promote another version first")]
    ArchivingProduction(u32),
    #[error(
        "{dir} has version folders ({versions}) but {problem}: nothing was changed. `registry rebuild` \
         recreates the index from the folders' own files and the production link"
    )]
    IndexLost { dir: PathBuf, versions: String, problem: String },
    #[error("{0} reads as a registry index: there is nothing to rebuild (move it aside to rebuild it anyway)")]
    IndexPresent(PathBuf),
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

/// What `add` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Added {
    pub version: Version,
    /// False when these weights were registered already (nothing was added).
    pub new: bool,
}

/// What `promote` did.
#[derive(Debug, Clone, PartialEq)]
pub struct Promoted {
    pub version: Version,
    /// The version it replaced, now archived.
    pub replaced: Option<u32>,
    /// Set when the metrics could not be compared (different test data).
    pub warning: Option<String>,
}

pub struct Registry {
    dir: PathBuf,
}

impl Registry {
    pub fn new(config: &RegistryConfig) -> Self {
        Self { dir: config.dir.clone() }
    }

    pub fn at(dir: &Path) -> Self {
        Self { dir: dir.to_owned() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn version_dir(&self, version: u32) -> PathBuf {
        self.dir.join(format!("v{version}"))
    }

    pub fn production_dir(&self) -> PathBuf {
        self.dir.join(PRODUCTION)
    }

    /// The index; an empty one when nothing was registered yet. An index
    /// that is missing or does not read beside version folders is an error
    /// ([`RegistryError::IndexLost`]): starting afresh there would reuse their numbers.
    pub fn load(&self) -> Result<Index> {
        let path = self.dir.join(INDEX);
        let problem = match std::fs::read_to_string(&path) {
            Ok(text) => match serde_json::from_str(&text) {
                Ok(index) => return Ok(index),
                Err(error) => format!("its index {} does not read ({error})", path.display()),
            },
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => format!("no index ({INDEX})"),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let folders = self.version_folders()?;
        if folders.is_empty() && problem.starts_with("no index") {
            return Ok(Index::default());
        }
        let versions = if folders.is_empty() {
            "none".to_owned()
        } else {
            folders.iter().map(|n| format!("v{n}")).collect::<Vec<_>>().join(", ")
        };
        Err(RegistryError::IndexLost { dir: self.dir.clone(), versions, problem }.into())
    }

    /// The numbers of the `v<N>` folders in the registry folder, ascending.
    fn version_folders(&self) -> Result<Vec<u32>> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e).with_context(|| format!("cannot list {}", self.dir.display())),
        };
        let mut numbers = Vec::new();
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", self.dir.display()))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if let Some(number) = name.strip_prefix('v').and_then(|n| n.parse::<u32>().ok())
                && entry.path().is_dir()
                && name == format!("v{number}")
            {
                numbers.push(number);
            }
        }
        numbers.sort_unstable();
        Ok(numbers)
    }

    /// Records `model_dir` (an export) as the next version, a `candidate`, or
    /// `production` when `promote_first` and there is no production yet.
    /// Weights registered already are not added twice.
    pub fn add(&self, model_dir: &Path, promote_first: bool) -> Result<Added> {
        let weights = model_dir.join(WEIGHTS);
        let weights_sha256 = FileHash::of(&weights)
            .with_context(|| format!("{} is not an exported model (run `export` first)", model_dir.display()))?
            .sha256;
        let _lock = self.lock()?;
        let mut index = self.load_current()?;
        if let Some(existing) = index.versions.iter().find(|v| v.weights_sha256 == weights_sha256) {
            return Ok(Added { version: existing.clone(), new: false });
        }
        self.remove_staging()?;
        // Past every folder too: a folder the index does not name is never reused.
        let recorded = index.versions.iter().map(|v| v.version).max().unwrap_or(0);
        let number = recorded.max(self.version_folders()?.last().copied().unwrap_or(0)) + 1;
        let mut version = record_of(model_dir, number, weights_sha256, model_dir.display().to_string(), now_ms())?;
        if promote_first && index.production().is_none() {
            version.set_stage(Stage::Production);
        }
        self.copy_in(model_dir, &version)?;
        kiln_core::test_hooks::pause_at("registry-add:renamed");
        index.versions.push(version.clone());
        self.save(&index)?;
        kiln_core::test_hooks::pause_at("registry-add:saved");
        self.link_production(&index)?;
        Ok(Added { version, new: true })
    }

    /// Makes `version` production and archives the one it replaces. Refused
    /// when its metric is worse than production's on the same test data, or
    /// missing, unless `force`.
    pub fn promote(&self, version: u32, metric: Metric, force: bool) -> Result<Promoted, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load_current()?;
        let candidate = index.get(version).ok_or(RegistryError::NoSuchVersion(version))?.clone();
        let production = index.production().cloned();
        let mut warning = None;
        if let Some(production) = production.as_ref().filter(|p| p.version != version) {
            let comparable = candidate.test_data.is_some()
                && candidate.test_data.as_ref().map(|d| &d.sha256) == production.test_data.as_ref().map(|d| &d.sha256);
            let key = metric.key();
            match (candidate.metrics.get(key), production.metrics.get(key)) {
                (Some(&new), Some(&old)) if comparable => {
                    if metric.is_better(old, new) && !force {
                        return Err(RegistryError::WorseThanProduction {
                            candidate: version,
                            production: production.version,
                            metric,
                            candidate_value: new,
                            production_value: old,
                        });
                    }
                }
                (None, Some(_)) if !force => {
                    return Err(RegistryError::NotComparable {
                        candidate: version,
                        production: production.version,
                        metric,
                    });
                }
                _ => {
                    warning = Some(format!(
                        "v{version} and production v{} were not measured on the same test data, so their \
                         metrics were not compared",
                        production.version
                    ));
                }
            }
        }
        let replaced = production.filter(|p| p.version != version).map(|p| p.version);
        for entry in &mut index.versions {
            if Some(entry.version) == replaced {
                entry.set_stage(Stage::Archived);
            } else if entry.version == version && entry.stage != Stage::Production {
                entry.set_stage(Stage::Production);
            }
        }
        self.save(&index)?;
        self.link_production(&index)?;
        let version = index.get(version).cloned().ok_or(RegistryError::NoSuchVersion(version))?;
        Ok(Promoted { version, replaced, warning })
    }

    /// Keeps a gate decision on the challenger's record, whatever it decided.
    pub fn record_gate(&self, decision: &GateDecision) -> Result<Version, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load_current()?;
        let entry = index
            .versions
            .iter_mut()
            .find(|v| v.version == decision.challenger)
            .ok_or(RegistryError::NoSuchVersion(decision.challenger))?;
        entry.gate = Some(decision.clone());
        let recorded = entry.clone();
        self.save(&index)?;
        Ok(recorded)
    }

    /// Retires a candidate; its files stay, so it can be promoted back.
    pub fn archive(&self, version: u32) -> Result<Version, RegistryError> {
        let _lock = self.lock()?;
        let mut index = self.load_current()?;
        let entry =
            index.versions.iter_mut().find(|v| v.version == version).ok_or(RegistryError::NoSuchVersion(version))?;
        match entry.stage {
            Stage::Production => return Err(RegistryError::ArchivingProduction(version)),
            Stage::Archived => return Ok(entry.clone()),
            Stage::Candidate => entry.set_stage(Stage::Archived),
        }
        let archived = entry.clone();
        self.save(&index)?;
        Ok(archived)
    }

    /// The index with what a killed `add` left recorded, and the production
    /// link as the index says (a kill can fall between the two); under the lock.
    fn load_current(&self) -> Result<Index> {
        let mut index = self.load()?;
        self.roll_forward(&mut index)?;
        self.link_production(&index)?;
        Ok(index)
    }

    /// Records the version folders a killed `add` moved into place but never
    /// recorded: each carries its own record, so the `add` completes now. A
    /// folder without one (not made by `add`) is left alone and its number skipped.
    fn roll_forward(&self, index: &mut Index) -> Result<()> {
        let mut changed = false;
        for number in self.version_folders()? {
            if index.get(number).is_some() {
                continue;
            }
            let record = self.version_dir(number).join(VERSION_RECORD);
            match kiln_core::output::read_json_if_present::<Version>(&record, "a registry version record")? {
                Some(mut version) if version.version == number => {
                    tracing::warn!("recording v{number}, which an interrupted `registry add` left unrecorded");
                    if version.stage == Stage::Production && index.production().is_some() {
                        version.set_stage(Stage::Candidate);
                    }
                    index.versions.push(version);
                    changed = true;
                }
                _ => tracing::warn!(
                    "{} is not a version `registry add` made: left alone, its number is not reused",
                    self.version_dir(number).display()
                ),
            }
        }
        if changed {
            index.versions.sort_by_key(|v| v.version);
            self.save(index)?;
            self.link_production(index)?;
        }
        Ok(())
    }

    /// Staging folders of killed `add`s (never version folders). Only called
    /// under the lock, so no other `add` is using them.
    fn remove_staging(&self) -> Result<()> {
        for entry in std::fs::read_dir(&self.dir).with_context(|| format!("cannot list {}", self.dir.display()))? {
            let entry = entry.context("registry folder entry")?;
            if entry.file_name().to_string_lossy().starts_with(STAGING) && entry.path().is_dir() {
                tracing::info!("removing {}, left by an interrupted `registry add`", entry.path().display());
                std::fs::remove_dir_all(entry.path())
                    .with_context(|| format!("cannot remove {}", entry.path().display()))?;
            }
        }
        Ok(())
    }

    /// Copies the export into `v<N>` with the version's own record: all of it
    /// synced under a staging name, then renamed into place.
    fn copy_in(&self, model_dir: &Path, version: &Version) -> Result<()> {
        let staging = tempfile::Builder::new()
            .prefix(STAGING)
            .tempdir_in(&self.dir)
            .with_context(|| format!("cannot write in {}", self.dir.display()))?;
        let entries = std::fs::read_dir(model_dir).with_context(|| format!("cannot list {}", model_dir.display()))?;
        for entry in entries {
            let entry = entry.with_context(|| format!("cannot list {}", model_dir.display()))?;
            if entry.path().is_file() && entry.file_name() != VERSION_RECORD {
                let copy = staging.path().join(entry.file_name());
                std::fs::copy(entry.path(), &copy)
                    .with_context(|| format!("cannot copy {}", entry.path().display()))?;
                kiln_core::output::sync_file(&copy)?;
            }
        }
        let mut record = serde_json::to_vec_pretty(version).context("registry version record")?;
        record.push(b'\n');
        write_file_atomically(&staging.path().join(VERSION_RECORD), &record)?;
        kiln_core::test_hooks::pause_at("registry-add:copied");
        let target = self.version_dir(version.version);
        std::fs::rename(staging.keep(), &target).with_context(|| format!("cannot create {}", target.display()))?;
        kiln_core::output::sync_dir(&self.dir)
    }

    /// Recreates a lost or unreadable index from each `v<N>` folder: its own
    /// record when it has one, else its files (weights, settings, training
    /// manifest, eval metrics). The production link decides which is
    /// production; of the others, those newer than it are candidates and older
    /// ones archived. A damaged index is kept beside as `registry.json.damaged-<ms>`.
    pub fn rebuild(&self) -> Result<Index, RegistryError> {
        let _lock = self.lock()?;
        let path = self.dir.join(INDEX);
        if let Ok(text) = std::fs::read_to_string(&path) {
            if serde_json::from_str::<Index>(&text).is_ok() {
                return Err(RegistryError::IndexPresent(path));
            }
            let damaged = self.dir.join(format!("{INDEX}.damaged-{}", now_ms()));
            std::fs::rename(&path, &damaged).with_context(|| format!("cannot move {} aside", path.display()))?;
            tracing::warn!("kept the damaged index as {}", damaged.display());
        }
        let production = std::fs::read_link(self.production_dir())
            .ok()
            .and_then(|target| target.to_str().and_then(|t| t.strip_prefix('v')).and_then(|n| n.parse::<u32>().ok()));
        let mut index = Index::default();
        for number in self.version_folders()? {
            let dir = self.version_dir(number);
            let record = kiln_core::output::read_json_if_present::<Version>(
                &dir.join(VERSION_RECORD),
                "a registry version record",
            )?
            .filter(|v| v.version == number);
            let mut version = match record {
                Some(version) => version,
                None => self.describe(&dir, number)?,
            };
            let stage = match production {
                Some(p) if p == number => Stage::Production,
                Some(p) if number > p => Stage::Candidate,
                Some(_) => Stage::Archived,
                None if version.stage == Stage::Production => Stage::Candidate,
                None => version.stage,
            };
            if version.stage != stage {
                version.set_stage(stage);
            }
            index.versions.push(version);
        }
        self.save(&index)?;
        self.link_production(&index)?;
        Ok(index)
    }

    /// A version's record from its folder's files, for a folder without its own record.
    fn describe(&self, dir: &Path, number: u32) -> Result<Version> {
        let weights_sha256 = FileHash::of(&dir.join(WEIGHTS))
            .with_context(|| format!("{} has no weights: not a registry version", dir.display()))?
            .sha256;
        let export = read_manifest::<IgnoredAny>(&dir.join(kiln_core::model_folder::EXPORT_MANIFEST));
        let source = export
            .and_then(|m| m.outputs.first().and_then(|o| Path::new(&o.path).parent().map(|p| p.display().to_string())))
            .unwrap_or_else(|| dir.display().to_string());
        let created_ms = std::fs::metadata(dir.join(WEIGHTS))
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or_else(now_ms, |d| d.as_millis() as u64);
        record_of(dir, number, weights_sha256, source, created_ms)
    }

    /// Points `<dir>/production` at the production version's folder (or removes
    /// it when there is none), by renaming a new link over the old one.
    fn link_production(&self, index: &Index) -> Result<()> {
        let link = self.production_dir();
        let Some(production) = index.production() else {
            return match std::fs::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    Err(e).context("cannot remove the production link")
                }
                _ => Ok(()),
            };
        };
        if std::fs::read_link(&link).is_ok_and(|target| target == Path::new(&production.name())) {
            return Ok(());
        }
        let tmp = self.dir.join(".production.tmp");
        let _ = std::fs::remove_file(&tmp);
        std::os::unix::fs::symlink(production.name(), &tmp).context("cannot create the production link")?;
        std::fs::rename(&tmp, &link).with_context(|| format!("cannot move {} into place", link.display()))?;
        kiln_core::output::sync_dir(&self.dir)
    }

    fn save(&self, index: &Index) -> Result<()> {
        let mut json = serde_json::to_vec_pretty(index).context("registry index")?;
        json.push(b'\n');
        write_file_atomically(&self.dir.join(INDEX), &json)
    }

    /// Held until dropped; the OS releases it if the process dies.
    fn lock(&self) -> Result<File> {
        std::fs::create_dir_all(&self.dir).with_context(|| format!("cannot create {}", self.dir.display()))?;
        let path = self.dir.join(LOCK);
        let file = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(file)
    }
}

/// A candidate's record from an export-shaped folder: its settings' hash, the
/// data it was trained on (training manifest) and its eval metrics.
fn record_of(folder: &Path, number: u32, weights_sha256: String, source: String, created_ms: u64) -> Result<Version> {
    let eval = EvalMetrics::load_if_present(&folder.join(EVAL_METRICS))?;
    let training = read_manifest::<IgnoredAny>(&folder.join(TRAIN_MANIFEST));
    let config_path = folder.join(SETTINGS);
    Ok(Version {
        version: number,
        stage: Stage::Candidate,
        created_ms,
        source,
        weights_sha256,
        config_sha256: config_path.is_file().then(|| FileHash::of(&config_path)).transpose()?.map(|h| h.sha256),
        data: training.map(|t| t.inputs).unwrap_or_default(),
        test_data: eval.as_ref().map(|e| e.data.clone()),
        metrics: eval.map(|e| e.headline().into_iter().map(|(k, v)| (k.to_owned(), v)).collect()).unwrap_or_default(),
        history: vec![(Stage::Candidate, created_ms)],
        gate: None,
    })
}

pub use kiln_config::parse_version;

/// A header and one row per version, newest first (`runs`' table renderer prints them).
pub fn rows(index: &Index) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["version", "stage", "created", "accuracy", "macro_f1", "loss", "test data", "weights", "source"]
            .map(String::from)
            .to_vec(),
    ];
    for v in index.versions.iter().rev() {
        let created = humantime::format_rfc3339_seconds(UNIX_EPOCH + std::time::Duration::from_millis(v.created_ms));
        let figure = |key: &str| v.metrics.get(key).map_or_else(|| "-".into(), |x| format!("{x:.4}"));
        let short = |hash: &str| hash.chars().take(12).collect::<String>();
        rows.push(vec![
            v.name(),
            v.stage.to_string(),
            created.to_string(),
            figure("accuracy"),
            figure("macro_f1"),
            figure("loss"),
            v.test_data.as_ref().map_or_else(|| "-".into(), |d| short(&d.sha256)),
            short(&v.weights_sha256),
            v.source.clone(),
        ]);
    }
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An export-shaped folder: weights (any bytes), training config, eval
    /// metrics measured on `test_sha`.
    fn export(dir: &Path, weights: &str, macro_f1: f64, test_sha: &str) -> PathBuf {
        let out = dir.join(format!("export-{weights}-{test_sha}"));
        std::fs::create_dir_all(&out).expect("mkdir");
        std::fs::write(out.join(WEIGHTS), weights).expect("weights");
        std::fs::write(out.join(SETTINGS), "[train]\nseed = 1\n").expect("config");
        let metrics = EvalMetrics {
            accuracy: macro_f1 + 0.01,
            loss: 1.0 - macro_f1,
            macro_precision: macro_f1,
            macro_recall: macro_f1,
            macro_f1,
            weighted_precision: macro_f1,
            weighted_recall: macro_f1,
            weighted_f1: macro_f1,
            examples: 100,
            split: kiln_core::Split::Test,
            per_class: Vec::new(),
            model: Vec::new(),
            data: FileHash { path: "data/processed/test.parquet".into(), sha256: test_sha.into() },
            entities: None,
        };
        std::fs::write(out.join(EVAL_METRICS), serde_json::to_string(&metrics).expect("json")).expect("metrics");
        let manifest = serde_json::json!({
            "config": {}, "inputs": [{ "path": "data/processed/train.parquet", "sha256": "t" }],
        });
        std::fs::write(out.join(TRAIN_MANIFEST), manifest.to_string()).expect("manifest");
        out
    }

    fn production_weights(registry: &Registry) -> String {
        std::fs::read_to_string(registry.production_dir().join(WEIGHTS)).expect("production link resolves")
    }

    #[test]
    fn versions_are_numbered_recorded_and_added_once() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        let first = registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("add");
        assert!(first.new);
        let v1 = &first.version;
        assert_eq!((v1.version, v1.stage), (1, Stage::Production), "the first version goes to production");
        assert_eq!(v1.metrics["macro_f1"], 0.8);
        assert!(!v1.metrics.contains_key("examples") && v1.metrics.contains_key("loss"));
        assert_eq!(v1.test_data.as_ref().map(|d| d.sha256.as_str()), Some("test1"));
        assert_eq!(v1.data[0].sha256, "t");
        assert!(v1.config_sha256.is_some());
        assert_eq!(production_weights(&registry), "a");

        let again = registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("add again");
        assert!(!again.new && again.version.version == 1, "the same weights are not added twice");
        let second = registry.add(&export(dir.path(), "b", 0.9, "test1"), true).expect("add");
        assert_eq!((second.version.version, second.version.stage), (2, Stage::Candidate));
        assert_eq!(std::fs::read_to_string(registry.version_dir(2).join(WEIGHTS)).expect("copied"), "b");
        assert_eq!(registry.load().expect("index").versions.len(), 2);

        // A killed `add`'s staging folder is cleared by the next one; a
        // version folder no `add` recorded is never deleted nor its number reused.
        std::fs::create_dir_all(registry.version_dir(3).join("someone's")).expect("unrecorded version");
        std::fs::create_dir(registry.dir().join(".kiln-add-x")).expect("staging folder");
        let fourth = registry.add(&export(dir.path(), "c", 0.9, "test1"), true).expect("add");
        assert_eq!(fourth.version.version, 4);
        assert!(registry.version_dir(3).join("someone's").exists() && !registry.dir().join(".kiln-add-x").exists());
        assert_eq!(std::fs::read_to_string(registry.version_dir(4).join(WEIGHTS)).expect("copied"), "c");
        assert!(registry.version_dir(4).join(VERSION_RECORD).is_file(), "each version carries its own record");
    }

    #[test]
    fn a_lost_index_is_an_error_that_deletes_nothing_and_rebuild_restores_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("v1");
        registry.add(&export(dir.path(), "b", 0.9, "test1"), true).expect("v2");
        registry.add(&export(dir.path(), "c", 0.7, "test1"), true).expect("v3");
        registry.promote(2, Metric::MacroF1, false).expect("v2 production");
        let before = registry.load().expect("index");
        // A version folder from before versions carried their own record.
        std::fs::remove_file(registry.version_dir(1).join(VERSION_RECORD)).expect("old layout");
        std::fs::remove_file(registry.dir().join(INDEX)).expect("deleted by mistake");

        let error = registry.add(&export(dir.path(), "other-data", 0.5, "test2"), true).expect_err("refused");
        let message = format!("{error:#}");
        assert!(message.contains("v1, v2, v3") && message.contains("registry rebuild"), "{message}");
        assert!((1..=3).all(|n| registry.version_dir(n).join(WEIGHTS).is_file()), "nothing deleted");
        assert!(!registry.version_dir(4).exists(), "nothing added");
        assert_eq!(production_weights(&registry), "b", "production unchanged");

        let rebuilt = registry.rebuild().expect("rebuilt");
        let stages: Vec<(u32, Stage)> = rebuilt.versions.iter().map(|v| (v.version, v.stage)).collect();
        assert_eq!(stages, [(1, Stage::Archived), (2, Stage::Production), (3, Stage::Candidate)]);
        for (old, new) in before.versions.iter().zip(&rebuilt.versions) {
            assert_eq!(
                (&old.weights_sha256, &old.metrics, &old.test_data),
                (&new.weights_sha256, &new.metrics, &new.test_data)
            );
            assert_eq!((&old.data, &old.config_sha256), (&new.data, &new.config_sha256));
        }
        assert_eq!(production_weights(&registry), "b");
        assert!(matches!(registry.rebuild(), Err(RegistryError::IndexPresent(_))), "a readable index is left alone");
        assert_eq!(registry.add(&export(dir.path(), "d", 0.5, "test1"), true).expect("add").version.version, 4);

        // A damaged index is kept aside, not overwritten.
        std::fs::write(registry.dir().join(INDEX), "{ not json").expect("damage");
        assert!(registry.load().is_err());
        registry.rebuild().expect("rebuilt");
        let kept = std::fs::read_dir(registry.dir())
            .expect("list")
            .flatten()
            .any(|e| e.file_name().to_string_lossy().starts_with("registry.json.damaged-"));
        assert!(kept);
    }

    #[test]
    fn an_add_killed_after_moving_its_folder_in_is_completed_by_the_next_call() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("v1");
        let saved = std::fs::read(registry.dir().join(INDEX)).expect("index");
        registry.add(&export(dir.path(), "b", 0.9, "test1"), true).expect("v2");
        // As if killed between the folder's rename and the index's: v2's folder, the old index.
        std::fs::write(registry.dir().join(INDEX), saved).expect("old index");
        let listed = registry.promote(2, Metric::MacroF1, false).expect("v2 is recorded, then promoted");
        assert_eq!((listed.version.version, listed.replaced), (2, Some(1)));
        assert_eq!(production_weights(&registry), "b");
    }

    #[test]
    fn promote_refuses_a_worse_model_on_the_same_test_data_unless_forced() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("v1");
        registry.add(&export(dir.path(), "worse", 0.7, "test1"), true).expect("v2");
        registry.add(&export(dir.path(), "better", 0.85, "test1"), true).expect("v3");
        registry.add(&export(dir.path(), "other-data", 0.5, "test2"), true).expect("v4");

        let refused = registry.promote(2, Metric::MacroF1, false).expect_err("worse");
        assert!(matches!(refused, RegistryError::WorseThanProduction { candidate: 2, production: 1, .. }), "{refused}");
        assert_eq!(production_weights(&registry), "a", "a refusal changes nothing");
        // Lower loss is better: v2's loss (0.3) is higher than v1's (0.2).
        assert!(registry.promote(2, Metric::Loss, false).is_err());

        let promoted = registry.promote(3, Metric::MacroF1, false).expect("better");
        assert_eq!((promoted.replaced, promoted.warning), (Some(1), None));
        assert_eq!(production_weights(&registry), "better");
        let index = registry.load().expect("index");
        assert_eq!(index.get(1).map(|v| v.stage), Some(Stage::Archived));
        assert_eq!(index.get(3).map(|v| v.history.len()), Some(2));

        let forced = registry.promote(2, Metric::MacroF1, true).expect("forced");
        assert_eq!(forced.replaced, Some(3));
        assert_eq!(production_weights(&registry), "worse");

        // Different test data: nothing to compare, so it is promoted with a warning.
        let other = registry.promote(4, Metric::MacroF1, false).expect("not comparable");
        assert!(other.warning.is_some_and(|w| w.contains("same test data")));
        let index = registry.load().expect("index");
        assert_eq!(index.versions.iter().filter(|v| v.stage == Stage::Production).count(), 1);
        assert!(matches!(registry.promote(9, Metric::MacroF1, false), Err(RegistryError::NoSuchVersion(9))));
    }

    #[test]
    fn an_unevaluated_model_is_not_promoted_over_an_evaluated_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        registry.add(&export(dir.path(), "a", 0.8, "test1"), true).expect("v1");
        let bare = export(dir.path(), "bare", 0.0, "x");
        std::fs::remove_file(bare.join(EVAL_METRICS)).expect("unevaluated");
        let v2 = registry.add(&bare, true).expect("v2").version;
        assert!(v2.metrics.is_empty() && v2.test_data.is_none());
        let refused = registry.promote(2, Metric::MacroF1, false).expect_err("no metrics");
        assert!(matches!(refused, RegistryError::NotComparable { .. }), "{refused}");
    }

    #[test]
    fn production_cannot_be_archived_and_candidates_can() {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = Registry::at(&dir.path().join("registry"));
        registry.add(&export(dir.path(), "a", 0.8, "test1"), false).expect("v1");
        assert!(registry.load().expect("index").production().is_none(), "promote_first = false");
        assert!(!registry.production_dir().exists());
        registry.promote(1, Metric::MacroF1, false).expect("first promotion has nothing to beat");
        registry.add(&export(dir.path(), "b", 0.9, "test1"), false).expect("v2");
        assert!(matches!(registry.archive(1), Err(RegistryError::ArchivingProduction(1))));
        assert_eq!(registry.archive(2).expect("archived").stage, Stage::Archived);
        // An archived version can come back.
        registry.promote(2, Metric::MacroF1, false).expect("back");
        assert_eq!(production_weights(&registry), "b");
    }

    #[test]
    fn concurrent_adds_get_distinct_numbers() {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_owned();
        let exports: Vec<PathBuf> = (0..4).map(|i| export(&root, &format!("w{i}"), 0.5, "t")).collect();
        let handles: Vec<_> = exports
            .into_iter()
            .map(|path| {
                let registry = root.join("registry");
                std::thread::spawn(move || Registry::at(&registry).add(&path, true).expect("add").version.version)
            })
            .collect();
        let mut numbers: Vec<u32> = handles.into_iter().map(|h| h.join().expect("thread")).collect();
        numbers.sort_unstable();
        assert_eq!(numbers, [1, 2, 3, 4]);
        let index = Registry::at(&root.join("registry")).load().expect("index");
        assert_eq!(index.versions.len(), 4);
        assert_eq!(index.versions.iter().filter(|v| v.stage == Stage::Production).count(), 1);
    }

    #[test]
    fn versions_parse_with_or_without_v() {
        assert_eq!(parse_version("v3"), Ok(3));
        assert_eq!(parse_version("12"), Ok(12));
        assert!(parse_version("latest").is_err());
    }
}
