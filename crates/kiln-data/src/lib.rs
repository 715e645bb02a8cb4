//! kiln's data stages and the file formats they share.
//!
//! `ingest` reads raw labelled text into `data/raw/{split}.parquet`, `clean`
//! normalises it into `data/interim`, and `tokenize` turns it into token ids in
//! `data/processed` plus `labels.json`. Each stage is a `run` function here; the
//! binaries in `kiln-cli` only parse flags and call it.

pub mod clean;
pub mod ingest;
pub mod labels;
pub mod output;
pub mod processed;
pub mod progress;
pub mod read;
pub mod schema;
pub mod tokenize;

pub use labels::LabelMap;
pub use output::{Manifest, StagedOutput};
pub use progress::Progress;
pub use schema::Split;

/// kiln's version, recorded in every manifest.
pub const KILN_VERSION: &str = env!("CARGO_PKG_VERSION");
