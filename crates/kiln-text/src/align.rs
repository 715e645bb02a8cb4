//! Words to sub-words for token classification, the same in training and
//! serving: each word's label goes to its first sub-word; the others are
//! ignored by the loss, or (`label_all_tokens`) get the word's label with `B-`
//! turned into `I-`, as transformers' token-classification example does. A
//! sentence longer than `max_length` becomes overlapping windows of whole
//! words, or is cut at a word boundary (the words cut off are counted).

use anyhow::{Result, anyhow};
use kiln_config::LongSentences;
use kiln_core::{LabelMap, TaggedExample};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::{Encoding, Tokenizer, TruncationParams};

/// The label of a sub-word the loss skips (PyTorch's `ignore_index`).
pub const IGNORED: i32 = -100;
/// The word id of a special token (`[CLS]`, `[SEP]`, `<s>`).
pub const NO_WORD: i32 = -1;

/// One encoded window of a sentence (most sentences are one window).
#[derive(Debug, Clone, PartialEq)]
pub struct Window {
    /// The window's place in its sentence, from 0.
    pub index: u32,
    pub input_ids: Vec<u32>,
    pub token_type_ids: Vec<u8>,
    /// Per sub-word: the word of the sentence it belongs to, or [`NO_WORD`].
    pub word_ids: Vec<i32>,
    /// Per sub-word: the label id the loss sees, or [`IGNORED`].
    pub labels: Vec<i32>,
}

impl Window {
    /// The first and one-past-last word this window holds.
    pub fn words(&self) -> (usize, usize) {
        let mut words = self.word_ids.iter().filter(|&&w| w != NO_WORD).map(|&w| w as usize);
        let first = words.next().unwrap_or(0);
        (first, words.next_back().unwrap_or(first) + 1)
    }
}

/// A sentence's windows and what did not fit.
#[derive(Debug, Clone, PartialEq)]
pub struct Aligned {
    pub windows: Vec<Window>,
    /// Words whose first sub-word is in no window (cut by truncation).
    pub words_cut: usize,
    /// Words the tokenizer turns into no sub-word at all (a lone variation
    /// selector): they get no label in training and no prediction (`O`).
    pub empty_words: usize,
    /// Words that became the tokenizer's unknown token, wholly or in part.
    pub unknown_words: usize,
}

/// How words become windows of sub-words.
#[derive(Debug, Clone)]
pub struct Aligner {
    /// Without truncation: how long a whole sentence is.
    whole: Tokenizer,
    /// Truncating at `max_length`: a window that is one giant word still fits.
    cut: Tokenizer,
    max_length: usize,
    long_sentences: LongSentences,
    overlap: usize,
    /// Per label id, the label of a word's later sub-words (`B-X` -> `I-X`);
    /// `None` leaves them to [`IGNORED`].
    continuation: Option<Vec<i32>>,
    unknown: Option<u32>,
}

impl Aligner {
    /// `tokenizer` as [`crate::load_tokenizer`] sets it up; `labels` the tag list.
    pub fn new(
        tokenizer: &Tokenizer,
        labels: &LabelMap,
        max_length: usize,
        long_sentences: LongSentences,
        overlap: usize,
        label_all_tokens: bool,
    ) -> Result<Self> {
        let mut whole = words_read_mid_sentence(tokenizer);
        whole.with_truncation(None).map_err(|e| anyhow!("cannot turn truncation off: {e}"))?;
        let mut cut = words_read_mid_sentence(tokenizer);
        cut.with_truncation(Some(TruncationParams { max_length, ..TruncationParams::default() }))
            .map_err(|e| anyhow!("cannot truncate to {max_length} tokens: {e}"))?;
        let continuation = label_all_tokens.then(|| {
            (0..labels.len() as u32)
                .map(|id| {
                    let label = labels.label(id).unwrap_or_default();
                    let inside = label.strip_prefix("B-").and_then(|kind| labels.id(&format!("I-{kind}")));
                    inside.unwrap_or(id) as i32
                })
                .collect()
        });
        Ok(Self {
            whole,
            cut,
            max_length,
            long_sentences,
            overlap,
            continuation,
            unknown: crate::unknown_token_id(tokenizer),
        })
    }

    /// The windows of one sentence; `labels` are its words' label ids (`None`
    /// when predicting: every sub-word is then [`IGNORED`]).
    pub fn align<S: AsRef<str>>(&self, words: &[S], labels: Option<&[u32]>) -> Result<Aligned> {
        let words: Vec<&str> = words.iter().map(AsRef::as_ref).collect();
        let full = encode(&self.whole, &words)?;
        let unknown_words = self.unknown_words(&full);
        let mut sub_words = vec![0usize; words.len()];
        for word in full.get_word_ids().iter().flatten() {
            sub_words[*word as usize] += 1;
        }
        let empty_words = sub_words.iter().filter(|&&n| n == 0).count();
        if full.get_ids().len() <= self.max_length || words.is_empty() {
            let window = self.window(0, 0, &full, labels);
            return Ok(Aligned { windows: vec![window], words_cut: 0, empty_words, unknown_words });
        }
        let specials = full.get_word_ids().iter().filter(|w| w.is_none()).count();
        let budget = self.max_length.saturating_sub(specials).max(1);
        // Whole words from `start` while they fit (at least one: a giant word is cut inside).
        let end_from = |start: usize| {
            let mut used = sub_words[start];
            let mut end = start + 1;
            while end < words.len() && used + sub_words[end] <= budget {
                used += sub_words[end];
                end += 1;
            }
            end
        };
        let mut windows = Vec::new();
        let mut start = 0;
        loop {
            let end = end_from(start);
            let encoding = encode(&self.cut, &words[start..end])?;
            windows.push(self.window(windows.len() as u32, start, &encoding, labels));
            if end == words.len() || self.long_sentences == LongSentences::Truncate {
                let covered: std::collections::BTreeSet<i32> =
                    windows.iter().flat_map(|w| w.word_ids.iter().copied()).filter(|&w| w != NO_WORD).collect();
                let words_cut = words.len() - covered.len() - empty_words;
                return Ok(Aligned { words_cut, empty_words, windows, unknown_words });
            }
            // The next window starts as far back as `overlap` sub-words allow.
            let mut next = end;
            let mut shared = 0;
            while next > start + 1 && shared + sub_words[next - 1] <= self.overlap {
                shared += sub_words[next - 1];
                next -= 1;
            }
            start = next;
        }
    }

    fn window(&self, index: u32, first_word: usize, encoding: &Encoding, labels: Option<&[u32]>) -> Window {
        let mut word_ids = Vec::with_capacity(encoding.len());
        let mut sub_word_labels = Vec::with_capacity(encoding.len());
        let mut previous = None;
        for word in encoding.get_word_ids() {
            let word = word.map(|w| first_word + w as usize);
            word_ids.push(word.map_or(NO_WORD, |w| w as i32));
            let label = match (word, labels) {
                (Some(w), Some(labels)) => {
                    let label = labels[w];
                    if previous != Some(w) {
                        label as i32
                    } else {
                        self.continuation.as_ref().map_or(IGNORED, |c| c[label as usize])
                    }
                }
                _ => IGNORED,
            };
            sub_word_labels.push(label);
            previous = word;
        }
        Window {
            index,
            input_ids: encoding.get_ids().to_vec(),
            token_type_ids: encoding.get_type_ids().iter().map(|&t| t as u8).collect(),
            word_ids,
            labels: sub_word_labels,
        }
    }

    fn unknown_words(&self, encoding: &Encoding) -> usize {
        let Some(unknown) = self.unknown else { return 0 };
        let words: std::collections::BTreeSet<u32> = encoding
            .get_ids()
            .iter()
            .zip(encoding.get_word_ids())
            .filter_map(|(&id, word)| if id == unknown { *word } else { None })
            .collect();
        words.len()
    }
}

/// A byte-level BPE tokenizer (RoBERTa's) reads a word at the start of a text
/// without the space it has mid-sentence; given words, it must read each as
/// mid-sentence (`Ġword`), which is why transformers requires
/// `add_prefix_space=True` for words. Other tokenizers are left as they are.
fn words_read_mid_sentence(tokenizer: &Tokenizer) -> Tokenizer {
    let mut tokenizer = tokenizer.clone();
    if let Some(PreTokenizerWrapper::ByteLevel(level)) = tokenizer.get_pre_tokenizer().cloned() {
        let mut level = level;
        level.add_prefix_space = true;
        tokenizer.with_pre_tokenizer(Some(PreTokenizerWrapper::ByteLevel(level)));
    }
    tokenizer
}

/// Words (already split) to sub-words, special tokens added. (`encode_fast`
/// would skip the word ids, which alignment is all about.)
fn encode(tokenizer: &Tokenizer, words: &[&str]) -> Result<Encoding> {
    tokenizer.encode(words, true).map_err(|e| anyhow!("tokenizing words {words:?} failed: {e}"))
}

/// For each of a sentence's `words`, the window (given by its sub-words' word
/// ids) that reads it with the most context on both sides: where its first
/// sub-word sits furthest from the window's edges, as (window, position).
/// Words in no window map to `None`.
pub fn reading_windows(windows: &[&[i32]], words: usize) -> Vec<Option<(usize, usize)>> {
    let mut best: Vec<Option<(usize, usize, usize)>> = vec![None; words]; // (window, position, margin)
    for (w, word_ids) in windows.iter().enumerate() {
        let mut previous = NO_WORD;
        let len = word_ids.len();
        for (position, &word) in word_ids.iter().enumerate() {
            if word == NO_WORD || word == previous {
                previous = word;
                continue;
            }
            previous = word;
            let margin = position.min(len - 1 - position);
            let slot = &mut best[word as usize];
            if slot.is_none_or(|(_, _, m)| margin > m) {
                *slot = Some((w, position, margin));
            }
        }
    }
    best.into_iter().map(|b| b.map(|(w, p, _)| (w, p))).collect()
}

/// A prediction per word from predictions per sub-word of each window (what
/// `eval` and `predict` score and show): the one at the word's first sub-word
/// in its reading window. Words no window holds get `None`.
pub fn word_predictions<T: Clone>(windows: &[&[i32]], per_sub_word: &[Vec<T>], words: usize) -> Vec<Option<T>> {
    reading_windows(windows, words)
        .into_iter()
        .map(|reading| reading.and_then(|(w, p)| per_sub_word.get(w).and_then(|row| row.get(p)).cloned()))
        .collect()
}

/// One sentence of a processed split: its rows (windows) and, per word with a
/// label, (word index, true label id, prediction).
#[derive(Debug, Clone, PartialEq)]
pub struct SentenceWords<'a, T> {
    pub id: &'a str,
    pub rows: std::ops::Range<usize>,
    pub words: Vec<(usize, u32, T)>,
}

/// Each sentence of `rows` (a sentence's windows are consecutive rows) with
/// its words' true labels and predictions, read as [`word_predictions`] reads them, where
/// each word has the most context. Words in no window, or whose reading
/// sub-word carries no label, are left out: training and `eval` score the same words.
pub fn sentence_words<'a, T: Clone>(rows: &'a [TaggedExample], predicted: &[Vec<T>]) -> Vec<SentenceWords<'a, T>> {
    let mut out = Vec::new();
    let mut start = 0;
    while start < rows.len() {
        let end = (start..rows.len()).find(|&i| rows[i].id != rows[start].id).unwrap_or(rows.len());
        let windows = &rows[start..end];
        let word_ids: Vec<&[i32]> = windows.iter().map(|e| e.word_ids.as_slice()).collect();
        let words =
            windows.iter().flat_map(|e| e.word_ids.iter()).copied().max().map_or(0, |w| (w + 1).max(0) as usize);
        // Where each word is read, found once for its true label and its prediction.
        let words = reading_windows(&word_ids, words)
            .into_iter()
            .enumerate()
            .filter_map(|(word, reading)| {
                let (w, p) = reading?;
                let truth = *windows[w].labels.get(p)?;
                let guess = predicted.get(start + w)?.get(p)?.clone();
                (truth >= 0).then_some((word, truth as u32, guess))
            })
            .collect();
        out.push(SentenceWords { id: &rows[start].id, rows: start..end, words });
        start = end;
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tokenizer() -> Tokenizer {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pretrained/all-MiniLM-L6-v2");
        assert!(dir.join("tokenizer.json").exists(), "no MiniLM at {}: run `make setup`", dir.display());
        crate::load_tokenizer(&dir, 512).expect("tokenizer")
    }

    fn id(tag: &str) -> i32 {
        labels().id(tag).expect("a tag") as i32
    }

    fn labels() -> LabelMap {
        LabelMap::from_labels(["B-location", "I-location", "B-person", "I-person", "O"])
    }

    fn aligner(max_length: usize, long: LongSentences, overlap: usize, all: bool) -> Aligner {
        Aligner::new(&tokenizer(), &labels(), max_length, long, overlap, all).expect("aligner")
    }

    fn ids(tags: &str) -> Vec<u32> {
        let map = labels();
        tags.split(' ').map(|t| map.id(t).expect("a tag")).collect()
    }

    fn tokens(window: &Window) -> Vec<String> {
        let tokenizer = tokenizer();
        window.input_ids.iter().map(|&id| tokenizer.id_to_token(id).expect("token")).collect()
    }

    #[test]
    fn the_first_sub_word_carries_the_label_and_the_rest_are_ignored() {
        let words = ["Lovelace", "visited", "Kraków"];
        let tags = ids("B-person O B-location");
        let aligned = aligner(64, LongSentences::Window, 8, false).align(&words, Some(&tags)).expect("aligned");
        let window = &aligned.windows[0];
        assert_eq!(tokens(window), ["[CLS]", "love", "##lace", "visited", "krakow", "[SEP]"]);
        assert_eq!(window.word_ids, [NO_WORD, 0, 0, 1, 2, NO_WORD]);
        let o = id("O");
        let (b_person, b_location) = (id("B-person"), id("B-location"));
        assert_eq!(window.labels, [IGNORED, b_person, IGNORED, o, b_location, IGNORED]);
        let words = ["Zyxwvutsr", "at", "Kraków"];
        let aligned = aligner(64, LongSentences::Window, 8, false).align(&words, Some(&tags)).expect("aligned");
        let window = &aligned.windows[0];
        let (b_person, b_location) = (id("B-person"), id("B-location"));
        let pieces = tokens(window);
        assert!(pieces.len() > 5, "the made-up word splits into sub-words: {pieces:?}");
        assert_eq!(window.word_ids[0], NO_WORD);
        assert_eq!(window.labels[0], IGNORED);
        assert_eq!(window.labels[1], b_person, "first sub-word of word 0");
        let later: Vec<i32> =
            (2..pieces.len()).filter(|&i| window.word_ids[i] == 0).map(|i| window.labels[i]).collect();
        assert!(!later.is_empty() && later.iter().all(|&l| l == IGNORED), "{later:?}");
        let first_of_krakow = window.word_ids.iter().position(|&w| w == 2).expect("word 2");
        assert_eq!(window.labels[first_of_krakow], b_location);
    }

    #[test]
    fn label_all_tokens_turns_b_into_i_on_later_sub_words() {
        let words = ["Zyxwvutsr", "Kraków"];
        let tags = ids("B-person O");
        let aligned = aligner(64, LongSentences::Window, 8, true).align(&words, Some(&tags)).expect("aligned");
        let window = &aligned.windows[0];
        let i_person = id("I-person");
        let first = window.word_ids.iter().position(|&w| w == 0).expect("word 0");
        let later: Vec<i32> = window
            .word_ids
            .iter()
            .zip(&window.labels)
            .skip(first + 1)
            .filter(|(w, _)| **w == 0)
            .map(|(_, l)| *l)
            .collect();
        assert!(!later.is_empty() && later.iter().all(|&l| l == i_person), "{later:?}");
    }

    #[test]
    fn unknown_words_are_counted() {
        let aligned = aligner(64, LongSentences::Window, 8, false)
            .align(&["hello", "\u{1F9FF}", "there"], None)
            .expect("aligned");
        assert_eq!(aligned.unknown_words, 1);
        assert!(aligned.windows[0].labels.iter().all(|&l| l == IGNORED), "no labels when predicting");
    }

    #[test]
    fn long_sentences_become_overlapping_windows_of_whole_words_or_are_cut() {
        let words: Vec<String> = (0..20).map(|i| format!("word{i}")).collect(); // "word", "##N": 2-3 sub-words each
        let tags: Vec<u32> = vec![id("O") as u32; 20];
        let windowed = aligner(16, LongSentences::Window, 4, false).align(&words, Some(&tags)).expect("aligned");
        assert!(windowed.windows.len() > 2, "{} windows", windowed.windows.len());
        assert_eq!(windowed.words_cut, 0);
        for window in &windowed.windows {
            assert!(window.input_ids.len() <= 16);
            assert_eq!(tokens(window).first().map(String::as_str), Some("[CLS]"));
            assert_eq!(tokens(window).last().map(String::as_str), Some("[SEP]"));
        }
        for pair in windowed.windows.windows(2) {
            let ((_, end), (start, _)) = (pair[0].words(), pair[1].words());
            assert!(start < end, "windows overlap: {:?} then {:?}", pair[0].words(), pair[1].words());
            assert!(start > pair[0].words().0, "and move on");
        }
        let word_ids: Vec<&[i32]> = windowed.windows.iter().map(|w| w.word_ids.as_slice()).collect();
        let reading = reading_windows(&word_ids, 20);
        assert!(reading.iter().all(Option::is_some), "every word is read somewhere");
        let (window, position) = reading[10].expect("word 10");
        assert_eq!(windowed.windows[window].word_ids[position], 10);
        // Each word's prediction comes from its reading window: mark each
        // sub-word with (window, position) and see which one a word gets.
        let marks: Vec<Vec<(usize, usize)>> = windowed
            .windows
            .iter()
            .enumerate()
            .map(|(w, win)| (0..win.word_ids.len()).map(|p| (w, p)).collect())
            .collect();
        let predicted = word_predictions(&word_ids, &marks, 20);
        assert_eq!(predicted, reading);
        let overlapping =
            (0..20).find(|&word| windowed.windows.iter().filter(|w| w.word_ids.contains(&(word as i32))).count() > 1);
        let word = overlapping.expect("a word in two windows");
        let (w, p) = reading[word].expect("read");
        let len = windowed.windows[w].word_ids.len();
        for (other, window) in windowed.windows.iter().enumerate().filter(|(o, _)| *o != w) {
            if let Some(q) = window.word_ids.iter().position(|&x| x == word as i32) {
                let margin = |p: usize, len: usize| p.min(len - 1 - p);
                assert!(
                    margin(p, len) >= margin(q, window.word_ids.len()),
                    "window {other} reads word {word} with more context"
                );
            }
        }

        let cut = aligner(16, LongSentences::Truncate, 4, false).align(&words, Some(&tags)).expect("aligned");
        assert_eq!(cut.windows.len(), 1);
        let (_, end) = cut.windows[0].words();
        assert_eq!(cut.words_cut, 20 - end);
        assert!(cut.words_cut > 10);
    }

    #[test]
    fn byte_level_bpe_reads_every_word_as_mid_sentence() {
        // RoBERTa's layout in miniature: byte-level pre-tokenizer without a prefix space, BPE.
        let json = r#"{"version": "1.0", "truncation": null, "padding": null, "added_tokens": [],
            "normalizer": null, "post_processor": null, "decoder": null,
            "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
            "model": {"type": "BPE", "dropout": null, "unk_token": null, "continuing_subword_prefix": null,
                "end_of_word_suffix": null, "fuse_unk": false, "byte_fallback": false,
                "vocab": {"h": 0, "i": 1, "Ġ": 2, "hi": 3, "Ġhi": 4}, "merges": ["h i", "Ġ hi"]}}"#;
        let tokenizer: Tokenizer = json.parse().expect("a tokenizer");
        let text = tokenizer.encode("hi hi", false).expect("encodes");
        assert_eq!(text.get_tokens(), ["hi", "Ġhi"], "as written, the first word has no space");
        let labels = LabelMap::from_labels(["O"]);
        let aligner = Aligner::new(&tokenizer, &labels, 16, LongSentences::Window, 4, false).expect("aligner");
        let aligned = aligner.align(&["hi", "hi"], Some(&[0, 0])).expect("aligned");
        let tokens: Vec<&str> =
            aligned.windows[0].input_ids.iter().map(|&id| if id == 4 { "Ġhi" } else { "other" }).collect();
        assert_eq!(tokens, ["Ġhi", "Ġhi"], "as words, each reads as mid-sentence");
        assert_eq!(aligned.windows[0].word_ids, [0, 1]);
    }

    #[test]
    fn a_word_longer_than_a_window_is_cut_inside() {
        // Under WordPiece's 100-character limit (past it a word is one [UNK]).
        let giant = "zqxjvk".repeat(15);
        let aligner = aligner(8, LongSentences::Window, 2, false);
        let pieces = tokenizer().encode(giant.as_str(), false).expect("encodes").len();
        assert!(pieces > 8, "the word alone outgrows a window: {pieces} sub-words");
        let aligned = aligner.align(&["a", giant.as_str(), "b"], Some(&ids("O O O"))).expect("aligned");
        assert!(aligned.windows.iter().all(|w| w.input_ids.len() <= 8));
        assert_eq!(aligned.words_cut, 0, "its first sub-word is in a window");
        let word_ids: Vec<&[i32]> = aligned.windows.iter().map(|w| w.word_ids.as_slice()).collect();
        let reading = reading_windows(&word_ids, 3);
        assert!(reading.iter().all(Option::is_some), "{reading:?}");
    }
}
