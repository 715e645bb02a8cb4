//! Reading `tokenize`'s output back: the examples `train` and `eval` consume.

use std::path::Path;

use anyhow::{Context, Result, bail};

use crate::output::read_parquet;
use crate::schema;

/// One tokenized row of `data/processed/{split}.parquet`.
#[derive(Debug, Clone, PartialEq)]
pub struct Example {
    pub id: String,
    pub input_ids: Vec<u32>,
    /// Absent when the model takes no token types (DistilBERT).
    pub token_type_ids: Option<Vec<u8>>,
    pub label_id: u32,
}

impl Example {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
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
