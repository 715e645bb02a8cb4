//! `monitor`: Is the served model still good? Windows of serve's prediction log against the model's reference.

use std::process::ExitCode;

use clap::Parser;
use kiln_config::FailOn;
use kiln_config::{MonitorArgs, TrackArgs};
use kiln_monitor::Status;
use kiln_stage::CommonArgs;
use kiln_stage::Outcome;
use kiln_track::RunStatus;
use kiln_track::stage::RunEnd;

/// Is the served model still good? Reads serve's prediction log and feedback, cuts it into windows
/// per model version and compares each with the model's reference: predicted labels (PSI,
/// chi-square, Jensen-Shannon), confidence (Kolmogorov-Smirnov, Wasserstein), inputs (token
/// length, truncation, unknown tokens, empty and duplicate texts), accuracy on feedback (Wilson and
/// bootstrap intervals) and estimated from calibrated confidence, latency, errors and the model's age.
/// A tagger's log is judged on its entities: the types' mix, entity scores, span lengths and entity
/// F1 from span feedback.
///
/// Writes monitor.json, monitor.prom (node_exporter textfile collector), drift.svg, quality.svg and
/// report.md. Exit codes: 0 done (whatever the status, unless --fail-on), 1 bad input or settings,
/// 2 a bug, 3 the status reached --fail-on (warn or alert). Run it from cron, a systemd timer or a
/// Kubernetes CronJob; see the book's "Keeping a model good" (docs/src/loop/monitor.md).
#[derive(Debug, Parser)]
#[command(name = "monitor", version)]
struct Cli {
    #[command(flatten)]
    common: CommonArgs,
    #[command(flatten)]
    settings: MonitorArgs,
    #[command(flatten)]
    track: TrackArgs,
}

fn main() -> ExitCode {
    let Cli { common, settings, track } = Cli::parse();
    kiln_track::stage::run_tracked_stage(
        "monitor",
        &common,
        |config| {
            settings.apply(&mut config.monitor);
            track.apply(&mut config.track);
        },
        |config, _progress, run| {
            let resolved = config.monitor.resolved(&config.serve, &config.registry);
            let report = kiln_monitor::run(&resolved)?;
            kiln_monitor::record(run, &report);
            for finding in &report.findings {
                tracing::warn!("{}: {}: {}", finding.status.name(), finding.check, finding.message);
            }
            tracing::info!(
                "status {}: {} predictions in {} windows; wrote {}",
                report.status.name(),
                report.predictions,
                report.windows.len(),
                resolved.output_dir.join(kiln_monitor::REPORT).display()
            );
            let reached = match resolved.fail_on {
                FailOn::Never => false,
                FailOn::Warn => report.status >= Status::Warn,
                FailOn::Alert => report.status >= Status::Alert,
            };
            let outcome = if reached { Outcome::NeedsAttention } else { Outcome::Done };
            Ok(RunEnd { status: RunStatus::Finished, outcome })
        },
    )
}
