//! `gate`: Compare a candidate with the production model on the same holdout; promote it only if it is not worse.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::{GateArgs, TrackArgs};
use kiln_stage::CommonArgs;
use kiln_track::RunStatus;

/// Compare a registry candidate (the challenger) with the production model (the champion) on the
/// same labelled holdout, and promote it only if it is not worse by more than --margin on --metric,
/// nor by more than --class-margin in recall on any class with --min-class-support rows.
///
/// McNemar's exact test and a paired bootstrap interval of the difference are reported; the
/// decision, every figure and the reasons go to the challenger's registry record, the run record,
/// and decision.json / report.md in artifacts/gate. A refusal is an answer, not an error: exit 0.
///
/// Taggers are compared on tagged sentences (clean's words and tags): entity macro-F1 (or word
/// accuracy), a bootstrap over sentences, and the recall of each entity type.
#[derive(Debug, Parser)]
#[command(name = "gate", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: GateArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    kiln_track::stage::run_tracked_stage(
        "gate",
        &common,
        |config| {
            settings.apply(&mut config.gate);
            track.apply(&mut config.track);
        },
        |config, progress, run| {
            let decision = kiln_infer::gate::run(&config.gate, &config.registry, &progress)?;
            kiln_cli::record_gate(run, &config.gate, &decision);
            let verdict = if decision.promote { "promote" } else { "refuse" };
            tracing::info!("v{}: {verdict}: {}", decision.challenger, decision.reasons.join("; "));
            Ok(RunStatus::Finished)
        },
    )
}
