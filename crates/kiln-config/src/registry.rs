//! `[registry]`: numbered model versions and which one is in production.

use std::path::PathBuf;

use clap::Args;
use serde::{Deserialize, Serialize};

use crate::Metric;

/// `[registry]`: numbered versions of exported models, each a `candidate`,
/// the one `production` model (what `serve` serves) or `archived`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistryConfig {
    /// Holds `registry.json`, a `v<N>/` folder per version and the `production` link.
    pub dir: PathBuf,
    /// The export that `registry add` records as a new version.
    pub model_dir: PathBuf,
    /// What `promote` compares with production on the same test data.
    pub metric: Metric,
    /// Make the first version production, so there is a model to serve at once.
    pub promote_first: bool,
}

impl Default for RegistryConfig {
    fn default() -> Self {
        Self {
            dir: "artifacts/registry".into(),
            model_dir: "artifacts/export".into(),
            metric: Metric::MacroF1,
            promote_first: true,
        }
    }
}

#[derive(Debug, Clone, Default, Args)]
#[command(next_help_heading = "Registry settings (config section [registry])")]
pub struct RegistryArgs {
    /// The registry: registry.json, v<N>/ folders, the production link [default: artifacts/registry].
    #[arg(long = "registry-dir", value_name = "DIR", env = "KILN_REGISTRY_DIR")]
    pub dir: Option<PathBuf>,
    /// The export that `add` records as a new version [default: artifacts/export].
    #[arg(long, value_name = "DIR")]
    pub model_dir: Option<PathBuf>,
    /// Metric `promote` compares with production's on the same test data [default: macro_f1].
    #[arg(long, value_enum)]
    pub metric: Option<Metric>,
    /// Make the first version production at once [default: true].
    #[arg(long, value_name = "BOOL")]
    pub promote_first: Option<bool>,
}

impl RegistryArgs {
    pub fn apply(self, config: &mut RegistryConfig) {
        apply_overrides!(self, config, [dir, model_dir, metric, promote_first], optional []);
    }
}
