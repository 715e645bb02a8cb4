//! The stage binaries, run as a user runs them: on the default dataset, on
//! BANKING77 (from ../shared/data, skipped when absent), and on bad input.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow_array::cast::AsArray;
use arrow_array::types::Float32Type;
use arrow_array::{PrimitiveArray, RecordBatch};
use kiln_core::Split;
use kiln_data::parquet::read_parquet;
use kiln_data::schema;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

fn binary(stage: &str) -> PathBuf {
    PathBuf::from(match stage {
        "train" => env!("CARGO_BIN_EXE_train"),
        "eval" => env!("CARGO_BIN_EXE_eval"),
        "predict" => env!("CARGO_BIN_EXE_predict"),
        "export" => env!("CARGO_BIN_EXE_export"),
        "retrain" => env!("CARGO_BIN_EXE_retrain"),
        // kiln-data's and kiln-track's binaries, beside these (their own
        // integration tests make cargo build them).
        "ingest" | "clean" | "tokenize" | "runs" => {
            return Path::new(env!("CARGO_BIN_EXE_train")).with_file_name(stage);
        }
        other => panic!("no stage {other}"),
    })
}

/// Where train and eval runs record themselves unless a test says otherwise:
/// never the repo's own artifacts/runs.
fn scratch_runs_dir() -> &'static Path {
    static DIR: std::sync::OnceLock<tempfile::TempDir> = std::sync::OnceLock::new();
    DIR.get_or_init(|| tempfile::tempdir().expect("tempdir")).path()
}

/// Runs `stage` from the repo root, as `make` does.
fn run(stage: &str, args: &[&str]) -> Output {
    Command::new(binary(stage))
        .args(args)
        .arg("--quiet")
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", scratch_runs_dir())
        .output()
        .expect("the stage binary runs")
}

/// `stage` as on a CPU without fast bf16 (the test hook), whatever this one has.
fn run_without_bf16(stage: &str, args: &[String]) -> Output {
    Command::new(binary(stage))
        .args(args)
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", scratch_runs_dir())
        .env("KILN_TEST_NO_BF16", "1")
        .output()
        .expect("the stage binary runs")
}

fn ok(stage: &str, args: &[&str]) {
    let output = run(stage, args);
    assert!(output.status.success(), "{stage} {args:?} failed:\n{}", String::from_utf8_lossy(&output.stderr));
}

/// Paths of a temporary run's three data folders.
struct Run {
    _dir: tempfile::TempDir,
    raw: String,
    interim: String,
    processed: String,
}

impl Run {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = |name: &str| dir.path().join(name).display().to_string();
        Self { raw: path("raw"), interim: path("interim"), processed: path("processed"), _dir: dir }
    }

    fn all_stages(&self, config: &str, model_dir: &Path) {
        let model = model_dir.display().to_string();
        let stages: [(&str, Vec<&str>); 3] = [
            ("ingest", vec!["--config", config, "--output-dir", &self.raw]),
            ("clean", vec!["--config", config, "--input-dir", &self.raw, "--output-dir", &self.interim]),
            (
                "tokenize",
                vec![
                    "--config",
                    config,
                    "--input-dir",
                    &self.interim,
                    "--output-dir",
                    &self.processed,
                    "--model-dir",
                    &model,
                ],
            ),
        ];
        for (stage, args) in stages {
            ok(stage, &args);
            // The file the binary says it writes last (what `make` waits for) is there.
            let done = run(stage, &[&args[..], &["--print-done-files"]].concat());
            let table: toml::Table = String::from_utf8_lossy(&done.stdout).parse().expect("--print-done-files is TOML");
            let path = table[stage].as_str().expect("a path per stage");
            assert!(repo().join(path).is_file(), "{stage} says it writes {path} last, and it is not there");
        }
    }
}

fn frame(dir: &str, split: Split) -> RecordBatch {
    read_parquet(&split.path_in(Path::new(dir)), "a stage").expect("parquet")
}

fn json(path: impl AsRef<Path>) -> serde_json::Value {
    serde_json::from_str(&std::fs::read_to_string(path.as_ref()).expect("json file")).expect("valid json")
}

/// The pre-trained MiniLM, which `make setup` (and so `make test`) installs:
/// missing is a broken set-up, not a reason to skip.
fn pretrained() -> PathBuf {
    let dir = repo().join("models/pretrained/all-MiniLM-L6-v2");
    assert!(dir.join("tokenizer.json").exists(), "{} is missing: run `make setup`", dir.display());
    dir
}

/// Checks the processed schema and that every row is a well-formed BERT input.
fn check_processed(run: &Run, labels: usize) {
    let expected = schema::processed_table(true);
    for split in Split::ALL {
        let frame = frame(&run.processed, split);
        schema::validate(&frame, &split.path_in(Path::new(&run.processed)), &expected).expect("processed schema");
        assert_eq!(frame.num_rows(), frame_rows(&run.interim, split), "tokenize keeps every {split} row");
        let lengths = schema::u32s(&frame, schema::LENGTH).expect("length");
        let ids = schema::lists(&frame, schema::INPUT_IDS).expect("ids");
        let label_ids = schema::u32s(&frame, schema::LABEL_ID).expect("label_id");
        for ((row_ids, length), label_id) in ids.iter().zip(lengths).zip(label_ids) {
            assert_eq!(row_ids.len() as u32, length);
            assert_eq!((row_ids.first(), row_ids.last()), (Some(&101), Some(&102)), "[CLS] ... [SEP]");
            assert!((label_id as usize) < labels);
        }
    }
    let label_map = kiln_core::LabelMap::load(&Path::new(&run.processed).join("labels.json")).expect("labels.json");
    assert_eq!(label_map.len(), labels);
}

fn frame_rows(dir: &str, split: Split) -> usize {
    frame(dir, split).num_rows()
}

#[test]
fn default_dataset_runs_through_every_stage() {
    let model = pretrained();
    let source = repo().join("data/external/movie-reviews/movieReviewSnippets_GroundTruth.txt");
    assert!(source.exists(), "{} is missing: run `make setup`", source.display());
    let run = Run::new();
    run.all_stages("configs/default.toml", &model);

    // 10,605 sentences; the 37 rated exactly 0 match neither score rule.
    let manifest = json(Path::new(&run.raw).join("manifest.json"));
    assert_eq!(manifest["report"]["sources"][0]["rows_read"], 10_605);
    assert_eq!(manifest["report"]["sources"][0]["dropped_no_label"], 37);
    assert_eq!(manifest["inputs"][0]["sha256"].as_str().map(str::len), Some(64));
    let rows: Vec<usize> = Split::ALL.iter().map(|&s| frame_rows(&run.raw, s)).collect();
    assert_eq!(rows, [8454, 1057, 1057], "80/10/10, stratified");
    let train = frame(&run.raw, Split::Train);
    schema::validate(&train, Path::new("train"), &schema::TEXT_TABLE).expect("raw schema");
    let labels = schema::strings(&train, schema::LABEL, Path::new("train")).expect("labels");
    let positive = labels.iter().filter(|l| *l == "positive").count();
    assert!((4150..4250).contains(&positive), "train keeps the 49.6% positive share: {positive}");

    let report = json(Path::new(&run.interim).join("clean_report.json"));
    for split in Split::ALL {
        assert_eq!(report["report"]["splits"][split.name()]["rows_out"], frame_rows(&run.interim, split));
    }
    check_processed(&run, 2);
    train_is_interrupted_and_resumes(&run);
}

/// The real `train` binary on the real model and data, briefly: Ctrl-C (SIGINT)
/// stops it with a checkpoint and exit code 130, `--resume` finishes the run,
/// and the model folder appears only then.
fn train_is_interrupted_and_resumes(run: &Run) {
    let out = tempfile::tempdir().expect("tempdir");
    let (model_dir, run_dir) = (out.path().join("model"), out.path().join("run"));
    let args = |resume: bool| -> Vec<String> {
        let mut args: Vec<String> = [
            "--config",
            "configs/default.toml",
            "--input-dir",
            &run.processed,
            "--device",
            "cpu",
            "--threads",
            "1",
            "--max-steps",
            "8",
            "--log-every-steps",
            "1",
            "--quiet",
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        args.extend(["--output-dir".into(), model_dir.display().to_string()]);
        args.extend(["--run-dir".into(), run_dir.display().to_string()]);
        if resume {
            args.push("--resume".into());
        }
        args
    };
    let runs_dir = out.path().join("runs");
    let mut child = Command::new(binary("train"))
        .args(args(false))
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", &runs_dir)
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("train starts");
    let live = run_dir.join("metrics.live.jsonl");
    let started = std::time::Instant::now();
    while std::fs::read_to_string(&live).map_or(true, |log| !log.contains("\"step\":1,")) {
        assert!(started.elapsed().as_secs() < 300, "no training step within 5 minutes");
        assert!(child.try_wait().expect("wait").is_none(), "train exited before the first step");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    let pid = child.id().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().expect("kill").success());
    let output = child.wait_with_output().expect("train exits");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(130), "Ctrl-C exits 130 after a checkpoint:\n{stderr}");
    assert!(stderr.contains("--resume"), "the user is told how to continue:\n{stderr}");
    let state = json(run_dir.join("checkpoint/state.json"));
    let stopped_at = state["position"]["step"].as_u64().expect("step");
    assert!((1..8).contains(&stopped_at), "stopped mid-run, at step {stopped_at}");
    assert!(!model_dir.join("model.safetensors").exists(), "an interrupted run writes no model");

    // SIGKILL while a resumed run swaps its next checkpoint in (the test-build
    // pause point after the exchange): the checkpoint is whole, the new one,
    // and the resume below goes on from it.
    let mut killed = Command::new(binary("train"))
        .args(args(true))
        .args(["--checkpoint-every-steps", "1"])
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", out.path().join("killed-runs"))
        .env("KILN_TEST_PAUSE_AT", "swap:exchanged")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("train resumes");
    let lines = std::io::BufRead::lines(std::io::BufReader::new(killed.stderr.take().expect("stderr")));
    let paused = lines.map_while(Result::ok).take(500).any(|line| line.contains("paused at swap:exchanged"));
    killed.kill().expect("SIGKILL");
    let _ = killed.wait();
    assert!(paused, "the resumed run never swapped a checkpoint in");
    let state = json(run_dir.join("checkpoint/state.json"));
    assert_eq!(state["position"]["step"].as_u64(), Some(stopped_at + 1), "the new checkpoint, whole: {state}");

    // The checkpoint is fp32 whatever the precision: resumed in bf16 where the CPU has it.
    let precision = if kiln_model::device::fast_bf16(kiln_model::DeviceSpec::Cpu) { "bf16" } else { "auto" };
    let resumed = Command::new(binary("train"))
        .args(args(true))
        .args(["--precision", precision])
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_RUNS_DIR", &runs_dir)
        .output()
        .expect("train resumes");
    assert!(resumed.status.success(), "resume failed:\n{}", String::from_utf8_lossy(&resumed.stderr));
    let summary = json(run_dir.join("train_summary.json"));
    assert_eq!(summary["report"]["steps"], 8);
    let steps: Vec<u64> = std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|line| serde_json::from_str::<serde_json::Value>(line).expect("json"))
        .filter(|r| r["kind"] == "train")
        .filter_map(|r| r["step"].as_u64())
        .collect();
    assert_eq!(steps, (1..=8).collect::<Vec<_>>(), "one record per step, none lost or repeated by the resume");
    let hf = json(model_dir.join("config.json"));
    assert_eq!(hf["id2label"], serde_json::json!({"0": "negative", "1": "positive"}));
    assert!(model_dir.join("model.safetensors").is_file() && model_dir.join("kiln.toml").is_file());
    let weights = std::fs::read(model_dir.join("model.safetensors")).expect("weights");
    let header_len = u64::from_le_bytes(weights[..8].try_into().expect("8 bytes")) as usize;
    let header: serde_json::Value = serde_json::from_slice(&weights[8..8 + header_len]).expect("header");
    let dtypes: std::collections::BTreeSet<&str> =
        header.as_object().expect("tensors").values().filter_map(|t| t["dtype"].as_str()).collect();
    assert_eq!(dtypes, ["F32"].into(), "weights stay fp32 whatever the precision ({precision})");
    eval_scores_the_model(run, &model_dir, &run_dir, out.path());
    runs_are_recorded(&runs_dir, &run_dir, &out.path().join("eval"), precision);
    predict_classifies_a_file(&model_dir, out.path());
}

/// Each train and eval run left a record; `runs` lists and compares them.
fn runs_are_recorded(runs_dir: &Path, run_dir: &Path, eval_dir: &Path, precision: &str) {
    let records = kiln_track::list(runs_dir).expect("records");
    let described: Vec<(String, String)> = records.iter().map(|r| (r.stage.clone(), r.status.to_string())).collect();
    let expected = [("train", "interrupted"), ("train", "finished"), ("eval", "finished")];
    assert_eq!(described, expected.map(|(a, b)| (a.to_owned(), b.to_owned())));
    let (train, eval) = (&records[1], &records[2]);
    assert_eq!(train.params["train"]["max_steps"], 8, "the full resolved config is the params");
    assert_eq!(train.params["train"]["precision"], precision, "resumed in another precision");
    assert_eq!(train.params["train"]["run_dir"], run_dir.display().to_string());
    assert_eq!(train.tags["device"], "cpu");
    for tag in ["git.commit", "git.dirty", "host", "kiln.version"] {
        assert!(train.tags.get(tag).is_some_and(|v| !v.is_empty()), "tag {tag}: {:?}", train.tags);
    }
    let summary = json(run_dir.join("train_summary.json"));
    let best = summary["report"]["best"]["metrics"]["macro_f1"].as_f64().expect("best");
    assert_eq!(train.metrics["best_val_macro_f1"], best);
    assert!(train.inputs.iter().any(|i| i.path.ends_with("train.parquet")), "{:?}", train.inputs);
    let points = kiln_track::read_points(&runs_dir.join(&train.id)).expect("points");
    let losses: Vec<u64> = points.iter().filter(|p| p.key == "train_loss").map(|p| p.step).collect();
    assert_eq!(losses, (1..=8).collect::<Vec<_>>(), "a training loss per logged step");
    let times: Vec<u64> = points.iter().filter(|p| p.key == "train_loss").map(|p| p.timestamp_ms).collect();
    assert!(times.windows(2).all(|w| w[0] <= w[1]) && times[0] > 1_700_000_000_000, "logged times: {times:?}");

    let scores = json(eval_dir.join("metrics.json"));
    assert_eq!(eval.metrics["test_accuracy"], scores["accuracy"].as_f64().expect("accuracy"));
    assert_eq!(eval.metrics["test_macro_f1"], scores["macro_f1"].as_f64().expect("macro_f1"));
    assert!(eval.inputs.iter().any(|i| i.path.ends_with("model.safetensors")), "{:?}", eval.inputs);

    let runs_dir_arg = runs_dir.display().to_string();
    let listed = run("runs", &["--runs-dir", &runs_dir_arg]);
    let table = String::from_utf8_lossy(&listed.stdout);
    assert!(listed.status.success(), "{}", String::from_utf8_lossy(&listed.stderr));
    assert_eq!(table.lines().count(), 4, "a header and a line per run:\n{table}");
    assert!(table.contains(&eval.id) && table.contains("test_accuracy="), "{table}");
    let compared = run("runs", &["--runs-dir", &runs_dir_arg, "compare", &train.id, &eval.id]);
    let table = String::from_utf8_lossy(&compared.stdout);
    assert!(compared.status.success(), "{}", String::from_utf8_lossy(&compared.stderr));
    assert!(table.contains("metric best_val_macro_f1") && table.contains("metric test_accuracy"), "{table}");
    let unknown = run("runs", &["--runs-dir", &runs_dir_arg, "show", "no-such-run"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stderr).contains("no run 'no-such-run'"));
}

/// `predict` on a small JSONL file: one row per input, ids kept, top-k ranked;
/// a file without the text column is refused with nothing written.
fn predict_classifies_a_file(model_dir: &Path, out: &Path) {
    let input = out.join("reviews.jsonl");
    let lines: Vec<String> = (0..10)
        .map(|i| {
            format!(
                "{{\"uid\": \"r{i}\", \"review\": \"<b>A {} film</b> number {i}\"}}",
                if i % 2 == 0 { "wonderful" } else { "dreadful" }
            )
        })
        .collect();
    std::fs::write(&input, lines.join("\n")).expect("input");
    let output = out.join("predictions.parquet");
    let model = model_dir.display().to_string();
    let (input_arg, output_arg) = (input.display().to_string(), output.display().to_string());
    let args = [
        "--input-file",
        &input_arg,
        "--text-column",
        "review",
        "--id-column",
        "uid",
        "--model-dir",
        &model,
        "--output-file",
        &output_arg,
        "--top-k",
        "2",
        "--chunk-rows",
        "4",
        "--device",
        "cpu",
        "--threads",
        "1",
    ];
    ok("predict", &args);
    let frame = read_parquet(&output, "predict").expect("predictions");
    assert_eq!(frame.num_rows(), 10, "one row per input, across 3 chunks");
    let ids = schema::strings(&frame, "id", &output).expect("ids");
    assert_eq!(ids, (0..10).map(|i| format!("r{i}")).collect::<Vec<_>>());
    let scores = |column: &str| frame.column_by_name(column).expect(column).as_primitive::<Float32Type>().clone();
    let (first, second) = (scores("probability_1"), scores("probability_2"));
    for (&p1, &p2) in first.values().iter().zip(second.values()) {
        assert!(p1 >= p2 && (p1 + p2 - 1.0).abs() < 1e-4, "two labels, ranked, summing to 1: {p1} {p2}");
    }

    predict_runs_in_bf16_or_says_why_not(&args, &output_arg, &first, out);

    // --quantize int8: the same rows, probabilities a little off fp32's.
    let int8_output = out.join("predictions-int8.parquet").display().to_string();
    let int8_args: Vec<&str> = args
        .iter()
        .map(|a| if *a == output_arg.as_str() { int8_output.as_str() } else { *a })
        .chain(["--quantize", "int8"])
        .collect();
    ok("predict", &int8_args);
    let int8 = read_parquet(Path::new(&int8_output), "predict").expect("int8 predictions");
    assert_eq!(schema::strings(&int8, "id", Path::new(&int8_output)).expect("ids"), ids);
    let int8_first = int8.column_by_name("probability_1").expect("probability_1").as_primitive::<Float32Type>().clone();
    let largest_change = first.values().iter().zip(int8_first.values()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(largest_change > 0.0 && largest_change < 0.05, "int8 moved a probability by {largest_change}");

    let wrong = [&args[..2], &["--text-column", "body"], &args[4..]].concat();
    let refused = out.join("refused.parquet").display().to_string();
    let wrong: Vec<&str> =
        wrong.iter().map(|a| if *a == output_arg.as_str() { refused.as_str() } else { *a }).collect();
    let result = run("predict", &wrong);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("no column 'body'"), "{stderr}");
    assert!(!Path::new(&refused).exists(), "a refused predict writes nothing");

    // A bad row after two chunks have been predicted: the error names it, and
    // the chunks already written never reach the output path.
    let mut broken_lines = lines.clone();
    broken_lines[8] = "{\"uid\": \"r8\", \"review\": [1, 2]}".into();
    let broken_input = out.join("broken.jsonl");
    std::fs::write(&broken_input, broken_lines.join("\n")).expect("input");
    let broken_arg = broken_input.display().to_string();
    let broken: Vec<&str> = args
        .iter()
        .map(|a| match *a {
            a if a == input_arg.as_str() => broken_arg.as_str(),
            a if a == output_arg.as_str() => refused.as_str(),
            a => a,
        })
        .collect();
    let result = run("predict", &broken);
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("line 9") && stderr.contains("'review'"), "{stderr}");
    assert!(!Path::new(&refused).exists(), "a predict that fails half way writes nothing");
    let leftovers: Vec<_> = std::fs::read_dir(out)
        .expect("list")
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().starts_with(kiln_core::output::STREAMING_PREFIX))
        .collect();
    assert!(leftovers.is_empty(), "no temp file left behind: {leftovers:?}");
}

/// `--precision bf16`: the same rows, probabilities a little off fp32's (not
/// equal: the products ran in bf16). On a CPU without fast bf16 (forced by
/// the test hook everywhere) bf16 is refused naming the key, with nothing
/// written, and `auto` runs fp32; bf16 with int8 is refused.
fn predict_runs_in_bf16_or_says_why_not(
    args: &[&str],
    output_arg: &str,
    fp32: &PrimitiveArray<Float32Type>,
    out: &Path,
) {
    let with_output = |output: &str, extra: &[&'static str]| -> Vec<String> {
        args.iter()
            .map(|a| if *a == output_arg { output.to_owned() } else { (*a).to_owned() })
            .chain(extra.iter().map(|s| (*s).to_owned()))
            .collect()
    };
    let probabilities = |path: &str| {
        let frame = read_parquet(Path::new(path), "predict").expect("predictions");
        frame.column_by_name("probability_1").expect("probability_1").as_primitive::<Float32Type>().clone()
    };
    let largest_change = |other: &PrimitiveArray<Float32Type>| {
        fp32.values().iter().zip(other.values()).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max)
    };
    if kiln_model::device::fast_bf16(kiln_model::DeviceSpec::Cpu) {
        let bf16 = out.join("predictions-bf16.parquet").display().to_string();
        let command = with_output(&bf16, &["--precision", "bf16"]);
        ok("predict", &command.iter().map(String::as_str).collect::<Vec<_>>());
        let change = largest_change(&probabilities(&bf16));
        assert!(change > 0.0 && change < 0.05, "bf16 moved a probability by {change}");
    } else {
        eprintln!("this CPU has no fast bf16: predict --precision bf16 is checked to be refused");
    }

    let refused = out.join("refused-bf16.parquet").display().to_string();
    let result = run_without_bf16("predict", &with_output(&refused, &["--precision", "bf16"]));
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("predict.precision") && stderr.contains("no fast bf16"), "{stderr}");
    assert!(!Path::new(&refused).exists(), "a refused predict writes nothing");
    let auto = out.join("predictions-auto.parquet").display().to_string();
    let result = run_without_bf16("predict", &with_output(&auto, &["--precision", "auto"]));
    assert!(result.status.success(), "{}", String::from_utf8_lossy(&result.stderr));
    assert_eq!(largest_change(&probabilities(&auto)), 0.0, "auto without fast bf16 is fp32");

    let both = with_output(&refused, &["--precision", "bf16", "--quantize", "int8"]);
    let result = run("predict", &both.iter().map(String::as_str).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&result.stderr);
    assert_eq!(result.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("predict.precision") && stderr.contains("choose one"), "{stderr}");
}

/// `eval` on the model just trained: every output, consistent with each other.
fn eval_scores_the_model(data: &Run, model_dir: &Path, run_dir: &Path, out: &Path) {
    let eval_dir = out.join("eval");
    let model = model_dir.display().to_string();
    let dir = eval_dir.display().to_string();
    let metrics = run_dir.join("metrics.jsonl").display().to_string();
    let common = ["--input-dir", &data.processed, "--device", "cpu", "--threads", "1"];
    let runs = out.join("runs").display().to_string();
    ok(
        "eval",
        &[
            &["--model-dir", &model, "--output-dir", &dir, "--train-metrics", &metrics, "--runs-dir", &runs],
            &common[..],
        ]
        .concat(),
    );
    let test_rows = frame_rows(&data.processed, Split::Test);
    let scores = json(eval_dir.join("metrics.json"));
    assert_eq!(scores["examples"], test_rows);
    let accuracy = scores["accuracy"].as_f64().expect("accuracy");
    assert!((0.0..=1.0).contains(&accuracy) && scores["macro_f1"].as_f64().is_some());
    assert_eq!(scores["per_class"].as_object().map(|m| m.len()), Some(2));

    let confusion = std::fs::read_to_string(eval_dir.join("confusion.csv")).expect("confusion.csv");
    let mut lines = confusion.lines();
    assert_eq!(lines.next(), Some("actual,predicted,count"));
    let (mut total, mut correct) = (0u64, 0u64);
    for line in lines {
        let fields: Vec<&str> = line.split(',').collect();
        let count: u64 = fields[2].parse().expect("count");
        total += count;
        if fields[0] == fields[1] {
            correct += count;
        }
    }
    assert_eq!(total as usize, test_rows, "the confusion matrix counts every test row once");
    assert!((correct as f64 / total as f64 - accuracy).abs() < 1e-9, "accuracy agrees with the confusion matrix");

    // What `dvc plots` draws: one row per example, and the curves of the metrics log.
    let rows = std::fs::read_to_string(eval_dir.join("plot_confusion.csv")).expect("plot_confusion.csv");
    let rows: Vec<&str> = rows.lines().collect();
    assert_eq!(rows[0], "actual,predicted");
    assert_eq!(rows.len() - 1, test_rows);
    let agreeing = rows[1..].iter().filter(|row| row.split_once(',').is_some_and(|(a, p)| a == p)).count();
    assert!((agreeing as f64 / test_rows as f64 - accuracy).abs() < 1e-9);
    let log = std::fs::read_to_string(run_dir.join("metrics.jsonl")).expect("metrics.jsonl");
    let count_kind = |kind: &str| log.lines().filter(|l| l.contains(&format!("\"kind\":\"{kind}\""))).count();
    for (file, header, kind) in
        [("plot_train_loss.csv", "step,loss", "train"), ("plot_validation.csv", "step,loss,accuracy,macro_f1", "eval")]
    {
        let text = std::fs::read_to_string(eval_dir.join(file)).expect(file);
        assert_eq!(text.lines().next(), Some(header), "{file}");
        assert_eq!(text.lines().count() - 1, count_kind(kind), "{file}: a row per {kind} record of the log");
    }

    let predictions = read_parquet(&eval_dir.join("predictions.parquet"), "eval").expect("predictions");
    assert_eq!(predictions.num_rows(), test_rows);
    let texts = predictions.column_by_name(schema::TEXT).expect("text");
    assert_eq!(texts.null_count(), 0, "every prediction carries its cleaned text");
    let per_class = std::fs::read_to_string(eval_dir.join("per_class.csv")).expect("per_class.csv");
    assert_eq!(per_class.lines().count(), 3, "a header and one row per class");
    let report = std::fs::read_to_string(eval_dir.join("report.md")).expect("report.md");
    assert!(report.contains("| accuracy |") && report.contains("most confident mistakes"), "{report}");
    for picture in ["confusion.svg", "training_curves.svg"] {
        let svg = std::fs::read_to_string(eval_dir.join(picture)).expect(picture);
        assert!(svg.starts_with("<svg") && report.contains(picture), "{picture} is drawn and shown in the report");
    }
    // The validation split's predictions, summarised: monitoring's reference.
    let reference = kiln_core::calibration::PredictionProfile::load(&eval_dir.join("reference_predictions.json"))
        .expect("reference predictions");
    assert_eq!(
        (reference.split.as_str(), reference.rows),
        ("validation", frame_rows(&data.processed, Split::Validation))
    );
    assert_eq!(reference.predicted.values().sum::<usize>(), reference.rows);
    assert_eq!(reference.actual.len(), 2, "every label listed");
    assert!(reference.temperature > 0.0 && reference.nll_after <= reference.nll_before + 1e-9);
    assert!(report.contains("Temperature scaling fits T ="), "{report}");

    // A pre-trained encoder is not a classifier: a clear error, and nothing written.
    let pretrained = repo().join("models/pretrained/all-MiniLM-L6-v2").display().to_string();
    let refused = out.join("refused").display().to_string();
    let output = run("eval", &[&["--model-dir", &pretrained, "--output-dir", &refused], &common[..]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("classification"), "{stderr}");
    assert!(!Path::new(&refused).exists(), "a refused eval writes nothing");

    // A labels.json that lists fewer labels than the split uses: a clear error
    // naming the row (exit 1, not an index panic), and the run record says failed.
    let mismatched = out.join("mismatched");
    std::fs::create_dir_all(&mismatched).expect("mkdir");
    for entry in std::fs::read_dir(&data.processed).expect("processed").flatten() {
        std::fs::copy(entry.path(), mismatched.join(entry.file_name())).expect("copy");
    }
    std::fs::write(mismatched.join("labels.json"), r#"{"labels": ["only-one"]}"#).expect("labels.json");
    let mismatched_arg = mismatched.display().to_string();
    // Their own runs folder: the one above is checked for exactly the runs that succeeded.
    let failed_runs = out.join("failed-runs").display().to_string();
    let eval_args = ["--model-dir", &model, "--output-dir", &refused, "--runs-dir", &failed_runs, "--device", "cpu"];
    let output = run("eval", &[&eval_args[..], &["--input-dir", &mismatched_arg]].concat());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("has label_id 1") && stderr.contains("lists 1 labels"), "{stderr}");
    assert!(!Path::new(&refused).exists(), "a refused eval writes nothing");
    let record = latest_run_record(Path::new(&failed_runs));
    assert_eq!(record["status"], "failed");
    assert!(record["error"].as_str().is_some_and(|e| e.contains("label_id")), "{record}");

    // A panic (here the test hook; in life a LibTorch error) is a bug: exit 2
    // with kiln's message, never Rust's 101, and the run record says failed.
    let output = Command::new(binary("eval"))
        .args([&eval_args[..], &["--input-dir", &data.processed, "--quiet"]].concat())
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_TEST_PANIC", "eval")
        .output()
        .expect("eval runs");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("panicked: KILN_TEST_PANIC asked eval to panic"), "{stderr}");
    assert!(stderr.contains("this is a bug in kiln"), "{stderr}");
    let record = latest_run_record(Path::new(&failed_runs));
    assert_eq!(record["status"], "failed", "{record}");
    assert!(!Path::new(&refused).exists(), "a panicking eval writes nothing");
}

/// The newest `run.json` under `runs_dir`.
fn latest_run_record(runs_dir: &Path) -> serde_json::Value {
    let records = std::fs::read_dir(runs_dir).expect("runs dir").flatten().map(|e| json(e.path().join("run.json")));
    records.max_by_key(|r| r["started_ms"].as_u64()).expect("a run record")
}

/// BANKING77 from `../shared`, which only kiln's own checkouts have: the tests
/// that read it are `#[ignore]`d (counted as skipped), and `make test` runs them
/// with `--include-ignored` where `../shared/data` exists.
fn require_banking77() {
    let dir = repo().join("../shared/data/banking77");
    assert!(dir.join("train.csv").exists(), "BANKING77 is not at {}", dir.display());
}

#[test]
#[ignore = "needs ../shared/data/banking77 (kiln's own checkouts; make test runs it there)"]
fn banking77_runs_through_all_three_stages() {
    require_banking77();
    let model = pretrained();
    let run = Run::new();
    run.all_stages("configs/banking77.toml", &model);
    // The source's own 3,080-row test split; 10% of the 10,003 training rows carved out, per label.
    let rows: Vec<usize> = Split::ALL.iter().map(|&s| frame_rows(&run.raw, s)).collect();
    assert_eq!(rows, [8998, 1005, 3080]);
    let manifest = json(Path::new(&run.raw).join("manifest.json"));
    assert_eq!(manifest["report"]["splits"]["validation"]["labels"].as_object().map(|m| m.len()), Some(77));
    // Quoted commas and newlines in the CSV survive as text.
    let train = frame(&run.raw, Split::Train);
    let texts = schema::strings(&train, schema::TEXT, Path::new("train")).expect("texts");
    assert!(texts.iter().any(|t| t.contains(',')), "quoted commas are kept");
    check_processed(&run, 77);

    // What train will read back: the same rows, ids and labels tokenize wrote.
    let examples =
        kiln_data::processed::read_examples(&Split::Train.path_in(Path::new(&run.processed))).expect("examples");
    assert_eq!(examples.len(), frame_rows(&run.interim, Split::Train));
    assert!(examples.iter().all(|e| e.token_type_ids.as_ref().map(Vec::len) == Some(e.len()) && e.label_id < 77));
    let wrong = kiln_data::processed::read_examples(&Split::Train.path_in(Path::new(&run.interim)));
    let message = format!("{:#}", wrong.expect_err("interim is not processed"));
    assert!(message.contains("input_ids"), "{message}");

    let report = json(Path::new(&run.processed).join("tokenize_report.json"));
    let truncated = report["report"]["splits"]["train"]["truncation_rate"].as_f64().expect("rate");
    assert!(truncated < 0.01, "64 tokens fit nearly every query: {truncated}");
}

#[test]
#[ignore = "needs ../shared/data/banking77 (kiln's own checkouts; make test runs it there)"]
fn same_seed_same_bytes_and_reruns_are_idempotent() {
    require_banking77();
    let first = Run::new();
    let second = Run::new();
    let reseeded = Run::new();
    ok("ingest", &["-c", "configs/banking77.toml", "--output-dir", &first.raw]);
    ok("ingest", &["-c", "configs/banking77.toml", "--output-dir", &second.raw]);
    ok("ingest", &["-c", "configs/banking77.toml", "--output-dir", &reseeded.raw, "--seed", "7"]);
    let bytes = |run: &Run, split: Split| std::fs::read(split.path_in(Path::new(&run.raw))).expect("read");
    for split in Split::ALL {
        assert!(bytes(&first, split) == bytes(&second, split), "{split} differs between two runs");
    }
    assert!(bytes(&first, Split::Train) != bytes(&reseeded, Split::Train), "another seed, another split");
    assert!(bytes(&first, Split::Test) == bytes(&reseeded, Split::Test), "the given test file is not resplit");

    // Cleaning the same input twice gives the same files.
    ok("clean", &["-c", "configs/banking77.toml", "--input-dir", &first.raw, "--output-dir", &first.interim]);
    let before = std::fs::read(Split::Train.path_in(Path::new(&first.interim))).expect("read");
    ok("clean", &["-c", "configs/banking77.toml", "--input-dir", &first.raw, "--output-dir", &first.interim]);
    assert!(before == std::fs::read(Split::Train.path_in(Path::new(&first.interim))).expect("read"));
}

/// A bad input: exit code 1, a message naming the problem, and no output files.
fn fails_cleanly(stage: &str, args: &[&str], output_dir: &Path, needles: &[&str]) {
    let output = run(stage, args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stage} {args:?} should exit 1:\n{stderr}");
    for needle in needles {
        assert!(stderr.contains(needle), "{stage} {args:?}: '{needle}' not in:\n{stderr}");
    }
    assert!(!stderr.contains("panicked"), "{stderr}");
    let written: Vec<_> = std::fs::read_dir(output_dir)
        .map(|entries| entries.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(written.is_empty(), "{stage} {args:?} left files behind: {written:?}");
}

#[test]
fn bad_input_fails_with_a_clear_message_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, bytes: &[u8]| {
        let path = dir.path().join(name);
        std::fs::write(&path, bytes).expect("write");
        path.display().to_string()
    };
    let good = write("good.csv", b"text,label\nhello there,a\nbye now,b\nhi again,a\nsee you,b\n");
    let out = dir.path().join("out");
    let out_arg = out.display().to_string();
    let ingest = |file: &str, extra: &[&str], needles: &[&str]| {
        let mut args = vec!["--train-file", file, "--output-dir", &out_arg];
        args.extend_from_slice(extra);
        fails_cleanly("ingest", &args, &out, needles);
    };

    ingest(&dir.path().join("missing.csv").display().to_string(), &[], &["missing.csv", "No such file"]);
    ingest(&write("data.xlsx", b"x"), &[], &["data.xlsx", "ingest.format"]);
    ingest(&good, &["--text-column", "body"], &["good.csv", "no column 'body'", "text, label"]);
    ingest(&write("empty.csv", b""), &[], &["empty.csv", "no data rows"]);
    ingest(
        &write("latin1.csv", b"text,label\ncaf\xe9,a\n"),
        &[],
        &["latin1.csv", "row 1", "'text'", "UTF-8", "byte offset"],
    );
    ingest(&write("null.csv", b"text,label\nhi,a\nyo,\n"), &[], &["null.csv", "row 2", "'label' is empty"]);
    ingest(&write("null.jsonl", b"{\"text\":\"hi\",\"label\":null}\n"), &[], &["null.jsonl", "line 1", "'label'"]);
    ingest(&good, &["--validation-fraction", "2"], &["ingest.validation_fraction"]);

    let config = write("bad.toml", b"[ingest]\nseed = 1\ntext_colum = \"x\"\n");
    ingest(&good, &["--config", &config], &["bad.toml", "text_colum", "line 3"]);
    let config = write("type.toml", b"[ingest]\nseed = \"one\"\n");
    ingest(&good, &["--config", &config], &["type.toml", "seed"]);

    // An output folder that cannot be created (a file is in the way).
    let blocker = write("blocker", b"");
    let inside = format!("{blocker}/out");
    let output = run("ingest", &["--train-file", &good, "--output-dir", &inside]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cannot create output folder"));

    // Stages after ingest say which stage to run first.
    let missing = dir.path().join("nothing").display().to_string();
    fails_cleanly("clean", &["--input-dir", &missing, "--output-dir", &out_arg], &out, &["train.parquet", "ingest"]);
    fails_cleanly("tokenize", &["--input-dir", &missing, "--output-dir", &out_arg], &out, &["train.parquet", "clean"]);

    // bf16 on a CPU without fast bf16 (the test hook): refused before any input is read.
    let (model_out, run_out) = (dir.path().join("model"), dir.path().join("run"));
    let args = ["--input-dir", &missing, "--device", "cpu", "--precision", "bf16", "--quiet"];
    let paths =
        ["--output-dir".into(), model_out.display().to_string(), "--run-dir".into(), run_out.display().to_string()];
    let refused = run_without_bf16("train", &args.map(str::to_owned).into_iter().chain(paths).collect::<Vec<_>>());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("train.precision") && stderr.contains("no fast bf16"), "{stderr}");
    assert!(!model_out.exists() && !run_out.exists(), "a refused train writes nothing");
}

#[test]
fn unknown_test_labels_error_or_drop() {
    let model = pretrained();
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |name: &str, text: &str| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        path.display().to_string()
    };
    let train = write("train.csv", "text,label\nhello there,a\nbye now,b\nhi again,a\nsee you,b\n");
    let test = write("test.csv", "text,label\nnew text,a\nodd one,zzz\n");
    let path = |name: &str| dir.path().join(name).display().to_string();
    let (raw, interim, processed) = (path("raw"), path("interim"), path("processed"));
    ok("ingest", &["--train-file", &train, "--test-file", &test, "--validation-fraction", "0", "--output-dir", &raw]);
    ok("clean", &["--input-dir", &raw, "--output-dir", &interim]);
    let model = model.display().to_string();
    let tokenize = ["--input-dir", interim.as_str(), "--output-dir", processed.as_str(), "--model-dir", model.as_str()];
    fails_cleanly("tokenize", &tokenize, Path::new(&processed), &["label 'zzz'", "row 2", "test-2", "unknown_labels"]);

    let mut dropping = tokenize.to_vec();
    dropping.extend(["--unknown-labels", "drop"]);
    ok("tokenize", &dropping);
    assert_eq!(frame_rows(&processed, Split::Test), 1);
    let report = json(Path::new(&processed).join("tokenize_report.json"));
    assert_eq!(report["report"]["splits"]["test"]["dropped_unknown_label"], 1);
}

#[test]
fn help_and_print_config_describe_every_setting() {
    for (stage, section, flag) in [
        ("ingest", "[ingest]", "--score-labels"),
        ("clean", "[clean]", "--strip-urls"),
        ("tokenize", "[tokenize]", "--max-length"),
    ] {
        let output = Command::new(binary(stage)).arg("--help").output().expect("runs");
        let help = String::from_utf8_lossy(&output.stdout);
        assert!(output.status.success());
        assert!(help.contains(section) && help.contains(flag) && help.contains("--config"), "{stage} --help:\n{help}");

        let mut args = vec!["--config", "configs/default.toml", "--print-config"];
        if stage == "ingest" {
            args.extend(["--seed", "9"]);
        }
        let output = run(stage, &args);
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let printed = String::from_utf8_lossy(&output.stdout).into_owned();
        let config = kiln_config::PipelineConfig::from_toml(&printed).expect("--print-config prints valid TOML");
        assert_eq!(config.ingest.seed, if stage == "ingest" { 9 } else { 42 }, "only ingest has --seed");
        assert_eq!(config.tokenize.max_length, 128);
    }
}

/// SIGKILL while `export --force` swaps a new export over an old one (the
/// folders exchanged, the old one not yet removed): the export folder is
/// whole (the new one), and the next export removes what the kill left.
#[test]
fn an_export_killed_while_swapping_leaves_a_whole_folder() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let (first, second, out) = (dir.path().join("first"), dir.path().join("second"), dir.path().join("export"));
    kiln_testing::classifier_folder(&first, &["a", "b"], 1).expect("a model");
    kiln_testing::classifier_folder(&second, &["a", "b"], 2).expect("another");
    let missing = dir.path().join("none.json").display().to_string();
    let export = |model: &Path| -> Vec<String> {
        let mut args: Vec<String> =
            ["--model-dir", &model.display().to_string(), "--output-dir", &out.display().to_string()]
                .map(String::from)
                .to_vec();
        for flag in ["--eval-metrics", "--reference-predictions", "--data-profile"] {
            args.extend([flag.to_owned(), missing.clone()]);
        }
        args.push("--force".into());
        args
    };
    let as_strs = |args: &[String]| args.iter().map(String::as_str).map(str::to_owned).collect::<Vec<_>>();
    let first_args = as_strs(&export(&first));
    ok("export", &first_args.iter().map(String::as_str).collect::<Vec<_>>());
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).expect("weights");
    assert_eq!(weights(&out), weights(&first));

    let mut child = Command::new(binary("export"))
        .args(export(&second))
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env("KILN_TEST_PAUSE_AT", "swap:exchanged")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("export starts");
    let lines = BufReader::new(child.stderr.take().expect("stderr")).lines().map_while(Result::ok);
    let paused = lines.take(100).any(|line| line.contains("paused at swap:exchanged"));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(paused, "export never reached its swap");
    assert_eq!(weights(&out), weights(&second), "the target is the new export, whole");
    assert!(out.join("kiln_export.json").is_file());

    let second_args = as_strs(&export(&second));
    ok("export", &second_args.iter().map(String::as_str).collect::<Vec<_>>());
    let names: Vec<String> = std::fs::read_dir(dir.path())
        .expect("list")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(names.iter().all(|n| !n.starts_with('.')), "leftovers of the kill remain: {names:?}");
}

/// Every stderr line of a stage run with `--log-format json` (or the config
/// key) as a JSON object: timestamp, level, stage, message, fields, target.
fn json_lines(stage: &str, stderr: &[u8]) -> Vec<serde_json::Value> {
    let text = String::from_utf8_lossy(stderr);
    assert!(!text.trim().is_empty(), "{stage} wrote nothing to stderr");
    text.lines()
        .map(|line| {
            let value: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{stage}: not a JSON line ({e}): {line}"));
            assert!(value["timestamp"].as_str().is_some_and(|t| t.ends_with('Z') && t.contains('T')), "{value}");
            assert!(["info", "warn", "error", "debug", "trace"].contains(&value["level"].as_str().unwrap_or("")));
            assert_eq!(value["stage"], serde_json::json!(stage), "{value}");
            assert!(value["message"].is_string() && value["fields"].is_object() && value["target"].is_string());
            value
        })
        .collect()
}

/// JSON logs from the flag, the environment and the config key; no progress
/// bar, no plain line, the final error included (with its exit code).
#[test]
fn stages_log_json_lines_when_asked() {
    let dir = tempfile::tempdir().expect("tempdir");
    let csv = dir.path().join("reviews.csv");
    std::fs::write(&csv, "text,label\nhello there,a\nbye now,b\nhi again,a\nsee you,b\ngood day,a\nso long,b\n")
        .expect("csv");
    let out = dir.path().join("raw");
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "log_format = \"json\"\n[ingest]\ntrain_file = {:?}\noutput_dir = {:?}\nvalidation_fraction = 0.34\ntest_fraction = 0.34\n",
            csv.display().to_string(),
            out.display().to_string()
        ),
    )
    .expect("config");
    let stage = |name: &str, args: &[&str], env: &[(&str, &str)]| {
        Command::new(binary(name))
            .args(args)
            .current_dir(repo())
            .env_remove("KILN_CONFIG")
            .env_remove("KILN_LOG_FORMAT")
            .env("KILN_RUNS_DIR", scratch_runs_dir())
            .envs(env.iter().copied())
            .output()
            .expect("the stage runs")
    };
    let config_arg = config.display().to_string();
    let ingest = stage("ingest", &["--config", &config_arg], &[]);
    assert!(ingest.status.success(), "{}", String::from_utf8_lossy(&ingest.stderr));
    let lines = json_lines("ingest", &ingest.stderr);
    assert!(lines.iter().any(|l| l["level"] == "info"), "info lines, not only warnings: {lines:?}");

    // The flag wins over the config; an error is the last line, with its exit code.
    let missing = stage(
        "clean",
        &["--log-format", "json", "--input-dir", "/no/such/dir", "--output-dir", &out.display().to_string()],
        &[],
    );
    assert_eq!(missing.status.code(), Some(1));
    let lines = json_lines("clean", &missing.stderr);
    let last = lines.last().expect("the error line");
    assert_eq!((last["level"].as_str(), last["fields"]["exit_code"].as_u64()), (Some("error"), Some(1)), "{last}");
    assert!(last["message"].as_str().is_some_and(|m| m.contains("/no/such/dir")), "{last}");

    // From the environment, before the config could say (it does not load).
    let broken = stage("train", &["--config", "/no/such/kiln.toml"], &[("KILN_LOG_FORMAT", "json")]);
    assert_eq!(broken.status.code(), Some(1));
    let lines = json_lines("train", &broken.stderr);
    assert!(lines[0]["message"].as_str().is_some_and(|m| m.contains("/no/such/kiln.toml")), "{lines:?}");

    // And text stays the default.
    let plain = stage("clean", &["--input-dir", "/no/such/dir", "--output-dir", &out.display().to_string()], &[]);
    assert!(String::from_utf8_lossy(&plain.stderr).starts_with("clean: error: "));
}

/// A warm start needs a production model: without one, `retrain --init
/// production` says so, naming the key, before it builds any data.
#[test]
fn a_warm_start_without_a_production_model_stops_before_building_data() {
    let dir = tempfile::tempdir().expect("tempdir");
    let out = dir.path().join("retrain");
    let config = dir.path().join("kiln.toml");
    std::fs::write(
        &config,
        format!(
            "[registry]\ndir = {:?}\n[retrain]\noutput_dir = {:?}\nlog_dir = {:?}\n",
            dir.path().join("registry").display().to_string(),
            out.display().to_string(),
            dir.path().join("log").display().to_string()
        ),
    )
    .expect("config");
    let config = config.display().to_string();
    fails_cleanly(
        "retrain",
        &["--config", &config, "--init", "production"],
        &out,
        &["retrain.init = \"production\" starts from the production model", "has none"],
    );
    assert!(!out.exists(), "no data version was started");
}
