//! How `tune` and a trial's `train` process talk: with `KILN_TUNE_LINK=1` set,
//! `train` writes a line to stdout after each validation and waits for a
//! verdict line on stdin. Its stdin closing means `tune` died: `train` then
//! checkpoints and stops, so no trial trains on without a worker.

use serde::{Deserialize, Serialize};

/// Set to `1` in a trial's environment.
pub const ENV: &str = "KILN_TUNE_LINK";
/// Starts each report line (anything else on stdout is not for `tune`).
pub const PREFIX: &str = "kiln-tune-report ";
pub const CONTINUE: &str = "continue";
pub const PRUNE: &str = "prune";

/// A validation, as `train` reports it.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct Report {
    pub step: usize,
    pub epoch: f64,
    pub loss: f64,
    pub accuracy: f64,
    pub macro_f1: f64,
}

impl Report {
    pub fn line(&self) -> String {
        format!("{PREFIX}{}\n", serde_json::to_string(self).expect("a report serialises. This is a bug."))
    }

    pub fn parse(line: &str) -> Option<Self> {
        serde_json::from_str(line.strip_prefix(PREFIX)?).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reports_round_trip_and_other_lines_are_not_reports() {
        let report = Report { step: 3, epoch: 0.5, loss: 1.25, accuracy: 0.5, macro_f1: 0.25 };
        assert_eq!(Report::parse(report.line().trim_end()), Some(report));
        assert_eq!(Report::parse("hello"), None);
    }
}
