//! `registry`: Numbered versions of exported models, and which one is in production.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::RegistryArgs;
use kiln_stage::{CommonArgs, print_output, run_stage};
use kiln_track::cli::RegistryCommand;

/// Numbered versions of exported models: `add` records artifacts/export as the
/// next version (a copy in artifacts/registry/v<N>/ with its metrics and the
/// hashes of its weights, config and data), `promote` makes one the production
/// model that `serve` serves (artifacts/registry/production), `archive` retires one.
#[derive(Debug, Parser)]
#[command(name = "registry", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: RegistryArgs,
    #[command(subcommand)]
    command: Option<RegistryCommand>,
}

fn main() -> ExitCode {
    let Cli { common, settings, command } = Cli::parse();
    run_stage(
        "registry",
        &common,
        |config| settings.apply(&mut config.registry),
        |config, _| kiln_track::cli::registry(config, command).map(|output| print_output(&output)),
    )
}
