//! `clean`: normalise texts by the `[clean]` rules ([`Cleaner`], the one
//! definition training and serving share), then drop empty, too short or too
//! long texts, duplicates within a split and rows that leak across splits. The
//! rules run over a column on every core (rayon).

use std::collections::{BTreeMap, BTreeSet, HashSet};

use anyhow::{Context, Result};
use kiln_config::{CleanConfig, ConflictPolicy};
use kiln_core::{FileHash, Manifest, Progress, Split, StagedOutput};
use kiln_text::clean::{Cleaner, Rule};
use polars::prelude::*;
use rayon::prelude::*;
use serde::Serialize;

use crate::parquet::{read_parquet, write_parquet};
use crate::schema;

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
        let frame = read_parquet(&path, "ingest")?;
        schema::validate(&frame, &path, &schema::TEXT_TABLE)?;
        inputs.push(FileHash::of(&path)?);
        let (frame, split_report) = clean_frame(&frame, &cleaner, config, split, progress)
            .with_context(|| format!("cleaning {}", path.display()))?;
        report.splits.insert(split, split_report);
        frames.push((split, frame));
        tracing::debug!("read and cleaned {} in {:?}", path.display(), started.elapsed());
    }

    if config.drop_leaks {
        drop_leaks(&mut frames, &mut report)?;
    }
    let conflicting = find_conflicts(&frames, &mut report.conflicts)?;
    if config.conflicts == ConflictPolicy::Drop && !conflicting.is_empty() {
        for (split, frame) in &mut frames {
            let keep: BooleanChunked =
                text_column(frame)?.iter().map(|t| Some(!conflicting.contains(t.unwrap_or("")))).collect();
            let kept = frame.filter(&keep)?;
            report.splits.entry(*split).or_default().dropped.conflict = frame.height() - kept.height();
            *frame = kept;
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
        report.splits.entry(*split).or_default().rows_out = frame.height();
        write_parquet(&mut staged, &split.file_name(), frame)?;
    }
    let mut manifest = Manifest::new("clean", config, &report);
    manifest.inputs = inputs;
    manifest.outputs = staged.hashes()?;
    staged.commit(MANIFEST, &manifest)?;
    Ok(report)
}

fn text_column(frame: &DataFrame) -> Result<&StringChunked> {
    Ok(frame.column(schema::TEXT)?.str()?)
}

/// Applies the text rules and the length limits, then drops duplicates.
fn clean_frame(
    frame: &DataFrame,
    cleaner: &Cleaner,
    config: &CleanConfig,
    split: Split,
    progress: &Progress,
) -> Result<(DataFrame, SplitCleanReport)> {
    let texts: Vec<&str> = text_column(frame)?.no_null_iter().collect();
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
    let mut frame = frame.clone();
    let cleaned_texts: Vec<String> = cleaned.into_iter().map(|(text, _)| text).collect();
    frame.with_column(Column::new(schema::TEXT.into(), cleaned_texts))?;
    let mut frame = frame.filter(&BooleanChunked::from_slice("keep".into(), &keep))?;
    if config.dedup {
        let before = frame.height();
        let subset = [schema::TEXT.to_owned(), schema::LABEL.to_owned()];
        frame = frame.unique_stable(Some(&subset), UniqueKeepStrategy::First, None)?;
        report.dropped.duplicate = before - frame.height();
    }
    Ok((frame, report))
}

/// Removes validation rows whose text is in train, and test rows whose text is
/// in train or validation: a model must never be scored on what it trained on.
fn drop_leaks(frames: &mut [(Split, DataFrame)], report: &mut CleanReport) -> Result<()> {
    for later in 1..frames.len() {
        let (earlier, rest) = frames.split_at_mut(later);
        let (split, frame) = &mut rest[0];
        let mut seen: HashSet<&str> = HashSet::new();
        for (_, earlier) in earlier.iter() {
            seen.extend(text_column(earlier)?.iter().flatten());
        }
        let keep: Vec<bool> = text_column(frame)?.iter().map(|text| text.is_none_or(|t| !seen.contains(t))).collect();
        let kept = frame.filter(&BooleanChunked::from_slice("keep".into(), &keep))?;
        report.splits.entry(*split).or_default().dropped.leak = frame.height() - kept.height();
        *frame = kept;
    }
    Ok(())
}

/// Texts that appear with more than one label, across all splits.
fn find_conflicts(frames: &[(Split, DataFrame)], report: &mut ConflictReport) -> Result<HashSet<String>> {
    // One pass keeps each text's first label and row count; label sets are only
    // built for the (few) texts that turn out to conflict.
    let mut first_label: PlHashMap<&str, (&str, usize, bool)> = PlHashMap::default();
    for (_, frame) in frames {
        let labels = frame.column(schema::LABEL)?.str()?;
        for (text, label) in text_column(frame)?.no_null_iter().zip(labels.no_null_iter()) {
            let entry = first_label.entry(text).or_insert((label, 0, false));
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
            let labels = frame.column(schema::LABEL)?.str()?;
            for (text, label) in text_column(frame)?.no_null_iter().zip(labels.no_null_iter()) {
                if let Some(set) = conflicting.get_mut(text) {
                    set.insert(label);
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
    Ok(conflicting.into_keys().map(str::to_owned).collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::schema::read_split;

    fn frame(ids: &[&str], texts: &[&str], labels: &[&str]) -> DataFrame {
        df!(schema::ID => ids, schema::TEXT => texts, schema::LABEL => labels).expect("frame")
    }

    fn write_raw(dir: &Path, split: Split, frame: &mut DataFrame) {
        let file = std::fs::File::create(split.path_in(dir)).expect("create");
        ParquetWriter::new(file).finish(frame).expect("write");
    }

    fn texts(frame: &DataFrame) -> Vec<String> {
        text_column(frame).expect("text").no_null_iter().map(str::to_owned).collect()
    }

    #[test]
    fn stage_drops_by_reason_and_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw");
        std::fs::create_dir(&raw).expect("mkdir");
        write_raw(
            &raw,
            Split::Train,
            &mut frame(
                &["1", "2", "3", "4", "5", "6", "7"],
                &["good  film", "good film", "<br>", "a", "bad film", "ok film", "ok film"],
                &["pos", "pos", "pos", "pos", "neg", "pos", "neg"],
            ),
        );
        write_raw(&raw, Split::Validation, &mut frame(&["8", "9"], &["good film", "new one"], &["pos", "neg"]));
        write_raw(&raw, Split::Test, &mut frame(&["10", "11"], &["new one", "fresh"], &["neg", "pos"]));
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
