//! What `make pipeline` asks of kiln beside the stages themselves: the state
//! that lets make rerun only what changed ([`write_make_state`]) and the lines
//! it ends with ([`summary`]). Paths and done files come from the resolved
//! settings, so make and the stages can never disagree on them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Component, Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_config::PipelineConfig;
use kiln_core::EvalMetrics;
use kiln_core::output::{StageManifest, read_json, write_file_atomically};

use crate::registry::{Registry, Stage};

/// The stages `make pipeline` runs, in order; `registry add` follows them.
/// `label` runs only for a config with labelling functions.
pub const STAGES: [&str; 8] = ["ingest", "clean", "label", "tokenize", "profile", "train", "eval", "export"];

/// The make include that [`write_make_state`] writes into its folder.
pub const MAKE_PATHS: &str = "paths.mk";

/// Where each stage writes, by stage (train has two folders).
fn stage_outputs(config: &PipelineConfig) -> Vec<(&'static str, &PathBuf)> {
    let label = config.weak_labels().then_some(("label", &config.label.output_dir));
    [
        ("ingest", &config.ingest.output_dir),
        ("clean", &config.clean.output_dir),
        ("tokenize", &config.tokenize.output_dir),
        ("profile", &config.profile.output_dir),
        ("train", &config.train.output_dir),
        ("train", &config.train.run_dir),
        ("eval", &config.eval.output_dir),
        ("export", &config.export.output_dir),
    ]
    .into_iter()
    .chain(label)
    .collect()
}

/// One thing a stage reads, named by its config key.
struct StageInput<'a> {
    stage: &'static str,
    key: &'static str,
    path: Option<&'a PathBuf>,
    /// Whether an earlier stage of the same config should have written it
    /// (not the user's data or a pre-trained model).
    from_a_stage: bool,
}

/// What each stage reads, stage by stage in order.
fn stage_inputs(config: &PipelineConfig) -> Vec<StageInput<'_>> {
    fn input<'a>(
        stage: &'static str,
        key: &'static str,
        path: Option<&'a PathBuf>,
        from_a_stage: bool,
    ) -> StageInput<'a> {
        StageInput { stage, key, path, from_a_stage }
    }
    let (ingest, profile, tokenize) = (&config.ingest, &config.profile, &config.tokenize);
    let (train, eval, export) = (&config.train, &config.eval, &config.export);
    // Settings left out of [profile] come from [tokenize] (the tokenizer, max_length).
    let profiled = match &profile.input_file {
        Some(file) => input("profile", "profile.input_file", Some(file), false),
        None => input("profile", "profile.input_dir", Some(&profile.input_dir), true),
    };
    let mut inputs = vec![
        input("ingest", "ingest.train_file", ingest.train_file.as_ref(), false),
        input("ingest", "ingest.validation_file", ingest.validation_file.as_ref(), false),
        input("ingest", "ingest.test_file", ingest.test_file.as_ref(), false),
        input("clean", "clean.input_dir", Some(&config.clean.input_dir), true),
    ];
    if config.weak_labels() {
        inputs.push(input("label", "label.input_dir", Some(&config.label.input_dir), true));
        for function in &config.label.functions {
            match &function.rule {
                kiln_label::Rule::Lexicon { file, .. } => {
                    inputs.push(input("label", "label.functions", Some(file), false))
                }
                kiln_label::Rule::Model { model_dir, .. } => {
                    inputs.push(input("label", "label.functions", Some(model_dir), false));
                }
                _ => {}
            }
        }
    }
    inputs.extend([
        input("tokenize", "tokenize.input_dir", Some(&tokenize.input_dir), true),
        input("tokenize", "tokenize.model_dir", Some(&tokenize.model_dir), false),
        profiled,
        input("profile", "profile.model_dir", Some(profile.model_dir.as_ref().unwrap_or(&tokenize.model_dir)), false),
        input("train", "train.input_dir", Some(&train.input_dir), true),
        input("train", "train.model_dir", Some(&train.model_dir), false),
        input("eval", "eval.model_dir", Some(&eval.model_dir), true),
        input("eval", "eval.input_dir", Some(&eval.input_dir), true),
        input("eval", "eval.train_metrics", Some(&eval.train_metrics), true),
        input("export", "export.model_dir", Some(&export.model_dir), true),
        input("export", "export.eval_metrics", Some(&export.eval_metrics), true),
        input("export", "export.reference_predictions", Some(&export.reference_predictions), true),
        input("export", "export.data_profile", Some(&export.data_profile), true),
    ]);
    inputs
}

/// Writes into `state` (one folder per config, so configs never share state):
/// `<stage>.json`, the stage's resolved section, rewritten only when it
/// changed, so its mtime is the last time that stage's settings changed; and
/// [`MAKE_PATHS`], make variables: each stage's done file (the file it writes
/// last, so a killed run never looks finished) and its prerequisites (the done
/// file of the stage that produces an input, or the input's own files when no
/// stage of this config does).
pub fn write_make_state(config: &PipelineConfig, state: &Path) -> Result<()> {
    std::fs::create_dir_all(state).with_context(|| format!("cannot create {}", state.display()))?;
    let resolved = serde_json::to_value(config.redacted()).context("the settings as JSON")?;
    for stage in STAGES {
        let text = serde_json::to_string_pretty(&resolved[stage]).context("a section as JSON")? + "\n";
        let target = state.join(format!("{stage}.json"));
        if std::fs::read_to_string(&target).ok().as_deref() != Some(text.as_str()) {
            write_file_atomically(&target, text.as_bytes())?;
        }
    }
    let done = config.done_files();
    let produced: Vec<(PathBuf, &PathBuf)> =
        stage_outputs(config).into_iter().filter_map(|(stage, dir)| Some((normalize(dir), done.get(stage)?))).collect();
    let mut deps: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for input in stage_inputs(config) {
        let Some(path) = input.path.map(|p| normalize(p)) else { continue };
        let found = if let Some((_, done)) = produced.iter().find(|(out, _)| path.starts_with(out)) {
            vec![(*done).clone()]
        } else if path.is_dir() {
            let mut files: Vec<PathBuf> = std::fs::read_dir(&path)
                .with_context(|| format!("cannot list {}", path.display()))?
                .filter_map(|entry| entry.ok().map(|e| e.path()))
                .filter(|p| p.is_file())
                .collect();
            files.sort();
            files
        } else {
            // A missing file stays a prerequisite: make then says which one is missing.
            vec![path]
        };
        let words = deps.entry(input.stage).or_default();
        for path in found {
            let word = path.display().to_string();
            if word.contains(char::is_whitespace) {
                bail!("pipeline: {word}: a path with spaces cannot be a make target");
            }
            if !words.contains(&word) {
                words.push(word);
            }
        }
    }
    let mut make = String::new();
    for stage in STAGES {
        let name = stage.to_uppercase();
        let prerequisites = deps.get(stage).map(|words| words.join(" ")).unwrap_or_default();
        // A stage this config does not run (`label` without functions) has no done file.
        let done = done.get(stage).map(|path| path.display().to_string()).unwrap_or_default();
        let _ = writeln!(make, "{name}_DONE := {done}\n{name}_DEPS := {prerequisites}");
    }
    // `registry add` records the export; its index is rewritten by each change.
    let _ = writeln!(make, "REGISTRY_INDEX := {}", done["registry"].display());
    write_file_atomically(&state.join(MAKE_PATHS), make.as_bytes())
}

/// The stages' inputs that should come from an earlier stage of the same
/// config, by key, that no stage of it writes: a config whose `[export]` still
/// names the default pipeline's eval would carry another model's reference.
pub fn inputs_from_elsewhere(config: &PipelineConfig) -> Vec<(&'static str, PathBuf)> {
    let outputs: Vec<PathBuf> = stage_outputs(config)
        .into_iter()
        .filter(|(stage, _)| *stage != "export")
        .map(|(_, dir)| normalize(dir))
        .collect();
    stage_inputs(config)
        .into_iter()
        .filter(|input| input.from_a_stage)
        .filter_map(|input| Some((input.key, normalize(input.path?))))
        .filter(|(_, path)| !outputs.iter().any(|out| path.starts_with(out)))
        .collect()
}

/// `./data/raw/` and `data/raw` are one folder to make.
fn normalize(path: &Path) -> PathBuf {
    path.components().filter(|c| *c != Component::CurDir).collect()
}

/// The lines `make pipeline` ends with: the headline test figures, the report,
/// the model folder and its registry version. `bin` is where the binaries are,
/// for the command that promotes it.
pub fn summary(config: &PipelineConfig, config_path: &str, bin: &Path) -> Result<String> {
    let metrics_path = config.eval.output_dir.join(EvalMetrics::FILE);
    let metrics = EvalMetrics::load(&metrics_path)?;
    let (headline, rows) = match &metrics.entities {
        // A tagger: entity F1 as seqeval gives it (micro) in both modes, then word accuracy.
        Some(entities) => (
            format!(
                "entity F1 {:.4} (strict IOB2 {:.4}), entity macro F1 {:.4}, word accuracy {:.4}",
                entities.conlleval.micro.f1, entities.strict.micro.f1, metrics.macro_f1, metrics.accuracy
            ),
            "sentences",
        ),
        None => (
            format!("accuracy {:.4}, macro_f1 {:.4}, loss {:.4}", metrics.accuracy, metrics.macro_f1, metrics.loss),
            "examples",
        ),
    };
    let export_dir = &config.export.output_dir;
    let registry = Registry::new(&config.registry);
    let mut out = format!("pipeline done for {config_path}\n");
    let _ = writeln!(out, "  {} metrics ({} {rows}): {headline}", metrics.split, metrics.examples);
    let _ = writeln!(out, "  report:  {}", config.eval.output_dir.join(kiln_core::stages::REPORT).display());
    let _ = writeln!(out, "  model:   {}/", export_dir.display());
    let index = registry.load()?;
    // The export's manifest has the weights' sha256 already.
    let manifest: StageManifest<serde::de::IgnoredAny> =
        read_json(&export_dir.join(kiln_core::stages::EXPORT_DONE), "an export manifest")?;
    let weights = manifest
        .outputs
        .iter()
        .find(|output| Path::new(&output.path).file_name() == Some(kiln_core::model_folder::WEIGHTS.as_ref()))
        .map(|output| output.sha256.as_str());
    let this = index.versions.iter().find(|v| Some(v.weights_sha256.as_str()) == weights);
    let dir = registry.dir().display();
    if let Some(this) = this {
        let _ = writeln!(out, "  version: {} ({}) in {dir}/", this.name(), this.stage);
    }
    if let Some(production) = index.production() {
        let _ = writeln!(
            out,
            "  serving: {}, {dir}/{} (`make serve CONFIG={config_path}`)",
            production.name(),
            crate::registry::PRODUCTION
        );
    }
    if let Some(this) = this.filter(|v| v.stage == Stage::Candidate) {
        let _ = writeln!(
            out,
            "  to serve this one: {}/registry --config {config_path} promote {}",
            bin.display(),
            this.name()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each shipped config chains its own stages: no input is another config's output.
    #[test]
    fn shipped_configs_read_only_their_own_outputs() {
        let configs = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["default.toml", "banking77.toml", "wnut17.toml"] {
            let config = PipelineConfig::load(Some(&configs.join(name))).expect(name);
            assert_eq!(inputs_from_elsewhere(&config), Vec::new(), "{name}");
        }
        let mut stray = PipelineConfig::default();
        stray.eval.output_dir = "artifacts/other/eval".into();
        let keys: Vec<&str> = inputs_from_elsewhere(&stray).into_iter().map(|(key, _)| key).collect();
        assert_eq!(keys, ["export.eval_metrics", "export.reference_predictions"]);
    }

    #[test]
    fn make_state_names_done_files_and_rewrites_a_section_only_when_it_changed() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = PipelineConfig::default();
        write_make_state(&config, dir.path()).expect("state");
        let paths = std::fs::read_to_string(dir.path().join(MAKE_PATHS)).expect("paths.mk");
        assert!(paths.contains("TRAIN_DONE := artifacts/train/train_summary.json\n"), "{paths}");
        assert!(
            paths.contains("EVAL_DEPS := artifacts/train/train_summary.json data/processed/tokenize_report.json\n"),
            "{paths}"
        );
        assert!(paths.contains("REGISTRY_INDEX := artifacts/registry/registry.json\n"), "{paths}");
        let train = dir.path().join("train.json");
        let eval = dir.path().join("eval.json");
        let old = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1);
        for file in [&train, &eval] {
            std::fs::File::options().write(true).open(file).and_then(|f| f.set_modified(old)).expect("mtime");
        }
        let mut changed = config.clone();
        changed.train.learning_rate = 3e-5;
        write_make_state(&changed, dir.path()).expect("state again");
        let mtime = |path: &Path| std::fs::metadata(path).and_then(|m| m.modified()).expect("mtime");
        assert!(mtime(&train) > old, "train's section changed: rewritten");
        assert_eq!(mtime(&eval), old, "eval's did not: left alone");
        let mut spaced = config;
        spaced.ingest.train_file = Some("my data/train.csv".into());
        let error = write_make_state(&spaced, dir.path()).expect_err("a space");
        assert!(format!("{error:#}").contains("my data/train.csv"), "{error:#}");
    }
}
