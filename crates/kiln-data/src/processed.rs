//! Reading `tokenize`'s output back: the examples `train` and `eval` consume.

use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_core::{Example, LabelMap};

use crate::parquet::read_parquet;
use crate::schema;

/// Every example's `label_id` must name a label of `labels` (read from
/// `labels_path`): a `labels.json` from another run of `tokenize` fails here,
/// naming the first row that does not fit.
pub fn check_label_ids(path: &Path, examples: &[Example], labels: &LabelMap, labels_path: &Path) -> Result<()> {
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

/// Reads and checks a processed split.
pub fn read_examples(path: &Path) -> Result<Vec<Example>> {
    let frame = read_parquet(path, "tokenize")?;
    let with_types = frame.column(schema::TOKEN_TYPE_IDS).is_ok();
    schema::validate(&frame, path, &schema::processed_table(with_types))?;
    let ids = frame.column(schema::ID)?.str()?;
    let input_ids = frame.column(schema::INPUT_IDS)?.list()?;
    let labels = frame.column(schema::LABEL_ID)?.u32()?;
    let types = if with_types { Some(frame.column(schema::TOKEN_TYPE_IDS)?.list()?.clone()) } else { None };
    let mut type_rows = types.as_ref().map(|t| t.series_iter());
    let mut examples = Vec::with_capacity(frame.height());
    for (row, ((id, tokens), label)) in ids.iter().zip(input_ids.series_iter()).zip(labels.iter()).enumerate() {
        let tokens: Vec<u32> = tokens
            .with_context(|| format!("{}: row {}: input_ids is null", path.display(), row + 1))?
            .u32()?
            .no_null_iter()
            .collect();
        if tokens.is_empty() {
            bail!("{}: row {}: input_ids is empty", path.display(), row + 1);
        }
        let token_type_ids = match type_rows.as_mut().and_then(Iterator::next) {
            Some(Some(types)) => Some(types.u8()?.no_null_iter().collect::<Vec<u8>>()),
            Some(None) => bail!("{}: row {}: token_type_ids is null", path.display(), row + 1),
            None => None,
        };
        examples.push(Example {
            id: id.unwrap_or_default().to_owned(),
            input_ids: tokens,
            token_type_ids,
            label_id: label.unwrap_or_default(),
        });
    }
    Ok(examples)
}
