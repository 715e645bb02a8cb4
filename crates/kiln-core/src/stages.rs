//! The file each stage writes last, in its output folder: a stage is done
//! exactly when this file is there (everything else is moved into place
//! before it). `make` takes these as the stages' targets, through
//! `--print-done-files`, so the names live only here.

/// `ingest`'s manifest, in `[ingest] output_dir`.
pub const INGEST_DONE: &str = crate::Manifest::FILE;
/// `clean`'s manifest, in `[clean] output_dir`.
pub const CLEAN_DONE: &str = "clean_report.json";
/// `label`'s manifest (with its report), in `[label] output_dir`.
pub const LABEL_DONE: &str = "label_report.json";
/// `tokenize`'s manifest, in `[tokenize] output_dir` (beside `labels.json`).
pub const TOKENIZE_DONE: &str = "tokenize_report.json";
/// `profile`'s manifest, in `[profile] output_dir` (beside `profile.json`).
pub const PROFILE_DONE: &str = crate::Manifest::FILE;
/// `train`'s summary, in `[train] run_dir`, written after the model folder.
pub const TRAIN_DONE: &str = "train_summary.json";
/// `eval`'s manifest, in `[eval] output_dir`.
pub const EVAL_DONE: &str = crate::Manifest::FILE;
/// `export`'s manifest, in `[export] output_dir`.
pub const EXPORT_DONE: &str = crate::model_folder::EXPORT_MANIFEST;
/// The registry's index, in `[registry] dir`, rewritten by each change.
pub const REGISTRY_DONE: &str = "registry.json";
/// `monitor`'s manifest, in `[monitor] output_dir`, written after its report.
pub const MONITOR_DONE: &str = crate::Manifest::FILE;
/// `gate`'s manifest, in `[gate] output_dir`, written after its decision.
pub const GATE_DONE: &str = crate::Manifest::FILE;

/// The report for people each stage writes beside its outputs (`eval`,
/// `profile`, `monitor`, `gate`, `tune`).
pub const REPORT: &str = "report.md";

/// `train`'s resumable checkpoint: this folder of `[train] run_dir`, complete
/// when it holds [`TRAIN_CHECKPOINT_STATE`].
pub const TRAIN_CHECKPOINT: &str = "checkpoint";
pub const TRAIN_CHECKPOINT_STATE: &str = "state.json";
/// Locked by the `train` process using `[train] run_dir`, for as long as it runs.
pub const TRAIN_RUN_LOCK: &str = "train.lock";
