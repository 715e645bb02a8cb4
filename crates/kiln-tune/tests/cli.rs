//! The `tune` binary on bad settings: exit 1, the key named, nothing written.

use std::path::Path;
use std::process::Command;

fn tune(dir: &Path, args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_tune"))
        .args(["--quiet", "--output-dir"])
        .arg(dir.join("tune"))
        .arg("--runs-dir")
        .arg(dir.join("runs"))
        .args(args)
        .env_remove("KILN_CONFIG")
        .current_dir(dir)
        .output()
        .expect("tune runs");
    (output.status.code().unwrap_or(-1), String::from_utf8_lossy(&output.stderr).into_owned())
}

#[test]
fn bad_search_spaces_exit_1_naming_the_key_and_write_no_study() {
    let dir = tempfile::tempdir().expect("tempdir");
    for (space, needles) in [
        ("lerning_rate={ uniform = [0.1, 0.2] }", &["tune.space.lerning_rate", "learning_rate"][..]),
        ("learning_rate={ log_uniform = [1e-3, 1e-5] }", &["tune.space.learning_rate", "above"]),
        ("batch_size={ choices = [] }", &["tune.space.batch_size", "empty"]),
        ("epochs={ ints = [1, 2] }", &["ints"]),
    ] {
        let (code, stderr) = tune(dir.path(), &["--space", space]);
        let expected = if space.contains("ints") { 2 } else { 1 };
        assert_eq!(code, expected, "{space}: {stderr}");
        for needle in needles {
            assert!(stderr.contains(needle), "{space}: {stderr}");
        }
        assert!(!dir.path().join("tune").exists(), "{space}: no study folder");
    }
    let (code, stderr) = tune(dir.path(), &["--trials", "0"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("tune.trials"), "{stderr}");
}

/// Trials need tokenized data: without it, tune stops before the first trial.
#[test]
fn a_study_without_tokenized_data_stops_before_its_first_trial() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = tune(dir.path(), &[]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("data/processed") && stderr.contains("tokenize"), "{stderr}");
    assert!(!dir.path().join("tune").exists(), "no study folder");
}

#[test]
fn a_report_of_a_study_that_does_not_exist_is_refused() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (code, stderr) = tune(dir.path(), &["--report", "--study", "nothing"]);
    assert_eq!(code, 1, "{stderr}");
    assert!(stderr.contains("no study 'nothing'"), "{stderr}");
}

#[test]
fn help_names_every_setting() {
    let output = Command::new(env!("CARGO_BIN_EXE_tune")).arg("--help").output().expect("runs");
    let help = String::from_utf8_lossy(&output.stdout);
    for flag in ["--sampler", "--pruner", "--space", "--worker", "--report", "--reduction-factor", "--timeout"] {
        assert!(help.contains(flag), "{flag}: {help}");
    }
}
