//! Reading labelled text from CSV, TSV, JSONL and Parquet, with errors that name
//! the file, the row (and line or byte offset) and the column.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_schema::DataType;
use indicatif::ProgressBar;
use kiln_config::{InputFormat, ScoreRule, Shard};
use parquet::arrow::ProjectionMask;
use parquet::arrow::arrow_reader::{ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder};

use kiln_core::Progress;

/// Where each row's label comes from.
#[derive(Debug, Clone, Copy)]
pub enum LabelSource<'a> {
    Column(&'a str),
    /// A numeric column mapped to labels by rules; rows no rule matches are dropped.
    Score {
        column: &'a str,
        rules: &'a [ScoreRule],
    },
    /// Unlabelled text (`predict`): every label is empty.
    None,
}

impl<'a> LabelSource<'a> {
    /// The column to read labels from; unlabelled input reads the text column
    /// again (and ignores it), which keeps every reader's field order the same.
    fn column(&self, text: &'a str) -> &'a str {
        match *self {
            Self::Column(column) | Self::Score { column, .. } => column,
            Self::None => text,
        }
    }
}

/// Which columns hold what.
#[derive(Debug, Clone, Copy)]
pub struct ColumnMap<'a> {
    pub text: &'a str,
    pub label: LabelSource<'a>,
    /// Without one, ids are `<id_prefix>-<row>`, row counted from 1.
    pub id: Option<&'a str>,
    pub id_prefix: &'a str,
}

#[derive(Debug, Clone, Copy)]
pub struct ReadOptions {
    pub format: InputFormat,
    pub has_header: bool,
    pub quoting: bool,
}

/// Rows read from one file, columns already mapped.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Records {
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    /// Each record's data row in the file, from 1 (the order a sharded
    /// prediction's parts are merged back into).
    pub rows: Vec<usize>,
    /// Data rows in the file, before any were dropped.
    pub rows_read: usize,
    /// Rows whose score no rule turned into a label.
    pub dropped_no_label: usize,
}

impl Records {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }
}

/// The format `options` names, or the one `path`'s extension implies.
pub fn resolve_format(path: &Path, format: InputFormat) -> Result<InputFormat> {
    if format != InputFormat::Auto {
        return Ok(format);
    }
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
    Ok(match extension.as_str() {
        "csv" => InputFormat::Csv,
        "tsv" | "tab" => InputFormat::Tsv,
        "jsonl" | "ndjson" => InputFormat::Jsonl,
        "parquet" | "pq" => InputFormat::Parquet,
        "conll" | "iob" | "bio" => InputFormat::Conll,
        _ => bail!(
            "{}: cannot tell the format from the extension '.{extension}'; set ingest.format (or --format) to csv, tsv, jsonl, parquet or conll",
            path.display()
        ),
    })
}

/// Reads a whole file into memory (`ingest`, which must see every row to split them).
pub fn read_records(path: &Path, options: &ReadOptions, columns: &ColumnMap, progress: &Progress) -> Result<Records> {
    let bar = progress.file(path);
    let mut records = Records::default();
    let totals = for_each_chunk(path, options, columns, usize::MAX, &bar, &mut |chunk| {
        records = chunk;
        Ok(())
    })?;
    bar.finish_and_clear();
    records.rows_read = totals.rows_read;
    records.dropped_no_label = totals.dropped_no_label;
    Ok(records)
}

/// Row counts over a whole file read by [`for_each_chunk`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadTotals {
    /// Data rows handed over or dropped, before any were dropped.
    pub rows_read: usize,
    /// Rows whose score no rule turned into a label.
    pub dropped_no_label: usize,
    /// Rows left to the other shards of a sharded read.
    pub rows_in_other_shards: usize,
}

impl ReadTotals {
    /// Data rows in the whole file, every shard's.
    pub fn rows_in_file(&self) -> usize {
        self.rows_read + self.rows_in_other_shards
    }
}

/// Streams a file: hands `on_chunk` up to `chunk_rows` records at a time (ids,
/// texts, labels; the counts live in the returned totals), so `predict` works
/// on a file of any size in bounded memory. `bar` counts the file's bytes.
///
/// A bad row stops the read with an error naming it; chunks before it have
/// already been handed over, so callers that write must stage their output.
pub fn for_each_chunk(
    path: &Path,
    options: &ReadOptions,
    columns: &ColumnMap,
    chunk_rows: usize,
    bar: &ProgressBar,
    on_chunk: &mut dyn FnMut(Records) -> Result<()>,
) -> Result<ReadTotals> {
    for_each_chunk_of_shard(path, options, columns, chunk_rows, Shard::WHOLE, bar, on_chunk)
}

/// [`for_each_chunk`] over one shard of the file: of a Parquet file, the row
/// groups `shard` owns (the others are never decoded); of a text file, every
/// `shard.count`-th chunk of `chunk_rows` rows (the whole file is parsed, so
/// a bad row fails every shard alike, but only this shard's chunks are handed
/// over). Row numbers and default ids are the whole file's, so the shards
/// together hand over every row exactly once, as one unsharded read would.
pub fn for_each_chunk_of_shard(
    path: &Path,
    options: &ReadOptions,
    columns: &ColumnMap,
    chunk_rows: usize,
    shard: Shard,
    bar: &ProgressBar,
    on_chunk: &mut dyn FnMut(Records) -> Result<()>,
) -> Result<ReadTotals> {
    let format = resolve_format(path, options.format)?;
    let mut sink = RecordSink {
        path,
        columns,
        chunk_rows: chunk_rows.max(1),
        on_chunk,
        records: Records::default(),
        totals: ReadTotals::default(),
        bar,
        chunk_shard: (format != InputFormat::Parquet).then_some(shard),
        chunks: 0,
    };
    match format {
        InputFormat::Csv => read_delimited(path, b',', options, &mut sink)?,
        InputFormat::Tsv => read_delimited(path, b'\t', options, &mut sink)?,
        InputFormat::Jsonl => read_jsonl(path, &mut sink)?,
        InputFormat::Parquet => crate::parquet::guarded(path, || read_parquet_file(path, shard, &mut sink))?,
        InputFormat::Conll => bail!(
            "{}: CoNLL files hold tagged words, not labelled texts; read them with task = \"token_classification\"",
            path.display()
        ),
        InputFormat::Auto => unreachable!("resolve_format never returns Auto"),
    }
    sink.flush()?;
    if sink.totals.rows_in_file() == 0 {
        bail!(
            "{}: no data rows (the file is empty{})",
            path.display(),
            if options.has_header { " or has only a header" } else { "" }
        );
    }
    Ok(sink.totals)
}

/// Checks and collects one row's fields, whatever the format.
struct RecordSink<'a> {
    path: &'a Path,
    columns: &'a ColumnMap<'a>,
    chunk_rows: usize,
    on_chunk: &'a mut dyn FnMut(Records) -> Result<()>,
    /// The chunk being filled.
    records: Records,
    totals: ReadTotals,
    bar: &'a ProgressBar,
    /// Text formats, sharded by chunk: only the chunks this shard owns are handed over.
    chunk_shard: Option<Shard>,
    /// Chunks filled so far.
    chunks: usize,
}

impl<'a> RecordSink<'a> {
    /// Counts the chunk collected so far into the totals (this shard's, or the
    /// others'), and hands it over if it has records and is this shard's.
    fn flush(&mut self) -> Result<()> {
        let records = std::mem::take(&mut self.records);
        let owned = self.chunk_shard.is_none_or(|shard| shard.owns(self.chunks));
        if owned {
            self.totals.rows_read += records.rows_read;
            self.totals.dropped_no_label += records.dropped_no_label;
        } else {
            self.totals.rows_in_other_shards += records.rows_read;
        }
        if records.is_empty() {
            return Ok(());
        }
        self.chunks += 1;
        if owned { (self.on_chunk)(records) } else { Ok(()) }
    }

    /// Moves the bar to `byte` every [`PROGRESS_EVERY`] rows, or every chunk
    /// when chunks are smaller: often enough to move it, rare enough to cost nothing.
    fn at_byte(&self, byte: u64) {
        let rows = self.totals.rows_in_file() + self.records.rows_read;
        if rows.is_multiple_of(PROGRESS_EVERY.min(self.chunk_rows)) {
            self.bar.set_position(byte);
        }
    }

    /// The columns to look up, in order: text, label, then id if any.
    fn wanted(&self) -> Vec<&'a str> {
        let mut wanted = vec![self.columns.text, self.columns.label.column(self.columns.text)];
        wanted.extend(self.columns.id);
        wanted
    }

    fn missing_column(&self, column: &str, found: &[String]) -> anyhow::Error {
        anyhow::anyhow!(
            "{}: no column '{column}' (columns found: {}); set the column names in the config (text_column, label_column, score_column, id_column)",
            self.path.display(),
            found.join(", ")
        )
    }

    /// `row` counts data rows from 1; `at` says where it is (line, byte offset).
    fn push(
        &mut self,
        row: usize,
        at: &str,
        text: Option<String>,
        label: Option<String>,
        id: Option<String>,
    ) -> Result<()> {
        self.records.rows_read += 1;
        let path = self.path.display();
        let label_column = self.columns.label.column(self.columns.text);
        let label = match (self.columns.label, label.filter(|l| !l.trim().is_empty())) {
            (LabelSource::None, _) => String::new(),
            (_, Some(label)) => label,
            (_, None) => bail!("{path}: row {row}{at}: column '{label_column}' is empty; every row needs a label"),
        };
        let label = match self.columns.label {
            LabelSource::Column(_) | LabelSource::None => label,
            LabelSource::Score { rules, .. } => {
                let score: f64 = label.trim().parse().map_err(|_| {
                    anyhow::anyhow!(
                        "{path}: row {row}{at}: column '{label_column}' should be a number, found '{label}'"
                    )
                })?;
                match ScoreRule::label_for(rules, score) {
                    Some(label) => label.to_owned(),
                    None => {
                        self.records.dropped_no_label += 1;
                        return Ok(());
                    }
                }
            }
        };
        let id = match (self.columns.id, id) {
            (None, _) => format!("{}-{row}", self.columns.id_prefix),
            (Some(_), Some(id)) if !id.is_empty() => id,
            (Some(column), _) => bail!("{path}: row {row}{at}: column '{column}' (the id) is empty"),
        };
        self.records.ids.push(id);
        self.records.texts.push(text.unwrap_or_default());
        self.records.labels.push(label);
        self.records.rows.push(row);
        if self.records.len() >= self.chunk_rows {
            self.flush()?;
        }
        Ok(())
    }
}

/// Rows between progress updates.
const PROGRESS_EVERY: usize = 16_384;

fn read_delimited(path: &Path, delimiter: u8, options: &ReadOptions, sink: &mut RecordSink) -> Result<()> {
    let mut reader = csv::ReaderBuilder::new()
        .delimiter(delimiter)
        .has_headers(options.has_header)
        .quoting(options.quoting)
        .from_path(path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    let names: Vec<String> = if options.has_header {
        let headers =
            reader.byte_headers().with_context(|| format!("{}: cannot read the header row", path.display()))?;
        headers.iter().map(|h| String::from_utf8_lossy(h).trim_start_matches('\u{feff}').trim().to_owned()).collect()
    } else {
        // Peek at the first record to learn the column count; csv keeps it for the loop below.
        let count = reader.byte_headers().map(|h| h.len()).unwrap_or(0);
        (1..=count).map(|i| format!("column_{i}")).collect()
    };
    if names.is_empty() {
        bail!("{}: no data rows (the file is empty)", path.display());
    }
    let indices = sink
        .wanted()
        .into_iter()
        .map(|column| names.iter().position(|n| n == column).ok_or_else(|| sink.missing_column(column, &names)))
        .collect::<Result<Vec<usize>>>()?;
    let wanted = sink.wanted();
    let mut record = csv::ByteRecord::new();
    let mut row = 0;
    loop {
        match reader.read_byte_record(&mut record) {
            Ok(false) => break,
            Ok(true) => {}
            Err(error) => {
                let at =
                    error.position().map(|p| format!(" (line {}, byte {})", p.line(), p.byte())).unwrap_or_default();
                bail!("{}: row {}{at}: {}", path.display(), row + 1, csv_error_text(&error));
            }
        }
        row += 1;
        let position = record.position().cloned();
        sink.at_byte(position.as_ref().map_or(0, |p| p.byte()));
        let at = position.as_ref().map(|p| format!(" (line {})", p.line())).unwrap_or_default();
        let mut fields = Vec::with_capacity(indices.len());
        for (&index, column) in indices.iter().zip(&wanted) {
            let bytes = record.get(index).unwrap_or_default();
            let text = std::str::from_utf8(bytes).map_err(|e| {
                let offset = position.as_ref().map_or(0, |p| p.byte()) as usize + e.valid_up_to();
                anyhow::anyhow!(
                    "{}: row {row}{at}, column '{column}': invalid UTF-8 near byte offset {offset}; kiln reads UTF-8 text (convert the file, e.g. with iconv)",
                    path.display()
                )
            })?;
            fields.push(text.to_owned());
        }
        let mut fields = fields.into_iter();
        let (text, label, id) = (fields.next(), fields.next(), fields.next());
        sink.push(row, &at, text, label, id)?;
    }
    Ok(())
}

fn csv_error_text(error: &csv::Error) -> String {
    match error.kind() {
        csv::ErrorKind::UnequalLengths { expected_len, len, .. } => {
            format!("has {len} fields where earlier rows have {expected_len} (a stray delimiter or quote?)")
        }
        csv::ErrorKind::Utf8 { err, .. } => format!("invalid UTF-8 in field {}", err.field() + 1),
        _ => error.to_string(),
    }
}

/// A UTF-8 text file a line at a time, for the line formats (JSONL here,
/// CoNLL and tagged JSONL in `tagged`): each line with its number and where
/// it ends; invalid UTF-8 is an error naming the line and byte offset.
pub(crate) struct LineReader<'p> {
    reader: BufReader<File>,
    path: &'p Path,
    number: usize,
    offset: u64,
    buffer: Vec<u8>,
}

/// One line, without its line ending.
pub(crate) struct Line<'a> {
    /// Counted from 1.
    pub number: usize,
    /// Bytes read so far, this line included (what a progress bar shows).
    pub end: u64,
    pub text: &'a str,
}

impl<'p> LineReader<'p> {
    pub(crate) fn open(path: &'p Path) -> Result<Self> {
        let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { reader: BufReader::with_capacity(1 << 20, file), path, number: 0, offset: 0, buffer: Vec::new() })
    }

    /// The next line, or `None` at the end of the file.
    pub(crate) fn next_line(&mut self) -> Result<Option<Line<'_>>> {
        self.buffer.clear();
        let read = self
            .reader
            .read_until(b'\n', &mut self.buffer)
            .with_context(|| format!("cannot read {}", self.path.display()))?;
        if read == 0 {
            return Ok(None);
        }
        self.number += 1;
        let start = self.offset;
        self.offset += read as u64;
        let text = std::str::from_utf8(&self.buffer).map_err(|e| {
            anyhow::anyhow!(
                "{}: line {}: invalid UTF-8 at byte offset {}; kiln reads UTF-8 text",
                self.path.display(),
                self.number,
                start + e.valid_up_to() as u64
            )
        })?;
        Ok(Some(Line { number: self.number, end: self.offset, text: text.trim_end_matches(['\n', '\r']) }))
    }
}

fn read_jsonl(path: &Path, sink: &mut RecordSink) -> Result<()> {
    let mut lines = LineReader::open(path)?;
    let wanted = sink.wanted();
    let mut row = 0usize;
    while let Some(Line { number: line_number, end, text }) = lines.next_line()? {
        if text.trim().is_empty() {
            continue;
        }
        row += 1;
        sink.at_byte(end);
        let object: serde_json::Map<String, serde_json::Value> = serde_json::from_str(text)
            .with_context(|| format!("{}: line {line_number}: not a JSON object", path.display()))?;
        let mut fields = Vec::with_capacity(wanted.len());
        for column in &wanted {
            let value = match object.get(*column) {
                None => {
                    let found: Vec<String> = object.keys().cloned().collect();
                    return Err(sink.missing_column(column, &found)).with_context(|| format!("line {line_number}"));
                }
                Some(serde_json::Value::Null) => None,
                Some(serde_json::Value::String(s)) => Some(s.clone()),
                Some(serde_json::Value::Number(n)) => Some(n.to_string()),
                Some(serde_json::Value::Bool(b)) => Some(b.to_string()),
                Some(other) => bail!(
                    "{}: line {line_number}: field '{column}' should be a string or number, found {other}",
                    path.display()
                ),
            };
            fields.push(value);
        }
        let mut fields = fields.into_iter();
        let (text, label, id) = (fields.next().flatten(), fields.next().flatten(), fields.next().flatten());
        sink.push(row, &format!(" (line {line_number})"), text, label, id)?;
    }
    Ok(())
}

/// Parquet is read a batch of rows at a time (only the wanted columns), so a
/// large file streams like the text formats. Any column Arrow can cast to text
/// (numbers included) can be the text, label or id.
fn read_parquet_file(path: &Path, shard: Shard, sink: &mut RecordSink) -> Result<()> {
    let file = File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let not_parquet = || format!("{} is not a readable Parquet file", path.display());
    // The footer is read once; each row group this shard owns gets a reader of its own.
    let reader_metadata = ArrowReaderMetadata::load(&file, ArrowReaderOptions::default()).with_context(not_parquet)?;
    let names: Vec<String> = reader_metadata.schema().fields().iter().map(|f| f.name().clone()).collect();
    let wanted = sink.wanted();
    for column in &wanted {
        if !names.iter().any(|n| n == column) {
            return Err(sink.missing_column(column, &names));
        }
    }
    let roots = names.iter().enumerate().filter(|(_, n)| wanted.contains(&n.as_str())).map(|(index, _)| index);
    let projection = ProjectionMask::roots(reader_metadata.parquet_schema(), roots);
    let metadata = Arc::clone(reader_metadata.metadata());
    let total = usize::try_from(metadata.file_metadata().num_rows()).unwrap_or(0);
    let size = sink.bar.length().unwrap_or(0);
    // Each row group's first row, so a shard's rows keep the whole file's numbers.
    let mut first_row = 0;
    for (group, group_metadata) in metadata.row_groups().iter().enumerate() {
        let group_rows = usize::try_from(group_metadata.num_rows()).unwrap_or(0);
        if !shard.owns(group) {
            sink.totals.rows_in_other_shards += group_rows;
            first_row += group_rows;
            continue;
        }
        let input = file.try_clone().with_context(|| format!("cannot read {}", path.display()))?;
        let batches = ParquetRecordBatchReaderBuilder::new_with_metadata(input, reader_metadata.clone())
            .with_row_groups(vec![group])
            .with_projection(projection.clone())
            .with_batch_size(sink.chunk_rows.clamp(1, 65_536))
            .build()
            .with_context(not_parquet)?;
        let mut offset = first_row;
        for batch in batches {
            let batch = batch.with_context(not_parquet)?;
            let mut columns = Vec::new();
            for column in &wanted {
                let array = batch.column_by_name(column).with_context(not_parquet)?;
                let text = arrow_cast::cast(array, &DataType::Utf8)
                    .with_context(|| format!("{}: column '{column}' cannot be read as text", path.display()))?;
                columns.push(text);
            }
            for index in 0..batch.num_rows() {
                let mut fields = columns.iter().map(|c| {
                    let strings = c.as_string::<i32>();
                    strings.is_valid(index).then(|| strings.value(index).to_owned())
                });
                let (text, label, id) = (fields.next().flatten(), fields.next().flatten(), fields.next().flatten());
                sink.push(offset + index + 1, "", text, label, id)?;
            }
            offset += batch.num_rows();
            sink.bar.set_position(size * offset as u64 / total.max(1) as u64);
        }
        first_row += group_rows;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow_array::{ArrayRef, Int64Array, StringArray};

    use super::*;

    /// Writes a Parquet file as another tool would, `row_group` rows a group.
    fn write_parquet(path: &Path, columns: Vec<(&str, ArrayRef)>, row_group: usize) {
        let batch = crate::parquet::batch(columns).expect("batch");
        let properties =
            parquet::file::properties::WriterProperties::builder().set_max_row_group_size(row_group).build();
        let file = File::create(path).expect("create");
        let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
        writer.write(&batch).expect("write");
        writer.close().expect("close");
    }

    fn strings<T: AsRef<str>>(values: &[T]) -> ArrayRef {
        Arc::new(StringArray::from_iter_values(values.iter().map(AsRef::as_ref)))
    }

    fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).expect("write");
        path
    }

    const PLAIN: ColumnMap =
        ColumnMap { text: "text", label: LabelSource::Column("label"), id: None, id_prefix: "train" };

    fn options() -> ReadOptions {
        ReadOptions { format: InputFormat::Auto, has_header: true, quoting: true }
    }

    #[test]
    fn csv_with_quoted_commas_newlines_and_crlf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path =
            write(dir.path(), "a.csv", b"text,label\r\n\"hello, world\",greet\r\n\"two\nlines\",multi\r\nplain,x\r\n");
        let records = read_records(&path, &options(), &PLAIN, &Progress::hidden()).expect("reads");
        assert_eq!(records.texts, ["hello, world", "two\nlines", "plain"]);
        assert_eq!(records.labels, ["greet", "multi", "x"]);
        assert_eq!(records.ids, ["train-1", "train-2", "train-3"]);
    }

    #[test]
    fn tsv_without_header_and_lf() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "a.tsv", b"7\tgood film\tpos\n8\tbad film\tneg\n");
        let columns = ColumnMap {
            text: "column_2",
            label: LabelSource::Column("column_3"),
            id: Some("column_1"),
            id_prefix: "train",
        };
        let records =
            read_records(&path, &ReadOptions { has_header: false, ..options() }, &columns, &Progress::hidden())
                .expect("reads");
        assert_eq!(records.ids, ["7", "8"]);
        assert_eq!(records.texts, ["good film", "bad film"]);
        assert_eq!(records.labels, ["pos", "neg"]);
    }

    #[test]
    fn tsv_with_a_stray_quote_reads_when_quoting_is_off() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "a.tsv", b"text\tlabel\r\n\"quoted\" start and a 9\" TV\tx\r\nnext\ty\r\n");
        let records = read_records(&path, &ReadOptions { quoting: false, ..options() }, &PLAIN, &Progress::hidden())
            .expect("reads");
        assert_eq!(records.texts, ["\"quoted\" start and a 9\" TV", "next"]);
    }

    #[test]
    fn scores_become_labels_and_unmatched_rows_are_counted() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(dir.path(), "a.tsv", b"id\tsentiment\ttext\r\n1\t2.3\tgreat\r\n2\t-0.6\tmeh\r\n3\t0\tok\r\n");
        let rules: Vec<ScoreRule> = ["negative < 0", "positive > 0"].iter().map(|r| r.parse().expect("rule")).collect();
        let columns = ColumnMap {
            text: "text",
            label: LabelSource::Score { column: "sentiment", rules: &rules },
            id: Some("id"),
            id_prefix: "train",
        };
        let records = read_records(&path, &options(), &columns, &Progress::hidden()).expect("reads");
        assert_eq!(records.labels, ["positive", "negative"]);
        assert_eq!(records.ids, ["1", "2"]);
        assert_eq!((records.rows_read, records.dropped_no_label), (3, 1));

        let bad = write(dir.path(), "b.tsv", b"id\tsentiment\ttext\n1\tgood\tgreat\n");
        let message =
            read_records(&bad, &options(), &columns, &Progress::hidden()).expect_err("not a number").to_string();
        assert!(
            message.contains("row 1") && message.contains("'sentiment'") && message.contains("number"),
            "{message}"
        );
    }

    #[test]
    fn jsonl_with_numbers_nulls_and_blank_lines() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write(
            dir.path(),
            "a.jsonl",
            b"{\"text\": \"hi\", \"label\": 3}\n\n{\"text\": null, \"label\": \"x\", \"extra\": [1]}\n",
        );
        let records = read_records(&path, &options(), &PLAIN, &Progress::hidden()).expect("reads");
        assert_eq!(records.texts, ["hi", ""]);
        assert_eq!(records.labels, ["3", "x"]);
        assert_eq!(records.ids, ["train-1", "train-2"]);

        let bad = write(dir.path(), "b.jsonl", b"{\"text\": \"hi\", \"label\": null}\n");
        let message = read_records(&bad, &options(), &PLAIN, &Progress::hidden()).expect_err("null label").to_string();
        assert!(message.contains("line 1") && message.contains("'label' is empty"), "{message}");
        let bad = write(dir.path(), "c.jsonl", b"{\"text\": \"hi\", \"label\": \"a\"}\n[1,2]\n");
        assert!(
            read_records(&bad, &options(), &PLAIN, &Progress::hidden())
                .expect_err("array")
                .to_string()
                .contains("line 2")
        );
    }

    #[test]
    fn parquet_round_trip() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("a.parquet");
        let numbers = |values: [i64; 2]| Arc::new(Int64Array::from(values.to_vec())) as ArrayRef;
        write_parquet(
            &path,
            vec![("text", strings(&["a", "b"])), ("label", numbers([1, 2])), ("uid", numbers([10, 11]))],
            8,
        );
        let columns = ColumnMap { id: Some("uid"), ..PLAIN };
        let records = read_records(&path, &options(), &columns, &Progress::hidden()).expect("reads");
        assert_eq!(
            (records.ids, records.labels),
            (vec!["10".to_owned(), "11".into()], vec!["1".to_owned(), "2".into()])
        );
    }

    /// The shards of each format together hand over every row exactly once,
    /// with the whole file's row numbers and ids; a shard that owns none of a
    /// Parquet file's row groups gets nothing, and no error.
    #[test]
    fn shards_cover_every_row_exactly_once_in_each_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let texts: Vec<String> = (1..=11).map(|i| format!("text {i}")).collect();
        let delimited = |separator: &str| -> String {
            std::iter::once(format!("text{separator}label"))
                .chain(texts.iter().map(|t| format!("{t}{separator}x")))
                .collect::<Vec<_>>()
                .join("\n")
        };
        let jsonl: Vec<String> = texts.iter().map(|t| format!("{{\"text\": \"{t}\", \"label\": \"x\"}}")).collect();
        let parquet = dir.path().join("a.parquet");
        write_parquet(&parquet, vec![("text", strings(&texts)), ("label", strings(&["x"; 11]))], 3);
        let paths = [
            write(dir.path(), "a.csv", delimited(",").as_bytes()),
            write(dir.path(), "a.tsv", delimited("\t").as_bytes()),
            write(dir.path(), "a.jsonl", jsonl.join("\n").as_bytes()),
            parquet,
        ];
        let bar = ProgressBar::hidden();
        for path in &paths {
            for count in [1, 2, 3, 5] {
                let mut rows = Vec::new();
                for index in 0..count {
                    let shard = Shard::new(index, count).expect("shard");
                    let mut own = Vec::new();
                    let totals = for_each_chunk_of_shard(path, &options(), &PLAIN, 2, shard, &bar, &mut |chunk| {
                        for ((row, id), text) in chunk.rows.iter().zip(&chunk.ids).zip(&chunk.texts) {
                            assert_eq!(
                                (id.as_str(), text.as_str()),
                                (format!("train-{row}").as_str(), texts[row - 1].as_str())
                            );
                        }
                        own.extend(chunk.rows);
                        Ok(())
                    })
                    .expect("reads");
                    assert_eq!(totals.rows_in_file(), 11, "{} shard {shard}", path.display());
                    assert_eq!(totals.rows_read, own.len(), "{} shard {shard}", path.display());
                    assert!(own.is_sorted(), "a shard's rows come in file order");
                    rows.extend(own);
                }
                rows.sort_unstable();
                assert_eq!(rows, (1..=11).collect::<Vec<_>>(), "{} in {count} shards", path.display());
            }
        }
        // Four row groups of 3, 3, 3, 2 rows: shard 4 of 5 owns none of them.
        let shard = Shard::new(4, 5).expect("shard");
        let mut chunks = 0;
        let totals = for_each_chunk_of_shard(&paths[3], &options(), &PLAIN, 2, shard, &bar, &mut |_| {
            chunks += 1;
            Ok(())
        })
        .expect("an idle shard is not an error");
        assert_eq!((chunks, totals.rows_read, totals.rows_in_other_shards), (0, 0, 11));
    }

    /// Every format streams the same rows, in order, `chunk_rows` at a time,
    /// and row numbers in errors count from the file's start, not the chunk's.
    #[test]
    fn chunks_cover_every_row_in_order_for_each_format() {
        let dir = tempfile::tempdir().expect("tempdir");
        let texts: Vec<String> = (1..=10).map(|i| format!("text {i}")).collect();
        let labels: Vec<String> = (1..=10).map(|i| format!("l{}", i % 3)).collect();
        let csv: String = std::iter::once("text,label".to_owned())
            .chain(texts.iter().zip(&labels).map(|(t, l)| format!("{t},{l}")))
            .collect::<Vec<_>>()
            .join("\n");
        let jsonl: String = texts
            .iter()
            .zip(&labels)
            .map(|(t, l)| format!("{{\"text\": \"{t}\", \"label\": \"{l}\"}}"))
            .collect::<Vec<_>>()
            .join("\n");
        let parquet = dir.path().join("a.parquet");
        // Row groups of 4 so slices cross row-group boundaries.
        write_parquet(&parquet, vec![("label", strings(&labels)), ("text", strings(&texts))], 4);
        let paths =
            [write(dir.path(), "a.csv", csv.as_bytes()), write(dir.path(), "a.jsonl", jsonl.as_bytes()), parquet];
        let bar = ProgressBar::hidden();
        for path in &paths {
            let mut sizes = Vec::new();
            let mut seen = Records::default();
            let totals = for_each_chunk(path, &options(), &PLAIN, 3, &bar, &mut |chunk| {
                sizes.push(chunk.len());
                seen.ids.extend(chunk.ids);
                seen.texts.extend(chunk.texts);
                seen.labels.extend(chunk.labels);
                Ok(())
            })
            .expect("reads");
            assert_eq!(sizes, [3, 3, 3, 1], "{}", path.display());
            assert_eq!(seen.texts, texts, "{}", path.display());
            assert_eq!(seen.labels, labels, "{}", path.display());
            assert_eq!(seen.ids, (1..=10).map(|i| format!("train-{i}")).collect::<Vec<_>>());
            assert_eq!(totals, ReadTotals { rows_read: 10, dropped_no_label: 0, rows_in_other_shards: 0 });
        }

        let holed = dir.path().join("b.parquet");
        let labels: ArrayRef = Arc::new((1..=10).map(|i| (i != 8).then_some("x")).collect::<StringArray>());
        write_parquet(&holed, vec![("text", strings(&texts)), ("label", labels)], 8);
        let message =
            for_each_chunk(&holed, &options(), &PLAIN, 3, &bar, &mut |_| Ok(())).expect_err("hole").to_string();
        assert!(message.contains("row 8") && message.contains("'label' is empty"), "{message}");
    }

    #[test]
    fn bad_inputs_name_file_row_and_column() {
        let dir = tempfile::tempdir().expect("tempdir");
        let cases: Vec<(&str, &[u8], &[&str])> = vec![
            ("missing.csv", b"body,label\nhi,x\n", &["missing.csv", "no column 'text'", "body, label"]),
            ("empty.csv", b"", &["empty.csv", "no data rows"]),
            ("header.csv", b"text,label\n", &["no data rows"]),
            ("nolabel.csv", b"text,label\nhi,x\nyo,\n", &["row 2", "line 3", "'label' is empty"]),
            ("bytes.csv", b"text,label\nhi,x\nb\xffad,y\n", &["row 2", "'text'", "invalid UTF-8", "byte offset 17"]),
            ("ragged.csv", b"text,label\nhi,x\nyo,y,z\n", &["row 2", "3 fields"]),
            ("data.xlsx", b"whatever", &["data.xlsx", "extension", "ingest.format"]),
        ];
        for (name, bytes, needles) in cases {
            let path = write(dir.path(), name, bytes);
            let message =
                format!("{:#}", read_records(&path, &options(), &PLAIN, &Progress::hidden()).expect_err(name));
            for needle in needles {
                assert!(message.contains(needle), "{name}: '{needle}' not in: {message}");
            }
        }
        let message = read_records(&dir.path().join("nope.csv"), &options(), &PLAIN, &Progress::hidden())
            .expect_err("missing")
            .to_string();
        assert!(message.contains("nope.csv"), "{message}");
    }
}
