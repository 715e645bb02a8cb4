//! `clean`: normalise texts by configurable rules, then drop empty, too short or
//! too long texts, duplicates within a split and rows that leak across splits.
//!
//! [`Cleaner`] cleans one text and is the single definition of the rules:
//! `predict` and `serve` apply the same one from the model's saved config, so
//! training and serving cannot clean differently. The stage runs it over a
//! column on every core (rayon) with regexes compiled once; unchanged texts are
//! never copied (`Cow`).

use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::path::Path;

use anyhow::{Context, Result};
use kiln_config::{CleanConfig, ConflictPolicy, HashtagMode, UnicodeNormalization};
use polars::prelude::*;
use rayon::prelude::*;
use regex::Regex;
use serde::Serialize;
use unicode_normalization::{IsNormalized, UnicodeNormalization as _};

use crate::Progress;
use crate::output::{FileHash, Manifest, StagedOutput, read_parquet};
use crate::schema::{self, Split};

pub const REPORT: &str = "clean_report.json";

/// The text rules, in the order they run. Each is counted in the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Rule {
    UnicodeNormalization,
    StripHtml,
    StripControl,
    StripUrls,
    StripMentions,
    Hashtags,
    Lowercase,
    CollapseWhitespace,
}

impl Rule {
    pub const ALL: [Rule; 8] = [
        Rule::UnicodeNormalization,
        Rule::StripHtml,
        Rule::StripControl,
        Rule::StripUrls,
        Rule::StripMentions,
        Rule::Hashtags,
        Rule::Lowercase,
        Rule::CollapseWhitespace,
    ];

    /// The config key that turns the rule on or off.
    pub fn key(self) -> &'static str {
        match self {
            Rule::UnicodeNormalization => "unicode_normalization",
            Rule::StripHtml => "strip_html",
            Rule::StripControl => "strip_control",
            Rule::StripUrls => "strip_urls",
            Rule::StripMentions => "strip_mentions",
            Rule::Hashtags => "hashtags",
            Rule::Lowercase => "lowercase",
            Rule::CollapseWhitespace => "collapse_whitespace",
        }
    }

    fn bit(self) -> u16 {
        1 << (self as u16)
    }
}

/// The rules of a [`CleanConfig`], compiled once.
#[derive(Debug, Clone)]
pub struct Cleaner {
    normalization: UnicodeNormalization,
    html_tag: Option<Regex>,
    strip_control: bool,
    url: Option<Regex>,
    mention: Option<Regex>,
    hashtag: Option<(Regex, &'static str)>,
    lowercase: bool,
    collapse_whitespace: bool,
}

impl Cleaner {
    pub fn new(config: &CleanConfig) -> Self {
        let compile = |pattern: &str| Regex::new(pattern).expect("kiln's cleaning patterns are valid. This is a bug.");
        Self {
            normalization: config.unicode_normalization,
            html_tag: config.strip_html.then(|| compile(r"<(?:/?[A-Za-z][^<>]*|!--[^>]*--)>")),
            strip_control: config.strip_control,
            // ASCII word boundaries `(?-u:\b)` keep the regexes on the fast lazy DFA.
            url: config.strip_urls.then(|| compile(r"(?i)(?-u:\b)(?:https?://|www\.)\S+")),
            // A boundary before '@' skips e-mail addresses (a word character precedes their '@').
            mention: config.strip_mentions.then(|| compile(r"(?-u:\B)@\w+")),
            hashtag: match config.hashtags {
                HashtagMode::Keep => None,
                HashtagMode::StripSymbol => Some((compile(r"(?-u:\B)#(\w+)"), "$1")),
                HashtagMode::Remove => Some((compile(r"(?-u:\B)#\w+"), "")),
            },
            lowercase: config.lowercase,
            collapse_whitespace: config.collapse_whitespace,
        }
    }

    /// The cleaned text.
    pub fn clean<'a>(&self, text: &'a str) -> Cow<'a, str> {
        self.clean_counted(text).0
    }

    /// The cleaned text, and a bit per [`Rule`] that changed it.
    pub fn clean_counted<'a>(&self, text: &'a str) -> (Cow<'a, str>, u16) {
        let mut text = Cow::Borrowed(text);
        let mut changed = 0u16;
        let mut apply = |rule: Rule, text: &mut Cow<'a, str>, result: Option<String>| {
            if let Some(new) = result
                && new != **text
            {
                changed |= rule.bit();
                *text = Cow::Owned(new);
            }
        };
        // Most texts are ASCII: already NFC and NFKC, and free of invisible characters.
        let normalized =
            match self.normalization {
                UnicodeNormalization::None => None,
                _ if text.is_ascii() => None,
                UnicodeNormalization::Nfc => (unicode_normalization::is_nfc_quick(text.chars()) != IsNormalized::Yes)
                    .then(|| text.nfc().collect()),
                UnicodeNormalization::Nfkc => (unicode_normalization::is_nfkc_quick(text.chars()) != IsNormalized::Yes)
                    .then(|| text.nfkc().collect()),
            };
        apply(Rule::UnicodeNormalization, &mut text, normalized);
        // Each regex only runs on texts holding the character it needs: most hold none.
        if let Some(tag) = &self.html_tag {
            let without_tags = text.contains('<').then(|| owned(tag.replace_all(&text, " "))).flatten();
            let source = without_tags.as_deref().unwrap_or(&text);
            let decoded = source
                .contains('&')
                .then(|| owned(html_escape::decode_html_entities(source)))
                .flatten()
                .or(without_tags);
            apply(Rule::StripHtml, &mut text, decoded);
        }
        if self.strip_control {
            let found = if text.is_ascii() {
                text.bytes().any(|b| b.is_ascii_control())
            } else {
                text.chars().any(is_control_or_invisible)
            };
            let stripped = found.then(|| strip_control(&text));
            apply(Rule::StripControl, &mut text, stripped);
        }
        if let Some(url) = &self.url
            && may_hold_url(&text)
        {
            let replaced = owned(url.replace_all(&text, " "));
            apply(Rule::StripUrls, &mut text, replaced);
        }
        if let Some(mention) = &self.mention
            && text.contains('@')
        {
            let replaced = owned(mention.replace_all(&text, " "));
            apply(Rule::StripMentions, &mut text, replaced);
        }
        if let Some((hashtag, with)) = &self.hashtag
            && text.contains('#')
        {
            let replaced = owned(hashtag.replace_all(&text, *with));
            apply(Rule::Hashtags, &mut text, replaced);
        }
        if self.lowercase {
            let lowered = text.chars().any(char::is_uppercase).then(|| text.to_lowercase());
            apply(Rule::Lowercase, &mut text, lowered);
        }
        if self.collapse_whitespace {
            let collapsed = needs_collapse(&text).then(|| collapse_whitespace(&text));
            apply(Rule::CollapseWhitespace, &mut text, collapsed);
        }
        (text, changed)
    }
}

fn owned(text: Cow<'_, str>) -> Option<String> {
    match text {
        Cow::Borrowed(_) => None,
        Cow::Owned(text) => Some(text),
    }
}

/// Control characters (Cc), invisible format characters (Cf: zero-width spaces,
/// BOM, soft hyphen, bidi marks) and the replacement character U+FFFD.
fn is_control_or_invisible(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{00AD}' | '\u{061C}' | '\u{180E}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{2064}' | '\u{2066}'..='\u{206F}' | '\u{FEFF}' | '\u{FFF9}'..='\u{FFFD}')
}

/// Tabs and line breaks become spaces (they separate words); the rest goes.
fn strip_control(text: &str) -> String {
    text.chars()
        .filter_map(|c| match c {
            '\t' | '\n' | '\r' | '\u{0B}' | '\u{0C}' | '\u{85}' => Some(' '),
            c if is_control_or_invisible(c) => None,
            c => Some(c),
        })
        .collect()
}

fn may_hold_url(text: &str) -> bool {
    text.contains("://") || text.as_bytes().windows(4).any(|w| w.eq_ignore_ascii_case(b"www."))
}

/// Words joined by single spaces; `split_whitespace` splits on Unicode White_Space,
/// the same set as the regex `\s`.
fn collapse_whitespace(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for word in text.split_whitespace() {
        if !out.is_empty() {
            out.push(' ');
        }
        out.push_str(word);
    }
    out
}

fn needs_collapse(text: &str) -> bool {
    let bytes = text.as_bytes();
    let edge = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_whitespace());
    edge(bytes.first())
        || edge(bytes.last())
        || bytes.windows(2).any(|w| w[0] == b' ' && w[1] == b' ')
        || if text.is_ascii() {
            bytes.iter().any(|&b| b.is_ascii_whitespace() && b != b' ')
        } else {
            text.chars().any(|c| c.is_whitespace() && c != ' ')
        }
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct DropCounts {
    pub empty: usize,
    pub too_short: usize,
    pub too_long: usize,
    pub duplicate: usize,
    pub leak: usize,
    pub conflict: usize,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct SplitCleanReport {
    pub rows_in: usize,
    pub rows_out: usize,
    pub dropped: DropCounts,
    /// Texts changed by each rule, by its config key.
    pub changed_by_rule: BTreeMap<&'static str, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    pub text: String,
    pub labels: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct ConflictReport {
    /// Distinct texts that appear with more than one label (after cleaning).
    pub texts: usize,
    pub rows: usize,
    /// The first few, sorted by text.
    pub examples: Vec<Conflict>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct CleanReport {
    pub splits: BTreeMap<Split, SplitCleanReport>,
    pub conflicts: ConflictReport,
}

const CONFLICT_EXAMPLES: usize = 20;

/// Cleans the splits in `config.input_dir` into `config.output_dir`.
pub fn run(config: &CleanConfig, progress: &Progress) -> Result<CleanReport> {
    config.validate()?;
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let cleaner = Cleaner::new(config);
    let mut report = CleanReport::default();
    let mut inputs = Vec::new();
    let mut frames = Vec::new();
    for split in Split::ALL {
        let path = split.path_in(&config.input_dir);
        let started = std::time::Instant::now();
        let frame = read_parquet(&path, "ingest")?;
        schema::validate(&frame, &path, &schema::TEXT_TABLE)?;
        inputs.push(FileHash::of(&path)?);
        let (frame, split_report) = clean_frame(&frame, &cleaner, config, split, progress)
            .with_context(|| format!("cleaning {}", path.display()))?;
        report.splits.insert(split, split_report);
        frames.push((split, frame));
        tracing::debug!("read and cleaned {} in {:?}", path.display(), started.elapsed());
    }

    if config.drop_leaks {
        drop_leaks(&mut frames, &mut report)?;
    }
    let conflicting = find_conflicts(&frames, &mut report.conflicts)?;
    if config.conflicts == ConflictPolicy::Drop && !conflicting.is_empty() {
        for (split, frame) in &mut frames {
            let keep: BooleanChunked =
                text_column(frame)?.iter().map(|t| Some(!conflicting.contains(t.unwrap_or("")))).collect();
            let kept = frame.filter(&keep)?;
            report.splits.entry(*split).or_default().dropped.conflict = frame.height() - kept.height();
            *frame = kept;
        }
    }
    if report.conflicts.texts > 0 {
        tracing::warn!(
            "{} texts appear with more than one label ({} rows); {} (see {REPORT})",
            report.conflicts.texts,
            report.conflicts.rows,
            match config.conflicts {
                ConflictPolicy::Report => "kept",
                ConflictPolicy::Drop => "dropped",
            }
        );
    }

    for (split, frame) in &mut frames {
        report.splits.entry(*split).or_default().rows_out = frame.height();
        staged.write_parquet(&split.file_name(), frame)?;
    }
    let mut manifest = Manifest::new("clean", config, &report);
    manifest.inputs = inputs;
    manifest.outputs = staged.hashes()?;
    staged.commit(REPORT, &manifest)?;
    Ok(report)
}

fn text_column(frame: &DataFrame) -> Result<&StringChunked> {
    Ok(frame.column(schema::TEXT)?.str()?)
}

/// Applies the text rules and the length limits, then drops duplicates.
fn clean_frame(
    frame: &DataFrame,
    cleaner: &Cleaner,
    config: &CleanConfig,
    split: Split,
    progress: &Progress,
) -> Result<(DataFrame, SplitCleanReport)> {
    let texts: Vec<&str> = text_column(frame)?.no_null_iter().collect();
    let bar = progress.rows(texts.len() as u64, split.name());
    const CHUNK: usize = 16_384;
    let cleaned: Vec<(String, u16)> = texts
        .par_chunks(CHUNK)
        .flat_map_iter(|chunk| {
            // A clone per chunk gives each thread its regexes' fast, uncontended cache.
            let cleaner = cleaner.clone();
            let out: Vec<(String, u16)> = chunk
                .iter()
                .map(|text| {
                    let (clean, changed) = cleaner.clean_counted(text);
                    (clean.into_owned(), changed)
                })
                .collect();
            bar.inc(chunk.len() as u64);
            out
        })
        .collect();
    bar.finish_and_clear();

    let mut report = SplitCleanReport { rows_in: texts.len(), ..Default::default() };
    for rule in Rule::ALL {
        let count = cleaned.iter().filter(|(_, changed)| changed & rule.bit() != 0).count();
        report.changed_by_rule.insert(rule.key(), count);
    }
    let mut keep = Vec::with_capacity(cleaned.len());
    for (text, _) in &cleaned {
        let chars = if text.is_ascii() { text.len() } else { text.chars().count() };
        let verdict = if chars == 0 {
            report.dropped.empty += 1;
            false
        } else if chars < config.min_chars {
            report.dropped.too_short += 1;
            false
        } else if chars > config.max_chars {
            report.dropped.too_long += 1;
            false
        } else {
            true
        };
        keep.push(verdict);
    }
    let mut frame = frame.clone();
    let cleaned_texts: Vec<String> = cleaned.into_iter().map(|(text, _)| text).collect();
    frame.with_column(Column::new(schema::TEXT.into(), cleaned_texts))?;
    let mut frame = frame.filter(&BooleanChunked::from_slice("keep".into(), &keep))?;
    if config.dedup {
        let before = frame.height();
        let subset = [schema::TEXT.to_owned(), schema::LABEL.to_owned()];
        frame = frame.unique_stable(Some(&subset), UniqueKeepStrategy::First, None)?;
        report.dropped.duplicate = before - frame.height();
    }
    Ok((frame, report))
}

/// Removes validation rows whose text is in train, and test rows whose text is
/// in train or validation: a model must never be scored on what it trained on.
fn drop_leaks(frames: &mut [(Split, DataFrame)], report: &mut CleanReport) -> Result<()> {
    let texts_of = |frame: &DataFrame| frame.clone().lazy().select([col(schema::TEXT)]);
    for later in 1..frames.len() {
        let mut seen = texts_of(&frames[0].1);
        for earlier in &frames[1..later] {
            seen = concat([seen, texts_of(&earlier.1)], UnionArgs::default())?;
        }
        let (split, frame) = &frames[later];
        let kept = frame.clone().lazy().anti_join(seen, col(schema::TEXT), col(schema::TEXT)).collect()?;
        report.splits.entry(*split).or_default().dropped.leak = frame.height() - kept.height();
        frames[later].1 = kept;
    }
    Ok(())
}

/// Texts that appear with more than one label, across all splits.
fn find_conflicts(frames: &[(Split, DataFrame)], report: &mut ConflictReport) -> Result<HashSet<String>> {
    // One pass keeps each text's first label and row count; label sets are only
    // built for the (few) texts that turn out to conflict.
    let mut first_label: PlHashMap<&str, (&str, usize, bool)> = PlHashMap::default();
    for (_, frame) in frames {
        let labels = frame.column(schema::LABEL)?.str()?;
        for (text, label) in text_column(frame)?.no_null_iter().zip(labels.no_null_iter()) {
            let entry = first_label.entry(text).or_insert((label, 0, false));
            entry.1 += 1;
            entry.2 |= entry.0 != label;
        }
    }
    let mut conflicting: BTreeMap<&str, BTreeSet<&str>> = first_label
        .iter()
        .filter(|(_, (_, _, conflict))| *conflict)
        .map(|(text, _)| (*text, BTreeSet::new()))
        .collect();
    if !conflicting.is_empty() {
        for (_, frame) in frames {
            let labels = frame.column(schema::LABEL)?.str()?;
            for (text, label) in text_column(frame)?.no_null_iter().zip(labels.no_null_iter()) {
                if let Some(set) = conflicting.get_mut(text) {
                    set.insert(label);
                }
            }
        }
    }
    report.texts = conflicting.len();
    report.rows = conflicting.keys().map(|t| first_label[t].1).sum();
    report.examples = conflicting
        .iter()
        .take(CONFLICT_EXAMPLES)
        .map(|(text, labels)| Conflict {
            text: (*text).to_owned(),
            labels: labels.iter().map(|l| (*l).to_owned()).collect(),
        })
        .collect();
    Ok(conflicting.into_keys().map(str::to_owned).collect())
}

/// Reads a cleaned split (for `tokenize`), checking its schema.
pub fn read_split(dir: &Path, split: Split) -> Result<DataFrame> {
    let path = split.path_in(dir);
    let frame = read_parquet(&path, "clean")?;
    schema::validate(&frame, &path, &schema::TEXT_TABLE)?;
    Ok(frame)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cleaner(edit: impl FnOnce(&mut CleanConfig)) -> Cleaner {
        let mut config = CleanConfig::default();
        edit(&mut config);
        Cleaner::new(&config)
    }

    fn only(rule: Rule, text: &str) -> (String, u16) {
        let (clean, changed) = cleaner(|_| {}).clean_counted(text);
        assert_eq!(changed & !rule.bit() & !Rule::CollapseWhitespace.bit(), 0, "only {rule:?} fires on {text:?}");
        (clean.into_owned(), changed)
    }

    #[test]
    fn urls_are_removed() {
        let (text, changed) = only(Rule::StripUrls, "see https://x.org/a?b=1 and www.kiln.dev now");
        assert_eq!(text, "see and now");
        assert_ne!(changed & Rule::StripUrls.bit(), 0);
        assert_eq!(cleaner(|c| c.strip_urls = false).clean("go to http://a.b"), "go to http://a.b");
    }

    #[test]
    fn mentions_are_removed_but_not_emails() {
        assert_eq!(only(Rule::StripMentions, "@bank my card, mail me at a@b.com").0, "my card, mail me at a@b.com");
        assert_eq!(cleaner(|c| c.strip_mentions = false).clean("@bank hi"), "@bank hi");
    }

    #[test]
    fn hashtags_keep_the_word_or_go() {
        assert_eq!(cleaner(|_| {}).clean("loved it #great #film"), "loved it great film");
        assert_eq!(cleaner(|c| c.hashtags = HashtagMode::Remove).clean("loved it #great #film"), "loved it");
        assert_eq!(cleaner(|c| c.hashtags = HashtagMode::Keep).clean("loved it #great"), "loved it #great");
        assert_eq!(cleaner(|_| {}).clean("issue C#1 stays"), "issue C#1 stays");
    }

    #[test]
    fn html_tags_go_and_entities_decode() {
        assert_eq!(only(Rule::StripHtml, "a<br/>b &amp; <b>c</b> &lt;3 &quot;q&quot;").0, "a b & c <3 \"q\"");
        assert_eq!(cleaner(|_| {}).clean("x &lt;b&gt; y"), "x <b> y", "decoded entities are not re-parsed as tags");
        assert_eq!(cleaner(|c| c.strip_html = false).clean("a &amp; b"), "a &amp; b");
        assert_eq!(cleaner(|_| {}).clean("2 < 3 and 5 > 4"), "2 < 3 and 5 > 4");
    }

    #[test]
    fn control_and_invisible_characters_go() {
        assert_eq!(
            only(Rule::StripControl, "zero\u{200B}width\u{FEFF} soft\u{00AD}hy\u{0007}phen\u{FFFD}").0,
            "zerowidth softhyphen"
        );
        assert_eq!(cleaner(|_| {}).clean("tab\there\r\nnew"), "tab here new");
        assert_eq!(cleaner(|c| c.strip_control = false).clean("a\u{200B}b"), "a\u{200B}b");
    }

    #[test]
    fn whitespace_collapses_and_trims() {
        assert_eq!(only(Rule::CollapseWhitespace, "  a   b \u{00A0} c ").0, "a b c");
        let (_, changed) = cleaner(|_| {}).clean_counted("already clean");
        assert_eq!(changed, 0);
        assert_eq!(cleaner(|c| c.collapse_whitespace = false).clean(" a  b "), " a  b ");
    }

    #[test]
    fn lowercase_is_off_by_default() {
        assert_eq!(cleaner(|_| {}).clean("Great Film"), "Great Film");
        assert_eq!(cleaner(|c| c.lowercase = true).clean("Great FILM Ünd"), "great film ünd");
    }

    #[test]
    fn unicode_normalization_forms() {
        let decomposed = "Cafe\u{0301} \u{FB01}ne";
        assert_eq!(cleaner(|_| {}).clean(decomposed), "Café \u{FB01}ne", "NFC composes, keeps the ligature");
        assert_eq!(cleaner(|c| c.unicode_normalization = UnicodeNormalization::Nfkc).clean(decomposed), "Café fine");
        assert_eq!(cleaner(|c| c.unicode_normalization = UnicodeNormalization::None).clean(decomposed), decomposed);
    }

    #[test]
    fn untouched_text_is_not_copied() {
        assert!(matches!(cleaner(|_| {}).clean("nothing to do here"), Cow::Borrowed(_)));
    }

    fn frame(ids: &[&str], texts: &[&str], labels: &[&str]) -> DataFrame {
        df!(schema::ID => ids, schema::TEXT => texts, schema::LABEL => labels).expect("frame")
    }

    fn write_raw(dir: &Path, split: Split, frame: &mut DataFrame) {
        let file = std::fs::File::create(split.path_in(dir)).expect("create");
        ParquetWriter::new(file).finish(frame).expect("write");
    }

    fn texts(frame: &DataFrame) -> Vec<String> {
        text_column(frame).expect("text").no_null_iter().map(str::to_owned).collect()
    }

    #[test]
    fn stage_drops_by_reason_and_reports() {
        let dir = tempfile::tempdir().expect("tempdir");
        let raw = dir.path().join("raw");
        std::fs::create_dir(&raw).expect("mkdir");
        write_raw(
            &raw,
            Split::Train,
            &mut frame(
                &["1", "2", "3", "4", "5", "6", "7"],
                &["good  film", "good film", "<br>", "a", "bad film", "ok film", "ok film"],
                &["pos", "pos", "pos", "pos", "neg", "pos", "neg"],
            ),
        );
        write_raw(&raw, Split::Validation, &mut frame(&["8", "9"], &["good film", "new one"], &["pos", "neg"]));
        write_raw(&raw, Split::Test, &mut frame(&["10", "11"], &["new one", "fresh"], &["neg", "pos"]));
        let config = CleanConfig {
            input_dir: raw.clone(),
            output_dir: dir.path().join("interim"),
            min_chars: 2,
            ..CleanConfig::default()
        };
        let report = run(&config, &Progress::hidden()).expect("cleans");

        let train = read_split(&config.output_dir, Split::Train).expect("train");
        assert_eq!(texts(&train), ["good film", "bad film", "ok film", "ok film"]);
        let train_report = &report.splits[&Split::Train];
        assert_eq!((train_report.rows_in, train_report.rows_out), (7, 4));
        assert_eq!(train_report.dropped.empty, 1);
        assert_eq!(train_report.dropped.too_short, 1);
        assert_eq!(train_report.dropped.duplicate, 1);
        // "good  film", and "<br>", which the HTML rule turned into a lone space.
        assert_eq!(train_report.changed_by_rule["collapse_whitespace"], 2);
        assert_eq!(train_report.changed_by_rule["strip_html"], 1);

        let validation = read_split(&config.output_dir, Split::Validation).expect("validation");
        assert_eq!(texts(&validation), ["new one"], "the row also in train leaked");
        assert_eq!(report.splits[&Split::Validation].dropped.leak, 1);
        let test = read_split(&config.output_dir, Split::Test).expect("test");
        assert_eq!(texts(&test), ["fresh"], "the row also in validation leaked");

        assert_eq!(report.conflicts.texts, 1);
        assert_eq!(report.conflicts.examples[0].text, "ok film");
        assert_eq!(report.conflicts.examples[0].labels, ["neg", "pos"]);

        let manifest: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(config.output_dir.join(REPORT)).expect("report"))
                .expect("json");
        assert_eq!(manifest["stage"], "clean");
        assert_eq!(manifest["inputs"].as_array().expect("inputs").len(), 3);
        assert_eq!(manifest["report"]["splits"]["train"]["dropped"]["empty"], 1);

        let dropping = CleanConfig { conflicts: ConflictPolicy::Drop, ..config.clone() };
        let report = run(&dropping, &Progress::hidden()).expect("cleans");
        assert_eq!(report.splits[&Split::Train].dropped.conflict, 2);
        assert_eq!(texts(&read_split(&config.output_dir, Split::Train).expect("train")), ["good film", "bad film"]);
    }

    #[test]
    fn missing_input_says_which_stage_to_run() {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = CleanConfig {
            input_dir: dir.path().join("nope"),
            output_dir: dir.path().join("out"),
            ..Default::default()
        };
        let message = format!("{:#}", run(&config, &Progress::hidden()).expect_err("missing"));
        assert!(message.contains("train.parquet") && message.contains("ingest"), "{message}");
        assert!(!config.output_dir.join(REPORT).exists());
    }
}
