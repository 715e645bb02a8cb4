//! A worker's life: claim a trial from the journal, run it as a `train`
//! process, judge each validation it reports, record how it ended; again
//! until the study has its trials. Any number of workers can do this at once
//! on one study.

use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{ChildStdin, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use kiln_config::PipelineConfig;
use kiln_core::Progress;
use kiln_core::output::{now_ms, write_file_atomically};
use kiln_core::stages::{TOKENIZE_DONE, TRAIN_CHECKPOINT, TRAIN_CHECKPOINT_STATE, TRAIN_DONE, TRAIN_RUN_LOCK};

use crate::journal::{Entry, Journal, Study, StudyHeader, TrialState, WorkerLock, worker_alive};
use crate::link::{self, Report};
use crate::pruner::Pruner;
use crate::sampler::Sampler;
use crate::space::{self, MAX_LENGTH, Params, Space};

/// A worker stops after this many failed trials in a row: the data, the model
/// or the machine is wrong, not the trials' settings.
const MAX_FAILURES_IN_A_ROW: usize = 3;

/// A failed trial's message.
fn ended_failed(entry: &Entry) -> Option<String> {
    match entry {
        Entry::Finish { state: TrialState::Failed, message, .. } => Some(message.clone().unwrap_or_default()),
        _ => None,
    }
}

/// How often a worker with nothing to claim looks again while others still run trials.
const WAIT: Duration = Duration::from_secs(2);

/// Where a trial's files go, under the study folder.
pub fn trial_dir(study_dir: &Path, trial: usize) -> PathBuf {
    study_dir.join("trials").join(format!("{trial:04}"))
}

/// A trial claimed by this worker.
#[derive(Debug, Clone)]
struct Claimed {
    trial: usize,
    attempt: u32,
    params: Params,
}

enum Next {
    Run(Claimed),
    /// Nothing to claim now, but other workers are running trials (one may die).
    Wait,
    Done,
}

/// How a trial ended, as the journal records it.
struct Ended {
    state: TrialState,
    value: Option<f64>,
    seconds: f64,
    run_id: Option<String>,
    message: Option<String>,
}

/// What one `tune` process saw of the study.
pub struct Finished {
    pub study: Study,
    /// Trials this worker ran (attempts).
    pub ran: usize,
    /// Stopped by Ctrl-C or SIGTERM: the trial it was running is left to rerun.
    pub interrupted: bool,
}

pub struct Tuner<'a> {
    config: &'a PipelineConfig,
    dir: PathBuf,
    space: Space,
    sampler: Sampler,
    pruner: Pruner,
    journal: Journal,
    worker: WorkerLock,
    bin_dir: PathBuf,
    /// Tags every trial's run record gets besides the study and trial (the MLflow parent).
    tags: Vec<(String, String)>,
    stop: Arc<AtomicBool>,
    /// The running trial's stdin: closing it stops the trial (with a checkpoint).
    child_stdin: Arc<Mutex<Option<ChildStdin>>>,
}

impl<'a> Tuner<'a> {
    /// Joins the study `config.tune` names, creating it when new. An existing
    /// study must have the same metric and space.
    pub fn join(config: &'a PipelineConfig, bin_dir: &Path, tags: Vec<(String, String)>) -> Result<Self> {
        config.tune.validate()?;
        let space = Space::from_config(config)?;
        let tune = &config.tune;
        let dir = tune.study_dir();
        let processed = &config.train.input_dir;
        if !processed.join(TOKENIZE_DONE).is_file() {
            bail!(
                "the trials train on {} ([train] input_dir), which has no tokenized data yet: run ingest, clean \
                 and tokenize with this config first (`make pipeline` runs them)",
                processed.display()
            );
        }
        if !bin_dir.join("train").is_file() {
            bail!("tune runs each trial with the `train` binary, and there is none beside it in {}", bin_dir.display());
        }
        let journal = Journal::in_dir(&dir);
        let worker = WorkerLock::acquire(&dir)?;
        let header = StudyHeader {
            study: tune.study.clone(),
            metric: tune.metric,
            space: Space::specs(config),
            sampler: tune.sampler,
            pruner: tune.pruner,
            seed: tune.seed,
            created_ms: now_ms(),
        };
        journal.transact(|study| match &study.header {
            None => Ok((vec![Entry::Study(header.clone())], ())),
            Some(existing) if existing.metric != header.metric || existing.space != header.space => bail!(
                "study '{}' in {} was made with another metric or search space; give this search its own \
                 name (tune.study) or remove that folder",
                tune.study,
                dir.display()
            ),
            Some(_) => Ok((Vec::new(), ())),
        })?;
        Ok(Self {
            config,
            dir,
            space,
            sampler: Sampler::from_config(tune),
            pruner: Pruner::from_config(tune),
            journal,
            worker,
            bin_dir: bin_dir.to_owned(),
            tags,
            stop: Arc::new(AtomicBool::new(false)),
            child_stdin: Arc::new(Mutex::new(None)),
        })
    }

    pub fn study_dir(&self) -> &Path {
        &self.dir
    }

    pub fn space(&self) -> &Space {
        &self.space
    }

    pub fn journal(&self) -> &Journal {
        &self.journal
    }

    /// Stops the worker: no new trial, and the running one checkpoints and
    /// ends (to be rerun). For a Ctrl-C/SIGTERM handler.
    pub fn stopper(&self) -> impl Fn() + Send + 'static {
        let (stop, stdin) = (self.stop.clone(), self.child_stdin.clone());
        move || {
            stop.store(true, Ordering::SeqCst);
            if let Ok(mut stdin) = stdin.lock() {
                stdin.take();
            }
        }
    }

    /// Runs trials until the study has all its trials (or the time is up),
    /// then waits for the other workers' trials: one of theirs may need a rerun.
    pub fn run(&self, progress: &Progress) -> Result<Finished> {
        let tune = &self.config.tune;
        let deadline = tune.timeout()?.map(|t| Instant::now() + t);
        let capacity = self.sampler.capacity(&self.space).map_or(tune.trials, |c| c.min(tune.trials));
        let bar = progress.steps(capacity as u64, "trials");
        let mut ran = 0;
        let mut failed_in_a_row = 0;
        loop {
            let out_of_time = deadline.is_some_and(|d| Instant::now() >= d);
            // The state the decision was made on also feeds the bar: no second read.
            let (next, ended, best) = self.journal.transact(|study| {
                let (entries, next) = self.next(study, out_of_time);
                Ok((entries, (next, ended_count(study), self.best_message(study))))
            })?;
            bar.set_position(ended);
            bar.set_message(best);
            match next {
                Next::Run(claimed) => {
                    bar.suspend(|| {
                        tracing::info!(
                            "trial {}{}: {}",
                            claimed.trial,
                            if claimed.attempt > 1 { format!(" (attempt {})", claimed.attempt) } else { String::new() },
                            space::describe(&claimed.params)
                        );
                    });
                    let ended = match self.run_trial(&claimed) {
                        Ok(ended) => ended,
                        Err(error) => Ended {
                            state: if self.stop.load(Ordering::SeqCst) {
                                TrialState::Interrupted
                            } else {
                                TrialState::Failed
                            },
                            value: None,
                            seconds: 0.0,
                            run_id: None,
                            message: Some(format!("{error:#}")),
                        },
                    };
                    ran += 1;
                    bar.suspend(|| {
                        let value = ended.value.map_or_else(|| "-".into(), |v| format!("{v:.4}"));
                        let why = ended.message.as_deref().map_or_else(String::new, |m| format!(": {m}"));
                        tracing::info!("trial {} {} ({} {value}){why}", claimed.trial, ended.state, tune.metric);
                    });
                    let entry = Entry::Finish {
                        trial: claimed.trial,
                        attempt: claimed.attempt,
                        state: ended.state,
                        value: ended.value,
                        seconds: ended.seconds,
                        run_id: ended.run_id,
                        message: ended.message,
                        time_ms: now_ms(),
                    };
                    let failed = ended_failed(&entry);
                    self.journal.transact(|_| Ok((vec![entry], ())))?;
                    failed_in_a_row = if failed.is_some() { failed_in_a_row + 1 } else { 0 };
                    if failed_in_a_row >= MAX_FAILURES_IN_A_ROW {
                        bail!(
                            "{MAX_FAILURES_IN_A_ROW} trials failed in a row, so this is not the settings' fault; the \
                             last: {}",
                            failed.unwrap_or_default()
                        );
                    }
                }
                Next::Wait => std::thread::sleep(WAIT),
                Next::Done => break,
            }
            if self.stop.load(Ordering::SeqCst) {
                break;
            }
        }
        let study = self.journal.read()?;
        bar.set_position(ended_count(&study));
        bar.finish_with_message(self.best_message(&study));
        Ok(Finished { study, ran, interrupted: self.stop.load(Ordering::SeqCst) })
    }

    fn best_message(&self, study: &Study) -> String {
        let metric = self.config.tune.metric;
        study.best(metric.higher_is_better()).map_or_else(String::new, |t| {
            format!("best {metric} {:.4} (trial {})", t.value.unwrap_or(f64::NAN), t.number)
        })
    }

    /// What to do next, decided under the journal's lock: orphaned trials are
    /// marked interrupted and run again first; then new trials while the study
    /// wants more.
    fn next(&self, study: &Study, out_of_time: bool) -> (Vec<Entry>, Next) {
        let mut entries = Vec::new();
        let mut orphans = Vec::new();
        let mut others_running = false;
        for trial in study.trials.iter().filter(|t| t.state == TrialState::Running) {
            if trial.worker != self.worker.id() && !worker_alive(&self.dir, &trial.worker) {
                entries.push(Entry::Finish {
                    trial: trial.number,
                    attempt: trial.attempt,
                    state: TrialState::Interrupted,
                    value: None,
                    seconds: 0.0,
                    run_id: None,
                    message: Some(format!("worker {} died", trial.worker)),
                    time_ms: now_ms(),
                });
                orphans.push(trial.number);
            } else {
                others_running = true;
            }
        }
        if self.stop.load(Ordering::SeqCst) {
            return (entries, Next::Done);
        }
        let rerun = study.trials.iter().find(|t| t.state == TrialState::Interrupted || orphans.contains(&t.number));
        let claimed = if let Some(trial) = rerun {
            Some(Claimed { trial: trial.number, attempt: trial.attempt + 1, params: trial.params.clone() })
        } else if !out_of_time && study.trials.len() < self.config.tune.trials {
            let number = study.trials.len();
            self.sampler.sample(&self.space, &study.observed(), number).map(|params| Claimed {
                trial: number,
                attempt: 1,
                params,
            })
        } else {
            None
        };
        match claimed {
            Some(claimed) => {
                entries.push(Entry::Claim {
                    trial: claimed.trial,
                    attempt: claimed.attempt,
                    worker: self.worker.id().to_owned(),
                    params: claimed.params.clone(),
                    time_ms: now_ms(),
                });
                (entries, Next::Run(claimed))
            }
            None if others_running => (entries, Next::Wait),
            None => (entries, Next::Done),
        }
    }

    /// The trial's full config: the study's config with the trial's settings,
    /// its own model and run folders, the study's metric, and its tags.
    fn trial_config(&self, claimed: &Claimed, resume: bool) -> Result<PipelineConfig> {
        let dir = trial_dir(&self.dir, claimed.trial);
        let mut config = space::apply(self.config, &claimed.params)
            .with_context(|| format!("trial {}'s settings", claimed.trial))?;
        config.train.output_dir = dir.join("model");
        config.train.run_dir = dir.join("run");
        config.train.metric = self.config.tune.metric;
        config.train.resume = resume;
        config.train.data_fraction = self.config.tune.data_fraction;
        if let Some(precision) = self.config.tune.precision {
            config.train.precision = precision;
        }
        if claimed.params.contains_key(MAX_LENGTH) && config.tokenize.max_length != self.config.tokenize.max_length {
            let data = self.dir.join("data").join(format!("max_length-{}", config.tokenize.max_length));
            config.tokenize.output_dir = data.clone();
            config.train.input_dir = data;
        }
        let tags = &mut config.track.tags;
        tags.insert("study".into(), self.config.tune.study.clone());
        tags.insert("trial".into(), claimed.trial.to_string());
        tags.insert("attempt".into(), claimed.attempt.to_string());
        tags.extend(self.tags.iter().cloned());
        Ok(config)
    }

    fn run_trial(&self, claimed: &Claimed) -> Result<Ended> {
        let dir = trial_dir(&self.dir, claimed.trial);
        std::fs::create_dir_all(&dir).with_context(|| format!("cannot create {}", dir.display()))?;
        // A rerun goes on from the checkpoint the cut-short attempt left, once
        // that attempt's train (orphaned when its worker died) has let go.
        let resume = claimed.attempt > 1 && {
            let run_dir = dir.join("run");
            wait_for_run_dir(&run_dir)?;
            run_dir.join(TRAIN_CHECKPOINT).join(TRAIN_CHECKPOINT_STATE).is_file()
        };
        let config = self.trial_config(claimed, resume)?;
        let config_file = dir.join("config.toml");
        let header = format!(
            "# Trial {} of study '{}': {}\n# Rerun it by hand with `train --config {}`.\n",
            claimed.trial,
            self.config.tune.study,
            space::describe(&claimed.params),
            config_file.display()
        );
        write_file_atomically(&config_file, format!("{header}{}", config.to_toml()).as_bytes())?;
        if config.tokenize.output_dir != self.config.tokenize.output_dir {
            self.tokenize(&config, &config_file)?;
        }
        let log_path = dir.join("train.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot open {}", log_path.display()))?;
        let started = Instant::now();
        let mut child = Command::new(self.bin_dir.join("train"))
            .arg("--config")
            .arg(&config_file)
            .env(link::ENV, "1")
            .env_remove("KILN_CONFIG")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("cannot start {}", self.bin_dir.join("train").display()))?;
        *self.stdin()? = child.stdin.take();
        if self.stop.load(Ordering::SeqCst) {
            self.stopper()();
        }
        let stdout = child.stdout.take().context("the trial's stdout")?;
        let mut last_report = None;
        let mut pruned = false;
        let mut failure = None;
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            let Some(report) = Report::parse(&line) else { continue };
            let value = self.config.tune.metric.pick(report.accuracy, report.macro_f1, report.loss);
            last_report = Some(value);
            let verdict = self.judge(claimed, &report, value);
            let answer = match verdict {
                Ok(true) => {
                    pruned = true;
                    link::PRUNE
                }
                Ok(false) => link::CONTINUE,
                Err(error) => {
                    failure = Some(error);
                    self.stdin()?.take();
                    continue;
                }
            };
            if let Some(stdin) = self.stdin()?.as_mut() {
                let _ = writeln!(stdin, "{answer}").and_then(|()| stdin.flush());
            }
        }
        let status = child.wait().context("waiting for the trial's train process")?;
        self.stdin()?.take();
        let seconds = started.elapsed().as_secs_f64();
        if let Some(error) = failure {
            return Err(error);
        }
        let run_id = self.run_id(&config, claimed);
        let mut ended = Ended { state: TrialState::Failed, value: None, seconds, run_id, message: None };
        // A verdict on the last validation comes too late to stop anything:
        // a run that wrote its summary finished, whatever it was told.
        let finished = config.train.run_dir.join(TRAIN_DONE).is_file();
        match status.code() {
            Some(0) if pruned && !finished => {
                ended.state = TrialState::Pruned;
                ended.value = last_report;
            }
            Some(0) => match best_value(&config.train.run_dir) {
                Ok(value) => {
                    ended.state = TrialState::Complete;
                    ended.value = Some(value);
                }
                Err(error) => ended.message = Some(format!("{error:#}")),
            },
            Some(code) if code == i32::from(kiln_stage::exit::INTERRUPTED) => {
                ended.state = TrialState::Interrupted;
                ended.message = Some("stopped; it resumes from its checkpoint".into());
            }
            _ => ended.message = Some(last_error(&log_path, status)),
        }
        if ended.state != TrialState::Interrupted && !self.config.tune.keep_models {
            for folder in [config.train.output_dir.clone(), config.train.run_dir.join(TRAIN_CHECKPOINT)] {
                if folder.exists() {
                    std::fs::remove_dir_all(&folder).with_context(|| format!("cannot remove {}", folder.display()))?;
                }
            }
        }
        Ok(ended)
    }

    /// The running trial's stdin (`None` once closed).
    fn stdin(&self) -> Result<std::sync::MutexGuard<'_, Option<ChildStdin>>> {
        self.child_stdin.lock().map_err(|_| anyhow::anyhow!("the trial's stdin lock is poisoned. This is a bug."))
    }

    /// Records a validation and decides, on the study as it stands with it,
    /// whether the trial should stop.
    fn judge(&self, claimed: &Claimed, report: &Report, value: f64) -> Result<bool> {
        let entry = Entry::Report {
            trial: claimed.trial,
            attempt: claimed.attempt,
            step: report.step,
            epoch: report.epoch,
            value,
            time_ms: now_ms(),
        };
        self.journal.transact(|study| {
            let mut study = study.clone();
            study.apply(&entry)?;
            let points = study.points();
            let prune = self.pruner.should_prune(claimed.trial, &study.curves(&points));
            Ok((vec![entry.clone()], prune))
        })
    }

    /// Tokenizes the data again for a trial's `max_length`, once per value for
    /// the whole study (workers wait on each other through a lock file).
    fn tokenize(&self, config: &PipelineConfig, config_file: &Path) -> Result<()> {
        let data = &config.tokenize.output_dir;
        let lock_path = data.with_extension("lock");
        if let Some(parent) = lock_path.parent() {
            std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
        }
        let lock =
            std::fs::File::create(&lock_path).with_context(|| format!("cannot create {}", lock_path.display()))?;
        lock.lock().with_context(|| format!("cannot lock {}", lock_path.display()))?;
        if data.join(TOKENIZE_DONE).is_file() {
            return Ok(());
        }
        tracing::info!("tokenizing for max_length {} into {}", config.tokenize.max_length, data.display());
        let output = Command::new(self.bin_dir.join("tokenize"))
            .arg("--config")
            .arg(config_file)
            .arg("--quiet")
            .env_remove("KILN_CONFIG")
            .output()
            .with_context(|| format!("cannot start {}", self.bin_dir.join("tokenize").display()))?;
        if !output.status.success() {
            bail!(
                "tokenize for max_length {} failed: {}",
                config.tokenize.max_length,
                String::from_utf8_lossy(&output.stderr).trim()
            );
        }
        Ok(())
    }

    /// The trial's run record, found by its tags.
    fn run_id(&self, config: &PipelineConfig, claimed: &Claimed) -> Option<String> {
        let records = kiln_track::list(&config.track.runs_dir).ok()?;
        let tagged = |r: &&kiln_track::RunRecord| {
            let tag = |k: &str| r.tags.get(k).map(String::as_str);
            r.stage == "train"
                && tag("study") == Some(self.config.tune.study.as_str())
                && tag("trial") == Some(claimed.trial.to_string().as_str())
                && tag("attempt") == Some(claimed.attempt.to_string().as_str())
        };
        records.iter().rev().find(tagged).map(|r| r.id.clone())
    }
}

/// Trials that will not run again: complete, pruned or failed.
fn ended_count(study: &Study) -> u64 {
    let ended =
        |t: &&crate::journal::Trial| matches!(t.state, TrialState::Complete | TrialState::Pruned | TrialState::Failed);
    study.trials.iter().filter(ended).count() as u64
}

/// Waits until no process holds the trial's run folder: the orphaned `train`
/// of a dead worker checkpoints and exits when its stdin closes.
fn wait_for_run_dir(run_dir: &Path) -> Result<()> {
    let path = run_dir.join(TRAIN_RUN_LOCK);
    let Ok(file) = std::fs::OpenOptions::new().write(true).open(&path) else { return Ok(()) };
    if file.try_lock().is_err() {
        tracing::info!("waiting for the interrupted train process in {} to let go", run_dir.display());
        file.lock().with_context(|| format!("cannot lock {}", path.display()))?;
    }
    Ok(())
}

/// The best validation value of a finished run, from its summary.
fn best_value(run_dir: &Path) -> Result<f64> {
    let path = run_dir.join(TRAIN_DONE);
    let summary: serde_json::Value = kiln_core::output::read_json(&path, "a train summary")?;
    summary["report"]["best"]["value"].as_f64().with_context(|| format!("{} has no best value", path.display()))
}

/// The failed trial's error, from the end of its log.
fn last_error(log: &Path, status: std::process::ExitStatus) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let error = text.lines().rev().find(|l| l.contains("error")).map(str::trim).unwrap_or("no error message");
    format!("train exited with {status}: {error} (log: {})", log.display())
}
