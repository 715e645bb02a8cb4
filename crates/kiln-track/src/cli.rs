//! The `runs` and `registry` commands: what each subcommand does and prints.
//! Their binaries only parse flags and call these.

use anyhow::Result;
use clap::Subcommand;
use kiln_config::PipelineConfig;

use crate::registry::{Registry, RegistryError, parse_version};

#[derive(Debug, Clone, Subcommand)]
pub enum RunsCommand {
    /// One line per run, oldest first (the default).
    List {
        /// Only runs of this stage (train or eval).
        #[arg(long)]
        stage: Option<String>,
        /// Only the last N runs.
        #[arg(long, value_name = "N")]
        last: Option<usize>,
        /// Only runs with this tag, KEY=VALUE (e.g. study=banking77 for a study's trials).
        #[arg(long = "with-tag", value_name = "KEY=VALUE")]
        with_tag: Option<String>,
    },
    /// A run's whole record, as JSON.
    Show {
        /// The run id, or a unique prefix of it.
        id: String,
    },
    /// Runs side by side: the params that differ between them, and every metric.
    Compare {
        /// Run ids, or unique prefixes of them.
        #[arg(required_unless_present = "with_tag", num_args = 2..)]
        ids: Vec<String>,
        /// Compare every run with this tag, KEY=VALUE: `runs compare --with-tag study=banking77`
        /// puts a study's trials side by side.
        #[arg(long = "with-tag", value_name = "KEY=VALUE")]
        with_tag: Option<String>,
    },
}

/// What `runs` prints for `command` (default: `list`).
pub fn runs(config: &PipelineConfig, command: Option<RunsCommand>) -> Result<String> {
    let dir = &config.track.runs_dir;
    Ok(match command.unwrap_or(RunsCommand::List { stage: None, last: None, with_tag: None }) {
        RunsCommand::List { stage, last, with_tag } => {
            let mut records = crate::list(dir)?;
            records.retain(|r| stage.as_ref().is_none_or(|s| &r.stage == s));
            if let Some(tag) = &with_tag {
                retain_tagged(&mut records, tag)?;
            }
            let skip = last.map_or(0, |n| records.len().saturating_sub(n));
            if records.is_empty() {
                tracing::info!("no runs recorded in {} yet", dir.display());
                return Ok(String::new());
            }
            crate::table::list(&records[skip..])
        }
        RunsCommand::Show { id } => serde_json::to_string_pretty(&crate::find(dir, &id)?)? + "\n",
        RunsCommand::Compare { ids, with_tag } => {
            let mut records = ids.iter().map(|id| crate::find(dir, id)).collect::<Result<Vec<_>>>()?;
            if let Some(tag) = &with_tag {
                let mut tagged = crate::list(dir)?;
                retain_tagged(&mut tagged, tag)?;
                if tagged.is_empty() {
                    anyhow::bail!("no run in {} has the tag {tag}", dir.display());
                }
                records.extend(tagged.into_iter().filter(|r| !ids.iter().any(|id| r.id.starts_with(id))));
            }
            crate::table::compare(&records)
        }
    })
}

/// Keeps the records tagged `KEY=VALUE`.
fn retain_tagged(records: &mut Vec<crate::RunRecord>, tag: &str) -> Result<()> {
    let (key, value) = tag.split_once('=').ok_or_else(|| anyhow::anyhow!("--with-tag '{tag}' is not KEY=VALUE"))?;
    records.retain(|r| r.tags.get(key).is_some_and(|v| v == value));
    Ok(())
}

#[derive(Debug, Clone, Subcommand)]
pub enum RegistryCommand {
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
    /// Recreate a lost or damaged registry.json from the version folders' own
    /// files and the production link (production stays; newer versions become
    /// candidates, older ones archived).
    Rebuild,
}

/// What `registry` prints for `command` (default: `list`).
pub fn registry(config: &PipelineConfig, command: Option<RegistryCommand>) -> Result<String> {
    let config = &config.registry;
    let registry = Registry::new(config);
    Ok(match command.unwrap_or(RegistryCommand::List) {
        RegistryCommand::List => {
            let index = registry.load()?;
            if index.versions.is_empty() {
                tracing::info!("no versions in {} yet (`registry add` records one)", registry.dir().display());
                return Ok(String::new());
            }
            crate::table::render(&crate::registry::rows(&index))
        }
        RegistryCommand::Add => {
            let added = registry.add(&config.model_dir, config.promote_first)?;
            let v = &added.version;
            if added.new {
                let dir = registry.version_dir(v.version);
                tracing::info!("{} recorded as {} {}", config.model_dir.display(), v.name(), dir.display());
            } else {
                tracing::info!("{} is {} already ({}): nothing added", config.model_dir.display(), v.name(), v.stage);
            }
            format!("{} {}\n", v.name(), v.stage)
        }
        RegistryCommand::Show { version } => {
            let index = registry.load()?;
            let entry = index.get(version).ok_or(RegistryError::NoSuchVersion(version))?;
            serde_json::to_string_pretty(entry)? + "\n"
        }
        RegistryCommand::Promote { version, force } => {
            let promoted = registry.promote(version, config.metric, force)?;
            if let Some(warning) = &promoted.warning {
                tracing::warn!("{warning}");
            }
            let replaced = promoted.replaced.map_or_else(String::new, |old| format!(" (v{old} archived)"));
            let name = promoted.version.name();
            tracing::info!("{name} is production{replaced}: {} -> {name}", registry.production_dir().display());
            format!("{name} production\n")
        }
        RegistryCommand::Archive { version } => {
            let archived = registry.archive(version)?;
            format!("{} {}\n", archived.name(), archived.stage)
        }
        RegistryCommand::Rebuild => {
            let index = registry.rebuild()?;
            tracing::info!(
                "rebuilt {} with {} version(s)",
                registry.dir().join(crate::registry::INDEX).display(),
                index.versions.len()
            );
            crate::table::render(&crate::registry::rows(&index))
        }
    })
}
