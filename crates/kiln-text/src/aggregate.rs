//! Entities from per-sub-word probabilities, grouped as transformers'
//! `pipeline("token-classification")` groups them, strategy for strategy
//! (checked against the pipeline in `tests/aggregation_pipeline.rs`):
//!
//! - `none`: every sub-word with its own tag;
//! - `simple`: sub-words with the same type, each not a `B-`, join one entity;
//! - `first`, `average`, `max`: first a tag per word (its first sub-word's, the
//!   mean of its sub-words' probabilities, or its most confident sub-word's),
//!   then words join as in `simple`.
//!
//! `O` is never an entity. `start` and `end` count characters of the text.

use serde::{Deserialize, Serialize};
use tokenizers::{Encoding, ModelWrapper, Tokenizer};

use kiln_core::LabelMap;

pub use kiln_core::entities::Aggregation;

/// One entity, as the pipeline writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Entity {
    /// The sub-word's tag (`none` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity: Option<String>,
    /// The entity type (every strategy but `none`).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub entity_group: Option<String>,
    pub score: f32,
    pub word: String,
    pub start: usize,
    pub end: usize,
    /// The sub-word's position in the encoding (`none` only).
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub index: Option<usize>,
}

/// A sub-word with its probabilities, before grouping.
struct Piece<'a> {
    token: String,
    scores: &'a [f32],
    start: usize,
    end: usize,
    index: usize,
    is_subword: bool,
}

/// A tag and its score before grouping into entities.
struct Tagged {
    tag: String,
    score: f32,
    token: String,
    start: usize,
    end: usize,
    index: Option<usize>,
}

/// Entities of `text`, encoded as `encoding` (with character offsets:
/// `Tokenizer::encode_char_offsets`), from `probabilities` (a row per sub-word).
pub fn aggregate(
    text: &str,
    encoding: &Encoding,
    probabilities: &[Vec<f32>],
    labels: &LabelMap,
    tokenizer: &Tokenizer,
    strategy: Aggregation,
) -> Vec<Entity> {
    let chars: Vec<char> = text.chars().collect();
    let unknown = crate::unknown_token_id(tokenizer);
    // A tokenizer that marks word pieces (WordPiece's "##") says which sub-words continue a
    // word; for the others the pipeline guesses from the text around the piece, as here.
    let marks_pieces = match tokenizer.get_model() {
        ModelWrapper::WordPiece(model) => !model.continuing_subword_prefix.is_empty(),
        ModelWrapper::BPE(model) => model.continuing_subword_prefix.as_deref().is_some_and(|p| !p.is_empty()),
        _ => false,
    };
    let mut pieces = Vec::new();
    let special = encoding.get_special_tokens_mask();
    for (index, scores) in probabilities.iter().enumerate().take(encoding.len()) {
        if special[index] == 1 {
            continue;
        }
        let (start, end) = encoding.get_offsets()[index];
        let text = |from: usize, to: usize| &chars[from.min(chars.len())..to.min(chars.len())];
        // An unknown sub-word shows the text it stands for, and starts a word.
        let (token, is_subword) = if unknown == Some(encoding.get_ids()[index]) {
            (text(start, end).iter().collect(), false)
        } else {
            let token = encoding.get_tokens()[index].clone();
            let is_subword = if marks_pieces {
                token.chars().count() != text(start, end).len()
            } else {
                start > 0 && !text(start - 1, start + 1).contains(&' ')
            };
            (token, is_subword)
        };
        pieces.push(Piece { token, scores, start, end, index, is_subword });
    }
    let tagged: Vec<Tagged> = match strategy {
        Aggregation::None | Aggregation::Simple => pieces
            .iter()
            .map(|piece| {
                let (tag, score) = best(piece.scores, labels);
                Tagged {
                    tag,
                    score,
                    token: piece.token.clone(),
                    start: piece.start,
                    end: piece.end,
                    index: Some(piece.index),
                }
            })
            .collect(),
        _ => words(&pieces).into_iter().map(|word| tag_word(word, strategy, labels, tokenizer)).collect(),
    };
    let entities: Vec<Entity> = if strategy == Aggregation::None {
        tagged
            .into_iter()
            .map(|t| Entity {
                entity: Some(t.tag),
                entity_group: None,
                score: t.score,
                word: t.token,
                start: t.start,
                end: t.end,
                index: t.index,
            })
            .collect()
    } else {
        group(tagged, tokenizer)
    };
    entities
        .into_iter()
        .filter(|e| e.entity.as_deref() != Some("O") && e.entity_group.as_deref() != Some("O"))
        .collect()
}

/// Entities of a `text` read in overlapping windows (`windows`: the encoding
/// and its overflowing ones, each with its rows of `probabilities`), as the
/// pipeline reads a long text with `stride`: each window's entities, then of
/// entities that overlap the longer kept (on equal length, the more
/// confident). Offsets are the text's, whatever the window.
pub fn aggregate_windows(
    text: &str,
    windows: &[&Encoding],
    probabilities: &[Vec<Vec<f32>>],
    labels: &LabelMap,
    tokenizer: &Tokenizer,
    strategy: Aggregation,
) -> Vec<Entity> {
    let entities: Vec<Entity> = windows
        .iter()
        .zip(probabilities)
        .flat_map(|(window, probabilities)| aggregate(text, window, probabilities, labels, tokenizer, strategy))
        .collect();
    if windows.len() > 1 { merge_overlapping(entities) } else { entities }
}

/// transformers' `aggregate_overlapping_entities`: by start (stably), an
/// entity starting inside the one kept replaces it if longer, or as long and
/// more confident; otherwise the kept one is final.
fn merge_overlapping(mut entities: Vec<Entity>) -> Vec<Entity> {
    entities.sort_by_key(|e| e.start);
    let mut merged = Vec::with_capacity(entities.len());
    let mut entities = entities.into_iter();
    let Some(mut kept) = entities.next() else { return merged };
    for entity in entities {
        if kept.start <= entity.start && entity.start < kept.end {
            let (length, kept_length) = (entity.end - entity.start, kept.end - kept.start);
            if length > kept_length || (length == kept_length && entity.score > kept.score) {
                kept = entity;
            }
        } else {
            merged.push(std::mem::replace(&mut kept, entity));
        }
    }
    merged.push(kept);
    merged
}

/// The most likely tag and its probability (the first of equals, as numpy's argmax).
fn best(scores: &[f32], labels: &LabelMap) -> (String, f32) {
    let id = kiln_core::scores::argmax(scores);
    (labels.label(id as u32).unwrap_or("O").to_owned(), scores.get(id).copied().unwrap_or(0.0))
}

/// Sub-words grouped into words: a piece that is not a sub-word starts one.
fn words<'p, 'a>(pieces: &'p [Piece<'a>]) -> Vec<&'p [Piece<'a>]> {
    let mut out = Vec::new();
    let mut start = 0;
    for i in 1..=pieces.len() {
        if i == pieces.len() || !pieces[i].is_subword {
            if i > start {
                out.push(&pieces[start..i]);
            }
            start = i;
        }
    }
    out
}

/// The tokenizer's decoder joins sub-words back into text, as the pipeline's
/// `convert_tokens_to_string` does.
fn joined(tokens: Vec<String>, tokenizer: &Tokenizer) -> String {
    use tokenizers::Decoder;
    match tokenizer.get_decoder() {
        Some(decoder) => decoder.decode(tokens.clone()).unwrap_or_else(|_| tokens.join(" ")),
        None => tokens.join(" "),
    }
}

fn tag_word(word: &[Piece], strategy: Aggregation, labels: &LabelMap, tokenizer: &Tokenizer) -> Tagged {
    let (tag, score) = match strategy {
        Aggregation::Average => {
            let mean: Vec<f32> = (0..word[0].scores.len())
                .map(|c| word.iter().map(|p| p.scores[c]).sum::<f32>() / word.len() as f32)
                .collect();
            best(&mean, labels)
        }
        Aggregation::Max => {
            let top = |p: &Piece| p.scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            // The first of equally confident pieces, as Python's max().
            let chosen = word.iter().fold(&word[0], |b, p| if top(p) > top(b) { p } else { b });
            best(chosen.scores, labels)
        }
        _ => best(word[0].scores, labels),
    };
    let token = joined(word.iter().map(|p| p.token.clone()).collect(), tokenizer);
    Tagged { tag, score, token, start: word[0].start, end: word[word.len() - 1].end, index: None }
}

/// `B-` or `I-` and the type; a tag without a prefix (`O`) reads as inside.
fn split_tag(tag: &str) -> (char, &str) {
    match tag.split_once('-') {
        Some(("B", kind)) => ('B', kind),
        Some(("I", kind)) => ('I', kind),
        _ => ('I', tag),
    }
}

/// Neighbours of one type join, unless the later one begins (`B-`) a new entity.
fn group(tagged: Vec<Tagged>, tokenizer: &Tokenizer) -> Vec<Entity> {
    let mut groups: Vec<Vec<Tagged>> = Vec::new();
    for item in tagged {
        let joins = groups.last().and_then(|g| g.last()).is_some_and(|last| {
            let ((bi, kind), (_, last_kind)) = (split_tag(&item.tag), split_tag(&last.tag));
            kind == last_kind && bi != 'B'
        });
        match groups.last_mut() {
            Some(group) if joins => group.push(item),
            _ => groups.push(vec![item]),
        }
    }
    groups
        .into_iter()
        .map(|group| {
            let kind = group[0].tag.split_once('-').map_or(group[0].tag.as_str(), |(_, k)| k).to_owned();
            let score = group.iter().map(|t| t.score).sum::<f32>() / group.len() as f32;
            let (start, end) = (group[0].start, group[group.len() - 1].end);
            let word = joined(group.into_iter().map(|t| t.token).collect(), tokenizer);
            Entity { entity: None, entity_group: Some(kind), score, word, start, end, index: None }
        })
        .collect()
}
