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
use kiln_core::prediction_log::{ServedCounts, ServedText, TaggedPrediction};
use kiln_core::sample::stratified_keep;
use kiln_core::secret::{Key, keyed_hash};
use kiln_core::{FileHash, Manifest, Split, StagedOutput};
use kiln_text::clean::Cleaner;
use kiln_text::spans::{SpanProblem, tag_words};
use serde::Serialize;

use crate::schema::{TaggedTable, TextTable};

/// The new raw splits' folder, inside `[retrain] output_dir`.
pub const RAW: &str = "raw";
/// The held-back feedback, beside the raw splits.
pub const HOLDOUT: &str = "feedback_holdout.parquet";
/// The data version's manifest, written last.
pub const MANIFEST: &str = "retrain_data.json";
/// How the ids of served texts added for `label` begin (`served-<request id>-<index>`).
pub const SERVED_PREFIX: &str = "served-";
/// Seeds which old rows a warm start replays: the same rows on every rerun.
const REPLAY_SEED: u64 = 0x6b69_6c6e;

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
    /// A warm start (`retrain.init = "production"`): the old training rows
    /// replayed beside the feedback, `retrain.replay_share` of each class.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replayed: Option<usize>,
    /// `retrain.weak_labels`: the served texts without feedback, counted apart.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub served: Option<ServedData>,
    /// A tagger's span feedback that did not fit its text: left out, by why.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub spans: Option<SpanCounts>,
}

/// Texts whose span feedback could not become word tags ([`SpanProblem`]).
#[derive(Debug, Clone, Default, Serialize)]
pub struct SpanCounts {
    /// Empty, or ending past the text.
    pub out_of_range: usize,
    /// A boundary inside a word, or no word inside.
    pub partial: usize,
    /// Two entities on the same characters.
    pub conflicting: usize,
    /// The first few, as `request id: problem`.
    pub examples: Vec<String>,
}

/// Span problems listed in the report (all are counted).
const SPAN_EXAMPLES: usize = 5;

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
    if let Some(keep) = replayed_rows(config, &splits[0].1.labels) {
        splits[0].1.retain(&keep);
        report.replayed = Some(splits[0].1.len());
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

/// A tagger's next training set: the base raw splits (tagged words), train
/// with the texts whose entities came back as feedback, each split into the
/// words the tagger read and tagged IOB2 by its spans. Spans that do not fit
/// are counted and their texts left out; a share is held back for the gate,
/// by the same keyed hash as a classifier's.
pub fn build_tagged(
    feedback: &[TaggedPrediction],
    base_dir: &Path,
    config: &RetrainConfig,
    holdout_key: &Key,
) -> Result<FeedbackData> {
    let mut report = FeedbackData::default();
    let mut splits = Vec::new();
    let mut inputs = Vec::new();
    for split in Split::ALL {
        let path = split.path_in(base_dir);
        let table = TaggedTable::read(&path, "ingest")?;
        inputs.push(FileHash::of(&path)?);
        report.base_rows.insert(split.name().to_owned(), table.len());
        splits.push((split, table));
    }
    let known: HashSet<String> = splits[0]
        .1
        .tags
        .iter()
        .flatten()
        .filter_map(|tag| kiln_core::entities::entity_type(tag))
        .map(str::to_owned)
        .collect();
    if let Some(keep) = replayed_rows(config, &rarest_types(&splits[0].1.tags)) {
        splits[0].1.retain(&keep);
        report.replayed = Some(splits[0].1.len());
    }
    let evaluation: HashSet<String> =
        splits[1..].iter().flat_map(|(_, table)| table.tokens.iter().map(|words| words.join(" "))).collect();
    let (mut added, mut holdout) = (TaggedTable::default(), TaggedTable::default());
    let mut spans = SpanCounts::default();
    for row in feedback {
        report.feedback += 1;
        let Some(text) = &row.text else {
            report.without_text += 1;
            continue;
        };
        let tagged = match tag_words(text, &row.entities) {
            Ok(tagged) => tagged,
            Err(problem) => {
                match problem {
                    SpanProblem::OutOfRange { .. } => spans.out_of_range += 1,
                    SpanProblem::Partial { .. } => spans.partial += 1,
                    SpanProblem::Conflicting { .. } => spans.conflicting += 1,
                }
                if spans.examples.len() < SPAN_EXAMPLES {
                    spans.examples.push(format!("{} (text {}): {problem}", row.request_id, row.index));
                }
                continue;
            }
        };
        if tagged.words.is_empty() {
            report.empty_after_cleaning += 1;
            continue;
        }
        if evaluation.contains(&tagged.words.join(" ")) {
            report.leaking += 1;
            continue;
        }
        let new: HashSet<&str> =
            row.entities.iter().map(|e| e.entity_group.as_str()).filter(|k| !known.contains(*k)).collect();
        if !new.is_empty() {
            for kind in &new {
                *report.new_labels.entry((*kind).to_owned()).or_default() += 1;
            }
            if config.new_labels == NewLabelPolicy::Drop {
                report.dropped_new_label += 1;
                continue;
            }
        }
        let held = held_out(holdout_key, &row.request_id, row.index, config.holdout_share);
        let target = if held { &mut holdout } else { &mut added };
        target.ids.push(format!("feedback-{}-{}", row.request_id, row.index));
        target.tokens.push(tagged.words);
        target.tags.push(tagged.tags);
    }
    if config.new_labels == NewLabelPolicy::Error && !report.new_labels.is_empty() {
        bail!(
            "span feedback has entity types the training data never had: {} (set retrain.new_labels to drop or add)",
            report.new_labels.iter().map(|(kind, n)| format!("'{kind}' ({n} texts)")).collect::<Vec<_>>().join(", ")
        );
    }
    let skipped = spans.out_of_range + spans.partial + spans.conflicting;
    if skipped > 0 {
        tracing::warn!(
            "{skipped} text(s) with span feedback left out ({} out of range, {} partial, {} conflicting), the first: {}",
            spans.out_of_range,
            spans.partial,
            spans.conflicting,
            spans.examples.first().map_or("", String::as_str)
        );
    }
    report.spans = Some(spans);
    report.added_to_train = added.len();
    report.held_out = holdout.len();
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

/// A warm start's old training rows to keep (`retrain.replay_share` of each
/// stratum, by row); `None` when every old row trains (a start from pre-trained weights).
fn replayed_rows<K: Ord>(config: &RetrainConfig, strata: &[K]) -> Option<Vec<bool>> {
    (config.replayed_share() < 1.0).then(|| stratified_keep(strata, config.replayed_share(), REPLAY_SEED))
}

/// Each sentence's rarest entity type (`None`: no entity), a tagger's replay
/// strata: every type stays among the replayed sentences, however rare.
fn rarest_types(tags: &[Vec<String>]) -> Vec<Option<&str>> {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for kind in tags.iter().flatten().filter_map(|tag| kiln_core::entities::entity_type(tag)) {
        *counts.entry(kind).or_default() += 1;
    }
    tags.iter()
        .map(|sentence| {
            sentence
                .iter()
                .filter_map(|tag| kiln_core::entities::entity_type(tag))
                .min_by_key(|kind| (counts[kind], *kind))
        })
        .collect()
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
    fn span_feedback_becomes_tagged_words_and_spans_that_do_not_fit_are_counted() {
        use kiln_core::prediction_log::LoggedEntity;
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("raw");
        let mut staged = StagedOutput::new(&base).expect("staged");
        let sentence = |words: &str, tags: &str| -> (Vec<String>, Vec<String>) {
            (words.split(' ').map(String::from).collect(), tags.split(' ').map(String::from).collect())
        };
        let splits = [
            vec![sentence("Ada Lovelace spoke in Rome", "B-person I-person O O B-location")],
            vec![sentence("Paris was sunny", "B-location O O")],
            vec![sentence("Grace Hopper left Lagos", "B-person I-person O B-location")],
        ];
        for (split, rows) in Split::ALL.into_iter().zip(splits) {
            let table = TaggedTable {
                ids: (0..rows.len()).map(|i| format!("{split}-{i}")).collect(),
                tokens: rows.iter().map(|(w, _)| w.clone()).collect(),
                tags: rows.iter().map(|(_, t)| t.clone()).collect(),
            };
            table.write(&mut staged, &split.file_name()).expect("write");
        }
        staged.commit("done.json", &Manifest::new("test", &(), &())).expect("commit");

        let entity = |kind: &str, start, end| LoggedEntity { entity_group: kind.into(), start, end, score: None };
        let row = |id: &str, text: Option<&str>, entities: Vec<LoggedEntity>| TaggedPrediction {
            request_id: id.into(),
            index: 0,
            text: text.map(String::from),
            entities,
            time_ms: 0,
        };
        let feedback = [
            row("kept", Some("Alan Turing visited Tokyo."), vec![entity("person", 0, 11), entity("location", 20, 25)]),
            row("nothing", Some("no one here"), vec![]),
            row("past-the-end", Some("Alan Turing"), vec![entity("person", 0, 30)]),
            row("inside-a-word", Some("Alan Turing"), vec![entity("person", 0, 7)]),
            row("two-types", Some("Alan Turing"), vec![entity("person", 0, 11), entity("location", 5, 11)]),
            row("no-text", None, vec![entity("person", 0, 4)]),
            row("leak", Some("Grace Hopper left Lagos"), vec![entity("person", 0, 12)]),
            row("new-type", Some("Ubuntu rocks"), vec![entity("product", 0, 6)]),
        ];
        let config = RetrainConfig {
            output_dir: dir.path().join("out"),
            holdout_share: 0.0,
            new_labels: NewLabelPolicy::Drop,
            ..RetrainConfig::default()
        };
        let data = build_tagged(&feedback, &base, &config, &[7; 32]).expect("builds");
        let spans = data.spans.clone().expect("span counts");
        assert_eq!((spans.out_of_range, spans.partial, spans.conflicting), (1, 1, 1), "{:?}", spans.examples);
        assert!(spans.examples[0].starts_with("past-the-end (text 0): the person span 0..30"), "{:?}", spans.examples);
        assert_eq!((data.without_text, data.leaking, data.dropped_new_label), (1, 1, 1));
        assert_eq!(data.new_labels.get("product"), Some(&1));
        assert_eq!((data.added_to_train, data.held_out, data.feedback), (2, 0, 8));

        let train = TaggedTable::read(&Split::Train.path_in(&config.output_dir.join(RAW)), "retrain").expect("train");
        assert_eq!(train.ids, ["train-0", "feedback-kept-0", "feedback-nothing-0"]);
        assert_eq!(train.tokens[1], ["Alan", "Turing", "visited", "Tokyo", "."]);
        assert_eq!(train.tags[1], ["B-person", "I-person", "O", "B-location", "O"]);
        assert_eq!(train.tags[2], ["O", "O", "O"], "feedback of no entity teaches that too");

        let strict = RetrainConfig { new_labels: NewLabelPolicy::Error, ..config };
        let error = build_tagged(&feedback, &base, &strict, &[7; 32]).expect_err("a new type");
        assert!(error.to_string().contains("'product' (1 texts)"), "{error}");
    }

    /// A warm start replays the same share of each class of the old rows
    /// (at least one of each), the same rows on every rerun; the feedback all joins.
    #[test]
    fn a_warm_start_replays_a_share_of_each_class() {
        let dir = tempfile::tempdir().expect("tempdir");
        let base = dir.path().join("raw");
        let mut staged = StagedOutput::new(&base).expect("staged");
        let rows: Vec<(String, &str)> = (0..8)
            .map(|i| (format!("common text {i}"), "common"))
            .chain((0..2).map(|i| (format!("rare text {i}"), "rare")))
            .collect();
        let rows: Vec<(&str, &str)> = rows.iter().map(|(t, l)| (t.as_str(), *l)).collect();
        for (split, t) in
            Split::ALL.into_iter().zip([table(&rows), table(&[("held", "common")]), table(&[("test", "rare")])])
        {
            t.write(&mut staged, &split.file_name()).expect("write");
        }
        staged.commit("done.json", &Manifest::new("test", &(), &())).expect("commit");
        let feedback =
            [FeedbackRow { request_id: "r1".into(), index: 0, text: Some("new words".into()), label: "rare".into() }];
        let config = RetrainConfig {
            output_dir: dir.path().join("out"),
            holdout_share: 0.0,
            init: kiln_config::RetrainInit::Production,
            replay_share: 0.25,
            ..RetrainConfig::default()
        };
        let data = build(&feedback, &base, &CleanConfig::default(), &config, &[7; 32], None).expect("builds");
        assert_eq!(data.replayed, Some(3), "2 of 8 common rows and 1 of 2 rare ones");
        let train = TextTable::read(&Split::Train.path_in(&config.output_dir.join(RAW)), "retrain").expect("train");
        assert_eq!(train.labels.iter().filter(|l| *l == "common").count(), 2);
        assert_eq!(train.labels.iter().filter(|l| *l == "rare").count(), 2, "one replayed, the feedback");
        assert_eq!(train.texts.last().map(String::as_str), Some("new words"));
        let again = build(&feedback, &base, &CleanConfig::default(), &config, &[7; 32], None).expect("builds");
        let rerun = TextTable::read(&Split::Train.path_in(&config.output_dir.join(RAW)), "retrain").expect("train");
        assert_eq!((again.replayed, rerun.ids), (Some(3), train.ids), "the same rows each time");

        let cold = RetrainConfig { init: kiln_config::RetrainInit::Pretrained, ..config };
        let all = build(&feedback, &base, &CleanConfig::default(), &cold, &[7; 32], None).expect("builds");
        assert_eq!(all.replayed, None, "a start from pre-trained weights trains on every old row");
    }

    #[test]
    fn a_sentence_is_replayed_for_its_rarest_entity_type() {
        let tags = |text: &str| -> Vec<String> { text.split(' ').map(String::from).collect() };
        let sentences = [tags("B-person O"), tags("B-person O B-product"), tags("O O"), tags("B-location")];
        assert_eq!(rarest_types(&sentences), [Some("person"), Some("product"), None, Some("location")]);
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
