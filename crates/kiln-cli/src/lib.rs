//! What the model stages' binaries share beyond the harness ([`kiln_stage`],
//! [`kiln_track::stage`]): what `train` and `eval` add to their run records.

pub mod retrain;
pub mod tune_link;

use anyhow::Result;
use kiln_config::{EvalConfig, TrainConfig};
use kiln_core::EvalMetrics;
use kiln_core::output::read_manifest;
use kiln_track::Run;

/// What a finished `train` run adds to its record: every logged step, the best
/// validation figures, speed, the data it read and where the model went.
pub fn record_train(run: &mut Run, config: &TrainConfig, summary: &kiln_train::TrainSummary) -> Result<()> {
    run.tag("device", summary.device.clone());
    log_train_points(run, config)?;
    let step = summary.steps as u64;
    let best = &summary.best.metrics;
    for (key, value) in [
        ("best_val_accuracy", best.accuracy),
        ("best_val_macro_f1", best.macro_f1),
        ("best_val_loss", best.loss),
        ("train_seconds", summary.train_seconds),
        ("samples_per_second", summary.samples_per_second),
        ("tokens_per_second", summary.tokens_per_second),
        ("steps", summary.steps as f64),
    ] {
        run.metric(key, value, step);
    }
    let manifest = read_manifest::<serde::de::IgnoredAny>(&config.run_dir.join(kiln_train::SUMMARY));
    run.inputs(manifest.map(|m| m.inputs).unwrap_or_default());
    run.output(&config.output_dir);
    run.output(&config.run_dir);
    Ok(())
}

/// Every record of the run's metrics log, as points of the run record.
fn log_train_points(run: &mut Run, config: &TrainConfig) -> Result<()> {
    let log = config.run_dir.join(kiln_train::METRICS);
    for point in kiln_track::points_from_train_log(&log, kiln_track::now_ms())? {
        run.log(point);
    }
    Ok(())
}

/// What a pruned `train` run adds to its record: its validations so far.
pub fn record_pruned(run: &mut Run, config: &TrainConfig, step: usize, epoch: f64) -> Result<()> {
    run.tag("pruned_at", format!("step {step}, epoch {epoch:.2}"));
    log_train_points(run, config)?;
    run.output(&config.run_dir);
    Ok(())
}

/// What an `eval` run adds to its record: the split's figures (`test_accuracy`,
/// ..., and for a tagger `test_entity_f1` and `test_entity_f1_strict`: entity
/// micro F1 in seqeval's two modes), the model and data hashes, where the report went.
pub fn record_eval(run: &mut Run, config: &EvalConfig, metrics: &EvalMetrics) {
    run.tag("device", config.device.clone());
    let split = &metrics.split;
    for (name, value) in metrics.headline() {
        run.metric(&format!("{split}_{name}"), value, 0);
    }
    if let Some(entities) = &metrics.entities {
        run.metric(&format!("{split}_entity_f1"), entities.conlleval.micro.f1, 0);
        run.metric(&format!("{split}_entity_f1_strict"), entities.strict.micro.f1, 0);
    }
    run.inputs(metrics.model.iter().cloned().chain([metrics.data.clone()]));
    run.output(&config.output_dir);
}

/// What a `gate` run adds to its record: the decision's figures and reasons.
pub fn record_gate(run: &mut Run, config: &kiln_config::GateConfig, decision: &kiln_core::gate::GateDecision) {
    run.tag("decision", if decision.promote { "promote" } else { "refuse" });
    run.tag("challenger", format!("v{}", decision.challenger));
    if let Some(champion) = decision.champion {
        run.tag("champion", format!("v{champion}"));
    }
    run.tag("reasons", decision.reasons.join("; "));
    let figures = [
        ("challenger_value", Some(decision.challenger_value)),
        ("champion_value", decision.champion_value),
        ("difference", decision.difference),
        ("difference_low", decision.difference_low),
        ("difference_high", decision.difference_high),
        ("mcnemar_p", decision.mcnemar_p),
        ("holdout_rows", Some(decision.rows as f64)),
    ];
    for (key, value) in figures {
        if let Some(value) = value {
            run.metric(key, value, 0);
        }
    }
    run.inputs(decision.holdout.iter().cloned());
    run.output(&config.output_dir);
}
