//! Labelling functions, as `[[label.functions]]` declares them: each votes a
//! label on a row or abstains. Rules that read one text (keywords, regex,
//! lexicon, length) vote row by row in parallel; a `command` (an outside
//! program) or a `model` votes over all texts at once ([`crate::external`]).
//! Every function is compiled once ([`Function::compile`]) so that bad input
//! (an invalid pattern, an empty word list, a label not in the list) is
//! refused before any row is read.

use std::path::PathBuf;
use std::time::Duration;

use regex::{Regex, RegexBuilder};
use serde::{Deserialize, Serialize};

use crate::external::{Command, LoadModel, ModelVoter};

/// A labelling function as a config declares it. (Unknown keys are refused by
/// [`Rule`]: serde cannot deny them on a struct that flattens another.)
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FunctionSpec {
    /// Names it in the report and in errors.
    pub name: String,
    /// The label it votes. A `command` or `model` may vote any label; given
    /// one, a model votes only it, and a command printing another is an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub label: Option<String>,
    #[serde(flatten)]
    pub rule: Rule,
}

/// What a function matches.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Rule {
    /// Any (or, with `all = true`, every) of the words or phrases.
    Keywords {
        words: Vec<String>,
        #[serde(default)]
        all: bool,
        #[serde(default)]
        case_sensitive: bool,
        /// Match whole words only (`sub` does not match `subscribe`).
        #[serde(default = "yes")]
        whole_words: bool,
    },
    /// A regular expression (Rust's `regex` syntax) found anywhere in the text.
    Regex {
        pattern: String,
        #[serde(default)]
        case_sensitive: bool,
    },
    /// Words from a list (a file, one word or phrase a line; `#` comments and
    /// blank lines skipped): votes where at least `min_matches` of them occur.
    Lexicon {
        file: std::path::PathBuf,
        #[serde(default = "one")]
        min_matches: usize,
        #[serde(default)]
        case_sensitive: bool,
        #[serde(default = "yes")]
        whole_words: bool,
    },
    /// The text's length, in characters or words, within `[min, max]`.
    Length {
        #[serde(default)]
        min: Option<usize>,
        #[serde(default)]
        max: Option<usize>,
        #[serde(default)]
        unit: LengthUnit,
    },
    /// An outside program (argv, no shell): reads one JSON object a line on
    /// stdin (`{"text": ...}`) and writes one vote a line on stdout, a label
    /// name in quotes or `null` to abstain, in the same order.
    Command {
        command: Vec<String>,
        /// Seconds the program may take for all the rows.
        #[serde(default = "sixty")]
        timeout_secs: u64,
    },
    /// A kiln model folder (or a Hugging Face one): its prediction, where its
    /// probability is at least `threshold`; `label_map` renames the model's
    /// labels to this data's (a model label not in the map nor in the label
    /// list abstains).
    Model {
        model_dir: PathBuf,
        #[serde(default = "half")]
        threshold: f64,
        #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
        label_map: std::collections::BTreeMap<String, String>,
    },
}

impl Rule {
    /// Its `kind`, as the config names it (the serde tag above).
    pub fn kind(&self) -> &'static str {
        match self {
            Self::Keywords { .. } => "keywords",
            Self::Regex { .. } => "regex",
            Self::Lexicon { .. } => "lexicon",
            Self::Length { .. } => "length",
            Self::Command { .. } => "command",
            Self::Model { .. } => "model",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LengthUnit {
    #[default]
    Characters,
    Words,
}

fn yes() -> bool {
    true
}

fn one() -> usize {
    1
}

fn sixty() -> u64 {
    60
}

fn half() -> f64 {
    0.5
}

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("labelling function `{name}`: invalid pattern: {error}")]
    Pattern { name: String, error: Box<regex::Error> },
    #[error("labelling function `{name}`: {message}")]
    Invalid { name: String, message: String },
    #[error("labelling function `{name}`: cannot read the word list {path}: {error}")]
    Lexicon { name: String, path: PathBuf, error: std::io::Error },
    /// A `command` that failed, timed out or broke the protocol.
    #[error("labelling function `{name}` (command `{command}`): {message}")]
    Command { name: String, command: String, message: String },
    #[error("labelling function `{name}`: the model in {dir}: {message}")]
    Model { name: String, dir: PathBuf, message: String },
}

/// A compiled function: [`Function::votes`] labels texts.
pub struct Function {
    pub name: String,
    /// The label id it votes; `None` for a command or model that may vote any.
    pub label: Option<usize>,
    matcher: Matcher,
}

impl std::fmt::Debug for Function {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Function").field("name", &self.name).field("label", &self.label).finish_non_exhaustive()
    }
}

enum Matcher {
    Text(TextMatcher),
    Command(Command),
    Model { voter: Box<dyn ModelVoter>, dir: PathBuf, threshold: f64, label_of: Vec<Option<usize>> },
}

/// The rules that read one text.
enum TextMatcher {
    AnyOf(Regex),
    AllOf(Vec<Regex>),
    /// At least this many distinct words of the list.
    AtLeast(regex::RegexSet, usize),
    Length {
        min: usize,
        max: usize,
        unit: LengthUnit,
    },
}

impl Function {
    /// Checks and compiles `spec`; `labels` are the label names, in id order;
    /// `load_model` opens a `model` function's folder.
    pub fn compile(spec: &FunctionSpec, labels: &[String], load_model: &dyn LoadModel) -> Result<Self, FunctionError> {
        let name = spec.name.clone();
        let invalid = |message: String| FunctionError::Invalid { name: name.clone(), message };
        let label = spec
            .label
            .as_ref()
            .map(|wanted| {
                labels.iter().position(|l| l == wanted).ok_or_else(|| {
                    invalid(format!(
                        "`label`: votes `{wanted}`, which is not one of the labels ({})",
                        labels.join(", ")
                    ))
                })
            })
            .transpose()?;
        if name.trim().is_empty() {
            return Err(invalid("`name` is empty".into()));
        }
        let matcher = match &spec.rule {
            Rule::Command { command, timeout_secs } => {
                if command.is_empty() || command[0].trim().is_empty() {
                    return Err(invalid("`command` needs a program (a list: program and arguments)".into()));
                }
                if *timeout_secs == 0 {
                    return Err(invalid("`timeout_secs` must be at least 1".into()));
                }
                Matcher::Command(Command::new(command.clone(), Duration::from_secs(*timeout_secs), labels.to_vec()))
            }
            Rule::Model { model_dir, threshold, label_map } => {
                if !(0.0..=1.0).contains(threshold) {
                    return Err(invalid(format!("`threshold` must be within [0, 1], got {threshold}")));
                }
                let model_error =
                    |message: String| FunctionError::Model { name: name.clone(), dir: model_dir.clone(), message };
                if let Some((from, to)) = label_map.iter().find(|(_, to)| !labels.contains(to)) {
                    return Err(invalid(format!(
                        "`label_map` maps `{from}` to `{to}`, which is not one of the labels ({})",
                        labels.join(", ")
                    )));
                }
                let voter = load_model.load(model_dir).map_err(model_error)?;
                let label_of = voter
                    .labels()
                    .iter()
                    .map(|model_label| {
                        let ours = label_map.get(model_label).unwrap_or(model_label);
                        labels.iter().position(|l| l == ours)
                    })
                    .collect::<Vec<_>>();
                if label_of.iter().all(Option::is_none) {
                    return Err(model_error(format!(
                        "none of its labels ({}) is one of this data's ({}); map them with `label_map`",
                        voter.labels().join(", "),
                        labels.join(", ")
                    )));
                }
                Matcher::Model { voter, dir: model_dir.clone(), threshold: *threshold, label_of }
            }
            rule => {
                if label.is_none() {
                    return Err(invalid("`label` is missing: a rule votes one label".into()));
                }
                Matcher::Text(Self::text_matcher(&name, rule)?)
            }
        };
        Ok(Self { name, label, matcher })
    }

    fn text_matcher(name: &str, rule: &Rule) -> Result<TextMatcher, FunctionError> {
        let invalid = |message: String| FunctionError::Invalid { name: name.to_owned(), message };
        let build = |pattern: &str, case_sensitive: bool| {
            RegexBuilder::new(pattern)
                .case_insensitive(!case_sensitive)
                .build()
                .map_err(|error| FunctionError::Pattern { name: name.to_owned(), error: Box::new(error) })
        };
        let matcher = match rule {
            Rule::Keywords { words, all, case_sensitive, whole_words } => {
                if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                    return Err(invalid("`words` needs at least one word, and no empty ones".into()));
                }
                let pattern = |word: &str| literal(word, *whole_words);
                if *all {
                    TextMatcher::AllOf(
                        words.iter().map(|w| build(&pattern(w), *case_sensitive)).collect::<Result<_, _>>()?,
                    )
                } else {
                    let any = words.iter().map(|w| pattern(w)).collect::<Vec<_>>().join("|");
                    TextMatcher::AnyOf(build(&any, *case_sensitive)?)
                }
            }
            Rule::Regex { pattern, case_sensitive } => TextMatcher::AnyOf(build(pattern, *case_sensitive)?),
            Rule::Lexicon { file, min_matches, case_sensitive, whole_words } => {
                let text = std::fs::read_to_string(file).map_err(|error| FunctionError::Lexicon {
                    name: name.to_owned(),
                    path: file.clone(),
                    error,
                })?;
                let words: Vec<&str> =
                    text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).collect();
                if words.is_empty() {
                    return Err(invalid(format!("the word list {} has no words", file.display())));
                }
                if *min_matches == 0 || *min_matches > words.len() {
                    return Err(invalid(format!("`min_matches` must be 1 to {} (the list's words)", words.len())));
                }
                let set = regex::RegexSetBuilder::new(words.iter().map(|w| literal(w, *whole_words)))
                    .case_insensitive(!case_sensitive)
                    .build()
                    .map_err(|error| FunctionError::Pattern { name: name.to_owned(), error: Box::new(error) })?;
                TextMatcher::AtLeast(set, *min_matches)
            }
            Rule::Length { min, max, unit } => {
                let (min, max) = (min.unwrap_or(0), max.unwrap_or(usize::MAX));
                if min > max {
                    return Err(invalid(format!("`min` ({min}) is above `max` ({max})")));
                }
                TextMatcher::Length { min, max, unit: *unit }
            }
            Rule::Command { .. } | Rule::Model { .. } => unreachable!("compiled by `compile`"),
        };
        Ok(matcher)
    }

    /// Whether it reads one text at a time (a rule), rather than all of them (a command or model).
    pub fn reads_one_text(&self) -> bool {
        matches!(self.matcher, Matcher::Text(_))
    }

    /// Its label where a rule matches `text`, `None` (abstain) elsewhere, and
    /// for a command or model, which vote over all texts at once ([`Self::votes`]).
    pub fn vote(&self, text: &str) -> Option<usize> {
        let Matcher::Text(matcher) = &self.matcher else { return None };
        matcher.matches(text).then_some(self.label).flatten()
    }

    /// Its vote on each of `texts`.
    pub fn votes<T: AsRef<str> + Sync>(&self, texts: &[T]) -> Result<Vec<Option<usize>>, FunctionError> {
        use rayon::prelude::*;
        match &self.matcher {
            Matcher::Text(_) => Ok(texts.par_iter().map(|text| self.vote(text.as_ref())).collect()),
            Matcher::Command(command) => command.votes(&self.name, texts, self.label),
            Matcher::Model { voter, dir, threshold, label_of } => {
                let texts: Vec<&str> = texts.iter().map(AsRef::as_ref).collect();
                let predictions = voter.predict(&texts).map_err(|message| FunctionError::Model {
                    name: self.name.clone(),
                    dir: dir.clone(),
                    message,
                })?;
                Ok(predictions
                    .into_iter()
                    .map(|(model_label, probability)| {
                        let ours = label_of.get(model_label).copied().flatten()?;
                        let wanted = self.label.is_none_or(|label| label == ours);
                        (f64::from(probability) >= *threshold && wanted).then_some(ours)
                    })
                    .collect())
            }
        }
    }
}

impl TextMatcher {
    fn matches(&self, text: &str) -> bool {
        match self {
            Self::AnyOf(regex) => regex.is_match(text),
            Self::AllOf(regexes) => regexes.iter().all(|r| r.is_match(text)),
            Self::AtLeast(set, least) => set.matches(text).iter().count() >= *least,
            Self::Length { min, max, unit } => {
                let length = match unit {
                    LengthUnit::Characters => text.chars().count(),
                    LengthUnit::Words => text.split_whitespace().count(),
                };
                (*min..=*max).contains(&length)
            }
        }
    }
}

/// A word or phrase matched literally, whole words only when asked.
fn literal(word: &str, whole_words: bool) -> String {
    let escaped = regex::escape(word.trim());
    if whole_words { format!(r"\b{escaped}\b") } else { escaped }
}

/// Every function on every text: the label matrix. The rules vote in one
/// parallel pass over the rows; a command or model then votes over all texts
/// and fills its column.
pub fn apply<T: AsRef<str> + Sync>(
    functions: &[Function],
    texts: &[T],
    classes: usize,
) -> Result<crate::LabelMatrix, FunctionError> {
    apply_with_progress(functions, texts, classes, |_| {})
}

/// [`apply`], calling `done(rows)` as each chunk of rows is voted on (a progress bar).
pub fn apply_with_progress<T: AsRef<str> + Sync>(
    functions: &[Function],
    texts: &[T],
    classes: usize,
    done: impl Fn(usize) + Sync,
) -> Result<crate::LabelMatrix, FunctionError> {
    use rayon::prelude::*;
    const CHUNK: usize = 8_192;
    let width = functions.len();
    let mut votes: Vec<i32> = texts
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            let votes: Vec<i32> = chunk
                .iter()
                .flat_map(|text| functions.iter().map(move |f| f.vote(text.as_ref()).map_or(crate::ABSTAIN, to_vote)))
                .collect();
            done(chunk.len());
            votes
        })
        .collect();
    for (column, function) in functions.iter().enumerate().filter(|(_, f)| !f.reads_one_text()) {
        for (row, vote) in function.votes(texts)?.into_iter().enumerate() {
            votes[row * width + column] = vote.map_or(crate::ABSTAIN, to_vote);
        }
    }
    Ok(crate::LabelMatrix::new(width, classes, votes)
        .expect("compiled functions vote label ids below the label count. This is a bug."))
}

fn to_vote(label: usize) -> i32 {
    i32::try_from(label).expect("a label id fits an i32. This is a bug.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["ham".into(), "spam".into()]
    }

    fn compile(toml_spec: &str) -> Result<Function, FunctionError> {
        let spec: FunctionSpec = toml::from_str(toml_spec).expect("a function spec");
        Function::compile(&spec, &labels(), &crate::external::NoModels)
    }

    #[test]
    fn each_rules_kind_is_its_config_tag() {
        let specs = [
            "kind = 'keywords'\nwords = ['a']",
            "kind = 'regex'\npattern = 'a'",
            "kind = 'lexicon'\nfile = 'words.txt'",
            "kind = 'length'\nmax = 3",
            "kind = 'command'\ncommand = ['true']",
            "kind = 'model'\nmodel_dir = 'm'",
        ];
        for spec in specs {
            let spec: FunctionSpec = toml::from_str(&format!("name = 'f'\n{spec}")).expect("a function spec");
            let tag = serde_json::to_value(&spec).expect("json")["kind"].as_str().map(str::to_owned);
            assert_eq!(tag.as_deref(), Some(spec.rule.kind()));
        }
    }

    #[test]
    fn keywords_match_any_or_all_whole_words_ignoring_case_unless_told() {
        let any = compile("name = 'sub'\nlabel = 'spam'\nkind = 'keywords'\nwords = ['subscribe', 'my channel']")
            .expect("valid");
        assert_eq!(any.vote("Please SUBSCRIBE to My Channel"), Some(1));
        assert_eq!(any.vote("subscribers are great"), None, "whole words");
        assert_eq!(any.vote("nice song"), None);
        let all =
            compile("name = 'both'\nlabel = 'spam'\nkind = 'keywords'\nwords = ['check', 'out']\nall = true\ncase_sensitive = true")
                .expect("valid");
        assert_eq!(all.vote("check it out"), Some(1));
        assert_eq!(all.vote("Check it out"), None, "case-sensitive");
        assert_eq!(all.vote("check this"), None, "every word");
        let part = compile("name = 'part'\nlabel = 'ham'\nkind = 'keywords'\nwords = ['sub']\nwhole_words = false")
            .expect("valid");
        assert_eq!(part.vote("subscribers"), Some(0));
        let dotted = compile("name = 'dot'\nlabel = 'spam'\nkind = 'keywords'\nwords = ['a.b']").expect("valid");
        assert_eq!((dotted.vote("see a.b now"), dotted.vote("see axb now")), (Some(1), None), "words are literal");
    }

    #[test]
    fn regex_and_length_rules_vote_where_they_match() {
        let link = compile("name = 'link'\nlabel = 'spam'\nkind = 'regex'\npattern = 'https?://'").expect("valid");
        assert_eq!((link.vote("go to HTTP://x.com"), link.vote("no link")), (Some(1), None));
        let short = compile("name = 'short'\nlabel = 'ham'\nkind = 'length'\nmax = 3\nunit = 'words'").expect("valid");
        assert_eq!((short.vote("nice song"), short.vote("this is a long comment")), (Some(0), None));
        let chars = compile("name = 'c'\nlabel = 'ham'\nkind = 'length'\nmin = 2\nmax = 3").expect("valid");
        assert_eq!(
            (chars.vote("é!"), chars.vote("a"), chars.vote("abcd")),
            (Some(0), None, None),
            "characters, not bytes"
        );
    }

    #[test]
    fn a_lexicon_votes_where_enough_of_its_words_occur() {
        let dir = std::env::temp_dir().join(format!("kiln-lexicon-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let list = dir.join("spam-words.txt");
        std::fs::write(&list, "# spam words\nfree\n\nwin money\nclick\n").expect("list");
        let spec = |extra: &str| {
            format!("name = 'lex'\nlabel = 'spam'\nkind = 'lexicon'\nfile = '{}'\n{extra}", list.display())
        };
        let one = compile(&spec("")).expect("valid");
        assert_eq!((one.vote("FREE stuff"), one.vote("freedom"), one.vote("nice song")), (Some(1), None, None));
        let two = compile(&spec("min_matches = 2")).expect("valid");
        assert_eq!((two.vote("free! click here"), two.vote("free free free")), (Some(1), None), "distinct words");
        assert_eq!(two.vote("Win money now, click"), Some(1), "phrases count as one word of the list");
        let error = compile(&spec("min_matches = 4")).expect_err("more than the list");
        assert!(error.to_string().contains("`min_matches` must be 1 to 3"), "{error}");
        std::fs::write(&list, "# nothing\n").expect("list");
        assert!(compile(&spec("")).expect_err("empty").to_string().contains("has no words"));
        std::fs::remove_dir_all(&dir).expect("clean up");
        let error = compile(&spec("")).expect_err("missing file");
        assert!(error.to_string().starts_with("labelling function `lex`: cannot read the word list"), "{error}");
    }

    #[test]
    fn apply_writes_one_row_per_text_in_order() {
        let functions = [
            compile("name = 'link'\nlabel = 'spam'\nkind = 'regex'\npattern = 'http'").expect("valid"),
            compile("name = 'short'\nlabel = 'ham'\nkind = 'length'\nmax = 2\nunit = 'words'").expect("valid"),
        ];
        let texts: Vec<String> =
            (0..1000).map(|i| if i % 2 == 0 { format!("see http://x/{i}") } else { "ok".into() }).collect();
        let matrix = apply(&functions, &texts, 2).expect("rules do not fail");
        assert_eq!((matrix.rows(), matrix.functions()), (1000, 2));
        assert_eq!((matrix.vote(0, 0), matrix.vote(0, 1)), (Some(1), Some(0)), "'see http://x/0' is two words");
        assert_eq!((matrix.vote(999, 0), matrix.vote(999, 1)), (None, Some(0)));
    }

    #[test]
    fn bad_functions_are_refused_naming_the_function() {
        let error =
            compile("name = 'broken'\nlabel = 'spam'\nkind = 'regex'\npattern = '(unclosed'").expect_err("pattern");
        assert!(error.to_string().starts_with("labelling function `broken`: invalid pattern"), "{error}");
        let error = compile("name = 'who'\nlabel = 'eggs'\nkind = 'regex'\npattern = 'x'").expect_err("label");
        assert!(error.to_string().contains("`eggs`, which is not one of the labels (ham, spam)"), "{error}");
        let error = compile("name = 'empty'\nlabel = 'spam'\nkind = 'keywords'\nwords = []").expect_err("no words");
        assert!(error.to_string().contains("`empty`"), "{error}");
        let error = compile("name = 'range'\nlabel = 'ham'\nkind = 'length'\nmin = 5\nmax = 2").expect_err("range");
        assert!(error.to_string().contains("`min` (5) is above `max` (2)"), "{error}");
        let unknown: Result<FunctionSpec, _> =
            toml::from_str("name = 'x'\nlabel = 'ham'\nkind = 'regex'\npattern = 'x'\ncase = 1");
        assert!(unknown.is_err(), "unknown keys are errors");
        let error = compile("name = 'nolabel'\nkind = 'regex'\npattern = 'x'").expect_err("a rule needs a label");
        assert!(error.to_string().contains("`nolabel`: `label` is missing"), "{error}");
        let error = compile("name = 'cmd'\nkind = 'command'\ncommand = []").expect_err("no program");
        assert!(error.to_string().contains("`cmd`: `command` needs a program"), "{error}");
        let error = compile("name = 'm'\nkind = 'model'\nmodel_dir = 'x'").expect_err("no models here");
        assert!(error.to_string().starts_with("labelling function `m`: the model in x:"), "{error}");
    }

    /// Says `positive` (0.9) on texts with "good", `negative` (0.6) elsewhere.
    struct Sentiment(Vec<String>);

    impl ModelVoter for Sentiment {
        fn labels(&self) -> &[String] {
            &self.0
        }

        fn predict(&self, texts: &[&str]) -> Result<Vec<(usize, f32)>, String> {
            Ok(texts.iter().map(|t| if t.contains("good") { (1, 0.9) } else { (0, 0.6) }).collect())
        }
    }

    impl LoadModel for Sentiment {
        fn load(&self, _dir: &std::path::Path) -> Result<Box<dyn ModelVoter>, String> {
            Ok(Box::new(Sentiment(self.0.clone())))
        }
    }

    #[test]
    fn a_model_votes_its_confident_predictions_through_the_label_map() {
        let model = Sentiment(vec!["negative".into(), "positive".into()]);
        let spec = |extra: &str| -> FunctionSpec {
            toml::from_str(&format!("name = 'sent'\nkind = 'model'\nmodel_dir = 'm'\n{extra}")).expect("spec")
        };
        let mapped = spec("threshold = 0.5\n[label_map]\npositive = 'ham'\nnegative = 'spam'");
        let function = Function::compile(&mapped, &labels(), &model).expect("valid");
        assert_eq!(function.votes(&["good song", "buy now"]).expect("votes"), [Some(0), Some(1)]);
        let confident = spec("threshold = 0.8\n[label_map]\npositive = 'ham'\nnegative = 'spam'");
        let function = Function::compile(&confident, &labels(), &model).expect("valid");
        assert_eq!(function.votes(&["good song", "buy now"]).expect("votes"), [Some(0), None], "below the threshold");
        let only_spam = spec("label = 'spam'\n[label_map]\npositive = 'ham'\nnegative = 'spam'");
        let function = Function::compile(&only_spam, &labels(), &model).expect("valid");
        assert_eq!(function.votes(&["good song", "buy now"]).expect("votes"), [None, Some(1)], "only its label");
        let error = Function::compile(&spec(""), &labels(), &model).expect_err("no shared label");
        assert!(error.to_string().contains("map them with `label_map`"), "{error}");
        let error = Function::compile(&spec("[label_map]\npositive = 'eggs'"), &labels(), &model).expect_err("bad map");
        assert!(error.to_string().contains("maps `positive` to `eggs`"), "{error}");
    }
}
