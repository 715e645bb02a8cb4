//! `clean`: Normalise texts (URLs, mentions, hashtags, HTML, control characters, whitespace, case, Unicode) and drop empty, over-long, duplicate and leaking rows.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::CleanArgs;
use kiln_stage::{CommonArgs, run_stage};

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
    let Cli { common, settings } = Cli::parse();
    run_stage(
        "clean",
        &common,
        |config| settings.apply(&mut config.clean),
        |config, progress| {
            let report = match config.task {
                kiln_core::Task::SequenceClassification => kiln_data::clean::run(&config.clean, &progress)?,
                kiln_core::Task::TokenClassification => kiln_data::clean::run_tagged(&config.clean, &progress)?,
            };
            for (split, s) in &report.splits {
                let d = &s.dropped;
                tracing::info!(
                    "{split}: {} -> {} rows ({} empty, {} too short, {} too long, {} duplicates, {} leaks, {} conflicts dropped)",
                    s.rows_in,
                    s.rows_out,
                    d.empty,
                    d.too_short,
                    d.too_long,
                    d.duplicate,
                    d.leak,
                    d.conflict
                );
            }
            tracing::info!("wrote {}", config.clean.output_dir.display());
            Ok(())
        },
    )
}
