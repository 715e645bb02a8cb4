//! Weak supervision through the real binaries, on comments the test writes:
//! ingest (a glob of two files, validation carved from test), clean, label
//! (keywords, regex, length and a `command` function, then a `model` one),
//! tokenize and train on the weak labels, eval on gold; `retrain` with
//! feedback and served texts the functions label; and the bad inputs
//! `label` must refuse, naming the function and key, writing nothing.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use kiln_core::Split;
use kiln_data::parquet::read_parquet;
use kiln_data::schema;

use crate::common::{logged, ok_configured as ok, run_configured as run};

fn json(path: impl AsRef<Path>) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.as_ref()).expect("json file")).expect("valid json")
}

/// Comments in the spirit of the YouTube spam data: spam asks to subscribe or
/// check out a link, ham talks about the song. Every seventh says nothing any
/// function knows (uncovered); every eleventh spam says "song" (a conflict).
fn comments(rows: usize, offset: usize) -> String {
    let spam = [
        "check out my channel http://example.com/v{}",
        "please subscribe to my channel {}",
        "Check it out: my new video {} http://example.com",
        "subscribe plz, giving away gift cards {}",
    ];
    let ham = ["I love this song {}", "this song is great {}", "best song of {}", "wow {}"];
    let mut csv = String::from("CONTENT,label\n");
    for row in offset..offset + rows {
        let (text, label) = if row % 7 == 3 {
            (format!("the weather in town number {row} is mild today"), row % 2)
        } else if row % 2 == 0 {
            let mut text = spam[row / 2 % spam.len()].replace("{}", &row.to_string());
            if row % 11 == 0 {
                text.push_str(" nice song");
            }
            (text, 1)
        } else {
            (ham[row / 2 % ham.len()].replace("{}", &row.to_string()), 0)
        };
        csv.push_str(&format!("\"{text}\",{label}\n"));
    }
    csv
}

struct Weak {
    dir: tempfile::TempDir,
}

impl Weak {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path();
        std::fs::write(path.join("video1.csv"), comments(200, 0)).expect("csv");
        std::fs::write(path.join("video2.csv"), comments(200, 1000)).expect("csv");
        std::fs::write(path.join("video3.csv"), comments(160, 5000)).expect("csv");
        // Votes ham on comments that love something, abstains elsewhere.
        std::fs::write(
            path.join("loves.sh"),
            "while IFS= read -r line; do case \"$line\" in *love*) echo '\"ham\"';; *) echo null;; esac; done\n",
        )
        .expect("script");
        kiln_testing::classifier_folder(&path.join("tiny"), &["ham", "spam"], 7).expect("tiny model");
        Self { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.path().join(name).display().to_string()
    }

    fn config(&self) -> PathBuf {
        let config = format!(
            r#"
[ingest]
train_file = "{dir}/video[12].csv"
test_file = "{dir}/video3.csv"
validation_from = "test"
validation_fraction = 0.5
text_column = "CONTENT"
score_column = "label"
score_labels = ["spam >= 1", "ham < 1"]
output_dir = "{dir}/raw"

[clean]
input_dir = "{dir}/raw"
output_dir = "{dir}/interim"
strip_urls = false

[label]
input_dir = "{dir}/interim"
output_dir = "{dir}/labelled"
labels = ["spam", "ham"]
gold_split = "validation"
epochs = 200

[[label.functions]]
name = "subscribe"
label = "spam"
kind = "keywords"
words = ["subscribe", "my channel"]

[[label.functions]]
name = "link"
label = "spam"
kind = "regex"
pattern = "https?://"

[[label.functions]]
name = "check_out"
label = "spam"
kind = "keywords"
words = ["check", "out"]
all = true

[[label.functions]]
name = "song"
label = "ham"
kind = "keywords"
words = ["song"]

[[label.functions]]
name = "short"
label = "ham"
kind = "length"
max = 2
unit = "words"

[[label.functions]]
name = "loves"
kind = "command"
command = ["sh", "{dir}/loves.sh"]
timeout_secs = 60

[tokenize]
input_dir = "{dir}/labelled"
output_dir = "{dir}/processed"
model_dir = "{dir}/tiny"
max_length = 32

[train]
input_dir = "{dir}/processed"
model_dir = "{dir}/tiny"
output_dir = "{dir}/model"
run_dir = "{dir}/train"
device = "cpu"
threads = 1
max_steps = 6
batch_size = 16
log_every_steps = 1

[eval]
model_dir = "{dir}/model"
input_dir = "{dir}/processed"
output_dir = "{dir}/eval"
train_metrics = "{dir}/train/metrics.jsonl"
device = "cpu"

[registry]
dir = "{dir}/registry"

[gate]
device = "cpu"
threads = 1
bootstrap_resamples = 200
min_class_support = 5

[retrain]
log_dir = "{dir}/log"
output_dir = "{dir}/retrain"
min_feedback = 5
holdout_share = 0.0
"#,
            dir = self.dir.path().display()
        );
        let path = self.dir.path().join("weak.toml");
        std::fs::write(&path, config).expect("config");
        path
    }
}

#[test]
fn weak_labels_run_from_rules_to_a_trained_model() {
    let weak = Weak::new();
    let config = weak.config();
    let runs = weak.dir.path().join("runs");
    for stage in ["ingest", "clean", "label"] {
        ok(stage, &config, &[], &runs);
    }
    let labelled = PathBuf::from(weak.path("labelled"));
    let report = json(labelled.join("label_report.json"));
    let figures = &report["report"];
    let (rows, covered) = (figures["rows"].as_u64().expect("rows"), figures["covered"].as_u64().expect("covered"));
    // Every seventh comment is about the weather: no function covers it, and it is dropped.
    let uncovered = (0..200).filter(|r| r % 7 == 3).count() + (1000..1200).filter(|r| r % 7 == 3).count();
    assert_eq!((rows, rows - covered), (400, uncovered as u64), "{figures}");
    assert_eq!(figures["dropped_uncovered"].as_u64(), Some(rows - covered));
    assert_eq!(figures["rows_out"].as_u64(), Some(covered));
    assert_eq!(figures["labels"], serde_json::json!(["ham", "spam"]), "sorted, as labels.json");
    let agreement = figures["accuracy_on_split_labels"].as_f64().expect("the split has labels of its own");
    assert!(agreement > 0.95, "the rules fit these comments: {agreement}");
    let functions = figures["functions"].as_array().expect("functions");
    let named = |name: &str| functions.iter().find(|f| f["name"] == name).expect("reported");
    assert_eq!(named("loves")["kind"], "command");
    assert!(named("loves")["coverage"].as_f64().expect("coverage") > 0.05, "the command voted");
    assert_eq!(named("song")["polarity"], serde_json::json!(["ham"]));
    assert!(named("song")["conflicts"].as_f64().expect("conflicts") > 0.0, "spam that says song");
    assert!(named("link")["empirical_accuracy"].as_f64().expect("accuracy on validation") > 0.9);
    assert!(named("link")["learned_accuracy"].as_f64().is_some(), "snorkel's learned accuracy");
    assert_eq!(figures["matrix_reused"], false);
    let page = std::fs::read_to_string(labelled.join("report.md")).expect("report.md");
    assert!(page.contains("![Labelling functions](label_functions.svg)") && page.contains("| loves | command |"));
    assert!(labelled.join("label_functions.svg").is_file());

    // The labelled split: the text table plus each row's distribution, in labels.json's order.
    let train = read_parquet(&Split::Train.path_in(&labelled), "label").expect("labelled train");
    let labels = schema::strings(&train, schema::LABEL, Path::new("train")).expect("labels");
    let probs = schema::label_probs(&train, Path::new("train")).expect("valid").expect("label_probs");
    assert_eq!((labels.len(), probs.len()), (covered as usize, covered as usize));
    for (label, p) in labels.iter().zip(&probs) {
        assert!((p.iter().sum::<f32>() - 1.0).abs() < 1e-4 && p.len() == 2);
        assert_eq!(label, ["ham", "spam"][usize::from(p[1] > p[0])], "the label is the most probable: {p:?}");
    }
    // The report's mean probability of the split's own labels is the written distributions'.
    let interim = schema::read_split(Path::new(&weak.path("interim")), Split::Train).expect("interim");
    let own: HashMap<&String, &String> = interim.ids.iter().zip(&interim.labels).collect();
    let ids = schema::strings(&train, schema::ID, Path::new("train")).expect("ids");
    let mean = ids.iter().zip(&probs).map(|(id, p)| f64::from(p[usize::from(own[id].as_str() == "spam")])).sum::<f64>()
        / ids.len() as f64;
    let probability = figures["probability_on_split_labels"].as_f64().expect("probability");
    assert!((probability - mean).abs() < 1e-5, "{probability} vs {mean}");
    let gold_probability = figures["gold_probability"].as_f64().expect("on the gold split");
    assert!(gold_probability > 0.5 && gold_probability <= 1.0, "{gold_probability}");
    let validation = read_parquet(&Split::Validation.path_in(&labelled), "label").expect("validation");
    assert!(validation.column_by_name(schema::LABEL_PROBS).is_none(), "gold splits pass through");
    let matrix = read_parquet(&labelled.join("label_matrix.parquet"), "label").expect("matrix");
    assert!(matrix.num_rows() as u64 >= covered, "a vote per row and voting function");

    // Another label model reuses the matrix; changed functions do not.
    let majority = weak.path("majority");
    ok("label", &config, &["--model", "majority", "--output-dir", &majority], &runs);
    let other = json(Path::new(&majority).join("label_report.json"));
    assert_eq!(other["report"]["matrix_reused"], false, "another output folder has no matrix to reuse");
    ok("label", &config, &["--model", "majority"], &runs);
    let reused = json(labelled.join("label_report.json"));
    assert_eq!(reused["report"]["matrix_reused"], true);
    assert_eq!(reused["report"]["model"], "majority");
    assert_eq!(reused["report"]["covered"], figures["covered"]);
    ok("label", &config, &[], &runs);

    // tokenize carries the distributions; train learns from them; eval scores on gold.
    ok("tokenize", &config, &[], &runs);
    let processed = PathBuf::from(weak.path("processed"));
    let examples = kiln_data::processed::read_examples(&Split::Train.path_in(&processed)).expect("examples");
    assert!(examples.iter().all(|e| e.label_probs.as_ref().is_some_and(|p| p.len() == 2)));
    let test = kiln_data::processed::read_examples(&Split::Test.path_in(&processed)).expect("examples");
    assert!(test.iter().all(|e| e.label_probs.is_none()));
    ok("train", &config, &[], &runs);
    let log = std::fs::read_to_string(weak.dir.path().join("train/metrics.jsonl")).expect("train log");
    let losses: Vec<f64> =
        log.lines().filter_map(|line| serde_json::from_str::<serde_json::Value>(line).ok()?["loss"].as_f64()).collect();
    assert!(!losses.is_empty() && losses.iter().all(|l| l.is_finite() && *l > 0.0), "{log}");
    let settings = std::fs::read_to_string(weak.dir.path().join("model/kiln.toml")).expect("kiln.toml");
    assert!(settings.contains("strip_urls = false"), "the model keeps clean's rules, through label:\n{settings}");
    ok("eval", &config, &[], &runs);
    let metrics = json(weak.dir.path().join("eval/metrics.json"));
    assert!(metrics["accuracy"].as_f64().is_some(), "{metrics}");

    // The label model's figures reach the run record (and so MLflow).
    let records = std::fs::read_dir(&runs).expect("runs").filter_map(Result::ok).map(|e| e.path());
    let label_runs: Vec<PathBuf> = records.filter(|p| p.display().to_string().contains("-label-")).collect();
    let history: String =
        label_runs.iter().filter_map(|dir| std::fs::read_to_string(dir.join("metric_history.jsonl")).ok()).collect();
    assert!(history.contains("accuracy_on_split_labels") && history.contains("lf_loves_coverage"), "{history}");

    // A `model` function: the tiny classifier's prediction where it is sure enough.
    let functions = weak.dir.path().join("model-functions.toml");
    std::fs::write(
        &functions,
        format!(
            "[[functions]]\nname = 'tiny'\nkind = 'model'\nmodel_dir = '{}'\nthreshold = 0.0\n\n\
             [[functions]]\nname = 'link'\nlabel = 'spam'\nkind = 'regex'\npattern = 'http'\n",
            weak.path("tiny")
        ),
    )
    .expect("functions");
    let by_model = weak.path("by-model");
    ok("label", &config, &["--functions", &functions.display().to_string(), "--output-dir", &by_model], &runs);
    let report = json(Path::new(&by_model).join("label_report.json"));
    assert_eq!(report["report"]["functions"][0]["kind"], "model");
    assert_eq!(report["report"]["functions"][0]["coverage"], 1.0, "threshold 0: the model votes on every row");
    let train = read_parquet(&Split::Train.path_in(Path::new(&by_model)), "label").expect("train");
    let probs = train.column_by_name(schema::LABEL_PROBS).expect("probs");
    assert_eq!(probs.as_list::<i32>().values().as_primitive::<Float32Type>().len(), train.num_rows() * 2);
}

#[test]
fn bad_functions_exit_1_naming_the_function_and_write_nothing() {
    let weak = Weak::new();
    let config = weak.config();
    let runs = weak.dir.path().join("runs");
    for stage in ["ingest", "clean"] {
        ok(stage, &config, &[], &runs);
    }
    let cases = [
        ("name = 'broken'\nlabel = 'spam'\nkind = 'regex'\npattern = '(unclosed'", "`broken`: invalid pattern"),
        (
            "name = 'eggs'\nlabel = 'eggs'\nkind = 'keywords'\nwords = ['x']",
            "votes `eggs`, which is not one of the labels",
        ),
        (
            "name = 'chatty'\nkind = 'command'\ncommand = ['sh', '-c', 'cat >/dev/null; echo maybe']",
            "`chatty` (command `sh -c cat >/dev/null; echo maybe`): line 1 of its output is `maybe`, not a vote",
        ),
        (
            "name = 'fails'\nkind = 'command'\ncommand = ['sh', '-c', 'exit 4']",
            "`fails` (command `sh -c exit 4`): failed",
        ),
        (
            "name = 'slow'\nkind = 'command'\ncommand = ['sleep', '30']\ntimeout_secs = 1",
            "`slow` (command `sleep 30`): took longer than 1 s",
        ),
        (
            "name = 'never'\nlabel = 'spam'\nkind = 'keywords'\nwords = ['zebra']",
            "no labelling function votes on any row",
        ),
    ];
    for (index, (function, expected)) in cases.iter().enumerate() {
        let file = weak.dir.path().join(format!("bad{index}.toml"));
        std::fs::write(&file, format!("[[functions]]\n{function}\n")).expect("functions");
        let out = weak.path(&format!("bad-out{index}"));
        let output = run("label", &config, &["--functions", &file.display().to_string(), "--output-dir", &out], &runs);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{function}: {stderr}");
        assert!(stderr.contains(expected), "{function}: expected `{expected}` in:\n{stderr}");
        let left: Vec<_> = std::fs::read_dir(&out)
            .map(|entries| entries.filter_map(Result::ok).map(|e| e.file_name()).collect())
            .unwrap_or_default();
        assert!(left.is_empty(), "{function}: a failed run leaves {left:?} in {out}");
    }
    // A function key the config does not know is refused before anything runs.
    let file = weak.dir.path().join("unknown.toml");
    std::fs::write(&file, "[[functions]]\nname = 'x'\nlabel = 'spam'\nkind = 'regex'\npattern = 'x'\ncase = true\n")
        .expect("functions");
    let output = run("label", &config, &["--functions", &file.display().to_string()], &runs);
    assert_eq!(output.status.code(), Some(2), "a flag clap refuses: {}", String::from_utf8_lossy(&output.stderr));
    assert!(String::from_utf8_lossy(&output.stderr).contains("unknown field `case`"));
}

#[test]
fn retrain_keeps_feedback_labels_and_labels_served_texts_with_the_functions() {
    let weak = Weak::new();
    let config = weak.config();
    let runs = weak.dir.path().join("runs");
    for stage in ["ingest", "clean"] {
        ok(stage, &config, &[], &runs);
    }
    // Feedback on 8 comments, one about the weather (no function covers it:
    // its given label must stay); 24 served comments nobody labelled, every
    // fourth about the weather (uncovered: dropped), one a training text
    // (a duplicate), one logged without its text.
    let mut lines = Vec::new();
    for i in 0..8 {
        let (text, label) = match i {
            0 => ("the weather on the hill is cold".to_owned(), "ham"),
            i if i % 2 == 0 => (format!("subscribe to my channel for prize {i}"), "spam"),
            i => (format!("this song makes my day {i}"), "ham"),
        };
        lines.extend(logged(i, Some(&text), Some(label), "v1"));
    }
    for i in 100..124 {
        let text = match i % 4 {
            0 => format!("the weather at station {i} is dry"),
            1 => format!("check out my video {i} http://example.com"),
            2 => format!("I love this song so much {i}"),
            _ => format!("please subscribe to my channel {i}"),
        };
        lines.extend(logged(i, Some(&text), None, "v1"));
    }
    let train = kiln_data::schema::read_split(Path::new(&weak.path("interim")), Split::Train).expect("train");
    lines.extend(logged(200, Some(&train.texts[0]), None, "v1"));
    lines.extend(logged(201, None, None, "v1"));
    let log = weak.dir.path().join("log");
    std::fs::create_dir_all(&log).expect("log dir");
    std::fs::write(log.join("predictions-1-0001.jsonl"), lines.join("\n") + "\n").expect("log");

    ok("retrain", &config, &["--weak-labels", "--weak-weight", "0.25"], &runs);
    let data = json(weak.dir.path().join("retrain/raw/retrain_data.json"));
    let served = &data["report"]["served"];
    assert_eq!(data["report"]["added_to_train"], 8, "{data}");
    assert_eq!((served["added"].as_u64(), served["duplicate"].as_u64()), (Some(24), Some(1)), "{served}");
    assert_eq!((served["without_text"].as_u64(), served["with_feedback"].as_u64()), (Some(1), Some(8)), "{served}");

    let labelled = weak.dir.path().join("retrain/labelled");
    let report = json(labelled.join("label_report.json"));
    assert_eq!(report["report"]["given"], 8, "the feedback rows came labelled");
    let table = kiln_data::schema::read_split(&labelled, Split::Train).expect("labelled train");
    let probs = table.label_probs.as_ref().expect("label_probs");
    let weights = table.weights.as_ref().expect("weights");
    let row = |id: &str| table.ids.iter().position(|i| i == id);
    let weather = row("feedback-req-0-0").expect("the uncovered feedback row is kept");
    assert_eq!(
        (table.labels[weather].as_str(), probs[weather].as_slice(), weights[weather]),
        ("ham", &[1.0, 0.0][..], 1.0)
    );
    let spam = row("feedback-req-2-0").expect("feedback row");
    assert_eq!((table.labels[spam].as_str(), probs[spam].as_slice()), ("spam", &[0.0, 1.0][..]));
    let served_rows: Vec<usize> = (0..table.len()).filter(|&r| table.ids[r].starts_with("served-")).collect();
    assert_eq!(served_rows.len(), 18, "the six served comments about the weather are uncovered: dropped");
    for &r in &served_rows {
        assert_eq!(weights[r], 0.25);
        let expected = if table.texts[r].contains("love") { "ham" } else { "spam" };
        assert_eq!(table.labels[r], expected, "{}", table.texts[r]);
    }
    assert!(
        weights.iter().enumerate().all(|(r, &w)| w == if table.ids[r].starts_with("served-") { 0.25 } else { 1.0 })
    );

    // tokenize carries the weights to train; the retrained model is registered and judged.
    let processed = weak.dir.path().join("retrain/processed");
    let examples = kiln_data::processed::read_examples(&Split::Train.path_in(&processed)).expect("examples");
    let weighted = examples.iter().filter(|e| e.weight == Some(0.25)).count();
    assert_eq!(weighted, 18);
    let index = json(weak.dir.path().join("registry/registry.json"));
    assert_eq!(index["versions"].as_array().map(Vec::len), Some(1), "{index}");
    assert!(index["versions"][0]["gate"]["promote"].is_boolean());

    // Without --weak-labels only the feedback joins; on a config without functions the flag is refused.
    ok("retrain", &config, &["--output-dir", &weak.path("retrain-feedback")], &runs);
    let data = json(weak.dir.path().join("retrain-feedback/raw/retrain_data.json"));
    assert!(data["report"].get("served").is_none(), "{data}");
    let report = json(weak.dir.path().join("retrain-feedback/labelled/label_report.json"));
    assert_eq!(report["report"]["given"], 8);
    let table = kiln_data::schema::read_split(&weak.dir.path().join("retrain-feedback/labelled"), Split::Train)
        .expect("labelled train");
    assert!(table.weights.is_none() && !table.ids.iter().any(|id| id.starts_with("served-")));
    let plain = weak.dir.path().join("plain.toml");
    let text = std::fs::read_to_string(&config).expect("config");
    let without_functions = text.split("[[label.functions]]").next().expect("head").to_owned()
        + &text[text.find("[tokenize]").expect("tokenize")..];
    std::fs::write(&plain, without_functions).expect("config");
    let output = run("retrain", &plain, &["--weak-labels"], &runs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("retrain.weak_labels") && stderr.contains("[[label.functions]]"), "{stderr}");
    // The new rows join train: a config whose `label` labels another split is refused.
    let elsewhere = weak.dir.path().join("elsewhere.toml");
    std::fs::write(&elsewhere, text.replacen("[label]\n", "[label]\nsplit = \"test\"\n", 1)).expect("config");
    let output = run("retrain", &elsewhere, &[], &runs);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("label.split is test"), "{stderr}");
}
