//! What every stage binary shares: the common flags, logging, settings
//! resolution (defaults < config file < flags) and one exit-code policy.
//!
//! Exit codes: 0 success, 1 a problem with the input or settings (the message
//! says what and where), 2 an unexpected failure (a bug: please report it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Args;
use kiln_config::{ConfigError, EvalConfig, PipelineConfig, TrainConfig};
use kiln_data::Progress;
use kiln_data::output::read_manifest;
use kiln_track::mlflow::Mlflow;
use kiln_track::{Run, RunStatus};

/// Every stage allocates millions of small strings across threads; mimalloc does
/// that markedly faster than glibc's malloc.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Pipeline config (TOML); flags override its keys. Without one, built-in defaults.
    #[arg(long, short, value_name = "FILE", env = "KILN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// No progress bars; only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// Print the resolved settings as TOML and exit without running.
    #[arg(long, global = true)]
    pub print_config: bool,
}

impl CommonArgs {
    pub fn load_config(&self) -> Result<PipelineConfig, ConfigError> {
        PipelineConfig::load(self.config.as_deref())
    }

    pub fn progress(&self) -> Progress {
        Progress::new(self.quiet)
    }
}

/// A stage's whole life after flag parsing: logging, settings (defaults < file <
/// flags, through `apply`), `--print-config`, the work itself, the exit code.
pub fn run_stage(
    name: &str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress) -> Result<()>,
) -> ExitCode {
    init_logging(common.quiet);
    let result = common.load_config().map_err(anyhow::Error::from).and_then(|mut config| {
        apply(&mut config);
        if common.print_config {
            print_config(&config);
            return Ok(());
        }
        work(&config, common.progress())
    });
    exit_with(name, result)
}

/// `run_stage` for the stages that leave a run record (`train`, `eval`): the
/// record is started before `work`, which fills it in and says how the run
/// ended; an error ends it as `failed`, with the message.
pub fn run_tracked_stage(
    name: &'static str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress, &mut Run) -> Result<RunStatus>,
) -> ExitCode {
    run_stage(name, common, apply, |config, progress| {
        let mut run = Run::start(&config.track.runs_dir, name, common.config.as_deref(), &redacted(config))
            .context("cannot start the run record (config key `track.runs_dir`)")?;
        let track = &config.track;
        let mut mlflow = track.mlflow_tracking_uri.as_deref().map(|uri| {
            let mlflow = Mlflow::start(uri, &track.mlflow_experiment, run.record());
            if let Some(id) = mlflow.run_id() {
                tracing::info!("MLflow run {id} in experiment '{}'", track.mlflow_experiment);
                run.tag("mlflow.run_id", id);
            }
            mlflow
        });
        let outcome = work(config, progress, &mut run);
        let (status, error) = match &outcome {
            Ok(status) => (*status, None),
            Err(error) => (RunStatus::Failed, Some(format!("{error:#}"))),
        };
        let dir = run.dir().to_owned();
        match run.finish(status, error) {
            Ok((record, points)) => {
                tracing::info!("run record: {}", dir.display());
                if let Some(mlflow) = &mut mlflow {
                    mlflow.finish(&record, &points);
                }
            }
            Err(error) => tracing::warn!("could not complete the run record {}: {error:#}", dir.display()),
        }
        outcome.map(|_| ())
    })
}

/// What a finished `train` run adds to its record: every logged step, the best
/// validation figures, speed, the data it read and where the model went.
pub fn record_train(run: &mut Run, config: &TrainConfig, summary: &kiln_train::TrainSummary) -> Result<()> {
    run.tag("device", summary.device.clone());
    let log = config.run_dir.join(kiln_train::METRICS);
    for point in kiln_track::points_from_train_log(&log, kiln_track::now_ms())? {
        run.log(point);
    }
    let step = summary.steps as u64;
    let best = &summary.best.metrics;
    for (key, value) in [
        ("best_val_accuracy", best.accuracy),
        ("best_val_macro_f1", best.macro_f1),
        ("best_val_loss", best.loss),
        ("train_seconds", summary.train_seconds),
        ("samples_per_second", summary.samples_per_second),
        ("tokens_per_second", summary.tokens_per_second),
        ("steps", summary.steps as f64),
    ] {
        run.metric(key, value, step);
    }
    let manifest = read_manifest::<serde::de::IgnoredAny>(&config.run_dir.join(kiln_train::SUMMARY));
    run.inputs(manifest.map(|m| m.inputs).unwrap_or_default());
    run.output(&config.output_dir);
    run.output(&config.run_dir);
    Ok(())
}

/// What an `eval` run adds to its record: the split's figures (`test_accuracy`,
/// ...), the model and data hashes, where the report went.
pub fn record_eval(run: &mut Run, config: &EvalConfig, metrics: &kiln_infer::eval::EvalMetrics) {
    run.tag("device", config.device.clone());
    let split = &metrics.split;
    for (name, value) in [
        ("accuracy", metrics.accuracy),
        ("macro_f1", metrics.macro_avg.f1),
        ("macro_precision", metrics.macro_avg.precision),
        ("macro_recall", metrics.macro_avg.recall),
        ("weighted_f1", metrics.weighted_avg.f1),
        ("loss", metrics.loss),
    ] {
        run.metric(&format!("{split}_{name}"), value, 0);
    }
    run.inputs(metrics.model.iter().cloned().chain([metrics.data.clone()]));
    run.output(&config.output_dir);
}

/// The settings with secrets left out, for terminals, logs and run records.
fn redacted(config: &PipelineConfig) -> PipelineConfig {
    let mut config = config.clone();
    for token in &mut config.serve.api_tokens {
        *token = "<redacted>".into();
    }
    if let Some(uri) = &mut config.track.mlflow_tracking_uri {
        *uri = kiln_track::mlflow::without_credentials(uri);
    }
    config
}

/// Logs to stderr; `RUST_LOG` refines the level (default: info, or warn with --quiet).
fn init_logging(quiet: bool) {
    let default = if quiet { "warn" } else { "info" };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(false)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .without_time()
        .try_init();
}

/// Turns a stage's outcome into an exit code, printing the error chain once.
/// kiln's errors describe bad input or settings (exit 1); a broken invariant,
/// whose message says "This is a bug", exits 2. A broken pipe is not an error.
fn exit_with(stage: &str, result: Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            if error.chain().any(|cause| {
                cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            }) {
                return ExitCode::SUCCESS;
            }
            eprintln!("{stage}: error: {error:#}");
            if is_unexpected(&error) {
                eprintln!("{stage}: this looks like a bug in kiln; please report it with the command you ran");
                ExitCode::from(2)
            } else {
                ExitCode::from(1)
            }
        }
    }
}

fn is_unexpected(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| cause.to_string().contains("This is a bug"))
}

/// Prints the settings a stage would run with (for `--print-config`).
fn print_config(config: &PipelineConfig) {
    let config = redacted(config);
    #[allow(clippy::print_stdout)] // --print-config's output is the program's output.
    {
        print!("{}", config.to_toml());
    }
}
