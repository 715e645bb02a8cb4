//! Token classification end to end through the stage binaries, as a user
//! runs them with `task = "token_classification"`: ingest, clean, tokenize,
//! train a tiny tagger, eval, export, then predict with each aggregation
//! strategy, checked against transformers' `pipeline("token-classification")`
//! on the export (`.venv-ref`, which `make test` installs).

use std::path::{Path, PathBuf};

use arrow_array::Array;
use arrow_array::cast::AsArray;
use arrow_array::types::{Float32Type, UInt32Type};
use kiln_core::prediction_log::{InputStats, LogRecord, LoggedEntity};
use kiln_data::parquet::read_parquet;

use crate::common::{ok_configured as ok, run_configured as run};

const PEOPLE: [(&str, &str); 4] =
    [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra")];
const PLACES: [&str; 5] = ["Paris", "London", "Berlin", "Tokyo", "Lagos"];
const VERBS: [&str; 4] = ["visited", "left", "loved", "described"];

/// `n` tagged sentences whose tags follow from the words (a person, a verb,
/// a place), as CoNLL; `offset` shifts which combinations appear.
fn conll(n: usize, offset: usize) -> String {
    let mut out = String::new();
    for i in offset..offset + n {
        let (first, last) = PEOPLE[i % PEOPLE.len()];
        let place = PLACES[(i / 4) % PLACES.len()];
        let verb = VERBS[(i / 3) % VERBS.len()];
        for (word, tag) in [(first, "B-person"), (last, "I-person"), (verb, "O"), (place, "B-location"), ("today", "O")]
        {
            out.push_str(&format!("{word}\t{tag}\n"));
        }
        out.push('\n');
    }
    out
}

/// A config for every stage, all of it under `root`.
fn write_config(root: &Path) -> PathBuf {
    let at = |name: &str| root.join(name).display().to_string();
    let config = format!(
        r#"task = "token_classification"

[ingest]
train_file = "{train}"
test_file = "{test}"
validation_fraction = 0.2
output_dir = "{raw}"

[clean]
input_dir = "{raw}"
output_dir = "{interim}"
dedup = false
drop_leaks = false

[profile]
input_dir = "{interim}"
output_dir = "{root}/profile"

[tokenize]
input_dir = "{interim}"
output_dir = "{processed}"
model_dir = "{pretrained}"
max_length = 16
window_overlap = 4

[train]
input_dir = "{processed}"
model_dir = "{pretrained}"
output_dir = "{model}"
run_dir = "{run}"
device = "cpu"
threads = 1
epochs = 8
batch_size = 16
learning_rate = 5e-3
loss = "focal"

[eval]
model_dir = "{model}"
input_dir = "{processed}"
output_dir = "{eval}"
train_metrics = "{run}/metrics.jsonl"
device = "cpu"
threads = 1

[export]
model_dir = "{model}"
output_dir = "{export}"
eval_metrics = "{eval}/metrics.json"
reference_predictions = "{eval}/reference_predictions.json"
data_profile = "{root}/no-profile.json"

[registry]
dir = "{root}/registry"

[gate]
device = "cpu"
threads = 1
bootstrap_resamples = 200

[retrain]
log_dir = "{root}/log"
output_dir = "{root}/retrain"
min_feedback = 20
holdout_share = 0.25

[predict]
model_dir = "{export}"
input_file = "{texts}"
device = "cpu"
threads = 1
"#,
        train = at("train.conll"),
        test = at("test.conll"),
        raw = at("raw"),
        interim = at("interim"),
        processed = at("processed"),
        pretrained = at("pretrained"),
        model = at("model"),
        run = at("run"),
        eval = at("eval"),
        export = at("export"),
        texts = at("texts.csv"),
        root = root.display(),
    );
    let path = root.join("kiln.toml");
    std::fs::write(&path, config).expect("config");
    path
}

/// An entity as both sides write it: tag or type, word, character offsets, score.
#[derive(Debug, Clone, PartialEq)]
struct Found {
    kind: String,
    word: String,
    start: u64,
    end: u64,
    score: f64,
}

/// The entities of each row of `predict`'s output.
fn predicted_entities(path: &Path, strategy: &str) -> Vec<Vec<Found>> {
    let batch = read_parquet(path, "predict").expect("predictions");
    let lists = batch.column_by_name("entities").expect("an entities column").as_list::<i32>();
    let kind_field = if strategy == "none" { "entity" } else { "entity_group" };
    (0..lists.len())
        .map(|row| {
            let entities = lists.value(row);
            let entities = entities.as_struct();
            let column =
                |name: &str| entities.column_by_name(name).unwrap_or_else(|| panic!("no {name} field")).clone();
            let (kinds, words) = (column(kind_field), column("word"));
            let (kinds, words) = (kinds.as_string::<i32>(), words.as_string::<i32>());
            let (starts, ends, scores) = (column("start"), column("end"), column("score"));
            let (starts, ends) = (starts.as_primitive::<UInt32Type>(), ends.as_primitive::<UInt32Type>());
            let scores = scores.as_primitive::<Float32Type>();
            (0..entities.len())
                .map(|i| Found {
                    kind: kinds.value(i).to_owned(),
                    word: words.value(i).to_owned(),
                    start: u64::from(starts.value(i)),
                    end: u64::from(ends.value(i)),
                    score: f64::from(scores.value(i)),
                })
                .collect()
        })
        .collect()
}

fn pipeline_entities(json: &serde_json::Value, strategy: &str) -> Vec<Vec<Found>> {
    let kind_field = if strategy == "none" { "entity" } else { "entity_group" };
    let rows = json["entities"][strategy].as_array().expect("rows");
    rows.iter()
        .map(|row| {
            let row = row.as_array().expect("entities");
            row.iter()
                .map(|e| Found {
                    kind: e[kind_field].as_str().expect("kind").to_owned(),
                    word: e["word"].as_str().expect("word").to_owned(),
                    start: e["start"].as_u64().expect("start"),
                    end: e["end"].as_u64().expect("end"),
                    score: e["score"].as_f64().expect("score"),
                })
                .collect()
        })
        .collect()
}

/// The whole token pipeline on a tiny random BERT: it learns the tags, eval
/// reports entity scores in both seqeval modes, the export is a
/// `BertForTokenClassification` that transformers' pipeline reads, and
/// kiln's `predict` finds the entities the pipeline finds, strategy for
/// strategy, with offsets into the raw text even where cleaning changed it.
#[test]
fn a_token_pipeline_runs_end_to_end_and_agrees_with_transformers() {
    let mut check = kiln_testing::reference_script("check_token_export.py");
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    let runs = root.join("runs");
    kiln_testing::classifier_folder(&root.join("pretrained"), &["a", "b"], 7)
        .expect("a small BERT folder (MiniLM's tokenizer comes from `make setup`)");
    std::fs::write(root.join("train.conll"), conll(240, 0)).expect("train");
    std::fs::write(root.join("test.conll"), conll(40, 1000)).expect("test");
    let config = write_config(root);

    for stage in ["ingest", "clean", "profile", "tokenize", "train", "eval", "export"] {
        ok(stage, &config, &[], &runs);
    }
    let profile: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("profile/profile.json")).expect("profile"))
            .expect("json");
    assert_eq!(profile["kind"], "tagged");
    assert_eq!(profile["splits"]["test"]["entities"], serde_json::json!({"location": 40, "person": 40}));
    assert_eq!(profile["splits"]["test"]["rows"], 40);

    let metrics: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("eval/metrics.json")).expect("metrics")).expect("json");
    let micro = metrics["entities"]["conlleval"]["micro"]["f1"].as_f64().expect("entity micro F1");
    let strict = metrics["entities"]["strict"]["micro"]["f1"].as_f64().expect("strict micro F1");
    assert!(micro > 0.9 && strict > 0.9, "a learnable tagging: {metrics}");
    assert_eq!(metrics["examples"], 40, "the test split's sentences");
    assert_eq!(metrics["per_class"].as_object().map(|m| m.len()), Some(2), "person and location: {metrics}");
    // The reference monitoring compares live entities with: the validation split's.
    let reference: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("eval/reference_predictions.json")).expect("reference"),
    )
    .expect("json");
    let entities = &reference["entities"];
    // Read as serve reads texts (`simple` grouping, each window of 16 sub-words at a time), below eval's word-level F1.
    assert!(entities["micro_f1"].as_f64().is_some_and(|f1| f1 > 0.5), "{entities}");
    assert_eq!(entities["score_percentiles"].as_array().map(Vec::len), Some(101), "{entities}");
    assert!(entities["predicted"]["person"].as_u64().is_some_and(|n| n > 0), "{entities}");
    let report = std::fs::read_to_string(root.join("eval/report.md")).expect("report");
    for section in ["seqeval default", "strict IOB2", "## Entity types", "most confident wrong entities", "Confusion"] {
        assert!(report.contains(section), "no {section} in the report:\n{report}");
    }
    let confusion = std::fs::read_to_string(root.join("eval/confusion.csv")).expect("confusion");
    assert!(confusion.contains("person,person,"), "{confusion}");
    let predictions = read_parquet(&root.join("eval/predictions.parquet"), "eval").expect("predictions");
    assert_eq!(predictions.num_rows(), 40);
    let words = predictions.column_by_name("tokens").expect("tokens").as_list::<i32>().value(0);
    assert_eq!(words.as_string::<i32>().len(), 5, "the first sentence's five words");

    // The eval run's record carries the entity F1 in both modes.
    let records: Vec<serde_json::Value> = std::fs::read_dir(&runs)
        .expect("run records")
        .filter_map(|entry| std::fs::read_to_string(entry.expect("entry").path().join("run.json")).ok())
        .map(|text| serde_json::from_str(&text).expect("a run record"))
        .collect();
    let eval_run = records.iter().find(|r| r["stage"] == "eval").expect("an eval run record");
    let logged = eval_run["metrics"]["test_entity_f1"].as_f64().expect("test_entity_f1");
    assert!((logged - micro).abs() < 1e-12, "the eval record's test_entity_f1 is eval's: {eval_run}");
    assert!(eval_run["metrics"]["test_entity_f1_strict"].as_f64().is_some(), "{eval_run}");

    the_gate_judges_taggers_on_entities(root, &config, &runs);
    retrain_learns_from_span_feedback(root, &config, &runs);

    let card = std::fs::read_to_string(root.join("export/README.md")).expect("card");
    assert!(card.contains("pipeline_tag: token-classification"), "{card}");

    let texts = [
        "Ada Lovelace visited Tokyo today",
        "Edsger Dijkstra described Lagos today",
        "Grace Hopper loved Berlin today and Alan Turing left London",
    ];
    let csv: String =
        std::iter::once("text".to_owned()).chain(texts.iter().map(|t| (*t).to_owned())).collect::<Vec<_>>().join("\n");
    std::fs::write(root.join("texts.csv"), csv + "\n").expect("texts");
    let output = check.arg(root.join("export")).args(texts).output().expect("python runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let theirs: serde_json::Value = serde_json::from_slice(&output.stdout).expect("json");
    assert_eq!(theirs["architecture"], "BertForTokenClassification");

    let mut max_diff = 0.0f64;
    let mut compared = 0;
    for strategy in ["none", "simple", "first", "average", "max"] {
        let out = root.join(format!("predictions-{strategy}.parquet"));
        let out_arg = out.display().to_string();
        ok("predict", &config, &["--aggregation", strategy, "--output-file", &out_arg], &runs);
        let ours = predicted_entities(&out, strategy);
        let reference = pipeline_entities(&theirs, strategy);
        assert_eq!(ours.len(), texts.len());
        for (row, (ours, reference)) in ours.iter().zip(&reference).enumerate() {
            let shape = |found: &[Found]| -> Vec<(String, String, u64, u64)> {
                found.iter().map(|f| (f.kind.clone(), f.word.clone(), f.start, f.end)).collect()
            };
            assert_eq!(shape(ours), shape(reference), "{strategy}, text {row}: {}", texts[row]);
            for (a, b) in ours.iter().zip(reference) {
                max_diff = max_diff.max((a.score - b.score).abs());
                compared += 1;
            }
        }
    }
    assert!(compared > 20, "the tagger finds entities in every text ({compared} compared)");
    assert!(max_diff <= 1e-4, "scores differ by {max_diff}");
    kiln_testing::figure(&format!(
        "token export round trip: kiln predict vs transformers pipeline, 5 strategies, {compared} entities, max abs \
         score difference {max_diff:.2e}"
    ));

    // Cleaning replaces a link with a placeholder; offsets still point into the raw text.
    let raw = "Ada Lovelace visited https://t.co/xyz Tokyo today";
    std::fs::write(root.join("texts.csv"), format!("text\n{raw}\n")).expect("texts");
    let out = root.join("predictions-url.parquet");
    ok("predict", &config, &["--output-file", &out.display().to_string()], &runs);
    let found = &predicted_entities(&out, "simple")[0];
    let chars: Vec<char> = raw.chars().collect();
    assert!(found.iter().any(|f| f.kind == "person"), "{found:?}");
    for f in found {
        let slice: String = chars[f.start as usize..f.end as usize].iter().collect();
        assert_eq!(slice, f.word, "an entity's word is the raw text at its offsets: {f:?}");
    }
}

/// The gate compares taggers on the clean test split's tagged sentences:
/// the trained tagger beats an untrained one in production and is promoted;
/// another untrained one after it is refused on entity F1 and per-type recall.
fn the_gate_judges_taggers_on_entities(root: &Path, config: &Path, runs: &Path) {
    use kiln_track::registry::{Registry, Stage};
    let tags = ["B-location", "I-location", "B-person", "I-person", "O"];
    let registry = Registry::at(&root.join("registry"));
    for (seed, folder) in [(8, "untrained-1"), (9, "untrained-2")] {
        kiln_testing::tagger_folder(&root.join(folder), &tags, seed).expect("an untrained tagger");
    }
    registry.add(&root.join("untrained-1"), true).expect("v1, production");
    registry.add(&root.join("export"), true).expect("v2, the trained candidate");
    let holdout = root.join("interim/test.parquet").display().to_string();
    let registry_dir = root.join("registry").display().to_string();
    let args = ["--registry-dir", &registry_dir, "--holdout", &holdout, "--bootstrap-resamples", "200"];
    let gate = |output: &str| {
        let output = root.join(output).display().to_string();
        let mut all = args.to_vec();
        all.extend(["--output-dir", output.as_str()]);
        ok("gate", config, &all, runs);
    };
    gate("gate-2");
    let index = registry.load().expect("index");
    assert_eq!(index.production().map(|v| v.version), Some(2), "the trained tagger is promoted");
    let decision = index.get(2).and_then(|v| v.gate.clone()).expect("v2's decision");
    assert!(decision.promote, "{:?}", decision.reasons);
    assert_eq!(decision.rows, 40, "the test split's sentences");
    let micro = decision.entity_micro_f1.expect("a tagger's decision carries entity micro-F1");
    assert!(micro.challenger > 0.9 && micro.champion.is_some_and(|c| c < micro.challenger - 0.3), "{micro:?}");
    let types: Vec<(&str, usize)> = decision.classes.iter().map(|c| (c.label.as_str(), c.support)).collect();
    assert_eq!(types, [("location", 40), ("person", 40)]);
    assert!(decision.difference_low.is_some_and(|low| low > 0.0), "{decision:?}");

    registry.add(&root.join("untrained-2"), true).expect("v3, an untrained candidate");
    gate("gate-3");
    let index = registry.load().expect("index");
    assert_eq!(index.production().map(|v| v.version), Some(2), "the worse tagger is not promoted");
    assert_eq!(index.get(3).map(|v| v.stage), Some(Stage::Candidate));
    let refused = index.get(3).and_then(|v| v.gate.clone()).expect("v3's decision");
    assert!(!refused.promote);
    assert!(refused.reasons.iter().any(|r| r.starts_with("macro_f1")), "{:?}", refused.reasons);
    assert!(refused.reasons.iter().any(|r| r.contains("entities) falls from")), "{:?}", refused.reasons);
    let report = std::fs::read_to_string(root.join("gate-3/report.md")).expect("report");
    assert!(report.contains("Entity micro-F1") && report.contains("REFUSE"), "{report}");
}

/// A tagger's answer as serve logs it, and the entities feedback gave it.
fn logged_entities(i: usize, text: &str, truth: Vec<LoggedEntity>) -> Vec<String> {
    let time = format!("2026-11-28T10:{:02}:{:02}.000Z", (i / 60) % 60, i % 60);
    let answer = LogRecord::Entities {
        time: time.clone(),
        request_id: format!("req-{i}"),
        client: None,
        client_request_id: None,
        index: 0,
        text: Some(text.into()),
        text_sha256: None,
        entities: Vec::new(),
        input: InputStats { tokens: 8, truncated: false, unknown_tokens: 0 },
        model_version: "v2".into(),
        quantize: kiln_core::Quantize::None,
        latency_ms: 3.0,
    };
    let feedback = LogRecord::EntityFeedback {
        time,
        request_id: format!("req-{i}"),
        client: None,
        index: 0,
        entities: truth,
        model_version: "v2".into(),
    };
    [answer, feedback].iter().map(|r| serde_json::to_string(r).expect("json")).collect()
}

/// `retrain` for a tagger: span feedback becomes tagged sentences by its
/// offsets (spans that do not fit counted, their texts left out), a model is
/// trained on the new data version, registered, and judged by the gate on
/// the test split plus the held-back feedback.
fn retrain_learns_from_span_feedback(root: &Path, config: &Path, runs: &Path) {
    let entity =
        |kind: &str, start: usize, end: usize| LoggedEntity { entity_group: kind.into(), start, end, score: None };
    let mut lines = Vec::new();
    for i in 0..60 {
        let (first, last) = PEOPLE[(i + 1) % PEOPLE.len()];
        let place = PLACES[(i / 4) % PLACES.len()];
        let verb = VERBS[i % VERBS.len()];
        // "yesterday": no validation or test sentence says it, so none of these leaks.
        let text = format!("{first} {last} {verb} {place} yesterday");
        let person = first.len() + 1 + last.len();
        let at = person + 1 + verb.len() + 1;
        lines.extend(logged_entities(
            i,
            &text,
            vec![entity("person", 0, person), entity("location", at, at + place.len())],
        ));
    }
    lines.extend(logged_entities(100, "Ada Lovelace left", vec![entity("person", 0, 40)]));
    lines.extend(logged_entities(101, "Ada Lovelace left", vec![entity("person", 0, 6)]));
    lines.extend(logged_entities(102, "Ada Lovelace left", vec![entity("person", 0, 12), entity("location", 4, 12)]));
    let test = kiln_data::schema::TaggedTable::read(&root.join("raw/test.parquet"), "ingest").expect("test split");
    lines.extend(logged_entities(103, &test.tokens[0].join(" "), vec![entity("person", 0, 12)]));
    std::fs::create_dir_all(root.join("log")).expect("log dir");
    std::fs::write(root.join("log/predictions-1-0001.jsonl"), lines.join("\n") + "\n").expect("log");

    ok("retrain", config, &[], runs);
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("retrain/raw/retrain_data.json")).expect("the data version's manifest"),
    )
    .expect("json");
    let report = &data["report"];
    assert_eq!(report["feedback"], 64, "{report}");
    assert_eq!(report["leaking"], 1, "{report}");
    let spans = &report["spans"];
    assert_eq!((&spans["out_of_range"], &spans["partial"], &spans["conflicting"]), (&1.into(), &1.into(), &1.into()));
    let (added, held) = (report["added_to_train"].as_u64().unwrap_or(0), report["held_out"].as_u64().unwrap_or(0));
    assert_eq!(added + held, 60, "{report}");
    assert!((5..=25).contains(&held), "about a quarter held back: {held}");
    let train =
        kiln_data::schema::TaggedTable::read(&root.join("retrain/raw/train.parquet"), "retrain").expect("train");
    let row = train.ids.iter().position(|id| id.starts_with("feedback-req-")).expect("feedback rows in train");
    assert_eq!(train.tags[row], ["B-person", "I-person", "O", "B-location", "O"], "{:?}", train.tokens[row]);

    use kiln_track::registry::Registry;
    let index = Registry::at(&root.join("registry")).load().expect("index");
    let retrained = index.versions.last().expect("the retrained version");
    assert_eq!(retrained.version, 4, "after the gate's three");
    let decision = retrained.gate.as_ref().expect("judged by the gate");
    assert_eq!(decision.champion, Some(2), "against the trained tagger in production");
    assert_eq!(decision.holdout.len(), 2, "the test split and the held-back feedback");
    assert_eq!(decision.rows + decision.rows_without_shared_label, 40 + held as usize);
    assert!(decision.entity_micro_f1.is_some_and(|f1| f1.challenger > 0.8), "{decision:?}");

    // Warm from the production tagger: a quarter of the old sentences, every entity type among them.
    ok("retrain", config, &["--init", "production"], runs);
    let data: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(root.join("retrain/raw/retrain_data.json")).expect("the data version's manifest"),
    )
    .expect("json");
    let base = kiln_data::schema::TaggedTable::read(&root.join("raw/train.parquet"), "ingest").expect("base train");
    let replayed = data["report"]["replayed"].as_u64().expect("replayed rows counted") as usize;
    assert!(replayed > 0 && replayed * 3 < base.len(), "{replayed} of {}", base.len());
    let train =
        kiln_data::schema::TaggedTable::read(&root.join("retrain/raw/train.parquet"), "retrain").expect("train");
    let old: Vec<&Vec<String>> =
        train.ids.iter().zip(&train.tags).filter(|(id, _)| !id.starts_with("feedback-")).map(|(_, t)| t).collect();
    assert_eq!(old.len(), replayed);
    for kind in ["B-person", "B-location"] {
        assert!(old.iter().any(|tags| tags.iter().any(|t| t == kind)), "{kind} kept among the replayed sentences");
    }
    let index = Registry::at(&root.join("registry")).load().expect("index");
    let warm = index.versions.last().expect("the warm version");
    assert_eq!(warm.version, 5);
    let decision = warm.gate.as_ref().expect("judged by the gate");
    assert!(decision.entity_micro_f1.is_some_and(|f1| f1.challenger > 0.8), "{decision:?}");
}

/// A stage that does not handle token classification refuses it before
/// doing anything, and names the stages that do.
#[test]
fn label_refuses_token_classification_up_front() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = write_config(dir.path());
    let output = run("label", &config, &[], &dir.path().join("runs"));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("`label` does not handle task = \"token_classification\" yet"), "{stderr}");
    assert!(
        stderr.contains("eval, export, gate, monitor, predict, retrain, serve"),
        "names the stages that do: {stderr}"
    );
}
