//! kiln-text's integration tests, in one binary: tokenization and entity
//! grouping against Hugging Face's own.

mod aggregation_pipeline;
mod tokenizer_parity;
