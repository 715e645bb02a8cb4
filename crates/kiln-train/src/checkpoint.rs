//! Resumable checkpoints: the model, the optimizer state, the best model so
//! far and where training stood, in `run_dir/checkpoint/`.
//!
//! A checkpoint is written into a fresh folder and swapped in by renames, so a
//! crash while writing leaves the previous checkpoint whole. Weights use burn's
//! own format (burnpack), which keeps parameter ids: the optimizer state is
//! keyed by them. No RNG state needs saving: batch order is seeded by (seed,
//! epoch) and dropout by (seed, step), so the step alone says what comes next.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use burn::optim::ModuleOptimizer;
use burn::store::{BurnpackStore, ModuleSnapshot};
use kiln_config::TrainConfig;
use kiln_core::FileHash;
use kiln_model::BertConfig;
use serde::{Deserialize, Serialize};

use crate::ValidationMetrics;

const DIR: &str = kiln_core::stages::TRAIN_CHECKPOINT;
const STATE: &str = kiln_core::stages::TRAIN_CHECKPOINT_STATE;
const MODEL: &str = "model.bpk";
const OPTIMIZER: &str = "optimizer.bpk";
const BEST: &str = "best.bpk";
const FORMAT: u32 = 1;

/// What a checkpoint was trained from: resuming with anything else is refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Fingerprint {
    pub model: BertConfig,
    pub labels: Vec<String>,
    pub inputs: Vec<FileHash>,
}

/// Where training stood: `step` optimizer steps done in all, `step_in_epoch`
/// of them in the (0-based) `epoch` under way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Position {
    pub step: usize,
    pub epoch: usize,
    pub step_in_epoch: usize,
}

/// The best validation so far.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Best {
    pub value: f64,
    pub step: usize,
    pub epoch: f64,
    pub metrics: ValidationMetrics,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CheckpointState {
    pub format: u32,
    pub kiln_version: String,
    pub position: Position,
    pub best: Option<Best>,
    pub evals_since_best: usize,
    /// Sum and count of the step losses so far in the epoch under way.
    pub epoch_loss: (f64, usize),
    /// Length of the live metrics log at this point: a resumed run cuts it back to this.
    pub metrics_log_bytes: u64,
    pub finished: bool,
    pub fingerprint: Fingerprint,
    pub config: TrainConfig,
}

impl CheckpointState {
    pub fn new(position: Position, fingerprint: Fingerprint, config: TrainConfig) -> Self {
        Self {
            format: FORMAT,
            kiln_version: kiln_core::KILN_VERSION.to_owned(),
            position,
            best: None,
            evals_since_best: 0,
            epoch_loss: (0.0, 0),
            metrics_log_bytes: 0,
            finished: false,
            fingerprint,
            config,
        }
    }
}

/// The checkpoint folder of one run directory.
pub struct Checkpoint {
    dir: PathBuf,
    staging: PathBuf,
    previous: PathBuf,
}

impl Checkpoint {
    pub fn in_run_dir(run_dir: &Path) -> Self {
        Self {
            dir: run_dir.join(DIR),
            staging: run_dir.join(".checkpoint-new"),
            // Where `swap_dir_into_place` sets the old checkpoint aside while swapping.
            previous: run_dir.join(format!(".{DIR}.old")),
        }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Whether there is a complete checkpoint, finishing an interrupted swap first.
    pub fn exists(&self) -> bool {
        if !self.dir.join(STATE).is_file() && self.previous.join(STATE).is_file() {
            let _ = std::fs::remove_dir_all(&self.dir);
            let _ = std::fs::rename(&self.previous, &self.dir);
        }
        self.dir.join(STATE).is_file()
    }

    /// Deletes the checkpoint (a pruned run has nothing to resume).
    pub fn remove(&self) -> Result<()> {
        for dir in [&self.dir, &self.staging, &self.previous] {
            match std::fs::remove_dir_all(dir) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(e).with_context(|| format!("cannot remove {}", dir.display()));
                }
                _ => {}
            }
        }
        Ok(())
    }

    pub fn read_state(&self) -> Result<CheckpointState> {
        let path = self.dir.join(STATE);
        let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
        let state: CheckpointState =
            serde_json::from_str(&text).with_context(|| format!("{} is not a kiln checkpoint", path.display()))?;
        if state.format != FORMAT {
            bail!("{} has checkpoint format {}, this kiln reads format {FORMAT}", path.display(), state.format);
        }
        Ok(state)
    }

    /// Writes a new checkpoint. `best` is the best model when it changed since
    /// the last checkpoint; otherwise the previous checkpoint's copy is kept.
    pub fn save(
        &self,
        state: &CheckpointState,
        model: &impl ModuleSnapshot,
        optimizer: &ModuleOptimizer,
        best: Option<&impl ModuleSnapshot>,
    ) -> Result<()> {
        let _ = std::fs::remove_dir_all(&self.staging);
        std::fs::create_dir_all(&self.staging)
            .with_context(|| format!("cannot create checkpoint folder {}", self.staging.display()))?;
        save_weights(model, &self.staging.join(MODEL))?;
        optimizer
            .save(self.staging.join(OPTIMIZER))
            .map_err(|e| anyhow::anyhow!("cannot save the optimizer state in {}: {e:?}", self.staging.display()))?;
        match best {
            Some(best) => save_weights(best, &self.staging.join(BEST))?,
            None if self.dir.join(BEST).is_file() => {
                let (from, to) = (self.dir.join(BEST), self.staging.join(BEST));
                if std::fs::hard_link(&from, &to).is_err() {
                    std::fs::copy(&from, &to).with_context(|| format!("cannot copy {}", from.display()))?;
                }
            }
            None => {}
        }
        let state_json = serde_json::to_string_pretty(state).expect("checkpoint state serialises. This is a bug.");
        std::fs::write(self.staging.join(STATE), state_json)
            .with_context(|| format!("cannot write {}", self.staging.join(STATE).display()))?;

        kiln_core::output::swap_dir_into_place(&self.staging, &self.dir)?;
        Ok(())
    }

    pub fn load_model(&self, model: &mut impl ModuleSnapshot) -> Result<()> {
        load_weights(model, &self.dir.join(MODEL))
    }

    /// Loads the best model so far; false when the checkpoint has none yet.
    pub fn load_best(&self, model: &mut impl ModuleSnapshot) -> Result<bool> {
        let path = self.dir.join(BEST);
        if !path.is_file() {
            return Ok(false);
        }
        load_weights(model, &path).map(|()| true)
    }

    pub fn load_optimizer(&self, optimizer: ModuleOptimizer) -> Result<ModuleOptimizer> {
        let path = self.dir.join(OPTIMIZER);
        optimizer.load(&path).map_err(|e| anyhow::anyhow!("cannot load the optimizer state {}: {e:?}", path.display()))
    }
}

fn save_weights(model: &impl ModuleSnapshot, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false).overwrite(true);
    model.save_into(&mut store).map_err(|e| anyhow::anyhow!("cannot save weights to {}: {e:?}", path.display()))
}

fn load_weights(model: &mut impl ModuleSnapshot, path: &Path) -> Result<()> {
    let mut store = BurnpackStore::from_file(path).auto_extension(false);
    let result = model.load_from(&mut store).map_err(|e| anyhow::anyhow!("cannot load {}: {e:?}", path.display()))?;
    if !result.errors.is_empty() || !result.missing.is_empty() {
        bail!(
            "{} does not fit this model (missing: {:?}; errors: {:?}): the checkpoint is from another model",
            path.display(),
            result.missing.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            result.errors
        );
    }
    Ok(())
}

/// Settings a resumed run may change: where things go and how often to report.
/// Everything else changes the arithmetic, so a resumed run would no longer
/// match an uninterrupted one.
const MAY_CHANGE_ON_RESUME: &[&str] = &[
    "resume",
    "device",
    "threads",
    "precision",
    "checkpoint_every_steps",
    "log_every_steps",
    "eval_batch_size",
    "output_dir",
    // Where the frozen part's output comes from, not what it is.
    "frozen_cache_mib",
];

/// Refuses to resume with a different model, data or training arithmetic.
pub fn check_resumable(
    state: &CheckpointState,
    fingerprint: &Fingerprint,
    config: &TrainConfig,
    dir: &Path,
) -> Result<()> {
    if state.fingerprint.model != fingerprint.model || state.fingerprint.labels != fingerprint.labels {
        bail!(
            "the checkpoint in {} is from another model or label set (it has {} labels, a {}-layer {} with hidden \
             size {}); start over without --resume, or use another --run-dir",
            dir.display(),
            state.fingerprint.labels.len(),
            state.fingerprint.model.num_hidden_layers,
            state.fingerprint.model.model_type,
            state.fingerprint.model.hidden_size
        );
    }
    let changed: Vec<&str> = state
        .fingerprint
        .inputs
        .iter()
        .zip(&fingerprint.inputs)
        .filter(|(then, now)| then.sha256 != now.sha256)
        .map(|(_, now)| now.path.as_str())
        .collect();
    if !changed.is_empty() || state.fingerprint.inputs.len() != fingerprint.inputs.len() {
        bail!(
            "the checkpoint in {} was trained on other inputs ({} changed since); start over without --resume",
            dir.display(),
            changed.join(", ")
        );
    }
    let comparable = |config: &TrainConfig| {
        let mut value = serde_json::to_value(config).expect("configs serialise. This is a bug.");
        if let Some(map) = value.as_object_mut() {
            map.retain(|key, _| !MAY_CHANGE_ON_RESUME.contains(&key.as_str()));
        }
        value
    };
    let (then, now) = (comparable(&state.config), comparable(config));
    if then != now {
        let keys: Vec<String> = then
            .as_object()
            .into_iter()
            .flatten()
            .filter(|(key, value)| now.get(key.as_str()) != Some(value))
            .map(|(key, value)| format!("train.{key} (checkpoint: {value}, now: {})", now[key.as_str()]))
            .collect();
        bail!("cannot resume from {}: settings differ from the interrupted run: {}", dir.display(), keys.join(", "));
    }
    Ok(())
}
