//! `clean`: normalise texts by the `[clean]` rules ([`Cleaner`], the one
//! definition training and serving share), then drop empty, too short or too
//! long texts, duplicates within a split and rows that leak across splits. The
//! rules run over a column on every core (rayon).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use kiln_config::{CleanConfig, ConflictPolicy};
use kiln_core::{FileHash, Manifest, Progress, Split, StagedOutput, Task};
use kiln_text::clean::{CleanedWord, Cleaner, Rule, WordCleaner};
use rayon::prelude::*;
use serde::Serialize;

use crate::schema::{TaggedTable, TextTable, retain_where};

/// The manifest, written last.
pub const MANIFEST: &str = kiln_core::stages::CLEAN_DONE;

#[derive(Debug, Clone, Default, Serialize)]
pub struct DropCounts {
    pub empty: usize,
    pub too_short: usize,
    pub too_long: usize,
    pub duplicate: usize,
    pub leak: usize,
    pub conflict: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitCleanReport {
    pub rows_in: usize,
    pub rows_out: usize,
    pub dropped: DropCounts,
    /// Texts (words, for token classification) changed by each rule, by its config key.
    pub changed_by_rule: BTreeMap<&'static str, usize>,
    /// Token classification: what word-by-word cleaning did.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub words: Option<WordCounts>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub text: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConflictReport {
    /// Distinct texts that appear with more than one label (after cleaning).
    pub texts: usize,
    pub rows: usize,
    /// The first few, sorted by text.
    pub examples: Vec<Conflict>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    pub splits: BTreeMap<Split, SplitCleanReport>,
    pub conflicts: ConflictReport,
}

const CONFLICT_EXAMPLES: usize = 20;

/// Cleans the splits in `config.input_dir` into `config.output_dir`.
pub fn run(config: &CleanConfig, progress: &Progress) -> Result<CleanReport> {
    config.validate()?;
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let cleaner = Cleaner::new(config);
    let mut report = CleanReport::default();
    let mut inputs = Vec::new();
    let mut frames = Vec::new();
    for split in Split::ALL {
        let path = split.path_in(&config.input_dir);
        let started = std::time::Instant::now();
        let table = TextTable::read(&path, "ingest")?;
        inputs.push(FileHash::of(&path)?);
        let (frame, split_report) = clean_table(table, &cleaner, config, split, progress)
            .with_context(|| format!("cleaning {}", path.display()))?;
        report.splits.insert(split, split_report);
        frames.push((split, frame));
        tracing::debug!("read and cleaned {} in {:?}", path.display(), started.elapsed());
    }

    filter_across_splits(&mut frames, config, &mut report);
    for (split, frame) in &mut frames {
        report.splits.entry(*split).or_default().rows_out = frame.len();
        frame.write(&mut staged, &split.file_name())?;
    }
    let mut manifest = Manifest::new("clean", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Leaks from train into validation and test, and texts with conflicting labels.
fn filter_across_splits(frames: &mut [(Split, TextTable)], config: &CleanConfig, report: &mut CleanReport) {
    if config.drop_leaks {
        drop_leaks(frames, report);
    }
    let conflicting = find_conflicts(frames, &mut report.conflicts);
    if config.conflicts == ConflictPolicy::Drop && !conflicting.is_empty() {
        for (split, frame) in frames.iter_mut() {
            let keep: Vec<bool> = frame.texts.iter().map(|text| !conflicting.contains(text)).collect();
            report.splits.entry(*split).or_default().dropped.conflict = frame.retain(&keep);
        }
    }
    if report.conflicts.texts > 0 {
        tracing::warn!(
            "{} texts appear with more than one label ({} rows); {} (see {MANIFEST})",
            report.conflicts.texts,
            report.conflicts.rows,
            match config.conflicts {
                ConflictPolicy::Report => "kept",
                ConflictPolicy::Drop => "dropped",
            }
        );
    }
}

/// Token classification: the rules word by word ([`WordCleaner`]: no word is
/// merged, split or moved, so every tag stays on its word), then the filters
/// texts get, on each sentence's words joined by spaces and its tags: empty,
/// too short or long, duplicates, leaks across splits, conflicting tags. A word
/// cleaning empties is dropped with its tag when that is `O`, and kept as it
/// was inside an entity.
pub fn run_tagged(config: &CleanConfig, progress: &Progress) -> Result<CleanReport> {
    config.validate_for(Task::TokenClassification)?;
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let cleaner = WordCleaner::new(config);
    let mut report = CleanReport::default();
    let (mut inputs, mut tagged, mut views) = (Vec::new(), Vec::new(), Vec::new());
    for split in Split::ALL {
        let path = split.path_in(&config.input_dir);
        let mut table = TaggedTable::read(&path, "ingest")?;
        inputs.push(FileHash::of(&path)?);
        let bar = progress.rows(table.len() as u64, split.name());
        let mut split_report = SplitCleanReport { rows_in: table.len(), ..Default::default() };
        let mut counts = WordCounts::default();
        for (words, tags) in table.tokens.iter_mut().zip(table.tags.iter_mut()) {
            clean_sentence(&cleaner, words, tags, &mut counts);
            bar.inc(1);
        }
        bar.finish_and_clear();
        for rule in Rule::ALL {
            split_report.changed_by_rule.insert(rule.key(), counts.changed_by_rule[rule as usize]);
        }
        split_report.words = Some(counts);
        // Sentences as texts (words joined, tags joined) for the filters texts get.
        let mut view = TextTable {
            ids: table.ids.clone(),
            texts: table.tokens.iter().map(|w| w.join(" ")).collect(),
            labels: table.tags.iter().map(|t| t.join(" ")).collect(),
            ..TextTable::default()
        };
        filter_rows(&mut view, config, &mut split_report);
        report.splits.insert(split, split_report);
        tagged.push(table);
        views.push((split, view));
    }
    filter_across_splits(&mut views, config, &mut report);
    for (mut table, (split, view)) in tagged.into_iter().zip(views) {
        let kept: HashSet<&String> = view.ids.iter().collect();
        let keep: Vec<bool> = table.ids.iter().map(|id| kept.contains(id)).collect();
        table.retain(&keep);
        report.splits.entry(split).or_default().rows_out = table.len();
        table.write(&mut staged, &split.file_name())?;
    }
    let mut manifest = Manifest::new("clean", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// What word-by-word cleaning did in a split.
#[derive(Debug, Clone, Default, Serialize)]
pub struct WordCounts {
    pub words_in: usize,
    /// Emptied by cleaning and tagged `O`: dropped with the tag.
    pub dropped: usize,
    /// Emptied by cleaning inside an entity: kept as they were.
    pub kept_uncleaned: usize,
    #[serde(skip)]
    changed_by_rule: [usize; Rule::ALL.len()],
}

fn clean_sentence(cleaner: &WordCleaner, words: &mut Vec<String>, tags: &mut Vec<String>, counts: &mut WordCounts) {
    counts.words_in += words.len();
    let mut keep = Vec::with_capacity(words.len());
    for (word, tag) in words.iter_mut().zip(tags.iter()) {
        match cleaner.clean_word(word) {
            CleanedWord::Word(cleaned, changed) => {
                for rule in Rule::ALL {
                    counts.changed_by_rule[rule as usize] += usize::from(changed & rule.bit() != 0);
                }
                if cleaned != word.as_str() {
                    *word = cleaned.into_owned();
                }
                keep.push(true);
            }
            CleanedWord::Emptied if tag == "O" => {
                counts.dropped += 1;
                keep.push(false);
            }
            CleanedWord::Emptied => {
                counts.kept_uncleaned += 1;
                keep.push(true);
            }
        }
    }
    retain_where(words, &keep);
    retain_where(tags, &keep);
}

/// Applies the text rules and the length limits, then drops duplicates.
fn clean_table(
    mut table: TextTable,
    cleaner: &Cleaner,
    config: &CleanConfig,
    split: Split,
    progress: &Progress,
) -> Result<(TextTable, SplitCleanReport)> {
    let texts = &table.texts;
    let bar = progress.rows(texts.len() as u64, split.name());
    const CHUNK: usize = 16_384;
    let cleaned: Vec<(String, u16)> = texts
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            // A clone per chunk gives each thread its regexes' fast, uncontended cache.
            let cleaner = cleaner.clone();
            let out: Vec<(String, u16)> = chunk
                .iter()
                .map(|text| {
                    let (clean, changed) = cleaner.clean_counted(text);
                    (clean.into_owned(), changed)
                })
                .collect();
            bar.inc(chunk.len() as u64);
            out
        })
        .collect();
    bar.finish_and_clear();

    let mut report = SplitCleanReport { rows_in: texts.len(), ..Default::default() };
    for rule in Rule::ALL {
        let count = cleaned.iter().filter(|(_, changed)| changed & rule.bit() != 0).count();
        report.changed_by_rule.insert(rule.key(), count);
    }
    table.texts = cleaned.into_iter().map(|(text, _)| text).collect();
    filter_rows(&mut table, config, &mut report);
    Ok((table, report))
}

/// Drops empty, too short and too long texts, then duplicates (same text and label).
fn filter_rows(table: &mut TextTable, config: &CleanConfig, report: &mut SplitCleanReport) {
    let mut keep = Vec::with_capacity(table.len());
    for text in &table.texts {
        let chars = if text.is_ascii() { text.len() } else { text.chars().count() };
        let verdict = if chars == 0 {
            report.dropped.empty += 1;
            false
        } else if chars < config.min_chars {
            report.dropped.too_short += 1;
            false
        } else if chars > config.max_chars {
            report.dropped.too_long += 1;
            false
        } else {
            true
        };
        keep.push(verdict);
    }
    table.retain(&keep);
    if config.dedup {
        // The first of each (text, label) pair stays.
        let mut seen = HashSet::with_capacity(table.len());
        let first: Vec<bool> = table.texts.iter().zip(&table.labels).map(|pair| seen.insert(pair)).collect();
        report.dropped.duplicate = table.retain(&first);
    }
}

/// Removes validation rows whose text is in train, and test rows whose text is
/// in train or validation: a model must never be scored on what it trained on.
fn drop_leaks(frames: &mut [(Split, TextTable)], report: &mut CleanReport) {
    for later in 1..frames.len() {
        let (earlier, rest) = frames.split_at_mut(later);
        let (split, frame) = &mut rest[0];
        let seen: HashSet<&str> =
            earlier.iter().flat_map(|(_, table)| table.texts.iter().map(String::as_str)).collect();
        let keep: Vec<bool> = frame.texts.iter().map(|text| !seen.contains(text.as_str())).collect();
        report.splits.entry(*split).or_default().dropped.leak = frame.retain(&keep);
    }
}

/// Texts that appear with more than one label, across all splits.
fn find_conflicts(frames: &[(Split, TextTable)], report: &mut ConflictReport) -> HashSet<String> {
    // One pass keeps each text's first label and row count; label sets are only
    // built for the (few) texts that turn out to conflict.
    let mut first_label: HashMap<&str, (&str, usize, bool)> = HashMap::new();
    for (_, frame) in frames {
        for (text, label) in frame.texts.iter().zip(&frame.labels) {
            let entry = first_label.entry(text.as_str()).or_insert((label.as_str(), 0, false));
            entry.1 += 1;
            entry.2 |= entry.0 != label;
        }
    }
    let mut conflicting: BTreeMap<&str, BTreeSet<&str>> = first_label
        .iter()
        .filter(|(_, (_, _, conflict))| *conflict)
        .map(|(text, _)| (*text, BTreeSet::new()))
        .collect();
    if !conflicting.is_empty() {
        for (_, frame) in frames {
            for (text, label) in frame.texts.iter().zip(&frame.labels) {
                if let Some(set) = conflicting.get_mut(text.as_str()) {
                    set.insert(label.as_str());
                }
            }
        }
    }
    report.texts = conflicting.len();
    report.rows = conflicting.keys().map(|t| first_label[t].1).sum();
    report.examples = conflicting
        .iter()
        .take(CONFLICT_EXAMPLES)
        .map(|(text, labels)| Conflict {
            text: (*text).to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        })
        .collect();
    conflicting.into_keys().map(str::to_owned).collect()
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::schema::read_split;

    fn frame(ids: &[&str], texts: &[&str], labels: &[&str]) -> TextTable {
        let owned = |values: &[&str]| values.iter().map(|v| (*v).to_owned()).collect();
        TextTable { ids: owned(ids), texts: owned(texts), labels: owned(labels), ..TextTable::default() }
    }

    /// Writes raw splits as `ingest` would.
    fn write_raw(dir: &Path, splits: [TextTable; 3]) {
        let mut staged = StagedOutput::new(dir).expect("staged");
        for (split, table) in Split::ALL.into_iter().zip(splits) {
            table.write(&mut staged, &split.file_name()).expect("write");
        }
        staged.commit("done.json", &Manifest::new("test", &(), &())).expect("commit");
    }

    fn texts(table: &TextTable) -> &[String] {
        &table.texts
    }

    #[test]
    fn stage_drops_by_reason_and_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw");
        write_raw(
            &raw,
            [
                frame(
                    &["1", "2", "3", "4", "5", "6", "7"],
                    &["good  film", "good film", "<br>", "a", "bad film", "ok film", "ok film"],
                    &["pos", "pos", "pos", "pos", "neg", "pos", "neg"],
                ),
                frame(&["8", "9"], &["good film", "new one"], &["pos", "neg"]),
                frame(&["10", "11"], &["new one", "fresh"], &["neg", "pos"]),
            ],
        );
        let config = CleanConfig {
            input_dir: raw.clone(),
            output_dir: dir.path().join("interim"),
            min_chars: 2,
            ..CleanConfig::default()
        };
        let report = run(&config, &Progress::hidden()).expect("cleans");

        let train = read_split(&config.output_dir, Split::Train).expect("train");
        assert_eq!(texts(&train), ["good film", "bad film", "ok film", "ok film"]);
        let train_report = &report.splits[&Split::Train];
        assert_eq!((train_report.rows_in, train_report.rows_out), (7, 4));
        assert_eq!(train_report.dropped.empty, 1);
        assert_eq!(train_report.dropped.too_short, 1);
        assert_eq!(train_report.dropped.duplicate, 1);
        // "good  film", and "<br>", which the HTML rule turned into a lone space.
        assert_eq!(train_report.changed_by_rule["collapse_whitespace"], 2);
        assert_eq!(train_report.changed_by_rule["strip_html"], 1);

        let validation = read_split(&config.output_dir, Split::Validation).expect("validation");
        assert_eq!(texts(&validation), ["new one"], "the row also in train leaked");
        assert_eq!(report.splits[&Split::Validation].dropped.leak, 1);
        let test = read_split(&config.output_dir, Split::Test).expect("test");
        assert_eq!(texts(&test), ["fresh"], "the row also in validation leaked");

        assert_eq!(report.conflicts.texts, 1);
        assert_eq!(report.conflicts.examples[0].text, "ok film");
        assert_eq!(report.conflicts.examples[0].labels, ["neg", "pos"]);

        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config.output_dir.join(MANIFEST)).expect("report"))
                .expect("json");
        assert_eq!(manifest["stage"], "clean");
        assert_eq!(manifest["inputs"].as_array().expect("inputs").len(), 3);
        assert_eq!(manifest["report"]["splits"]["train"]["dropped"]["empty"], 1);

        let dropping = CleanConfig { conflicts: ConflictPolicy::Drop, ..config.clone() };
        let report = run(&dropping, &Progress::hidden()).expect("cleans");
        assert_eq!(report.splits[&Split::Train].dropped.conflict, 2);
        assert_eq!(texts(&read_split(&config.output_dir, Split::Train).expect("train")), ["good film", "bad film"]);
    }

    fn sentence(words: &str, tags: &str) -> (Vec<String>, Vec<String>) {
        let split = |text: &str| text.split(' ').map(str::to_owned).collect();
        (split(words), split(tags))
    }

    fn tagged(sentences: &[(Vec<String>, Vec<String>)], prefix: &str) -> TaggedTable {
        TaggedTable {
            ids: (0..sentences.len()).map(|i| format!("{prefix}-{i}")).collect(),
            tokens: sentences.iter().map(|s| s.0.clone()).collect(),
            tags: sentences.iter().map(|s| s.1.clone()).collect(),
        }
    }

    #[test]
    fn tagged_sentences_are_cleaned_word_by_word_and_tags_stay_on_their_words() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw");
        let train = [
            sentence("@paulwalk loves https://t.co/x New <br> York <br>", "O O O B-location I-location I-location O"),
            sentence("#Apple sells AT&amp;T <br>", "B-corporation O B-corporation O"),
            sentence("@paulwalk loves https://t.co/x New <br> York <br>", "O O O B-location I-location I-location O"),
            sentence("Paris", "B-location"),
            sentence("Paris", "B-person"),
        ];
        let mut staged = StagedOutput::new(&raw).expect("staged");
        let splits = [
            tagged(&train, "train"),
            tagged(&[sentence("hello there", "O O"), sentence("Paris", "B-location")], "validation"),
            tagged(&[sentence("bye", "O")], "test"),
        ];
        for (split, table) in Split::ALL.into_iter().zip(&splits) {
            table.write(&mut staged, &split.file_name()).expect("write");
        }
        staged.commit("done.json", &Manifest::new("test", &(), &())).expect("commit");
        let config = CleanConfig { input_dir: raw, output_dir: dir.path().join("interim"), ..CleanConfig::default() };
        let report = run_tagged(&config, &Progress::hidden()).expect("cleans");

        let train = TaggedTable::read(&Split::Train.path_in(&config.output_dir), "clean").expect("train");
        assert_eq!(train.ids, ["train-0", "train-1", "train-3", "train-4"], "the duplicate went");
        // The link and mention are placeholders; "<br>" inside the location
        // entity stays as it was, and the one tagged O at the end goes with its tag.
        assert_eq!(train.tokens[0], ["@user", "loves", "http", "New", "<br>", "York"]);
        assert_eq!(train.tags[0], ["O", "O", "O", "B-location", "I-location", "I-location"]);
        assert_eq!(train.tokens[1], ["Apple", "sells", "AT&T"]);
        assert_eq!(train.tags[1], ["B-corporation", "O", "B-corporation"]);
        let words = report.splits[&Split::Train].words.as_ref().expect("word counts");
        assert_eq!((words.words_in, words.dropped, words.kept_uncleaned), (20, 3, 2));
        assert_eq!(report.splits[&Split::Train].changed_by_rule["strip_mentions"], 2);
        assert_eq!(report.splits[&Split::Train].dropped.duplicate, 1);
        let validation =
            TaggedTable::read(&Split::Validation.path_in(&config.output_dir), "clean").expect("validation");
        assert_eq!(validation.ids, ["validation-0"], "\"Paris\" leaked from train");
        assert_eq!(report.conflicts.texts, 1, "\"Paris\" is a location and a person");

        let removing = CleanConfig { hashtags: kiln_config::HashtagMode::Remove, ..config.clone() };
        let error = run_tagged(&removing, &Progress::hidden()).expect_err("remove would delete words");
        assert!(error.to_string().contains("clean.hashtags"), "{error}");
        let text = run(&config, &Progress::hidden()).expect_err("a tagged table is not a text table");
        assert!(format!("{text:#}").contains("missing column 'text'"), "{text:#}");
    }

    #[test]
    fn missing_input_says_which_stage_to_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CleanConfig {
            input_dir: dir.path().join("nope"),
            output_dir: dir.path().join("out"),
            ..Default::default()
        };
        let message = format!("{:#}", run(&config, &Progress::hidden()).expect_err("missing"));
        assert!(message.contains("train.parquet") && message.contains("ingest"), "{message}");
        assert!(!config.output_dir.join(MANIFEST).exists());
    }
}
