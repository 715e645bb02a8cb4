//! `tokenize`: Turn cleaned text into token ids with the model folder's tokenizer.json, and write labels.json, the label list every later stage shares.

use std::process::ExitCode;

use anyhow::Result;
use clap::Parser;
use kiln_cli::CommonArgs;
use kiln_config::cli::TokenizeArgs;

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
    let cli = Cli::parse();
    kiln_cli::init_logging(cli.common.quiet);
    kiln_cli::exit_with("tokenize", run(cli))
}

fn run(Cli { common, settings }: Cli) -> Result<()> {
    let mut config = common.load_config()?;
    settings.apply(&mut config.tokenize);
    if common.print_config {
        kiln_cli::print_config(&config);
        return Ok(());
    }
    let report = kiln_data::tokenize::run(&config.tokenize, &common.progress())?;
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
}
