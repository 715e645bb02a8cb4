//! The study's state: an append-only journal of JSON lines, written under an
//! exclusive file lock (the way Optuna's `JournalFileStorage` works), and the
//! state it replays to. Nothing is ever rewritten, so a `kill -9` at any
//! moment leaves at worst a torn last line, which the next writer cuts off.
//!
//! Workers hold a lock file each for as long as they live; a trial marked
//! `running` by a worker whose lock is free was orphaned (its worker died)
//! and is run again, from its checkpoint when it left one.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_config::{Metric, ParamSpec, PrunerKind, SamplerKind};
use serde::{Deserialize, Serialize};

use crate::pruner::Curve;
use crate::sampler::{Observed, Outcome};
use crate::space::Params;

pub const JOURNAL: &str = "journal.jsonl";
const WORKERS: &str = "workers";

/// What the study was created with; a later `tune` on the same study must agree.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StudyHeader {
    pub study: String,
    pub metric: Metric,
    pub space: BTreeMap<String, ParamSpec>,
    pub sampler: SamplerKind,
    pub pruner: PrunerKind,
    pub seed: u64,
    pub created_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TrialState {
    Running,
    Complete,
    Pruned,
    /// `train` failed (it diverged, or the data was bad): not run again.
    Failed,
    /// Its worker died or was stopped: the next worker runs it again.
    Interrupted,
}

impl std::fmt::Display for TrialState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Running => "running",
            Self::Complete => "complete",
            Self::Pruned => "pruned",
            Self::Failed => "failed",
            Self::Interrupted => "interrupted",
        })
    }
}

/// One line of the journal.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Entry {
    Study(StudyHeader),
    /// A worker takes trial `trial` (new, or an interrupted one again: `attempt` > 1).
    Claim {
        trial: usize,
        attempt: u32,
        worker: String,
        params: Params,
        time_ms: u64,
    },
    /// A validation of a running trial.
    Report {
        trial: usize,
        attempt: u32,
        step: usize,
        epoch: f64,
        value: f64,
        time_ms: u64,
    },
    Finish {
        trial: usize,
        attempt: u32,
        state: TrialState,
        value: Option<f64>,
        seconds: f64,
        run_id: Option<String>,
        message: Option<String>,
        time_ms: u64,
    },
}

/// A validation value of a trial.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Reported {
    pub step: usize,
    pub epoch: f64,
    pub value: f64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Trial {
    pub number: usize,
    pub attempt: u32,
    pub params: Params,
    pub state: TrialState,
    pub worker: String,
    /// The best validation value of a complete trial; the last one of a pruned trial.
    pub value: Option<f64>,
    pub reports: Vec<Reported>,
    /// Training time over all attempts.
    pub seconds: f64,
    pub run_id: Option<String>,
    pub message: Option<String>,
}

/// The journal replayed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Study {
    pub header: Option<StudyHeader>,
    /// Indexed by trial number.
    pub trials: Vec<Trial>,
}

impl Study {
    /// Applies one entry; an entry that does not follow from the state (a
    /// trial claimed twice, a report for a trial that is not running) is an error.
    pub fn apply(&mut self, entry: &Entry) -> Result<()> {
        match entry {
            Entry::Study(header) => {
                if self.header.is_some() {
                    bail!("a second study header");
                }
                self.header = Some(header.clone());
            }
            Entry::Claim { trial, attempt, worker, params, .. } => {
                if *trial == self.trials.len() && *attempt == 1 {
                    self.trials.push(Trial {
                        number: *trial,
                        attempt: 1,
                        params: params.clone(),
                        state: TrialState::Running,
                        worker: worker.clone(),
                        value: None,
                        reports: Vec::new(),
                        seconds: 0.0,
                        run_id: None,
                        message: None,
                    });
                } else {
                    let Some(t) = self.trials.get_mut(*trial) else { bail!("trial {trial} claimed out of turn") };
                    if t.state != TrialState::Interrupted || *attempt != t.attempt + 1 {
                        bail!("trial {trial} claimed again while {} (attempt {attempt})", t.state);
                    }
                    t.attempt = *attempt;
                    t.state = TrialState::Running;
                    t.worker = worker.clone();
                }
            }
            Entry::Report { trial, attempt, step, epoch, value, .. } => {
                let t = self.running(*trial, *attempt)?;
                // A resumed attempt validates again from its checkpoint: the newer value wins.
                t.reports.retain(|r| r.step < *step);
                t.reports.push(Reported { step: *step, epoch: *epoch, value: *value });
            }
            Entry::Finish { trial, attempt, state, value, seconds, run_id, message, .. } => {
                let t = self.running(*trial, *attempt)?;
                t.state = *state;
                t.value = *value;
                t.seconds += seconds;
                t.run_id = run_id.clone().or(t.run_id.take());
                t.message = message.clone();
            }
        }
        Ok(())
    }

    fn running(&mut self, trial: usize, attempt: u32) -> Result<&mut Trial> {
        match self.trials.get_mut(trial) {
            Some(t) if t.state == TrialState::Running && t.attempt == attempt => Ok(t),
            Some(t) => {
                bail!("trial {trial} attempt {attempt} is not running (it is {}, attempt {})", t.state, t.attempt)
            }
            None => bail!("trial {trial} was never claimed"),
        }
    }

    pub fn count(&self, state: TrialState) -> usize {
        self.trials.iter().filter(|t| t.state == state).count()
    }

    /// The trials as the sampler learns from them.
    pub fn observed(&self) -> Vec<Observed<'_>> {
        self.trials
            .iter()
            .map(|t| Observed {
                number: t.number,
                params: &t.params,
                outcome: match (t.state, t.value, t.reports.last()) {
                    (TrialState::Complete, Some(value), _) => Outcome::Complete(value),
                    (TrialState::Pruned, _, Some(last)) => Outcome::Pruned { epoch: last.epoch, value: last.value },
                    (TrialState::Running | TrialState::Interrupted, ..) => Outcome::Running,
                    _ => Outcome::Failed,
                },
            })
            .collect()
    }

    /// Each trial's validation values as (epoch, value), for the pruner.
    pub fn points(&self) -> Vec<Vec<(f64, f64)>> {
        self.trials.iter().map(|t| t.reports.iter().map(|r| (r.epoch, r.value)).collect()).collect()
    }

    pub fn curves<'a>(&self, points: &'a [Vec<(f64, f64)>]) -> Vec<Curve<'a>> {
        self.trials
            .iter()
            .zip(points)
            .map(|(t, points)| Curve { number: t.number, complete: t.state == TrialState::Complete, points })
            .collect()
    }

    /// The complete trial with the best value.
    pub fn best(&self, maximize: bool) -> Option<&Trial> {
        let key = |t: &&Trial| t.value.unwrap_or(f64::NAN);
        let complete = self.trials.iter().filter(|t| t.state == TrialState::Complete && key(t).is_finite());
        if maximize {
            complete.max_by(|a, b| key(a).total_cmp(&key(b)).then(b.number.cmp(&a.number)))
        } else {
            complete.min_by(|a, b| key(a).total_cmp(&key(b)).then(a.number.cmp(&b.number)))
        }
    }
}

/// The journal file of one study.
#[derive(Debug, Clone)]
pub struct Journal {
    path: PathBuf,
}

impl Journal {
    pub fn in_dir(study_dir: &Path) -> Self {
        Self { path: study_dir.join(JOURNAL) }
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    pub fn exists(&self) -> bool {
        self.path.is_file()
    }

    fn open(&self) -> Result<File> {
        if let Some(dir) = self.path.parent() {
            std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&self.path)
            .with_context(|| format!("cannot open the study journal {}", self.path.display()))
    }

    /// The state now (under a shared lock: never half an entry).
    pub fn read(&self) -> Result<Study> {
        let file = self.open()?;
        file.lock_shared().with_context(|| format!("cannot lock {}", self.path.display()))?;
        Ok(self.replay(&file)?.0)
    }

    /// Runs `decide` on the state under the exclusive lock and appends the
    /// entries it returns before letting go: read, decide and write are one
    /// step for every worker on every machine that shares the file.
    pub fn transact<T>(&self, decide: impl FnOnce(&Study) -> Result<(Vec<Entry>, T)>) -> Result<T> {
        let mut file = self.open()?;
        file.lock().with_context(|| format!("cannot lock {}", self.path.display()))?;
        let (mut study, whole) = self.replay(&file)?;
        let (entries, answer) = decide(&study)?;
        if entries.is_empty() {
            return Ok(answer);
        }
        // A writer killed mid-line left a torn tail: cut it off before appending.
        if file.metadata()?.len() != whole {
            tracing::warn!("{}: cutting off a torn last line (a killed writer)", self.path.display());
            file.set_len(whole)?;
        }
        let mut lines = Vec::new();
        for entry in &entries {
            study.apply(entry).context("a journal entry that does not follow. This is a bug.")?;
            serde_json::to_writer(&mut lines, entry).context("a journal entry")?;
            lines.push(b'\n');
        }
        file.write_all(&lines)
            .and_then(|()| file.sync_data())
            .with_context(|| format!("cannot write {}", self.path.display()))?;
        Ok(answer)
    }

    /// The state and the length of the whole lines it came from.
    fn replay(&self, mut file: &File) -> Result<(Study, u64)> {
        let mut text = String::new();
        file.seek(SeekFrom::Start(0))?;
        file.read_to_string(&mut text).with_context(|| format!("cannot read {}", self.path.display()))?;
        let mut study = Study::default();
        let mut whole = 0;
        for (n, line) in text.split_inclusive('\n').enumerate() {
            if !line.ends_with('\n') {
                break; // torn by a killed writer; never acted on
            }
            let entry: Entry = serde_json::from_str(line)
                .with_context(|| format!("{}: line {}: not a journal entry", self.path.display(), n + 1))?;
            study.apply(&entry).with_context(|| format!("{}: line {}", self.path.display(), n + 1))?;
            whole += line.len() as u64;
        }
        Ok((study, whole))
    }
}

/// This worker's lock: held while the process lives, released by the kernel
/// however it ends (`kill -9` included), also on a shared filesystem.
#[derive(Debug)]
pub struct WorkerLock {
    id: String,
    _file: File,
}

impl WorkerLock {
    pub fn acquire(study_dir: &Path) -> Result<Self> {
        let id = format!("{}-{}-{:x}", kiln_track::host(), std::process::id(), kiln_core::output::now_ms());
        let dir = study_dir.join(WORKERS);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let path = dir.join(format!("{id}.lock"));
        let file = File::create(&path).with_context(|| format!("cannot create {}", path.display()))?;
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
        Ok(Self { id, _file: file })
    }

    pub fn id(&self) -> &str {
        &self.id
    }
}

/// Whether worker `id` of this study is still alive (holds its lock).
pub fn worker_alive(study_dir: &Path, id: &str) -> bool {
    let path = study_dir.join(WORKERS).join(format!("{id}.lock"));
    let Ok(file) = File::open(&path) else { return false };
    match file.try_lock() {
        Ok(()) => {
            let _ = std::fs::remove_file(&path);
            false
        }
        Err(std::fs::TryLockError::WouldBlock) => true,
        // A filesystem without locks: assume alive rather than run a trial twice.
        Err(std::fs::TryLockError::Error(_)) => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn claim(trial: usize, attempt: u32) -> Entry {
        Entry::Claim { trial, attempt, worker: "w".into(), params: Params::new(), time_ms: 0 }
    }

    fn finish(trial: usize, attempt: u32, state: TrialState, value: Option<f64>) -> Entry {
        Entry::Finish { trial, attempt, state, value, seconds: 1.0, run_id: None, message: None, time_ms: 0 }
    }

    #[test]
    fn the_state_follows_the_entries_and_refuses_what_cannot_follow() {
        let mut study = Study::default();
        for entry in [
            claim(0, 1),
            Entry::Report { trial: 0, attempt: 1, step: 10, epoch: 1.0, value: 0.5, time_ms: 0 },
            finish(0, 1, TrialState::Interrupted, None),
            claim(0, 2),
            Entry::Report { trial: 0, attempt: 2, step: 10, epoch: 1.0, value: 0.6, time_ms: 0 },
            finish(0, 2, TrialState::Complete, Some(0.7)),
            claim(1, 1),
        ] {
            study.apply(&entry).expect("follows");
        }
        let first = &study.trials[0];
        assert_eq!((first.state, first.attempt, first.value, first.seconds), (TrialState::Complete, 2, Some(0.7), 2.0));
        assert_eq!(first.reports.len(), 1, "the rerun's report replaces the first attempt's at the same step");
        assert!(study.apply(&claim(1, 1)).is_err(), "claimed twice");
        assert!(study.apply(&claim(3, 1)).is_err(), "out of turn");
        assert!(study.apply(&claim(0, 3)).is_err(), "a complete trial is not rerun");
        assert!(study.apply(&finish(0, 2, TrialState::Complete, None)).is_err(), "finished twice");
        assert_eq!(study.best(true).map(|t| t.number), Some(0));
    }

    #[test]
    fn a_torn_last_line_is_ignored_then_cut_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::in_dir(dir.path());
        journal.transact(|_| Ok((vec![claim(0, 1)], ()))).expect("write");
        let mut file = OpenOptions::new().append(true).open(journal.path()).expect("open");
        file.write_all(b"{\"op\":\"claim\",\"tri").expect("torn write");
        assert_eq!(journal.read().expect("reads").trials.len(), 1);
        journal.transact(|_| Ok((vec![claim(1, 1)], ()))).expect("write after the tear");
        let text = std::fs::read_to_string(journal.path()).expect("text");
        assert_eq!(text.lines().count(), 2, "{text}");
        assert_eq!(journal.read().expect("reads").trials.len(), 2);
        std::fs::write(journal.path(), "not json\n").expect("corrupt");
        let error = format!("{:#}", journal.read().expect_err("a bad whole line"));
        assert!(error.contains("line 1") && error.contains(JOURNAL), "{error}");
    }

    /// Eight threads (each transaction opens the file anew, as a separate
    /// process would) claim the next trial 25 times each: 200 trials, numbered
    /// 0..200, none claimed twice.
    #[test]
    fn concurrent_claims_never_take_a_trial_twice() {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::in_dir(dir.path());
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| {
                    for _ in 0..25 {
                        journal.transact(|study| Ok((vec![claim(study.trials.len(), 1)], ()))).expect("claim");
                    }
                });
            }
        });
        let study = journal.read().expect("reads");
        assert_eq!(study.trials.len(), 200);
        assert!(study.trials.iter().enumerate().all(|(i, t)| t.number == i));
    }

    #[test]
    fn a_dead_workers_lock_is_free() {
        let dir = tempfile::tempdir().expect("tempdir");
        let worker = WorkerLock::acquire(dir.path()).expect("lock");
        assert!(worker_alive(dir.path(), worker.id()), "held by this process");
        let id = worker.id().to_owned();
        drop(worker);
        assert!(!worker_alive(dir.path(), &id));
        assert!(!worker_alive(dir.path(), "never-was"));
    }
}
