//! `export`: Write the trained model as a Hugging Face folder with a model card.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::ExportArgs;
use kiln_stage::CommonArgs;

/// Write the trained model as a Hugging Face folder (config.json with the labels,
/// model.safetensors, tokenizer files) with a model card, in artifacts/export.
/// transformers' AutoModelForSequenceClassification.from_pretrained loads it as it is.
#[derive(Debug, Parser)]
#[command(name = "export", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: ExportArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings } = Cli::parse();
    kiln_stage::run_stage(
        "export",
        &common,
        |config| settings.apply(&mut config.export),
        |config, _progress| {
            let files = kiln_infer::export::run(&config.export)?;
            tracing::info!("exported {} files to {}", files.len() + 2, config.export.output_dir.display());
            Ok(())
        },
    )
}
