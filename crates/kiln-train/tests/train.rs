//! `train` end to end on a tiny randomly initialised BERT and a small, easily
//! learnt sentiment set that runs through the real ingest, clean and tokenize:
//! learning, the model folder, determinism, resume, and bad input.

use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use kiln_config::{CleanConfig, IngestConfig, ModelSettings, TokenizeConfig, TrainConfig};
use kiln_core::Progress;
use kiln_model::bert::{load_safetensors, save_safetensors};
use kiln_model::{BertClassifier, BertConfig, DeviceSpec};
use kiln_train::{Control, Outcome, TrainSummary};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A BERT with MiniLM's vocabulary (so the real tokenizer fits) and nothing else.
fn tiny_config(hidden: usize) -> BertConfig {
    kiln_testing::tiny_bert(hidden, 2)
}

/// A Hugging Face-style folder holding a random tiny BERT and the MiniLM tokenizer.
fn write_model_folder(dir: &Path, config: &BertConfig) {
    let _turn = exclusive();
    std::fs::create_dir_all(dir).expect("model dir");
    let device = DeviceSpec::Cpu.device();
    device.seed(7);
    let model = BertClassifier::new(config, 2, &device);
    save_safetensors(&model, &dir.join("model.safetensors")).expect("weights");
    std::fs::write(dir.join("config.json"), serde_json::to_string(config).expect("json")).expect("config");
    // Installed by `make setup` (which `make test` runs first).
    let tokenizer = repo().join("models/pretrained/all-MiniLM-L6-v2/tokenizer.json");
    std::fs::copy(&tokenizer, dir.join("tokenizer.json")).expect("the MiniLM tokenizer (run `make setup`)");
}

/// 160 short reviews whose label any bag of words gets right.
fn write_reviews(path: &Path) {
    let good = ["great", "wonderful", "excellent", "lovely", "superb"];
    let bad = ["awful", "terrible", "boring", "dreadful", "horrible"];
    let things = ["film", "plot", "acting", "ending", "music", "cast", "script", "story"];
    let mut csv = String::from("text,label\n");
    for i in 0..160 {
        let (words, label) = if i % 2 == 0 { (&good, "positive") } else { (&bad, "negative") };
        let thing = things[(i / 2) % things.len()];
        csv.push_str(&format!("the {thing} was {} and {},{label}\n", words[i % 5], words[(i / 5) % 5]));
    }
    std::fs::write(path, csv).expect("csv");
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path();
        write_model_folder(&root.join("pretrained"), &tiny_config(16));
        write_reviews(&root.join("reviews.csv"));
        let quiet = Progress::hidden();
        let ingest = IngestConfig {
            train_file: Some(root.join("reviews.csv")),
            validation_fraction: 0.2,
            test_fraction: 0.1,
            output_dir: root.join("raw"),
            ..IngestConfig::default()
        };
        kiln_data::ingest::run(&ingest, kiln_core::Task::SequenceClassification, &quiet).expect("ingest");
        let clean =
            CleanConfig { input_dir: root.join("raw"), output_dir: root.join("interim"), ..CleanConfig::default() };
        kiln_data::clean::run(&clean, &quiet).expect("clean");
        let tokenize = TokenizeConfig {
            input_dir: root.join("interim"),
            output_dir: root.join("processed"),
            model_dir: root.join("pretrained"),
            max_length: 32,
            ..TokenizeConfig::default()
        };
        kiln_data::tokenize::run(&tokenize, &quiet).expect("tokenize");
        Self { dir }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Settings for a short run writing under `out`.
    fn config(&self, out: &str) -> TrainConfig {
        TrainConfig {
            input_dir: self.path("processed"),
            model_dir: self.path("pretrained"),
            output_dir: self.path(out).join("model"),
            run_dir: self.path(out).join("run"),
            device: "cpu".into(),
            threads: 1,
            epochs: 6,
            batch_size: 8,
            learning_rate: 5e-3,
            log_every_steps: 2,
            ..TrainConfig::default()
        }
    }
}

/// LibTorch has one global random generator (initialisation and dropout draw
/// from it), so whatever seeds or draws from it in parallel test threads would
/// disturb another run's stream: one at a time.
static GLOBAL_RNG: Mutex<()> = Mutex::new(());

fn exclusive() -> MutexGuard<'static, ()> {
    GLOBAL_RNG.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(config: &TrainConfig, control: &Control) -> anyhow::Result<Outcome> {
    let _turn = exclusive();
    kiln_train::run(config, &Progress::hidden(), control)
}

fn train(config: &TrainConfig) -> Box<TrainSummary> {
    match run(config, &Control::default()).expect("trains") {
        Outcome::Finished(summary) => summary,
        Outcome::Interrupted { .. } | Outcome::Pruned { .. } => panic!("nothing interrupted this run"),
    }
}

fn train_error(config: &TrainConfig) -> String {
    match run(config, &Control::default()) {
        Ok(_) => panic!("training should have refused"),
        Err(error) => format!("{error:#}"),
    }
}

/// The metrics log without wall-clock figures (which differ run to run).
fn metric_records(run_dir: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(run_dir.join("metrics.jsonl"))
        .expect("metrics.jsonl")
        .lines()
        .map(|line| {
            let mut record: serde_json::Value = serde_json::from_str(line).expect("json line");
            let map = record.as_object_mut().expect("object");
            for timing in ["seconds", "samples_per_second", "tokens_per_second", "time_ms"] {
                map.remove(timing);
            }
            record
        })
        .collect()
}

#[test]
fn learns_and_writes_a_model_folder_others_can_load() {
    let fixture = Fixture::new();
    let config = fixture.config("a");
    let summary = train(&config);
    assert_eq!(summary.steps, summary.total_steps);
    assert!(summary.best.metrics.accuracy >= 0.9, "a bag-of-words task: {:?}", summary.best);

    let out = &config.output_dir;
    for file in ["model.safetensors", "config.json", "tokenizer.json", "labels.json", "kiln.toml", "manifest.json"] {
        assert!(out.join(file).is_file(), "{file} is missing from the model folder");
    }
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("config.json")).expect("read")).expect("config.json");
    assert_eq!(hf["architectures"][0], "BertForSequenceClassification");
    assert_eq!(hf["id2label"]["0"], "negative");
    assert_eq!(hf["label2id"]["positive"], 1);

    let settings = ModelSettings::load(&out.join("kiln.toml")).expect("kiln.toml");
    assert_eq!(settings.tokenize.max_length, 32, "the tokenize settings the data was made with");
    assert!(settings.clean.is_some(), "the clean settings travel with the model");
    assert_eq!(settings.train, config);

    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("read")).expect("manifest");
    let inputs: Vec<&str> =
        manifest["inputs"].as_array().expect("inputs").iter().filter_map(|i| i["path"].as_str()).collect();
    assert!(
        inputs.iter().any(|p| p.ends_with("train.parquet")) && inputs.iter().any(|p| p.ends_with("model.safetensors"))
    );

    // The saved weights are the best validation model: loading them reproduces its accuracy.
    let device = DeviceSpec::Cpu.device();
    let mut model = BertClassifier::new(&BertConfig::load(out).expect("config"), 2, &device);
    let report = load_safetensors(&mut model, &out.join("model.safetensors")).expect("weights");
    assert!(report.initialised.is_empty(), "the fine-tuned head is saved too");
    let validation = kiln_data::processed::read_examples(&fixture.path("processed/validation.parquet")).expect("read");
    let rows: Vec<_> = validation.iter().collect();
    let (input, _) = kiln_model::batch::collate(&rows, 0, &device);
    let predicted = model.forward(input).argmax(1).into_data().convert::<i64>().try_to_vec::<i64>().expect("ids");
    let correct = rows.iter().zip(&predicted).filter(|(e, p)| i64::from(e.label_id) == **p).count();
    let accuracy = correct as f64 / rows.len() as f64;
    assert!((accuracy - summary.best.metrics.accuracy).abs() < 1e-9, "{accuracy} vs {:?}", summary.best);

    let records = metric_records(&config.run_dir);
    let evals = records.iter().filter(|r| r["kind"] == "eval").count();
    assert_eq!(evals, 6, "one validation per epoch");
    assert_eq!(records.iter().filter(|r| r["kind"] == "epoch").count(), 6);
    let train_losses: Vec<f64> =
        records.iter().filter(|r| r["kind"] == "train").filter_map(|r| r["loss"].as_f64()).collect();
    assert!(train_losses.last() < train_losses.first(), "training loss falls: {train_losses:?}");
}

/// Every tensor of the model folder's weights, by name, as raw bytes (the
/// file's tensor order is not fixed, so whole files are not compared).
fn weights(config: &TrainConfig) -> std::collections::BTreeMap<String, Vec<u8>> {
    let bytes = std::fs::read(config.output_dir.join("model.safetensors")).expect("weights");
    let file = safetensors::SafeTensors::deserialize(&bytes).expect("a safetensors file");
    file.tensors().into_iter().map(|(name, view)| (name, view.data().to_vec())).collect()
}

#[test]
fn same_seed_same_metrics_and_resume_matches_an_uninterrupted_run() {
    let fixture = Fixture::new();
    let mut whole = fixture.config("whole");
    whole.epochs = 3;
    whole.gradient_accumulation = 2;
    whole.eval_every_steps = 3;
    train(&whole);

    let again =
        TrainConfig { output_dir: fixture.path("again/model"), run_dir: fixture.path("again/run"), ..whole.clone() };
    train(&again);
    assert_eq!(metric_records(&whole.run_dir), metric_records(&again.run_dir), "same seed, same data, same metrics");
    assert!(weights(&whole) == weights(&again), "same seed, same data, same weights");

    let mut parts =
        TrainConfig { output_dir: fixture.path("parts/model"), run_dir: fixture.path("parts/run"), ..whole.clone() };
    let control = Control { interrupt_after_step: Some(4), ..Control::default() };
    match run(&parts, &control).expect("runs") {
        Outcome::Interrupted { step, .. } => assert_eq!(step, 4),
        Outcome::Finished(_) | Outcome::Pruned { .. } => panic!("the run should stop after step 4"),
    }
    assert!(!parts.output_dir.join("model.safetensors").exists(), "an interrupted run writes no model");
    parts.resume = true;
    train(&parts);

    let (whole_weights, resumed_weights) = (weights(&whole), weights(&parts));
    assert_eq!(whole_weights.len(), resumed_weights.len());
    for (name, values) in &whole_weights {
        assert!(resumed_weights[name] == *values, "resumed weights of {name} differ from the uninterrupted run's");
    }
    let evals = |config: &TrainConfig| -> Vec<serde_json::Value> {
        metric_records(&config.run_dir).into_iter().filter(|r| r["kind"] != "train").collect()
    };
    assert_eq!(evals(&whole), evals(&parts), "validation and epoch records match too");
}

/// `trainable_layers`: the embeddings and the layers below keep their loaded
/// weights, and keeping the frozen part's output in memory trains the same
/// model as computing it at every step (`frozen_cache_mib = 0`).
#[test]
fn frozen_layers_keep_their_weights_and_keeping_their_output_trains_the_same_model() {
    let fixture = Fixture::new();
    let kept = TrainConfig { trainable_layers: 1, epochs: 3, ..fixture.config("kept") };
    let computed = TrainConfig {
        frozen_cache_mib: 0,
        output_dir: fixture.path("computed/model"),
        run_dir: fixture.path("computed/run"),
        ..kept.clone()
    };
    let (kept_summary, computed_summary) = (train(&kept), train(&computed));
    let pretrained = weights(&TrainConfig { output_dir: fixture.path("pretrained"), ..kept.clone() });
    let (kept, computed) = (weights(&kept), weights(&computed));
    for name in ["bert.embeddings.word_embeddings.weight", "bert.encoder.layer.0.output.dense.weight"] {
        assert!(kept[name] == pretrained[name] && computed[name] == pretrained[name], "{name} is frozen");
    }
    for name in ["bert.encoder.layer.1.output.dense.weight", "classifier.weight"] {
        assert!(kept[name] != pretrained[name], "{name} trains");
    }
    let floats = |bytes: &[u8]| -> Vec<f32> {
        bytes.chunks_exact(4).map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]])).collect()
    };
    for (name, values) in &kept {
        let diff = kiln_testing::max_abs_diff(&floats(values), &floats(&computed[name]));
        assert!(diff < 1e-4, "{name}: kept and computed frozen output trained weights {diff} apart");
    }
    let (a, b) = (kept_summary.best.metrics, computed_summary.best.metrics);
    assert!((a.loss - b.loss).abs() < 1e-4 && a.accuracy == b.accuracy, "{a:?} against {b:?}");
}

/// A referee that answers each validation in turn, and remembers what it heard.
#[derive(Debug)]
struct Scripted {
    verdicts: std::sync::Mutex<Vec<kiln_train::Verdict>>,
    heard: std::sync::Mutex<Vec<(usize, f64)>>,
}

impl kiln_train::Referee for Scripted {
    fn judge(&self, step: usize, epoch: f64, _: &kiln_train::ValidationMetrics) -> kiln_train::Verdict {
        self.heard.lock().expect("lock").push((step, epoch));
        self.verdicts.lock().expect("lock").pop().unwrap_or(kiln_train::Verdict::Continue)
    }
}

/// `tune`'s pruning: the referee hears every validation (step and epochs
/// trained) and a `Prune` ends the run there, cleanly: its metrics log is
/// committed, no model folder is written and no checkpoint is left. An
/// `Interrupt` (tune is gone) checkpoints and stops, to be resumed.
#[test]
fn a_referee_prunes_or_interrupts_a_run_after_a_validation() {
    use kiln_train::Verdict::{Continue, Interrupt, Prune};
    let fixture = Fixture::new();
    let config = TrainConfig { epochs: 3, eval_every_steps: 2, ..fixture.config("pruned") };
    let referee = std::sync::Arc::new(Scripted {
        verdicts: std::sync::Mutex::new(vec![Prune, Continue]),
        heard: std::sync::Mutex::new(Vec::new()),
    });
    let control = Control { referee: Some(referee.clone()), ..Control::default() };
    match run(&config, &control).expect("runs") {
        Outcome::Pruned { step, .. } => assert_eq!(step, 4, "pruned at the second validation"),
        _ => panic!("the referee pruned this run"),
    }
    assert_eq!(referee.heard.lock().expect("lock").iter().map(|h| h.0).collect::<Vec<_>>(), [2, 4]);
    assert!(!config.output_dir.join("model.safetensors").exists(), "a pruned run writes no model");
    assert!(!config.run_dir.join("checkpoint").exists(), "nor keeps a checkpoint");
    let evals = metric_records(&config.run_dir).into_iter().filter(|r| r["kind"] == "eval").count();
    assert_eq!(evals, 2, "its validations are in metrics.jsonl");

    let config = TrainConfig { run_dir: fixture.path("gone/run"), output_dir: fixture.path("gone/model"), ..config };
    let referee =
        std::sync::Arc::new(Scripted { verdicts: std::sync::Mutex::new(vec![Interrupt]), heard: Default::default() });
    let control = Control { referee: Some(referee), ..Control::default() };
    match run(&config, &control).expect("runs") {
        Outcome::Interrupted { step, .. } => assert_eq!(step, 2),
        _ => panic!("the referee is gone: the run checkpoints and stops"),
    }
    assert!(config.run_dir.join("checkpoint/state.json").is_file());
}

/// One run folder, one `train`: a second run on a folder in use is refused.
#[test]
fn a_run_folder_in_use_is_refused() {
    let fixture = Fixture::new();
    let config = fixture.config("busy");
    std::fs::create_dir_all(&config.run_dir).expect("run dir");
    let held = std::fs::File::create(config.run_dir.join(kiln_train::RUN_LOCK)).expect("lock file");
    held.lock().expect("lock");
    let message = train_error(&config);
    assert!(message.contains("another train process") && message.contains("busy"), "{message}");
    drop(held);
    train(&config);
}

/// With a learning rate too small to move anything, accuracy never improves on
/// the first validation: with patience 2 the run stops after the third, and the
/// model kept is the first validation's.
#[test]
fn early_stopping_keeps_the_best_model() {
    let fixture = Fixture::new();
    let config = TrainConfig {
        learning_rate: 1e-12,
        eval_every_steps: 1,
        metric: kiln_config::Metric::Accuracy,
        patience: 2,
        ..fixture.config("early")
    };
    let summary = train(&config);
    assert!(summary.stopped_early);
    assert_eq!((summary.steps, summary.best.step), (3, 1));
    let evals: Vec<bool> = metric_records(&config.run_dir)
        .iter()
        .filter(|r| r["kind"] == "eval")
        .filter_map(|r| r["best"].as_bool())
        .collect();
    assert_eq!(evals, [true, false, false]);
}

#[test]
fn bad_inputs_fail_before_training_and_leave_outputs_alone() {
    let fixture = Fixture::new();
    let base = fixture.config("bad");
    std::fs::create_dir_all(&base.output_dir).expect("out");
    std::fs::write(base.output_dir.join("model.safetensors"), "a previous model").expect("sentinel");
    let untouched = || {
        assert_eq!(
            std::fs::read_to_string(base.output_dir.join("model.safetensors")).expect("read"),
            "a previous model"
        );
        assert!(!base.run_dir.join("checkpoint").exists(), "no checkpoint from a refused run");
    };

    let missing = TrainConfig { input_dir: fixture.path("nowhere"), ..base.clone() };
    assert!(train_error(&missing).contains("run `tokenize` first"), "{}", train_error(&missing));
    untouched();

    // A labels.json that does not belong to the data.
    let processed = fixture.path("processed");
    let labels = std::fs::read_to_string(processed.join("labels.json")).expect("labels");
    std::fs::write(processed.join("labels.json"), r#"{"labels": ["negative"]}"#).expect("write");
    let message = train_error(&base);
    assert!(message.contains("labels.json"), "{message}");
    std::fs::write(processed.join("labels.json"), labels).expect("restore");
    untouched();

    // A tokenizer bigger than the model's embedding table.
    let small = fixture.path("small-vocab");
    write_model_folder(&small, &BertConfig { vocab_size: 1000, ..tiny_config(16) });
    let message = train_error(&TrainConfig { model_dir: small.clone(), ..base.clone() });
    assert!(message.contains("30522 tokens") && message.contains("1000"), "{message}");
    untouched();

    // A model folder without weights.
    std::fs::remove_file(small.join("model.safetensors")).expect("remove");
    std::fs::write(small.join("config.json"), serde_json::to_string(&tiny_config(16)).expect("json")).expect("config");
    let message = train_error(&TrainConfig { model_dir: small, ..base.clone() });
    assert!(message.contains("model.safetensors"), "{message}");
    untouched();

    // Resuming with nothing to resume, then from another model's checkpoint.
    let message = train_error(&TrainConfig { resume: true, ..base.clone() });
    assert!(message.contains("no checkpoint"), "{message}");
    let control = Control { interrupt_after_step: Some(1), ..Control::default() };
    assert!(matches!(run(&base, &control), Ok(Outcome::Interrupted { .. })));
    let wider = fixture.path("wider");
    write_model_folder(&wider, &tiny_config(32));
    let message = train_error(&TrainConfig { model_dir: wider, resume: true, ..base.clone() });
    assert!(message.contains("another model"), "{message}");
    let message = train_error(&TrainConfig { learning_rate: 1e-3, resume: true, ..base.clone() });
    assert!(message.contains("train.learning_rate"), "{message}");
    assert_eq!(std::fs::read_to_string(base.output_dir.join("model.safetensors")).expect("read"), "a previous model");
}

#[test]
fn a_diverging_run_stops_with_a_clear_message_and_keeps_the_last_checkpoint() {
    let fixture = Fixture::new();
    let config = TrainConfig {
        learning_rate: 1e30,
        warmup_ratio: 0.0,
        max_grad_norm: 0.0,
        checkpoint_every_steps: 1,
        ..fixture.config("nan")
    };
    let message = train_error(&config);
    assert!(message.contains("diverged"), "{message}");
    assert!(!config.output_dir.join("model.safetensors").exists(), "no model from a diverged run");
    let state: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(config.run_dir.join("checkpoint/state.json")).expect("the last good checkpoint"),
    )
    .expect("state");
    assert!(state["position"]["step"].as_u64().expect("step") >= 1);
}

/// 240 tagged sentences whose tags follow from the words: people, places, the rest O.
fn write_tagged(path: &Path) {
    let people = [("Ada", "Lovelace"), ("Alan", "Turing"), ("Grace", "Hopper"), ("Edsger", "Dijkstra")];
    let places = ["Paris", "London", "Berlin", "Tokyo", "Lagos"];
    let verbs = ["visited", "left", "loved", "described"];
    let mut conll = String::new();
    for i in 0..240 {
        let (first, last) = people[i % people.len()];
        let place = places[(i / 4) % places.len()];
        let verb = verbs[(i / 3) % verbs.len()];
        for (word, tag) in [(first, "B-person"), (last, "I-person"), (verb, "O"), (place, "B-location"), ("today", "O")]
        {
            conll.push_str(&format!("{word}\t{tag}\n"));
        }
        conll.push('\n');
    }
    std::fs::write(path, conll).expect("conll");
}

/// Token classification through the real ingest, clean and tokenize, then
/// `train` with the token head: it learns to tag (validated by entity F1),
/// and writes a folder transformers reads as a `BertForTokenClassification`.
#[test]
fn a_tagger_learns_and_writes_a_token_classification_folder() {
    use kiln_core::Task;
    let dir = tempfile::tempdir().expect("tempdir");
    let root = dir.path();
    write_model_folder(&root.join("pretrained"), &tiny_config(16));
    write_tagged(&root.join("train.conll"));
    let quiet = Progress::hidden();
    let ingest = IngestConfig {
        train_file: Some(root.join("train.conll")),
        validation_fraction: 0.2,
        test_fraction: 0.1,
        output_dir: root.join("raw"),
        ..IngestConfig::default()
    };
    kiln_data::ingest::run(&ingest, Task::TokenClassification, &quiet).expect("ingest");
    let clean = CleanConfig {
        input_dir: root.join("raw"),
        output_dir: root.join("interim"),
        dedup: false,
        drop_leaks: false,
        ..CleanConfig::default()
    };
    kiln_data::clean::run_tagged(&clean, &quiet).expect("clean");
    let tokenize = TokenizeConfig {
        input_dir: root.join("interim"),
        output_dir: root.join("processed"),
        model_dir: root.join("pretrained"),
        max_length: 16,
        window_overlap: 4,
        ..TokenizeConfig::default()
    };
    kiln_data::tokenize::run_tagged(&tokenize, &quiet).expect("tokenize");
    let config = TrainConfig {
        input_dir: root.join("processed"),
        model_dir: root.join("pretrained"),
        output_dir: root.join("out/model"),
        run_dir: root.join("out/run"),
        device: "cpu".into(),
        threads: 1,
        epochs: 8,
        batch_size: 16,
        learning_rate: 5e-3,
        loss: kiln_config::TrainLoss::Focal,
        ..TrainConfig::default()
    };
    let summary = {
        let _turn = exclusive();
        match kiln_train::run_for(&config, Task::TokenClassification, &quiet, &Control::default()).expect("trains") {
            Outcome::Finished(summary) => summary,
            Outcome::Interrupted { .. } | Outcome::Pruned { .. } => panic!("nothing interrupted this run"),
        }
    };
    let best = &summary.best.metrics;
    assert!(best.macro_f1 > 0.9 && best.accuracy > 0.9, "entity F1 and word accuracy on validation: {best:?}");

    let model_dir = &config.output_dir;
    let hf: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(model_dir.join("config.json")).expect("config.json"))
            .expect("json");
    assert_eq!(hf["architectures"], serde_json::json!(["BertForTokenClassification"]));
    assert_eq!(hf["id2label"]["0"], "B-location");
    assert!(hf.get("problem_type").is_none(), "no sequence problem type: {hf}");
    let settings = ModelSettings::load(&model_dir.join("kiln.toml")).expect("kiln.toml");
    assert_eq!(settings.task, Task::TokenClassification);
    let device = DeviceSpec::Cpu.device();
    let mut reloaded = kiln_model::BertTokenClassifier::new(&tiny_config(16), 5, &device);
    let report = load_safetensors(&mut reloaded, &model_dir.join("model.safetensors")).expect("weights");
    assert!(report.initialised.is_empty() && report.replaced_head.is_none(), "{report:?}");
}
