//! Named entities from per-word tags: the tag schemes files come in, the one
//! kiln stores (IOB2), entity spans, and entity-level scores as seqeval 1.2.2
//! computes them (checked against it in `tests/entities_seqeval.rs`).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::scores::ClassScores;

/// How a file's tags mark entities. kiln converts every scheme to IOB2 on
/// ingest and records which one the file used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum TagScheme {
    /// `I-` everywhere; `B-` only to part two adjacent entities of one type.
    Iob1,
    /// Every entity opens with `B-` (CoNLL-2003 as distributed today, WNUT-17).
    Iob2,
    /// `B-` begin, `I-` inside, `E-` end, `S-` a one-word entity.
    Bioes,
}

/// What to do with an `I-X` that continues nothing (after `O` or another type).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum InvalidTags {
    /// Stop with the position: the file is wrong, and a person should look.
    Error,
    /// Read it as `B-X` (what conlleval and seqeval's default mode do).
    Repair,
}

/// How entities are read from tags when scoring, as seqeval's two modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// conlleval's reading (seqeval's default): an `I-X` that continues
    /// nothing starts an entity; `E-` and `S-` are understood.
    Conlleval,
    /// Strict IOB2 (seqeval `mode="strict", scheme=IOB2`): an entity is a
    /// `B-X` and the `I-X` after it; anything else is no entity.
    Strict,
}

/// A tag kiln cannot read; the caller says where (file, line, word).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TagError {
    #[error("{tag:?} is not a tag of the {scheme:?} scheme (O, or {prefixes} then '-' and a type)")]
    Malformed { word: usize, tag: String, scheme: TagScheme, prefixes: &'static str },
    #[error(
        "{tag:?} continues no entity (the word before is {previous:?}); fix the file or set invalid_tags = \"repair\""
    )]
    ContinuesNothing { word: usize, tag: String, previous: String },
}

impl TagError {
    /// The word (0-based, in its sentence) the error is about.
    pub fn word(&self) -> usize {
        match self {
            Self::Malformed { word, .. } | Self::ContinuesNothing { word, .. } => *word,
        }
    }
}

/// How transformers' token-classification pipeline groups sub-words into
/// entities (`kiln_text::aggregate` implements each).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Aggregation {
    None,
    #[default]
    Simple,
    First,
    Average,
    Max,
}

/// One entity: words `start..end` of a sentence, of type `kind`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub struct Span {
    pub kind: String,
    pub start: usize,
    pub end: usize,
}

/// The entity type of an IOB2 tag (`B-PER` -> `PER`); `None` for `O`.
pub fn entity_type(tag: &str) -> Option<&str> {
    tag.split_once('-').map(|(_, kind)| kind)
}

/// How many whitespace-separated words characters `start..end` of `text`
/// hold; `None` when the span is empty or ends past the text.
pub fn words_in_span(text: &str, start: usize, end: usize) -> Option<usize> {
    let length = end.checked_sub(start).filter(|&length| length > 0)?;
    let (mut seen, mut words, mut in_word) = (0, 0, false);
    for c in text.chars().skip(start).take(length) {
        seen += 1;
        let starts_word = !c.is_whitespace() && !in_word;
        words += usize::from(starts_word);
        in_word = !c.is_whitespace();
    }
    (seen == length).then_some(words)
}

/// A tag's prefix character and type, read as seqeval's default mode reads
/// them: the first character, then the text after the first `-` (or `_`).
fn split_loosely(tag: &str) -> (char, &str) {
    let mut chars = tag.chars();
    let prefix = chars.next().unwrap_or('O');
    let rest = chars.as_str();
    let kind = rest.split_once('-').map_or(rest, |(_, kind)| kind);
    (prefix, if kind.is_empty() { "_" } else { kind })
}

/// `B`/`I`/`E`/`S` and a non-empty type, or `O`.
fn parse(tag: &str) -> Option<(char, &str)> {
    if tag == "O" {
        return Some(('O', ""));
    }
    let (prefix, kind) = tag.split_once('-')?;
    let mut chars = prefix.chars();
    match (chars.next(), chars.next()) {
        (Some(p @ ('B' | 'I' | 'E' | 'S')), None) if !kind.is_empty() => Some((p, kind)),
        _ => None,
    }
}

/// Tags converted to IOB2, and how many `I-X` that continued nothing became `B-X`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Iob2 {
    pub tags: Vec<String>,
    pub repaired: usize,
}

/// The file's tags in IOB2, each scheme's entities kept; an `I-X` that
/// continues nothing is an error or a `B-X`, as `invalid` says.
pub fn to_iob2<S: AsRef<str>>(tags: &[S], scheme: TagScheme, invalid: InvalidTags) -> Result<Iob2, TagError> {
    let allowed = match scheme {
        TagScheme::Iob1 | TagScheme::Iob2 => "B or I",
        TagScheme::Bioes => "B, I, E or S",
    };
    let mut out: Vec<String> = Vec::with_capacity(tags.len());
    let mut repaired = 0;
    let mut previous: Option<(char, String)> = None; // the converted tag before
    for (word, tag) in tags.iter().enumerate() {
        let tag = tag.as_ref();
        let malformed = || TagError::Malformed { word, tag: tag.to_owned(), scheme, prefixes: allowed };
        let (prefix, kind) = parse(tag).ok_or_else(malformed)?;
        if matches!(prefix, 'E' | 'S') && scheme != TagScheme::Bioes {
            return Err(malformed());
        }
        let continues = previous.as_ref().is_some_and(|(p, k)| *p != 'O' && k == kind);
        let prefix = match (scheme, prefix) {
            (_, 'O') => 'O',
            (TagScheme::Iob1, 'I') if !continues => 'B',
            (TagScheme::Bioes, 'S') => 'B',
            (TagScheme::Bioes, 'E') => 'I',
            (_, p) => p,
        };
        let prefix = if prefix == 'I' && !continues {
            match invalid {
                InvalidTags::Repair => {
                    repaired += 1;
                    'B'
                }
                InvalidTags::Error => {
                    let previous = if word == 0 { "nothing".to_owned() } else { tags[word - 1].as_ref().to_owned() };
                    return Err(TagError::ContinuesNothing { word, tag: tag.to_owned(), previous });
                }
            }
        } else {
            prefix
        };
        out.push(if prefix == 'O' { "O".to_owned() } else { format!("{prefix}-{kind}") });
        previous = Some((prefix, kind.to_owned()));
    }
    Ok(Iob2 { tags: out, repaired })
}

/// The entities of one sentence's tags, read in `mode`.
pub fn spans<S: AsRef<str>>(tags: &[S], mode: Mode) -> Vec<Span> {
    match mode {
        Mode::Conlleval => conlleval_spans(tags),
        Mode::Strict => strict_spans(tags),
    }
}

/// seqeval's `get_entities`: chunk ends and starts decided from each pair of
/// neighbouring tags, as conlleval does.
fn conlleval_spans<S: AsRef<str>>(tags: &[S]) -> Vec<Span> {
    let ends = |previous: char, tag: char, previous_kind: &str, kind: &str| {
        matches!(previous, 'E' | 'S')
            || (matches!(previous, 'B' | 'I') && matches!(tag, 'B' | 'S' | 'O'))
            || (previous != 'O' && previous != '.' && previous_kind != kind)
    };
    let starts = |previous: char, tag: char, previous_kind: &str, kind: &str| {
        matches!(tag, 'B' | 'S')
            || (matches!(previous, 'E' | 'S' | 'O') && matches!(tag, 'E' | 'I'))
            || (tag != 'O' && tag != '.' && previous_kind != kind)
    };
    let mut spans = Vec::new();
    let (mut previous, mut previous_kind, mut begin) = ('O', "", 0);
    for (i, tag) in tags.iter().map(AsRef::as_ref).chain(std::iter::once("O")).enumerate() {
        let (prefix, kind) = split_loosely(tag);
        if ends(previous, prefix, previous_kind, kind) {
            spans.push(Span { kind: previous_kind.to_owned(), start: begin, end: i });
        }
        if starts(previous, prefix, previous_kind, kind) {
            begin = i;
        }
        (previous, previous_kind) = (prefix, kind);
    }
    spans
}

/// IOB2 read strictly: a `B-X`, then every `I-X` straight after it.
fn strict_spans<S: AsRef<str>>(tags: &[S]) -> Vec<Span> {
    let parsed: Vec<(char, &str)> = tags.iter().map(|t| parse(t.as_ref()).unwrap_or(('O', ""))).collect();
    let mut spans = Vec::new();
    let mut i = 0;
    while i < parsed.len() {
        let (prefix, kind) = parsed[i];
        if prefix != 'B' {
            i += 1;
            continue;
        }
        let mut end = i + 1;
        while end < parsed.len() && parsed[end] == ('I', kind) {
            end += 1;
        }
        spans.push(Span { kind: kind.to_owned(), start: i, end });
        i = end;
    }
    spans
}

/// Precision, recall and F1 of one entity type (or an average), with the
/// counts behind them.
#[derive(Debug, Clone, Copy, PartialEq, Default, Serialize, Deserialize)]
pub struct EntityScore {
    pub precision: f64,
    pub recall: f64,
    pub f1: f64,
    /// Entities of this type in the truth.
    pub support: usize,
    pub predicted: usize,
    pub correct: usize,
}

impl EntityScore {
    fn from_counts(correct: usize, predicted: usize, support: usize) -> Self {
        Self::with_counts(
            ClassScores::from_counts(correct as u64, predicted as u64, support as u64),
            predicted,
            correct,
        )
    }

    fn with_counts(scores: ClassScores, predicted: usize, correct: usize) -> Self {
        let ClassScores { precision, recall, f1, support } = scores;
        Self { precision, recall, f1, support: support as usize, predicted, correct }
    }

    /// Precision, recall, F1 and support, as the other metrics carry them.
    pub fn scores(&self) -> ClassScores {
        ClassScores { precision: self.precision, recall: self.recall, f1: self.f1, support: self.support as u64 }
    }
}

/// Entity-level scores of predicted tags against the truth.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EntityScores {
    pub mode: Mode,
    /// Every type in the truth or the predictions.
    pub per_type: BTreeMap<String, EntityScore>,
    /// Counts summed over types.
    pub micro: EntityScore,
    /// The unweighted mean of the types' scores (0 with no types; seqeval says NaN).
    pub macro_avg: EntityScore,
    /// The types' scores weighted by support.
    pub weighted: EntityScore,
    /// Words whose predicted tag equals the true one.
    pub token_accuracy: f64,
    pub words: usize,
}

/// The two tag sequences of one sentence differ in length.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("sentence {sentence}: {truth} true tags but {predicted} predicted")]
pub struct LengthMismatch {
    pub sentence: usize,
    pub truth: usize,
    pub predicted: usize,
}

/// Scores `predicted` against `truth`, sentence by sentence, in `mode`.
pub fn score<S: AsRef<str>, T: AsRef<str>>(
    truth: &[impl AsRef<[S]>],
    predicted: &[impl AsRef<[T]>],
    mode: Mode,
) -> Result<EntityScores, LengthMismatch> {
    if truth.len() != predicted.len() {
        return Err(LengthMismatch { sentence: truth.len().min(predicted.len()), truth: 0, predicted: 0 });
    }
    // (sentence, span) sets per type, as seqeval's sets of (start, end).
    let mut true_spans: BTreeMap<String, BTreeSet<(usize, usize, usize)>> = BTreeMap::new();
    let mut predicted_spans: BTreeMap<String, BTreeSet<(usize, usize, usize)>> = BTreeMap::new();
    let (mut words, mut equal) = (0usize, 0usize);
    for (sentence, (t, p)) in truth.iter().zip(predicted).enumerate() {
        let (t, p) = (t.as_ref(), p.as_ref());
        if t.len() != p.len() {
            return Err(LengthMismatch { sentence, truth: t.len(), predicted: p.len() });
        }
        words += t.len();
        equal += t.iter().zip(p).filter(|(a, b)| a.as_ref() == b.as_ref()).count();
        for (spans, into) in [(spans(t, mode), &mut true_spans), (spans(p, mode), &mut predicted_spans)] {
            for span in spans {
                into.entry(span.kind).or_default().insert((sentence, span.start, span.end));
            }
        }
    }
    let kinds: BTreeSet<&String> = true_spans.keys().chain(predicted_spans.keys()).collect();
    let per_type: BTreeMap<String, EntityScore> = kinds
        .into_iter()
        .map(|kind| {
            let empty = BTreeSet::new();
            let (t, p) = (true_spans.get(kind).unwrap_or(&empty), predicted_spans.get(kind).unwrap_or(&empty));
            (kind.clone(), EntityScore::from_counts(t.intersection(p).count(), p.len(), t.len()))
        })
        .collect();
    let sum = |f: fn(&EntityScore) -> usize| per_type.values().map(f).sum::<usize>();
    let (correct, predicted_count, support) = (sum(|s| s.correct), sum(|s| s.predicted), sum(|s| s.support));
    let micro = EntityScore::from_counts(correct, predicted_count, support);
    let scores: Vec<ClassScores> = per_type.values().map(EntityScore::scores).collect();
    let mean = |weight: fn(&ClassScores) -> f64| {
        EntityScore::with_counts(ClassScores::mean(&scores, weight), predicted_count, correct)
    };
    Ok(EntityScores {
        mode,
        macro_avg: mean(|_| 1.0),
        weighted: mean(|s| s.support as f64),
        per_type,
        micro,
        token_accuracy: if words == 0 { 0.0 } else { equal as f64 / words as f64 },
        words,
    })
}

/// Entity counts per type (found right, predicted, true) of some sentences or
/// texts: what entity F1 sums. Kept per sentence, so a bootstrap resamples
/// sentences by adding their counts (the gate's paired interval, monitor's
/// realised F1), where [`score`] would need the sentences themselves.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct EntityCounts {
    per_type: BTreeMap<String, [usize; 3]>,
}

impl EntityCounts {
    const CORRECT: usize = 0;
    const PREDICTED: usize = 1;
    const TRUE: usize = 2;

    /// Counts of entities given as (type, start, end) with any unit of
    /// position (words, characters): one is right when type and both ends agree.
    pub fn of_spans<K: AsRef<str>, L: AsRef<str>>(
        truth: impl IntoIterator<Item = (K, usize, usize)>,
        predicted: impl IntoIterator<Item = (L, usize, usize)>,
    ) -> Self {
        let truth: BTreeSet<(String, usize, usize)> =
            truth.into_iter().map(|(k, s, e)| (k.as_ref().to_owned(), s, e)).collect();
        let predicted: BTreeSet<(String, usize, usize)> =
            predicted.into_iter().map(|(k, s, e)| (k.as_ref().to_owned(), s, e)).collect();
        let mut counts = Self::default();
        for span in &truth {
            counts.slot(&span.0)[Self::TRUE] += 1;
            if predicted.contains(span) {
                counts.slot(&span.0)[Self::CORRECT] += 1;
            }
        }
        for span in &predicted {
            counts.slot(&span.0)[Self::PREDICTED] += 1;
        }
        counts
    }

    /// One sentence's counts from its true and predicted tags, read in `mode`.
    pub fn of_tags<S: AsRef<str>, T: AsRef<str>>(truth: &[S], predicted: &[T], mode: Mode) -> Self {
        let as_triples = |spans: Vec<Span>| spans.into_iter().map(|s| (s.kind, s.start, s.end)).collect::<Vec<_>>();
        Self::of_spans(as_triples(spans(truth, mode)), as_triples(spans(predicted, mode)))
    }

    fn slot(&mut self, kind: &str) -> &mut [usize; 3] {
        self.per_type.entry(kind.to_owned()).or_default()
    }

    pub fn add(&mut self, other: &Self) {
        for (kind, counts) in &other.per_type {
            let slot = self.slot(kind);
            for (into, from) in slot.iter_mut().zip(counts) {
                *into += from;
            }
        }
    }

    /// The counts of several sentences together.
    pub fn sum<'a>(parts: impl IntoIterator<Item = &'a Self>) -> Self {
        let mut total = Self::default();
        for part in parts {
            total.add(part);
        }
        total
    }

    /// Every type in the truth or the predictions.
    pub fn kinds(&self) -> impl Iterator<Item = &str> {
        self.per_type.keys().map(String::as_str)
    }

    /// Precision, recall and F1 of one type (all zero for a type never seen).
    pub fn scores(&self, kind: &str) -> ClassScores {
        let [correct, predicted, truth] = self.per_type.get(kind).copied().unwrap_or_default();
        ClassScores::from_counts(correct as u64, predicted as u64, truth as u64)
    }

    /// Entities of `kind` found right.
    pub fn found(&self, kind: &str) -> usize {
        self.per_type.get(kind).map_or(0, |c| c[Self::CORRECT])
    }

    /// True entities, over all types.
    pub fn support(&self) -> usize {
        self.per_type.values().map(|c| c[Self::TRUE]).sum()
    }

    /// Predicted entities, over all types.
    pub fn predicted(&self) -> usize {
        self.per_type.values().map(|c| c[Self::PREDICTED]).sum()
    }

    /// Every true entity found and nothing else predicted.
    pub fn all_right(&self) -> bool {
        self.per_type.values().all(|c| c[Self::CORRECT] == c[Self::TRUE] && c[Self::CORRECT] == c[Self::PREDICTED])
    }

    /// Counts summed over types, as [`EntityScores::micro`].
    pub fn micro(&self) -> ClassScores {
        let sum = |i: usize| self.per_type.values().map(|c| c[i] as u64).sum::<u64>();
        ClassScores::from_counts(sum(Self::CORRECT), sum(Self::PREDICTED), sum(Self::TRUE))
    }

    /// The unweighted mean over types, as [`EntityScores::macro_avg`] (0 with no types).
    pub fn macro_avg(&self) -> ClassScores {
        let scores: Vec<ClassScores> = self.kinds().map(|kind| self.scores(kind)).collect();
        ClassScores::mean(&scores, |_| 1.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tags(text: &str) -> Vec<&str> {
        text.split_whitespace().collect()
    }

    fn strings(tags: &[&str]) -> Vec<String> {
        tags.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn every_scheme_becomes_the_same_iob2() {
        let iob2 = tags("B-PER I-PER B-PER O B-LOC O I-LOC");
        let iob1 = tags("I-PER I-PER B-PER O I-LOC O I-LOC");
        let bioes = tags("B-PER E-PER S-PER O S-LOC O S-LOC");
        let want = tags("B-PER I-PER B-PER O B-LOC O B-LOC");
        assert_eq!(
            to_iob2(&iob1, TagScheme::Iob1, InvalidTags::Error).expect("iob1"),
            Iob2 { tags: strings(&want), repaired: 0 }
        );
        assert_eq!(to_iob2(&bioes, TagScheme::Bioes, InvalidTags::Error).expect("bioes").tags, want);
        let error = to_iob2(&iob2, TagScheme::Iob2, InvalidTags::Error).expect_err("I-LOC after O");
        assert_eq!(error.word(), 6);
        assert!(error.to_string().contains("continues no entity"), "{error}");
        assert_eq!(
            to_iob2(&iob2, TagScheme::Iob2, InvalidTags::Repair).expect("repaired"),
            Iob2 { tags: strings(&want), repaired: 1 }
        );
    }

    #[test]
    fn a_type_change_inside_an_entity_is_caught_and_bad_tags_are_named() {
        let changed = tags("B-PER I-LOC");
        assert!(matches!(
            to_iob2(&changed, TagScheme::Iob2, InvalidTags::Error),
            Err(TagError::ContinuesNothing { word: 1, .. })
        ));
        for bad in ["PER", "X-PER", "B-", "BB-PER", "S-PER"] {
            let error = to_iob2(&[bad], TagScheme::Iob2, InvalidTags::Repair).expect_err(bad);
            assert!(matches!(error, TagError::Malformed { word: 0, .. }), "{bad}: {error}");
        }
        assert_eq!(
            to_iob2(&["S-creative-work"], TagScheme::Bioes, InvalidTags::Error).expect("ok").tags,
            ["B-creative-work"]
        );
    }

    #[test]
    fn the_modes_differ_where_an_entity_has_no_beginning() {
        let predicted = tags("O I-PER I-PER B-LOC I-ORG");
        let span = |kind: &str, start, end| Span { kind: kind.into(), start, end };
        assert_eq!(spans(&predicted, Mode::Conlleval), [span("PER", 1, 3), span("LOC", 3, 4), span("ORG", 4, 5)]);
        assert_eq!(spans(&predicted, Mode::Strict), [span("LOC", 3, 4)]);
    }

    #[test]
    fn counts_per_sentence_add_up_to_the_scores_of_all_sentences() {
        let truth = [tags("B-PER I-PER O B-LOC"), tags("O B-ORG O O"), tags("B-LOC O B-PER O")];
        let guess = [tags("B-PER I-PER O B-ORG"), tags("O B-ORG I-ORG O"), tags("B-LOC O I-PER O")];
        for mode in [Mode::Conlleval, Mode::Strict] {
            let whole = score(&truth, &guess, mode).expect("scores");
            let parts: Vec<EntityCounts> =
                truth.iter().zip(&guess).map(|(t, g)| EntityCounts::of_tags(t, g, mode)).collect();
            let total = EntityCounts::sum(&parts);
            assert_eq!(total.micro(), whole.micro.scores(), "{mode:?}");
            assert_eq!(total.macro_avg().f1, whole.macro_avg.f1, "{mode:?}");
            for (kind, scores) in &whole.per_type {
                assert_eq!(total.scores(kind), scores.scores(), "{mode:?} {kind}");
            }
        }
        let conlleval = EntityCounts::of_tags(&truth[2], &guess[2], Mode::Conlleval);
        assert!(conlleval.all_right(), "I-PER after O reads as an entity in conlleval mode");
        assert!(!EntityCounts::of_tags(&truth[2], &guess[2], Mode::Strict).all_right());
        assert_eq!(
            (total_support(&truth), EntityCounts::of_tags(&truth[0], &guess[0], Mode::Conlleval).predicted()),
            (5, 2)
        );
    }

    fn total_support(truth: &[Vec<&str>]) -> usize {
        truth.iter().map(|t| EntityCounts::of_tags(t, t, Mode::Conlleval).support()).sum()
    }

    #[test]
    fn entity_types_and_span_words() {
        assert_eq!((entity_type("B-creative-work"), entity_type("O")), (Some("creative-work"), None));
        assert_eq!(words_in_span("Zoë met Émile Zola", 8, 18), Some(2));
        assert_eq!((words_in_span("Zoë", 1, 1), words_in_span("Zoë", 0, 4)), (None, None));
    }

    #[test]
    fn sentences_of_different_lengths_are_an_error() {
        let error = score(&[tags("O O"), tags("O")], &[tags("O O"), tags("O O")], Mode::Strict).expect_err("lengths");
        assert_eq!(error, LengthMismatch { sentence: 1, truth: 1, predicted: 2 });
    }
}
