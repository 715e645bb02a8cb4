//! Text on its way into a model, the same in training and serving: the
//! `[clean]` rules ([`clean::Cleaner`]) and a model folder's tokenizer set up
//! as kiln uses it. No Parquet, no LibTorch: `serve` links this, not the data stages.

pub mod aggregate;
pub mod align;
pub mod clean;
pub mod spans;

use std::path::Path;

use anyhow::Result;
use kiln_core::model_folder::TOKENIZER;
use tokenizers::{Tokenizer, TruncationParams};

/// A model folder's tokenizer, set up the way kiln trains and serves with it:
/// no padding (batches pad dynamically), truncation to `max_length`.
pub fn load_tokenizer(model_dir: &Path, max_length: usize) -> Result<Tokenizer> {
    let path = model_dir.join(TOKENIZER);
    let mut tokenizer = Tokenizer::from_file(&path).map_err(|e| {
        anyhow::anyhow!("cannot load {}: {e} (is {} a Hugging Face model folder?)", path.display(), model_dir.display())
    })?;
    tokenizer.with_padding(None);
    tokenizer
        .with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
        .map_err(|e| anyhow::anyhow!("cannot truncate to {max_length} tokens: {e}"))?;
    Ok(tokenizer)
}

/// Makes `tokenizer` read a text longer than `max_length` tokens in windows
/// that overlap by `overlap` tokens (its encoding's overflowing ones), as
/// transformers' pipeline does with `stride`, instead of cutting it.
pub fn read_in_windows(tokenizer: &mut Tokenizer, max_length: usize, overlap: usize) -> Result<()> {
    tokenizer
        .with_truncation(Some(TruncationParams { max_length, stride: overlap, ..TruncationParams::default() }))
        .map_err(|e| anyhow::anyhow!("cannot read in windows of {max_length} tokens overlapping by {overlap}: {e}"))?;
    Ok(())
}

/// The tokenizer's unknown token (`[UNK]` in BERT's vocabularies, `<unk>` in
/// RoBERTa's), whose share says how much of a text the model cannot read.
pub fn unknown_token_id(tokenizer: &Tokenizer) -> Option<u32> {
    ["[UNK]", "<unk>"].iter().find_map(|token| tokenizer.token_to_id(token))
}
