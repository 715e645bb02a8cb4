//! Property tests over every reader of outside input: the ingest readers (CSV,
//! TSV, JSONL, Parquet, tagged CoNLL and JSONL), a model folder's JSON files
//! and safetensors header, serve's JSON bodies and header values, the
//! prediction log and the tune journal. Inputs are random bytes, and valid
//! files mutated (bytes flipped, inserted, cut; lines repeated, dropped,
//! swapped). The property: no panic, and an error names the file (and, for
//! the line-based formats, where in it).
//!
//! `KILN_FUZZ_CASES` sets the inputs per reader: `make test` runs a few
//! hundred each, `make fuzz` over 100,000 in all. Each reader's count goes to
//! the test figures.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use kiln_config::{InputFormat, InvalidTags, TagScheme};
use kiln_core::Progress;
use kiln_data::read::{ColumnMap, LabelSource, ReadOptions, read_records};
use kiln_data::tagged::{TaggedOptions, read_tagged};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

/// Inputs per reader.
fn cases() -> u32 {
    std::env::var("KILN_FUZZ_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(200)
}

/// One change to a byte string.
#[derive(Debug, Clone)]
enum Mutation {
    Flip(usize, u8),
    Insert(usize, Vec<u8>),
    Cut(usize, usize),
    RepeatLine(usize),
    DropLine(usize),
    SwapLines(usize, usize),
}

/// Bytes that matter to the formats: delimiters, quotes, line ends, JSON
/// punctuation, a NUL, invalid UTF-8, long runs.
fn interesting_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 1..8),
        prop::sample::select(vec![
            b",".to_vec(),
            b"\t".to_vec(),
            b"\"".to_vec(),
            b"\n".to_vec(),
            b"\r\n".to_vec(),
            b"{".to_vec(),
            b"}".to_vec(),
            b"[".to_vec(),
            b"]".to_vec(),
            b":".to_vec(),
            b"null".to_vec(),
            b"-1".to_vec(),
            b"1e999".to_vec(),
            b"\\u0000".to_vec(),
            vec![0],
            vec![0xff, 0xfe],
            vec![0xc3],
            b"B-".to_vec(),
            b"I-".to_vec(),
            b"-DOCSTART-".to_vec(),
            vec![b'a'; 300],
        ]),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<u8>()).prop_map(|(at, byte)| Mutation::Flip(at, byte)),
        (any::<usize>(), interesting_bytes()).prop_map(|(at, bytes)| Mutation::Insert(at, bytes)),
        (any::<usize>(), 0usize..64).prop_map(|(at, len)| Mutation::Cut(at, len)),
        any::<usize>().prop_map(Mutation::RepeatLine),
        any::<usize>().prop_map(Mutation::DropLine),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::SwapLines(a, b)),
    ]
}

fn apply(seed: &[u8], mutations: &[Mutation]) -> Vec<u8> {
    let mut bytes = seed.to_vec();
    for mutation in mutations {
        match mutation {
            Mutation::Flip(at, byte) if !bytes.is_empty() => {
                let at = at % bytes.len();
                bytes[at] ^= byte | 1;
            }
            Mutation::Insert(at, inserted) => {
                let at = at % (bytes.len() + 1);
                bytes.splice(at..at, inserted.iter().copied());
            }
            Mutation::Cut(at, len) if !bytes.is_empty() => {
                let at = at % bytes.len();
                let end = (at + len).min(bytes.len());
                bytes.drain(at..end);
            }
            Mutation::RepeatLine(n) | Mutation::DropLine(n) | Mutation::SwapLines(n, _) => {
                let mut lines: Vec<Vec<u8>> = bytes.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let count = lines.len();
                match mutation {
                    Mutation::RepeatLine(_) => {
                        let line = lines[n % count].clone();
                        lines.insert(n % count, line);
                    }
                    Mutation::DropLine(_) if count > 1 => {
                        lines.remove(n % count);
                    }
                    Mutation::SwapLines(_, m) => lines.swap(n % count, m % count),
                    _ => {}
                }
                bytes = lines.join(&b'\n');
            }
            _ => {}
        }
    }
    bytes
}

/// Random bytes, or `seed` mutated a few times.
fn input(seed: Vec<u8>) -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        1 => prop::collection::vec(any::<u8>(), 0..512),
        4 => prop::collection::vec(mutation(), 0..6).prop_map(move |mutations| apply(&seed, &mutations)),
    ]
}

/// Runs `check` on `cases()` inputs from `strategy`; a panic fails the test
/// with the input that caused it. Records the count tried.
fn fuzz<T: std::fmt::Debug>(reader: &str, strategy: impl Strategy<Value = T>, check: impl Fn(T) -> Result<(), String>) {
    let config = Config { cases: cases(), failure_persistence: None, ..Config::default() };
    let mut runner = TestRunner::new(config);
    let tried = Arc::new(AtomicUsize::new(0));
    let counter = tried.clone();
    let outcome = runner.run(&strategy, |value| {
        counter.fetch_add(1, Ordering::Relaxed);
        let described = format!("{value:?}");
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(value))) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(message)) => Err(TestCaseError::fail(format!("{message}\ninput: {described:.2000}"))),
            Err(_) => Err(TestCaseError::fail(format!("panicked on {described:.2000}"))),
        }
    });
    if let Err(error) = outcome {
        panic!("{reader}: {error}");
    }
    kiln_testing::figure(&format!("fuzz {reader}: {} inputs, 0 panics", tried.load(Ordering::Relaxed)));
}

/// `bytes` as the file `name` in a fresh folder.
fn file_with(name: &str, bytes: &[u8]) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join(name);
    std::fs::write(&path, bytes).expect("write");
    (dir, path)
}

/// An error must name the file it is about.
fn names_the_file(error: &anyhow::Error, path: &Path) -> Result<(), String> {
    let message = format!("{error:#}");
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    if message.contains(&name) { Ok(()) } else { Err(format!("the error does not name {name}: {message}")) }
}

fn read_texts(path: &Path, format: InputFormat) -> anyhow::Result<usize> {
    let options = ReadOptions { format, has_header: true, quoting: true };
    let columns = ColumnMap { text: "text", label: LabelSource::Column("label"), id: None, id_prefix: "row" };
    Ok(read_records(path, &options, &columns, &Progress::hidden())?.len())
}

fn text_reader(reader: &str, name: &'static str, format: InputFormat, seed: &[u8]) {
    fuzz(reader, input(seed.to_vec()), move |bytes| {
        let (_dir, path) = file_with(name, &bytes);
        match read_texts(&path, format) {
            Ok(_) => Ok(()),
            Err(error) => names_the_file(&error, &path),
        }
    });
}

#[test]
fn the_csv_tsv_and_jsonl_readers_never_panic_and_name_the_file() {
    text_reader(
        "csv",
        "data.csv",
        InputFormat::Csv,
        b"text,label\n\"a good, long film\",positive\nawful,negative\n\"said \"\"no\"\"\",negative\n",
    );
    text_reader("tsv", "data.tsv", InputFormat::Tsv, b"text\tlabel\na good film\tpositive\nawful\tnegative\n");
    text_reader(
        "jsonl",
        "data.jsonl",
        InputFormat::Jsonl,
        b"{\"text\": \"a good film\", \"label\": \"positive\"}\n{\"text\": \"awful\", \"label\": \"negative\"}\n",
    );
}

#[test]
fn the_parquet_reader_never_panics_on_damaged_files() {
    use arrow_array::{RecordBatch, StringArray};
    let dir = tempfile::tempdir().expect("tempdir");
    let seed_path = dir.path().join("seed.parquet");
    let batch = RecordBatch::try_from_iter([
        ("text", Arc::new(StringArray::from(vec!["a good film", "awful", "fine"])) as _),
        ("label", Arc::new(StringArray::from(vec!["positive", "negative", "positive"])) as _),
    ])
    .expect("batch");
    let file = std::fs::File::create(&seed_path).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    let seed = std::fs::read(&seed_path).expect("read");
    assert_eq!(read_texts(&seed_path, InputFormat::Parquet).expect("the seed reads"), 3);
    let flips = prop::collection::vec((any::<usize>(), any::<u8>()), 1..4).prop_map(move |flips| {
        let mut bytes = seed.clone();
        for (at, byte) in flips {
            let at = at % bytes.len();
            bytes[at] ^= byte | 1;
        }
        bytes
    });
    fuzz("parquet", flips, |bytes| {
        let (_dir, path) = file_with("data.parquet", &bytes);
        match read_texts(&path, InputFormat::Parquet) {
            Ok(_) => Ok(()),
            Err(error) => names_the_file(&error, &path),
        }
    });
}

#[test]
fn the_tagged_readers_never_panic_and_name_the_file_and_line() {
    for (reader, name, format, seed) in [
        (
            "conll",
            "data.conll",
            InputFormat::Conll,
            &b"-DOCSTART- O\n\nEU B-ORG\nrejects O\nGerman B-MISC\ncall O\n\nPeter B-PER\nBlackburn I-PER\n"[..],
        ),
        (
            "tagged jsonl",
            "data.jsonl",
            InputFormat::Jsonl,
            &b"{\"tokens\": [\"EU\", \"rejects\"], \"tags\": [\"B-ORG\", \"O\"]}\n{\"tokens\": [\"Peter\"], \"tags\": [\"B-PER\"]}\n"[..],
        ),
    ] {
        fuzz(reader, input(seed.to_vec()), move |bytes| {
            let (_dir, path) = file_with(name, &bytes);
            let options = TaggedOptions {
                format,
                tokens_column: "tokens",
                tags_column: "tags",
                id_column: None,
                conll_tag_column: None,
                scheme: TagScheme::Iob2,
                invalid: InvalidTags::Error,
                id_prefix: "s",
            };
            match read_tagged(&path, &options, &Progress::hidden()) {
                Ok(_) => Ok(()),
                Err(error) => names_the_file(&error, &path),
            }
        });
    }
}

#[test]
fn a_model_folders_json_files_and_weights_header_never_panic_the_loader() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::classifier_folder(&model, &["a", "b"], 1).expect("a model folder");
    let read = |name: &str| std::fs::read(model.join(name)).expect("read");
    let (config, weights) = (read("config.json"), read("model.safetensors"));
    let labels = br#"{"labels": ["a", "b"]}"#.to_vec();
    // Only the header of the weights is read before the dimensions are checked.
    let header_end = 8 + u64::from_le_bytes(weights[..8].try_into().expect("8 bytes")) as usize;
    let header = weights[..header_end].to_vec();
    let files = (input(config), input(labels), input(header));
    fuzz("model folder (config.json, labels.json, safetensors header)", files, |(config, labels, header)| {
        let dir = tempfile::tempdir().expect("tempdir");
        for (name, bytes) in [("config.json", &config), ("labels.json", &labels), ("model.safetensors", &header)] {
            std::fs::write(dir.path().join(name), bytes).expect("write");
        }
        let folder = match kiln_core::ModelFolder::open(dir.path()) {
            Ok(folder) => folder,
            Err(error) => return names_the_file(&error, &dir.path().join("config.json")),
        };
        if let Err(error) = folder.labels() {
            let message = format!("{error:#}");
            if !message.contains("labels.json") && !message.contains("config.json") && !message.contains("id2label") {
                return Err(format!("the labels error names no file: {message}"));
            }
        }
        match kiln_model::BertConfig::from_folder(&folder) {
            Ok(bert) => match bert.check_fits(&dir.path().join("config.json"), &dir.path().join("model.safetensors")) {
                Ok(()) => Ok(()),
                Err(error) => {
                    let error = anyhow::Error::from(error);
                    names_the_file(&error, &dir.path().join("model.safetensors"))
                        .or_else(|_| names_the_file(&error, &dir.path().join("config.json")))
                }
            },
            Err(error) => names_the_file(&error.into(), &dir.path().join("config.json")),
        }
    });
}

#[test]
fn serve_bodies_and_header_values_never_panic() {
    let predict = br#"{"texts": ["my card", "a transfer"], "top_k": 2, "return_all_scores": false, "aggregation_strategy": "simple"}"#;
    let feedback = br#"{"request_id": "0b8c6d0e-2c1f-4c52-9a53-1a2b3c4d5e6f.00112233445566778899aabbccddeeff", "index": 0, "label": "cards", "entities": [{"entity_group": "PER", "start": 0, "end": 4}]}"#;
    let ids = kiln_serve::ids::RequestIds::new([9u8; 32]);
    fuzz("serve JSON bodies and header values", (input(predict.to_vec()), input(feedback.to_vec())), |(p, f)| {
        let _ = serde_json::from_slice::<kiln_serve::api::types::PredictRequest>(&p);
        let _ = serde_json::from_slice::<kiln_serve::api::types::FeedbackRequest>(&f);
        // Header values and ids: as text, as the server reads them.
        let text = String::from_utf8_lossy(&f);
        let _ = kiln_serve::ids::well_formed(&text) && ids.verify(&text, "app");
        let _ = kiln_config::ApiToken::parse(&text, "token-1");
        let _ = axum::http::HeaderValue::from_bytes(&p).map(|value| value.to_str().map(|v| v.len()));
        Ok(())
    });
}

#[test]
fn the_prediction_log_reader_never_panics_and_names_damaged_lines() {
    let seed = concat!(
        r#"{"type":"prediction","time":"2026-11-28T10:00:00.000Z","request_id":"r1","client":"app","index":0,"text":"hi","label":"a","score":0.9,"margin":0.5,"entropy":0.3,"tokens":3,"model_version":"v1","latency_ms":2.0}"#,
        "\n",
        r#"{"type":"feedback","time":"2026-11-28T10:00:05.000Z","request_id":"r1","client":"app","index":0,"label":"b","model_version":"v1"}"#,
        "\n",
        r#"{"type":"error","time":"2026-11-28T10:00:06.000Z","request_id":"r2","status":429,"code":"queue_full"}"#,
        "\n",
    );
    fuzz("prediction log", input(seed.as_bytes().to_vec()), |bytes| {
        let (dir, path) = file_with("predictions-1-host-1-0001.jsonl", &bytes);
        let scan = kiln_core::prediction_log::read_dir(dir.path()).map_err(|e| format!("{e:#}"))?;
        for damaged in &scan.damaged {
            if damaged.file != path || damaged.line == 0 {
                return Err(format!("a damaged line without its file and line: {damaged:?}"));
            }
        }
        let _ = kiln_monitor::traffic::Traffic::from_scan(scan);
        Ok(())
    });
}

#[test]
fn the_tune_journal_reader_never_panics_and_names_the_line() {
    use kiln_tune::journal::{Entry, Journal, StudyHeader, TrialState};
    let header = StudyHeader {
        study: "s".into(),
        metric: kiln_core::Metric::MacroF1,
        space: Default::default(),
        sampler: kiln_config::SamplerKind::Random,
        pruner: kiln_config::PrunerKind::None,
        seed: 1,
        created_ms: 1,
    };
    let entries = [
        Entry::Study(header),
        Entry::Claim { trial: 0, attempt: 1, worker: "w".into(), params: Default::default(), time_ms: 2 },
        Entry::Report { trial: 0, attempt: 1, step: 10, epoch: 0.5, value: 0.7, time_ms: 3 },
        Entry::Finish {
            trial: 0,
            attempt: 1,
            state: TrialState::Complete,
            value: Some(0.8),
            seconds: 1.0,
            run_id: None,
            message: None,
            time_ms: 4,
        },
    ];
    let seed: String = entries.iter().map(|e| serde_json::to_string(e).expect("json") + "\n").collect();
    fuzz("tune journal", input(seed.into_bytes()), |bytes| {
        let dir = tempfile::tempdir().expect("tempdir");
        let journal = Journal::in_dir(dir.path());
        std::fs::write(journal.path(), &bytes).expect("write");
        match journal.read() {
            Ok(_) => Ok(()),
            Err(error) => names_the_file(&error, journal.path()),
        }
    });
}
