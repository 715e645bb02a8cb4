//! `tokenize`: cleaned text in, token ids out, plus `labels.json`, the label
//! list every later stage shares.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Result, bail};
use kiln_config::{TokenTypeIds, TokenizeConfig, UnknownLabelPolicy};
use kiln_text::load_tokenizer;
use polars::prelude::*;
use serde::Serialize;
use tokenizers::Tokenizer;

use kiln_core::model_folder::LABELS;
use kiln_core::{FileHash, LabelMap, Manifest, ModelFolder, Progress, Split, StagedOutput};

use crate::parquet::write_parquet;
use crate::schema::{self, read_split};

/// The manifest, written last.
pub const MANIFEST: &str = kiln_core::stages::TOKENIZE_DONE;

/// Texts encoded per call: large enough to keep every core busy, small enough
/// for a smooth progress bar and bounded memory for the encodings.
const BATCH: usize = 8192;

#[derive(Debug, Clone, Default, Serialize)]
pub struct LengthStats {
    pub mean: f64,
    pub p50: u32,
    pub p90: u32,
    pub p95: u32,
    pub p99: u32,
    pub max: u32,
}

impl LengthStats {
    fn of(lengths: &[u32]) -> Self {
        if lengths.is_empty() {
            return Self::default();
        }
        let mut sorted = lengths.to_vec();
        sorted.sort_unstable();
        // Nearest-rank percentile.
        let rank = |p: f64| sorted[((p * sorted.len() as f64).ceil() as usize).clamp(1, sorted.len()) - 1];
        Self {
            mean: sorted.iter().map(|&n| f64::from(n)).sum::<f64>() / sorted.len() as f64,
            p50: rank(0.50),
            p90: rank(0.90),
            p95: rank(0.95),
            p99: rank(0.99),
            max: sorted[sorted.len() - 1],
        }
    }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitTokenReport {
    pub rows: usize,
    /// Rows cut to `max_length` tokens.
    pub truncated: usize,
    pub truncation_rate: f64,
    pub dropped_unknown_label: usize,
    pub lengths: LengthStats,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct TokenizeReport {
    pub max_length: usize,
    pub token_type_ids: bool,
    pub labels: usize,
    pub splits: BTreeMap<Split, SplitTokenReport>,
}

pub fn run(config: &TokenizeConfig, progress: &Progress) -> Result<TokenizeReport> {
    config.validate()?;
    let tokenizer = load_tokenizer(&config.model_dir, config.max_length)?;
    let with_token_types = match config.token_type_ids {
        TokenTypeIds::Auto => ModelFolder::open(&config.model_dir)?.takes_token_types(),
        TokenTypeIds::Include => true,
        TokenTypeIds::Omit => false,
    };
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let frames = Split::ALL
        .iter()
        .map(|&split| read_split(&config.input_dir, split).map(|frame| (split, frame)))
        .collect::<Result<Vec<_>>>()?;

    let train_labels = frames[0].1.column(schema::LABEL)?.str()?;
    let labels = LabelMap::from_labels(train_labels.no_null_iter());
    if labels.is_empty() {
        bail!("{} has no rows: nothing to learn labels from", Split::Train.path_in(&config.input_dir).display());
    }

    let mut report = TokenizeReport {
        max_length: config.max_length,
        token_type_ids: with_token_types,
        labels: labels.len(),
        splits: BTreeMap::new(),
    };
    let mut inputs = vec![FileHash::of(&config.model_dir.join("tokenizer.json"))?];
    for (split, frame) in frames {
        let path = split.path_in(&config.input_dir);
        inputs.push(FileHash::of(&path)?);
        let frame = attach_label_ids(frame, &labels, split, &path, config.unknown_labels, &mut report)?;
        let (mut frame, split_report) =
            encode_frame(&frame, &tokenizer, with_token_types, config.max_length, split, progress)?;
        let entry = report.splits.entry(split).or_default();
        let dropped = entry.dropped_unknown_label;
        *entry = SplitTokenReport { dropped_unknown_label: dropped, ..split_report };
        write_parquet(&mut staged, &split.file_name(), &mut frame)?;
    }
    staged.write_bytes(LABELS, labels.to_json().as_bytes())?;

    let mut manifest = Manifest::new("tokenize", config, &report);
    manifest.inputs = inputs;
    manifest.outputs = staged.hashes()?;
    staged.commit(MANIFEST, &manifest)?;
    Ok(report)
}

/// Adds `label_id`; a label not seen in train is an error or a dropped row.
fn attach_label_ids(
    frame: DataFrame,
    labels: &LabelMap,
    split: Split,
    path: &Path,
    policy: UnknownLabelPolicy,
    report: &mut TokenizeReport,
) -> Result<DataFrame> {
    let label_column = frame.column(schema::LABEL)?.str()?;
    let ids: Vec<Option<u32>> = label_column.no_null_iter().map(|label| labels.id(label)).collect();
    if let Some(row) = ids.iter().position(Option::is_none) {
        let unknown = ids.iter().filter(|id| id.is_none()).count();
        if policy == UnknownLabelPolicy::Error {
            let label = label_column.get(row).unwrap_or_default();
            let id = frame.column(schema::ID)?.str()?.get(row).unwrap_or_default();
            bail!(
                "{}: row {} (id '{id}') has label '{label}', which never occurs in train ({unknown} such row(s) in {split}); \
                 fix the data, or set tokenize.unknown_labels = \"drop\"",
                path.display(),
                row + 1
            );
        }
        report.splits.entry(split).or_default().dropped_unknown_label = unknown;
        tracing::warn!("dropped {unknown} {split} row(s) whose label never occurs in train");
    }
    let keep: BooleanChunked = ids.iter().map(|id| Some(id.is_some())).collect();
    let mut frame = frame.filter(&keep)?;
    let label_ids: Vec<u32> = ids.into_iter().flatten().collect();
    frame.with_column(Column::new(schema::LABEL_ID.into(), label_ids))?;
    Ok(frame)
}

fn encode_frame(
    frame: &DataFrame,
    tokenizer: &Tokenizer,
    with_token_types: bool,
    max_length: usize,
    split: Split,
    progress: &Progress,
) -> Result<(DataFrame, SplitTokenReport)> {
    let texts: Vec<&str> = frame.column(schema::TEXT)?.str()?.no_null_iter().collect();
    let rows = texts.len();
    let mut input_ids =
        ListPrimitiveChunkedBuilder::<UInt32Type>::new(schema::INPUT_IDS.into(), rows, rows * 32, DataType::UInt32);
    let mut type_ids =
        ListPrimitiveChunkedBuilder::<UInt8Type>::new(schema::TOKEN_TYPE_IDS.into(), rows, rows * 32, DataType::UInt8);
    let mut lengths = Vec::with_capacity(rows);
    let mut truncated = 0;
    let bar = progress.rows(rows as u64, split.name());
    for chunk in texts.chunks(BATCH) {
        let encodings = tokenizer
            .encode_batch_fast(chunk.to_vec(), true)
            .map_err(|e| anyhow::anyhow!("tokenizing the {split} split failed: {e}"))?;
        for encoding in &encodings {
            let ids = encoding.get_ids();
            input_ids.append_slice(ids);
            if with_token_types {
                let types: Vec<u8> = encoding.get_type_ids().iter().map(|&t| t as u8).collect();
                type_ids.append_slice(&types);
            }
            lengths.push(ids.len() as u32);
            if !encoding.get_overflowing().is_empty() {
                truncated += 1;
            }
        }
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    debug_assert!(lengths.iter().all(|&n| n as usize <= max_length));

    let mut columns = vec![frame.column(schema::ID)?.clone(), input_ids.finish().into_column()];
    if with_token_types {
        columns.push(type_ids.finish().into_column());
    }
    let report = SplitTokenReport {
        rows,
        truncated,
        truncation_rate: if rows == 0 { 0.0 } else { truncated as f64 / rows as f64 },
        dropped_unknown_label: 0,
        lengths: LengthStats::of(&lengths),
    };
    columns.push(Column::new(schema::LENGTH.into(), lengths));
    columns.push(frame.column(schema::LABEL_ID)?.clone());
    Ok((DataFrame::new(rows, columns)?, report))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_percentiles_are_nearest_rank() {
        let lengths: Vec<u32> = (1..=100).collect();
        let stats = LengthStats::of(&lengths);
        assert_eq!((stats.p50, stats.p90, stats.p95, stats.p99, stats.max), (50, 90, 95, 99, 100));
        assert!((stats.mean - 50.5).abs() < 1e-9);
        assert_eq!(LengthStats::of(&[7]).p99, 7);
    }
}
