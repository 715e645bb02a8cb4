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
    /// A weak label's distribution over the labels (`label`'s output), which
    /// `train` learns from instead of `label_id`; `None` for a gold label.
    pub label_probs: Option<Vec<f32>>,
    /// How much the row counts in the training loss; `None` is 1 (`retrain`
    /// weighs the served texts the functions labelled below gold rows).
    pub weight: Option<f32>,
}

impl Example {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}

/// One window of a tagged sentence (token classification), as `tokenize`
/// writes it to `data/processed/{split}.parquet` and `train` and `eval` read it.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedExample {
    /// The sentence's id; a long sentence has several windows.
    pub id: String,
    pub window: u32,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Option<Vec<u8>>,
    /// Per sub-word: the label id the loss sees, or -100 (ignored).
    pub labels: Vec<i32>,
    /// Per sub-word: the sentence's word it belongs to, or -1 (special token).
    pub word_ids: Vec<i32>,
}

impl TaggedExample {
    pub fn len(&self) -> usize {
        self.input_ids.len()
    }

    pub fn is_empty(&self) -> bool {
        self.input_ids.is_empty()
    }
}
