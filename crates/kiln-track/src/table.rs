//! The tables `runs` prints: one line per run, or runs side by side with the
//! params that differ between them and every metric.

use std::collections::{BTreeMap, BTreeSet};

use crate::{RunRecord, flatten_params};

/// Metrics shown in the one-line-per-run list, when a run has them.
const HEADLINE: [&str; 4] = ["accuracy", "macro_f1", "val_macro_f1", "loss"];

pub fn list(records: &[RunRecord]) -> String {
    let mut rows =
        vec![["run", "stage", "status", "started", "seconds", "headline", "commit"].map(String::from).to_vec()];
    for record in records {
        let started = humantime::format_rfc3339_seconds(
            std::time::UNIX_EPOCH + std::time::Duration::from_millis(record.started_ms),
        );
        let commit = record.tags.get("git.commit").map_or("", |c| &c[..c.len().min(10)]);
        let dirty = if record.tags.get("git.dirty").is_some_and(|d| d == "true") { "+dirty" } else { "" };
        rows.push(vec![
            record.id.clone(),
            record.stage.clone(),
            record.status.to_string(),
            started.to_string(),
            record.seconds().map_or_else(|| "-".into(), |s| format!("{s:.0}")),
            headline(record),
            format!("{commit}{dirty}"),
        ]);
    }
    render(&rows)
}

/// `eval`'s metrics are named `<split>_<metric>`, `train`'s `best_val_<metric>`:
/// show the ones that end with a headline name.
fn headline(record: &RunRecord) -> String {
    let mut shown = Vec::new();
    for name in HEADLINE {
        let found = record.metrics.iter().find(|(k, _)| k.ends_with(&format!("_{name}")));
        if let Some((key, value)) = found
            && !shown.iter().any(|(k, _): &(&String, f64)| *k == key)
        {
            shown.push((key, *value));
        }
    }
    shown.iter().map(|(k, v)| format!("{k}={v:.4}")).collect::<Vec<_>>().join(" ")
}

/// Params that differ between the runs (dotted keys), then every metric.
pub fn compare(records: &[RunRecord]) -> String {
    let flat: Vec<BTreeMap<String, String>> = records.iter().map(|r| flatten_params(&r.params)).collect();
    let keys: BTreeSet<&String> = flat.iter().flat_map(|f| f.keys()).collect();
    let mut header = vec!["".to_owned()];
    header.extend(records.iter().map(|r| r.id.clone()));
    let mut rows = vec![header];
    let row = |name: String, values: Vec<String>| [vec![name], values].concat();
    rows.push(row("stage".into(), records.iter().map(|r| r.stage.clone()).collect()));
    rows.push(row("status".into(), records.iter().map(|r| r.status.to_string()).collect()));
    for key in keys {
        let values: Vec<String> = flat.iter().map(|f| f.get(key).cloned().unwrap_or_else(|| "-".into())).collect();
        if values.iter().any(|v| v != &values[0]) {
            rows.push(row(format!("param {key}"), values));
        }
    }
    let metrics: BTreeSet<&String> = records.iter().flat_map(|r| r.metrics.keys()).collect();
    for key in metrics {
        let values =
            records.iter().map(|r| r.metrics.get(key).map_or_else(|| "-".into(), |v| format!("{v:.4}"))).collect();
        rows.push(row(format!("metric {key}"), values));
    }
    render(&rows)
}

/// Left-aligned columns, two spaces apart.
pub fn render(rows: &[Vec<String>]) -> String {
    let columns = rows.iter().map(Vec::len).max().unwrap_or(0);
    let widths: Vec<usize> = (0..columns)
        .map(|c| rows.iter().filter_map(|r| r.get(c)).map(|s| s.chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row.iter().zip(&widths).map(|(cell, width)| format!("{cell:<width$}")).collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::RunStatus;

    fn record(id: &str, learning_rate: f64, seed: u64, f1: f64) -> RunRecord {
        RunRecord {
            id: id.into(),
            stage: "train".into(),
            status: RunStatus::Finished,
            started_ms: 1_700_000_000_000,
            ended_ms: Some(1_700_000_090_000),
            config_file: None,
            params: serde_json::json!({ "train": { "learning_rate": learning_rate, "seed": seed, "device": "cpu" } }),
            tags: BTreeMap::from([
                ("git.commit".into(), "0123456789abcdef".into()),
                ("git.dirty".into(), "true".into()),
            ]),
            metrics: BTreeMap::from([("best_val_macro_f1".into(), f1)]),
            inputs: Vec::new(),
            outputs: Vec::new(),
            error: None,
        }
    }

    #[test]
    fn compare_shows_only_differing_params_and_every_metric() {
        let table = compare(&[record("a", 5e-5, 42, 0.81), record("b", 1e-4, 42, 0.84)]);
        let lines: Vec<&str> = table.lines().collect();
        assert!(lines[0].contains('a') && lines[0].contains('b'));
        let rate = lines.iter().find(|l| l.starts_with("param train.learning_rate")).expect("learning rate row");
        assert!(rate.contains("0.00005") && rate.contains("0.0001"), "{table}");
        assert!(!table.contains("train.seed") && !table.contains("train.device"), "equal params are left out");
        let f1 = lines.iter().find(|l| l.starts_with("metric best_val_macro_f1")).expect("metric row");
        assert!(f1.contains("0.8100") && f1.contains("0.8400"), "{table}");
    }

    #[test]
    fn list_has_a_line_per_run_with_its_headline() {
        let table = list(&[record("run-1", 5e-5, 1, 0.5)]);
        let lines: Vec<&str> = table.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(lines[1].starts_with("run-1") && lines[1].contains("best_val_macro_f1=0.5000"), "{table}");
        assert!(lines[1].contains("90") && lines[1].contains("0123456789+dirty"), "{table}");
    }
}
