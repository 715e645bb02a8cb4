//! Sharded batch prediction through the `predict` binary, as a Kubernetes
//! Indexed Job runs it: N shards, then `--merge`, on every input format.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;

use arrow_array::{ArrayRef, RecordBatch, StringArray};
use kiln_data::parquet::read_parquet;

const SHARDS: usize = 3;

fn predict(args: &[&str], envs: &[(&str, &str)]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_predict"))
        .args(args)
        .args(["--quiet", "--device", "cpu", "--threads", "1"])
        .env_remove("KILN_CONFIG")
        .env_remove("JOB_COMPLETION_INDEX")
        .env_remove("KILN_SHARD_COUNT")
        .envs(envs.iter().copied())
        .output()
        .expect("predict runs")
}

fn ok(output: Output) -> Output {
    assert!(output.status.success(), "predict failed:\n{}", String::from_utf8_lossy(&output.stderr));
    output
}

/// 23 texts in CSV, TSV, JSONL and Parquet (row groups of 4), with ids
/// from the file's rows (no id column), so ids check the row numbering too.
fn inputs(dir: &Path) -> Vec<PathBuf> {
    let texts: Vec<String> = (1..=23)
        .map(|i| {
            format!("{} film number {i}, {}", ["A wonderful", "A dreadful", "An odd"][i % 3], "and more ".repeat(i % 5))
        })
        .collect();
    let delimited = |separator: &str| -> String {
        let rows = texts.iter().map(|t| format!("\"{t}\"{separator}{}", t.len()));
        std::iter::once(format!("text{separator}length")).chain(rows).collect::<Vec<_>>().join("\n")
    };
    let jsonl: Vec<String> = texts.iter().map(|t| serde_json::json!({ "text": t }).to_string()).collect();
    let files =
        [("reviews.csv", delimited(",")), ("reviews.tsv", delimited("\t")), ("reviews.jsonl", jsonl.join("\n"))];
    let mut paths: Vec<PathBuf> = files
        .into_iter()
        .map(|(name, body)| {
            let path = dir.join(name);
            std::fs::write(&path, body).expect("input");
            path
        })
        .collect();
    let parquet = dir.join("reviews.parquet");
    let column: ArrayRef = Arc::new(StringArray::from_iter_values(&texts));
    let batch = RecordBatch::try_from_iter([("text", column)]).expect("batch");
    let properties = parquet::file::properties::WriterProperties::builder().set_max_row_group_size(4).build();
    let file = std::fs::File::create(&parquet).expect("create");
    let mut writer = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), Some(properties)).expect("writer");
    writer.write(&batch).expect("write");
    writer.close().expect("close");
    paths.push(parquet);
    paths
}

/// On each format: three shards (one taking its index from
/// `JOB_COMPLETION_INDEX`, as an Indexed Job's pod does) and a merge give
/// exactly the table one unsharded run writes.
#[test]
fn shards_merge_into_what_one_process_predicts_in_every_format() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::classifier_folder(&model, &["negative", "neutral", "positive"], 7).expect("model");
    let model = model.display().to_string();
    for input in inputs(dir.path()) {
        let name = input.file_name().expect("name").to_string_lossy().into_owned();
        let input = input.display().to_string();
        let whole = dir.path().join(format!("{name}.whole.parquet")).display().to_string();
        let merged_path = dir.path().join(format!("{name}.sharded.parquet"));
        let merged = merged_path.display().to_string();
        let common = ["--input-file", &input, "--model-dir", &model, "--top-k", "2", "--chunk-rows", "4"];
        ok(predict(&[&common[..], &["--output-file", &whole]].concat(), &[]));

        let count = SHARDS.to_string();
        for index in 0..SHARDS {
            let index = index.to_string();
            let sharded = [&common[..], &["--output-file", &merged, "--shard-count", &count]].concat();
            if index == "1" {
                ok(predict(&sharded, &[("JOB_COMPLETION_INDEX", &index)]));
            } else {
                ok(predict(&[&sharded[..], &["--shard-index", &index]].concat(), &[]));
            }
        }
        let parts = dir.path().join(format!("{name}.sharded.parts"));
        let part_rows: Vec<usize> = (0..SHARDS)
            .map(|i| {
                read_parquet(&parts.join(format!("part-{i}-of-{SHARDS}.parquet")), "predict").expect("part").num_rows()
            })
            .collect();
        assert_eq!(part_rows.iter().sum::<usize>(), 23, "{name}: the parts hold every row once: {part_rows:?}");
        assert!(part_rows.iter().all(|&rows| rows > 0), "{name}: every shard had work: {part_rows:?}");
        assert!(!merged_path.exists(), "shards write parts, not the output");

        ok(predict(&["--merge", "--output-file", &merged, "--shard-count", &count], &[]));
        let expected = read_parquet(Path::new(&whole), "predict").expect("whole");
        let got = read_parquet(&merged_path, "predict").expect("merged");
        assert_eq!(got.schema(), expected.schema(), "{name}");
        assert_eq!(got, expected, "{name}: the merge is the unsharded table, row for row");
    }
}

/// A merge refuses a missing part, parts of another input, and a shard
/// index outside the count, writing nothing.
#[test]
fn a_merge_refuses_parts_that_do_not_add_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let model = dir.path().join("model");
    kiln_testing::classifier_folder(&model, &["negative", "positive"], 3).expect("model");
    let model = model.display().to_string();
    let paths = inputs(dir.path());
    let (csv, jsonl) = (paths[0].display().to_string(), paths[2].display().to_string());
    let output = dir.path().join("out.parquet");
    let out = output.display().to_string();
    let shard = |input: &str, index: &str| {
        predict(
            &[
                "--input-file",
                input,
                "--model-dir",
                &model,
                "--output-file",
                &out,
                "--shard-count",
                "2",
                "--shard-index",
                index,
            ],
            &[],
        )
    };
    ok(shard(&csv, "0"));
    let merge = || predict(&["--merge", "--output-file", &out, "--shard-count", "2"], &[]);
    let refused = merge();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("parts 1 of 2 are missing"), "{stderr}");

    ok(shard(&jsonl, "1"));
    let refused = merge();
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("reviews.jsonl") && stderr.contains("reviews.csv"), "names both inputs: {stderr}");
    assert!(!output.exists(), "a refused merge writes nothing");

    let refused = shard(&csv, "2");
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("predict.shard_index") && stderr.contains("below predict.shard_count (2)"), "{stderr}");

    ok(shard(&csv, "1"));
    ok(merge());
    assert_eq!(read_parquet(&output, "predict").expect("merged").num_rows(), 23);
}
