//! `monitor` on a simulated stream: a model folder with its reference, and a
//! prediction log whose traffic shifts half way (predicted labels, confidence,
//! text length, accuracy), spread over rotated files with damaged lines.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, UNIX_EPOCH};

use kiln_config::MonitorConfig;
use kiln_core::calibration::PredictionProfile;
use kiln_core::prediction_log::{InputStats, LogRecord};
use kiln_core::profile::{DataProfile, Histogram, SplitProfile};
use kiln_monitor::Status;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LABELS: [&str; 3] = ["billing", "cards", "travel"];
const MAX_LENGTH: usize = 64;
/// Predictions before the shift, and after it.
const STABLE: usize = 1000;
const SHIFTED: usize = 1000;
const WINDOW: usize = 250;

/// A model folder whose reference says: labels evenly predicted, top
/// probability between 0.7 and 0.99, 85% accurate, texts of 8-20 tokens.
fn model_folder(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(dir.join("config.json"), r#"{"model_type": "bert"}"#).expect("write");
    std::fs::write(dir.join("model.safetensors"), b"weights of the simulated model").expect("write");
    std::fs::write(dir.join("labels.json"), r#"{"labels": ["billing", "cards", "travel"]}"#).expect("write");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let (mut rows, mut truth) = (Vec::new(), Vec::new());
    for i in 0..900 {
        let predicted = i % 3;
        let top: f32 = rng.random_range(0.7..0.99);
        let mut row = vec![(1.0 - top) / 2.0; 3];
        row[predicted] = top;
        rows.push(row);
        truth.push(if rng.random_bool(0.85) { predicted } else { (predicted + 1) % 3 });
    }
    let names: Vec<String> = LABELS.iter().map(|l| (*l).to_owned()).collect();
    let reference = PredictionProfile::of("validation", &names, &rows, &truth, 0.5);
    std::fs::write(dir.join("reference_predictions.json"), serde_json::to_string(&reference).expect("json"))
        .expect("write");
    let lengths: Vec<u32> = (0..3000).map(|_| rng.random_range(8..=20)).collect();
    let train = SplitProfile {
        rows: lengths.len(),
        tokens_histogram: Histogram::of(&lengths, 32, 4.0),
        truncation_rate: 0.0,
        unk_text_rate: 0.01,
        ..SplitProfile::default()
    };
    let profile = DataProfile {
        source: "data/interim".into(),
        kind: "text".into(),
        tokenizer: "test".into(),
        max_length: MAX_LENGTH,
        splits: BTreeMap::from([("train".to_owned(), train)]),
    };
    std::fs::write(dir.join("data_profile.json"), serde_json::to_string(&profile).expect("json")).expect("write");
    let sha = kiln_core::output::sha256_file(&dir.join("model.safetensors")).expect("hash");
    kiln_core::model_folder::version_name(&sha).to_owned()
}

fn time(seconds: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(1_795_000_000 + seconds)).to_string()
}

/// The stream as log lines: `STABLE` predictions like the reference, then
/// `SHIFTED` mostly `travel`, less sure, longer (some truncated) and right half
/// the time. A third of the predictions get feedback a minute later; a few
/// requests fail during the shift.
fn stream(version: &str) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut lines = Vec::new();
    for i in 0..STABLE + SHIFTED {
        let shifted = i >= STABLE;
        let predicted = if shifted && rng.random_bool(0.8) { 2 } else { rng.random_range(0..3) };
        let score: f32 = if shifted { rng.random_range(0.35..0.7) } else { rng.random_range(0.7..0.99) };
        let tokens: u32 = if shifted { rng.random_range(30..=80) } else { rng.random_range(8..=20) };
        let request_id = format!("r{i}");
        let record = LogRecord::Prediction {
            time: time(i as u64),
            request_id: request_id.clone(),
            client: None,
            client_request_id: None,
            index: 0,
            text: Some(format!("text {i}")),
            text_sha256: None,
            label: LABELS[predicted].into(),
            score,
            margin: score - (1.0 - score) / 2.0,
            entropy: 0.5,
            calibrated_score: Some(score),
            input: InputStats {
                tokens: tokens.min(MAX_LENGTH as u32),
                truncated: tokens >= MAX_LENGTH as u32,
                unknown_tokens: 0,
            },
            model_version: version.into(),
            quantize: kiln_core::Quantize::None,
            latency_ms: 5.0,
        };
        lines.push(serde_json::to_string(&record).expect("json"));
        if i % 3 == 0 {
            let right = rng.random_bool(if shifted { 0.5 } else { 0.85 });
            let label = if right { predicted } else { (predicted + 1) % 3 };
            let feedback = LogRecord::Feedback {
                time: time(i as u64 + 60),
                request_id,
                client: None,
                index: 0,
                label: LABELS[label].into(),
                model_version: version.into(),
            };
            lines.push(serde_json::to_string(&feedback).expect("json"));
        }
        if shifted && i % 100 == 0 {
            let failure = LogRecord::Error {
                time: time(i as u64),
                request_id: format!("failed{i}"),
                client: None,
                status: 503,
                code: "queue_full".into(),
                model_version: Some(version.into()),
            };
            lines.push(serde_json::to_string(&failure).expect("json"));
        }
    }
    lines
}

struct World {
    _dir: tempfile::TempDir,
    root: PathBuf,
    model: PathBuf,
    log: PathBuf,
}

/// The log rotated twice, mid-window: two complete files and one being
/// written, with a garbled line in the middle and half a line at the end.
fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let model = root.join("model");
    let version = model_folder(&model);
    let log = root.join("log");
    std::fs::create_dir_all(&log).expect("mkdir");
    let mut lines = stream(&version);
    lines.insert(1500, "{\"type\": \"prediction\", garbled".into());
    let (first, rest) = lines.split_at(700);
    let (second, third) = rest.split_at(900);
    std::fs::write(log.join("predictions-1-0001.jsonl"), first.join("\n") + "\n").expect("write");
    std::fs::write(log.join("predictions-2-0002.jsonl"), second.join("\n") + "\n").expect("write");
    std::fs::write(log.join("predictions-3-0003.jsonl.partial"), third.join("\n") + "\n{\"type\":\"predic")
        .expect("write");
    World { _dir: dir, root, model, log }
}

fn config(world: &World) -> MonitorConfig {
    MonitorConfig {
        log_dir: Some(world.log.clone()),
        model_dir: Some(world.model.clone()),
        registry_dir: Some(world.root.join("no-registry")),
        output_dir: world.root.join("monitor"),
        window_predictions: WINDOW,
        ..MonitorConfig::default()
    }
}

#[test]
fn the_shift_is_detected_in_its_first_window_and_never_before() {
    let world = world();
    let report = kiln_monitor::run(&config(&world)).expect("monitor runs");
    assert_eq!(report.log_files, 3);
    assert_eq!(report.predictions, STABLE + SHIFTED);
    assert_eq!(report.damaged_lines, 2, "the garbled line and the half line");
    assert_eq!(report.windows.len(), (STABLE + SHIFTED) / WINDOW);

    let statuses: Vec<Status> = report.windows.iter().map(|w| w.status).collect();
    let first_alert = statuses.iter().position(|s| *s == Status::Alert).expect("an alert");
    assert_eq!(first_alert, STABLE / WINDOW, "statuses by window: {statuses:?}");
    // No drift is seen before the shift. (83 labels a window can still warn
    // on accuracy by chance, at the intervals' 95% level; never alert.)
    let stable_findings: Vec<_> = report.windows[..first_alert].iter().flat_map(|w| &w.findings).collect();
    assert!(stable_findings.iter().all(|f| f.check == "quality" && f.status == Status::Warn), "{stable_findings:?}");

    let before = &report.windows[0];
    let after = &report.windows[first_alert];
    let drift = |w: &kiln_monitor::WindowReport| w.prediction_drift.as_ref().expect("a reference").psi;
    assert!(drift(before) < 0.1 && drift(after) > 0.25, "PSI {} then {}", drift(before), drift(after));
    let ks = |w: &kiln_monitor::WindowReport| w.confidence.as_ref().expect("a reference").ks;
    assert!(ks(before) < 0.1 && ks(after) > 0.5, "KS {} then {}", ks(before), ks(after));
    assert!(after.input.token_length_psi.expect("a data profile") > 0.25);
    assert!(after.input.truncation_rate > 0.2);
    let checks: Vec<&str> = after.findings.iter().map(|f| f.check.as_str()).collect();
    for check in ["prediction_drift", "confidence_drift", "input_drift", "quality", "estimated_quality", "operations"] {
        assert!(checks.contains(&check), "{check} missing from {checks:?}");
    }

    // Realised accuracy with its interval: about 85% before, 50% after.
    let accuracy = |w: &kiln_monitor::WindowReport| w.quality.accuracy.expect("feedback");
    let (early, late) = (accuracy(before), accuracy(after));
    assert!(early.low < 0.85 && 0.85 < early.high, "{early:?}");
    assert!(late.high < 0.7, "{late:?}");
    assert_eq!(before.quality.with_feedback, (0..WINDOW).filter(|i| i % 3 == 0).count());
    assert!((before.quality.delay_s_p50.expect("delays") - 60.0).abs() < 1e-9);
    // The estimate from confidence tracks the realised figure on the labelled predictions.
    let estimate = after.estimated.accuracy_on_feedback.expect("an estimate");
    assert!((estimate - late.value).abs() < 0.1, "estimated {estimate}, realised {}", late.value);
    assert!(after.operations.server_errors > 0 && before.operations.server_errors == 0);

    assert_eq!(report.status, Status::Alert);
    assert_eq!(report.current_window, Some(report.windows.len() - 1));

    // Written, and committed with a manifest last.
    let out = &config(&world).output_dir;
    for name in ["monitor.json", "monitor.prom", "drift.svg", "quality.svg", "report.md", "manifest.json"] {
        assert!(out.join(name).is_file(), "{name}");
    }
    let prom = std::fs::read_to_string(out.join("monitor.prom")).expect("prom");
    let version = &report.windows[0].model_version;
    assert!(prom.contains(&format!("kiln_monitor_status{{model_version=\"{version}\"}} 2")), "{prom}");
    assert!(prom.contains("kiln_monitor_prediction_psi{"), "{prom}");
    // Dashboards and alert rules are checked against this list (deploy tests).
    let listed = kiln_monitor::report::metric_names();
    for family in prom.lines().filter_map(|line| line.strip_prefix("# TYPE ")) {
        let name = family.split(' ').next().expect("name");
        assert!(listed.iter().any(|l| l == name), "{name} is not in report::metric_names()");
    }
    let md = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(md.contains("**Status: ALERT**") && md.contains("not a random sample"), "{md}");
}

#[test]
fn small_windows_are_reported_but_not_judged() {
    let world = world();
    let config = MonitorConfig { window_predictions: 100, min_window_predictions: 150, ..config(&world) };
    let report = kiln_monitor::run(&config).expect("monitor runs");
    assert!(report.windows.iter().all(|w| !w.judged));
    // Only operations are judged (the failed requests), never drift.
    assert!(report.windows.iter().flat_map(|w| &w.findings).all(|f| f.check == "operations"));
}

#[test]
fn windows_by_time_cover_the_stream() {
    let world = world();
    let config =
        MonitorConfig { window: kiln_config::WindowKind::Time, window_duration: "5m".into(), ..config(&world) };
    let report = kiln_monitor::run(&config).expect("monitor runs");
    // 2000 predictions one second apart in five-minute windows aligned to the clock.
    let total: usize = report.windows.iter().map(|w| w.predictions).sum();
    assert_eq!(total, STABLE + SHIFTED);
    assert!(report.windows.iter().all(|w| w.predictions <= 300));
    assert!(report.windows.len() >= 7 && report.windows.len() <= 8, "{}", report.windows.len());
}

fn monitor(world: &World, extra: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(&world.root)
        .env_remove("MLFLOW_TRACKING_URI")
        .env_remove("KILN_CONFIG")
        .args(["--quiet", "--window-predictions", "250", "--registry-dir", "no-registry", "--runs-dir", "runs"])
        .arg("--log-dir")
        .arg(&world.log)
        .arg("--model-dir")
        .arg(&world.model)
        .args(extra)
        .output()
        .expect("monitor runs")
}

#[test]
fn the_exit_code_says_alert_only_when_asked_and_a_run_record_is_kept() {
    let world = world();
    let quiet = monitor(&world, &[]);
    assert_eq!(quiet.status.code(), Some(0), "{}", String::from_utf8_lossy(&quiet.stderr));
    let asked = monitor(&world, &["--fail-on", "alert"]);
    assert_eq!(asked.status.code(), Some(3), "{}", String::from_utf8_lossy(&asked.stderr));
    assert!(world.root.join("artifacts/monitor/monitor.json").is_file());
    let runs = kiln_track::list(&world.root.join("runs")).expect("run records");
    assert_eq!(runs.len(), 2);
    assert!(runs.iter().all(|r| r.stage == "monitor"));
    let points = kiln_track::read_points(&world.root.join("runs").join(&runs[0].id)).expect("points");
    assert!(points.iter().any(|p| p.key == "window_prediction_psi" && p.step == 7), "one step per window");

    let missing = Command::new(env!("CARGO_BIN_EXE_monitor"))
        .current_dir(&world.root)
        .args(["--quiet", "--log-dir", "nowhere", "--runs-dir", "runs"])
        .arg("--model-dir")
        .arg(&world.model)
        .output()
        .expect("runs");
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&missing.stderr).contains("nowhere"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
}
