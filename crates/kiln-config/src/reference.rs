//! The book's page of every config key (`docs/src/config-reference.md`),
//! rendered from the flags' own help and each section's `Default`: what
//! `--help` says of a key is what the book says, so the two cannot drift.

use clap::{Args, Command};
use serde::Serialize;

use crate::{
    CleanArgs, CleanConfig, EvalArgs, EvalConfig, ExportArgs, ExportConfig, GateArgs, GateConfig, IngestArgs,
    IngestConfig, LabelArgs, LabelConfig, MonitorArgs, MonitorConfig, PredictArgs, PredictConfig, ProfileArgs,
    ProfileConfig, RegistryArgs, RegistryConfig, RetrainArgs, RetrainConfig, ServeArgs, ServeConfig, TokenizeArgs,
    TokenizeConfig, TrackArgs, TrackConfig, TrainArgs, TrainConfig, TuneArgs, TuneConfig,
};

/// Where the page lives, from the repository root.
pub const PAGE: &str = "docs/src/config-reference.md";

/// One config section: its TOML name, its flags and its defaults (every key,
/// an unset option as `null`).
pub struct Section {
    pub name: &'static str,
    pub flags: Command,
    pub defaults: serde_json::Map<String, serde_json::Value>,
}

fn section<A: Args, C: Serialize + Default>(name: &'static str) -> Section {
    let defaults = match serde_json::to_value(C::default()) {
        Ok(serde_json::Value::Object(defaults)) => defaults,
        _ => unreachable!("a config section is a table. This is a bug."),
    };
    Section { name, flags: A::augment_args(Command::new(name)), defaults }
}

/// A flag's help, split into what it says and the default it states
/// (`... [default: X]`), if any.
pub(crate) fn split_help(help: &str) -> (&str, Option<&str>) {
    match help.rsplit_once(" [default: ") {
        Some((what, stated)) => (what, Some(stated.trim_end_matches(['.', ']']))),
        None => (help, None),
    }
}

/// Every section of [`crate::PipelineConfig`], in the order of a run.
pub fn sections() -> Vec<Section> {
    vec![
        section::<IngestArgs, IngestConfig>("ingest"),
        section::<CleanArgs, CleanConfig>("clean"),
        section::<LabelArgs, LabelConfig>("label"),
        section::<TokenizeArgs, TokenizeConfig>("tokenize"),
        section::<ProfileArgs, ProfileConfig>("profile"),
        section::<TrainArgs, TrainConfig>("train"),
        section::<EvalArgs, EvalConfig>("eval"),
        section::<ExportArgs, ExportConfig>("export"),
        section::<PredictArgs, PredictConfig>("predict"),
        section::<ServeArgs, ServeConfig>("serve"),
        section::<TrackArgs, TrackConfig>("track"),
        section::<RegistryArgs, RegistryConfig>("registry"),
        section::<MonitorArgs, MonitorConfig>("monitor"),
        section::<GateArgs, GateConfig>("gate"),
        section::<RetrainArgs, RetrainConfig>("retrain"),
        section::<TuneArgs, TuneConfig>("tune"),
    ]
}

/// Every key of a config file, spelled `section.key` (and the top-level `task` and `log_format`).
pub fn keys() -> Vec<String> {
    let mut keys = vec!["task".to_owned(), "log_format".to_owned()];
    for section in sections() {
        keys.extend(section.flags.get_arguments().map(|arg| format!("{}.{}", section.name, arg.get_id())));
    }
    keys
}

/// The page: a table per section with each key's flag, environment variable,
/// default and meaning.
pub fn markdown() -> String {
    let mut page = String::from(
        "# Every key\n\n\
         <!-- Generated from the flags' help in crates/kiln-config by `make docs`; edit the help, not this page. -->\n\n\
         Each key of a config file, by section, with the flag that overrides it (of every stage that reads \
         the section), its environment variable where it has one, and its default. The top-level key \
         `task` (`--task`, env `KILN_TASK`; default `sequence_classification`, or `token_classification`) \
         says whether kiln labels texts or tags words; every stage follows it. The top-level key `log_format` \
         (`--log-format`, env `KILN_LOG_FORMAT`; default `text`, or `json`) says how every stage and `serve` \
         write their log lines: `json` writes one object per line (`timestamp`, `level`, `stage`, `message`, \
         `fields`, `target`) and no progress bars.\n",
    );
    for section in sections() {
        page.push_str(&format!("\n## `[{}]`\n\n| key | flag | default | what |\n|---|---|---|---|\n", section.name));
        for arg in section.flags.get_arguments() {
            let key = arg.get_id().as_str();
            let help = arg.get_help().map(ToString::to_string).unwrap_or_default();
            let (what, stated) = split_help(&help);
            let value = section.defaults.get(key).filter(|value| !value.is_null());
            let default = match (value.and_then(|value| toml::Value::try_from(value).ok()), stated) {
                // What the help adds to the value ("auto, from the file extension") stays.
                (Some(value), Some(stated)) => {
                    let value = toml_value(&value);
                    let (first, rest) = stated.find([',', ' ', ';']).map_or((stated, ""), |at| stated.split_at(at));
                    if value.trim_matches('"').replace('_', "-") == first.replace('_', "-") {
                        format!("`{value}`{}", escape(rest))
                    } else {
                        format!("`{value}` ({})", escape(stated))
                    }
                }
                (Some(value), None) => format!("`{}`", toml_value(&value)),
                (None, stated) => stated.map_or_else(|| "none".to_owned(), escape),
            };
            let mut flag = arg.get_long().map_or_else(String::new, |long| format!("`--{long}`"));
            if let Some(env) = arg.get_env() {
                flag.push_str(&format!("<br>env `{}`", env.to_string_lossy()));
            }
            page.push_str(&format!("| `{}.{key}` | {flag} | {default} | {} |\n", section.name, escape(what)));
        }
    }
    page
}

/// A default as a config file spells it; `f32` settings print as typed, not as their nearest `f64`.
fn toml_value(value: &toml::Value) -> String {
    match value {
        toml::Value::Float(float) if f64::from(*float as f32) == *float => format!("{:?}", *float as f32),
        toml::Value::Float(float) => format!("{float:?}"),
        other => other.to_string(),
    }
}

/// Help text as a table cell: no column breaks, no stray HTML, no `[x]` read as a link.
fn escape(text: &str) -> String {
    text.replace('|', "\\|").replace('<', "&lt;").replace('>', "&gt;").replace('[', "\\[").replace(']', "\\]")
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    fn repo_root() -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
    }

    #[test]
    fn the_books_page_is_the_one_the_help_renders() {
        let written = std::fs::read_to_string(repo_root().join(PAGE)).expect("the page is in the repository");
        assert!(written == markdown(), "{PAGE} is out of date with the flags' help: run `make docs` and commit it");
    }

    /// The book names every key somewhere (the generated page does, unless a section is left out of [`sections`]).
    #[test]
    fn the_book_lists_every_config_key() {
        let mut book = String::new();
        for entry in walk(&repo_root().join("docs/src")) {
            book.push_str(&std::fs::read_to_string(entry).expect("a page reads"));
        }
        let keys = keys();
        let top_level = match serde_json::to_value(crate::PipelineConfig::default()).expect("serialises") {
            serde_json::Value::Object(map) => map,
            other => panic!("the config is a table, got {other}"),
        };
        let in_config: usize = top_level.values().map(|v| v.as_object().map_or(1, serde_json::Map::len)).sum();
        assert_eq!(keys.len(), in_config, "every key of PipelineConfig is in a section the page renders");
        let missing: Vec<&String> = keys.iter().filter(|key| !book.contains(&format!("`{key}`"))).collect();
        assert!(missing.is_empty(), "the book does not list {missing:?}");
        assert!(keys.len() > 200, "{} keys", keys.len());
    }

    fn walk(dir: &std::path::Path) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for entry in std::fs::read_dir(dir).expect("docs/src reads").flatten() {
            let path = entry.path();
            if path.is_dir() {
                found.extend(walk(&path));
            } else if path.extension().is_some_and(|e| e == "md") {
                found.push(path);
            }
        }
        found
    }

    #[test]
    fn floats_print_as_typed() {
        assert_eq!(toml_value(&toml::Value::Float(f64::from(5e-5_f32))), "5e-5");
        assert_eq!(toml_value(&toml::Value::Float(1.0)), "1.0");
        assert_eq!(toml_value(&toml::Value::Float(0.1)), "0.1");
        assert_eq!(escape("a|b <c> [d]"), "a\\|b &lt;c&gt; \\[d\\]");
    }
}
