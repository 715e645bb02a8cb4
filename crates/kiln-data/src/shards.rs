//! Sharded batch prediction's parts: what each part says about itself, and
//! the merge that joins N parts back into the one file an unsharded run
//! writes, row for row.
//!
//! Each part (`part-I-of-N.parquet`) is a predictions table with a leading
//! [`ROW`] column (the input row, from 1) and key-value metadata naming its
//! shard and input ([`PartInfo`]). The merge refuses parts that disagree
//! (another input, another shard count), a missing part, and any row missing
//! or seen twice; it streams, holding one record batch per part.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::UInt64Type;
use arrow_array::{RecordBatch, UInt64Array};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use kiln_config::{PredictConfig, Shard};
use kiln_core::output::StreamedFile;
use parquet::arrow::ArrowWriter;
use parquet::arrow::arrow_reader::{ParquetRecordBatchReader, ParquetRecordBatchReaderBuilder};
use parquet::file::metadata::KeyValue;
use serde::Serialize;

/// A part's first column: each prediction's row in the input, from 1.
pub const ROW: &str = "row";

const SHARD_KEY: &str = "kiln.shard";
const INPUT_KEY: &str = "kiln.input";
const INPUT_BYTES_KEY: &str = "kiln.input_bytes";
const INPUT_ROWS_KEY: &str = "kiln.input_rows";

/// What a part records about where it came from, checked by the merge.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartInfo {
    pub shard: Shard,
    /// The input file as the shard was given it.
    pub input: String,
    /// The input's size: parts of an input that changed between shards disagree.
    pub input_bytes: u64,
    /// Data rows in the whole input, every shard's.
    pub input_rows: usize,
}

impl PartInfo {
    /// Writes the part's metadata; call before closing the writer.
    pub fn write_to<W: std::io::Write + Send>(&self, writer: &mut ArrowWriter<W>) {
        for (key, value) in [
            (SHARD_KEY, self.shard.to_string()),
            (INPUT_KEY, self.input.clone()),
            (INPUT_BYTES_KEY, self.input_bytes.to_string()),
            (INPUT_ROWS_KEY, self.input_rows.to_string()),
        ] {
            writer.append_key_value_metadata(KeyValue::new(key.to_owned(), value));
        }
    }

    fn read(path: &Path, metadata: Option<&Vec<KeyValue>>) -> Result<Self> {
        let value = |key: &str| -> Result<&str> {
            metadata.into_iter().flatten().find(|kv| kv.key == key).and_then(|kv| kv.value.as_deref()).with_context(
                || format!("{}: no '{key}' metadata; is it a part written by `predict --shard-index`?", path.display()),
            )
        };
        let number = |key: &str| -> Result<u64> {
            value(key)?.parse().with_context(|| format!("{}: metadata '{key}' is not a number", path.display()))
        };
        let shard = value(SHARD_KEY)?;
        let parsed = shard
            .split_once('/')
            .and_then(|(index, count)| Shard::new(index.parse().ok()?, count.parse().ok()?))
            .with_context(|| format!("{}: metadata '{SHARD_KEY}' is '{shard}', not I/N", path.display()))?;
        Ok(Self {
            shard: parsed,
            input: value(INPUT_KEY)?.to_owned(),
            input_bytes: number(INPUT_BYTES_KEY)?,
            input_rows: usize::try_from(number(INPUT_ROWS_KEY)?)?,
        })
    }
}

/// A part's schema: [`ROW`], then the predictions' own columns.
pub fn part_schema(predictions: &Schema) -> SchemaRef {
    let mut fields = vec![Arc::new(Field::new(ROW, DataType::UInt64, false))];
    fields.extend(predictions.fields().iter().cloned());
    Arc::new(Schema::new(fields))
}

/// `predictions` with each row's input row in front, as a part stores it.
pub fn part_batch(schema: SchemaRef, rows: &[usize], predictions: &RecordBatch) -> Result<RecordBatch> {
    let mut columns = vec![Arc::new(UInt64Array::from_iter_values(rows.iter().map(|&r| r as u64))) as _];
    columns.extend(predictions.columns().iter().cloned());
    RecordBatch::try_new(schema, columns).context("a part's table disagrees with its schema. This is a bug.")
}

#[derive(Debug, Clone, Serialize)]
pub struct MergeReport {
    pub parts: usize,
    pub rows: usize,
    pub input: String,
}

/// One part being read: its batches, and where the merge is in the current one.
struct PartCursor {
    path: PathBuf,
    batches: ParquetRecordBatchReader,
    batch: Option<RecordBatch>,
    at: usize,
}

impl PartCursor {
    /// The input row at the cursor, loading the next batch when this one is spent.
    fn head(&mut self) -> Result<Option<u64>> {
        loop {
            if let Some(batch) = &self.batch
                && self.at < batch.num_rows()
            {
                return Ok(Some(rows_of(batch).value(self.at)));
            }
            match self.batches.next() {
                None => {
                    self.batch = None;
                    return Ok(None);
                }
                Some(batch) => {
                    self.batch = Some(batch.with_context(|| format!("cannot read {}", self.path.display()))?);
                    self.at = 0;
                }
            }
        }
    }
}

fn rows_of(batch: &RecordBatch) -> &UInt64Array {
    batch.column(0).as_primitive::<UInt64Type>()
}

/// Joins the `predict.shard_count` parts of `config` into its output file,
/// in input order and without the [`ROW`] column: the file one unsharded
/// `predict` writes. The output is replaced only once every part checked out.
pub fn merge(config: &PredictConfig) -> Result<MergeReport> {
    let (count, output, parts_dir) = (config.shard_count, config.output_file.as_path(), config.parts_dir());
    if count < 2 {
        bail!("merging needs the shard count the parts were written with (--shard-count N, N >= 2); it is {count}");
    }
    let paths: Vec<PathBuf> =
        (0..count).filter_map(|index| Shard::new(index, count)).map(|shard| config.part_file(shard)).collect();
    let missing: Vec<String> =
        paths.iter().enumerate().filter(|(_, path)| !path.exists()).map(|(index, _)| index.to_string()).collect();
    if !missing.is_empty() {
        bail!(
            "{}: parts {} of {count} are missing; run `predict --shard-count {count} --shard-index I` for each (a Kubernetes Indexed Job runs them all)",
            parts_dir.display(),
            missing.join(", ")
        );
    }
    let mut cursors = Vec::with_capacity(count);
    let mut first: Option<(PartInfo, SchemaRef)> = None;
    for (index, path) in paths.iter().enumerate() {
        let not_parquet = || format!("{} is not a readable Parquet file", path.display());
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).with_context(not_parquet)?;
        let info = PartInfo::read(path, builder.metadata().file_metadata().key_value_metadata())?;
        if info.shard != Shard::new(index, count).context("shard index. This is a bug.")? {
            bail!(
                "{}: holds shard {}, not {index}/{count} (renamed, or written with another --shard-count?)",
                path.display(),
                info.shard
            );
        }
        let schema = Arc::new(Schema::new(builder.schema().fields().clone()));
        if schema.fields().first().is_none_or(|f| f.name() != ROW || f.data_type() != &DataType::UInt64) {
            bail!(
                "{}: the first column is not '{ROW}' (u64); is it a part written by `predict --shard-index`?",
                path.display()
            );
        }
        match &first {
            None => first = Some((info, Arc::clone(&schema))),
            Some((expected, expected_schema)) => {
                let same_input = (&info.input, info.input_bytes, info.input_rows)
                    == (&expected.input, expected.input_bytes, expected.input_rows);
                if !same_input {
                    bail!(
                        "{}: predicted from {} ({} bytes, {} rows) but part 0 from {} ({} bytes, {} rows); rerun the shards on one input",
                        path.display(),
                        info.input,
                        info.input_bytes,
                        info.input_rows,
                        expected.input,
                        expected.input_bytes,
                        expected.input_rows
                    );
                }
                if schema != *expected_schema {
                    bail!("{}: its columns differ from part 0's (another model or --top-k?)", path.display());
                }
            }
        }
        cursors.push(PartCursor {
            path: path.clone(),
            batches: builder.build().with_context(not_parquet)?,
            batch: None,
            at: 0,
        });
    }
    let (info, schema) = first.context("at least two parts. This is a bug.")?;
    let output_schema = Arc::new(Schema::new(schema.fields()[1..].to_vec()));

    let out = StreamedFile::create(output)?;
    let mut writer = crate::parquet::writer(std::io::BufWriter::new(out.file()), Arc::clone(&output_schema))?;
    let mut next_row: u64 = 1;
    loop {
        // The part whose next row comes first, and the row after which another part takes over.
        let mut heads = Vec::with_capacity(count);
        for (index, cursor) in cursors.iter_mut().enumerate() {
            if let Some(row) = cursor.head()? {
                heads.push((row, index));
            }
        }
        heads.sort_unstable();
        let Some(&(row, index)) = heads.first() else { break };
        let bound = heads.get(1).map_or(u64::MAX, |&(row, _)| row);
        if row < next_row || bound == row {
            bail!(
                "input row {row} is in two parts or twice in {}; the parts must cover the input exactly once",
                cursors[index].path.display()
            );
        }
        if row > next_row {
            bail!("input row {next_row} is in no part; the parts must cover the input exactly once");
        }
        let cursor = &mut cursors[index];
        let batch = cursor.batch.as_ref().context("a cursor with a head has a batch. This is a bug.")?;
        let rows = rows_of(batch);
        let mut end = cursor.at;
        while end < batch.num_rows() && rows.value(end) < bound {
            if rows.value(end) != next_row {
                bail!("input row {next_row} is in no part (or {} is out of order)", cursor.path.display());
            }
            next_row += 1;
            end += 1;
        }
        let run = batch.slice(cursor.at, end - cursor.at);
        let columns = run.columns()[1..].to_vec();
        let run = RecordBatch::try_new(Arc::clone(&output_schema), columns).context("merged rows. This is a bug.")?;
        writer.write(&run).with_context(|| format!("cannot write {}", output.display()))?;
        cursor.at = end;
    }
    let merged = usize::try_from(next_row - 1)?;
    if merged != info.input_rows {
        bail!(
            "the parts hold {merged} rows but the input has {}; input row {} is in no part",
            info.input_rows,
            merged + 1
        );
    }
    let finish = || -> Result<()> {
        use std::io::Write;
        Ok(writer.into_inner()?.flush()?)
    };
    finish().with_context(|| format!("cannot finish {}", output.display()))?;
    out.commit()?;
    Ok(MergeReport { parts: count, rows: merged, input: info.input })
}
