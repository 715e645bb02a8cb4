//! `tokenize`: cleaned text in, token ids out, plus `labels.json`, the label
//! list every later stage shares. For token classification, words in and
//! windows of sub-words out, each with its labels and word ids ([`run_tagged`]).

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_config::{TokenTypeIds, TokenizeConfig, UnknownLabelPolicy};
use kiln_text::load_tokenizer;
use serde::Serialize;
use tokenizers::{Encoding, Tokenizer};

use kiln_core::model_folder::LABELS;
use kiln_core::profile::LengthStats;
use kiln_core::{Example, FileHash, LabelMap, Manifest, ModelFolder, Progress, Split, StagedOutput, TaggedExample};
use kiln_text::align::Aligner;
use rayon::prelude::*;

use crate::parquet::write_parquet;
use crate::processed::{examples_batch, tagged_examples_batch};
use crate::schema::{TaggedTable, TextTable};

/// The manifest, written last.
pub const MANIFEST: &str = kiln_core::stages::TOKENIZE_DONE;

/// Texts encoded per call: large enough to keep every core busy, small enough
/// for a smooth progress bar and bounded memory for the encodings.
const BATCH: usize = 8192;

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
    /// Token classification: words, windows and what did not fit, per split.
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub words: BTreeMap<Split, SplitWordReport>,
}

/// What alignment did to a split's sentences (token classification).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitWordReport {
    pub sentences: usize,
    pub words: usize,
    /// Sentences longer than `max_length`, split into windows (or truncated).
    pub long_sentences: usize,
    /// Windows written (rows of the processed table).
    pub windows: usize,
    /// Words cut off by truncation (`long_sentences = "truncate"`): no label, no prediction.
    pub words_cut: usize,
    /// Words the tokenizer makes no sub-word of: no label, predicted `O`.
    pub empty_words: usize,
    /// Words that hold the tokenizer's unknown token.
    pub unknown_words: usize,
    pub unknown_word_rate: f64,
}

pub fn run(config: &TokenizeConfig, progress: &Progress) -> Result<TokenizeReport> {
    config.validate()?;
    let tokenizer = load_tokenizer(&config.model_dir, config.max_length)?;
    let with_token_types = writes_token_types(config)?;
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let frames = Split::ALL
        .iter()
        .map(|&split| TextTable::read(&split.path_in(&config.input_dir), "clean").map(|frame| (split, frame)))
        .collect::<Result<Vec<_>>>()?;

    // Weak labels (`label`'s output) are distributions over the labels of the
    // labels.json beside them; gold labels make the list from train's.
    let weak_labels = frames.iter().any(|(_, frame)| frame.label_probs.is_some());
    let labels_file = config.input_dir.join(LABELS);
    let labels = match weak_labels {
        true => LabelMap::load(&labels_file).with_context(|| {
            format!(
                "{} has label_probs (from `label`), so it needs the labels.json `label` writes",
                config.input_dir.display()
            )
        })?,
        false => LabelMap::from_labels(frames[0].1.labels.iter().map(String::as_str)),
    };
    if labels.is_empty() || frames[0].1.is_empty() {
        bail!("{} has no rows: nothing to learn labels from", Split::Train.path_in(&config.input_dir).display());
    }

    let mut report = TokenizeReport {
        max_length: config.max_length,
        token_type_ids: with_token_types,
        labels: labels.len(),
        ..TokenizeReport::default()
    };
    let mut inputs = vec![FileHash::of(&config.model_dir.join(kiln_core::model_folder::TOKENIZER))?];
    if weak_labels {
        inputs.push(FileHash::of(&labels_file)?);
    }
    for (split, frame) in frames {
        let path = split.path_in(&config.input_dir);
        inputs.push(FileHash::of(&path)?);
        let mut rows = frame.label_probs.iter().flatten().enumerate();
        if let Some((row, p)) = rows.find(|(_, p)| !p.is_empty() && p.len() != labels.len()) {
            bail!(
                "{}: row {}: label_probs has {} values but {} lists {} labels",
                path.display(),
                row + 1,
                p.len(),
                labels_file.display(),
                labels.len()
            );
        }
        let (table, label_ids) = attach_label_ids(frame, &labels, split, &path, config.unknown_labels, &mut report)?;
        let (examples, split_report) =
            encode(table, label_ids, &tokenizer, with_token_types, config.max_length, split, progress)?;
        let entry = report.splits.entry(split).or_default();
        let dropped = entry.dropped_unknown_label;
        *entry = SplitTokenReport { dropped_unknown_label: dropped, ..split_report };
        write_parquet(&mut staged, &split.file_name(), &examples_batch(&examples, with_token_types)?)?;
    }
    staged.write_bytes(LABELS, labels.to_json().as_bytes())?;

    let mut manifest = Manifest::new("tokenize", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Whether the processed tables carry `token_type_ids`: as the model's
/// `config.json` says, unless the config decides.
fn writes_token_types(config: &TokenizeConfig) -> Result<bool> {
    Ok(match config.token_type_ids {
        TokenTypeIds::Auto => ModelFolder::open(&config.model_dir)?.takes_token_types(),
        TokenTypeIds::Include => true,
        TokenTypeIds::Omit => false,
    })
}

/// Token classification: each sentence's words to windows of sub-words with
/// their labels (the first sub-word of a word, or all with `label_all_tokens`)
/// and word ids, and `labels.json`: `B-` and `I-` of each entity type in the
/// training split, and `O`.
pub fn run_tagged(config: &TokenizeConfig, progress: &Progress) -> Result<TokenizeReport> {
    config.validate_for(kiln_core::Task::TokenClassification)?;
    let tokenizer = load_tokenizer(&config.model_dir, config.max_length)?;
    let with_token_types = writes_token_types(config)?;
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let tables = Split::ALL
        .iter()
        .map(|&split| TaggedTable::read(&split.path_in(&config.input_dir), "clean").map(|table| (split, table)))
        .collect::<Result<Vec<_>>>()?;
    if tables[0].1.is_empty() {
        bail!("{} has no sentences: nothing to learn tags from", Split::Train.path_in(&config.input_dir).display());
    }
    // B- and I- of every entity type train has (a type's I- may first show up in test), and O.
    let kinds: std::collections::BTreeSet<&str> =
        tables[0].1.tags.iter().flatten().filter_map(|tag| kiln_core::entities::entity_type(tag)).collect();
    let tags: Vec<String> =
        kinds.iter().flat_map(|kind| [format!("B-{kind}"), format!("I-{kind}")]).chain(["O".to_owned()]).collect();
    let labels = LabelMap::from_labels(tags.iter().map(String::as_str));
    let aligner = Aligner::new(
        &tokenizer,
        &labels,
        config.max_length,
        config.long_sentences,
        config.window_overlap,
        config.label_all_tokens,
    )?;
    let mut report = TokenizeReport {
        max_length: config.max_length,
        token_type_ids: with_token_types,
        labels: labels.len(),
        ..TokenizeReport::default()
    };
    let mut inputs = vec![FileHash::of(&config.model_dir.join(kiln_core::model_folder::TOKENIZER))?];
    for (split, mut table) in tables {
        let path = split.path_in(&config.input_dir);
        inputs.push(FileHash::of(&path)?);
        let tag_ids = tag_ids(&mut table, &labels, split, &path, config.unknown_labels)?;
        let dropped = tag_ids.dropped;
        let bar = progress.rows(table.len() as u64, split.name());
        let aligned = table
            .tokens
            .par_iter()
            .zip(&tag_ids.ids)
            .map(|(words, ids)| {
                let aligned = aligner.align(words, Some(ids));
                bar.inc(1);
                aligned
            })
            .collect::<Result<Vec<_>>>()
            .with_context(|| format!("tokenizing the {split} split"))?;
        bar.finish_and_clear();
        let mut words = SplitWordReport { sentences: table.len(), ..SplitWordReport::default() };
        let mut examples = Vec::new();
        for (id, (sentence, sentence_words)) in table.ids.iter().zip(aligned.into_iter().zip(&table.tokens)) {
            words.words += sentence_words.len();
            words.long_sentences += usize::from(sentence.windows.len() > 1 || sentence.words_cut > 0);
            words.words_cut += sentence.words_cut;
            words.empty_words += sentence.empty_words;
            words.unknown_words += sentence.unknown_words;
            for window in sentence.windows {
                examples.push(TaggedExample {
                    id: id.clone(),
                    window: window.index,
                    token_type_ids: with_token_types.then_some(window.token_type_ids),
                    input_ids: window.input_ids,
                    labels: window.labels,
                    word_ids: window.word_ids,
                });
            }
        }
        words.windows = examples.len();
        words.unknown_word_rate = if words.words == 0 { 0.0 } else { words.unknown_words as f64 / words.words as f64 };
        let lengths: Vec<u32> = examples.iter().map(|e| e.input_ids.len() as u32).collect();
        report.splits.insert(
            split,
            SplitTokenReport {
                rows: table.len(),
                truncated: words.long_sentences,
                truncation_rate: if table.is_empty() { 0.0 } else { words.long_sentences as f64 / table.len() as f64 },
                dropped_unknown_label: dropped,
                lengths: LengthStats::of(&lengths),
            },
        );
        report.words.insert(split, words);
        write_parquet(&mut staged, &split.file_name(), &tagged_examples_batch(&examples, with_token_types)?)?;
    }
    staged.write_bytes(LABELS, labels.to_json().as_bytes())?;
    let mut manifest = Manifest::new("tokenize", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Each sentence's tag ids, and how many sentences went for a tag train never has.
struct TagIds {
    ids: Vec<Vec<u32>>,
    dropped: usize,
}

/// A tag never seen in train is an error naming the sentence, or drops it.
fn tag_ids(
    table: &mut TaggedTable,
    labels: &LabelMap,
    split: Split,
    path: &Path,
    policy: UnknownLabelPolicy,
) -> Result<TagIds> {
    let ids: Vec<Option<Vec<u32>>> =
        table.tags.iter().map(|tags| tags.iter().map(|t| labels.id(t)).collect()).collect();
    let unknown = ids.iter().filter(|i| i.is_none()).count();
    if let Some(row) = ids.iter().position(Option::is_none) {
        if policy == UnknownLabelPolicy::Error {
            let tag = table.tags[row].iter().find(|t| labels.id(t).is_none()).cloned().unwrap_or_default();
            bail!(
                "{}: row {} (id '{}') has the tag '{tag}', which never occurs in train ({unknown} such sentence(s) in \
                 {split}); fix the data, or set tokenize.unknown_labels = \"drop\"",
                path.display(),
                row + 1,
                table.ids[row],
            );
        }
        tracing::warn!("dropped {unknown} {split} sentence(s) with a tag that never occurs in train");
        table.retain(&ids.iter().map(Option::is_some).collect::<Vec<_>>());
    }
    Ok(TagIds { ids: ids.into_iter().flatten().collect(), dropped: unknown })
}

/// Each row's label id; a label not seen in train is an error or a dropped row.
fn attach_label_ids(
    mut table: TextTable,
    labels: &LabelMap,
    split: Split,
    path: &Path,
    policy: UnknownLabelPolicy,
    report: &mut TokenizeReport,
) -> Result<(TextTable, Vec<u32>)> {
    let ids: Vec<Option<u32>> = table.labels.iter().map(|label| labels.id(label)).collect();
    if let Some(row) = ids.iter().position(Option::is_none) {
        let unknown = ids.iter().filter(|id| id.is_none()).count();
        if policy == UnknownLabelPolicy::Error {
            bail!(
                "{}: row {} (id '{}') has label '{}', which never occurs in train ({unknown} such row(s) in {split}); \
                 fix the data, or set tokenize.unknown_labels = \"drop\"",
                path.display(),
                row + 1,
                table.ids[row],
                table.labels[row],
            );
        }
        report.splits.entry(split).or_default().dropped_unknown_label = unknown;
        tracing::warn!("dropped {unknown} {split} row(s) whose label never occurs in train");
        let keep = ids.iter().map(Option::is_some).collect::<Vec<_>>();
        table.retain(&keep);
    }
    Ok((table, ids.into_iter().flatten().collect()))
}

/// Encodes `texts` a batch at a time on every core, handing each encoding to
/// `each` in order, with a progress bar called `bar_name`; `what` names the
/// texts in an error.
pub(crate) fn encode_each(
    tokenizer: &Tokenizer,
    texts: &[String],
    progress: &Progress,
    bar_name: &str,
    what: &str,
    mut each: impl FnMut(&Encoding),
) -> Result<()> {
    let bar = progress.rows(texts.len() as u64, bar_name);
    for chunk in texts.chunks(BATCH) {
        let chunk: Vec<&str> = chunk.iter().map(String::as_str).collect();
        let encodings =
            tokenizer.encode_batch_fast(chunk, true).map_err(|e| anyhow::anyhow!("tokenizing {what} failed: {e}"))?;
        encodings.iter().for_each(&mut each);
        bar.inc(encodings.len() as u64);
    }
    bar.finish_and_clear();
    Ok(())
}

#[allow(clippy::too_many_arguments)]
fn encode(
    table: TextTable,
    label_ids: Vec<u32>,
    tokenizer: &Tokenizer,
    with_token_types: bool,
    max_length: usize,
    split: Split,
    progress: &Progress,
) -> Result<(Vec<Example>, SplitTokenReport)> {
    let rows = table.len();
    let mut examples = Vec::with_capacity(rows);
    let mut truncated = 0;
    let mut rows_in = table.ids.iter().zip(label_ids);
    // A row without a distribution (an empty one) learns from its label.
    let mut probs_in = table.label_probs.map(|p| p.into_iter().map(|p| (!p.is_empty()).then_some(p)));
    let mut weights_in = table.weights.map(Vec::into_iter);
    encode_each(tokenizer, &table.texts, progress, split.name(), &format!("the {split} split"), |encoding| {
        let token_type_ids =
            with_token_types.then(|| encoding.get_type_ids().iter().map(|&t| t as u8).collect::<Vec<u8>>());
        if !encoding.get_overflowing().is_empty() {
            truncated += 1;
        }
        let (id, label_id) = rows_in.next().map_or_else(Default::default, |(id, label)| (id.clone(), label));
        let label_probs = probs_in.as_mut().and_then(Iterator::next).flatten();
        let weight = weights_in.as_mut().and_then(Iterator::next);
        let input_ids = encoding.get_ids().to_vec();
        examples.push(Example { id, input_ids, token_type_ids, label_id, label_probs, weight });
    })?;
    let lengths: Vec<u32> = examples.iter().map(|e| e.input_ids.len() as u32).collect();
    debug_assert!(lengths.iter().all(|&n| n as usize <= max_length));
    let report = SplitTokenReport {
        rows,
        truncated,
        truncation_rate: if rows == 0 { 0.0 } else { truncated as f64 / rows as f64 },
        dropped_unknown_label: 0,
        lengths: LengthStats::of(&lengths),
    };
    Ok((examples, report))
}
