//! Parquet in and out for the data stages: the polars side of `kiln_core::output`.

use std::fs::File;
use std::path::Path;

use anyhow::{Context, Result};
use kiln_core::StagedOutput;
use polars::prelude::*;

/// Writes `frame` as zstd Parquet to the staged file `name`.
pub fn write_parquet(staged: &mut StagedOutput, name: &str, frame: &mut DataFrame) -> Result<()> {
    let (path, writer) = staged.create(name)?;
    ParquetWriter::new(writer)
        .with_compression(ParquetCompression::Zstd(None))
        .finish(frame)
        .map_err(anyhow::Error::from)
        .with_context(|| format!("cannot write {}", path.display()))?;
    Ok(())
}

/// Reads a Parquet file written by an earlier stage, saying which stage to run if it is missing.
pub fn read_parquet(path: &Path, made_by: &str) -> Result<DataFrame> {
    let file = File::open(path).with_context(|| {
        format!("cannot open {} (run `{made_by}` first, or check the input folder)", path.display())
    })?;
    anyhow::Context::with_context(ParquetReader::new(file).finish(), || {
        format!("{} is not a readable Parquet file", path.display())
    })
}
