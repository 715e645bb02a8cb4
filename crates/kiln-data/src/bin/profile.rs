//! `profile`: Describe a data set (rows, labels, lengths, truncation, unknown tokens, duplicates, odd texts, frequent words per label) as profile.json, SVG plots and report.md.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::ProfileArgs;
use kiln_stage::{CommonArgs, run_stage};

/// Describe a data set (rows, labels, lengths, truncation, unknown tokens, duplicates, odd texts, frequent words per label) as profile.json, SVG plots and report.md.
///
/// Profiles the cleaned splits by default; --input-dir takes raw or tokenized ones too, and --input-file any file `ingest` reads (new data, before it joins the training set).
#[derive(Debug, Parser)]
#[command(name = "profile", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: ProfileArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    run_stage(
        "profile",
        &common,
        |config| settings.apply(&mut config.profile),
        |config, progress| {
            let resolved = config.profile.resolved(&config.tokenize);
            let profile = kiln_data::profile::run(&resolved, &progress)?;
            for (name, split) in &profile.splits {
                tracing::info!(
                    "{name}: {} rows, {} labels, p50 {} / p99 {} tokens, {:.2}% truncated, {:.2}% duplicates",
                    split.rows,
                    split.labels.len(),
                    split.tokens.p50,
                    split.tokens.p99,
                    100.0 * split.truncation_rate,
                    100.0 * split.duplicate_rate
                );
            }
            tracing::info!("wrote {}", resolved.output_dir.join(kiln_data::profile::REPORT).display());
            Ok(())
        },
    )
}
