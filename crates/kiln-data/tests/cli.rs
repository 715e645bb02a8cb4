//! The data stages' binaries from outside: a bad input file is refused with
//! exit 1, naming the file, the row and the column, and leaves nothing behind;
//! `--print-done-files` names the file each stage writes last.

use std::path::Path;
use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], dir: &Path) -> Output {
    let path = match binary {
        "ingest" => env!("CARGO_BIN_EXE_ingest"),
        "clean" => env!("CARGO_BIN_EXE_clean"),
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
    for stage in ["ingest", "clean", "tokenize"] {
        let output = run(stage, &["--print-done-files"], dir.path());
        assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
        let done = String::from_utf8_lossy(&output.stdout);
        assert!(done.contains("ingest = \"data/raw/manifest.json\""), "{done}");
        assert!(done.contains("clean = \"data/interim/clean_report.json\""), "{done}");
        assert!(done.contains("tokenize = \"data/processed/tokenize_report.json\""), "{done}");
    }
}
