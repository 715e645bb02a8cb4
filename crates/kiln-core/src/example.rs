//! One tokenized example, as `tokenize` writes it and `train`, `eval`,
//! `predict` and `serve` consume it.

/// One row of `data/processed/{split}.parquet` (or a text encoded for prediction).
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
