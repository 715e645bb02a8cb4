//! `monitor` on a tagger's log: `entities` records and span feedback, judged
//! against the entities `eval` found on the reference split.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use kiln_config::MonitorConfig;
use kiln_core::calibration::{EntityProfile, PredictionProfile, ProfiledEntity, ProfiledText};
use kiln_core::prediction_log::{InputStats, LogRecord, LoggedEntity};
use kiln_monitor::{Status, WindowReport};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const STABLE: usize = 1000;
const SHIFTED: usize = 1000;
const WINDOW: usize = 250;

/// A tagger's folder whose reference says: nine person entities to one
/// location, scores 0.8-0.99, a tenth of the entities missed.
fn model_folder(dir: &Path) -> String {
    std::fs::create_dir_all(dir).expect("mkdir");
    std::fs::write(
        dir.join("config.json"),
        r#"{"model_type": "bert", "architectures": ["BertForTokenClassification"]}"#,
    )
    .expect("write");
    std::fs::write(dir.join("model.safetensors"), b"weights of the simulated tagger").expect("write");
    std::fs::write(dir.join("labels.json"), r#"{"labels": ["B-LOC", "I-LOC", "B-PER", "I-PER", "O"]}"#).expect("write");
    let mut rng = ChaCha8Rng::seed_from_u64(1);
    let texts: Vec<ProfiledText> = (0..900)
        .map(|i| {
            // "Ada Lovelace spoke" (a person of two words), or "Paris was sunny" (a place of one).
            let (kind, end, words) = if i % 10 == 0 { ("LOC", 5, 1) } else { ("PER", 12, 2) };
            let missed = i % 10 == 5;
            let score = rng.random_range(0.8..0.99);
            let found = ProfiledEntity { kind: kind.into(), start: 0, end, score, words };
            ProfiledText { truth: vec![(kind.into(), 0, end)], predicted: if missed { vec![] } else { vec![found] } }
        })
        .collect();
    let reference = PredictionProfile { entities: Some(EntityProfile::of(&texts)), ..PredictionProfile::default() };
    std::fs::write(dir.join("reference_predictions.json"), serde_json::to_string(&reference).expect("json"))
        .expect("write");
    let sha = kiln_core::output::sha256_file(&dir.join("model.safetensors")).expect("hash");
    kiln_core::model_folder::version_name(&sha).to_owned()
}

fn time(seconds: u64) -> String {
    humantime::format_rfc3339_millis(UNIX_EPOCH + Duration::from_secs(1_795_000_000 + seconds)).to_string()
}

fn entity(kind: &str, start: usize, end: usize, score: Option<f32>) -> LoggedEntity {
    LoggedEntity { entity_group: kind.into(), start, end, score }
}

/// `STABLE` texts like the reference, nine people to a place, found right
/// 95% of the time; then `SHIFTED` texts, four places to a person, the
/// model less sure and calling half the places people. A third get span
/// feedback a minute later: the true entity, plus (once a window) a span
/// past the end of the text, which can match nothing.
fn stream(version: &str) -> Vec<String> {
    let mut rng = ChaCha8Rng::seed_from_u64(2);
    let mut lines = Vec::new();
    for i in 0..STABLE + SHIFTED {
        let shifted = i >= STABLE;
        let place = rng.random_bool(if shifted { 0.8 } else { 0.1 });
        let (text, kind, end) = if place { ("Paris was sunny", "LOC", 5) } else { ("Ada Lovelace spoke", "PER", 12) };
        let right = rng.random_bool(if shifted && place { 0.5 } else { 0.95 });
        let predicted_kind = if right {
            kind
        } else if kind == "LOC" {
            "PER"
        } else {
            "LOC"
        };
        let score: f32 = if shifted { rng.random_range(0.4..0.7) } else { rng.random_range(0.8..0.99) };
        let request_id = format!("r{i}");
        let record = LogRecord::Entities {
            time: time(i as u64),
            request_id: request_id.clone(),
            client: None,
            client_request_id: None,
            index: 0,
            text: Some(text.into()),
            text_sha256: None,
            entities: vec![entity(predicted_kind, 0, end, Some(score))],
            input: InputStats { tokens: 7, truncated: false, unknown_tokens: u32::from(i % 7 == 0) },
            model_version: version.into(),
            quantize: kiln_core::Quantize::None,
            latency_ms: 4.0,
        };
        lines.push(serde_json::to_string(&record).expect("json"));
        if i % 3 == 0 {
            let mut truth = vec![entity(kind, 0, end, None)];
            if i % WINDOW == 0 {
                truth.push(entity("PER", 40, 52, None));
            }
            let feedback = LogRecord::EntityFeedback {
                time: time(i as u64 + 60),
                request_id,
                client: None,
                index: 0,
                entities: truth,
                model_version: version.into(),
            };
            lines.push(serde_json::to_string(&feedback).expect("json"));
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

fn world() -> World {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path().to_owned();
    let model = root.join("model");
    let version = model_folder(&model);
    let log = root.join("log");
    std::fs::create_dir_all(&log).expect("mkdir");
    std::fs::write(log.join("predictions-1-0001.jsonl"), stream(&version).join("\n") + "\n").expect("write");
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
fn a_taggers_shift_in_entity_types_is_detected_in_its_first_window_and_never_before() {
    let world = world();
    let report = kiln_monitor::run(&config(&world)).expect("monitor runs");
    assert_eq!(report.predictions, STABLE + SHIFTED);
    assert_eq!(report.windows.len(), (STABLE + SHIFTED) / WINDOW);
    assert_eq!(report.unmatched_feedback, 0);

    let statuses: Vec<Status> = report.windows.iter().map(|w| w.status).collect();
    let first_alert = statuses.iter().position(|s| *s == Status::Alert).expect("an alert");
    assert_eq!(first_alert, STABLE / WINDOW, "statuses by window: {statuses:?}");
    let stable_findings: Vec<_> = report.windows[..first_alert].iter().flat_map(|w| &w.findings).collect();
    assert!(stable_findings.is_empty(), "no finding before the shift: {stable_findings:?}");

    let before = &report.windows[0];
    let after = &report.windows[first_alert];
    let entities = |w: &WindowReport| w.entities.clone().expect("a tagger's window has entity figures");
    let (early, late) = (entities(before), entities(after));
    assert!(early.type_psi.expect("psi") < 0.1 && late.type_psi.expect("psi") > 0.25, "{early:?}\n{late:?}");
    assert!(late.type_chi_square_p.expect("p") < 1e-6);
    assert!(early.score_ks.expect("ks") < 0.15 && late.score_ks.expect("ks") > 0.9, "{early:?}\n{late:?}");
    assert_eq!(early.entities_per_text, 1.0);
    assert!((early.reference_entities_per_text.expect("reference") - 0.9).abs() < 1e-12, "{early:?}");
    assert!((late.per_text["LOC"] - 0.4).abs() < 0.1 && (late.reference_per_text["LOC"] - 0.1).abs() < 1e-12);
    let words = early.mean_span_words.expect("texts are logged");
    assert!((1.0..2.0).contains(&words), "one or two words an entity: {words}");
    assert!(
        (early.reference_mean_span_words.expect("reference") - 17.0 / 9.0).abs() < 1e-9,
        "720 people of two words, 90 places of one"
    );
    assert!((early.unknown_token_share - 1.0 / 49.0).abs() < 0.01, "{}", early.unknown_token_share);
    assert!(before.prediction_drift.is_none() && before.confidence.is_none(), "no label drift for a tagger");

    // Entity F1 from span feedback: about 0.95 before (less the span past the
    // text's end, a true entity nothing can match), about 0.6 after.
    let quality = |w: &WindowReport| w.quality.entities.clone().expect("span feedback");
    let (f1_before, f1_after) = (quality(before).micro_f1, quality(after).micro_f1);
    assert!(f1_before.value > 0.85 && f1_before.low < 0.95, "{f1_before:?}");
    assert!(f1_after.high < 0.8, "{f1_after:?}");
    let feedback = (0..WINDOW).filter(|i| i % 3 == 0).count();
    assert_eq!(before.quality.with_feedback, feedback);
    assert_eq!(quality(before).true_entities, feedback + 1, "the span past the end counts as a true entity");
    assert_eq!(quality(before).predicted_entities, feedback);
    assert!(quality(after).recall["LOC"].recall.value < 0.7, "{:?}", quality(after).recall);
    let checks: Vec<&str> = after.findings.iter().map(|f| f.check.as_str()).collect();
    for check in ["prediction_drift", "confidence_drift", "quality"] {
        assert!(checks.contains(&check), "{check} missing from {checks:?}");
    }
    assert!(!checks.contains(&"estimated_quality"), "no accuracy estimate for a tagger: {checks:?}");
    let types = after.findings.iter().find(|f| f.check == "prediction_drift").expect("type drift");
    assert!(types.message.contains("entity types moved") && types.message.contains("LOC 0.10 ->"), "{types:?}");

    let out = &config(&world).output_dir;
    let prom = std::fs::read_to_string(out.join("monitor.prom")).expect("prom");
    for gauge in ["entity_type_psi", "entities_per_text", "entity_score_ks", "realised_entity_f1"] {
        assert!(prom.contains(&format!("kiln_monitor_{gauge}{{")), "{gauge}: {prom}");
    }
    assert!(!prom.contains("kiln_monitor_estimated_accuracy{"), "{prom}");
    let md = std::fs::read_to_string(out.join("report.md")).expect("report");
    assert!(md.contains("## Entities by window") && md.contains("PER 0.81 (0.80)"), "{md}");
}
