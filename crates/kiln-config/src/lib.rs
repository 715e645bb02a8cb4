//! kiln's pipeline configuration: one TOML file drives a run, with one
//! section per stage.
//!
//! Each section lives in one file with everything about it: its keys and
//! their defaults (`Default`, the one place defaults live), validation, and
//! the command-line flags of the stages that read it (`<Section>Args`, one
//! flag per key, applied over the file). Unknown keys or wrong types are
//! errors that name the file and the key. Adding a key touches that one file.
//!
//! Relative paths in a config are relative to the directory the stage runs in
//! (the repo root under `make` and `dvc repro`).

/// Sets each `config` field whose flag was given.
macro_rules! apply_overrides {
    ($args:expr, $config:expr, [$($field:ident),* $(,)?], optional [$($opt:ident),* $(,)?]
     $(, by_hand [$($manual:ident),* $(,)?])?) => {
        // Every flag is named here, or the pattern does not compile: a flag that
        // parses but is never applied (tune's --data-fraction once) cannot recur.
        // `by_hand` flags are bound for the caller to apply.
        let Self { $($field,)* $($opt,)* $($($manual,)*)? } = $args;
        $( if let Some(value) = $field { $config.$field = value; } )*
        $( if let Some(value) = $opt { $config.$opt = Some(value); } )*
    };
}

mod clean;
mod eval;
mod export;
mod gate;
mod ingest;
mod label;
mod monitor;
mod predict;
mod profile;
pub mod reference;
mod registry;
mod retrain;
mod score;
mod serve;
mod tokenize;
mod track;
mod train;
mod tune;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub use kiln_core::entities::Aggregation;
pub use kiln_core::entities::{InvalidTags, TagScheme};
pub use kiln_core::{Metric, Precision, Quantize, Split, Task};
use serde::{Deserialize, Serialize};

pub use clean::{CleanArgs, CleanConfig, ConflictPolicy, HashtagMode, UnicodeNormalization};
pub use eval::{EvalArgs, EvalConfig};
pub use export::{ExportArgs, ExportConfig};
pub use gate::{GateArgs, GateConfig, parse_version};
pub use ingest::{IngestArgs, IngestConfig, InputFormat, ValidationSource};
pub use label::{FunctionsFile, LabelArgs, LabelConfig, LabelModelKind, UncoveredRows};
pub use monitor::{FailOn, MonitorArgs, MonitorConfig, WindowKind};
pub use predict::{PredictArgs, PredictConfig, Shard};
pub use profile::{ProfileArgs, ProfileConfig};
pub use registry::{RegistryArgs, RegistryConfig};
pub use retrain::{NewLabelPolicy, RetrainArgs, RetrainConfig, RetrainInit};
pub use score::{ScoreOp, ScoreRule};
pub use serve::{ApiToken, LogText, SIGNING_KEY, Scope, ServeArgs, ServeConfig, TEXT_CHARS_PER_TOKEN};
pub use tokenize::{LongSentences, TokenTypeIds, TokenizeArgs, TokenizeConfig, UnknownLabelPolicy};
pub use track::{TrackArgs, TrackConfig};
pub use train::{ClassWeights, TrainArgs, TrainConfig, TrainLoss, WeakTargets};

pub use tune::{ParamSpec, PrunerKind, SamplerKind, TuneArgs, TuneConfig, parse_space_entry};

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    // The underlying errors are part of the message, not `#[source]`s: their text
    // (a TOML snippet pointing at the key) is the useful part and should print once.
    #[error("cannot read config file {path}: {error}")]
    Read { path: PathBuf, error: std::io::Error },
    #[error("config file {path} is not valid: {error}")]
    Parse { path: PathBuf, error: Box<toml::de::Error> },
    #[error("config key `{key}`: {message}")]
    Invalid { key: String, message: String },
}

impl ConfigError {
    fn invalid(key: &str, message: impl Into<String>) -> Self {
        Self::Invalid { key: key.to_owned(), message: message.into() }
    }
}

/// `precision = "bf16"` and `quantize = "int8"` are two ways to run the same
/// linear layers: asking for both is an error (`auto` gives way to int8).
fn check_precision(section: &str, precision: Precision, quantize: Quantize) -> Result<(), ConfigError> {
    if precision == Precision::Bf16 && quantize == Quantize::Int8 {
        return Err(ConfigError::invalid(
            &format!("{section}.precision"),
            "bf16 and quantize = \"int8\" are two ways to run the encoder's linear layers: choose one",
        ));
    }
    Ok(())
}

/// How every stage writes its log lines (to stderr).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// For a person at a terminal: `LEVEL message key=value`, with progress bars.
    #[default]
    Text,
    /// One JSON object per line (timestamp, level, stage, message, fields, target), no progress
    /// bars: what Filebeat, Vector or Promtail ship to ELK or Loki as it is.
    Json,
}

/// The whole pipeline's settings: one section per stage.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    /// A label per text or a tag per word; every stage follows it (`--task`).
    pub task: Task,
    /// Log lines for a person (`text`) or a log shipper (`json`); every stage and `serve` (`--log-format`).
    pub log_format: LogFormat,
    pub ingest: IngestConfig,
    pub clean: CleanConfig,
    pub label: LabelConfig,
    pub tokenize: TokenizeConfig,
    pub profile: ProfileConfig,
    pub train: TrainConfig,
    pub eval: EvalConfig,
    pub export: ExportConfig,
    pub predict: PredictConfig,
    pub serve: ServeConfig,
    pub track: TrackConfig,
    pub registry: RegistryConfig,
    pub monitor: MonitorConfig,
    pub gate: GateConfig,
    pub retrain: RetrainConfig,
    pub tune: TuneConfig,
}

impl PipelineConfig {
    /// Reads `path`, or the built-in defaults when there is none.
    pub fn load(path: Option<&Path>) -> Result<Self, ConfigError> {
        let Some(path) = path else {
            return Ok(Self::default());
        };
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        Self::from_toml(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error: Box::new(error) })
    }

    pub fn from_toml(text: &str) -> Result<Self, toml::de::Error> {
        toml::from_str(text)
    }

    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value is representable in TOML. This is a bug.")
    }

    /// The file each pipeline stage writes last, by stage: the stage is done
    /// exactly when it exists (`make`'s targets).
    pub fn done_files(&self) -> BTreeMap<&'static str, PathBuf> {
        use kiln_core::stages::*;
        let mut done = BTreeMap::from([
            ("ingest", self.ingest.output_dir.join(INGEST_DONE)),
            ("clean", self.clean.output_dir.join(CLEAN_DONE)),
            ("tokenize", self.tokenize.output_dir.join(TOKENIZE_DONE)),
            ("profile", self.profile.output_dir.join(PROFILE_DONE)),
            ("train", self.train.run_dir.join(TRAIN_DONE)),
            ("eval", self.eval.output_dir.join(EVAL_DONE)),
            ("export", self.export.output_dir.join(EXPORT_DONE)),
            ("registry", self.registry.dir.join(REGISTRY_DONE)),
        ]);
        if self.weak_labels() {
            done.insert("label", self.label.output_dir.join(LABEL_DONE));
        }
        done
    }

    /// Whether the pipeline runs `label` (the config declares labelling functions).
    pub fn weak_labels(&self) -> bool {
        !self.label.functions.is_empty()
    }

    /// [`Self::done_files`] as a TOML table of `stage = "path"`.
    pub fn done_files_toml(&self) -> String {
        let table: BTreeMap<&str, String> =
            self.done_files().into_iter().map(|(stage, path)| (stage, path.display().to_string())).collect();
        toml::to_string(&table).expect("a table of strings is TOML. This is a bug.")
    }

    /// The settings with secrets left out, for terminals, logs and run records.
    pub fn redacted(&self) -> Self {
        let mut config = self.clone();
        for token in &mut config.serve.api_tokens {
            // The name tells which token; the rest may be the secret.
            *token = match token.split_once(':') {
                Some((name, _)) => format!("{name}:<redacted>"),
                None => "<redacted>".into(),
            };
        }
        if let Some(uri) = &mut config.track.mlflow_tracking_uri {
            *uri = without_credentials(uri);
        }
        config
    }
}

/// A URL with any user name and password removed (they may be credentials).
pub fn without_credentials(uri: &str) -> String {
    match url::Url::parse(uri) {
        Ok(mut url) if !url.username().is_empty() || url.password().is_some() => {
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        _ => uri.to_owned(),
    }
}

/// The settings a trained model was made with, saved beside its weights as
/// `kiln.toml`: `predict` and `serve` clean and tokenize text exactly as
/// training did, so training and serving cannot drift apart.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelSettings {
    /// What the model predicts: a label per text, or a tag per word.
    #[serde(default)]
    pub task: Task,
    /// How texts were cleaned; absent when the data did not go through `clean`.
    pub clean: Option<CleanConfig>,
    pub tokenize: TokenizeConfig,
    pub train: TrainConfig,
}

impl ModelSettings {
    pub fn to_toml(&self) -> String {
        toml::to_string_pretty(self).expect("every config value is representable in TOML. This is a bug.")
    }

    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|error| ConfigError::Read { path: path.to_owned(), error })?;
        toml::from_str(&text).map_err(|error| ConfigError::Parse { path: path.to_owned(), error: Box::new(error) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(PipelineConfig::from_toml("").expect("parses"), PipelineConfig::default());
    }

    #[test]
    fn defaults_round_trip_through_toml() {
        let config = PipelineConfig::default();
        assert_eq!(PipelineConfig::from_toml(&config.to_toml()).expect("parses"), config);
    }

    #[test]
    fn unknown_key_is_an_error_naming_it() {
        let error = PipelineConfig::from_toml("[clean]\nstrip_url = true\n").expect_err("unknown key");
        let message = error.to_string();
        assert!(message.contains("strip_url"), "{message}");
        assert!(message.contains("line 2"), "{message}");
    }

    #[test]
    fn unknown_section_is_an_error() {
        let error = PipelineConfig::from_toml("[ingets]\nseed = 1\n").expect_err("unknown section");
        assert!(error.to_string().contains("ingets"), "{error}");
    }

    #[test]
    fn wrong_type_is_an_error_naming_the_key() {
        let error = PipelineConfig::from_toml("[ingest]\nseed = \"abc\"\n").expect_err("wrong type");
        let message = error.to_string();
        assert!(message.contains("seed"), "{message}");
        assert!(message.contains("integer") || message.contains("u64"), "{message}");
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("bad.toml");
        std::fs::write(&path, "[tokenize]\nmax_lenght = 3\n").expect("write");
        let message = PipelineConfig::load(Some(&path)).expect_err("bad").to_string();
        assert!(message.contains("bad.toml") && message.contains("max_lenght"), "{message}");
        let missing = PipelineConfig::load(Some(&dir.path().join("nope.toml"))).expect_err("missing");
        assert!(matches!(missing, ConfigError::Read { .. }));
    }

    #[test]
    fn validation_names_keys() {
        let mut ingest = IngestConfig::default();
        assert!(ingest.validate().expect_err("no file").to_string().contains("ingest.train_file"));
        ingest.train_file = Some("x.csv".into());
        ingest.validate().expect("valid");
        ingest.validation_fraction = 1.5;
        assert!(ingest.validate().expect_err("fraction").to_string().contains("validation_fraction"));
        ingest.validation_fraction = 0.5;
        ingest.test_fraction = 0.5;
        assert!(ingest.validate().is_err());
        ingest.test_fraction = 0.1;
        ingest.score_column = Some("score".into());
        assert!(ingest.validate().expect_err("no rules").to_string().contains("score_labels"));
        ingest.score_labels = vec!["positive >> 0".into()];
        assert!(ingest.validate().expect_err("bad rule").to_string().contains("score_labels"));

        let clean = CleanConfig { min_chars: 10, max_chars: 5, ..CleanConfig::default() };
        assert!(clean.validate().is_err());
        let tokenize = TokenizeConfig { max_length: 1, ..TokenizeConfig::default() };
        assert!(tokenize.validate().expect_err("too short").to_string().contains("max_length"));
        let train = TrainConfig { warmup_ratio: 1.0, ..TrainConfig::default() };
        assert!(train.validate().expect_err("warm-up").to_string().contains("train.warmup_ratio"));
        let train = TrainConfig { batch_size: 0, ..TrainConfig::default() };
        assert!(train.validate().expect_err("batch").to_string().contains("train.batch_size"));
    }

    #[test]
    fn shipped_configs_parse_and_validate() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        for name in ["default.toml", "banking77.toml", "youtube-spam.toml"] {
            let config = PipelineConfig::load(Some(&root.join(name))).expect(name);
            if config.weak_labels() {
                config.label.validate().expect(name);
            }
            config.ingest.validate().expect(name);
            config.clean.validate().expect(name);
            config.tokenize.validate().expect(name);
            config.train.validate().expect(name);
            config.eval.validate().expect(name);
            config.serve.validate().expect(name);
            config.monitor.validate().expect(name);
            config.gate.validate().expect(name);
            config.retrain.validate().expect(name);
            config.tune.validate().expect(name);
        }
    }

    #[test]
    fn label_settings_are_checked_naming_the_key() {
        let function = "[[label.functions]]\nname = 'link'\nlabel = 'spam'\nkind = 'regex'\npattern = 'http'\n";
        let config = |extra: &str| {
            PipelineConfig::from_toml(&format!("[label]\nlabels = ['spam', 'ham']\n{extra}\n{function}"))
                .expect("parses")
        };
        let valid = config("");
        valid.label.validate().expect("valid");
        assert!(valid.weak_labels() && valid.done_files().contains_key("label"));
        assert!(!PipelineConfig::default().weak_labels(), "no functions, no label stage");
        assert_eq!(valid.label.sorted_labels(), ["ham", "spam"]);
        let error = |config: PipelineConfig| config.label.validate().expect_err("invalid").to_string();
        let mut one_label = config("");
        one_label.label.labels = vec!["spam".into(), "spam".into()];
        assert!(error(one_label).contains("label.labels"));
        assert!(error(config("gold_split = 'train'")).contains("label.gold_split"));
        assert!(error(config("class_balance = [0.5, 0.6]")).contains("label.class_balance"));
        assert!(error(config("learning_rate = 0.0")).contains("label.learning_rate"));
        let mut twice = config("");
        twice.label.functions.push(twice.label.functions[0].clone());
        assert!(error(twice).contains("two functions are named `link`"));
        let unknown = PipelineConfig::from_toml(&format!("[label]\nlabels = ['a', 'b']\n{function}case = 1\n"));
        assert!(unknown.expect_err("unknown key").to_string().contains("case"));
        let mut ingest = IngestConfig { train_file: Some("t.csv".into()), ..IngestConfig::default() };
        ingest.validation_from = ValidationSource::Test;
        assert!(ingest.validate().expect_err("no test file").to_string().contains("ingest.validation_from"));
        ingest.test_file = Some("test.csv".into());
        ingest.validate().expect("validation carved from the test file");
    }

    #[test]
    fn label_flags_reach_the_config_and_read_functions_from_a_file() {
        use clap::Parser;
        #[derive(clap::Parser)]
        struct LabelHarness {
            #[command(flatten)]
            label: LabelArgs,
        }
        let dir = std::env::temp_dir().join(format!("kiln-label-flags-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("functions.toml");
        std::fs::write(&file, "[[functions]]\nname = 'short'\nlabel = 'ham'\nkind = 'length'\nmax = 3\n")
            .expect("file");
        let file_arg = file.display().to_string();
        let args = LabelHarness::try_parse_from([
            "label",
            "--labels",
            "ham",
            "--labels",
            "spam",
            "--functions",
            &file_arg,
            "--model",
            "dawid-skene",
            "--class-balance",
            "0.3",
            "--class-balance",
            "0.7",
            "--gold-split",
            "validation",
        ])
        .expect("parses");
        let mut config = LabelConfig::default();
        args.label.apply(&mut config);
        assert_eq!(config.labels, ["ham", "spam"]);
        assert_eq!((config.functions.len(), config.functions[0].name.as_str()), (1, "short"));
        assert_eq!((config.model, config.gold_split), (LabelModelKind::DawidSkene, Some(Split::Validation)));
        assert_eq!(config.class_balance, [0.3, 0.7]);
        std::fs::write(&file, "[[functions]]\nname = 'x'\nkind = 'regex'\npattern = 'x'\nlabel = 'a'\ncase = 1\n")
            .expect("file");
        let error = LabelHarness::try_parse_from(["label", "--functions", &file_arg]).err().expect("unknown key");
        assert!(error.to_string().contains("is not a list of [[functions]] tables"), "{error}");
        std::fs::remove_dir_all(&dir).expect("clean up");
    }

    #[test]
    fn the_gate_compares_labels_on_a_holdout() {
        GateConfig::default().validate().expect("defaults are valid");
        let loss = GateConfig { metric: Metric::Loss, ..GateConfig::default() };
        assert!(loss.validate().expect_err("loss").to_string().contains("gate.metric"));
        let none = GateConfig { holdout: Vec::new(), ..GateConfig::default() };
        assert!(none.validate().expect_err("no holdout").to_string().contains("gate.holdout"));
        let registry = RegistryConfig::default();
        assert_eq!(GateConfig::default().registry_dir(&registry), registry.dir);
    }

    #[test]
    fn monitor_thresholds_and_durations_are_checked() {
        MonitorConfig::default().validate().expect("defaults are valid");
        let crossed = MonitorConfig { psi_warn: 0.3, psi_alert: 0.2, ..MonitorConfig::default() };
        assert!(crossed.validate().expect_err("warn above alert").to_string().contains("monitor.psi_warn"));
        let duration = MonitorConfig { window_duration: "an hour".into(), ..MonitorConfig::default() };
        assert!(duration.validate().expect_err("not a duration").to_string().contains("monitor.window_duration"));
        let minutes = MonitorConfig { window_duration: "15m".into(), ..MonitorConfig::default() };
        assert_eq!(minutes.window_duration().expect("valid"), std::time::Duration::from_secs(900));
        let resolved = MonitorConfig::default().resolved(&ServeConfig::default(), &RegistryConfig::default());
        assert_eq!(resolved.log_dir.as_deref(), Some(Path::new("artifacts/serve/log")));
        assert_eq!(resolved.model_dir.as_deref(), Some(Path::new("artifacts/registry/production")));
    }

    /// Each stage's default input is the default output of the stage before
    /// it, in the built-in defaults and in every shipped config.
    #[test]
    fn stages_chain_by_default() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../configs");
        let shipped = ["default.toml", "banking77.toml"].map(|name| PipelineConfig::load(Some(&root.join(name))));
        for config in [Ok(PipelineConfig::default())].into_iter().chain(shipped) {
            let c = config.expect("config");
            assert_eq!(c.clean.input_dir, c.ingest.output_dir);
            assert_eq!(c.tokenize.input_dir, c.clean.output_dir);
            assert_eq!(c.train.input_dir, c.tokenize.output_dir);
            assert_eq!((&c.eval.model_dir, &c.eval.input_dir), (&c.train.output_dir, &c.tokenize.output_dir));
            assert_eq!(c.export.model_dir, c.train.output_dir);
            assert_eq!(c.export.eval_metrics, c.eval.output_dir.join("metrics.json"));
            assert_eq!(c.registry.model_dir, c.export.output_dir);
            assert_eq!(c.serve.model_dir, c.registry.dir.join("production"));
        }
    }

    #[test]
    fn done_files_follow_the_output_folders() {
        let mut config = PipelineConfig::default();
        config.eval.output_dir = "out/eval".into();
        let done = config.done_files();
        assert_eq!(done["eval"], Path::new("out/eval/manifest.json"));
        assert_eq!(done["train"], config.train.run_dir.join("train_summary.json"));
        assert_eq!(done["profile"], Path::new("artifacts/profile/manifest.json"));
        assert_eq!(done.len(), 8);
        let table: toml::Table = config.done_files_toml().parse().expect("TOML");
        assert_eq!(table["export"].as_str(), Some("artifacts/export/kiln_export.json"));
    }
}

#[cfg(test)]
mod flag_tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Each flag's id beside the default its help states (`[default: X]`) and
    /// the value `Default` holds for its key, over every section.
    fn stated_defaults() -> Vec<(String, String, serde_json::Value)> {
        let mut all = Vec::new();
        for section in crate::reference::sections() {
            for arg in section.flags.get_arguments() {
                let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
                if let (_, Some(stated)) = crate::reference::split_help(&help) {
                    let id = arg.get_id().to_string();
                    let value = section.defaults.get(&id).cloned().unwrap_or_default();
                    all.push((id, stated.to_owned(), value));
                }
            }
        }
        all
    }

    /// Whether help's `stated` default says `value`: its first word (before any
    /// explanation, as in `auto, from the file extension`) is the number, bool,
    /// word or list `Default` holds; an unset option's help may describe what
    /// stands in for it. The command line spells enum values with `-` where TOML has `_`.
    fn agrees(stated: &str, value: &serde_json::Value) -> bool {
        let first = stated.split([' ', ',', ';']).next().unwrap_or("");
        match value {
            serde_json::Value::Null | serde_json::Value::Object(_) => true,
            serde_json::Value::Bool(b) => first == b.to_string(),
            serde_json::Value::Number(n) => {
                // f32 settings print their nearest f64.
                first
                    .parse::<f64>()
                    .ok()
                    .zip(n.as_f64())
                    .is_some_and(|(a, b)| (a - b).abs() <= 1e-6 * b.abs().max(a.abs()))
            }
            serde_json::Value::String(text) => stated == text || first.replace('-', "_") == text.replace('-', "_"),
            serde_json::Value::Array(items) if items.is_empty() => {
                stated.starts_with("none") || stated.starts_with("the ")
            }
            serde_json::Value::Array(items) => {
                let items: Vec<&str> = items.iter().filter_map(serde_json::Value::as_str).collect();
                stated == items.join(", ") || stated == items.join(",")
            }
        }
    }

    /// Every `[default: ...]` typed in a flag's help says what `Default` holds.
    #[test]
    fn stated_defaults_match_the_configs_defaults() {
        let all = stated_defaults();
        assert!(all.len() > 200, "{} stated defaults", all.len());
        let wrong: Vec<String> = all
            .iter()
            .filter(|(_, stated, value)| !agrees(stated, value))
            .map(|(id, stated, value)| format!("--{id}: help says {stated:?}, Default holds {value}"))
            .collect();
        assert!(wrong.is_empty(), "{} of {} stated defaults disagree:\n{}", wrong.len(), all.len(), wrong.join("\n"));
    }

    #[test]
    fn flags_and_keys_match() {
        for section in crate::reference::sections() {
            let flags: BTreeSet<String> = section.flags.get_arguments().map(|arg| arg.get_id().to_string()).collect();
            let keys: BTreeSet<String> = section.defaults.keys().cloned().collect();
            assert_eq!(flags, keys, "[{}]", section.name);
        }
        // The top-level keys are every stage's global flags.
        let top_level: BTreeSet<String> = match serde_json::to_value(crate::PipelineConfig::default()) {
            Ok(serde_json::Value::Object(map)) => {
                map.into_iter().filter(|(_, v)| !v.is_object()).map(|(k, _)| k).collect()
            }
            other => panic!("the pipeline config is a table: {other:?}"),
        };
        // `kiln_stage::CommonArgs` has its flag (a test there).
        assert_eq!(top_level, BTreeSet::from(["log_format".to_owned(), "task".to_owned()]));
    }

    #[test]
    fn the_task_key_reads_from_toml_and_unknown_tasks_are_refused() {
        let config =
            crate::PipelineConfig::from_toml("task = \"token_classification\"\n[ingest]\ntag_scheme = \"bioes\"\n")
                .expect("parses");
        assert_eq!((config.task, config.ingest.tag_scheme), (crate::Task::TokenClassification, TagScheme::Bioes));
        let error = crate::PipelineConfig::from_toml("task = \"ner\"\n").expect_err("unknown task");
        assert!(error.to_string().contains("token_classification"), "{error}");
        assert!(config.to_toml().starts_with("task = \"token_classification\""), "{}", config.to_toml());
    }

    #[derive(clap::Parser)]
    struct Harness {
        #[command(flatten)]
        ingest: IngestArgs,
    }

    #[derive(clap::Parser)]
    struct TuneHarness {
        #[command(flatten)]
        tune: TuneArgs,
    }

    #[derive(clap::Parser)]
    struct PredictHarness {
        #[command(flatten)]
        predict: PredictArgs,
    }

    #[derive(clap::Parser)]
    struct TrainHarness {
        #[command(flatten)]
        train: TrainArgs,
    }

    /// `tune --data-fraction` once parsed and went nowhere; apply_overrides now
    /// names every flag, and this checks the ones that slipped or are new.
    #[test]
    fn tune_data_fraction_predict_quantize_and_precision_reach_their_configs() {
        use clap::Parser;
        let args =
            TuneHarness::try_parse_from(["tune", "--data-fraction", "0.05", "--precision", "bf16"]).expect("parses");
        let mut tune = TuneConfig::default();
        args.tune.apply(&mut tune);
        assert_eq!((tune.data_fraction, tune.precision), (0.05, Some(Precision::Bf16)));
        let args =
            PredictHarness::try_parse_from(["predict", "--quantize", "int8", "--precision", "auto"]).expect("parses");
        let mut predict = PredictConfig::default();
        args.predict.apply(&mut predict);
        assert_eq!((predict.quantize, predict.precision), (Quantize::Int8, Precision::Auto));
        let args = TrainHarness::try_parse_from(["train", "--precision", "bf16"]).expect("parses");
        let mut train = TrainConfig::default();
        args.train.apply(&mut train);
        assert_eq!(train.precision, Precision::Bf16);
        assert!(TrainHarness::try_parse_from(["train", "--precision", "fp16"]).is_err(), "fp16 is not offered");
    }

    /// bf16 and int8 are two ways to run the same layers: both at once is
    /// refused naming the key; `auto` gives way to int8.
    #[test]
    fn bf16_with_int8_is_refused() {
        let both = PredictConfig {
            input_file: Some("texts.csv".into()),
            quantize: Quantize::Int8,
            precision: Precision::Bf16,
            ..PredictConfig::default()
        };
        let message = both.validate().expect_err("refused").to_string();
        assert!(message.contains("predict.precision") && message.contains("choose one"), "{message}");
        assert!(PredictConfig { precision: Precision::Auto, ..both.clone() }.validate().is_ok());
        let serve = ServeConfig { quantize: Quantize::Int8, precision: Precision::Bf16, ..ServeConfig::default() };
        assert!(serve.validate().expect_err("refused").to_string().contains("serve.precision"));
    }

    #[test]
    fn flags_override_only_what_they_name() {
        use clap::Parser;
        let args = Harness::try_parse_from([
            "ingest",
            "--seed",
            "7",
            "--id-column",
            "uid",
            "--score-labels",
            "pos > 0",
            "--score-labels",
            "neg < 0",
            "--has-header",
            "false",
            "--format",
            "tsv",
        ])
        .expect("parses");
        let mut config = IngestConfig { text_column: "body".into(), ..IngestConfig::default() };
        args.ingest.apply(&mut config);
        assert_eq!(config.seed, 7);
        assert_eq!(config.id_column.as_deref(), Some("uid"));
        assert_eq!(config.score_labels, vec!["pos > 0", "neg < 0"]);
        assert!(!config.has_header);
        assert_eq!(config.format, InputFormat::Tsv);
        assert_eq!(config.text_column, "body", "a key without a flag keeps its config value");
    }
}
