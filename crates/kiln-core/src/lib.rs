//! The files kiln's stages share, each with one owner: the model folder and its
//! file names, `eval`'s metrics and `train`'s metrics log, the label list,
//! splits, tokenized examples, data profiles, manifests and atomic writes. Light on purpose
//! (no Parquet, no LibTorch), so a crate that only reads records depends on this.

pub mod calibration;
pub mod entities;
pub mod error;
pub mod example;
pub mod gate;
pub mod labels;
pub mod metrics;
pub mod model_folder;
pub mod output;
pub mod precision;
pub mod prediction_log;
pub mod profile;
pub mod progress;
pub mod quantize;
pub mod sample;
pub mod scores;
pub mod secret;
pub mod split;
pub mod stages;
pub mod stats;
pub mod task;
pub mod test_hooks;

pub use error::Bug;
pub use example::{Example, TaggedExample};
pub use labels::LabelMap;
pub use metrics::{EvalMetrics, Metric};
pub use model_folder::ModelFolder;
pub use output::{FileHash, Manifest, StagedOutput};
pub use precision::Precision;
pub use profile::DataProfile;
pub use progress::Progress;
pub use quantize::Quantize;
pub use split::Split;
pub use task::Task;

/// kiln's version, recorded in every manifest and run record.
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");
