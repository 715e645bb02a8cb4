//! `clean`: normalise texts by the `[clean]` rules ([`Cleaner`], the one
//! definition training and serving share), then drop empty, too short or too
//! long texts, duplicates within a split and rows that leak across splits. The
//! rules run over a column on every core (rayon).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use anyhow::{Context, Result};
use kiln_config::{CleanConfig, ConflictPolicy};
use kiln_core::{FileHash, Manifest, Progress, Split, StagedOutput};
use kiln_text::clean::{Cleaner, Rule};
use rayon::prelude::*;
use serde::Serialize;

use crate::schema::TextTable;

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
    /// Texts changed by each rule, by its config key.
    pub changed_by_rule: BTreeMap<&'static str, usize>,
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

    if config.drop_leaks {
        drop_leaks(&mut frames, &mut report);
    }
    let conflicting = find_conflicts(&frames, &mut report.conflicts);
    if config.conflicts == ConflictPolicy::Drop && !conflicting.is_empty() {
        for (split, frame) in &mut frames {
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

    for (split, frame) in &mut frames {
        report.splits.entry(*split).or_default().rows_out = frame.len();
        frame.write(&mut staged, &split.file_name())?;
    }
    let mut manifest = Manifest::new("clean", config, &report);
    manifest.inputs = inputs;
    manifest.outputs = staged.hashes()?;
    staged.commit(MANIFEST, &manifest)?;
    Ok(report)
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
    let mut keep = Vec::with_capacity(cleaned.len());
    for (text, _) in &cleaned {
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
    table.texts = cleaned.into_iter().map(|(text, _)| text).collect();
    table.retain(&keep);
    if config.dedup {
        // The first of each (text, label) pair stays.
        let mut seen = HashSet::with_capacity(table.len());
        let first: Vec<bool> = table.texts.iter().zip(&table.labels).map(|pair| seen.insert(pair)).collect();
        report.dropped.duplicate = table.retain(&first);
    }
    Ok((table, report))
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
        TextTable { ids: owned(ids), texts: owned(texts), labels: owned(labels) }
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
