//! `gate`: champion/challenger comparison before a promotion. The production
//! model (champion) and a candidate (challenger) predict the same labelled
//! holdout; the challenger is promoted only when it is not worse by more than
//! a margin on the metric, nor on the recall of any class with enough rows.
//! McNemar's exact test and a paired bootstrap interval of the difference are
//! reported beside the decision, which goes to the registry record.

use std::fmt::Write as _;

use anyhow::{Context, Result, bail};
use kiln_config::{GateConfig, RegistryConfig};
use kiln_core::gate::{ClassComparison, GateDecision};
use kiln_core::output::now_ms;
use kiln_core::scores::{Confusion, argmax};
use kiln_core::stats;
use kiln_core::{FileHash, Manifest, Metric, Progress, StagedOutput};
use kiln_data::schema::TextTable;
use kiln_model::{Predictor, device};
use kiln_track::registry::{Registry, Stage};

pub const DECISION: &str = "decision.json";
pub const REPORT: &str = kiln_core::stages::REPORT;
pub use kiln_core::stages::GATE_DONE as MANIFEST;

/// Both models' predictions on the same rows, as ids into `labels`.
pub struct Paired {
    pub labels: Vec<String>,
    pub truth: Vec<usize>,
    pub champion: Vec<usize>,
    pub challenger: Vec<usize>,
}

fn score(metric: Metric, labels: usize, truth: &[usize], predicted: &[usize], rows: &[usize]) -> f64 {
    let mut confusion = Confusion::new(labels);
    for &row in rows {
        confusion.add(truth[row], predicted[row]);
    }
    match metric {
        Metric::Accuracy => confusion.accuracy(),
        _ => confusion.macro_f1(),
    }
}

fn recall(truth: &[usize], predicted: &[usize], class: usize) -> (usize, f64) {
    let rows: Vec<usize> = (0..truth.len()).filter(|&i| truth[i] == class).collect();
    let hits = rows.iter().filter(|&&i| predicted[i] == class).count();
    (rows.len(), if rows.is_empty() { 0.0 } else { hits as f64 / rows.len() as f64 })
}

/// The decision on paired predictions; `champion` is `None` without a
/// production model (the challenger then passes on its own figures).
pub fn decide(paired: &Paired, has_champion: bool, config: &GateConfig) -> GateDecision {
    let n = paired.truth.len();
    let all: Vec<usize> = (0..n).collect();
    let classes = paired.labels.len();
    let challenger_value = score(config.metric, classes, &paired.truth, &paired.challenger, &all);
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
        promote: true,
        reasons: Vec::new(),
        decided_ms: now_ms(),
    };
    if !has_champion {
        decision.reasons.push("no model is in production: the challenger is the first".into());
        return decision;
    }
    let right = |predicted: &[usize], i: usize| predicted[i] == paired.truth[i];
    decision.only_champion_right =
        (0..n).filter(|&i| right(&paired.champion, i) && !right(&paired.challenger, i)).count();
    decision.only_challenger_right =
        (0..n).filter(|&i| right(&paired.challenger, i) && !right(&paired.champion, i)).count();
    decision.mcnemar_p = Some(stats::mcnemar_exact(decision.only_champion_right, decision.only_challenger_right));
    let champion_value = score(config.metric, classes, &paired.truth, &paired.champion, &all);
    // The same resampled rows for both models: the interval of a paired difference.
    let difference = stats::bootstrap(n, config.bootstrap_resamples, config.confidence_level, config.seed, |rows| {
        score(config.metric, classes, &paired.truth, &paired.challenger, rows)
            - score(config.metric, classes, &paired.truth, &paired.champion, rows)
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
    for class in 0..classes {
        let (support, champion_recall) = recall(&paired.truth, &paired.champion, class);
        if support < config.min_class_support {
            continue;
        }
        let (_, challenger_recall) = recall(&paired.truth, &paired.challenger, class);
        let label = paired.labels[class].clone();
        if challenger_recall < champion_recall - config.class_margin {
            decision.promote = false;
            decision.reasons.push(format!(
                "recall of '{label}' ({support} rows) falls from {champion_recall:.3} to {challenger_recall:.3}, \
                 more than the class margin {}",
                config.class_margin
            ));
        }
        decision.classes.push(ClassComparison { label, support, champion_recall, challenger_recall });
    }
    if decision.promote {
        decision.reasons.push(format!(
            "{metric} {challenger_value:.4} against the champion's {champion_value:.4} (difference {:+.4}, \
             {:.0}% interval [{:+.4}, {:+.4}]), and no class with {} rows or more lost more than {} recall",
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

/// Compares the candidate with production on the holdout, records the
/// decision in the registry and, when it passes and `promote` is on, promotes it.
pub fn run(config: &GateConfig, registry_config: &RegistryConfig, progress: &Progress) -> Result<GateDecision> {
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

    let mut texts = Vec::new();
    let mut truth_names = Vec::new();
    let mut holdout = Vec::new();
    for path in &config.holdout {
        let table = TextTable::read(path, "`clean` (or any labelled text table)")?;
        texts.extend(table.texts);
        truth_names.extend(table.labels);
        holdout.push(FileHash::of(path)?);
    }
    if texts.is_empty() {
        bail!(
            "the holdout ({}) has no rows",
            config.holdout.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
        );
    }
    let bar = progress.steps(2, "predicting the holdout with both models");
    let challenger_names = predict(&challenger_model, &texts, config.batch_size)?;
    bar.inc(1);
    let champion_names = champion_model.as_ref().map(|m| predict(m, &texts, config.batch_size)).transpose()?;
    bar.finish_and_clear();

    // Rows whose true label both models know; a new class cannot be compared.
    let known = |label: &str| {
        challenger_model.labels.id(label).is_some()
            && champion_model.as_ref().is_none_or(|m| m.labels.id(label).is_some())
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
    let mut decision = decide(&paired, champion.is_some(), config);
    decision.champion = champion.as_ref().map(|c| c.version);
    decision.challenger = challenger.version;
    decision.holdout = holdout;
    decision.rows_without_shared_label = dropped;
    if dropped > 0 {
        decision.reasons.push(format!(
            "{dropped} holdout rows have a label one model does not know (a new class): left out of the comparison"
        ));
    }
    registry.record_gate(&decision)?;
    if decision.promote && config.promote && challenger.stage != Stage::Production {
        // The gate's margins decide, not the registry's strict comparison of eval metrics.
        let promoted = registry.promote(challenger.version, config.metric, true)?;
        tracing::info!("promoted {} to production", promoted.version.name());
    }
    write(config, &decision)?;
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

    #[test]
    fn within_the_margin_passes_and_without_a_champion_the_first_passes() {
        let decision = decide(&paired(|i| i % 50 == 0, |i| i % 40 == 0), true, &config());
        assert!(decision.promote, "{:?}", decision.reasons);
        let first = decide(&paired(|_| true, |i| i % 2 == 0), false, &config());
        assert!(first.promote && first.champion_value.is_none() && first.mcnemar_p.is_none());
    }
}
