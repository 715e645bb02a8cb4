//! `tokenize`: Turn cleaned text into token ids with the model folder's tokenizer.json, and write labels.json, the label list every later stage shares.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::cli::TokenizeArgs;
use kiln_config::stage::{CommonArgs, run_stage};

/// Turn cleaned text into token ids with the model folder's tokenizer.json, and write labels.json, the label list every later stage shares.
#[derive(Debug, Parser)]
#[command(name = "tokenize", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: TokenizeArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    run_stage(
        "tokenize",
        &common,
        |config| settings.apply(&mut config.tokenize),
        |config, progress| {
            let report = kiln_data::tokenize::run(&config.tokenize, &progress)?;
            for (split, s) in &report.splits {
                tracing::info!(
                    "{split}: {} rows, p50 {} / p99 {} / max {} tokens, {:.2}% truncated",
                    s.rows,
                    s.lengths.p50,
                    s.lengths.p99,
                    s.lengths.max,
                    100.0 * s.truncation_rate
                );
            }
            tracing::info!("{} labels; wrote {}", report.labels, config.tokenize.output_dir.display());
            Ok(())
        },
    )
}
