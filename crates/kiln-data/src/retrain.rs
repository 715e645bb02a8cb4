//! The next training set: the current raw splits plus the predictions that got
//! feedback, as a new raw data version that the usual stages (`clean` on) turn
//! into a model. A share of the feedback is held back for the gate; feedback
//! whose text is a validation or test text is left out (no leak into the
//! fixed evaluation); a label training never had follows `[retrain] new_labels`.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Result, bail};
use kiln_config::{CleanConfig, NewLabelPolicy, RetrainConfig};
use kiln_core::secret::{Key, keyed_hash};
use kiln_core::{FileHash, Manifest, Split, StagedOutput};
use kiln_text::clean::Cleaner;
use serde::Serialize;

use crate::schema::TextTable;

/// The new raw splits' folder, inside `[retrain] output_dir`.
pub const RAW: &str = "raw";
/// The held-back feedback, beside the raw splits.
pub const HOLDOUT: &str = "feedback_holdout.parquet";
/// The data version's manifest, written last.
pub const MANIFEST: &str = "retrain_data.json";

#[derive(Debug, Clone, Default, Serialize)]
pub struct FeedbackData {
    /// Predictions with feedback in the log.
    pub feedback: usize,
    /// Of those, the log kept no text (`log_text` other than `full`): unusable.
    pub without_text: usize,
    pub empty_after_cleaning: usize,
    /// The same text as a validation or test row: left out, so evaluation stays fair.
    pub leaking: usize,
    /// Labels training never had, with their feedback counts.
    pub new_labels: BTreeMap<String, usize>,
    pub dropped_new_label: usize,
    pub added_to_train: usize,
    pub held_out: usize,
    /// Rows per split of the base version.
    pub base_rows: BTreeMap<String, usize>,
}

impl FeedbackData {
    /// Feedback rows retraining can use (trained on or held out).
    pub fn usable(&self) -> usize {
        self.added_to_train + self.held_out
    }
}

/// A prediction that got feedback, as the prediction log has it.
#[derive(Debug, Clone, PartialEq)]
pub struct FeedbackRow {
    pub request_id: String,
    /// The text's position in its request.
    pub index: usize,
    /// `None` when the log kept no text (`log_text` other than `full`).
    pub text: Option<String>,
    /// The true label someone gave.
    pub label: String,
}

/// Whether a prediction's feedback is held back: an HMAC of where it came
/// from (request id and position) under the server's secret key, so reruns
/// agree and no client can compute, let alone choose, which of its rows the gate sees.
fn held_out(key: &Key, request_id: &str, index: usize, share: f64) -> bool {
    let tag = keyed_hash(key, &[b"kiln holdout", request_id.as_bytes(), &(index as u64).to_le_bytes()]);
    let hash = u64::from_le_bytes(tag[..8].try_into().expect("8 of 32 bytes"));
    (hash % 10_000) as f64 / 10_000.0 < share
}

/// Writes `<output_dir>/raw/{train,validation,test}.parquet` (the base splits,
/// train with the feedback rows added) and `feedback_holdout.parquet`.
/// `feedback` in time order; `holdout_key` is the server's signing key.
pub fn build(
    feedback: &[FeedbackRow],
    base_dir: &Path,
    clean: &CleanConfig,
    config: &RetrainConfig,
    holdout_key: &Key,
) -> Result<FeedbackData> {
    let cleaner = Cleaner::new(clean);
    let mut report = FeedbackData::default();
    let mut splits = Vec::new();
    let mut inputs = Vec::new();
    for split in Split::ALL {
        let path = split.path_in(base_dir);
        let table = TextTable::read(&path, "ingest")?;
        inputs.push(FileHash::of(&path)?);
        report.base_rows.insert(split.name().to_owned(), table.len());
        splits.push((split, table));
    }
    let known: HashSet<&str> = splits[0].1.labels.iter().map(String::as_str).collect();
    let evaluation: HashSet<String> =
        splits[1..].iter().flat_map(|(_, table)| table.texts.iter().map(|t| cleaner.clean(t).into_owned())).collect();

    let mut added = TextTable::default();
    let mut holdout = TextTable::default();
    for row in feedback {
        report.feedback += 1;
        let Some(text) = &row.text else {
            report.without_text += 1;
            continue;
        };
        let cleaned = cleaner.clean(text);
        if cleaned.trim().is_empty() {
            report.empty_after_cleaning += 1;
            continue;
        }
        if evaluation.contains(cleaned.as_ref()) {
            report.leaking += 1;
            continue;
        }
        if !known.contains(row.label.as_str()) {
            *report.new_labels.entry(row.label.clone()).or_default() += 1;
            if config.new_labels == NewLabelPolicy::Drop {
                report.dropped_new_label += 1;
                continue;
            }
        }
        let held = held_out(holdout_key, &row.request_id, row.index, config.holdout_share);
        let target = if held { &mut holdout } else { &mut added };
        target.ids.push(format!("feedback-{}-{}", row.request_id, row.index));
        target.texts.push(text.clone());
        target.labels.push(row.label.clone());
    }
    if config.new_labels == NewLabelPolicy::Error && !report.new_labels.is_empty() {
        bail!(
            "feedback has labels the training data never had: {} (set retrain.new_labels to drop or add)",
            report.new_labels.iter().map(|(label, n)| format!("'{label}' ({n} rows)")).collect::<Vec<_>>().join(", ")
        );
    }
    if !report.new_labels.is_empty() && config.new_labels == NewLabelPolicy::Add {
        tracing::warn!(
            "training on new labels {:?}: the production model cannot be compared on them, so the gate leaves those rows out",
            report.new_labels.keys().collect::<Vec<_>>()
        );
    }
    report.added_to_train = added.len();
    report.held_out = holdout.len();

    let mut staged = StagedOutput::new(&config.output_dir.join(RAW))?;
    for (split, mut table) in splits {
        if split == Split::Train {
            table.ids.append(&mut added.ids);
            table.texts.append(&mut added.texts);
            table.labels.append(&mut added.labels);
        }
        table.write(&mut staged, &split.file_name())?;
    }
    holdout.write(&mut staged, HOLDOUT)?;
    let mut manifest = Manifest::new("retrain", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_holdout_is_a_stable_share_that_depends_on_the_key() {
        let (key, other) = ([1u8; 32], [2u8; 32]);
        let held = (0..10_000).filter(|i| held_out(&key, &format!("r{i}"), 0, 0.2)).count();
        assert!((1_800..2_200).contains(&held), "{held}");
        assert_eq!(held_out(&key, "r7", 0, 0.2), held_out(&key, "r7", 0, 0.2));
        assert!(!(0..100).any(|i| held_out(&key, &format!("r{i}"), 0, 0.0)));
        // Without the key the split cannot be told: another key holds out other rows.
        let differ = (0..1_000)
            .filter(|i| held_out(&key, &format!("r{i}"), 0, 0.5) != held_out(&other, &format!("r{i}"), 0, 0.5))
            .count();
        assert!((400..600).contains(&differ), "{differ}");
    }
}
