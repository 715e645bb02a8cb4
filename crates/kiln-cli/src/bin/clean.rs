//! `clean`: Normalise texts (URLs, mentions, hashtags, HTML, control characters, whitespace, case, Unicode) and drop empty, over-long, duplicate and leaking rows.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kiln_cli::CommonArgs;
use kiln_config::cli::CleanArgs;

/// Normalise texts (URLs, mentions, hashtags, HTML, control characters, whitespace, case, Unicode) and drop empty, over-long, duplicate and leaking rows.
#[derive(Debug, Parser)]
#[command(name = "clean", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: CleanArgs,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    kiln_cli::init_logging(cli.common.quiet);
    kiln_cli::exit_with("clean", run(cli))
}

fn run(Cli { common, settings }: Cli) -> Result<()> {
    let mut config = common.load_config()?;
    settings.apply(&mut config.clean);
    if common.print_config {
        kiln_cli::print_config(&config);
        return Ok(());
    }
    let report = kiln_data::clean::run(&config.clean, &common.progress())?;
    for (split, s) in &report.splits {
        tracing::info!(
            "{split}: {} -> {} rows ({} empty, {} too short, {} too long, {} duplicates, {} leaks, {} conflicts dropped)",
            s.rows_in,
            s.rows_out,
            s.dropped.empty,
            s.dropped.too_short,
            s.dropped.too_long,
            s.dropped.duplicate,
            s.dropped.leak,
            s.dropped.conflict
        );
    }
    tracing::info!("wrote {}", config.clean.output_dir.display());
    Ok(())
}
