//! `gate`: champion/challenger comparison before a promotion. The production
//! model (champion) and a candidate (challenger) predict the same labelled
//! holdout; the challenger is promoted only when it is not worse by more than
//! a margin on the metric, nor on the recall of any class with enough rows.
//! McNemar's exact test and a paired bootstrap interval of the difference are
//! reported beside the decision, which goes to the registry record.

use std::collections::HashMap;
use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use kiln_config::{GateConfig, RegistryConfig};
use kiln_core::entities::{EntityCounts, Mode};
use kiln_core::gate::{ClassComparison, EntityMicroF1, GateDecision};
use kiln_core::output::now_ms;
use kiln_core::scores::{Confusion, argmax};
use kiln_core::stats;
use kiln_core::{FileHash, Manifest, Metric, Progress, StagedOutput, Task};
use kiln_data::schema::{TaggedTable, TextTable};
use kiln_model::{Predictor, device};
use kiln_track::registry::{Registry, Stage};

pub const DECISION: &str = "decision.json";
pub const REPORT: &str = kiln_core::stages::REPORT;
pub use kiln_core::stages::GATE_DONE as MANIFEST;

/// A classifier's predicted labels the caller already has, by text, and the
/// hash of the weights that made them. `retrain`'s `eval` scored the test
/// split, the first part of the gate's holdout, with the challenger's
/// weights, and the pipeline's own `eval` with production's when this
/// pipeline trained it. Used only for a model with those weights; every other
/// text is scored.
pub struct KnownPredictions {
    pub weights_sha256: String,
    pub by_text: HashMap<String, String>,
}

impl KnownPredictions {
    /// What an `eval` run in `dir` wrote: its predicted label per text
    /// (`predictions.parquet`) and the weights it scored (`metrics.json`).
    pub fn from_eval(dir: &std::path::Path) -> Result<Self> {
        let metrics_path = dir.join(crate::eval::METRICS);
        let metrics = kiln_core::EvalMetrics::load(&metrics_path)?;
        let weights = metrics.model.first().with_context(|| format!("{}: no model files", metrics_path.display()))?;
        let path = dir.join(crate::eval::PREDICTIONS);
        let table = kiln_data::parquet::read_parquet(&path, "eval")?;
        let texts = kiln_data::schema::strings(&table, kiln_data::schema::TEXT, &path)?;
        let predicted = kiln_data::schema::strings(&table, kiln_data::schema::PREDICTED, &path)?;
        // A row without its text (the cleaned split was not found) cannot be matched.
        let by_text = texts.into_iter().zip(predicted).filter(|(text, _)| !text.is_empty()).collect();
        Ok(Self { weights_sha256: weights.sha256.clone(), by_text })
    }
}

/// Which of the two models.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Model {
    Champion,
    Challenger,
}

/// What the gate compares, for either task: holdout rows (texts, or
/// sentences for a tagger) that both models predicted.
pub trait Holdout {
    fn rows(&self) -> usize;
    /// `metric` of one model over `rows` (indices into the holdout, repeats
    /// allowed: a bootstrap resample).
    fn value(&self, metric: Metric, model: Model, rows: &[usize]) -> f64;
    /// The model got the whole row right (its label; every entity of the sentence, and no other).
    fn right(&self, model: Model, row: usize) -> bool;
    /// Per class (or entity type) of the truth: (name, support, champion recall, challenger recall).
    fn recalls(&self) -> Vec<(String, usize, f64, f64)>;
    /// What a row and a class's support count, in words: `rows`, `sentences`, `entities`.
    fn units(&self) -> (&'static str, &'static str);
}

/// Both classifiers' predictions on the same rows, as ids into `labels`.
pub struct Paired {
    pub labels: Vec<String>,
    pub truth: Vec<usize>,
    pub champion: Vec<usize>,
    pub challenger: Vec<usize>,
}

impl Paired {
    fn predicted(&self, model: Model) -> &[usize] {
        match model {
            Model::Champion => &self.champion,
            Model::Challenger => &self.challenger,
        }
    }
}

impl Holdout for Paired {
    fn rows(&self) -> usize {
        self.truth.len()
    }

    fn value(&self, metric: Metric, model: Model, rows: &[usize]) -> f64 {
        let predicted = self.predicted(model);
        let mut confusion = Confusion::new(self.labels.len());
        for &row in rows {
            confusion.add(self.truth[row], predicted[row]);
        }
        match metric {
            Metric::Accuracy => confusion.accuracy(),
            _ => confusion.macro_f1(),
        }
    }

    fn right(&self, model: Model, row: usize) -> bool {
        self.predicted(model)[row] == self.truth[row]
    }

    fn recalls(&self) -> Vec<(String, usize, f64, f64)> {
        let recall = |predicted: &[usize], class: usize| {
            let rows: Vec<usize> = (0..self.truth.len()).filter(|&i| self.truth[i] == class).collect();
            let hits = rows.iter().filter(|&&i| predicted[i] == class).count();
            (rows.len(), if rows.is_empty() { 0.0 } else { hits as f64 / rows.len() as f64 })
        };
        (0..self.labels.len())
            .map(|class| {
                let (support, champion) = recall(&self.champion, class);
                let (_, challenger) = recall(&self.challenger, class);
                (self.labels[class].clone(), support, champion, challenger)
            })
            .collect()
    }

    fn units(&self) -> (&'static str, &'static str) {
        ("rows", "rows")
    }
}

/// One sentence as one tagger read it: its entity counts against the truth
/// (seqeval's default mode) and its words.
#[derive(Debug, Clone, PartialEq)]
pub struct TaggedSentence {
    pub entities: EntityCounts,
    pub words: usize,
    pub right_words: usize,
}

impl TaggedSentence {
    pub fn new<S: AsRef<str>, T: AsRef<str>>(truth: &[S], predicted: &[T]) -> Self {
        Self {
            entities: EntityCounts::of_tags(truth, predicted, Mode::Conlleval),
            words: truth.len(),
            right_words: truth.iter().zip(predicted).filter(|(t, p)| t.as_ref() == p.as_ref()).count(),
        }
    }
}

/// Both taggers' readings of the same sentences. The metric is `eval`'s for
/// a tagger: `macro_f1` the entity macro-F1, `accuracy` the word accuracy;
/// the per-class guard is on each entity type's recall.
pub struct PairedSentences {
    pub champion: Vec<TaggedSentence>,
    pub challenger: Vec<TaggedSentence>,
}

impl PairedSentences {
    fn sentences(&self, model: Model) -> &[TaggedSentence] {
        match model {
            Model::Champion => &self.champion,
            Model::Challenger => &self.challenger,
        }
    }

    fn entities(&self, model: Model, rows: impl IntoIterator<Item = usize>) -> EntityCounts {
        let sentences = self.sentences(model);
        EntityCounts::sum(rows.into_iter().map(|row| &sentences[row].entities))
    }

    /// Entity micro-F1 of one model over every sentence.
    pub fn micro_f1(&self, model: Model) -> f64 {
        self.entities(model, 0..self.rows()).micro().f1
    }
}

impl Holdout for PairedSentences {
    fn rows(&self) -> usize {
        self.challenger.len()
    }

    fn value(&self, metric: Metric, model: Model, rows: &[usize]) -> f64 {
        match metric {
            Metric::Accuracy => {
                let sentences = self.sentences(model);
                let (right, words) =
                    rows.iter().fold((0, 0), |(r, w), &row| (r + sentences[row].right_words, w + sentences[row].words));
                if words == 0 { 0.0 } else { right as f64 / words as f64 }
            }
            _ => self.entities(model, rows.iter().copied()).macro_avg().f1,
        }
    }

    fn right(&self, model: Model, row: usize) -> bool {
        self.sentences(model)[row].entities.all_right()
    }

    fn recalls(&self) -> Vec<(String, usize, f64, f64)> {
        let champion = self.entities(Model::Champion, 0..self.rows());
        let challenger = self.entities(Model::Challenger, 0..self.rows());
        let kinds: std::collections::BTreeSet<&str> = challenger.kinds().chain(champion.kinds()).collect();
        kinds
            .into_iter()
            .map(|kind| {
                let support = challenger.scores(kind).support as usize;
                (kind.to_owned(), support, champion.scores(kind).recall, challenger.scores(kind).recall)
            })
            .filter(|(_, support, ..)| *support > 0)
            .collect()
    }

    fn units(&self) -> (&'static str, &'static str) {
        ("sentences", "entities")
    }
}

/// The decision on paired predictions; `has_champion` false without a
/// production model (the challenger then passes on its own figures).
pub fn decide(holdout: &impl Holdout, has_champion: bool, config: &GateConfig) -> GateDecision {
    let n = holdout.rows();
    let all: Vec<usize> = (0..n).collect();
    let challenger_value = holdout.value(config.metric, Model::Challenger, &all);
    let (row_unit, class_unit) = holdout.units();
    let mut decision = GateDecision {
        champion: None,
        challenger: 0,
        holdout: Vec::new(),
        rows: n,
        rows_without_shared_label: 0,
        metric: config.metric,
        champion_value: None,
        challenger_value,
        difference: None,
        difference_low: None,
        difference_high: None,
        margin: config.margin,
        only_champion_right: 0,
        only_challenger_right: 0,
        mcnemar_p: None,
        classes: Vec::new(),
        class_margin: config.class_margin,
        min_class_support: config.min_class_support,
        entity_micro_f1: None,
        promote: true,
        reasons: Vec::new(),
        decided_ms: now_ms(),
    };
    if !has_champion {
        decision.reasons.push("no model is in production: the challenger is the first".into());
        return decision;
    }
    let right = |model: Model, i: usize| holdout.right(model, i);
    decision.only_champion_right =
        (0..n).filter(|&i| right(Model::Champion, i) && !right(Model::Challenger, i)).count();
    decision.only_challenger_right =
        (0..n).filter(|&i| right(Model::Challenger, i) && !right(Model::Champion, i)).count();
    decision.mcnemar_p = Some(stats::mcnemar_exact(decision.only_champion_right, decision.only_challenger_right));
    let champion_value = holdout.value(config.metric, Model::Champion, &all);
    // The same resampled rows for both models: the interval of a paired difference.
    let difference = stats::bootstrap(n, config.bootstrap_resamples, config.confidence_level, config.seed, |rows| {
        holdout.value(config.metric, Model::Challenger, rows) - holdout.value(config.metric, Model::Champion, rows)
    });
    decision.champion_value = Some(champion_value);
    decision.difference = Some(difference.value);
    decision.difference_low = Some(difference.low);
    decision.difference_high = Some(difference.high);
    let metric = config.metric.key();
    if challenger_value < champion_value - config.margin {
        decision.promote = false;
        decision.reasons.push(format!(
            "{metric} {challenger_value:.4} is {:.4} under the champion's {champion_value:.4}, more than the margin {}",
            champion_value - challenger_value,
            config.margin
        ));
    }
    for (label, support, champion_recall, challenger_recall) in holdout.recalls() {
        if support < config.min_class_support {
            continue;
        }
        if challenger_recall < champion_recall - config.class_margin {
            decision.promote = false;
            decision.reasons.push(format!(
                "recall of '{label}' ({support} {class_unit}) falls from {champion_recall:.3} to {challenger_recall:.3}, \
                 more than the class margin {}",
                config.class_margin
            ));
        }
        decision.classes.push(ClassComparison { label, support, champion_recall, challenger_recall });
    }
    if decision.promote {
        decision.reasons.push(format!(
            "{metric} {challenger_value:.4} against the champion's {champion_value:.4} (difference {:+.4}, \
             {:.0}% interval [{:+.4}, {:+.4}] over {n} {row_unit}), and no class with {} {class_unit} or more lost \
             more than {} recall",
            difference.value,
            100.0 * config.confidence_level,
            difference.low,
            difference.high,
            config.min_class_support,
            config.class_margin
        ));
    }
    decision
}

/// Predicted label names for `texts`.
fn predict(predictor: &Predictor, texts: &[String], batch_size: usize) -> Result<Vec<String>> {
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let examples = predictor.encode(&refs)?;
    let rows = predictor.probabilities_batched(&examples, batch_size)?;
    Ok(rows.iter().map(|p| predictor.labels.labels()[argmax(p)].clone()).collect())
}

/// Predicted label names for `texts`, taken from `known` where it has the text.
fn predict_unknown(
    predictor: &Predictor,
    which: &str,
    texts: &[String],
    known: Option<&HashMap<String, String>>,
    config: &GateConfig,
) -> Result<Vec<String>> {
    let Some(known) = known else { return predict(predictor, texts, config.batch_size) };
    let unknown: Vec<String> = texts.iter().filter(|t| !known.contains_key(*t)).cloned().collect();
    let mut scored = predict(predictor, &unknown, config.batch_size)?.into_iter();
    tracing::info!(
        "the {which}'s predictions for {} of the {} holdout rows come from eval (the same weights, the same texts)",
        texts.len() - unknown.len(),
        texts.len()
    );
    texts
        .iter()
        .map(|text| match known.get(text) {
            Some(label) => Ok(label.clone()),
            None => scored.next().context("fewer predictions than unknown texts. This is a bug."),
        })
        .collect()
}

/// Compares the candidate with production on the holdout, records the
/// decision in the registry and, when it passes and `promote` is on, promotes it.
pub fn run(config: &GateConfig, registry_config: &RegistryConfig, progress: &Progress) -> Result<GateDecision> {
    run_with(config, registry_config, progress, &[])
}

/// [`run`], taking each model's predictions from the `known` ones made by
/// its weights, for the texts they have.
pub fn run_with(
    config: &GateConfig,
    registry_config: &RegistryConfig,
    progress: &Progress,
    known: &[KnownPredictions],
) -> Result<GateDecision> {
    config.validate()?;
    let registry = Registry::at(&config.registry_dir(registry_config));
    let index = registry.load()?;
    let challenger = match config.candidate {
        Some(version) => index.get(version).with_context(|| format!("no version v{version} in the registry"))?.clone(),
        None => index
            .versions
            .iter()
            .filter(|v| v.stage == Stage::Candidate)
            .max_by_key(|v| v.version)
            .context("the registry has no candidate to judge (`registry add` one, or name it with --candidate)")?
            .clone(),
    };
    let champion = index.production().filter(|p| p.version != challenger.version).cloned();
    let spec = device::configure(&config.device, config.threads).context("config key `gate.device`")?;
    let challenger_model = Predictor::load(&registry.version_dir(challenger.version), &spec.device())?;
    let champion_model =
        champion.as_ref().map(|c| Predictor::load(&registry.version_dir(c.version), &spec.device())).transpose()?;

    let models = Models { challenger: &challenger_model, champion: champion_model.as_ref() };
    let made_by = |weights: &str| known.iter().find(|k| k.weights_sha256 == weights).map(|k| &k.by_text);
    let known = Known {
        challenger: made_by(&challenger.weights_sha256),
        champion: champion.as_ref().and_then(|c| made_by(&c.weights_sha256)),
    };
    let mut decision = match challenger_model.task() {
        Task::SequenceClassification => judge_texts(config, models, known, progress)?,
        Task::TokenClassification => judge_sentences(config, models, progress)?,
    };
    decision.champion = champion.as_ref().map(|c| c.version);
    decision.challenger = challenger.version;
    registry.record_gate(&decision)?;
    if decision.promote && config.promote && challenger.stage != Stage::Production {
        // The gate's margins decide, not the registry's strict comparison of eval metrics.
        let promoted = registry.promote(challenger.version, config.metric, true)?;
        tracing::info!("promoted {} to production", promoted.version.name());
    }
    write(config, &decision)?;
    Ok(decision)
}

/// What each model predicted before the gate ran ([`KnownPredictions`]).
#[derive(Clone, Copy)]
struct Known<'a> {
    challenger: Option<&'a HashMap<String, String>>,
    champion: Option<&'a HashMap<String, String>>,
}

/// The two models the gate compares.
#[derive(Clone, Copy)]
struct Models<'a> {
    challenger: &'a Predictor,
    champion: Option<&'a Predictor>,
}

/// The holdout files' hashes, and an error when all of them are empty.
fn holdout_files(config: &GateConfig, rows: usize) -> Result<Vec<FileHash>> {
    if rows == 0 {
        bail!(
            "the holdout ({}) has no rows",
            config.holdout.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    config.holdout.iter().map(|path| FileHash::of(path)).collect()
}

/// Classifiers on labelled texts.
fn judge_texts(config: &GateConfig, models: Models, known: Known, progress: &Progress) -> Result<GateDecision> {
    let Models { challenger: challenger_model, champion: champion_model } = models;
    let mut texts = Vec::new();
    let mut truth_names = Vec::new();
    for path in &config.holdout {
        let table = TextTable::read(path, "`clean` (or any labelled text table)")?;
        texts.extend(table.texts);
        truth_names.extend(table.labels);
    }
    let holdout = holdout_files(config, texts.len())?;
    let bar = progress.steps(2, "predicting the holdout with both models");
    let challenger_names = predict_unknown(challenger_model, "challenger", &texts, known.challenger, config)?;
    bar.inc(1);
    let champion_names =
        champion_model.map(|m| predict_unknown(m, "champion", &texts, known.champion, config)).transpose()?;
    bar.finish_and_clear();

    // Rows whose true label both models know; a new class cannot be compared.
    let known = |label: &str| {
        challenger_model.labels.id(label).is_some() && champion_model.is_none_or(|m| m.labels.id(label).is_some())
    };
    let mut labels: Vec<String> = challenger_model.labels.labels().to_vec();
    let mut id = |label: &str| match labels.iter().position(|l| l == label) {
        Some(i) => i,
        None => {
            labels.push(label.to_owned());
            labels.len() - 1
        }
    };
    let mut paired = Paired { labels: Vec::new(), truth: Vec::new(), champion: Vec::new(), challenger: Vec::new() };
    let mut dropped = 0;
    for row in 0..texts.len() {
        if !known(&truth_names[row]) {
            dropped += 1;
            continue;
        }
        paired.truth.push(id(&truth_names[row]));
        paired.challenger.push(id(&challenger_names[row]));
        paired.champion.push(champion_names.as_ref().map_or(0, |names| id(&names[row])));
    }
    paired.labels = labels;
    if paired.truth.is_empty() {
        bail!("no holdout row has a label both models know: nothing to compare on");
    }
    let mut decision = decide(&paired, champion_model.is_some(), config);
    decision.holdout = holdout;
    decision.rows_without_shared_label = dropped;
    if dropped > 0 {
        decision.reasons.push(format!(
            "{dropped} holdout rows have a label one model does not know (a new class): left out of the comparison"
        ));
    }
    Ok(decision)
}

/// Taggers on tagged sentences (`clean`'s words and IOB2 tags), each read
/// as `eval` reads it. A sentence with an entity type one model cannot tag
/// is left out, as a classifier's row with a new class is.
fn judge_sentences(config: &GateConfig, models: Models, progress: &Progress) -> Result<GateDecision> {
    let Models { challenger: challenger_model, champion: champion_model } = models;
    if let Some(champion) = champion_model
        && champion.task() != Task::TokenClassification
    {
        bail!("the challenger tags words but the model in production labels texts: they cannot be compared");
    }
    let mut words: Vec<Vec<String>> = Vec::new();
    let mut truth: Vec<Vec<String>> = Vec::new();
    for path in &config.holdout {
        let table = TaggedTable::read(path, "`clean` (or any tagged words table)")?;
        words.extend(table.tokens);
        truth.extend(table.tags);
    }
    let holdout = holdout_files(config, words.len())?;
    let known = |tag: &String| {
        tag == "O"
            || (challenger_model.labels.id(tag).is_some() && champion_model.is_none_or(|m| m.labels.id(tag).is_some()))
    };
    let (kept, dropped): (Vec<usize>, Vec<usize>) = (0..words.len()).partition(|&i| truth[i].iter().all(known));
    let sentences: Vec<&[String]> = kept.iter().map(|&i| words[i].as_slice()).collect();
    let truth: Vec<&[String]> = kept.iter().map(|&i| truth[i].as_slice()).collect();
    if sentences.is_empty() {
        bail!("no holdout sentence has only tags both models know: nothing to compare on");
    }
    let bar = progress.steps(2, "tagging the holdout with both models");
    let read = |model: &Predictor| -> Result<Vec<TaggedSentence>> {
        let tags = model.word_tags(&sentences, config.batch_size)?;
        Ok(truth.iter().zip(&tags).map(|(truth, tags)| TaggedSentence::new(truth, tags)).collect())
    };
    let challenger = read(challenger_model)?;
    bar.inc(1);
    let champion = champion_model.map(read).transpose()?;
    bar.finish_and_clear();
    let has_champion = champion.is_some();
    let paired = PairedSentences { champion: champion.unwrap_or_else(|| challenger.clone()), challenger };
    let mut decision = decide(&paired, has_champion, config);
    decision.entity_micro_f1 = Some(EntityMicroF1 {
        champion: has_champion.then(|| paired.micro_f1(Model::Champion)),
        challenger: paired.micro_f1(Model::Challenger),
    });
    decision.holdout = holdout;
    decision.rows_without_shared_label = dropped.len();
    if !dropped.is_empty() {
        decision.reasons.push(format!(
            "{} holdout sentences have an entity type one model does not tag (a new type): left out of the comparison",
            dropped.len()
        ));
    }
    Ok(decision)
}

fn write(config: &GateConfig, decision: &GateDecision) -> Result<()> {
    let mut staged = StagedOutput::new(&config.output_dir)?;
    staged.write_json(DECISION, decision)?;
    staged.write_bytes(REPORT, report(decision).as_bytes())?;
    let mut manifest = Manifest::new("gate", config, &serde_json::json!({"promote": decision.promote}));
    manifest.inputs.clone_from(&decision.holdout);
    staged.commit_manifest(MANIFEST, manifest)
}

fn report(decision: &GateDecision) -> String {
    let mut md = String::new();
    let champion = decision.champion.map_or_else(|| "none".to_owned(), |v| format!("v{v}"));
    let verdict = if decision.promote { "PROMOTE" } else { "REFUSE" };
    let _ = writeln!(md, "# Gate: v{} against production {champion}\n", decision.challenger);
    let _ = writeln!(md, "**{verdict}**\n");
    for reason in &decision.reasons {
        let _ = writeln!(md, "- {reason}");
    }
    let figure = |x: Option<f64>| x.map_or_else(|| "-".to_owned(), |x| format!("{x:.4}"));
    let _ = writeln!(md, "\n| | champion | challenger |\n|---|---:|---:|");
    let _ = writeln!(
        md,
        "| {} | {} | {:.4} |",
        decision.metric.key(),
        figure(decision.champion_value),
        decision.challenger_value
    );
    let _ = writeln!(
        md,
        "\n{} holdout rows ({} left out: a label one model does not know). Difference {} (paired bootstrap \
         interval [{}, {}]). Only the champion right on {} rows, only the challenger on {}: McNemar's exact p = {}.\n",
        decision.rows,
        decision.rows_without_shared_label,
        figure(decision.difference),
        figure(decision.difference_low),
        figure(decision.difference_high),
        decision.only_champion_right,
        decision.only_challenger_right,
        figure(decision.mcnemar_p),
    );
    if let Some(micro) = decision.entity_micro_f1 {
        let _ = writeln!(
            md,
            "Entity micro-F1 (seqeval's default mode): champion {}, challenger {:.4}. Rows here are sentences, and a \
             sentence is right when every entity in it is found and no other.\n",
            figure(micro.champion),
            micro.challenger
        );
    }
    if !decision.classes.is_empty() {
        let _ = writeln!(md, "| class | rows | champion recall | challenger recall |\n|---|---:|---:|---:|");
        for class in &decision.classes {
            let _ = writeln!(
                md,
                "| {} | {} | {:.3} | {:.3} |",
                class.label, class.support, class.champion_recall, class.challenger_recall
            );
        }
    }
    md
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        ["a", "b", "c"].map(String::from).to_vec()
    }

    /// 300 rows, 100 per class; `champion_wrong` and `challenger_wrong` pick the rows each gets wrong.
    fn paired(champion_wrong: impl Fn(usize) -> bool, challenger_wrong: impl Fn(usize) -> bool) -> Paired {
        let truth: Vec<usize> = (0..300).map(|i| i % 3).collect();
        let guess = |wrong: &dyn Fn(usize) -> bool| -> Vec<usize> {
            truth.iter().enumerate().map(|(i, &t)| if wrong(i) { (t + 1) % 3 } else { t }).collect()
        };
        Paired { labels: labels(), champion: guess(&champion_wrong), challenger: guess(&challenger_wrong), truth }
    }

    fn config() -> GateConfig {
        GateConfig { bootstrap_resamples: 300, ..GateConfig::default() }
    }

    #[test]
    fn a_clearly_better_challenger_passes_with_a_significant_mcnemar() {
        let decision = decide(&paired(|i| i % 4 == 0, |i| i % 20 == 0), true, &config());
        assert!(decision.promote, "{:?}", decision.reasons);
        assert_eq!((decision.only_champion_right, decision.only_challenger_right), (0, 60));
        assert!(decision.mcnemar_p.expect("a p-value") < 1e-10);
        let (low, high) = (decision.difference_low.expect("low"), decision.difference_high.expect("high"));
        assert!(low > 0.0 && high > low, "[{low}, {high}]");
    }

    #[test]
    fn a_worse_challenger_is_refused_and_the_reason_names_the_metric() {
        // Corrupted labels in training: wrong on a third of the rows.
        let decision = decide(&paired(|i| i % 20 == 0, |i| i % 3 == 0 || i % 20 == 0), true, &config());
        assert!(!decision.promote);
        assert!(decision.reasons.iter().any(|r| r.starts_with("macro_f1")), "{:?}", decision.reasons);
        assert!(decision.difference_high.expect("high") < 0.0);
    }

    #[test]
    fn a_class_that_collapses_is_refused_even_when_the_total_is_close() {
        // The challenger loses two thirds of class `a` (rows 0, 3, 6, ... below 200) but is perfect elsewhere.
        let decision = decide(
            &paired(|i| i % 10 == 1 || i % 10 == 2, |i| i % 3 == 0 && i < 200),
            true,
            &GateConfig { margin: 0.2, ..config() },
        );
        assert!(!decision.promote);
        assert_eq!(decision.reasons.len(), 1, "{:?}", decision.reasons);
        assert!(decision.reasons[0].contains("recall of 'a'"), "{:?}", decision.reasons);
        assert_eq!(decision.classes.len(), 3);
    }

    /// 200 sentences of `B-PER I-PER O B-LOC`; `wrong` picks, per model, the
    /// sentences where it misses the person (tags it `O O`).
    fn sentences(
        champion_misses: impl Fn(usize) -> bool,
        challenger_misses: impl Fn(usize) -> bool,
    ) -> PairedSentences {
        let truth = ["B-PER", "I-PER", "O", "B-LOC"];
        let read = |misses: &dyn Fn(usize) -> bool| -> Vec<TaggedSentence> {
            (0..200)
                .map(|i| {
                    let guess = if misses(i) { ["O", "O", "O", "B-LOC"] } else { truth };
                    TaggedSentence::new(&truth, &guess)
                })
                .collect()
        };
        PairedSentences { champion: read(&champion_misses), challenger: read(&challenger_misses) }
    }

    #[test]
    fn a_tagger_that_loses_a_type_is_refused_on_its_recall_and_a_better_one_passes() {
        let worse = decide(&sentences(|i| i % 10 == 0, |i| i % 2 == 0), true, &config());
        assert!(!worse.promote);
        assert!(worse.reasons.iter().any(|r| r.contains("recall of 'PER' (200 entities) falls from 0.900 to 0.500")));
        assert_eq!((worse.only_champion_right, worse.only_challenger_right), (80, 0));
        assert!(worse.difference_high.expect("high") < 0.0, "{worse:?}");
        assert_eq!(worse.classes.len(), 2, "PER and LOC: {:?}", worse.classes);
        let loc = worse.classes.iter().find(|c| c.label == "LOC").expect("LOC");
        assert_eq!((loc.champion_recall, loc.challenger_recall), (1.0, 1.0));

        let better = decide(&sentences(|i| i % 2 == 0, |i| i % 10 == 0), true, &config());
        assert!(better.promote, "{:?}", better.reasons);
        assert!(better.difference_low.expect("low") > 0.0);
        // Entity macro-F1: LOC is 1; PER's recall 0.9 at precision 1.
        let per = 2.0 * 0.9 / 1.9;
        assert!((better.challenger_value - (1.0 + per) / 2.0).abs() < 1e-12, "{}", better.challenger_value);
        let accuracy = decide(
            &sentences(|i| i % 2 == 0, |i| i % 10 == 0),
            true,
            &GateConfig { metric: Metric::Accuracy, ..config() },
        );
        assert!((accuracy.challenger_value - (1.0 - 0.1 * 2.0 / 4.0)).abs() < 1e-12, "word accuracy");
    }

    #[test]
    fn within_the_margin_passes_and_without_a_champion_the_first_passes() {
        let decision = decide(&paired(|i| i % 50 == 0, |i| i % 40 == 0), true, &config());
        assert!(decision.promote, "{:?}", decision.reasons);
        let first = decide(&paired(|_| true, |i| i % 2 == 0), false, &config());
        assert!(first.promote && first.champion_value.is_none() && first.mcnemar_p.is_none());
    }
}
