//! The pipeline as a whole, with the real `make` (scripts/make/pipeline.mk) and the
//! real `dvc` (dvc.yaml), on a slice of the default data and settings small
//! enough for CI: each stage runs only when its inputs or its own settings
//! changed, and a stage killed half way is never taken as done.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use kiln_core::FileHash;

const STAGES: [&str; 7] = ["ingest", "clean", "tokenize", "profile", "train", "eval", "export"];
const DATA: &str = "data/external/movie-reviews/movieReviewSnippets_GroundTruth.txt";
const PRETRAINED: &str = "models/pretrained/all-MiniLM-L6-v2";

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().expect("repo root")
}

/// Where cargo put the stage binaries (all in one folder).
fn bin_dir() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_train")).parent().expect("bin dir").to_owned()
}

/// The default data and model, which `make setup` (and so `make test`)
/// installs: missing is a broken set-up, not a reason to skip.
fn require_setup() {
    let ready = repo().join(DATA).exists() && repo().join(PRETRAINED).join("model.safetensors").exists();
    assert!(ready, "the default data and model are not installed: run `make setup`");
}

/// A tool `scripts/setup.sh <component>` installs, as `make test` does first:
/// missing is a broken set-up, not a reason to skip.
fn require_tool(path: &str, component: &str) {
    assert!(
        repo().join(path).exists(),
        "{path} is not installed: run `scripts/setup.sh {component}` (`make test` does)"
    );
}

/// The first `rows` rows (and the header) of the default data.
fn data_slice(rows: usize) -> String {
    let text = std::fs::read_to_string(repo().join(DATA)).expect("default data");
    text.lines().take(rows + 1).map(|line| format!("{line}\n")).collect()
}

/// configs/default.toml with CI-sized settings, as a TOML table to edit.
fn small_config(data_file: &Path, out: &Path) -> toml::Table {
    let text = std::fs::read_to_string(repo().join("configs/default.toml")).expect("default config");
    let mut config: toml::Table = text.parse().expect("default config parses");
    for section in ["track", "registry"] {
        config.entry(section).or_insert_with(|| toml::Table::new().into());
    }
    let mut set = |section: &str, key: &str, value: toml::Value| {
        config[section].as_table_mut().expect("section").insert(key.into(), value);
    };
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    set("ingest", "train_file", path(data_file));
    for (section, key, dir) in [
        ("ingest", "output_dir", "raw"),
        ("clean", "input_dir", "raw"),
        ("clean", "output_dir", "interim"),
        ("tokenize", "input_dir", "interim"),
        ("tokenize", "output_dir", "processed"),
        ("profile", "input_dir", "interim"),
        ("profile", "output_dir", "profile"),
        ("train", "input_dir", "processed"),
        ("train", "output_dir", "model"),
        ("train", "run_dir", "train"),
        ("eval", "model_dir", "model"),
        ("eval", "input_dir", "processed"),
        ("eval", "output_dir", "eval"),
        ("export", "model_dir", "model"),
        ("export", "output_dir", "export"),
        ("registry", "dir", "registry"),
        ("registry", "model_dir", "export"),
    ] {
        set(section, key, path(&out.join(dir)));
    }
    set("eval", "train_metrics", path(&out.join("train/metrics.jsonl")));
    set("track", "runs_dir", path(&out.join("runs")));
    set("export", "eval_metrics", path(&out.join("eval/metrics.json")));
    set("export", "data_profile", path(&out.join("profile/profile.json")));
    set("export", "reference_predictions", path(&out.join("eval/reference_predictions.json")));
    set("tokenize", "max_length", 32.into());
    for (key, value) in [("max_steps", 4), ("batch_size", 8), ("threads", 1), ("log_every_steps", 1)] {
        set("train", key, value.into());
    }
    set("train", "device", "cpu".into());
    set("eval", "device", "cpu".into());
    set("eval", "threads", 1.into());
    config
}

/// A folder with `rows` rows of the default data (`reviews.tsv`), the
/// CI-sized config for them (`small.toml`, returned to edit) and `out/` for
/// the outputs.
fn small_pipeline(rows: usize) -> (tempfile::TempDir, toml::Table) {
    let dir = tempfile::tempdir().expect("tempdir");
    let data = dir.path().join("reviews.tsv");
    std::fs::write(&data, data_slice(rows)).expect("data slice");
    let config = small_config(&data, &dir.path().join("out"));
    write_config(&dir.path().join("small.toml"), &config);
    (dir, config)
}

fn write_config(path: &Path, config: &toml::Table) {
    std::fs::write(path, toml::to_string(config).expect("toml")).expect("write config");
}

fn make_command(config: &Path) -> Command {
    let path = std::env::var_os("PATH").unwrap_or_default();
    let path =
        std::env::join_paths(std::iter::once(no_python_dir()).chain(std::env::split_paths(&path))).expect("PATH joins");
    let mut command = Command::new("make");
    command
        .env("PATH", path)
        .args(["--no-print-directory", "-f", "scripts/make/pipeline.mk"])
        .arg(format!("CONFIG={}", config.display()))
        .arg(format!("BIN={}", bin_dir().display()))
        .arg("STAGE_FLAGS=--quiet")
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env_remove("MAKEFLAGS")
        .env("OMP_NUM_THREADS", "1");
    command
}

/// A folder first on make's PATH whose `python` and `python3` fail and leave a
/// mark: `make pipeline` runs no Python.
fn no_python_dir() -> PathBuf {
    let dir = std::env::temp_dir().join(format!("kiln-no-python-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("shim folder");
    for name in ["python", "python3"] {
        let shim = dir.join(name);
        if !shim.exists() {
            // Written aside and renamed, so a test running it never sees it half written.
            let aside = dir.join(format!(".{name}.{:?}", std::thread::current().id()));
            let script = format!("#!/bin/sh\necho \"$0 $*\" >> '{}'\nexit 97\n", dir.join("ran").display());
            std::fs::write(&aside, script).expect("shim");
            std::fs::set_permissions(&aside, std::os::unix::fs::PermissionsExt::from_mode(0o755)).expect("chmod");
            std::fs::rename(&aside, &shim).expect("shim in place");
        }
    }
    dir
}

/// Runs the pipeline; returns the stages make ran (it echoes each recipe).
fn make_pipeline(config: &Path) -> (Vec<String>, String) {
    let output = make_command(config).output().expect("make runs");
    let stdout = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "make pipeline failed:\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let python = std::fs::read_to_string(no_python_dir().join("ran")).unwrap_or_default();
    assert!(python.is_empty(), "make pipeline ran Python: {python}");
    (ran_stages(&stdout, &bin_dir().display().to_string()), stdout)
}

fn ran_stages(log: &str, bin: &str) -> Vec<String> {
    log.lines()
        .filter_map(|line| line.strip_prefix(bin)?.strip_prefix('/')?.split_whitespace().next().map(str::to_owned))
        .collect()
}

fn names(stages: &[&str]) -> Vec<String> {
    stages.iter().map(|s| (*s).to_owned()).collect()
}

/// Every output a stage's manifest lists is on disk with the recorded sha256:
/// a manifest never describes a half-written folder.
fn assert_manifest_matches(manifest: &Path) {
    let text = std::fs::read_to_string(manifest).unwrap_or_else(|e| panic!("{}: {e}", manifest.display()));
    let manifest: serde_json::Value = serde_json::from_str(&text).expect("manifest JSON");
    let outputs = manifest["outputs"].as_array().expect("outputs");
    assert!(!outputs.is_empty(), "{manifest}");
    for output in outputs {
        let path = Path::new(output["path"].as_str().expect("path"));
        let actual = FileHash::of(&repo().join(path)).expect("output exists");
        assert_eq!(actual.sha256, output["sha256"].as_str().expect("sha256"), "{}", path.display());
    }
}

/// Starts the pipeline with the commit test hook and SIGKILLs make and the stage
/// (one process group) once the stage has moved its first new file into place.
fn kill_in_commit(config: &Path, stage: &str) {
    let mut child = make_command(config)
        .env("KILN_TEST_PAUSE_AT", "commit")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .expect("make starts");
    let stdout = child.stdout.take().expect("stdout");
    let echoed = std::thread::spawn(move || std::io::read_to_string(stdout).unwrap_or_default());
    let stderr = BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = Vec::new();
    for line in stderr.lines() {
        let line = line.unwrap_or_default();
        let paused = line.starts_with("KILN_TEST_PAUSE_AT");
        seen.push(line);
        if paused {
            break;
        }
    }
    let status = Command::new("kill").args(["-KILL", "--", &format!("-{}", child.id())]).status().expect("kill");
    assert!(status.success());
    let exit = child.wait().expect("make exits");
    assert!(!exit.success());
    let ran = ran_stages(&echoed.join().unwrap_or_default(), &bin_dir().display().to_string());
    assert_eq!(ran.last().map(String::as_str), Some(stage), "stages run before the kill: {ran:?}; stderr: {seen:?}");
    assert!(seen.last().is_some_and(|l| l.contains("paused")), "the stage reached its commit: {seen:?}");
}

#[test]
fn make_reruns_only_what_changed_and_survives_a_kill() {
    require_setup();
    let (dir, mut config) = small_pipeline(600);
    let (out, data, config_path) =
        (dir.path().join("out"), dir.path().join("reviews.tsv"), dir.path().join("small.toml"));

    let (ran, log) = make_pipeline(&config_path);
    assert_eq!(ran, [names(&STAGES), names(&["registry"])].concat(), "{log}");
    assert!(log.contains("pipeline done") && log.contains("macro_f1"), "ends with the headline metrics: {log}");
    assert!(log.contains(&out.join("export").display().to_string()), "and says where the model is: {log}");
    assert!(log.contains("version: v1 (production)"), "the first export is registered and served: {log}");
    let weights = |dir: &Path| std::fs::read(dir.join("model.safetensors")).expect("weights");
    assert_eq!(weights(&out.join("registry/production")), weights(&out.join("export")));
    // The training data's profile travels with the model, to every registry version.
    let profile = std::fs::read(out.join("profile/profile.json")).expect("profile");
    assert_eq!(std::fs::read(out.join("registry/production/data_profile.json")).expect("carried profile"), profile);
    let reference = std::fs::read(out.join("eval/reference_predictions.json")).expect("reference predictions");
    assert_eq!(std::fs::read(out.join("registry/production/reference_predictions.json")).expect("carried"), reference);

    let (ran, log) = make_pipeline(&config_path);
    assert_eq!(ran, Vec::<String>::new(), "nothing changed, nothing runs: {log}");

    // A training setting reruns training and what depends on it, nothing before.
    config["train"]["learning_rate"] = 1e-4.into();
    write_config(&config_path, &config);
    let (ran, log) = make_pipeline(&config_path);
    assert_eq!(ran, names(&["train", "eval", "export", "registry"]));
    assert!(log.contains("version: v2 (candidate)") && log.contains("serving: v1"), "{log}");
    promote_as_the_metrics_say(&config_path, &out.join("registry"), 2);
    // Same model, new eval settings: a new export with the same weights is the same version.
    config["eval"]["batch_size"] = 16.into();
    write_config(&config_path, &config);
    assert_eq!(make_pipeline(&config_path).0, names(&["eval", "export", "registry"]));
    let index = std::fs::read_to_string(out.join("registry/registry.json")).expect("registry index");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&index).expect("JSON")["versions"].as_array().map(Vec::len),
        Some(2)
    );
    // A new input file reruns everything downstream of ingest.
    std::fs::write(&data, data_slice(500)).expect("data slice");
    assert_eq!(make_pipeline(&config_path).0, [names(&STAGES), names(&["registry"])].concat());

    // SIGKILL half way through committing: the next run redoes that stage.
    config["train"]["seed"] = 7.into();
    write_config(&config_path, &config);
    kill_in_commit(&config_path, "train");
    assert_eq!(make_pipeline(&config_path).0, names(&["train", "eval", "export", "registry"]));
    assert_manifest_matches(&out.join("model/manifest.json"));

    config["tokenize"]["max_length"] = 24.into();
    write_config(&config_path, &config);
    kill_in_commit(&config_path, "tokenize");
    // The profile measures truncation at [tokenize] max_length, so it reruns too.
    assert_eq!(make_pipeline(&config_path).0, names(&["tokenize", "profile", "train", "eval", "export", "registry"]));
    assert_manifest_matches(&out.join("processed/tokenize_report.json"));
    assert_manifest_matches(&out.join("train/train_summary.json"));
}

/// `registry promote` on a version whose metrics came from the same test data
/// as production's: refused exactly when its macro F1 is lower, and then
/// `--force` promotes it; either way the production link follows.
fn promote_as_the_metrics_say(config: &Path, registry_dir: &Path, version: u32) {
    let registry = |args: &[&str]| {
        Command::new(bin_dir().join("registry"))
            .arg("--config")
            .arg(config)
            .args(args)
            .current_dir(repo())
            .env_remove("KILN_CONFIG")
            .output()
            .expect("registry runs")
    };
    let output = registry(&["show", &format!("v{version}")]);
    let candidate: serde_json::Value = serde_json::from_slice(&output.stdout).expect("show prints JSON");
    let output = registry(&["show", "1"]);
    let production: serde_json::Value = serde_json::from_slice(&output.stdout).expect("show prints JSON");
    assert_eq!(production["stage"], "production");
    assert_eq!(candidate["test_data"], production["test_data"], "same test data, so comparable");
    let worse = candidate["metrics"]["macro_f1"].as_f64() < production["metrics"]["macro_f1"].as_f64();

    let output = registry(&["promote", &format!("v{version}")]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.success(), !worse, "{stderr}");
    if worse {
        assert!(stderr.contains("worse than production v1") && stderr.contains("--force"), "{stderr}");
        assert!(registry(&["promote", &version.to_string(), "--force"]).status.success());
    }
    let list = String::from_utf8_lossy(&registry(&["list"]).stdout).into_owned();
    let stage = |v: &str| {
        list.lines()
            .find(|l| l.starts_with(&format!("{v} ")))
            .and_then(|l| l.split_whitespace().nth(1))
            .map(str::to_owned)
    };
    assert_eq!(
        (stage("v1"), stage(&format!("v{version}"))),
        (Some("archived".into()), Some("production".into())),
        "{list}"
    );
    let link = std::fs::read_link(registry_dir.join("production")).expect("production is a link");
    assert_eq!(link, Path::new(&format!("v{version}")));
}

/// The internal crates `krate` depends on (its `[dependencies]`, not dev), transitively, itself included.
fn internal_closure(krate: &str) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut todo = vec![krate.to_owned()];
    while let Some(name) = todo.pop() {
        if !seen.insert(name.clone()) {
            continue;
        }
        let manifest = std::fs::read_to_string(repo().join("crates").join(&name).join("Cargo.toml")).expect("manifest");
        let table: toml::Table = manifest.parse().expect("Cargo.toml parses");
        let deps = table.get("dependencies").and_then(toml::Value::as_table).cloned().unwrap_or_default();
        todo.extend(deps.keys().filter(|dep| dep.starts_with("kiln-")).cloned());
    }
    seen
}

/// The kiln crates a source file names (`kiln_data::...`), as package names.
fn crates_named_in(file: &str) -> BTreeSet<String> {
    let text = std::fs::read_to_string(repo().join(file)).expect("source");
    let words = text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'));
    words.filter(|w| w.starts_with("kiln_")).map(|w| w.replace('_', "-")).collect()
}

/// dvc.yaml reruns a stage when the source of its binary changes: its deps name
/// every crate the binary's code comes from (the crates its `main` names, with
/// all they depend on, and kiln-cli's shared code for the binaries there), so
/// a change in any of them reruns it.
#[test]
fn dvc_deps_name_every_crate_a_stage_binary_is_built_from() {
    check_dvc_deps("dvc.yaml", &STAGES);
    // The weak-supervision pipeline (configs/youtube-spam.toml), with `label`.
    check_dvc_deps("experiments/youtube-spam/dvc.yaml", &["ingest", "clean", "label", "tokenize", "train", "eval"]);
}

fn check_dvc_deps(file: &str, stages: &[&str]) {
    let text = std::fs::read_to_string(repo().join(file)).expect("a dvc.yaml");
    let lines: Vec<&str> = text.lines().collect();
    for stage in stages {
        let start = lines.iter().position(|l| *l == format!("  {stage}:")).expect("stage in dvc.yaml");
        let section =
            lines[start + 1..].iter().take_while(|l| l.is_empty() || l.starts_with("   ") || l.starts_with("  #"));
        let deps: BTreeSet<&str> = section.filter_map(|l| l.trim().strip_prefix("- crates/")).collect();
        let bin = ["kiln-data", "kiln-cli"]
            .map(|krate| format!("crates/{krate}/src/bin/{stage}.rs"))
            .into_iter()
            .find(|path| repo().join(path).is_file())
            .expect("the stage's main");
        let mut wanted = BTreeSet::from([bin.trim_start_matches("crates/").to_owned()]);
        let mut named = crates_named_in(&bin);
        if named.remove("kiln-cli") {
            wanted.insert("kiln-cli/src/lib.rs".to_owned());
            named.extend(crates_named_in("crates/kiln-cli/src/lib.rs"));
            named.remove("kiln-cli");
        }
        wanted.extend(named.iter().flat_map(|c| internal_closure(c)).map(|c| format!("{c}/src")));
        let missing: Vec<&String> = wanted.iter().filter(|w| !deps.contains(w.as_str())).collect();
        assert!(missing.is_empty(), "{file} stage {stage} misses deps {missing:?} (it has {deps:?})");
    }
}

/// The same for `tune`'s stage (experiments/tune/dvc.yaml): tune's crates,
/// and train's, which runs every trial.
#[test]
fn the_tune_dvc_stage_names_the_crates_of_tune_and_train() {
    let text = std::fs::read_to_string(repo().join("experiments/tune/dvc.yaml")).expect("experiments/tune/dvc.yaml");
    let deps: BTreeSet<&str> = text.lines().filter_map(|l| l.trim().strip_prefix("- crates/")).collect();
    let mut named = crates_named_in("crates/kiln-tune/src/bin/tune.rs");
    named.extend(crates_named_in("crates/kiln-cli/src/bin/train.rs"));
    named.extend(crates_named_in("crates/kiln-cli/src/lib.rs"));
    named.extend(crates_named_in("crates/kiln-cli/src/tune_link.rs"));
    named.remove("kiln-cli");
    let mut wanted: BTreeSet<String> =
        named.iter().flat_map(|c| internal_closure(c)).map(|c| format!("{c}/src")).collect();
    wanted.extend(["kiln-tune/src/bin/tune.rs", "kiln-cli/src/bin/train.rs", "kiln-cli/src/lib.rs"].map(String::from));
    wanted.insert("kiln-cli/src/tune_link.rs".into());
    let missing: Vec<&String> = wanted.iter().filter(|w| !deps.contains(w.as_str())).collect();
    assert!(missing.is_empty(), "experiments/tune/dvc.yaml misses deps {missing:?} (it has {deps:?})");
}

#[test]
fn configs_never_share_an_output_folder() {
    let mut seen = BTreeSet::new();
    let mut configs = 0;
    for entry in std::fs::read_dir(repo().join("configs")).expect("configs/") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "toml") {
            continue;
        }
        configs += 1;
        let output = Command::new(bin_dir().join("ingest"))
            .arg("--config")
            .arg(&path)
            .arg("--print-config")
            .current_dir(repo())
            .output()
            .expect("ingest runs");
        assert!(output.status.success(), "{}: {}", path.display(), String::from_utf8_lossy(&output.stderr));
        let resolved: toml::Table = String::from_utf8_lossy(&output.stdout).parse().expect("resolved TOML");
        for (section, key) in [
            ("ingest", "output_dir"),
            ("clean", "output_dir"),
            ("tokenize", "output_dir"),
            ("profile", "output_dir"),
            ("train", "output_dir"),
            ("train", "run_dir"),
            ("eval", "output_dir"),
            ("export", "output_dir"),
            ("registry", "dir"),
            ("serve", "log_dir"),
            ("monitor", "output_dir"),
            ("gate", "output_dir"),
            ("retrain", "output_dir"),
            ("tune", "output_dir"),
        ] {
            let dir = resolved[section][key].as_str().expect("a path").to_owned();
            assert!(seen.insert(dir.clone()), "{}: [{section}] {key} = {dir} is another config's too", path.display());
        }
    }
    assert!(configs >= 2);
}

/// A throwaway git repo holding what a fresh clone of kiln holds, with the
/// installed model and LibTorch (not re-downloaded), a slice of the default
/// data, and configs/default.toml shrunk to CI size.
fn dvc_workspace(dir: &Path) -> PathBuf {
    let repo = repo();
    let work = dir.join("kiln");
    let listed = Command::new("git")
        .args(["ls-files", "--cached", "--others", "--exclude-standard", "-z"])
        .current_dir(&repo)
        .output()
        .expect("git ls-files");
    for file in String::from_utf8_lossy(&listed.stdout).split('\0').filter(|f| !f.is_empty()) {
        let (from, to) = (repo.join(file), work.join(file));
        if from.is_file() {
            std::fs::create_dir_all(to.parent().expect("parent")).expect("mkdir");
            std::fs::copy(&from, &to).unwrap_or_else(|e| panic!("copy {file}: {e}"));
        }
    }
    std::os::unix::fs::symlink(repo.join(".libtorch"), work.join(".libtorch")).expect("link LibTorch");
    let model = work.join(PRETRAINED);
    std::fs::create_dir_all(&model).expect("model dir");
    for entry in std::fs::read_dir(repo.join(PRETRAINED)).expect("pretrained") {
        let entry = entry.expect("entry");
        if entry.path().is_file() {
            std::fs::copy(entry.path(), model.join(entry.file_name())).expect("copy model file");
        }
    }
    std::fs::create_dir_all(work.join(DATA).parent().expect("parent")).expect("data dir");
    std::fs::write(work.join(DATA), data_slice(500)).expect("data slice");

    let mut config = small_config(Path::new("unused"), Path::new("unused"));
    // Keep the default paths: dvc.yaml names them.
    let default: toml::Table =
        std::fs::read_to_string(repo.join("configs/default.toml")).expect("default config").parse().expect("parses");
    for (section, table) in &default {
        for (key, value) in table.as_table().expect("section") {
            if key.ends_with("_dir") || key.ends_with("_file") || key.ends_with("_metrics") {
                config[section][key] = value.clone();
            }
        }
    }
    for key in ["data_profile", "reference_predictions"] {
        config["export"].as_table_mut().expect("export").remove(key);
    }
    write_config(&work.join("configs/default.toml"), &config);
    git(&work, &["init", "-q"]);
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "kiln"]);
    work
}

fn git(dir: &Path, args: &[&str]) {
    let status = Command::new("git")
        .args(["-c", "user.name=kiln-test", "-c", "user.email=test@localhost"])
        .args(args)
        .current_dir(dir)
        .status()
        .expect("git runs");
    assert!(status.success(), "git {args:?}");
}

fn dvc(work: &Path, args: &[&str]) -> String {
    let output = Command::new(repo().join(".venv-tools/bin/dvc"))
        .args(args)
        .current_dir(work)
        .env("KILN_BIN_DIR", bin_dir())
        .env("DVC_NO_ANALYTICS", "1")
        .env("OMP_NUM_THREADS", "1")
        .env("GIT_AUTHOR_NAME", "kiln-test")
        .env("GIT_AUTHOR_EMAIL", "test@localhost")
        .env("GIT_COMMITTER_NAME", "kiln-test")
        .env("GIT_COMMITTER_EMAIL", "test@localhost")
        .env_remove("KILN_CONFIG")
        .output()
        .expect("dvc runs");
    let text = format!("{}{}", String::from_utf8_lossy(&output.stdout), String::from_utf8_lossy(&output.stderr));
    assert!(output.status.success(), "dvc {args:?} failed:\n{text}");
    text
}

fn dvc_ran(log: &str) -> Vec<String> {
    log.lines().filter_map(|line| line.strip_prefix("Running stage '")?.split('\'').next().map(str::to_owned)).collect()
}

#[test]
fn dvc_repro_runs_the_pipeline_and_tracks_params_and_metrics() {
    require_setup();
    require_tool(".venv-tools/bin/dvc", "dvc");
    let dir = tempfile::tempdir().expect("tempdir");
    let work = dvc_workspace(dir.path());

    let log = dvc(&work, &["repro"]);
    let mut expected = vec!["setup".to_owned()];
    expected.extend(names(&STAGES));
    assert_eq!(dvc_ran(&log), expected, "{log}");
    let metrics = dvc(&work, &["metrics", "show"]);
    assert!(metrics.contains("macro_f1") && metrics.contains("accuracy"), "{metrics}");
    git(&work, &["add", "-A"]);
    git(&work, &["commit", "-q", "-m", "lock"]);

    let log = dvc(&work, &["repro"]);
    assert_eq!(dvc_ran(&log), Vec::<String>::new(), "a second repro does nothing: {log}");

    // One training param: only train and what follows rerun, as an experiment.
    let log = dvc(&work, &["exp", "run", "-S", "configs/default.toml:train.learning_rate=0.0001"]);
    assert_eq!(dvc_ran(&log), names(&["train", "eval", "export"]), "{log}");
    let table = dvc(&work, &["exp", "show", "--no-pager", "--md"]);
    assert!(table.contains("macro_f1") && table.contains("0.0001"), "{table}");

    let plots = dvc(&work, &["plots", "show", "-o", "plots"]);
    let html = std::fs::read_to_string(work.join("plots/index.html")).unwrap_or_else(|e| panic!("{e}: {plots}"));
    for title in ["Confusion matrix", "Training loss", "Validation during training"] {
        assert!(html.contains(title), "{title} is drawn");
    }
}

/// A real MLflow tracking server on loopback (SQLite backend), killed on drop.
struct MlflowServer {
    child: std::process::Child,
    uri: String,
    stopped: bool,
}

impl MlflowServer {
    fn start(dir: &Path) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
        let log = std::fs::File::create(dir.join("mlflow-server.log")).expect("server log");
        let child = Command::new(repo().join(".venv-mlflow/bin/mlflow"))
            .args(["server", "--host", "127.0.0.1", "--port", &port.to_string(), "--workers", "1"])
            .arg("--backend-store-uri")
            .arg(format!("sqlite:///{}", dir.join("mlflow.db").display()))
            .arg("--default-artifact-root")
            .arg(dir.join("mlflow-artifacts"))
            .stdout(log.try_clone().expect("log"))
            .stderr(log)
            .process_group(0)
            .spawn()
            .expect("mlflow server starts");
        let server = Self { child, uri: format!("http://127.0.0.1:{port}"), stopped: false };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(180);
        while !reqwest::blocking::get(format!("{}/health", server.uri)).is_ok_and(|r| r.status().is_success()) {
            let log = std::fs::read_to_string(dir.join("mlflow-server.log")).unwrap_or_default();
            assert!(std::time::Instant::now() < deadline, "MLflow server did not come up:\n{log}");
            std::thread::sleep(std::time::Duration::from_millis(500));
        }
        server
    }

    fn api(&self, method: &str, body: serde_json::Value) -> serde_json::Value {
        let url = format!("{}/api/2.0/mlflow/{method}", self.uri);
        let response = reqwest::blocking::Client::new().post(&url).json(&body).send().expect("MLflow answers");
        assert!(response.status().is_success(), "{method}: {}", response.status());
        response.json().expect("JSON")
    }

    fn get(&self, method: &str, query: &[(&str, &str)]) -> serde_json::Value {
        let url = format!("{}/api/2.0/mlflow/{method}", self.uri);
        let response = reqwest::blocking::Client::new().get(&url).query(query).send().expect("MLflow answers");
        assert!(response.status().is_success(), "{method}: {}", response.status());
        response.json().expect("JSON")
    }

    /// Kills the server's process group (uvicorn and MLflow's job runners), once.
    fn stop(&mut self) {
        if self.stopped {
            return;
        }
        self.stopped = true;
        // `--` matters: without it procps' kill reads `-1234` as a signal number
        // followed by pid -1, which is every process.
        let _ = Command::new("kill").args(["-KILL", "--", &format!("-{}", self.child.id())]).status();
        let _ = self.child.wait();
    }
}

impl Drop for MlflowServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Runs the pipeline with MLFLOW_TRACKING_URI set; returns make's stderr.
fn make_pipeline_tracked(config: &Path, tracking_uri: &str) -> String {
    let output = make_command(config)
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_EXPERIMENT_NAME", "kiln-test")
        .output()
        .expect("make runs");
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert!(output.status.success(), "make pipeline failed:\n{}\n{stderr}", String::from_utf8_lossy(&output.stdout));
    stderr
}

/// A stage binary on `config`, quiet, tracked in MLflow at `tracking_uri`.
fn tracked_stage(stage: &str, config: &Path, tracking_uri: &str) -> Command {
    let mut command = Command::new(bin_dir().join(stage));
    command
        .args(["--quiet", "--config"])
        .arg(config)
        .env_remove("KILN_CONFIG")
        .env("MLFLOW_TRACKING_URI", tracking_uri)
        .env("MLFLOW_EXPERIMENT_NAME", "kiln-test");
    command
}

#[test]
fn runs_are_logged_to_a_real_mlflow_server_and_a_down_one_costs_a_warning() {
    require_setup();
    require_tool(".venv-mlflow/bin/mlflow", "mlflow");
    let (dir, mut config) = small_pipeline(300);
    let (out, config_path) = (dir.path().join("out"), dir.path().join("small.toml"));
    let mut server = MlflowServer::start(dir.path());

    let stderr = make_pipeline_tracked(&config_path, &server.uri);
    assert!(!stderr.contains("MLflow tracking at"), "no warning while the server is up: {stderr}");
    let experiment = server.get("experiments/get-by-name", &[("experiment_name", "kiln-test")]);
    let experiment_id = experiment["experiment"]["experiment_id"].as_str().expect("experiment created by name");
    let runs = server.api("runs/search", serde_json::json!({ "experiment_ids": [experiment_id] }));
    let runs = runs["runs"].as_array().expect("runs");
    let local = kiln_track::list(&out.join("runs")).expect("local records");
    assert_eq!((runs.len(), local.len()), (2, 2), "a train and an eval run, in both places");

    for record in &local {
        let mlflow_id = record.tags.get("mlflow.run_id").expect("the local record names its MLflow run");
        let run = runs.iter().find(|r| r["info"]["run_id"] == mlflow_id.as_str()).expect("run in MLflow");
        assert_eq!(run["info"]["status"], "FINISHED");
        assert_eq!(run["info"]["run_name"], record.id.as_str());
        let pairs = |key: &str| -> std::collections::BTreeMap<String, String> {
            run["data"][key]
                .as_array()
                .map(|items| {
                    items
                        .iter()
                        .map(|i| (i["key"].as_str().expect("key").into(), i["value"].as_str().expect("value").into()))
                        .collect()
                })
                .unwrap_or_default()
        };
        let (params, tags) = (pairs("params"), pairs("tags"));
        assert_eq!(params, kiln_track::flatten_params(&record.params), "every resolved setting is a param");
        for key in ["git.commit", "git.dirty", "host", "kiln.version", "device"] {
            assert_eq!(tags.get(key), record.tags.get(key), "tag {key}");
        }
        assert_eq!(tags["kiln.stage"], record.stage);
        for (key, value) in &record.metrics {
            let latest = run["data"]["metrics"]
                .as_array()
                .and_then(|m| m.iter().find(|m| m["key"] == key.as_str()))
                .unwrap_or_else(|| panic!("metric {key} in MLflow"));
            assert!((latest["value"].as_f64().expect("value") - value).abs() < 1e-9, "{key}");
        }
    }

    // Per-step metrics keep their steps and timestamps.
    let train = local.iter().find(|r| r.stage == "train").expect("train run");
    let points = kiln_track::read_points(&out.join("runs").join(&train.id)).expect("local points");
    let local_loss: Vec<(u64, f64, u64)> =
        points.iter().filter(|p| p.key == "train_loss").map(|p| (p.step, p.value, p.timestamp_ms)).collect();
    assert_eq!(local_loss.len(), 4, "one loss per step (max_steps 4, log_every_steps 1)");
    let history = server
        .get("metrics/get-history", &[("run_id", train.tags["mlflow.run_id"].as_str()), ("metric_key", "train_loss")]);
    let mut logged: Vec<(u64, f64, u64)> = history["metrics"]
        .as_array()
        .expect("history")
        .iter()
        .map(|m| {
            let number = |k: &str| m[k].as_str().and_then(|s| s.parse().ok()).or_else(|| m[k].as_u64()).unwrap_or(0);
            (number("step"), m["value"].as_f64().expect("value"), number("timestamp"))
        })
        .collect();
    logged.sort_by_key(|(step, _, _)| *step);
    assert_eq!(logged, local_loss);

    // monitor logs one step per window, as train logs one per training step.
    let weights = kiln_core::output::sha256_file(&out.join("export/model.safetensors")).expect("hash");
    let version = kiln_core::model_folder::version_name(&weights).to_owned();
    let log_dir = dir.path().join("predictions");
    std::fs::create_dir_all(&log_dir).expect("log dir");
    let lines: Vec<String> = (0..30)
        .flat_map(|i| {
            crate::common::logged(
                i,
                Some(&format!("review number {i}")),
                Some(["positive", "negative"][i % 2]),
                &version,
            )
        })
        .collect();
    std::fs::write(log_dir.join("predictions-1.jsonl"), lines.join("\n") + "\n").expect("log");
    let monitor = tracked_stage("monitor", &config_path, &server.uri)
        .args(["--window-predictions", "10", "--min-window-predictions", "5", "--log-dir"])
        .arg(&log_dir)
        .arg("--model-dir")
        .arg(out.join("export"))
        .arg("--output-dir")
        .arg(dir.path().join("monitor"))
        .output()
        .expect("monitor runs");
    assert!(monitor.status.success(), "{}", String::from_utf8_lossy(&monitor.stderr));
    let record = kiln_track::list(&out.join("runs"))
        .expect("local records")
        .into_iter()
        .find(|r| r.stage == "monitor")
        .expect("a monitor run record");
    let mlflow_id = record.tags.get("mlflow.run_id").expect("the monitor run is in MLflow");
    let points = kiln_track::read_points(&out.join("runs").join(&record.id)).expect("local points");
    let local_windows: Vec<(u64, f64)> =
        points.iter().filter(|p| p.key == "window_predictions").map(|p| (p.step, p.value)).collect();
    assert_eq!(local_windows, [(0, 10.0), (1, 10.0), (2, 10.0)], "three windows of ten predictions");
    for key in ["window_predictions", "window_realised_accuracy", "window_status_level"] {
        let history = server.get("metrics/get-history", &[("run_id", mlflow_id.as_str()), ("metric_key", key)]);
        let mut steps: Vec<(u64, f64)> = history["metrics"]
            .as_array()
            .unwrap_or_else(|| panic!("{key} history: {history}"))
            .iter()
            .map(|m| {
                let step = m["step"].as_str().and_then(|s| s.parse().ok()).or_else(|| m["step"].as_u64());
                (step.unwrap_or(u64::MAX), m["value"].as_f64().expect("value"))
            })
            .collect();
        steps.sort_by_key(|(step, _)| *step);
        let local: Vec<(u64, f64)> = points.iter().filter(|p| p.key == key).map(|p| (p.step, p.value)).collect();
        assert_eq!(local.len(), 3, "{key}: a figure per window");
        assert_eq!(steps, local, "{key}: one MLflow step per window");
    }

    // tune: the study is a parent run in MLflow and each trial's train run its child.
    let tune = tracked_stage("tune", &config_path, &server.uri)
        .args(["--study", "tracked", "--trials", "2", "--sampler", "random", "--pruner", "none", "--output-dir"])
        .arg(dir.path().join("tune"))
        .output()
        .expect("tune runs");
    assert!(tune.status.success(), "{}", String::from_utf8_lossy(&tune.stderr));
    let records = kiln_track::list(&out.join("runs")).expect("local records");
    let study = records.iter().find(|r| r.stage == "tune").expect("the study's run record");
    let parent = study.tags.get("mlflow.run_id").expect("the study is in MLflow");
    let trials: Vec<_> =
        records.iter().filter(|r| r.stage == "train" && r.tags.get("study").is_some_and(|s| s == "tracked")).collect();
    assert_eq!(trials.len(), 2, "a train run per trial");
    for trial in trials {
        let run = server.get("runs/get", &[("run_id", trial.tags["mlflow.run_id"].as_str())]);
        let tags = run["run"]["data"]["tags"].as_array().expect("tags");
        let tag = |key: &str| tags.iter().find(|t| t["key"] == key).and_then(|t| t["value"].as_str());
        assert_eq!(tag("mlflow.parentRunId"), Some(parent.as_str()), "trial {} nests under the study", trial.id);
        assert_eq!(tag("study"), Some("tracked"));
    }

    // The server goes away: training and eval still run and keep their local
    // records, with one warning each and an error nowhere.
    server.stop();
    assert!(reqwest::blocking::get(format!("{}/health", server.uri)).is_err(), "the server is down");
    config["train"]["learning_rate"] = 1e-4.into();
    write_config(&config_path, &config);
    let stderr = make_pipeline_tracked(&config_path, &server.uri);
    assert_eq!(stderr.matches("MLflow tracking at").count(), 2, "one warning per tracked stage: {stderr}");
    let local: Vec<_> = kiln_track::list(&out.join("runs"))
        .expect("local records")
        .into_iter()
        .filter(|r| r.stage != "monitor" && !r.tags.contains_key("study"))
        .collect();
    assert_eq!(local.len(), 4);
    for record in &local[2..] {
        assert_eq!(record.status, kiln_track::RunStatus::Finished);
        assert!(!record.tags.contains_key("mlflow.run_id"));
    }
}

#[test]
fn retrain_learns_from_feedback_and_the_gate_decides() {
    use kiln_data::schema::TextTable;
    require_setup();
    let (dir, mut config) = small_pipeline(600);
    let (out, config_path) = (dir.path().join("out"), dir.path().join("small.toml"));
    let log_dir = out.join("log");
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    let mut retrain = toml::Table::new();
    retrain.insert("log_dir".into(), path(&log_dir));
    retrain.insert("output_dir".into(), path(&out.join("retrain")));
    retrain.insert("min_feedback".into(), 20.into());
    retrain.insert("holdout_share".into(), 0.25.into());
    config.insert("retrain".into(), retrain.into());
    let mut gate = toml::Table::new();
    for (key, value) in [("bootstrap_resamples", 200), ("min_class_support", 5), ("threads", 1)] {
        gate.insert(key.into(), value.into());
    }
    gate.insert("device".into(), "cpu".into());
    config.insert("gate".into(), gate.into());
    write_config(&config_path, &config);
    make_pipeline(&config_path);

    // Feedback: 120 unseen reviews labelled by their rating, 3 texts of the
    // test split (a leak), and one label training never had.
    let unseen: Vec<(String, String)> = data_slice(760)
        .lines()
        .skip(601)
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (_, score, text) = (fields.next()?, fields.next()?.parse::<f64>().ok()?, fields.next()?);
            (score != 0.0).then(|| (text.to_owned(), if score > 0.0 { "positive" } else { "negative" }.to_owned()))
        })
        .take(120)
        .collect();
    let test = TextTable::read(&out.join("raw/test.parquet"), "ingest").expect("the test split");
    let mut lines = Vec::new();
    for (i, (text, label)) in unseen.iter().enumerate() {
        lines.extend(crate::common::logged(i, Some(text), Some(label), "v1"));
    }
    for i in 0..3 {
        lines.extend(crate::common::logged(1000 + i, Some(&test.texts[i]), Some(&test.labels[i]), "v1"));
    }
    lines.extend(crate::common::logged(2000, Some("a film of no opinion at all"), Some("neutral"), "v1"));
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(log_dir.join("predictions-1-0001.jsonl"), lines.join("\n") + "\n").expect("log");

    let retrain = |extra: &[&str]| {
        Command::new(bin_dir().join("retrain"))
            .arg("--config")
            .arg(&config_path)
            .args(["--quiet"])
            .args(extra)
            .current_dir(repo())
            .env_remove("KILN_CONFIG")
            .env_remove("MLFLOW_TRACKING_URI")
            .env("OMP_NUM_THREADS", "1")
            .output()
            .expect("retrain runs")
    };
    let versions = || {
        let index: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(out.join("registry/registry.json")).expect("index"))
                .expect("JSON");
        index["versions"].as_array().cloned().unwrap_or_default()
    };

    // The production model is being served, and keeps being asked, through all that follows.
    let served = ServedUnderLoad::start(&config_path, &out.join("registry/production"), &out.join("serve-log"));

    // A new label stops it (the default policy), naming the label; nothing is registered.
    let refused = retrain(&[]);
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert_eq!(refused.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("'neutral' (1 rows)") && stderr.contains("retrain.new_labels"), "{stderr}");
    assert_eq!(versions().len(), 1);

    // Dropped instead: the next data version, a model trained on it, registered and judged.
    let done = retrain(&["--new-labels", "drop"]);
    assert!(done.status.success(), "{}", String::from_utf8_lossy(&done.stderr));
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("retrain/raw/retrain_data.json")).expect("manifest"))
            .expect("JSON");
    let report = &data["report"];
    assert_eq!((report["feedback"].as_u64(), report["leaking"].as_u64()), (Some(124), Some(3)), "{report}");
    assert_eq!(report["dropped_new_label"].as_u64(), Some(1));
    let (added, held) = (report["added_to_train"].as_u64().unwrap_or(0), report["held_out"].as_u64().unwrap_or(0));
    assert_eq!(added + held, 120);
    assert!((15..=45).contains(&held), "about a quarter held back: {held}");
    let base = TextTable::read(&out.join("raw/train.parquet"), "ingest").expect("base train").len();
    let next = TextTable::read(&out.join("retrain/raw/train.parquet"), "retrain").expect("new train");
    assert_eq!(next.len() as u64, base as u64 + added);
    assert!(next.ids.iter().any(|id| id.starts_with("feedback-req-")));
    let test_after = TextTable::read(&out.join("retrain/raw/test.parquet"), "retrain").expect("test");
    assert_eq!(test_after, test, "the test split is fixed");

    let all = versions();
    assert_eq!(all.len(), 2, "the retrained model is registered");
    let decision = &all[1]["gate"];
    assert_eq!(decision["challenger"], serde_json::json!(2), "{decision}");
    assert_eq!(decision["champion"], serde_json::json!(1));
    assert!(decision["reasons"].as_array().is_some_and(|r| !r.is_empty()));
    let promoted = decision["promote"].as_bool().expect("a decision");
    assert_eq!(all[1]["stage"], serde_json::json!(if promoted { "production" } else { "candidate" }));
    // The gate's holdout: the test split plus the held-back feedback.
    assert_eq!(decision["holdout"].as_array().map(Vec::len), Some(2));
    // Not one request failed while retraining ran and the gate decided; a
    // promotion reached the running server through the production link.
    let weights = kiln_core::output::sha256_file(&out.join("registry/production/model.safetensors")).expect("hash");
    let production_version = kiln_core::model_folder::version_name(&weights).to_owned();
    let (answers, failures, served_versions) = served.stop_when_serving(&production_version);
    assert!(answers > 10, "the stream kept going: {answers} answers");
    assert_eq!(failures, 0, "no failed request during retraining and the swap");
    assert_eq!(served_versions.len(), if promoted { 2 } else { 1 }, "{served_versions:?}");

    // Too little feedback for the settings: nothing happens.
    let nothing = retrain(&["--new-labels", "drop", "--min-feedback", "1000"]);
    assert!(nothing.status.success(), "{}", String::from_utf8_lossy(&nothing.stderr));
    assert_eq!(versions().len(), 2);

    warm_start_trains_the_top_layers_of_production(&out, &versions, &retrain);
}

/// The newest run record of `stage` under `out/runs`.
fn latest_record(out: &Path, stage: &str) -> kiln_track::RunRecord {
    kiln_track::list(&out.join("runs"))
        .expect("run records")
        .into_iter()
        .rfind(|r| r.stage == stage)
        .unwrap_or_else(|| panic!("no {stage} record"))
}

/// `retrain --init production`, run again in the same output folder: the
/// challenger starts from the production model (its head kept), replays a
/// quarter of each class of the old rows beside the feedback, and trains only
/// its top 3 layers; it is registered and judged as a cold one is.
fn warm_start_trains_the_top_layers_of_production(
    out: &Path,
    versions: &dyn Fn() -> Vec<serde_json::Value>,
    retrain: &dyn Fn(&[&str]) -> std::process::Output,
) {
    use kiln_data::schema::TextTable;
    let production = std::fs::canonicalize(out.join("registry/production")).expect("the production link");
    let warm = retrain(&["--new-labels", "drop", "--init", "production"]);
    assert!(warm.status.success(), "{}", String::from_utf8_lossy(&warm.stderr));
    let data: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("retrain/raw/retrain_data.json")).expect("manifest"))
            .expect("JSON");
    let report = &data["report"];
    let base = TextTable::read(&out.join("raw/train.parquet"), "ingest").expect("base train");
    let replayed = report["replayed"].as_u64().expect("a warm start counts its replayed rows") as usize;
    let next = TextTable::read(&out.join("retrain/raw/train.parquet"), "retrain").expect("new train");
    let old: Vec<&String> =
        next.ids.iter().zip(&next.labels).filter(|(id, _)| !id.starts_with("feedback-")).map(|(_, l)| l).collect();
    assert_eq!(old.len(), replayed);
    for label in ["positive", "negative"] {
        let all = base.labels.iter().filter(|l| *l == label).count();
        let replay = old.iter().filter(|l| **l == label).count();
        assert!(replay.abs_diff(all / 4) <= 1, "{label}: {replay} of {all} replayed, a quarter expected");
    }
    assert_eq!(next.len() as u64, replayed as u64 + report["added_to_train"].as_u64().expect("added"));
    let all = versions();
    assert_eq!(all.len(), 3, "the warm challenger is registered");
    assert!(all[2]["gate"]["promote"].is_boolean(), "and judged: {}", all[2]);

    // Frozen below the top 3 of MiniLM's 6 layers: embeddings and layer 0 as production's, layer 5 trained.
    let tensors = |dir: &Path| std::fs::read(dir.join("model.safetensors")).expect("weights");
    let (before, after) = (tensors(&production), tensors(&out.join("retrain/model")));
    let (before, after) = (
        safetensors::SafeTensors::deserialize(&before).expect("safetensors"),
        safetensors::SafeTensors::deserialize(&after).expect("safetensors"),
    );
    let same = |name: &str| {
        before.tensor(name).expect("in production").data() == after.tensor(name).expect("in the challenger").data()
    };
    assert!(same("bert.embeddings.word_embeddings.weight") && same("bert.encoder.layer.0.output.dense.weight"));
    assert!(!same("bert.encoder.layer.5.output.dense.weight") && !same("classifier.weight"));
    let record = latest_record(out, "retrain");
    assert_eq!(record.tags.get("init").map(String::as_str), Some("production"), "{:?}", record.tags);
}

/// `serve` on the registry's production link with `--watch true`, asked
/// without pause by one client until stopped.
struct ServedUnderLoad {
    child: std::process::Child,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    client: std::thread::JoinHandle<(usize, usize, BTreeSet<String>)>,
    base: String,
}

impl ServedUnderLoad {
    fn start(config: &Path, model_dir: &Path, log_dir: &Path) -> Self {
        let mut child = Command::new(bin_dir().join("serve"))
            .arg("--config")
            .arg(config)
            .args(["--port", "0", "--watch", "true", "--watch-interval-ms", "100", "--threads", "1", "--device", "cpu"])
            .arg("--log-dir")
            .arg(log_dir)
            .arg("--model-dir")
            .arg(model_dir)
            .current_dir(repo())
            .env_remove("KILN_CONFIG")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("serve starts");
        let stderr = child.stderr.take().expect("piped");
        let (address_tx, address_rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if let Some(address) = line.split("listening on ").nth(1) {
                    let _ = address_tx.send(address.trim().to_owned());
                }
            }
        });
        let base = address_rx.recv_timeout(std::time::Duration::from_secs(120)).expect("serve says where it listens");
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (flag, url) = (stop.clone(), format!("{base}/v1/predict"));
        let client = std::thread::spawn(move || {
            let client = reqwest::blocking::Client::new();
            let (mut answers, mut failures, mut versions) = (0, 0, BTreeSet::new());
            let mut ready = false;
            while !flag.load(std::sync::atomic::Ordering::SeqCst) {
                let answer = client.post(&url).json(&serde_json::json!({"text": "a gripping, funny film"})).send();
                match answer {
                    Ok(response) if response.status().is_success() => {
                        ready = true;
                        answers += 1;
                        let body: serde_json::Value = response.json().unwrap_or_default();
                        versions.insert(body["model_version"].as_str().unwrap_or_default().to_owned());
                    }
                    // Before the model is loaded, 503 is the documented answer; after, any failure counts.
                    _ if !ready => std::thread::sleep(std::time::Duration::from_millis(50)),
                    _ => failures += 1,
                }
            }
            (answers, failures, versions)
        });
        Self { child, stop, client, base }
    }

    /// Waits (up to 30 s) until `version` answers, stops the client and the server.
    fn stop_when_serving(mut self, version: &str) -> (usize, usize, BTreeSet<String>) {
        let client = reqwest::blocking::Client::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::time::Instant::now() < deadline {
            let info: serde_json::Value =
                client.get(format!("{}/v1/model", self.base)).send().and_then(|r| r.json()).unwrap_or_default();
            if info["version"] == version {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        std::thread::sleep(std::time::Duration::from_millis(300));
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let seen =
            std::mem::replace(&mut self.client, std::thread::spawn(|| (0, 0, BTreeSet::new()))).join().expect("client");
        let _ = self.child.kill();
        let _ = self.child.wait();
        seen
    }
}

impl Drop for ServedUnderLoad {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The whole loop on the default data (`scripts/demo/drift_demo.py --dataset
/// default`, what `make drift-demo` does on BANKING77): a first model that
/// hardly saw long reviews, served; a stream that shifts to them, with
/// feedback; monitor on a schedule, retrain on its alert, the gate, the swap.
/// Small training steps keep it to a few minutes; the figures go to the test log.
#[test]
fn the_drift_scenario_detects_the_shift_retrains_and_never_fails_a_request() {
    require_setup();
    let work = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "source scripts/python_env.sh && python scripts/demo/drift_demo.py --dataset default --bin '{}' --work '{}' \
         --early-examples 30 --late-examples 3 --epochs 1 --max-steps 40 --before 400 --after 1600 --after-retraining 400 \
         --monitor-every 200 --min-feedback 150 --late-share 0.8",
        bin_dir().display(),
        work.path().join("demo").display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env_remove("MLFLOW_TRACKING_URI")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("the scenario runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let read = |path: &str| -> serde_json::Value {
        serde_json::from_str(&std::fs::read_to_string(work.path().join("demo").join(path)).expect(path)).expect("JSON")
    };
    // The same stream, once warm from production and once from pre-trained weights.
    let comparison = read("comparison.json");
    let mut recovered = Vec::new();
    for init in ["production", "pretrained"] {
        let summary = read(&format!("{init}/drift_demo.json"));
        assert_eq!(comparison["arms"][init], summary, "the comparison holds each run's summary");
        assert_eq!(summary["init"], serde_json::json!(init));
        let number = |key: &str| summary[key].as_f64().unwrap_or_else(|| panic!("{key} in {summary}"));
        assert_eq!(number("failed_requests"), 0.0, "no request failed through retraining and the swap: {summary}");
        let (shift, alert) = (number("shift_at"), number("first_alert_at"));
        assert!(alert > shift, "the first alert after the shift counts as detection: {summary}");
        assert_eq!(summary["retrain_exit"], serde_json::json!(0), "{summary}");
        let gate = &summary["gate"];
        assert!(gate["promote"].is_boolean() && gate["reasons"].as_array().is_some_and(|r| !r.is_empty()), "{summary}");
        assert_eq!(summary["promoted"], gate["promote"], "a promotion reaches the running server: {summary}");
        assert!(number("retrain_seconds") > 0.0, "{summary}");
        if gate["promote"] == serde_json::json!(true) {
            // Recovery runs from the first alert to the promoted model's first answer, retraining included.
            assert!(number("recovery_seconds") >= number("retrain_seconds") - 1.0, "{summary}");
            assert!(number("recovery_predictions") > 0.0, "the stream went on meanwhile: {summary}");
            recovered.push(format!(
                "{init} {} s / {} predictions",
                number("recovery_seconds"),
                number("recovery_predictions")
            ));
        } else {
            assert!(summary["recovery_seconds"].is_null(), "no recovery without a promotion: {summary}");
            recovered.push(format!("{init} refused by the gate"));
        }
        let plot = std::fs::read_to_string(work.path().join(format!("demo/{init}/stream.svg"))).expect("stream.svg");
        assert!(plot.contains("<svg") && plot.contains("stream accuracy"), "the stream's plot has its line");
        let report = std::fs::read_to_string(work.path().join(format!("demo/{init}/report.md"))).expect("report.md");
        assert!(report.contains("](stream.svg)") && report.contains("recovery seconds"), "{report}");
    }
    let side_by_side = std::fs::read_to_string(work.path().join("demo/report.md")).expect("report.md");
    assert!(side_by_side.contains("retrain.init = production") && side_by_side.contains("recovery seconds"));
    let warm = read("production/drift_demo.json");
    kiln_testing::figure(&format!(
        "drift scenario (default data): detection delay {} predictions, {} false alerts before the shift, \
         accuracy {} before / {} after the shift / {} after warm retraining; recovery: {}",
        warm["detection_delay_predictions"],
        warm["false_alerts_before_shift"],
        warm["accuracy_before_shift"],
        warm["accuracy_after_shift"],
        warm["accuracy_after_retraining"],
        recovered.join(", "),
    ));
}

/// The loop for a tagger (`scripts/demo/drift_demo_ner.py --dataset default`,
/// what `make drift-demo-ner` does on WNUT-17): a first tagger that hardly saw
/// products, served; a stream that shifts to sentences naming them, with span
/// feedback; monitor on a schedule, retrain (warm, from the production
/// tagger) on its alert, the gate, the swap.
#[test]
fn the_tagger_drift_scenario_detects_the_shift_retrains_and_never_fails_a_request() {
    require_setup();
    let work = tempfile::tempdir().expect("tempdir");
    let script = format!(
        "source scripts/python_env.sh && python scripts/demo/drift_demo_ner.py --dataset default --bin '{}' \
         --work '{}' --early-examples 300 --late-examples 5 --epochs 1 --max-steps 60 --before 400 --after 1600 --after-retraining 400 \
         --monitor-every 200 --min-feedback 100 --init production",
        bin_dir().display(),
        work.path().join("demo").display()
    );
    let output = Command::new("bash")
        .args(["-c", &script])
        .current_dir(repo())
        .env_remove("KILN_CONFIG")
        .env_remove("MLFLOW_TRACKING_URI")
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("the scenario runs");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&output.stderr));
    let summary: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(work.path().join("demo/production/drift_demo.json")).expect("drift_demo.json"),
    )
    .expect("JSON");
    let number = |key: &str| summary[key].as_f64().unwrap_or_else(|| panic!("{key} in {summary}"));
    assert_eq!(number("failed_requests"), 0.0, "no request failed through retraining and the swap: {summary}");
    assert_eq!(number("false_alerts_before_shift"), 0.0, "{summary}");
    let (shift, alert) = (number("shift_at"), number("first_alert_at"));
    assert!(alert > shift, "the first alert after the shift counts as detection: {summary}");
    assert!(number("entity_f1_after_shift") < number("entity_f1_before_shift") - 0.1, "the shift hurts: {summary}");
    assert_eq!(summary["retrain_exit"], serde_json::json!(0), "{summary}");
    assert_eq!(summary["init"], serde_json::json!("production"), "a tagger's warm start through the loop");
    let gate = &summary["gate"];
    assert!(gate["entity_micro_f1"]["challenger"].is_number(), "a tagger's gate: {summary}");
    assert_eq!(summary["promoted"], gate["promote"], "a promotion reaches the running server: {summary}");
    let monitor =
        std::fs::read_to_string(work.path().join("demo/production/monitor/report.md")).expect("monitor report");
    assert!(monitor.contains("## Entities by window"), "{monitor}");
    let plot = std::fs::read_to_string(work.path().join("demo/production/stream.svg")).expect("stream.svg");
    assert!(plot.contains("entity micro-F1"), "the stream's plot has its line");
    kiln_testing::figure(&format!(
        "tagger drift scenario (generated data): detection delay {} predictions, {} false alerts before the shift, \
         entity F1 {} before / {} after the shift / {} after warm retraining, gate {}, {} failed requests",
        number("detection_delay_predictions"),
        number("false_alerts_before_shift"),
        summary["entity_f1_before_shift"],
        summary["entity_f1_after_shift"],
        summary["entity_f1_after_retraining"],
        if gate["promote"] == serde_json::json!(true) { "promoted" } else { "refused" },
        number("failed_requests"),
    ));
}

/// The Airflow DAG (deploy/airflow/kiln_loop.py) with the Airflow that
/// `scripts/setup.sh airflow` installs: `DagBag` imports both DAGs with no
/// errors, and `airflow dags test` runs `kiln_loop` on the default data
/// (SQLite metadata database, no services): monitor, decide, a scheduled warm
/// retraining through the gate, the registry; every task's kiln lines JSON.
#[test]
fn the_airflow_dag_imports_and_runs_the_loop_on_the_default_data() {
    require_setup();
    require_tool(".venv-airflow/bin/airflow", "airflow");
    let (dir, mut config) = small_pipeline(300);
    let (out, config_path) = (dir.path().join("out"), dir.path().join("small.toml"));
    let path = |p: &Path| toml::Value::String(p.display().to_string());
    let log_dir = out.join("log");
    let mut retrain = toml::Table::new();
    retrain.insert("log_dir".into(), path(&log_dir));
    retrain.insert("output_dir".into(), path(&out.join("retrain")));
    retrain.insert("min_feedback".into(), 20.into());
    retrain.insert("new_labels".into(), "drop".into());
    config.insert("retrain".into(), retrain.into());
    let mut monitor = toml::Table::new();
    monitor.insert("log_dir".into(), path(&log_dir));
    monitor.insert("output_dir".into(), path(&out.join("monitor")));
    monitor.insert("model_dir".into(), path(&out.join("registry/production")));
    config.insert("monitor".into(), monitor.into());
    let mut gate = toml::Table::new();
    gate.insert("bootstrap_resamples".into(), 100.into());
    gate.insert("min_class_support".into(), 5.into());
    gate.insert("device".into(), "cpu".into());
    config.insert("gate".into(), gate.into());
    write_config(&config_path, &config);
    make_pipeline(&config_path);
    // Served traffic with feedback: 80 reviews the model never saw.
    let lines: Vec<String> = data_slice(420)
        .lines()
        .skip(301)
        .filter_map(|line| {
            let mut fields = line.splitn(3, '\t');
            let (_, score, text) = (fields.next()?, fields.next()?.parse::<f64>().ok()?, fields.next()?);
            (score != 0.0).then(|| (text.to_owned(), if score > 0.0 { "positive" } else { "negative" }))
        })
        .take(80)
        .enumerate()
        .flat_map(|(i, (text, label))| crate::common::logged(i, Some(&text), Some(label), "v1"))
        .collect();
    std::fs::create_dir_all(&log_dir).expect("log dir");
    std::fs::write(log_dir.join("predictions-1-0001.jsonl"), lines.join("\n") + "\n").expect("log");

    let home = dir.path().join("airflow");
    let airflow = |program: &str| {
        let mut command = Command::new(repo().join(".venv-airflow/bin").join(program));
        command
            .env("AIRFLOW_HOME", &home)
            .env("AIRFLOW__CORE__DAGS_FOLDER", repo().join("deploy/airflow"))
            .env("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
            .env("AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", format!("sqlite:///{}", home.join("airflow.db").display()))
            .env("KILN_BIN", bin_dir())
            .env("KILN_CONFIG", &config_path)
            .env("KILN_WORKDIR", repo())
            .env("KILN_TASK_RETRIES", "0")
            .env("OMP_NUM_THREADS", "1")
            .env_remove("KILN_LOG_FORMAT")
            .current_dir(dir.path());
        command
    };
    let imported = airflow("python")
        .args([
            "-c",
            "import json; from airflow.dag_processing.dagbag import DagBag; b = DagBag(); \
                      print(json.dumps({'errors': {k: str(v) for k, v in b.import_errors.items()}, \
                      'dags': {d: sorted(t.task_id for t in b.dags[d].tasks) for d in b.dag_ids}}))",
        ])
        .output()
        .expect("Airflow's Python runs");
    let stdout = String::from_utf8_lossy(&imported.stdout);
    assert!(imported.status.success(), "{stdout}\n{}", String::from_utf8_lossy(&imported.stderr));
    let bag: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap_or("")).expect("the DagBag summary");
    assert_eq!(bag["errors"], serde_json::json!({}), "import errors");
    let tasks = serde_json::json!(["decide", "healthy", "monitor", "registry", "retrain"]);
    assert_eq!((&bag["dags"]["kiln_loop"], &bag["dags"]["kiln_loop_k8s"]), (&tasks, &tasks), "{bag}");

    let migrated = airflow("airflow").args(["db", "migrate"]).output().expect("airflow runs");
    assert!(migrated.status.success(), "{}", String::from_utf8_lossy(&migrated.stderr));
    let run = airflow("airflow")
        .args(["dags", "test", "kiln_loop", "--conf", r#"{"retrain": "always", "init": "production"}"#])
        .output()
        .expect("airflow runs");
    let log = format!("{}\n{}", String::from_utf8_lossy(&run.stdout), String::from_utf8_lossy(&run.stderr));
    assert!(run.status.success(), "airflow dags test failed:\n{log}");
    let registered: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(out.join("registry/registry.json")).expect("index"))
            .expect("JSON");
    let versions = registered["versions"].as_array().cloned().unwrap_or_default();
    assert_eq!(versions.len(), 2, "the DAG's retrain registered a challenger:\n{log}");
    assert!(versions[1]["gate"]["promote"].is_boolean(), "and the gate judged it: {}", versions[1]);
    let record = latest_record(&out, "retrain");
    assert_eq!(record.tags.get("init").map(String::as_str), Some("production"), "{:?}", record.tags);
    // kiln's lines in the task logs are JSON (KILN_LOG_FORMAT=json in the DAG).
    assert!(log.contains(r#"\"stage\":\"retrain\""#) || log.contains(r#""stage":"retrain""#), "{log}");
}
