//! The `runs` and `registry` binaries from outside: exit codes, messages, and
//! a panic that exits 2 with kiln's bug message (never Rust's 101).

use std::process::{Command, Output};

fn run(binary: &str, args: &[&str], envs: &[(&str, &str)]) -> Output {
    let path = match binary {
        "runs" => env!("CARGO_BIN_EXE_runs"),
        _ => env!("CARGO_BIN_EXE_registry"),
    };
    let mut command = Command::new(path);
    command.args(args).env_remove("KILN_CONFIG").env_remove("KILN_TEST_PANIC");
    for (key, value) in envs {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn an_empty_registry_lists_nothing_and_refuses_unknown_versions_with_exit_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry").display().to_string();
    let listed = run("registry", &["--registry-dir", &registry, "list"], &[]);
    assert_eq!(listed.status.code(), Some(0), "{}", stderr(&listed));
    assert!(listed.stdout.is_empty());

    let refused = run("registry", &["--registry-dir", &registry, "promote", "v9"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stderr(&refused).contains("no version 9"), "{}", stderr(&refused));

    let not_a_version = run("registry", &["--registry-dir", &registry, "show", "latest"], &[]);
    assert_eq!(not_a_version.status.code(), Some(2), "clap's usage error");
    assert!(stderr(&not_a_version).contains("'latest' is not a version"), "{}", stderr(&not_a_version));
}

#[test]
fn runs_names_a_missing_run_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs_dir = dir.path().display().to_string();
    let output = run("runs", &["--runs-dir", &runs_dir, "show", "no-such-run"], &[]);
    assert_eq!(output.status.code(), Some(1), "{}", stderr(&output));
    assert!(stderr(&output).contains("no-such-run"), "{}", stderr(&output));
}

#[test]
fn a_panic_exits_2_with_the_bug_message_and_where_it_happened() {
    let dir = tempfile::tempdir().expect("tempdir");
    let runs_dir = dir.path().display().to_string();
    let output = run("runs", &["--runs-dir", &runs_dir], &[("KILN_TEST_PANIC", "runs")]);
    let message = stderr(&output);
    assert_eq!(output.status.code(), Some(2), "{message}");
    assert!(message.contains("runs: error: panicked: KILN_TEST_PANIC asked runs to panic at "), "{message}");
    assert!(message.contains("this is a bug in kiln"), "{message}");
    // Another stage's name does not trigger it.
    let output = run("runs", &["--runs-dir", &runs_dir], &[("KILN_TEST_PANIC", "eval")]);
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
}
