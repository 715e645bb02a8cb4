//! `ingest`: raw labelled text in, `{train,validation,test}.parquet` (id, text,
//! label) and `manifest.json` out; for token classification, tagged sentences
//! in (CoNLL, JSONL) and `{split}.parquet` (id, tokens, tags in IOB2) out.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_config::{IngestConfig, ValidationSource};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;
use serde::Serialize;

use kiln_core::entities::{Mode, spans};
use kiln_core::{FileHash, Manifest, Progress, Split, StagedOutput, Task};

use crate::read::{ColumnMap, LabelSource, ReadOptions, Records, read_records};
use crate::schema::{TaggedTable, TextTable};
use crate::tagged::{TaggedOptions, TaggedRecords, read_tagged};

pub const MANIFEST: &str = kiln_core::stages::INGEST_DONE;

#[derive(Debug, Clone, Serialize)]
pub struct SourceReport {
    pub role: Split,
    pub path: String,
    pub rows_read: usize,
    /// Rows whose score no `score_labels` rule matched.
    pub dropped_no_label: usize,
    /// Token classification: `I-` tags that continued nothing, read as `B-`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repaired_tags: Option<usize>,
    /// Token classification: CoNLL words of whitespace only, tagged `O`, dropped.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub whitespace_words: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct SplitReport {
    /// Texts, or sentences for token classification.
    pub rows: usize,
    /// Rows per label, or entities per type for token classification.
    pub labels: BTreeMap<String, usize>,
    /// Token classification: words in the split.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestReport {
    pub task: Task,
    pub sources: Vec<SourceReport>,
    pub splits: BTreeMap<Split, SplitReport>,
}

/// Reads the configured sources, splits them and writes `config.output_dir`.
pub fn run(config: &IngestConfig, task: Task, progress: &Progress) -> Result<IngestReport> {
    config.validate()?;
    match task {
        Task::SequenceClassification => run_texts(config, progress),
        Task::TokenClassification => run_tagged(config, progress),
    }
}

fn run_texts(config: &IngestConfig, progress: &Progress) -> Result<IngestReport> {
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let rules = config.score_rules()?;
    let label = match &config.score_column {
        Some(column) => LabelSource::Score { column, rules: &rules },
        None => LabelSource::Column(&config.label_column),
    };
    let options = ReadOptions { format: config.format, has_header: config.has_header, quoting: config.quoting };

    let mut sources = Vec::new();
    let mut inputs = Vec::new();
    let mut read = |role: Split, path: &Path, id_prefix: &str| -> Result<Records> {
        let columns = ColumnMap { text: &config.text_column, label, id: config.id_column.as_deref(), id_prefix };
        let records = read_records(path, &options, &columns, progress)?;
        if records.is_empty() {
            bail!(
                "{}: all {} rows were dropped by ingest.score_labels; check the rules",
                path.display(),
                records.rows_read
            );
        }
        sources.push(SourceReport {
            role,
            path: path.display().to_string(),
            rows_read: records.rows_read,
            dropped_no_label: records.dropped_no_label,
            repaired_tags: None,
            whitespace_words: None,
        });
        inputs.push(FileHash::of(path)?);
        Ok(records)
    };

    let train_file = config.train_file.as_deref().context("ingest.train_file is not set")?;
    let all = read_each(Split::Train, train_file, &mut read)?;
    let given_validation =
        config.validation_file.as_deref().map(|p| read_each(Split::Validation, p, &mut read)).transpose()?;
    let given_test = config.test_file.as_deref().map(|p| read_each(Split::Test, p, &mut read)).transpose()?;
    let (given_validation, given_test) =
        validation_from_test(given_validation, given_test, |t| t.labels.clone(), config);

    // Carve what the source does not provide out of the training file, stratified by label.
    let mut splits = carve(&all, &all.labels, given_validation, given_test, config);

    let mut report = IngestReport { task: Task::SequenceClassification, sources, splits: BTreeMap::new() };
    for split in Split::ALL {
        let records = splits.remove(&split).unwrap_or_default();
        check_unique_ids(&records.ids, split, config.id_column.as_deref())?;
        if records.is_empty() {
            tracing::warn!("the {split} split is empty; raise the fraction or give a {split} file");
        }
        let mut labels = BTreeMap::new();
        for label in &records.labels {
            *labels.entry(label.clone()).or_insert(0) += 1;
        }
        report.splits.insert(split, SplitReport { rows: records.len(), labels, words: None });
        let table =
            TextTable { ids: records.ids, texts: records.texts, labels: records.labels, ..TextTable::default() };
        table.write(&mut staged, &split.file_name())?;
    }

    let mut manifest = Manifest::new("ingest", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Token classification: tagged sentences from CoNLL or JSONL, tags in IOB2.
fn run_tagged(config: &IngestConfig, progress: &Progress) -> Result<IngestReport> {
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let (mut sources, mut inputs) = (Vec::new(), Vec::new());
    let mut read = |role: Split, path: &Path, id_prefix: &str| -> Result<TaggedTable> {
        let options = TaggedOptions {
            format: config.format,
            tokens_column: &config.tokens_column,
            tags_column: &config.tags_column,
            id_column: config.id_column.as_deref(),
            conll_tag_column: config.conll_tag_column,
            scheme: config.tag_scheme,
            invalid: config.invalid_tags,
            id_prefix,
        };
        let TaggedRecords { table, repaired_tags, whitespace_words, .. } = read_tagged(path, &options, progress)?;
        if repaired_tags > 0 {
            tracing::warn!("{}: {repaired_tags} I- tags continued no entity and were read as B-", path.display());
        }
        if whitespace_words > 0 {
            tracing::info!("{}: {whitespace_words} words of whitespace only, tagged O, dropped", path.display());
        }
        sources.push(SourceReport {
            role,
            path: path.display().to_string(),
            rows_read: table.len(),
            dropped_no_label: 0,
            repaired_tags: Some(repaired_tags),
            whitespace_words: Some(whitespace_words),
        });
        inputs.push(FileHash::of(path)?);
        Ok(table)
    };
    let train_file = config.train_file.as_deref().context("ingest.train_file is not set")?;
    let all = read_each(Split::Train, train_file, &mut read)?;
    let given_validation =
        config.validation_file.as_deref().map(|p| read_each(Split::Validation, p, &mut read)).transpose()?;
    let given_test = config.test_file.as_deref().map(|p| read_each(Split::Test, p, &mut read)).transpose()?;

    // Carve missing splits out of the training file, keeping the share of
    // sentences with entities alike in each.
    let entity_strata = |table: &TaggedTable| -> Vec<String> {
        table
            .tags
            .iter()
            .map(|tags| if tags.iter().any(|t| t != "O") { "entities" } else { "none" }.to_owned())
            .collect()
    };
    let (given_validation, given_test) = validation_from_test(given_validation, given_test, entity_strata, config);
    let has_entities = entity_strata(&all);
    let mut splits = carve(&all, &has_entities, given_validation, given_test, config);

    let mut report = IngestReport { task: Task::TokenClassification, sources, splits: BTreeMap::new() };
    for split in Split::ALL {
        let table = splits.remove(&split).unwrap_or_default();
        check_unique_ids(&table.ids, split, config.id_column.as_deref())?;
        if table.is_empty() {
            tracing::warn!("the {split} split is empty; raise the fraction or give a {split} file");
        }
        let mut entities = BTreeMap::new();
        for span in table.tags.iter().flat_map(|tags| spans(tags, Mode::Strict)) {
            *entities.entry(span.kind).or_insert(0) += 1;
        }
        let words = table.tokens.iter().map(Vec::len).sum();
        report.splits.insert(split, SplitReport { rows: table.len(), labels: entities, words: Some(words) });
        table.write(&mut staged, &split.file_name())?;
    }
    let mut manifest = Manifest::new("ingest", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Rows that can be dealt out into splits one by one, and files of them joined.
trait Rows: Default {
    fn push_row(&mut self, from: &Self, index: usize);
    fn append(&mut self, other: Self);
}

impl Rows for Records {
    fn push_row(&mut self, from: &Self, index: usize) {
        self.ids.push(from.ids[index].clone());
        self.texts.push(from.texts[index].clone());
        self.labels.push(from.labels[index].clone());
    }

    fn append(&mut self, other: Self) {
        self.ids.extend(other.ids);
        self.texts.extend(other.texts);
        self.labels.extend(other.labels);
        self.rows.extend(other.rows);
        self.rows_read += other.rows_read;
        self.dropped_no_label += other.dropped_no_label;
    }
}

impl Rows for TaggedTable {
    fn push_row(&mut self, from: &Self, index: usize) {
        self.ids.push(from.ids[index].clone());
        self.tokens.push(from.tokens[index].clone());
        self.tags.push(from.tags[index].clone());
    }

    fn append(&mut self, other: Self) {
        self.ids.extend(other.ids);
        self.tokens.extend(other.tokens);
        self.tags.extend(other.tags);
    }
}

/// The files a split's setting names: the path itself, or, for a glob
/// pattern (`*`, `?`, `[`), every file it matches in name order.
pub fn expand_pattern(path: &Path) -> Result<Vec<std::path::PathBuf>> {
    let text = path.to_string_lossy();
    if !text.contains(['*', '?', '[']) {
        return Ok(vec![path.to_owned()]);
    }
    let mut files = glob::glob(&text)
        .with_context(|| format!("{text} is not a valid glob pattern"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("cannot list the files {text} matches"))?;
    files.retain(|file| file.is_file());
    if files.is_empty() {
        bail!("{text} matches no file");
    }
    files.sort();
    Ok(files)
}

/// Reads every file of `pattern` as `role`'s rows, one after another. Made-up
/// ids (no id column) are `<split>-<row>`, or `<split>-<file stem>-<row>` for
/// a pattern of several files, so they stay unique.
fn read_each<T: Rows>(
    role: Split,
    pattern: &Path,
    read: &mut impl FnMut(Split, &Path, &str) -> Result<T>,
) -> Result<T> {
    let files = expand_pattern(pattern)?;
    let mut rows = T::default();
    for file in &files {
        let prefix = match files.len() {
            1 => role.name().to_owned(),
            _ => format!("{}-{}", role.name(), file.file_stem().unwrap_or_default().to_string_lossy()),
        };
        rows.append(read(role, file, &prefix)?);
    }
    Ok(rows)
}

/// With `validation_from = "test"`, the test file's rows split into
/// validation (`validation_fraction`, stratified by `strata`) and test.
fn validation_from_test<T: Rows>(
    validation: Option<T>,
    test: Option<T>,
    strata: impl Fn(&T) -> Vec<String>,
    config: &IngestConfig,
) -> (Option<T>, Option<T>) {
    let (ValidationSource::Test, None, Some(test)) = (config.validation_from, &validation, &test) else {
        return (validation, test);
    };
    let (mut carved, mut kept) = (T::default(), T::default());
    for (index, split) in
        stratified_split(&strata(test), config.validation_fraction, 0.0, config.seed).into_iter().enumerate()
    {
        match split {
            Split::Validation => carved.push_row(test, index),
            _ => kept.push_row(test, index),
        }
    }
    (Some(carved), Some(kept))
}

/// The three splits: the source's own validation and test files where it has
/// them, the rest carved out of `all` by `stratified_split` over `strata`.
fn carve<T: Rows>(
    all: &T,
    strata: &[String],
    validation: Option<T>,
    test: Option<T>,
    config: &IngestConfig,
) -> BTreeMap<Split, T> {
    let validation_fraction = if validation.is_some() { 0.0 } else { config.validation_fraction };
    let test_fraction = if test.is_some() { 0.0 } else { config.test_fraction };
    let mut splits: BTreeMap<Split, T> = BTreeMap::new();
    let assignment = stratified_split(strata, validation_fraction, test_fraction, config.seed);
    for (index, split) in assignment.into_iter().enumerate() {
        splits.entry(split).or_default().push_row(all, index);
    }
    splits.extend(validation.map(|rows| (Split::Validation, rows)));
    splits.extend(test.map(|rows| (Split::Test, rows)));
    splits
}

fn check_unique_ids(ids: &[String], split: Split, id_column: Option<&str>) -> Result<()> {
    let Some(column) = id_column else { return Ok(()) };
    let mut seen = std::collections::HashMap::with_capacity(ids.len());
    for (index, id) in ids.iter().enumerate() {
        if let Some(first) = seen.insert(id.as_str(), index) {
            bail!(
                "id column '{column}' has the value '{id}' twice in the {split} split (its rows {} and {}); ids must be unique",
                first + 1,
                index + 1
            );
        }
    }
    Ok(())
}

/// Assigns each row to a split, stratified by label: every label keeps its share
/// in each split, and each label with any rows keeps at least one for training.
/// Deterministic in `seed` (ChaCha8 is portable across platforms and versions).
pub fn stratified_split(labels: &[String], validation_fraction: f64, test_fraction: f64, seed: u64) -> Vec<Split> {
    let mut by_label: BTreeMap<&str, Vec<usize>> = BTreeMap::new();
    for (index, label) in labels.iter().enumerate() {
        by_label.entry(label).or_default().push(index);
    }
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut assignment = vec![Split::Train; labels.len()];
    for indices in by_label.values_mut() {
        indices.shuffle(&mut rng);
        let count = indices.len();
        let mut test = (count as f64 * test_fraction).round() as usize;
        let mut validation = (count as f64 * validation_fraction).round() as usize;
        while test + validation >= count && test + validation > 0 {
            if validation >= test && validation > 0 {
                validation -= 1;
            } else {
                test -= 1;
            }
        }
        for &index in &indices[..test] {
            assignment[index] = Split::Test;
        }
        for &index in &indices[test..test + validation] {
            assignment[index] = Split::Validation;
        }
    }
    assignment
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(counts: &[(&str, usize)]) -> Vec<String> {
        counts.iter().flat_map(|(label, n)| std::iter::repeat_n(label.to_string(), *n)).collect()
    }

    fn count(assignment: &[Split], labels: &[String], split: Split, label: &str) -> usize {
        assignment.iter().zip(labels).filter(|(s, l)| **s == split && *l == label).count()
    }

    #[test]
    fn split_is_stratified() {
        let labels = labels(&[("a", 100), ("b", 50), ("c", 10)]);
        let assignment = stratified_split(&labels, 0.1, 0.2, 7);
        assert_eq!(count(&assignment, &labels, Split::Test, "a"), 20);
        assert_eq!(count(&assignment, &labels, Split::Validation, "a"), 10);
        assert_eq!(count(&assignment, &labels, Split::Test, "b"), 10);
        assert_eq!(count(&assignment, &labels, Split::Validation, "b"), 5);
        assert_eq!(count(&assignment, &labels, Split::Test, "c"), 2);
        assert_eq!(count(&assignment, &labels, Split::Validation, "c"), 1);
    }

    #[test]
    fn split_is_deterministic_in_the_seed() {
        let labels = labels(&[("a", 60), ("b", 40)]);
        assert_eq!(stratified_split(&labels, 0.2, 0.2, 1), stratified_split(&labels, 0.2, 0.2, 1));
        assert_ne!(stratified_split(&labels, 0.2, 0.2, 1), stratified_split(&labels, 0.2, 0.2, 2));
    }

    #[test]
    fn rare_labels_keep_a_training_row() {
        let labels = labels(&[("one", 1), ("two", 2)]);
        let assignment = stratified_split(&labels, 0.5, 0.5, 3);
        assert_eq!(count(&assignment, &labels, Split::Train, "one"), 1);
        assert_eq!(count(&assignment, &labels, Split::Train, "two"), 1);
    }

    #[test]
    fn no_fractions_keeps_everything_in_train() {
        let labels = labels(&[("a", 5)]);
        assert!(stratified_split(&labels, 0.0, 0.0, 3).iter().all(|s| *s == Split::Train));
    }
}
