//! The process every kiln binary runs as: the allocator, logging, the panic
//! hook, the common flags, settings resolution (defaults < config file <
//! flags), `--print-config` and the one exit-code table.
//!
//! Exit codes ([`exit`]): 0 done; 1 a problem with the input or settings (the
//! message says what and where); 2 a bug in kiln: a [`Bug`] error or any panic,
//! LibTorch errors that surface as panics included; 3 done, and what the stage
//! found needs a person (`monitor --fail-on`); 130 stopped by Ctrl-C or SIGTERM
//! with its work saved (`train`, `tune`).

use std::panic::AssertUnwindSafe;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::Result;
use clap::Args;
use kiln_config::{ConfigError, LogFormat, PipelineConfig};
use kiln_core::{Bug, Progress};

pub mod logging;

/// Every stage allocates millions of small strings across threads; mimalloc does
/// that markedly faster than glibc's malloc. Every kiln binary runs through
/// this crate, so this is the one place it is set.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// The exit codes of every kiln binary, in one table.
pub mod exit {
    /// Done.
    pub const DONE: u8 = 0;
    /// A problem with the input or settings; the message says what and where.
    pub const INPUT: u8 = 1;
    /// A bug in kiln (a panic, a broken invariant).
    pub const BUG: u8 = 2;
    /// Done, and what the stage found needs a person (`monitor --fail-on`).
    pub const NEEDS_ATTENTION: u8 = 3;
    /// Stopped by Ctrl-C or SIGTERM with its work saved; the conventional code of SIGINT.
    pub const INTERRUPTED: u8 = 130;
}

/// How a stage's work ended when it did not fail: each outcome has its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Done,
    /// Done, and the result needs a person: the report is written.
    NeedsAttention,
    /// Stopped early on a signal, with a checkpoint to resume from.
    Interrupted,
}

impl Outcome {
    pub const fn exit_code(self) -> u8 {
        match self {
            Self::Done => exit::DONE,
            Self::NeedsAttention => exit::NEEDS_ATTENTION,
            Self::Interrupted => exit::INTERRUPTED,
        }
    }
}

/// Work that has nothing to report beyond success is [`Outcome::Done`].
impl From<()> for Outcome {
    fn from((): ()) -> Self {
        Self::Done
    }
}

#[derive(Debug, Clone, Args)]
pub struct CommonArgs {
    /// Pipeline config (TOML); flags override its keys. Without one, built-in defaults.
    #[arg(long, short, value_name = "FILE", env = "KILN_CONFIG", global = true)]
    pub config: Option<PathBuf>,
    /// No progress bars; only warnings and errors.
    #[arg(long, short, global = true)]
    pub quiet: bool,
    /// A label per text or a tag per word (config key `task`) [default: sequence_classification].
    #[arg(long, value_enum, env = "KILN_TASK", global = true)]
    pub task: Option<kiln_core::Task>,
    /// Log lines for a person (text) or one JSON object per line (json) (config key `log_format`) [default: text].
    #[arg(long, value_enum, env = "KILN_LOG_FORMAT", global = true)]
    pub log_format: Option<LogFormat>,
    /// Print the resolved settings as TOML and exit without running.
    #[arg(long, global = true)]
    pub print_config: bool,
    /// Print, as TOML, the file each stage of the resolved settings writes last
    /// (its manifest: there means done), and exit without running. For `make`.
    #[arg(long, global = true)]
    pub print_done_files: bool,
}

impl CommonArgs {
    pub fn load_config(&self) -> Result<PipelineConfig, ConfigError> {
        PipelineConfig::load(self.config.as_deref())
    }

    /// Progress bars, unless quiet or the log is JSON (a bar is no JSON line).
    pub fn progress(&self, format: LogFormat) -> Progress {
        Progress::new(self.quiet || format == LogFormat::Json)
    }
}

/// A stage's whole life after flag parsing: logging, settings (defaults < file <
/// flags, through `apply`), `--print-config`, the work itself, the exit code.
/// A panic in `work` (a LibTorch error surfaces as one) exits 2 with the bug
/// message, never 101.
pub fn run_stage<O: Into<Outcome>>(
    name: &str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress) -> Result<O>,
) -> ExitCode {
    run_stage_uncaught(name, common, apply, |config, progress| {
        catch_panics(|| {
            panic_if_asked(name);
            work(config, progress).map(Into::into)
        })
    })
}

/// [`run_stage`] without its panic catching, for a harness that catches panics
/// in `work` itself (with [`catch_panics`]) to finish what it started around it.
pub fn run_stage_uncaught(
    name: &str,
    common: &CommonArgs,
    apply: impl FnOnce(&mut PipelineConfig),
    work: impl FnOnce(&PipelineConfig, Progress) -> Result<Outcome>,
) -> ExitCode {
    std::panic::set_hook(Box::new(remember_panic));
    let loaded = common.load_config();
    // The flag or env first; a config that does not load cannot say.
    let format = common.log_format.or(loaded.as_ref().ok().map(|config| config.log_format)).unwrap_or_default();
    logging::init(name, common.quiet, format);
    let result = loaded.map_err(anyhow::Error::from).and_then(|mut config| {
        if let Some(task) = common.task {
            config.task = task;
        }
        config.log_format = format;
        apply(&mut config);
        if common.print_config {
            print_config(&config);
            return Ok(Outcome::Done);
        }
        if common.print_done_files {
            print_output(&config.done_files_toml());
            return Ok(Outcome::Done);
        }
        check_task(name, config.task)?;
        work(&config, common.progress(format))
    });
    exit_with(name, format, result)
}

/// The stages that handle token classification so far; the others refuse it
/// up front rather than misread tagged data as texts.
pub const TOKEN_CLASSIFICATION_STAGES: &[&str] = &[
    "ingest", "clean", "profile", "tokenize", "train", "eval", "export", "gate", "monitor", "predict", "retrain",
    "serve", "registry", "runs", "tune", "pipeline",
];

fn check_task(stage: &str, task: kiln_core::Task) -> Result<()> {
    if task == kiln_core::Task::TokenClassification && !TOKEN_CLASSIFICATION_STAGES.contains(&stage) {
        anyhow::bail!(
            "`{stage}` does not handle task = \"token_classification\" yet (these stages do: {})",
            TOKEN_CLASSIFICATION_STAGES.join(", ")
        );
    }
    Ok(())
}

/// Test hook (test builds only, [`kiln_core::test_hooks`]): with
/// `KILN_TEST_PANIC=<stage>` that stage panics where its work starts, so tests
/// can see a panic from outside (exit code, message, records).
pub fn panic_if_asked(stage: &str) {
    kiln_core::test_hooks::panic_if_asked(stage);
}

/// The last panic's message and place, kept by the panic hook for [`catch_panics`].
static LAST_PANIC: Mutex<Option<String>> = Mutex::new(None);

fn remember_panic(info: &std::panic::PanicHookInfo) {
    let payload = info.payload();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic with no message".into());
    let place = info.location().map_or_else(String::new, |l| format!(" at {}:{}", l.file(), l.line()));
    if let Ok(mut last) = LAST_PANIC.lock() {
        *last = Some(format!("{message}{place}"));
    }
}

/// Runs `work`, turning a panic into a [`Bug`] error, so the caller can still
/// finish what it started (a run record says `failed`, not `running` forever).
pub fn catch_panics<T>(work: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(AssertUnwindSafe(work)).unwrap_or_else(|_| {
        let message = LAST_PANIC.lock().ok().and_then(|mut last| last.take());
        Err(Bug::new(format!("panicked: {}", message.unwrap_or_else(|| "no message".into()))).into())
    })
}

/// Turns a stage's outcome into an exit code, printing the error chain once.
/// A broken pipe (output piped into `head`) is not an error.
fn exit_with(stage: &str, format: LogFormat, result: Result<Outcome>) -> ExitCode {
    let error = match result {
        Ok(outcome) => return ExitCode::from(outcome.exit_code()),
        Err(error) => error,
    };
    let broken_pipe = error.chain().any(|cause| {
        cause.downcast_ref::<std::io::Error>().is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    });
    if broken_pipe {
        return ExitCode::from(exit::DONE);
    }
    let bug = error.chain().any(|cause| cause.is::<Bug>());
    let code = if bug { exit::BUG } else { exit::INPUT };
    match format {
        LogFormat::Text => {
            eprintln!("{stage}: error: {error:#}");
            if bug {
                eprintln!("{stage}: this is a bug in kiln; please report it with the command you ran");
            }
        }
        // Printed, not logged: `RUST_LOG=off` must not hide why a stage failed.
        LogFormat::Json => {
            let fields = serde_json::json!({ "exit_code": code, "bug": bug });
            eprintln!("{}", logging::json_line(stage, "error", &format!("{error:#}"), fields, "kiln_stage"));
        }
    }
    ExitCode::from(code)
}

/// Prints the settings a stage would run with (for `--print-config`), secrets left out.
fn print_config(config: &PipelineConfig) {
    print_output(&config.redacted().to_toml());
}

/// Prints a command's result (a table, a version, JSON) on stdout.
pub fn print_output(output: &str) {
    #[allow(clippy::print_stdout)] // The table or record is the program's output.
    {
        print!("{output}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_ending_has_its_exit_code() {
        let input = anyhow::anyhow!("data/raw/train.parquet: row 3: empty text");
        let exit_with = |stage, result| exit_with(stage, LogFormat::Text, result);
        assert_eq!(exit_with("t", Err(input)), ExitCode::from(1));
        let bug = anyhow::Error::new(Bug::new("label id out of range")).context("scoring");
        assert_eq!(exit_with("t", Err(bug)), ExitCode::from(2));
        let text_only = anyhow::anyhow!("mentions This is a bug but is no Bug");
        assert_eq!(exit_with("t", Err(text_only)), ExitCode::from(1), "typed, not a substring");
        std::panic::set_hook(Box::new(remember_panic));
        let caught = catch_panics::<()>(|| panic!("index out of bounds")).expect_err("a panic is an error");
        assert!(caught.is::<Bug>(), "{caught:#}");
        assert!(format!("{caught:#}").contains("index out of bounds at crates/kiln-stage"), "{caught:#}");
        assert_eq!(exit_with("t", Err(caught)), ExitCode::from(2));
        let pipe = anyhow::Error::new(std::io::Error::from(std::io::ErrorKind::BrokenPipe));
        assert_eq!(exit_with("t", Err(pipe)), ExitCode::SUCCESS);
        assert_eq!(exit_with("t", Ok(Outcome::Done)), ExitCode::SUCCESS);
        assert_eq!(exit_with("t", Ok(Outcome::NeedsAttention)), ExitCode::from(3));
        assert_eq!(exit_with("t", Ok(Outcome::Interrupted)), ExitCode::from(130));
        assert_eq!(Outcome::from(()), Outcome::Done);
    }

    /// The config's top-level keys (`task`, `log_format`) are every stage's global flags.
    #[test]
    fn the_top_level_keys_are_common_flags() {
        let flags: Vec<String> = <CommonArgs as Args>::augment_args(clap::Command::new("stage"))
            .get_arguments()
            .map(|arg| arg.get_id().to_string())
            .collect();
        for key in ["task", "log_format"] {
            assert!(flags.iter().any(|flag| flag == key), "{key}: {flags:?}");
        }
    }
}
