//! The Parquet files stages exchange: one place for their column names and types.
//!
//! | stage output            | columns                                                        |
//! |-------------------------|----------------------------------------------------------------|
//! | `data/raw/*.parquet`    | id: str, text: str, label: str, [label_probs: list<f32>], [weight: f32] |
//! | `data/interim/*.parquet`| id: str, text: str, label: str, [label_probs: list<f32>], [weight: f32] |
//! | `data/labelled/*.parquet` (`label`) | id: str, text: str, label: str, label_probs: list<f32>, [weight: f32] |
//! | `data/processed/*.parquet` | id: str, input_ids: list<u32>, [token_type_ids: list<u8>], length: u32, label_id: u32, [label_probs: list<f32>], [weight: f32] |
//!
//! `label_probs` is a weakly labelled row's distribution over the labels of
//! the `labels.json` beside it (in its order); `label` is its most probable
//! label. Before `label`, a row's distribution is a label it came with that
//! `label` keeps (`retrain`'s feedback rows, one-hot); an empty list is none.
//! `weight` is how much a row counts in the training loss (absent: 1), as
//! `retrain` weighs the served texts the functions labelled.
//!
//! Token classification (`task = "token_classification"`) keeps words and tags instead:
//!
//! | stage output            | columns                                                        |
//! |-------------------------|----------------------------------------------------------------|
//! | `data/raw/*.parquet`    | id: str, tokens: list<str>, tags: list<str> (IOB2, one per word) |
//! | `data/interim/*.parquet`| id: str, tokens: list<str>, tags: list<str>                    |
//! | `data/processed/*.parquet` | id: str, window: u32, input_ids: list<u32>, [token_type_ids: list<u8>], length: u32, labels: list<i32> (-100: ignored), word_ids: list<i32> (-1: special) |

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use arrow_array::{
    Array, ArrayRef, ArrowPrimitiveType, Float32Array, ListArray, PrimitiveArray, RecordBatch, StringArray,
};
use arrow_buffer::{OffsetBuffer, ScalarBuffer};
use arrow_schema::{DataType, Field};
use kiln_core::{Split, StagedOutput};

use crate::parquet::{batch, read_parquet, write_parquet};

pub const ID: &str = "id";
pub const TEXT: &str = "text";
pub const LABEL: &str = "label";
pub const INPUT_IDS: &str = "input_ids";
pub const TOKEN_TYPE_IDS: &str = "token_type_ids";
pub const LENGTH: &str = "length";
pub const LABEL_ID: &str = "label_id";
pub const LABEL_PROBS: &str = "label_probs";
pub const WEIGHT: &str = "weight";

/// Each row's `label_probs`: a distribution over the labels of `labels.json`,
/// or empty where a row has none (a gold row among weak ones).
pub type LabelProbs = Vec<Vec<f32>>;
pub const TOKENS: &str = "tokens";
pub const TAGS: &str = "tags";
pub const WINDOW: &str = "window";
pub const LABELS: &str = "labels";
pub const WORD_IDS: &str = "word_ids";
/// Prediction outputs (`eval`'s and `predict`'s): the predicted label (a tag
/// list for a tagger), its probability, every class's probability, and
/// `predict`'s top-k columns, `label_<rank>` and `probability_<rank>`.
pub const PREDICTED: &str = "predicted";
pub const PROBABILITY: &str = "probability";
pub const PROBABILITIES: &str = "probabilities";

/// `predict`'s `rank`-th label and probability columns (from 1).
pub fn top_k_columns(rank: usize) -> (String, String) {
    (format!("label_{rank}"), format!("{PROBABILITY}_{rank}"))
}

/// The column types kiln's tables use. Strings and lists are accepted in any
/// of Arrow's layouts (a file written by pandas or polars uses other ones).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ColumnType {
    Str,
    U32,
    F32,
    ListU32,
    ListU8,
    ListI32,
    ListStr,
    ListF32,
}

impl ColumnType {
    pub fn name(self) -> &'static str {
        match self {
            Self::Str => "str",
            Self::U32 => "u32",
            Self::F32 => "f32",
            Self::ListU32 => "list<u32>",
            Self::ListU8 => "list<u8>",
            Self::ListI32 => "list<i32>",
            Self::ListStr => "list<str>",
            Self::ListF32 => "list<f32>",
        }
    }

    fn accepts(self, found: &DataType) -> bool {
        let list_of = |item: &DataType| match found {
            DataType::List(field) | DataType::LargeList(field) => field.data_type() == item,
            _ => false,
        };
        match self {
            Self::Str => matches!(found, DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View),
            Self::U32 => found == &DataType::UInt32,
            Self::F32 => matches!(found, DataType::Float32 | DataType::Float64),
            Self::ListU32 => list_of(&DataType::UInt32),
            Self::ListU8 => list_of(&DataType::UInt8),
            Self::ListI32 => list_of(&DataType::Int32),
            Self::ListStr => list_of(&DataType::Utf8) || list_of(&DataType::LargeUtf8) || list_of(&DataType::Utf8View),
            Self::ListF32 => list_of(&DataType::Float32) || list_of(&DataType::Float64),
        }
    }
}

/// Columns of the raw and interim text tables.
pub const TEXT_TABLE: [(&str, ColumnType); 3] =
    [(ID, ColumnType::Str), (TEXT, ColumnType::Str), (LABEL, ColumnType::Str)];

/// Columns of the processed (tokenized) tables; `token_type_ids` only for models that take them.
pub fn processed_table(with_token_types: bool) -> Vec<(&'static str, ColumnType)> {
    let mut columns = vec![(ID, ColumnType::Str), (INPUT_IDS, ColumnType::ListU32)];
    if with_token_types {
        columns.push((TOKEN_TYPE_IDS, ColumnType::ListU8));
    }
    columns.extend([(LENGTH, ColumnType::U32), (LABEL_ID, ColumnType::U32)]);
    columns
}

/// Columns of the processed tables of token classification.
pub fn tagged_processed_table(with_token_types: bool) -> Vec<(&'static str, ColumnType)> {
    let mut columns = vec![(ID, ColumnType::Str), (WINDOW, ColumnType::U32), (INPUT_IDS, ColumnType::ListU32)];
    if with_token_types {
        columns.push((TOKEN_TYPE_IDS, ColumnType::ListU8));
    }
    columns.extend([(LENGTH, ColumnType::U32), (LABELS, ColumnType::ListI32), (WORD_IDS, ColumnType::ListI32)]);
    columns
}

/// A raw, interim or labelled split (`ingest`'s, `clean`'s and `label`'s
/// output): one row per text. Its optional columns travel with the rows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TextTable {
    pub ids: Vec<String>,
    pub texts: Vec<String>,
    pub labels: Vec<String>,
    /// `label_probs`, when the table has the column.
    pub label_probs: Option<LabelProbs>,
    /// `weight`, when the table has the column.
    pub weights: Option<Vec<f32>>,
}

impl TextTable {
    pub fn len(&self) -> usize {
        self.texts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.texts.is_empty()
    }

    /// Keeps the rows whose `keep` is true, in order; returns how many went.
    pub fn retain(&mut self, keep: &[bool]) -> usize {
        let before = self.len();
        for column in [&mut self.ids, &mut self.texts, &mut self.labels] {
            retain_where(column, keep);
        }
        if let Some(probs) = &mut self.label_probs {
            retain_where(probs, keep);
        }
        if let Some(weights) = &mut self.weights {
            retain_where(weights, keep);
        }
        before - self.len()
    }

    /// Adds `other`'s rows after this table's; a column only one side has
    /// gets its "none" value on the other's rows (no distribution, weight 1).
    pub fn append(&mut self, mut other: TextTable) {
        let (rows, added) = (self.len(), other.len());
        fn join<T: Clone>(ours: &mut Option<Vec<T>>, theirs: Option<Vec<T>>, rows: usize, added: usize, none: T) {
            if ours.is_none() && theirs.is_none() {
                return;
            }
            let mut column = ours.take().unwrap_or_else(|| vec![none.clone(); rows]);
            column.extend(theirs.unwrap_or_else(|| vec![none; added]));
            *ours = Some(column);
        }
        join(&mut self.label_probs, other.label_probs.take(), rows, added, Vec::new());
        join(&mut self.weights, other.weights.take(), rows, added, 1.0);
        self.ids.append(&mut other.ids);
        self.texts.append(&mut other.texts);
        self.labels.append(&mut other.labels);
    }

    /// Reads and checks a text table that `made_by` wrote.
    pub fn read(path: &Path, made_by: &str) -> Result<Self> {
        Self::from_batch(&read_parquet(path, made_by)?, path)
    }

    /// Checks and takes the rows of `batch`, read from `path`.
    pub fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Self> {
        validate(batch, path, &TEXT_TABLE)?;
        Ok(Self {
            ids: strings(batch, ID, path)?,
            texts: strings(batch, TEXT, path)?,
            labels: strings(batch, LABEL, path)?,
            label_probs: label_probs(batch, path)?,
            weights: weights(batch, path)?,
        })
    }

    pub fn write(&self, staged: &mut StagedOutput, name: &str) -> Result<()> {
        let column = |values: &[String]| Arc::new(StringArray::from_iter_values(values)) as ArrayRef;
        let mut columns = vec![(ID, column(&self.ids)), (TEXT, column(&self.texts)), (LABEL, column(&self.labels))];
        if let Some(probs) = &self.label_probs {
            columns.push((LABEL_PROBS, list_column::<Float32Type>(probs.iter().map(Vec::as_slice))));
        }
        if let Some(weights) = &self.weights {
            columns.push((WEIGHT, Arc::new(Float32Array::from(weights.clone())) as ArrayRef));
        }
        write_parquet(staged, name, &batch(columns)?)
    }
}

/// A table's `weight` column (`None` when it has none): finite, at least 0.
pub fn weights(batch: &RecordBatch, path: &Path) -> Result<Option<Vec<f32>>> {
    let Some(array) = batch.column_by_name(WEIGHT) else { return Ok(None) };
    validate(batch, path, &[(WEIGHT, ColumnType::F32)])?;
    let array = arrow_cast::cast(array, &DataType::Float32)
        .with_context(|| format!("{}: column '{WEIGHT}' cannot be read as numbers", path.display()))?;
    let weights = array.as_primitive::<Float32Type>().values().to_vec();
    if let Some((row, weight)) = weights.iter().enumerate().find(|(_, w)| !w.is_finite() || **w < 0.0) {
        bail!("{}: row {}: weight {weight} is not a finite number of at least 0", path.display(), row + 1);
    }
    Ok(Some(weights))
}

/// A table's `label_probs` (`None` when it has no such column): each row a
/// distribution, finite shares in [0, 1] that sum to 1, all rows as long, or
/// empty (that row has none).
pub fn label_probs(batch: &RecordBatch, path: &Path) -> Result<Option<LabelProbs>> {
    if batch.column_by_name(LABEL_PROBS).is_none() {
        return Ok(None);
    }
    validate(batch, path, &[(LABEL_PROBS, ColumnType::ListF32)])?;
    let array = batch.column_by_name(LABEL_PROBS).context("checked above")?;
    let list = arrow_cast::cast(array, &DataType::new_list(DataType::Float32, true))
        .with_context(|| format!("{}: column '{LABEL_PROBS}' cannot be read as lists of numbers", path.display()))?;
    let list = list.as_list::<i32>();
    let values = list.values().as_primitive::<Float32Type>().values();
    let rows: Vec<Vec<f32>> =
        list.offsets().windows(2).map(|ends| values[ends[0] as usize..ends[1] as usize].to_vec()).collect();
    let width = rows.iter().map(Vec::len).find(|&n| n > 0).unwrap_or(0);
    for (row, probs) in rows.iter().enumerate() {
        if probs.is_empty() {
            continue;
        }
        let sum: f32 = probs.iter().sum();
        if probs.len() != width || width < 2 {
            bail!(
                "{}: row {}: label_probs has {} values, expected {} (one per label, at least two)",
                path.display(),
                row + 1,
                probs.len(),
                width.max(2)
            );
        }
        if probs.iter().any(|p| !p.is_finite() || !(0.0..=1.0).contains(p)) || (sum - 1.0).abs() > 1e-3 {
            bail!(
                "{}: row {}: label_probs {probs:?} is not a distribution (shares in [0, 1] that sum to 1)",
                path.display(),
                row + 1
            );
        }
    }
    Ok(Some(rows))
}

/// Columns of the raw and interim tagged tables (token classification).
pub const TAGGED_TABLE: [(&str, ColumnType); 3] =
    [(ID, ColumnType::Str), (TOKENS, ColumnType::ListStr), (TAGS, ColumnType::ListStr)];

/// A raw or interim split for token classification: one row per sentence,
/// its words and their IOB2 tags, as many of one as of the other.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaggedTable {
    pub ids: Vec<String>,
    pub tokens: Vec<Vec<String>>,
    pub tags: Vec<Vec<String>>,
}

impl TaggedTable {
    pub fn len(&self) -> usize {
        self.tokens.len()
    }

    pub fn is_empty(&self) -> bool {
        self.tokens.is_empty()
    }

    /// Adds `other`'s rows after these.
    pub fn append(&mut self, mut other: Self) {
        self.ids.append(&mut other.ids);
        self.tokens.append(&mut other.tokens);
        self.tags.append(&mut other.tags);
    }

    /// Keeps the rows whose `keep` is true, in order; returns how many went.
    pub fn retain(&mut self, keep: &[bool]) -> usize {
        let before = self.len();
        retain_where(&mut self.ids, keep);
        retain_where(&mut self.tokens, keep);
        retain_where(&mut self.tags, keep);
        before - self.len()
    }

    pub fn read(path: &Path, made_by: &str) -> Result<Self> {
        Self::from_batch(&read_parquet(path, made_by)?, path)
    }

    /// A table read already; `path` names it in errors.
    pub fn from_batch(batch: &RecordBatch, path: &Path) -> Result<Self> {
        validate(batch, path, &TAGGED_TABLE)?;
        let table = Self {
            ids: strings(batch, ID, path)?,
            tokens: string_lists(batch, TOKENS, path)?,
            tags: string_lists(batch, TAGS, path)?,
        };
        for (row, (tokens, tags)) in table.tokens.iter().zip(&table.tags).enumerate() {
            if tokens.len() != tags.len() {
                anyhow::bail!(
                    "{}: row {} ({}) has {} tokens but {} tags",
                    path.display(),
                    row + 1,
                    table.ids[row],
                    tokens.len(),
                    tags.len()
                );
            }
        }
        Ok(table)
    }

    pub fn write(&self, staged: &mut StagedOutput, name: &str) -> Result<()> {
        let ids = Arc::new(StringArray::from_iter_values(&self.ids)) as ArrayRef;
        let table =
            batch(vec![(ID, ids), (TOKENS, string_list_column(&self.tokens)), (TAGS, string_list_column(&self.tags))])?;
        write_parquet(staged, name, &table)
    }
}

/// Keeps the items of `column` whose `keep` is true (missing flags: dropped).
pub fn retain_where<T>(column: &mut Vec<T>, keep: &[bool]) {
    let mut flags = keep.iter();
    column.retain(|_| flags.next().copied().unwrap_or(false));
}

/// A `list<str>` column from rows.
pub fn string_list_column(rows: &[Vec<String>]) -> ArrayRef {
    let values = StringArray::from_iter_values(rows.iter().flatten().collect::<Vec<_>>());
    let item = Arc::new(Field::new_list_field(DataType::Utf8, false));
    let offsets = OffsetBuffer::from_lengths(rows.iter().map(Vec::len));
    Arc::new(ListArray::new(item, offsets, Arc::new(values), None))
}

/// A `list<str>` column's rows; nulls must have been ruled out by [`validate`].
pub fn string_lists(batch: &RecordBatch, column: &str, file: &Path) -> Result<Vec<Vec<String>>> {
    let array = batch.column_by_name(column).with_context(|| format!("{}: no column '{column}'", file.display()))?;
    let list = arrow_cast::cast(array, &DataType::new_list(DataType::Utf8, true))
        .with_context(|| format!("{}: column '{column}' cannot be read as lists of text", file.display()))?;
    let list = list.as_list::<i32>();
    let values = list.values().as_string::<i32>();
    let rows = list
        .offsets()
        .windows(2)
        .map(|ends| (ends[0] as usize..ends[1] as usize).map(|i| values.value(i).to_owned()).collect())
        .collect();
    Ok(rows)
}

/// A string column's values; nulls must have been ruled out by [`validate`].
pub fn strings(batch: &RecordBatch, column: &str, file: &Path) -> Result<Vec<String>> {
    let array = batch.column_by_name(column).with_context(|| format!("{}: no column '{column}'", file.display()))?;
    let utf8 = arrow_cast::cast(array, &DataType::Utf8)
        .with_context(|| format!("{}: column '{column}' cannot be read as text", file.display()))?;
    Ok(utf8.as_string::<i32>().iter().map(|value| value.unwrap_or_default().to_owned()).collect())
}

/// A `u32` column's values.
pub fn u32s(batch: &RecordBatch, column: &str) -> Option<Vec<u32>> {
    Some(batch.column_by_name(column)?.as_primitive_opt::<UInt32Type>()?.values().to_vec())
}

/// A `list<u32>` or `list<u8>` column's rows, widened to `u32`.
pub fn lists(batch: &RecordBatch, column: &str) -> Option<Vec<Vec<u32>>> {
    let array = batch.column_by_name(column)?;
    let list = arrow_cast::cast(array, &DataType::new_list(DataType::UInt32, true)).ok()?;
    let list = list.as_list::<i32>();
    let values = list.values().as_primitive_opt::<UInt32Type>()?.values();
    Some(list.offsets().windows(2).map(|ends| values[ends[0] as usize..ends[1] as usize].to_vec()).collect())
}

/// A `list<i32>` column's rows.
pub fn int_lists(batch: &RecordBatch, column: &str) -> Option<Vec<Vec<i32>>> {
    let list = batch.column_by_name(column)?.as_list_opt::<i32>()?;
    let values = list.values().as_primitive_opt::<arrow_array::types::Int32Type>()?.values();
    Some(list.offsets().windows(2).map(|ends| values[ends[0] as usize..ends[1] as usize].to_vec()).collect())
}

/// A list column built from rows (`list_column::<UInt32Type>(rows)` for token
/// ids): one flat values buffer and its offsets, no per-value builder.
pub fn list_column<'a, T: ArrowPrimitiveType>(rows: impl IntoIterator<Item = &'a [T::Native]>) -> ArrayRef {
    let (mut values, mut lengths) = (Vec::new(), Vec::new());
    for row in rows {
        values.extend_from_slice(row);
        lengths.push(row.len());
    }
    let values = PrimitiveArray::<T>::new(ScalarBuffer::from(values), None);
    let item = Arc::new(Field::new_list_field(T::DATA_TYPE, false));
    Arc::new(ListArray::new(item, OffsetBuffer::from_lengths(lengths), Arc::new(values), None))
}

#[derive(Debug, thiserror::Error, PartialEq)]
pub enum SchemaError {
    #[error("{file}: missing column '{column}' (expected columns: {expected}; found: {found})")]
    MissingColumn { file: String, column: String, expected: String, found: String },
    #[error("{file}: column '{column}' has type {found}, expected {expected}")]
    WrongType { file: String, column: String, expected: String, found: String },
    #[error("{file}: column '{column}' has {count} null value(s), first at row {first_row}")]
    Nulls { file: String, column: String, count: usize, first_row: usize },
}

/// Reads a cleaned split (`clean`'s output, which `tokenize` and `eval` read), checking its schema.
pub fn read_split(dir: &Path, split: Split) -> Result<TextTable> {
    TextTable::read(&split.path_in(dir), "clean")
}

/// Checks `batch` has each `(column, type)` with no nulls: a later stage then
/// fails at the door, naming the file and column, not deep inside its work.
pub fn validate(batch: &RecordBatch, file: &Path, expected: &[(&str, ColumnType)]) -> Result<(), SchemaError> {
    let file_name = file.display().to_string();
    let expected_names = expected.iter().map(|(name, _)| *name).collect::<Vec<_>>().join(", ");
    for (name, column_type) in expected {
        let Some(column) = batch.column_by_name(name) else {
            let schema = batch.schema();
            let found = schema.fields().iter().map(|f| f.name().as_str()).collect::<Vec<_>>().join(", ");
            return Err(SchemaError::MissingColumn {
                file: file_name,
                column: (*name).to_owned(),
                expected: expected_names,
                found,
            });
        };
        if !column_type.accepts(column.data_type()) {
            return Err(SchemaError::WrongType {
                file: file_name,
                column: (*name).to_owned(),
                expected: column_type.name().to_owned(),
                found: column.data_type().to_string(),
            });
        }
        let nulls = column.null_count();
        if nulls > 0 {
            let first_row = (0..column.len()).position(|row| column.is_null(row)).map_or(0, |index| index + 1);
            return Err(SchemaError::Nulls { file: file_name, column: (*name).to_owned(), count: nulls, first_row });
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use arrow_array::types::UInt8Type;
    use arrow_array::{Int64Array, LargeStringArray};

    use super::*;

    fn text(values: &[Option<&str>]) -> ArrayRef {
        Arc::new(StringArray::from(values.to_vec()))
    }

    #[test]
    fn validate_names_file_column_and_problem() {
        let frame = batch(vec![(ID, text(&[Some("a")])), (TEXT, text(&[Some("hi")]))]).expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("label missing");
        assert!(matches!(&error, SchemaError::MissingColumn { column, .. } if column == LABEL), "{error}");
        assert!(error.to_string().contains("x.parquet"));
        assert!(error.to_string().contains("found: id, text"), "{error}");

        let numbers: ArrayRef = Arc::new(Int64Array::from(vec![1]));
        let frame =
            batch(vec![(ID, text(&[Some("a")])), (TEXT, text(&[Some("hi")])), (LABEL, numbers)]).expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("wrong type");
        assert!(
            matches!(&error, SchemaError::WrongType { expected, found, .. } if expected == "str" && found == "Int64")
        );

        let frame = batch(vec![
            (ID, text(&[Some("a"), Some("b")])),
            (TEXT, text(&[Some("hi"), Some("yo")])),
            (LABEL, text(&[Some("x"), None])),
        ])
        .expect("frame");
        let error = validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect_err("null");
        assert_eq!(
            error,
            SchemaError::Nulls { file: "x.parquet".into(), column: LABEL.into(), count: 1, first_row: 2 }
        );

        // Another writer's string layout is still a string.
        let large: ArrayRef = Arc::new(LargeStringArray::from(vec!["x"]));
        let frame = batch(vec![(ID, text(&[Some("a")])), (TEXT, text(&[Some("hi")])), (LABEL, large)]).expect("frame");
        validate(&frame, Path::new("x.parquet"), &TEXT_TABLE).expect("valid");
        assert_eq!(strings(&frame, LABEL, Path::new("x.parquet")).expect("strings"), ["x"]);
    }

    #[test]
    fn text_tables_round_trip_and_filter_every_column_alike() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut table = TextTable {
            ids: vec!["1".into(), "2".into(), "3".into()],
            texts: vec!["a".into(), "é ✓".into(), "c".into()],
            labels: vec!["x".into(), "y".into(), "x".into()],
            ..TextTable::default()
        };
        let mut staged = StagedOutput::new(dir.path()).expect("staged");
        table.write(&mut staged, "t.parquet").expect("write");
        staged.commit("done.json", &kiln_core::Manifest::new("test", &(), &())).expect("commit");
        assert_eq!(TextTable::read(&dir.path().join("t.parquet"), "test").expect("read"), table);

        assert_eq!(table.retain(&[true, false, true]), 1);
        assert_eq!(
            (table.ids.as_slice(), table.labels.as_slice()),
            (&["1".to_owned(), "3".into()][..], &["x".to_owned(), "x".into()][..])
        );
    }

    #[test]
    fn distributions_and_weights_travel_with_their_rows_and_bad_ones_are_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let owned = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect::<Vec<_>>();
        let mut weak = TextTable {
            ids: owned(&["w1", "w2"]),
            texts: owned(&["a", "b"]),
            labels: owned(&["x", "y"]),
            label_probs: Some(vec![vec![0.75, 0.25], vec![0.0, 1.0]]),
            ..TextTable::default()
        };
        let served = TextTable {
            ids: owned(&["s1"]),
            texts: owned(&["c"]),
            labels: owned(&[""]),
            weights: Some(vec![0.5]),
            ..TextTable::default()
        };
        weak.append(served);
        // The weak rows weigh 1, the served row has no distribution.
        assert_eq!(weak.label_probs, Some(vec![vec![0.75, 0.25], vec![0.0, 1.0], vec![]]));
        assert_eq!(weak.weights, Some(vec![1.0, 1.0, 0.5]));

        let mut staged = StagedOutput::new(dir.path()).expect("staged");
        weak.write(&mut staged, "t.parquet").expect("write");
        let mut broken = weak.clone();
        broken.weights = Some(vec![1.0, f32::NAN, 0.5]);
        broken.write(&mut staged, "nan.parquet").expect("write");
        let mut broken = weak.clone();
        broken.label_probs = Some(vec![vec![0.75, 0.25], vec![0.5, 0.6], vec![]]);
        broken.write(&mut staged, "sum.parquet").expect("write");
        staged.commit("done.json", &kiln_core::Manifest::new("test", &(), &())).expect("commit");
        let read = TextTable::read(&dir.path().join("t.parquet"), "test").expect("read");
        assert_eq!(read, weak);

        let mut kept = read;
        assert_eq!(kept.retain(&[false, true, true]), 1);
        assert_eq!(
            (kept.label_probs.as_deref(), kept.weights.as_deref()),
            (Some(&weak.label_probs.as_ref().expect("probs")[1..]), Some(&[1.0f32, 0.5][..]))
        );

        let error = TextTable::read(&dir.path().join("nan.parquet"), "test").expect_err("nan weight");
        assert!(error.to_string().contains("nan.parquet: row 2: weight NaN"), "{error}");
        let error = TextTable::read(&dir.path().join("sum.parquet"), "test").expect_err("not a distribution");
        assert!(error.to_string().contains("sum.parquet: row 2: label_probs [0.5, 0.6]"), "{error}");
    }

    #[test]
    fn tagged_tables_round_trip_and_a_row_with_more_tags_than_words_is_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let words = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
        let table = TaggedTable {
            ids: vec!["s1".into(), "s2".into()],
            tokens: vec![words("Paris is nice"), words("Über")],
            tags: vec![words("B-location O O"), words("B-corporation")],
        };
        let mut staged = StagedOutput::new(dir.path()).expect("staged");
        table.write(&mut staged, "t.parquet").expect("write");
        let mut broken = table.clone();
        broken.tags[1].push("O".into());
        broken.write(&mut staged, "broken.parquet").expect("write");
        staged.commit("done.json", &kiln_core::Manifest::new("test", &(), &())).expect("commit");
        assert_eq!(TaggedTable::read(&dir.path().join("t.parquet"), "test").expect("read"), table);
        let error = TaggedTable::read(&dir.path().join("broken.parquet"), "test").expect_err("lengths differ");
        assert!(error.to_string().contains("broken.parquet: row 2 (s2) has 1 tokens but 2 tags"), "{error}");
    }

    #[test]
    fn lists_read_back_as_written() {
        let rows: [&[u32]; 2] = [&[101, 7, 102], &[101, 102]];
        let types: [&[u8]; 2] = [&[0, 0, 1], &[0, 0]];
        let columns =
            vec![(INPUT_IDS, list_column::<UInt32Type>(rows)), (TOKEN_TYPE_IDS, list_column::<UInt8Type>(types))];
        let frame = batch(columns).expect("frame");
        assert_eq!(lists(&frame, INPUT_IDS).expect("ids"), [vec![101, 7, 102], vec![101, 102]]);
        assert_eq!(lists(&frame, TOKEN_TYPE_IDS).expect("types"), [vec![0, 0, 1], vec![0, 0]]);
        assert!(u32s(&frame, INPUT_IDS).is_none(), "a list is not a u32 column");
    }
}
