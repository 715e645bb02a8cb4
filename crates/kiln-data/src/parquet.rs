//! Parquet in and out for every table kiln writes: zstd-compressed, one Arrow
//! record batch per write. The Parquet side of `kiln_core::output`.

use std::fs::File;
use std::io::Write;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_schema::SchemaRef;
use kiln_core::StagedOutput;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

/// A batch from named columns, all of one length.
pub fn batch(columns: Vec<(&str, ArrayRef)>) -> Result<RecordBatch> {
    RecordBatch::try_from_iter(columns.into_iter().map(|(name, array)| (name.to_owned(), array)))
        .context("the columns of a table disagree. This is a bug.")
}

/// A streaming writer (`predict` appends a row group per chunk of input).
pub fn writer<W: Write + Send>(out: W, schema: SchemaRef) -> Result<ArrowWriter<W>> {
    let properties = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    ArrowWriter::try_new(out, schema, Some(properties)).context("cannot start a Parquet file")
}

/// Writes `batch` as the staged file `name`.
pub fn write_parquet(staged: &mut StagedOutput, name: &str, batch: &RecordBatch) -> Result<()> {
    let (path, out) = staged.create(name)?;
    let write = || -> Result<()> {
        let mut writer = writer(out, batch.schema())?;
        writer.write(batch)?;
        writer.into_inner()?.flush()?;
        Ok(())
    };
    write().with_context(|| format!("cannot write {}", path.display()))
}

/// Runs a Parquet decode of `path`, turning a panic inside the decoder (the
/// parquet crate panics on some damaged files instead of returning an error)
/// into an error that names the file: outside input never panics a stage.
pub fn guarded<T>(path: &Path, decode: impl FnOnce() -> Result<T>) -> Result<T> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(decode)).unwrap_or_else(|panic| {
        let message = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_else(|| "no message".into());
        anyhow::bail!(
            "{} is not a readable Parquet file: the decoder failed on damaged data ({message})",
            path.display()
        )
    })
}

/// Reads a whole Parquet file written by an earlier stage, saying which stage
/// to run if it is missing.
pub fn read_parquet(path: &Path, made_by: &str) -> Result<RecordBatch> {
    guarded(path, || read_parquet_unguarded(path, made_by))
}

fn read_parquet_unguarded(path: &Path, made_by: &str) -> Result<RecordBatch> {
    let file = File::open(path).with_context(|| {
        format!("cannot open {} (run `{made_by}` first, or check the input folder)", path.display())
    })?;
    let not_parquet = || format!("{} is not a readable Parquet file", path.display());
    let reader = ParquetRecordBatchReaderBuilder::try_new(file).with_context(not_parquet)?;
    let schema = Arc::clone(reader.schema());
    let batches = reader.build().with_context(not_parquet)?.collect::<Result<Vec<_>, _>>().with_context(not_parquet)?;
    arrow_select::concat::concat_batches(&schema, &batches).with_context(not_parquet)
}
