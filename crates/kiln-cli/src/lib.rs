//! What every stage binary shares: the common flags, logging, settings
//! resolution (defaults < config file < flags) and one exit-code policy.
//!
//! Exit codes: 0 success, 1 a problem with the input or settings (the message
//! says what and where), 2 an unexpected failure (a bug: please report it).

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Result;
use clap::Args;
use kiln_config::{ConfigError, PipelineConfig};
use kiln_data::Progress;

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
    // Secrets stay out of terminals and CI logs.
    let mut config = config.clone();
    for token in &mut config.serve.api_tokens {
        *token = "<redacted>".into();
    }
    #[allow(clippy::print_stdout)] // --print-config's output is the program's output.
    {
        print!("{}", config.to_toml());
    }
}
