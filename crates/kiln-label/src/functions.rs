//! Labelling functions that read only the text: each votes its label on a row
//! it matches and abstains on the others. Declared in the config (later
//! `[[label.functions]]`), compiled once ([`Function::compile`]) so that bad
//! input (an invalid pattern, an empty word list) is refused before any row is read.

use regex::{Regex, RegexBuilder};
use serde::Deserialize;

/// A labelling function as a config declares it. (Unknown keys are refused by
/// [`Rule`]: serde cannot deny them on a struct that flattens another.)
#[derive(Debug, Clone, PartialEq, Deserialize)]
pub struct FunctionSpec {
    /// Names it in the report and in errors.
    pub name: String,
    /// The label it votes.
    pub label: String,
    #[serde(flatten)]
    pub rule: Rule,
}

/// What a function matches.
#[derive(Debug, Clone, PartialEq, Deserialize)]
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
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
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

#[derive(Debug, thiserror::Error)]
pub enum FunctionError {
    #[error("labelling function `{name}`: invalid pattern: {error}")]
    Pattern { name: String, error: Box<regex::Error> },
    #[error("labelling function `{name}`: {message}")]
    Invalid { name: String, message: String },
    #[error("labelling function `{name}`: cannot read the word list {path}: {error}")]
    Lexicon { name: String, path: std::path::PathBuf, error: std::io::Error },
}

/// A compiled function: [`Function::vote`] matches one text.
#[derive(Debug, Clone)]
pub struct Function {
    pub name: String,
    /// The label id it votes.
    pub label: usize,
    matcher: Matcher,
}

#[derive(Debug, Clone)]
enum Matcher {
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
    /// Checks and compiles `spec`; `labels` are the label names, in id order.
    pub fn compile(spec: &FunctionSpec, labels: &[String]) -> Result<Self, FunctionError> {
        let name = spec.name.clone();
        let invalid = |message: String| FunctionError::Invalid { name: name.clone(), message };
        let label = labels.iter().position(|l| *l == spec.label).ok_or_else(|| {
            invalid(format!("votes `{}`, which is not one of the labels ({})", spec.label, labels.join(", ")))
        })?;
        let build = |pattern: &str, case_sensitive: bool| {
            RegexBuilder::new(pattern)
                .case_insensitive(!case_sensitive)
                .build()
                .map_err(|error| FunctionError::Pattern { name: name.clone(), error: Box::new(error) })
        };
        let matcher = match &spec.rule {
            Rule::Keywords { words, all, case_sensitive, whole_words } => {
                if words.is_empty() || words.iter().any(|w| w.trim().is_empty()) {
                    return Err(invalid("`words` needs at least one word, and no empty ones".into()));
                }
                let pattern = |word: &str| literal(word, *whole_words);
                if *all {
                    Matcher::AllOf(words.iter().map(|w| build(&pattern(w), *case_sensitive)).collect::<Result<_, _>>()?)
                } else {
                    let any = words.iter().map(|w| pattern(w)).collect::<Vec<_>>().join("|");
                    Matcher::AnyOf(build(&any, *case_sensitive)?)
                }
            }
            Rule::Regex { pattern, case_sensitive } => Matcher::AnyOf(build(pattern, *case_sensitive)?),
            Rule::Lexicon { file, min_matches, case_sensitive, whole_words } => {
                let text = std::fs::read_to_string(file).map_err(|error| FunctionError::Lexicon {
                    name: name.clone(),
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
                    .map_err(|error| FunctionError::Pattern { name: name.clone(), error: Box::new(error) })?;
                Matcher::AtLeast(set, *min_matches)
            }
            Rule::Length { min, max, unit } => {
                let (min, max) = (min.unwrap_or(0), max.unwrap_or(usize::MAX));
                if min > max {
                    return Err(invalid(format!("`min` ({min}) is above `max` ({max})")));
                }
                Matcher::Length { min, max, unit: *unit }
            }
        };
        Ok(Self { name: spec.name.clone(), label, matcher })
    }

    /// Its label where `text` matches, `None` (abstain) elsewhere.
    pub fn vote(&self, text: &str) -> Option<usize> {
        let matches = match &self.matcher {
            Matcher::AnyOf(regex) => regex.is_match(text),
            Matcher::AllOf(regexes) => regexes.iter().all(|r| r.is_match(text)),
            Matcher::AtLeast(set, least) => set.matches(text).iter().count() >= *least,
            Matcher::Length { min, max, unit } => {
                let length = match unit {
                    LengthUnit::Characters => text.chars().count(),
                    LengthUnit::Words => text.split_whitespace().count(),
                };
                (*min..=*max).contains(&length)
            }
        };
        matches.then_some(self.label)
    }
}

/// A word or phrase matched literally, whole words only when asked.
fn literal(word: &str, whole_words: bool) -> String {
    let escaped = regex::escape(word.trim());
    if whole_words { format!(r"\b{escaped}\b") } else { escaped }
}

/// Every function on every text, in parallel over the rows: the label matrix.
pub fn apply<T: AsRef<str> + Sync>(functions: &[Function], texts: &[T], classes: usize) -> crate::LabelMatrix {
    use rayon::prelude::*;
    let votes: Vec<i32> = texts
        .par_iter()
        .flat_map_iter(|text| {
            functions.iter().map(move |f| f.vote(text.as_ref()).map_or(crate::ABSTAIN, |label| label as i32))
        })
        .collect();
    crate::LabelMatrix::new(functions.len(), classes, votes)
        .expect("compiled functions vote label ids below the label count. This is a bug.")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels() -> Vec<String> {
        vec!["ham".into(), "spam".into()]
    }

    fn compile(toml_spec: &str) -> Result<Function, FunctionError> {
        let spec: FunctionSpec = toml::from_str(toml_spec).expect("a function spec");
        Function::compile(&spec, &labels())
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
        let matrix = apply(&functions, &texts, 2);
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
    }
}
