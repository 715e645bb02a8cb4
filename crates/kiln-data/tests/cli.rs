//! The data stages' binaries from outside: a bad input file is refused with
//! exit 1, naming the file, the row and the column, and leaves nothing behind;
//! `--print-done-files` names the file each stage writes last.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use kiln_core::profile::DataProfile;
use kiln_core::{Manifest, Split, StagedOutput};
use kiln_data::schema::TextTable;

fn run(binary: &str, args: &[&str], dir: &Path) -> Output {
    let path = match binary {
        "ingest" => env!("CARGO_BIN_EXE_ingest"),
        "clean" => env!("CARGO_BIN_EXE_clean"),
        "profile" => env!("CARGO_BIN_EXE_profile"),
        _ => env!("CARGO_BIN_EXE_tokenize"),
    };
    Command::new(path)
        .args(args)
        .arg("--quiet")
        .current_dir(dir)
        .env_remove("KILN_CONFIG")
        .env_remove("KILN_TEST_PANIC")
        .output()
        .expect("the binary runs")
}

#[test]
fn ingest_names_the_bad_row_and_column_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("data.csv"), "text,label\ngood film,pos\n\"unterminated,neg\n").expect("write");
    let output = run("ingest", &["--train-file", "data.csv", "--output-dir", "raw"], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("data.csv"), "{stderr}");
    assert!(!dir.path().join("raw/manifest.json").exists(), "a refused ingest commits nothing");
}

#[test]
fn each_data_stage_names_its_done_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    for stage in ["ingest", "clean", "tokenize", "profile"] {
        let output = run(stage, &["--print-done-files"], dir.path());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let done = String::from_utf8_lossy(&output.stdout);
        assert!(done.contains("ingest = \"data/raw/manifest.json\""), "{done}");
        assert!(done.contains("clean = \"data/interim/clean_report.json\""), "{done}");
        assert!(done.contains("tokenize = \"data/processed/tokenize_report.json\""), "{done}");
        assert!(done.contains("profile = \"artifacts/profile/manifest.json\""), "{done}");
    }
}

/// The pre-trained MiniLM's tokenizer, which `make setup` (and so `make test`)
/// installs: missing is a broken set-up, not a reason to skip.
fn pretrained() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pretrained/all-MiniLM-L6-v2");
    assert!(dir.join("tokenizer.json").exists(), "{} is missing: run `make setup`", dir.display());
    dir.canonicalize().expect("model dir")
}

fn table(rows: &[(&str, &str)]) -> TextTable {
    TextTable {
        ids: (1..=rows.len()).map(|i| format!("r{i}")).collect(),
        texts: rows.iter().map(|(text, _)| (*text).to_owned()).collect(),
        labels: rows.iter().map(|(_, label)| (*label).to_owned()).collect(),
        ..TextTable::default()
    }
}

fn write_splits(dir: &Path, splits: [TextTable; 3]) {
    let mut staged = StagedOutput::new(dir).expect("staged");
    for (split, table) in Split::ALL.into_iter().zip(splits) {
        table.write(&mut staged, &split.file_name()).expect("write");
    }
    staged.commit("manifest.json", &Manifest::new("test", &(), &())).expect("commit");
}

#[test]
fn profile_counts_what_the_data_holds() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = pretrained().display().to_string();
    let long = "the film goes on and on ".repeat(10);
    write_splits(
        &dir.path().join("interim"),
        [
            table(&[
                ("a good film", "pos"),
                ("a good film", "pos"),
                ("a great good film", "pos"),
                ("a bad film", "neg"),
                ("!!! ???", "neg"),
                ("zero\u{200b}width", "pos"),
                ("ok", "pos"),
                (&long, "neg"),
                ("good acting", "pos"),
                ("good story", "pos"),
                ("really good", "pos"),
            ]),
            table(&[("good", "pos"), ("bad", "neg")]),
            table(&[("fine film", "pos")]),
        ],
    );
    let args = ["--input-dir", "interim", "--output-dir", "profile", "--model-dir", &model, "--max-length", "16"];
    let output = run("profile", &[&args[..], &["--long-chars", "100", "--examples", "1"]].concat(), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let out = dir.path().join("profile");
    let profile = DataProfile::load(&out.join("profile.json")).expect("profile.json");
    assert_eq!((profile.kind.as_str(), profile.max_length), ("text", 16));
    let train = &profile.splits["train"];
    assert_eq!(train.rows, 11);
    assert_eq!(train.labels.iter().map(|(l, n)| (l.as_str(), *n)).collect::<Vec<_>>(), [("neg", 3), ("pos", 8)]);
    assert_eq!(train.imbalance_ratio, Some(8.0 / 3.0));
    assert_eq!((train.duplicates, train.truncated), (1, 1), "one repeated text, one past 16 tokens");
    assert_eq!(train.tokens.max as usize, 2 + long.split_whitespace().count(), "[CLS] words [SEP], uncut");
    assert_eq!(train.chars.as_ref().map(|c| c.max as usize), Some(long.chars().count()));
    assert_eq!(train.tokens_histogram.total(), 11);
    assert_eq!(train.tokens_histogram.overflow, 1, "the long text lies past max_length");
    for (odd, count) in
        [(&train.near_empty, 1), (&train.non_printing, 1), (&train.very_long, 1), (&train.mostly_punctuation, 1)]
    {
        assert_eq!(odd.count, count, "{odd:?}");
        assert_eq!(odd.examples.len(), 1);
    }
    assert_eq!(train.non_printing.examples[0].text, "zero\\u{200b}width", "invisible characters are shown");
    let top: Vec<(&str, u64)> = train.top_tokens["pos"].iter().take(3).map(|t| (t.token.as_str(), t.count)).collect();
    assert_eq!(top, [("good", 6), ("a", 3), ("film", 3)], "by count, ties by token");
    // "good" only in pos; "film" in both labels at a like rate.
    let distinctive: Vec<&str> = train.distinctive_tokens["pos"].iter().map(|t| t.token.as_str()).collect();
    assert_eq!(distinctive, ["good"], "{:?}", train.distinctive_tokens);
    assert!(train.distinctive_tokens["pos"][0].z > 1.96 && train.distinctive_tokens["pos"][0].lift > 1.0);
    assert!(train.top_tokens["neg"].iter().all(|t| t.token != "!" && t.token != "[CLS]"), "no punctuation or specials");
    assert_eq!(profile.splits["test"].labels.len(), 1);
    assert_eq!(profile.splits["test"].imbalance_ratio, Some(1.0));

    let report = std::fs::read_to_string(out.join("report.md")).expect("report.md");
    assert!(report.contains("| rows | 1 | 11 | 2 |"), "test, train, validation columns: {report}");
    assert!(report.contains("`r6`: zero\\u{200b}width"), "{report}");
    for picture in ["class_balance.svg", "token_lengths.svg", "char_lengths.svg", "tokens_per_label.svg"] {
        let svg = std::fs::read_to_string(out.join(picture)).expect(picture);
        assert!(svg.starts_with("<svg"), "{picture}");
    }
    let lengths = std::fs::read_to_string(out.join("plot_token_lengths.csv")).expect("csv");
    assert_eq!(lengths.lines().next(), Some("tokens,test,train,validation"));
    assert_eq!(lengths.lines().count(), 1 + 32, "a row per bin");
    let labels = std::fs::read_to_string(out.join("plot_labels.csv")).expect("csv");
    assert_eq!(labels, "label,test,train,validation\nneg,0,3,1\npos,1,8,1\n");
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("manifest.json")).expect("manifest")).expect("json");
    assert_eq!(manifest["inputs"].as_array().map(Vec::len), Some(3));

    // New data by hand: one unlabelled file.
    std::fs::write(dir.path().join("new.csv"), "body\nsome new text\n\"another, new one\"\n").expect("write");
    let file_args = ["--input-file", "new.csv", "--text-column", "body", "--output-dir", "new"];
    let output = run("profile", &[&file_args[..], &args[4..]].concat(), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let profile = DataProfile::load(&dir.path().join("new/profile.json")).expect("profile.json");
    let new = &profile.splits["new.csv"];
    assert_eq!((new.rows, new.imbalance_ratio), (2, None));
    assert_eq!(new.labels.keys().collect::<Vec<_>>(), ["(unlabelled)"]);

    // Tokenized splits: no text, so no character lengths; a cut text has max_length tokens.
    let tokenize = ["--input-dir", "interim", "--output-dir", "processed", "--model-dir", &model, "--max-length", "16"];
    assert!(run("tokenize", &tokenize, dir.path()).status.success());
    let processed_args = ["--input-dir", "processed", "--output-dir", "processed-profile"];
    let output = run("profile", &[&processed_args[..], &args[4..]].concat(), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let profile = DataProfile::load(&dir.path().join("processed-profile/profile.json")).expect("profile.json");
    let train = &profile.splits["train"];
    assert_eq!((profile.kind.as_str(), train.rows, train.truncated, train.chars.is_none()), ("processed", 11, 1, true));
    assert_eq!(train.labels["pos"], 8, "labels come back from labels.json");
    assert_eq!(train.duplicates, 1, "repeated token sequences count as duplicates");
}

#[test]
fn profile_refuses_a_missing_or_foreign_input_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = pretrained().display().to_string();
    let output = run("profile", &["--input-dir", "nope", "--output-dir", "out", "--model-dir", &model], dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("nope/train.parquet"), "{stderr}");
    assert!(!dir.path().join("out/manifest.json").exists());
    assert!(!dir.path().join("out/profile.json").exists());

    std::fs::write(dir.path().join("new.csv"), "text\nhello\n").expect("write");
    let args = ["--input-file", "new.csv", "--text-column", "body", "--output-dir", "out", "--model-dir", &model];
    let output = run("profile", &args, dir.path());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("new.csv") && stderr.contains("body"), "{stderr}");
    assert!(!dir.path().join("out/profile.json").exists());
}

/// A small CoNLL file: two documents, IOB1 tags, a tab-only blank line.
/// Two words are whitespace only, tagged `O` (as in some Twitter corpora).
const TAGGED: &str = "-DOCSTART- O\n\nI\tO\nlove\tO\nNew\tI-location\nYork\tI-location\n\t\n\
                      Apple\tI-corporation\nsells\tO\n \tO\nthe\tO\niPhone\tI-product\n\n-DOCSTART- O\n\n\
                      Ada\tI-person\nLovelace\tI-person\nwrote\tO\n\tO\n\nhi\tO\n";

#[test]
fn ingest_reads_tagged_sentences_into_iob2_and_carves_the_splits() {
    let dir = tempfile::tempdir().expect("tempdir");
    std::fs::write(dir.path().join("train.conll"), TAGGED.repeat(5)).expect("write");
    let args = ["--task", "token_classification", "--train-file", "train.conll", "--tag-scheme", "iob1"];
    let output = run("ingest", &[&args[..], &["--output-dir", "raw", "--test-fraction", "0.2"]].concat(), dir.path());
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("raw/manifest.json")).expect("manifest")).expect("json");
    let report = &manifest["report"];
    assert_eq!(report["task"], "token_classification");
    assert_eq!(manifest["config"]["tag_scheme"], "iob1", "the file's scheme is recorded");
    let splits = Split::ALL.map(|split| {
        kiln_data::schema::TaggedTable::read(&split.path_in(&dir.path().join("raw")), "ingest").expect("a tagged split")
    });
    assert_eq!(splits.iter().map(|t| t.len()).sum::<usize>(), 20, "every sentence in one split");
    assert_eq!(splits[2].len(), 4, "a fifth for test");
    let all: Vec<(&Vec<String>, &Vec<String>)> = splits.iter().flat_map(|t| t.tokens.iter().zip(&t.tags)).collect();
    let apple = all.iter().find(|(words, _)| words[0] == "Apple").expect("the Apple sentence");
    assert_eq!(apple.1, &["B-corporation", "O", "O", "B-product"], "IOB1 read as IOB2");
    let words: u64 = Split::ALL.iter().map(|s| report["splits"][s.name()]["words"].as_u64().expect("words")).sum();
    assert_eq!(words, 5 * 12);
    let people: u64 =
        Split::ALL.iter().map(|s| report["splits"][s.name()]["labels"]["person"].as_u64().unwrap_or(0)).sum();
    assert_eq!(people, 5, "entities counted per type");
    assert_eq!(report["sources"][0]["whitespace_words"], 10, "two per copy, dropped and counted");
}

#[test]
fn ingest_refuses_bad_tagged_files_with_file_and_line_and_writes_nothing() {
    let cases = [
        ("a.conll", "Ada\tB-person\nLovelace\n", "a.conll: line 2: expected a word and its tag"),
        ("b.conll", "the\tO\nYork\tI-location\n", "b.conll: line 2: \"I-location\" continues no entity"),
        ("c.conll", "\n\n-DOCSTART- O\n", "c.conll: no sentences"),
        ("w.conll", "New\tB-location\n \tI-location\n", "w.conll: line 2: a word of whitespace only tagged"),
        (
            "d.jsonl",
            "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n",
            "d.jsonl: line 1: 2 words in 'tokens' but 1 tags",
        ),
    ];
    for (name, text, want) in cases {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join(name), text).expect("write");
        let output =
            run("ingest", &["--task", "token_classification", "--train-file", name, "--output-dir", "raw"], dir.path());
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(1), "{name}: {stderr}");
        assert!(stderr.contains(want), "{want}: {stderr}");
        let left = std::fs::read_dir(dir.path().join("raw")).map(|d| d.count()).unwrap_or(0);
        assert_eq!(left, 0, "{name}: a refused ingest leaves nothing");
    }
}

/// WNUT-17 from `../shared` (kiln's own checkouts; `make test` runs it there).
#[test]
#[ignore = "needs ../shared/data/wnut17 (kiln's own checkouts; make test runs it there)"]
fn wnut17_ingests_as_its_source_counts_it_and_every_word_keeps_its_tag() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    assert!(repo.join("../shared/data/wnut17/train.conll").exists(), "WNUT-17 is not in ../shared/data");
    let dir = tempfile::tempdir().expect("tempdir");
    let (raw, interim, processed) = (dir.path().join("raw"), dir.path().join("interim"), dir.path().join("processed"));
    let config = repo.join("configs/wnut17.toml");
    let stage = |binary: &str, args: &[&std::ffi::OsStr]| {
        let output = Command::new(binary)
            .args(["--quiet", "--config"])
            .arg(&config)
            .args(args)
            .current_dir(&repo)
            .env_remove("KILN_CONFIG")
            .env_remove("KILN_TASK")
            .output()
            .expect("the stage runs");
        assert!(output.status.success(), "{binary}: {}", String::from_utf8_lossy(&output.stderr));
    };
    let os = |s: &'static str| std::ffi::OsStr::new(s);
    stage(env!("CARGO_BIN_EXE_ingest"), &[os("--output-dir"), raw.as_os_str()]);
    // SOURCE.md: 3,394 / 1,009 / 1,287 sentences; entities = the B- tags of each file.
    let tables = Split::ALL.map(|s| kiln_data::schema::TaggedTable::read(&s.path_in(&raw), "ingest").expect("split"));
    assert_eq!(tables.each_ref().map(|t| t.len()), [3394, 1009, 1287]);
    for (table, file) in tables.iter().zip(["train", "dev", "test"]) {
        let source = std::fs::read_to_string(repo.join(format!("../shared/data/wnut17/{file}.conll"))).expect("source");
        let b_tags = source.lines().filter(|l| l.split('\t').nth(1).is_some_and(|t| t.starts_with("B-"))).count();
        let spans: usize = table
            .tags
            .iter()
            .map(|tags| kiln_core::entities::spans(tags, kiln_core::entities::Mode::Strict).len())
            .sum();
        assert_eq!(spans, b_tags, "{file}");
    }
    stage(env!("CARGO_BIN_EXE_clean"), &[os("--input-dir"), raw.as_os_str(), os("--output-dir"), interim.as_os_str()]);
    // Short windows, so that many sentences of real text are split.
    let args = [
        os("--input-dir"),
        interim.as_os_str(),
        os("--output-dir"),
        processed.as_os_str(),
        os("--max-length"),
        os("32"),
        os("--window-overlap"),
        os("8"),
        os("--model-dir"),
        pretrained().into_os_string().leak(),
    ];
    stage(env!("CARGO_BIN_EXE_tokenize"), &args);
    let labels = kiln_core::LabelMap::load(&processed.join("labels.json")).expect("labels.json");
    assert_eq!(labels.len(), 13, "B- and I- of six types, and O");
    for split in Split::ALL {
        let table = kiln_data::schema::TaggedTable::read(&split.path_in(&interim), "clean").expect("interim");
        let examples =
            kiln_data::processed::read_tagged_examples(&split.path_in(&processed), &labels).expect("processed");
        assert!(examples.len() > table.len(), "{split}: long sentences are windowed");
        check_words_are_labelled(&examples, &table, &labels);
    }
}

fn tagged_table(sentences: &[(&str, &str)]) -> kiln_data::schema::TaggedTable {
    let split = |text: &str| text.split(' ').map(str::to_owned).collect::<Vec<_>>();
    kiln_data::schema::TaggedTable {
        ids: (1..=sentences.len()).map(|i| format!("s{i}")).collect(),
        tokens: sentences.iter().map(|(words, _)| split(words)).collect(),
        tags: sentences.iter().map(|(_, tags)| split(tags)).collect(),
    }
}

fn write_tagged(dir: &Path, splits: [kiln_data::schema::TaggedTable; 3]) {
    let mut staged = StagedOutput::new(dir).expect("staged");
    for (split, table) in Split::ALL.into_iter().zip(splits) {
        table.write(&mut staged, &split.file_name()).expect("write");
    }
    staged.commit("clean_report.json", &Manifest::new("test", &(), &())).expect("commit");
}

/// Every word with a sub-word is read by exactly one window, whose label at
/// that sub-word is the word's tag.
fn check_words_are_labelled(
    examples: &[kiln_core::TaggedExample],
    table: &kiln_data::schema::TaggedTable,
    labels: &kiln_core::LabelMap,
) {
    use kiln_text::align::reading_windows;
    for (id, (words, tags)) in table.ids.iter().zip(table.tokens.iter().zip(&table.tags)) {
        let windows: Vec<&kiln_core::TaggedExample> = examples.iter().filter(|e| &e.id == id).collect();
        let word_ids: Vec<&[i32]> = windows.iter().map(|e| e.word_ids.as_slice()).collect();
        assert!(!windows.is_empty(), "{id} has windows");
        for (word, reading) in reading_windows(&word_ids, words.len()).into_iter().enumerate() {
            let Some((window, position)) = reading else { continue };
            let want = labels.id(&tags[word]).expect("a known tag") as i32;
            assert_eq!(windows[window].labels[position], want, "{id}, word {word} ({})", words[word]);
        }
    }
}

#[test]
fn tokenize_aligns_tags_to_sub_words_in_windows_and_refuses_unknown_tags() {
    let dir = tempfile::tempdir().expect("tempdir");
    let interim = dir.path().join("interim");
    let long = "Ada Lovelace wrote notes on the Analytical Engine of Charles Babbage in London in 1843 for Taylor 's Scientific Memoirs";
    let long_tags =
        "B-person I-person O O O O B-product I-product O B-person I-person O B-location O O O B-group O O O";
    let train = tagged_table(&[(long, long_tags), ("Paris rocks", "B-location O")]);
    write_tagged(
        &interim,
        [train.clone(), tagged_table(&[("hello Paris", "O B-location")]), tagged_table(&[("Zurich", "B-location")])],
    );
    let model = pretrained();
    let config = kiln_config::TokenizeConfig {
        input_dir: interim.clone(),
        output_dir: dir.path().join("processed"),
        model_dir: model.clone(),
        max_length: 12,
        window_overlap: 4,
        ..kiln_config::TokenizeConfig::default()
    };
    let report = kiln_data::tokenize::run_tagged(&config, &kiln_core::Progress::hidden()).expect("tokenizes");
    let labels = kiln_core::LabelMap::load(&config.output_dir.join("labels.json")).expect("labels.json");
    assert_eq!(labels.len(), 9, "B- and I- of train's four types, and O: {:?}", labels.labels());
    assert!(labels.id("I-location").is_some(), "train has B-location only");
    let examples = kiln_data::processed::read_tagged_examples(&Split::Train.path_in(&config.output_dir), &labels)
        .expect("examples");
    let long_windows = examples.iter().filter(|e| e.id == "s1").count();
    assert!(long_windows > 2, "the long sentence became {long_windows} windows");
    assert!(examples.iter().all(|e| e.input_ids.len() <= 12));
    assert_eq!(report.words[&Split::Train].windows, examples.len());
    assert_eq!((report.words[&Split::Train].long_sentences, report.words[&Split::Train].words_cut), (1, 0));
    check_words_are_labelled(&examples, &train, &labels);

    // A tag train never has: an error that names it, or the sentence goes.
    write_tagged(
        &interim,
        [train.clone(), tagged_table(&[("hello Paris", "O B-location")]), tagged_table(&[("Apple", "B-corporation")])],
    );
    let error = kiln_data::tokenize::run_tagged(&config, &kiln_core::Progress::hidden()).expect_err("unknown tag");
    assert!(format!("{error:#}").contains("test.parquet: row 1 (id 's1') has the tag 'B-corporation'"), "{error:#}");
    let dropping = kiln_config::TokenizeConfig { unknown_labels: kiln_config::UnknownLabelPolicy::Drop, ..config };
    let report = kiln_data::tokenize::run_tagged(&dropping, &kiln_core::Progress::hidden()).expect("drops");
    assert_eq!(report.splits[&Split::Test].dropped_unknown_label, 1);
}
