//! `retrain`: The next training set from the feedback, the pipeline run on it, the result judged by the gate.

use std::process::ExitCode;

use clap::Parser;
use kiln_cli::retrain::Retrained;
use kiln_config::{RetrainArgs, TrackArgs};
use kiln_stage::CommonArgs;
use kiln_track::RunStatus;
use kiln_train::Control;

/// New data in, a better model out, or nothing. Adds the predictions that got feedback (from serve's
/// prediction log) to the current raw training split as a new data version in artifacts/retrain/raw
/// (feedback whose text is a validation or test text is left out; a share is held back for the
/// gate), runs clean, tokenize, profile, train, eval and export on it with the same settings into
/// artifacts/retrain, registers the export as a candidate, and runs the gate: it is promoted only if
/// it is not worse than production on the test split plus the held-back feedback.
///
/// The gate's margins come from the config's [gate] section. With less usable feedback than
/// --min-feedback it does nothing (exit 0). Run it after `monitor
/// --fail-on alert` exits 3, or on a schedule (`make retrain` does the first).
///
/// --init production starts the challenger from the production model's weights instead of the
/// pre-trained ones, and trains it for --warm-epochs on the feedback plus a --replay-share of the
/// old training rows (each class alike, so none is forgotten): a recovery in a fraction of the time.
///
/// A tagger's config (task = "token_classification") learns from span feedback: each text with its
/// corrected entities becomes a tagged sentence by the entities' character offsets; spans that end
/// past the text, cut a word or overlap another leave their text out, counted.
///
/// A config with [[label.functions]] runs label between clean and tokenize: feedback rows keep the
/// label they were given, and with --weak-labels the served texts nobody gave feedback on join
/// training with the functions' labels, each weighing --weak-weight (counted apart in the report).
#[derive(Debug, Parser)]
#[command(name = "retrain", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: RetrainArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    kiln_track::stage::run_tracked_stage(
        "retrain",
        &common,
        |config| {
            settings.apply(&mut config.retrain);
            track.apply(&mut config.track);
        },
        |config, progress, run| {
            match kiln_cli::retrain::run(config, &progress, &Control::default())? {
                Retrained::NothingToDo(data) => {
                    run.tag("decision", "nothing to do");
                    tracing::info!(
                        "{} usable feedback rows, fewer than retrain.min_feedback ({}): nothing to retrain on",
                        data.usable(),
                        config.retrain.min_feedback
                    );
                }
                Retrained::Judged { data, version, decision, weak_added, warm_from } => {
                    run.tag("init", config.retrain.init.to_string());
                    if let (Some(from), Some(replayed)) = (warm_from, data.replayed) {
                        run.tag("warm_from", format!("v{from}"));
                        run.metric("replayed_rows", replayed as f64, 0);
                    }
                    run.metric("feedback_added", data.added_to_train as f64, 0);
                    run.metric("feedback_held_out", data.held_out as f64, 0);
                    if let Some(weak_added) = weak_added {
                        run.metric("weak_added", weak_added as f64, 0);
                        tracing::info!("{weak_added} served texts without feedback trained on with weak labels");
                    }
                    kiln_cli::record_gate(run, &config.gate, &decision);
                    let verdict = if decision.promote { "promoted" } else { "refused, left a candidate" };
                    tracing::info!("v{version} {verdict}: {}", decision.reasons.join("; "));
                }
            }
            run.output(&config.retrain.output_dir);
            Ok(RunStatus::Finished)
        },
    )
}
