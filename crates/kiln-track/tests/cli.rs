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

/// An export-shaped folder with `weights` as its weights' bytes.
fn export(root: &std::path::Path, weights: &str) -> std::path::PathBuf {
    let dir = root.join(format!("export-{weights}"));
    std::fs::create_dir_all(&dir).expect("mkdir");
    std::fs::write(dir.join("model.safetensors"), weights).expect("weights");
    std::fs::write(dir.join("kiln.toml"), "[train]\nseed = 1\n").expect("settings");
    dir
}

/// SIGKILL at every step of `registry add` (its test-build pause points): the
/// next run sees the old state or the new one, never neither, and nothing is lost.
#[test]
fn an_add_killed_at_any_step_leaves_the_old_or_the_new_registry() {
    use std::io::{BufRead, BufReader};
    for point in ["registry-add:copied", "registry-add:renamed", "registry-add:saved"] {
        let dir = tempfile::tempdir().expect("tempdir");
        let registry = dir.path().join("registry");
        let flag = registry.display().to_string();
        let (first, second) = (export(dir.path(), "first"), export(dir.path(), "second"));
        let added =
            run("registry", &["--registry-dir", &flag, "--model-dir", &first.display().to_string(), "add"], &[]);
        assert!(added.status.success(), "{}", stderr(&added));

        let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
            .args(["--registry-dir", &flag, "--model-dir", &second.display().to_string(), "add"])
            .env_remove("KILN_CONFIG")
            .env("KILN_TEST_PAUSE_AT", point)
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("registry starts");
        let lines = BufReader::new(child.stderr.take().expect("stderr")).lines().map_while(Result::ok);
        let paused = lines.take(50).any(|line| line.contains(&format!("paused at {point}")));
        child.kill().expect("SIGKILL");
        let _ = child.wait();
        assert!(paused, "{point}: never reached");

        // Old or new, never neither: production is the first model, readable.
        let production = std::fs::read_to_string(registry.join("production/model.safetensors"));
        assert_eq!(production.expect("production resolves"), "first", "{point}");
        let listed = run("registry", &["--registry-dir", &flag, "list"], &[]);
        assert!(listed.status.success(), "{point}: {}", stderr(&listed));
        // The next add completes (or redoes) it: v2 once, the first untouched.
        let again =
            run("registry", &["--registry-dir", &flag, "--model-dir", &second.display().to_string(), "add"], &[]);
        assert!(again.status.success(), "{point}: {}", stderr(&again));
        assert_eq!(String::from_utf8_lossy(&again.stdout).trim(), "v2 candidate", "{point}");
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(registry.join("registry.json")).expect("index"))
                .expect("json");
        let versions: Vec<u64> =
            index["versions"].as_array().expect("versions").iter().filter_map(|v| v["version"].as_u64()).collect();
        assert_eq!(versions, [1, 2], "{point}");
        assert_eq!(std::fs::read_to_string(registry.join("v1/model.safetensors")).expect("v1"), "first");
        assert_eq!(std::fs::read_to_string(registry.join("v2/model.safetensors")).expect("v2"), "second");
        let leftovers: Vec<String> = std::fs::read_dir(&registry)
            .expect("list")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|name| name.starts_with(".kiln-add-"))
            .collect();
        assert!(leftovers.is_empty(), "{point}: {leftovers:?}");
    }
}

/// The very first add killed between its index and its production link: the
/// next call links production, so `serve` finds the model.
#[test]
fn a_first_add_killed_before_its_link_is_linked_by_the_next_call() {
    use std::io::{BufRead, BufReader};
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry");
    let flag = registry.display().to_string();
    let first = export(dir.path(), "first");
    let mut child = Command::new(env!("CARGO_BIN_EXE_registry"))
        .args(["--registry-dir", &flag, "--model-dir", &first.display().to_string(), "add"])
        .env_remove("KILN_CONFIG")
        .env("KILN_TEST_PAUSE_AT", "registry-add:saved")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("registry starts");
    let lines = BufReader::new(child.stderr.take().expect("stderr")).lines().map_while(Result::ok);
    assert!(lines.take(50).any(|line| line.contains("paused at")));
    child.kill().expect("SIGKILL");
    let _ = child.wait();
    assert!(!registry.join("production").exists(), "killed before the link");
    let again = run("registry", &["--registry-dir", &flag, "--model-dir", &first.display().to_string(), "add"], &[]);
    assert!(again.status.success(), "{}", stderr(&again));
    assert_eq!(std::fs::read_to_string(registry.join("production/model.safetensors")).expect("linked"), "first");
}

/// A lost index: `add` exits 1 naming the versions and deletes nothing;
/// `rebuild` restores it with production unchanged.
#[test]
fn a_lost_index_stops_add_and_rebuild_brings_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let registry = dir.path().join("registry");
    let flag = registry.display().to_string();
    for name in ["first", "second"] {
        let added = run(
            "registry",
            &["--registry-dir", &flag, "--model-dir", &export(dir.path(), name).display().to_string(), "add"],
            &[],
        );
        assert!(added.status.success(), "{}", stderr(&added));
    }
    std::fs::remove_file(registry.join("registry.json")).expect("deleted by mistake");
    let third = export(dir.path(), "third").display().to_string();
    let refused = run("registry", &["--registry-dir", &flag, "--model-dir", &third, "add"], &[]);
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains("v1, v2") && stderr(&refused).contains("registry rebuild"),
        "{}",
        stderr(&refused)
    );
    assert!(!registry.join("v3").exists());
    assert_eq!(std::fs::read_to_string(registry.join("production/model.safetensors")).expect("production"), "first");
    let rebuilt = run("registry", &["--registry-dir", &flag, "rebuild"], &[]);
    assert!(rebuilt.status.success(), "{}", stderr(&rebuilt));
    let table = String::from_utf8_lossy(&rebuilt.stdout);
    assert!(table.contains("production") && table.contains("candidate"), "{table}");
    assert_eq!(std::fs::read_to_string(registry.join("production/model.safetensors")).expect("production"), "first");
    let added = run("registry", &["--registry-dir", &flag, "--model-dir", &third, "add"], &[]);
    assert_eq!(String::from_utf8_lossy(&added.stdout).trim(), "v3 candidate", "{}", stderr(&added));
}
