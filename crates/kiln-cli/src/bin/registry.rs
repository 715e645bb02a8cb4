//! `registry`: Numbered versions of exported models, and which one is in production.

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use kiln_cli::CommonArgs;
use kiln_config::cli::RegistryArgs;
use kiln_infer::registry::{Registry, RegistryError, parse_version};

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
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// One line per version, newest first (the default).
    List,
    /// Record the export (--model-dir) as the next version, a candidate (the
    /// first one goes to production). The same weights are not added twice.
    Add,
    /// A version's whole record, as JSON.
    Show {
        #[arg(value_parser = parse_version)]
        version: u32,
    },
    /// Make a version production, archiving the one it replaces. Refused when
    /// its metric is worse than production's on the same test data.
    Promote {
        #[arg(value_parser = parse_version)]
        version: u32,
        /// Promote even a version that does worse than production.
        #[arg(long)]
        force: bool,
    },
    /// Retire a candidate (its files stay; `promote` brings it back).
    Archive {
        #[arg(value_parser = parse_version)]
        version: u32,
    },
}

fn main() -> ExitCode {
    let Cli { common, settings, command } = Cli::parse();
    kiln_cli::run_stage(
        "registry",
        &common,
        |config| settings.apply(&mut config.registry),
        |config, _progress| {
            let config = &config.registry;
            let registry = Registry::new(config);
            let output = match command.unwrap_or(Command::List) {
                Command::List => {
                    let index = registry.load()?;
                    if index.versions.is_empty() {
                        tracing::info!("no versions in {} yet (`registry add` records one)", registry.dir().display());
                        return Ok(());
                    }
                    kiln_track::table::render(&kiln_infer::registry::rows(&index))
                }
                Command::Add => {
                    let added = registry.add(&config.model_dir, config.promote_first)?;
                    let v = &added.version;
                    if added.new {
                        tracing::info!(
                            "{} recorded as {} {}",
                            config.model_dir.display(),
                            v.name(),
                            registry.version_dir(v.version).display()
                        );
                    } else {
                        tracing::info!(
                            "{} is {} already ({}): nothing added",
                            config.model_dir.display(),
                            v.name(),
                            v.stage
                        );
                    }
                    format!("{} {}\n", v.name(), v.stage)
                }
                Command::Show { version } => {
                    let index = registry.load()?;
                    let entry = index.get(version).ok_or(RegistryError::NoSuchVersion(version))?;
                    serde_json::to_string_pretty(entry)? + "\n"
                }
                Command::Promote { version, force } => {
                    let promoted = registry.promote(version, config.metric, force)?;
                    if let Some(warning) = &promoted.warning {
                        tracing::warn!("{warning}");
                    }
                    let replaced = promoted.replaced.map_or_else(String::new, |old| format!(" (v{old} archived)"));
                    tracing::info!(
                        "{} is production{replaced}: {} -> {}",
                        promoted.version.name(),
                        registry.production_dir().display(),
                        promoted.version.name()
                    );
                    format!("{} production\n", promoted.version.name())
                }
                Command::Archive { version } => {
                    let archived = registry.archive(version)?;
                    format!("{} {}\n", archived.name(), archived.stage)
                }
            };
            #[allow(clippy::print_stdout)] // The table or the version is the program's output.
            {
                print!("{output}");
            }
            Ok(())
        },
    )
}
