//! kiln's data stages and the file formats they share.
//!
//! `ingest` reads raw labelled text into `data/raw/{split}.parquet`, `clean`
//! normalises it into `data/interim`, and `tokenize` turns it into token ids in
//! `data/processed` plus `labels.json`; `profile` says what any of them looks like. Each stage is a `run` function here; the
//! binaries in `kiln-cli` only parse flags and call it.

pub mod clean;
pub mod ingest;
pub mod parquet;
pub mod processed;
pub mod profile;
pub mod read;
pub mod retrain;
pub mod schema;
pub mod shards;
pub mod tagged;
pub mod tokenize;
