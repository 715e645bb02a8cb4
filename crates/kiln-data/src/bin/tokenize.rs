//! `tokenize`: Turn cleaned text into token ids with the model folder's tokenizer.json, and write labels.json, the label list every later stage shares.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::TokenizeArgs;
use kiln_stage::{CommonArgs, run_stage};

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
            let report = match config.task {
                kiln_core::Task::SequenceClassification => kiln_data::tokenize::run(&config.tokenize, &progress)?,
                kiln_core::Task::TokenClassification => kiln_data::tokenize::run_tagged(&config.tokenize, &progress)?,
            };
            for (split, w) in &report.words {
                tracing::info!(
                    "{split}: {} sentences, {} words in {} windows ({} long sentences, {} words cut, {:.2}% of words unknown)",
                    w.sentences,
                    w.words,
                    w.windows,
                    w.long_sentences,
                    w.words_cut,
                    100.0 * w.unknown_word_rate
                );
            }
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
