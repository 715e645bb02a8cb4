//! The next training set: the current raw splits plus the predictions that got
//! feedback, as a new raw data version that the usual stages (`clean` on) turn
//! into a model. A share of the feedback is held back for the gate; feedback
//! whose text is a validation or test text is left out (no leak into the
//! fixed evaluation); a label training never had follows `[retrain] new_labels`.
//!
//! For a weakly supervised config (`[[label.functions]]`), the feedback rows
//! carry their label as a one-hot `label_probs`, which `label` keeps, and with
//! `retrain.weak_labels` the served texts no feedback names join the training
//! split unlabelled, weighing `weak_weight`, for `label` to label.

use std::collections::{BTreeMap, HashSet};
use std::path::Path;

use anyhow::{Result, bail};
use kiln_config::{CleanConfig, NewLabelPolicy, RetrainConfig};
use kiln_core::prediction_log::{ServedCounts, ServedText};
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
/// How the ids of served texts added for `label` begin (`served-<request id>-<index>`).
pub const SERVED_PREFIX: &str = "served-";

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
    /// `retrain.weak_labels`: the served texts without feedback, counted apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedData>,
}

/// The served texts without feedback that `retrain.weak_labels` adds for
/// `label` to label: what the log held and what was left out, and why.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ServedData {
    #[serde(flatten)]
    pub log: ServedCounts,
    pub empty_after_cleaning: usize,
    /// The same text as a validation or test row.
    pub leaking: usize,
    /// The same text as a training or feedback row, or an earlier served one.
    pub duplicate: usize,
    /// Added to the training split, unlabelled, each weighing `weight`.
    pub added: usize,
    pub weight: f32,
}

/// What a weakly supervised config's retraining adds besides the feedback.
#[derive(Debug, Clone, Copy)]
pub struct WeakInputs<'a> {
    /// `[label] labels`, in `label`'s order: a feedback row's one-hot distribution.
    pub labels: &'a [String],
    /// The served texts without feedback (`retrain.weak_labels`), and what the log held.
    pub served: Option<(&'a [ServedText], &'a ServedCounts)>,
    pub weight: f32,
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
/// `feedback` in time order; `holdout_key` is the server's signing key;
/// `weak` for a weakly supervised config.
pub fn build(
    feedback: &[FeedbackRow],
    base_dir: &Path,
    clean: &CleanConfig,
    config: &RetrainConfig,
    holdout_key: &Key,
    weak: Option<WeakInputs>,
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
    // A weak config's training labels are the functions' list, not what the raw split says.
    let known: HashSet<&str> = match weak {
        Some(weak) => weak.labels.iter().map(String::as_str).collect(),
        None => splits[0].1.labels.iter().map(String::as_str).collect(),
    };
    let evaluation: HashSet<String> =
        splits[1..].iter().flat_map(|(_, table)| table.texts.iter().map(|t| cleaner.clean(t).into_owned())).collect();
    let screen = Screen { cleaner: &cleaner, evaluation: &evaluation };

    let mut added = TextTable::default();
    // The added rows' cleaned texts: served texts equal to one are duplicates.
    let mut added_cleaned = Vec::new();
    let mut holdout = TextTable::default();
    for row in feedback {
        report.feedback += 1;
        let Some(text) = &row.text else {
            report.without_text += 1;
            continue;
        };
        let cleaned = match screen.clean(text) {
            Ok(cleaned) => cleaned,
            Err(Unusable::Empty) => {
                report.empty_after_cleaning += 1;
                continue;
            }
            Err(Unusable::Leaking) => {
                report.leaking += 1;
                continue;
            }
        };
        if !known.contains(row.label.as_str()) {
            *report.new_labels.entry(row.label.clone()).or_default() += 1;
            if config.new_labels == NewLabelPolicy::Drop {
                report.dropped_new_label += 1;
                continue;
            }
        }
        let held = held_out(holdout_key, &row.request_id, row.index, config.holdout_share);
        if !held {
            added_cleaned.push(cleaned.into_owned());
        }
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
    if let Some(weak) = weak {
        // `label` keeps a row that comes with a distribution: the given label, one-hot.
        let one_hot = |label: &str| weak.labels.iter().map(|l| if l == label { 1.0 } else { 0.0 }).collect();
        added.label_probs = Some(added.labels.iter().map(|l| one_hot(l)).collect());
        if let Some((served, counts)) = weak.served {
            let mut seen: HashSet<String> =
                splits[0].1.texts.iter().map(|t| cleaner.clean(t).into_owned()).chain(added_cleaned).collect();
            let (rows, data) = served_rows(served, counts, &screen, &mut seen, weak.weight);
            added.append(rows);
            report.served = Some(data);
        }
    }

    let mut staged = StagedOutput::new(&config.output_dir.join(RAW))?;
    for (split, mut table) in splits {
        if split == Split::Train {
            table.append(std::mem::take(&mut added));
        }
        table.write(&mut staged, &split.file_name())?;
    }
    holdout.write(&mut staged, HOLDOUT)?;
    let mut manifest = Manifest::new("retrain", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Why a text from the log cannot join training.
enum Unusable {
    /// Nothing is left of it once cleaned.
    Empty,
    /// Cleaned, it is a validation or test text: evaluation stays fair.
    Leaking,
}

/// What a text from the log must pass to join training, feedback and served alike.
struct Screen<'a> {
    cleaner: &'a Cleaner,
    /// The validation and test texts, cleaned.
    evaluation: &'a HashSet<String>,
}

impl Screen<'_> {
    /// The text as `clean` will see it, or why it cannot join.
    fn clean<'t>(&self, text: &'t str) -> Result<std::borrow::Cow<'t, str>, Unusable> {
        let cleaned = self.cleaner.clean(text);
        if cleaned.trim().is_empty() {
            Err(Unusable::Empty)
        } else if self.evaluation.contains(cleaned.as_ref()) {
            Err(Unusable::Leaking)
        } else {
            Ok(cleaned)
        }
    }
}

/// The served texts worth labelling: through the [`Screen`], and not one
/// training has already; unlabelled, each weighing `weight`.
fn served_rows(
    served: &[ServedText],
    counts: &ServedCounts,
    screen: &Screen,
    seen: &mut HashSet<String>,
    weight: f32,
) -> (TextTable, ServedData) {
    let mut data = ServedData { log: counts.clone(), weight, ..ServedData::default() };
    let mut rows = TextTable::default();
    for text in served {
        match screen.clean(&text.text) {
            Err(Unusable::Empty) => data.empty_after_cleaning += 1,
            Err(Unusable::Leaking) => data.leaking += 1,
            Ok(cleaned) => {
                if !seen.insert(cleaned.into_owned()) {
                    data.duplicate += 1;
                    continue;
                }
                rows.ids.push(format!("{SERVED_PREFIX}{}-{}", text.request_id, text.index));
                rows.texts.push(text.text.clone());
                rows.labels.push(String::new());
            }
        }
    }
    data.added = rows.len();
    rows.label_probs = Some(vec![Vec::new(); rows.len()]);
    rows.weights = Some(vec![weight; rows.len()]);
    (rows, data)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(rows: &[(&str, &str)]) -> TextTable {
        TextTable {
            ids: (0..rows.len()).map(|i| format!("b{i}")).collect(),
            texts: rows.iter().map(|(t, _)| (*t).to_owned()).collect(),
            labels: rows.iter().map(|(_, l)| (*l).to_owned()).collect(),
            ..TextTable::default()
        }
    }

    #[test]
    fn a_weak_config_gets_one_hot_feedback_and_weighted_unlabelled_served_texts() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("raw");
        let mut staged = StagedOutput::new(&base).expect("staged");
        let splits = [
            table(&[("free money now", "ham"), ("nice song", "ham")]),
            table(&[("great video", "ham")]),
            table(&[("subscribe to me", "spam")]),
        ];
        for (split, t) in Split::ALL.into_iter().zip(splits) {
            t.write(&mut staged, &split.file_name()).expect("write");
        }
        staged.commit("done.json", &Manifest::new("test", &(), &())).expect("commit");

        let feedback = [FeedbackRow {
            request_id: "r1".into(),
            index: 0,
            text: Some("check my channel".into()),
            label: "spam".into(),
        }];
        let served_text =
            |id: &str, text: &str| ServedText { request_id: id.into(), index: 0, text: text.into(), time_ms: 0 };
        let served = [
            served_text("r2", "love this"),
            served_text("r3", "  "),
            served_text("r4", "Great video"),
            served_text("r5", "nice song"),
            served_text("r6", "check my channel"),
            served_text("r7", "love this"),
        ];
        let counts = ServedCounts { predictions: 8, with_feedback: 1, without_text: 1, beyond_limit: 0 };
        let config =
            RetrainConfig { output_dir: dir.path().join("out"), holdout_share: 0.0, ..RetrainConfig::default() };
        let clean = CleanConfig { lowercase: true, ..CleanConfig::default() };
        let labels = ["ham".to_owned(), "spam".to_owned()];
        let weak = WeakInputs { labels: &labels, served: Some((&served, &counts)), weight: 0.5 };
        let data = build(&feedback, &base, &clean, &config, &[7; 32], Some(weak)).expect("builds");

        let train = TextTable::read(&Split::Train.path_in(&config.output_dir.join(RAW)), "retrain").expect("train");
        assert_eq!(train.texts, ["free money now", "nice song", "check my channel", "love this"]);
        assert_eq!(train.labels, ["ham", "ham", "spam", ""]);
        assert_eq!(train.label_probs, Some(vec![vec![], vec![], vec![0.0, 1.0], vec![]]));
        assert_eq!(train.weights, Some(vec![1.0, 1.0, 1.0, 0.5]));
        let served = data.served.expect("served counted");
        assert_eq!(
            (served.added, served.empty_after_cleaning, served.leaking, served.duplicate, served.log.without_text),
            (1, 1, 1, 3, 1)
        );
        assert_eq!(data.added_to_train, 1, "feedback counted apart from the served texts");
    }

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
