//! The text rules, one definition for training and serving: [`Cleaner`]
//! cleans one text; `clean` runs it over a column, and `predict` and `serve`
//! apply the same one from the model's saved config, so training and serving
//! cannot clean differently. Regexes are compiled once; unchanged texts are
//! never copied (`Cow`).

use std::borrow::Cow;

use kiln_config::{CleanConfig, HashtagMode, UnicodeNormalization};
use regex::Regex;
use unicode_normalization::{IsNormalized, UnicodeNormalization as _};

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

    pub fn bit(self) -> u16 {
        1 << (self as u16)
    }

    /// How `config` sets this rule, as its TOML reads (`strip_urls`,
    /// `hashtags = "strip_symbol"`); `None` when the rule leaves text alone.
    pub fn setting(self, config: &CleanConfig) -> Option<String> {
        let on = |on: bool| on.then(|| format!("`{}`", self.key()));
        let value = |value: serde_json::Value| format!("`{} = {value}`", self.key());
        match self {
            Rule::UnicodeNormalization => (config.unicode_normalization != UnicodeNormalization::None)
                .then(|| value(serde_json::json!(config.unicode_normalization))),
            Rule::StripHtml => on(config.strip_html),
            Rule::StripControl => on(config.strip_control),
            Rule::StripUrls => on(config.strip_urls),
            Rule::StripMentions => on(config.strip_mentions),
            Rule::Hashtags => (config.hashtags != HashtagMode::Keep).then(|| value(serde_json::json!(config.hashtags))),
            Rule::Lowercase => on(config.lowercase),
            Rule::CollapseWhitespace => on(config.collapse_whitespace),
        }
    }
}

/// The rules `config` turns on, in the order they run, as their TOML reads:
/// what a model card tells a user of the model to apply.
pub fn describe(config: &CleanConfig) -> String {
    Rule::ALL.iter().filter_map(|rule| rule.setting(config)).collect::<Vec<_>>().join(", ")
}

/// The HTML tags and comments `strip_html` removes (the Rust and Python
/// cleaners share the pattern: the syntax is the same in both).
const HTML_TAG: &str = r"<(?:/?[A-Za-z][^<>]*|!--[^>]*--)>";

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
            html_tag: config.strip_html.then(|| compile(HTML_TAG)),
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

/// What cleaning did to one word (token classification).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CleanedWord<'a> {
    /// The word, cleaned, and a bit per [`Rule`] that changed it.
    Word(Cow<'a, str>, u16),
    /// Cleaning left nothing of it (`<br>`, a lone zero-width space).
    Emptied,
}

/// The placeholder a whole-word link becomes (as Twitter models are trained).
pub const URL_PLACEHOLDER: &str = "http";
/// The placeholder a whole-word @mention becomes.
pub const MENTION_PLACEHOLDER: &str = "@user";

/// The text rules one word at a time, for token classification, where a rule
/// must never merge, split or drop words (their tags would shift). Rules that
/// remove text inside a sentence instead replace a whole word: a link becomes
/// [`URL_PLACEHOLDER`], an @mention [`MENTION_PLACEHOLDER`]; `#tag` loses its
/// `#` with `hashtags = "strip_symbol"` (`"remove"` is refused for this task).
/// Normalisation, HTML, control characters, lowercasing and whitespace work
/// inside the word as they do on a text.
#[derive(Debug, Clone)]
pub struct WordCleaner {
    within: Cleaner,
    url: Option<Regex>,
    mention: Option<Regex>,
}

impl WordCleaner {
    pub fn new(config: &CleanConfig) -> Self {
        let compile = |pattern: &str| Regex::new(pattern).expect("kiln's cleaning patterns are valid. This is a bug.");
        let within = CleanConfig { strip_urls: false, strip_mentions: false, ..config.clone() };
        Self {
            within: Cleaner::new(&within),
            url: config.strip_urls.then(|| compile(r"(?i)^(?:https?://|www\.)\S+$")),
            mention: config.strip_mentions.then(|| compile(r"^@\w+$")),
        }
    }

    pub fn clean_word<'a>(&self, word: &'a str) -> CleanedWord<'a> {
        if self.url.as_ref().is_some_and(|url| url.is_match(word)) {
            return CleanedWord::Word(Cow::Borrowed(URL_PLACEHOLDER), Rule::StripUrls.bit());
        }
        if self.mention.as_ref().is_some_and(|mention| mention.is_match(word)) {
            return CleanedWord::Word(Cow::Borrowed(MENTION_PLACEHOLDER), Rule::StripMentions.bit());
        }
        let (cleaned, changed) = self.within.clean_counted(word);
        if cleaned.trim().is_empty() { CleanedWord::Emptied } else { CleanedWord::Word(cleaned, changed) }
    }
}

impl WordCleaner {
    /// A raw text cleaned word by word (words split at whitespace, joined by
    /// one space), as training cleaned its sentences, with the way back to the
    /// raw text's character offsets for what is found in the cleaned one.
    pub fn clean_text(&self, text: &str) -> CleanedText {
        let mut cleaned = String::with_capacity(text.len());
        let mut words = Vec::new();
        let mut changed = false;
        let mut at = 0; // characters of `cleaned`
        for (start, word) in char_words(text) {
            let raw_chars = word.chars().count();
            let (out, same) = match self.clean_word(word) {
                CleanedWord::Word(out, _) => {
                    let same = out == word;
                    (out, same)
                }
                CleanedWord::Emptied => {
                    changed = true;
                    continue;
                }
            };
            if !words.is_empty() {
                cleaned.push(' ');
                at += 1;
            }
            changed |= !same;
            let chars = out.chars().count();
            cleaned.push_str(&out);
            words.push(WordSpan { cleaned: (at, at + chars), raw: (start, start + raw_chars), same });
            at += chars;
        }
        let separated_by_one_space = cleaned.chars().count() == text.chars().count();
        CleanedText { text: cleaned, words, changed: changed || !separated_by_one_space }
    }
}

/// Words of `text` at whitespace, each with its first character's index.
fn char_words(text: &str) -> impl Iterator<Item = (usize, &str)> {
    let mut chars = text.char_indices().enumerate().peekable();
    std::iter::from_fn(move || {
        while chars.next_if(|(_, (_, c))| c.is_whitespace()).is_some() {}
        let (first, (byte, _)) = chars.next()?;
        let mut end = text.len();
        while let Some((_, (b, c))) = chars.peek().copied() {
            if c.is_whitespace() {
                end = b;
                break;
            }
            chars.next();
        }
        Some((first, &text[byte..end]))
    })
}

/// One word's place in the cleaned text and in the raw one (characters).
#[derive(Debug, Clone, Copy)]
struct WordSpan {
    cleaned: (usize, usize),
    raw: (usize, usize),
    same: bool,
}

/// A text cleaned word by word, and where its characters came from.
#[derive(Debug, Clone)]
pub struct CleanedText {
    pub text: String,
    words: Vec<WordSpan>,
    /// Whether the cleaned text differs from the raw one at all.
    pub changed: bool,
}

impl CleanedText {
    /// A text no cleaning applies to.
    pub fn unchanged(text: &str) -> Self {
        Self { text: text.to_owned(), words: Vec::new(), changed: false }
    }

    /// The raw text's character range for `start..end` of the cleaned text:
    /// characters of an unchanged word map one to one, a changed word's
    /// (a placeholder) stand for the whole raw word.
    pub fn raw_range(&self, start: usize, end: usize) -> (usize, usize) {
        if !self.changed {
            return (start, end);
        }
        let word_at = |offset: usize| self.words.iter().find(|w| offset < w.cleaned.1).or(self.words.last());
        let raw_start = word_at(start)
            .map_or(0, |w| if w.same && start >= w.cleaned.0 { w.raw.0 + (start - w.cleaned.0) } else { w.raw.0 });
        let raw_end = word_at(end.saturating_sub(1)).map_or(0, |w| {
            if w.same && end >= w.cleaned.0 { (w.raw.0 + (end - w.cleaned.0)).min(w.raw.1) } else { w.raw.1 }
        });
        (raw_start, raw_end.max(raw_start))
    }
}

/// The same cleaning as [`Cleaner`] for `config`, as a Python function
/// `kiln_clean(text)`: what a transformers user of an export must apply to get
/// kiln's predictions (the export's model card carries it, and the round-trip
/// test runs it). Rule for rule the same patterns; word boundaries are ASCII,
/// as kiln's are.
pub fn python_snippet(config: &CleanConfig) -> String {
    let mut lines = vec![
        "import html, re, unicodedata".to_owned(),
        String::new(),
        "INVISIBLE = set(\"\\u00ad\\u061c\\u180e\\ufeff\") | {chr(c) for r in ((0x200B, 0x200F), (0x202A, 0x202E), \
         (0x2060, 0x2064), (0x2066, 0x206F), (0xFFF9, 0xFFFD)) for c in range(r[0], r[1] + 1)}"
            .to_owned(),
        String::new(),
        "def kiln_clean(text):".to_owned(),
    ];
    let mut step = |line: &str| lines.push(format!("    {line}"));
    match config.unicode_normalization {
        UnicodeNormalization::None => {}
        UnicodeNormalization::Nfc => step("text = unicodedata.normalize(\"NFC\", text)"),
        UnicodeNormalization::Nfkc => step("text = unicodedata.normalize(\"NFKC\", text)"),
    }
    if config.strip_html {
        step(&format!("text = html.unescape(re.sub(r\"{HTML_TAG}\", \" \", text))"));
    }
    if config.strip_control {
        step(
            "text = \"\".join(\" \" if c in \"\\t\\n\\r\\x0b\\x0c\\x85\" else \"\" if unicodedata.category(c) == \"Cc\" \
             or c in INVISIBLE else c for c in text)",
        );
    }
    if config.strip_urls {
        step("text = re.sub(r\"(?i)(?<![A-Za-z0-9_])(?:https?://|www\\.)\\S+\", \" \", text)");
    }
    if config.strip_mentions {
        step("text = re.sub(r\"(?<![A-Za-z0-9_])@\\w+\", \" \", text)");
    }
    match config.hashtags {
        HashtagMode::Keep => {}
        HashtagMode::StripSymbol => step("text = re.sub(r\"(?<![A-Za-z0-9_])#(\\w+)\", r\"\\1\", text)"),
        HashtagMode::Remove => step("text = re.sub(r\"(?<![A-Za-z0-9_])#\\w+\", \"\", text)"),
    }
    if config.lowercase {
        step("text = text.lower()");
    }
    if config.collapse_whitespace {
        step("text = \" \".join(text.split())");
    }
    step("return text");
    lines.join("\n") + "\n"
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
    fn words_are_cleaned_alone_and_links_and_mentions_become_placeholders() {
        let words = WordCleaner::new(&CleanConfig { lowercase: true, ..CleanConfig::default() });
        let word = |w: &str| match words.clean_word(w) {
            CleanedWord::Word(text, _) => Some(text.into_owned()),
            CleanedWord::Emptied => None,
        };
        assert_eq!(word("https://t.co/x1").as_deref(), Some(URL_PLACEHOLDER));
        assert_eq!(word("@paulwalk").as_deref(), Some(MENTION_PLACEHOLDER));
        assert_eq!(word("#Apple").as_deref(), Some("apple"));
        assert_eq!(word("Caf\u{65}\u{301}").as_deref(), Some("caf\u{e9}"));
        assert_eq!(word("AT&amp;T").as_deref(), Some("at&t"));
        assert_eq!(word("me@home.org").as_deref(), Some("me@home.org"), "an e-mail is no mention");
        assert_eq!(word("<br/>"), None);
        assert_eq!(word("\u{200b}"), None);
        assert!(matches!(words.clean_word("@x"), CleanedWord::Word(_, bits) if bits == Rule::StripMentions.bit()));
    }

    #[test]
    fn a_text_cleaned_word_by_word_maps_back_to_the_raw_characters() {
        let words = WordCleaner::new(&CleanConfig { lowercase: false, ..CleanConfig::default() });
        let raw = "Ask  @kiln about https://t.co/x Paris\u{200b} now";
        let cleaned = words.clean_text(raw);
        assert_eq!(cleaned.text, "Ask @user about http Paris now");
        assert!(cleaned.changed);
        let find = |needle: &str| {
            let byte = cleaned.text.find(needle).expect("present");
            let start = cleaned.text[..byte].chars().count();
            cleaned.raw_range(start, start + needle.chars().count())
        };
        let raw_chars: Vec<char> = raw.chars().collect();
        let slice = |(s, e): (usize, usize)| raw_chars[s..e].iter().collect::<String>();
        assert_eq!(slice(find("@user")), "@kiln");
        assert_eq!(slice(find("http")), "https://t.co/x");
        assert_eq!(slice(find("about")), "about");
        assert_eq!(slice(find("bou")), "bou");
        assert_eq!(slice(find("http Paris")), "https://t.co/x Paris\u{200b}", "a changed word maps whole");
        assert_eq!(slice(find("now")), "now");

        let untouched = words.clean_text("New York is big");
        assert!(!untouched.changed);
        assert_eq!(untouched.raw_range(0, 8), (0, 8));
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

    #[test]
    fn describe_names_the_rules_that_are_on_as_their_toml_reads() {
        let described = describe(&CleanConfig::default());
        assert!(described.starts_with("`unicode_normalization = \"nfc\"`, `strip_html`"), "{described}");
        assert!(described.contains("`hashtags = \"strip_symbol\"`") && !described.contains("lowercase"), "{described}");
        let off = CleanConfig {
            unicode_normalization: UnicodeNormalization::None,
            hashtags: HashtagMode::Keep,
            ..CleanConfig::default()
        };
        assert!(!describe(&off).contains("unicode_normalization") && !describe(&off).contains("hashtags"));
    }
}
