//! `label`: Weak supervision: labelling functions vote on an unlabelled split, a label model turns the votes into `label` and `label_probs`.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::{LabelArgs, TrackArgs};
use kiln_infer::label::LabelReport;
use kiln_stage::CommonArgs;
use kiln_track::{Run, RunStatus};

/// Weak supervision: the labelling functions of [label] vote on each row of the unlabelled
/// split (or abstain), a label model (snorkel, dawid_skene or majority) learns from the votes
/// how far to trust each one, and every row gets `label` and `label_probs`. Writes the
/// labelled splits, labels.json, label_matrix.parquet, report.md and label_report.json.
#[derive(Debug, Parser)]
#[command(name = "label", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: LabelArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    kiln_track::stage::run_tracked_stage(
        "label",
        &common,
        |config| {
            settings.apply(&mut config.label);
            track.apply(&mut config.track);
        },
        |config, progress, run| {
            let report = kiln_infer::label::run(&config.label, &progress)?;
            record(run, &report);
            tracing::info!(
                "{} split: {} of {} rows covered ({:.1}%), {} written ({} uncovered dropped); {} function(s){}; wrote {}",
                report.split,
                report.covered,
                report.rows,
                100.0 * (1.0 - report.uncovered_share),
                report.rows_out,
                report.dropped_uncovered,
                report.functions.len(),
                report
                    .accuracy_on_split_labels
                    .map(|a| format!("; the split's own labels agree on {:.1}% of covered rows", 100.0 * a))
                    .unwrap_or_default(),
                config.label.output_dir.display()
            );
            Ok(RunStatus::Finished)
        },
    )
}

/// What a `label` run adds to its record (and MLflow): the label model, the
/// coverage, each function's coverage, conflicts and accuracies, and the
/// agreement with the split's own labels where it has them.
fn record(run: &mut Run, report: &LabelReport) {
    if let Ok(serde_json::Value::String(model)) = serde_json::to_value(report.model) {
        run.tag("label_model", model);
    }
    run.metric("coverage", 1.0 - report.uncovered_share, 0);
    run.metric("rows_labelled", report.rows_out as f64, 0);
    run.metric("uncovered_dropped", report.dropped_uncovered as f64, 0);
    if let Some(accuracy) = report.accuracy_on_split_labels {
        run.metric("accuracy_on_split_labels", accuracy, 0);
    }
    if let Some(probability) = report.probability_on_split_labels {
        run.metric("probability_on_split_labels", probability, 0);
    }
    if let (Some(split), Some(accuracy)) = (report.gold_split, report.gold_accuracy) {
        run.metric(&format!("{split}_label_model_accuracy"), accuracy, 0);
    }
    if let (Some(split), Some(probability)) = (report.gold_split, report.gold_probability) {
        run.metric(&format!("{split}_label_model_probability"), probability, 0);
    }
    for function in &report.functions {
        let name = &function.name;
        run.metric(&format!("lf_{name}_coverage"), function.coverage, 0);
        run.metric(&format!("lf_{name}_conflicts"), function.conflicts, 0);
        if let Some(accuracy) = function.empirical_accuracy {
            run.metric(&format!("lf_{name}_accuracy"), accuracy, 0);
        }
        if let Some(accuracy) = function.learned_accuracy {
            run.metric(&format!("lf_{name}_learned_accuracy"), accuracy, 0);
        }
    }
}
