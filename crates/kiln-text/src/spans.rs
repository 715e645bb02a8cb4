//! Span feedback to training rows: a served text and the entities someone
//! says it has (type and character offsets) become the words and IOB2 tags
//! a tagger trains on. The text is split into words as BERT's pre-tokenizer
//! splits it (whitespace, then each punctuation mark alone), the way the
//! tagger read it. A span that does not fit is reported, never guessed.

use kiln_core::prediction_log::LoggedEntity;
use tokenizers::pre_tokenizers::bert::BertPreTokenizer;
use tokenizers::{OffsetReferential, OffsetType, PreTokenizedString, PreTokenizer};

/// Why a text's span feedback cannot become word tags.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SpanProblem {
    /// The span is empty or ends past the text.
    #[error("the {kind} span {start}..{end} is empty or ends past the text ({chars} characters)")]
    OutOfRange { kind: String, start: usize, end: usize, chars: usize },
    /// A boundary falls inside a word, or the span holds no word.
    #[error("the {kind} span {start}..{end} does not start and end at word boundaries")]
    Partial { kind: String, start: usize, end: usize },
    /// Two spans share characters.
    #[error("the {kind} span {start}..{end} overlaps another entity")]
    Conflicting { kind: String, start: usize, end: usize },
}

/// A text as a tagger's training row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaggedWords {
    pub words: Vec<String>,
    pub tags: Vec<String>,
}

/// The words of `text` with their character offsets.
pub fn words_with_offsets(text: &str) -> Vec<(String, usize, usize)> {
    let mut pre = PreTokenizedString::from(text);
    if BertPreTokenizer.pre_tokenize(&mut pre).is_err() {
        // BERT's pre-tokenizer does not fail on a string; whitespace words if it ever did.
        return whitespace_words(text);
    }
    pre.get_splits(OffsetReferential::Original, OffsetType::Char)
        .into_iter()
        .map(|(word, (start, end), _)| (word.to_owned(), start, end))
        .collect()
}

fn whitespace_words(text: &str) -> Vec<(String, usize, usize)> {
    let mut words = Vec::new();
    let mut current: Option<(String, usize)> = None;
    for (at, c) in text.chars().enumerate() {
        match (&mut current, c.is_whitespace()) {
            (Some((word, _)), false) => word.push(c),
            (None, false) => current = Some((c.to_string(), at)),
            (Some(_), true) => {
                if let Some((word, start)) = current.take() {
                    let end = start + word.chars().count();
                    words.push((word, start, end));
                }
            }
            (None, true) => {}
        }
    }
    if let Some((word, start)) = current {
        let end = start + word.chars().count();
        words.push((word, start, end));
    }
    words
}

/// `text`'s words, tagged `B-`/`I-` where `entities` say, `O` elsewhere.
pub fn tag_words(text: &str, entities: &[LoggedEntity]) -> Result<TaggedWords, SpanProblem> {
    let chars = text.chars().count();
    let words = words_with_offsets(text);
    let mut tags = vec!["O".to_owned(); words.len()];
    let mut sorted: Vec<&LoggedEntity> = entities.iter().collect();
    sorted.sort_by_key(|e| (e.start, e.end));
    let mut previous_end = 0;
    for (i, entity) in sorted.into_iter().enumerate() {
        let (kind, start, end) = (entity.entity_group.clone(), entity.start, entity.end);
        if start >= end || end > chars {
            return Err(SpanProblem::OutOfRange { kind, start, end, chars });
        }
        if i > 0 && start < previous_end {
            return Err(SpanProblem::Conflicting { kind, start, end });
        }
        previous_end = end;
        let cuts_a_word = words.iter().any(|(_, s, e)| (*s < start && start < *e) || (*s < end && end < *e));
        let inside: Vec<usize> = (0..words.len()).filter(|&w| words[w].1 >= start && words[w].2 <= end).collect();
        if cuts_a_word || inside.is_empty() {
            return Err(SpanProblem::Partial { kind, start, end });
        }
        for (n, &w) in inside.iter().enumerate() {
            tags[w] = format!("{}-{kind}", if n == 0 { "B" } else { "I" });
        }
    }
    Ok(TaggedWords { words: words.into_iter().map(|(w, ..)| w).collect(), tags })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entity(kind: &str, start: usize, end: usize) -> LoggedEntity {
        LoggedEntity { entity_group: kind.into(), start, end, score: None }
    }

    fn tags(tagged: &TaggedWords) -> Vec<&str> {
        tagged.tags.iter().map(String::as_str).collect()
    }

    #[test]
    fn spans_become_iob2_tags_of_the_words_the_tagger_reads() {
        let text = "Ada Lovelace visited Lagos, then  Tokyo.";
        let tagged =
            tag_words(text, &[entity("location", 34, 39), entity("person", 0, 12), entity("location", 21, 26)])
                .expect("fits");
        assert_eq!(tagged.words, ["Ada", "Lovelace", "visited", "Lagos", ",", "then", "Tokyo", "."]);
        assert_eq!(tags(&tagged), ["B-person", "I-person", "O", "B-location", "O", "O", "B-location", "O"]);
        assert_eq!(tags(&tag_words(text, &[]).expect("no entity")), ["O"; 8]);
        // Character offsets, not bytes.
        let tagged = tag_words("Zoë met Émile", &[entity("person", 8, 13)]).expect("fits");
        assert_eq!(tags(&tagged), ["O", "O", "B-person"]);
    }

    #[test]
    fn spans_that_do_not_fit_are_named_not_guessed() {
        let text = "Ada Lovelace visited Lagos";
        let problem = |entities: &[LoggedEntity]| tag_words(text, entities).expect_err("does not fit");
        assert!(matches!(problem(&[entity("location", 21, 40)]), SpanProblem::OutOfRange { chars: 26, .. }));
        assert!(matches!(problem(&[entity("location", 5, 5)]), SpanProblem::OutOfRange { .. }));
        assert!(matches!(problem(&[entity("person", 0, 6)]), SpanProblem::Partial { .. }), "cuts Lovelace");
        assert!(matches!(problem(&[entity("person", 3, 4)]), SpanProblem::Partial { .. }), "only a space");
        let overlapping = [entity("person", 0, 12), entity("location", 4, 12)];
        assert_eq!(
            problem(&overlapping).to_string(),
            "the location span 4..12 overlaps another entity",
            "two types for the same words"
        );
    }
}
