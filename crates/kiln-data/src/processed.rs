//! The processed tables: `tokenize` writes them, `train` and `eval` read their examples back.

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::types::{Float32Type, Int32Type, UInt8Type, UInt32Type};
use arrow_array::{ArrayRef, Float32Array, RecordBatch, StringArray, UInt32Array};
use kiln_core::{Example, LabelMap, TaggedExample};

use crate::parquet::{batch, read_parquet};
use crate::schema;

/// Every example's `label_id` must name a label of `labels` (read from
/// `labels_path`): a `labels.json` from another run of `tokenize` fails here,
/// naming the first row that does not fit.
pub fn check_label_ids(path: &Path, examples: &[Example], labels: &LabelMap, labels_path: &Path) -> Result<()> {
    if let Some((row, example)) =
        examples.iter().enumerate().find(|(_, e)| e.label_probs.as_ref().is_some_and(|p| p.len() != labels.len()))
    {
        bail!(
            "{}: row {} (id {}) has {} label_probs, but {} lists {} labels: labels.json does not belong to this \
             data (rerun `tokenize`)",
            path.display(),
            row + 1,
            example.id,
            example.label_probs.as_ref().map_or(0, Vec::len),
            labels_path.display(),
            labels.len()
        );
    }
    if let Some((row, example)) = examples.iter().enumerate().find(|(_, e)| e.label_id as usize >= labels.len()) {
        bail!(
            "{}: row {} (id {}) has label_id {}, but {} lists {} labels: labels.json does not belong to this \
             data (rerun `tokenize`)",
            path.display(),
            row + 1,
            example.id,
            example.label_id,
            labels_path.display(),
            labels.len()
        );
    }
    Ok(())
}

/// The processed table of `examples` (`length` is each `input_ids`' length).
pub fn examples_batch(examples: &[Example], with_token_types: bool) -> Result<RecordBatch> {
    let ids = examples.iter().map(|e| e.id.as_str());
    let mut columns = vec![
        (schema::ID, Arc::new(StringArray::from_iter_values(ids)) as ArrayRef),
        (schema::INPUT_IDS, schema::list_column::<UInt32Type>(examples.iter().map(|e| e.input_ids.as_slice()))),
    ];
    if with_token_types {
        let types = examples.iter().map(|e| e.token_type_ids.as_deref().unwrap_or_default());
        columns.push((schema::TOKEN_TYPE_IDS, schema::list_column::<UInt8Type>(types)));
    }
    let lengths = examples.iter().map(|e| e.input_ids.len() as u32);
    let label_ids = examples.iter().map(|e| e.label_id);
    columns.push((schema::LENGTH, Arc::new(UInt32Array::from_iter_values(lengths))));
    columns.push((schema::LABEL_ID, Arc::new(UInt32Array::from_iter_values(label_ids))));
    if examples.iter().any(|e| e.label_probs.is_some()) {
        let probs = examples.iter().map(|e| e.label_probs.as_deref().unwrap_or_default());
        columns.push((schema::LABEL_PROBS, schema::list_column::<Float32Type>(probs)));
    }
    if examples.iter().any(|e| e.weight.is_some()) {
        let weights = examples.iter().map(|e| e.weight.unwrap_or(1.0));
        columns.push((schema::WEIGHT, Arc::new(Float32Array::from_iter_values(weights))));
    }
    batch(columns)
}

/// Reads and checks a processed split.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    examples_from_batch(&read_parquet(path, "tokenize")?, path)
}

/// Checks and takes the examples of `frame`, read from `path`.
pub fn examples_from_batch(frame: &RecordBatch, path: &Path) -> Result<Vec<Example>> {
    let with_types = frame.column_by_name(schema::TOKEN_TYPE_IDS).is_some();
    schema::validate(frame, path, &schema::processed_table(with_types))?;
    let malformed = || format!("{} does not have the processed table's layout", path.display());
    let ids = schema::strings(frame, schema::ID, path)?;
    let input_ids = schema::lists(frame, schema::INPUT_IDS).with_context(malformed)?;
    let labels = schema::u32s(frame, schema::LABEL_ID).with_context(malformed)?;
    let mut types = match with_types {
        true => Some(schema::lists(frame, schema::TOKEN_TYPE_IDS).with_context(malformed)?.into_iter()),
        false => None,
    };
    let mut probs = schema::label_probs(frame, path)?.map(Vec::into_iter);
    let mut weights = schema::weights(frame, path)?.map(Vec::into_iter);
    let mut examples = Vec::with_capacity(frame.num_rows());
    for (row, ((id, tokens), label_id)) in ids.into_iter().zip(input_ids).zip(labels).enumerate() {
        if tokens.is_empty() {
            bail!("{}: row {}: input_ids is empty", path.display(), row + 1);
        }
        let token_type_ids = types.as_mut().and_then(Iterator::next).map(|t| t.into_iter().map(|v| v as u8).collect());
        let label_probs = probs.as_mut().and_then(Iterator::next).filter(|p| !p.is_empty());
        let weight = weights.as_mut().and_then(Iterator::next);
        examples.push(Example { id, input_ids: tokens, token_type_ids, label_id, label_probs, weight });
    }
    Ok(examples)
}

/// The processed table of tagged `examples` (token classification).
pub fn tagged_examples_batch(examples: &[TaggedExample], with_token_types: bool) -> Result<RecordBatch> {
    let ids = examples.iter().map(|e| e.id.as_str());
    let mut columns = vec![
        (schema::ID, Arc::new(StringArray::from_iter_values(ids)) as ArrayRef),
        (schema::WINDOW, Arc::new(UInt32Array::from_iter_values(examples.iter().map(|e| e.window))) as ArrayRef),
        (schema::INPUT_IDS, schema::list_column::<UInt32Type>(examples.iter().map(|e| e.input_ids.as_slice()))),
    ];
    if with_token_types {
        let types = examples.iter().map(|e| e.token_type_ids.as_deref().unwrap_or_default());
        columns.push((schema::TOKEN_TYPE_IDS, schema::list_column::<UInt8Type>(types)));
    }
    let lengths = examples.iter().map(|e| e.input_ids.len() as u32);
    columns.push((schema::LENGTH, Arc::new(UInt32Array::from_iter_values(lengths))));
    columns.push((schema::LABELS, schema::list_column::<Int32Type>(examples.iter().map(|e| e.labels.as_slice()))));
    columns.push((schema::WORD_IDS, schema::list_column::<Int32Type>(examples.iter().map(|e| e.word_ids.as_slice()))));
    batch(columns)
}

/// Reads and checks a processed split of token classification: every list
/// of a row as long as its `input_ids`, and every label inside `labels`.
pub fn read_tagged_examples(path: &Path, labels: &LabelMap) -> Result<Vec<TaggedExample>> {
    let frame = read_parquet(path, "tokenize")?;
    let with_types = frame.column_by_name(schema::TOKEN_TYPE_IDS).is_some();
    schema::validate(&frame, path, &schema::tagged_processed_table(with_types))?;
    let malformed = || format!("{} does not have the tagged processed table's layout", path.display());
    let ids = schema::strings(&frame, schema::ID, path)?;
    let windows = schema::u32s(&frame, schema::WINDOW).with_context(malformed)?;
    let input_ids = schema::lists(&frame, schema::INPUT_IDS).with_context(malformed)?;
    let label_lists = schema::int_lists(&frame, schema::LABELS).with_context(malformed)?;
    let word_ids = schema::int_lists(&frame, schema::WORD_IDS).with_context(malformed)?;
    let mut types = match with_types {
        true => Some(schema::lists(&frame, schema::TOKEN_TYPE_IDS).with_context(malformed)?.into_iter()),
        false => None,
    };
    let rows = ids.into_iter().zip(windows).zip(input_ids).zip(label_lists).zip(word_ids);
    let mut examples = Vec::with_capacity(frame.num_rows());
    for (row, ((((id, window), input_ids), row_labels), word_ids)) in rows.enumerate() {
        let token_type_ids = types.as_mut().and_then(Iterator::next).map(|t| t.into_iter().map(|v| v as u8).collect());
        let lengths = [Some(row_labels.len()), Some(word_ids.len()), token_type_ids.as_ref().map(Vec::len)];
        if input_ids.is_empty() || lengths.iter().flatten().any(|&n| n != input_ids.len()) {
            bail!(
                "{}: row {} ({id}): input_ids, labels, word_ids and token_type_ids differ in length",
                path.display(),
                row + 1
            );
        }
        if let Some(bad) = row_labels.iter().find(|&&l| l != -100 && (l < 0 || l as usize >= labels.len())) {
            bail!(
                "{}: row {} ({id}) has label {bad}, but labels.json lists {} tags: it does not belong to this data (rerun `tokenize`)",
                path.display(),
                row + 1,
                labels.len()
            );
        }
        examples.push(TaggedExample { id, window, input_ids, token_type_ids, labels: row_labels, word_ids });
    }
    Ok(examples)
}
