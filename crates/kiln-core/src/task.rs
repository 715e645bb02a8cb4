//! What a model predicts: the one config key (`task`) that switches every
//! stage between a label per text and a label per word.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum Task {
    /// One label per text (sentiment, intents).
    #[default]
    SequenceClassification,
    /// One tag per word (named entities), IOB2 over entity types.
    TokenClassification,
}

impl Task {
    pub fn name(self) -> &'static str {
        match self {
            Self::SequenceClassification => "sequence_classification",
            Self::TokenClassification => "token_classification",
        }
    }
}

impl std::fmt::Display for Task {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}
