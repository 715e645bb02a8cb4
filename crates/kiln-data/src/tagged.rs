//! Reading tagged words (token classification): CoNLL/IOB files and JSONL
//! with a list of words and a list of tags per line. Tags are converted to
//! IOB2 as they are read; every error names the file and the line.

use std::path::Path;

use anyhow::{Result, anyhow, bail};
use kiln_config::{InputFormat, InvalidTags, TagScheme};
use kiln_core::Progress;
use kiln_core::entities::{TagError, to_iob2};

use crate::read::{Line, LineReader, resolve_format};
use crate::schema::TaggedTable;

/// What to read from a tagged file, and how.
#[derive(Debug, Clone, Copy)]
pub struct TaggedOptions<'a> {
    pub format: InputFormat,
    /// JSONL: the list of words, the list of tags, and an optional id.
    pub tokens_column: &'a str,
    pub tags_column: &'a str,
    pub id_column: Option<&'a str>,
    /// CoNLL: the tag's column, from 1; `None` = the last.
    pub conll_tag_column: Option<usize>,
    pub scheme: TagScheme,
    pub invalid: InvalidTags,
    /// Without an id column, ids are `<id_prefix>-<sentence>`, counted from 1.
    pub id_prefix: &'a str,
}

/// One file's sentences, tags in IOB2.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TaggedRecords {
    pub table: TaggedTable,
    /// `I-X` tags that continued nothing, read as `B-X` (`invalid_tags = "repair"`).
    pub repaired_tags: usize,
    /// `-DOCSTART-` lines (CoNLL documents).
    pub documents: usize,
    /// CoNLL lines whose word is only whitespace, tagged `O`: dropped.
    pub whitespace_words: usize,
}

/// Reads a whole CoNLL or JSONL file of tagged sentences.
pub fn read_tagged(path: &Path, options: &TaggedOptions, progress: &Progress) -> Result<TaggedRecords> {
    let format = resolve_format(path, options.format)?;
    let mut lines = LineReader::open(path)?;
    let bar = progress.file(path);
    let mut records = TaggedRecords::default();
    match format {
        InputFormat::Conll => read_conll(&mut lines, path, options, &mut records, &|at| bar.set_position(at))?,
        InputFormat::Jsonl => read_jsonl(&mut lines, path, options, &mut records, &|at| bar.set_position(at))?,
        other => bail!(
            "{}: token classification reads CoNLL (word and tag per line) or JSONL (lists of words and tags), not {other}; \
             set ingest.format",
            path.display()
        ),
    }
    bar.finish_and_clear();
    if records.table.is_empty() {
        bail!("{}: no sentences (the file is empty, or holds only blank and -DOCSTART- lines)", path.display());
    }
    Ok(records)
}

fn line_error(path: &Path, line: usize, message: impl std::fmt::Display) -> anyhow::Error {
    anyhow!("{}: line {line}: {message}", path.display())
}

/// Adds one sentence, its tags converted; `where_is` says where a bad tag is.
fn push_sentence(
    records: &mut TaggedRecords,
    options: &TaggedOptions,
    id: Option<String>,
    words: Vec<String>,
    tags: Vec<String>,
    where_is: impl Fn(&TagError) -> anyhow::Error,
) -> Result<()> {
    let converted = to_iob2(&tags, options.scheme, options.invalid).map_err(|error| where_is(&error))?;
    records.repaired_tags += converted.repaired;
    let table = &mut records.table;
    table.ids.push(id.unwrap_or_else(|| format!("{}-{}", options.id_prefix, table.len() + 1)));
    table.tokens.push(words);
    table.tags.push(converted.tags);
    Ok(())
}

/// The CoNLL sentence being read: its words, tags and the line of each.
#[derive(Default)]
struct Sentence {
    words: Vec<String>,
    tags: Vec<String>,
    lines: Vec<usize>,
}

impl Sentence {
    /// Adds the sentence read so far (if any) and starts the next.
    fn finish(&mut self, records: &mut TaggedRecords, options: &TaggedOptions, path: &Path) -> Result<()> {
        if self.words.is_empty() {
            return Ok(());
        }
        let Sentence { words, tags, lines } = std::mem::take(self);
        push_sentence(records, options, None, words, tags, |error| line_error(path, lines[error.word()], error))
    }
}

/// `word<TAB>tag` (or space separated, more columns allowed), a blank line
/// between sentences, `-DOCSTART-` lines between documents.
fn read_conll(
    lines: &mut LineReader,
    path: &Path,
    options: &TaggedOptions,
    records: &mut TaggedRecords,
    at: &dyn Fn(u64),
) -> Result<()> {
    let mut sentence = Sentence::default();
    while let Some(Line { number, end, text: line }) = lines.next_line()? {
        if line.trim().is_empty() {
            sentence.finish(records, options, path)?;
            continue;
        }
        // A tab-separated file keeps spaces inside a field; otherwise any whitespace separates.
        let fields: Vec<&str> = if line.contains('\t') {
            line.split('\t').map(str::trim).collect()
        } else {
            line.split_whitespace().collect()
        };
        if fields[0] == "-DOCSTART-" {
            records.documents += 1;
            sentence.finish(records, options, path)?;
            continue;
        }
        if fields.len() < 2 {
            let message = format!("expected a word and its tag (tab or space separated), found {line:?}");
            return Err(line_error(path, number, message));
        }
        let column = options.conll_tag_column.unwrap_or(fields.len());
        let Some(&tag) = fields.get(column.saturating_sub(1)) else {
            let message = format!("{} columns, but ingest.conll_tag_column is {column}", fields.len());
            return Err(line_error(path, number, message));
        };
        if tag.is_empty() {
            return Err(line_error(path, number, format!("an empty tag in {line:?}")));
        }
        // Some Twitter corpora have words of whitespace only (a space, or
        // nothing before the tab). A tokenizer gives them no sub-word, so an
        // `O` one is dropped and counted; an entity needs a word.
        if fields[0].is_empty() {
            if tag == "O" {
                records.whitespace_words += 1;
                at(end);
                continue;
            }
            let message = format!("a word of whitespace only tagged {tag:?} in {line:?}: an entity needs a word");
            return Err(line_error(path, number, message));
        }
        sentence.words.push(fields[0].to_owned());
        sentence.tags.push(tag.to_owned());
        sentence.lines.push(number);
        at(end);
    }
    sentence.finish(records, options, path)
}

/// One JSON object per line with a list of words and a list of tags.
fn read_jsonl(
    lines: &mut LineReader,
    path: &Path,
    options: &TaggedOptions,
    records: &mut TaggedRecords,
    at: &dyn Fn(u64),
) -> Result<()> {
    while let Some(Line { number, end, text: line }) = lines.next_line()? {
        if line.trim().is_empty() {
            continue;
        }
        let error = |message: String| line_error(path, number, message);
        let object: serde_json::Map<String, serde_json::Value> =
            serde_json::from_str(line).map_err(|e| error(format!("not a JSON object ({e})")))?;
        let list = |column: &str| -> Result<Vec<String>> {
            let value = object.get(column).ok_or_else(|| {
                let found: Vec<&str> = object.keys().map(String::as_str).collect();
                error(format!("no field '{column}' (found: {})", found.join(", ")))
            })?;
            let items = value.as_array().ok_or_else(|| error(format!("'{column}' should be a list, found {value}")))?;
            items
                .iter()
                .enumerate()
                .map(|(i, item)| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        error(format!(
                            "'{column}' item {} should be a string (tags by name, not number), found {item}",
                            i + 1
                        ))
                    })
                })
                .collect()
        };
        let (words, tags) = (list(options.tokens_column)?, list(options.tags_column)?);
        if words.len() != tags.len() {
            return Err(error(format!(
                "{} words in '{}' but {} tags in '{}'",
                words.len(),
                options.tokens_column,
                tags.len(),
                options.tags_column
            )));
        }
        let id = match options.id_column {
            None => None,
            Some(column) => Some(match object.get(column) {
                Some(serde_json::Value::String(s)) => s.clone(),
                Some(serde_json::Value::Number(n)) => n.to_string(),
                other => {
                    return Err(error(format!("id field '{column}' should be a string or number, found {other:?}")));
                }
            }),
        };
        if words.is_empty() {
            continue;
        }
        push_sentence(records, options, id, words, tags, |tag| error(format!("word {}: {tag}", tag.word() + 1)))?;
        at(end);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn options(format: InputFormat) -> TaggedOptions<'static> {
        TaggedOptions {
            format,
            tokens_column: "tokens",
            tags_column: "tags",
            id_column: None,
            conll_tag_column: None,
            scheme: TagScheme::Iob2,
            invalid: InvalidTags::Error,
            id_prefix: "train",
        }
    }

    fn read(text: &str, name: &str, options: &TaggedOptions) -> Result<TaggedRecords> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join(name);
        std::fs::write(&path, text).expect("write");
        read_tagged(&path, options, &Progress::hidden())
    }

    fn words(text: &str) -> Vec<String> {
        text.split(' ').map(str::to_owned).collect()
    }

    #[test]
    fn conll_reads_tabs_spaces_docstart_and_blank_lines_with_tabs() {
        let text = "-DOCSTART- -X- O O\n\nEU NNP B-NP B-ORG\nrejects VBZ B-VP O\n\n\nPeter\tB-person\nBlackburn\tI-person\n\t\n@user\tO\n";
        let got = read(text, "x.conll", &options(InputFormat::Auto)).expect("reads");
        assert_eq!(got.documents, 1);
        assert_eq!(got.table.ids, ["train-1", "train-2", "train-3"]);
        assert_eq!(got.table.tokens, [words("EU rejects"), words("Peter Blackburn"), words("@user")]);
        assert_eq!(got.table.tags, [words("B-ORG O"), words("B-person I-person"), words("O")]);
    }

    #[test]
    fn whitespace_only_words_tagged_o_are_dropped_and_counted_and_an_entity_one_is_named() {
        let text = "Paris\tB-location\n \tO\nrocks\tO\n\n\tO\n\u{a0}\tO\nhi\tO\n";
        let got = read(text, "x.conll", &options(InputFormat::Auto)).expect("reads");
        assert_eq!(got.table.tokens, [words("Paris rocks"), words("hi")]);
        assert_eq!(got.table.tags, [words("B-location O"), words("O")]);
        assert_eq!(got.whitespace_words, 3);
        let error = read("Paris\tB-location\n \tI-location\n", "y.conll", &options(InputFormat::Auto))
            .expect_err("an entity of whitespace");
        assert!(
            error.to_string().contains("y.conll: line 2: a word of whitespace only tagged \"I-location\""),
            "{error}"
        );
    }

    #[test]
    fn conll_tag_column_and_schemes_are_honoured() {
        let text = "EU NNP I-NP I-ORG\nrejects VBZ I-VP O\nGerman JJ I-NP I-MISC\ncall NN I-NP O\n";
        let settings =
            TaggedOptions { conll_tag_column: Some(3), scheme: TagScheme::Iob1, ..options(InputFormat::Conll) };
        let got = read(text, "x.txt", &settings).expect("reads");
        assert_eq!(got.table.tags, [words("B-NP B-VP B-NP I-NP")]);
    }

    #[test]
    fn bad_conll_input_names_the_file_and_line() {
        let cases = [
            ("Peter\tB-person\nBlackburn\n", "x.conll: line 2: expected a word and its tag"),
            ("Peter\tO\nBlackburn\tI-person\n", "x.conll: line 2: \"I-person\" continues no entity"),
            ("a\tO\n\nb\tQ-person\n", "x.conll: line 3: \"Q-person\" is not a tag"),
            ("a x O\n", "x.conll: line 1: 3 columns, but ingest.conll_tag_column is 5"),
            ("\n-DOCSTART- O\n\n", "x.conll: no sentences"),
            ("", "x.conll: no sentences"),
        ];
        for (text, want) in cases {
            let settings =
                TaggedOptions { conll_tag_column: want.contains("is 5").then_some(5), ..options(InputFormat::Auto) };
            let error = read(text, "x.conll", &settings).expect_err(want);
            assert!(format!("{error:#}").contains(want), "{want}: {error:#}");
        }
        let repaired = TaggedOptions { invalid: InvalidTags::Repair, ..options(InputFormat::Auto) };
        let got = read("Peter\tO\nBlackburn\tI-person\n", "x.conll", &repaired).expect("repaired");
        assert_eq!((got.table.tags, got.repaired_tags), (vec![words("O B-person")], 1));
    }

    #[test]
    fn jsonl_reads_lists_and_names_bad_lines() {
        let text = "{\"id\": 7, \"tokens\": [\"New\", \"York\"], \"tags\": [\"B-LOC\", \"E-LOC\"]}\n\n{\"id\": \"b\", \"tokens\": [\"hi\"], \"tags\": [\"S-PER\"]}\n";
        let settings = TaggedOptions { id_column: Some("id"), scheme: TagScheme::Bioes, ..options(InputFormat::Auto) };
        let got = read(text, "x.jsonl", &settings).expect("reads");
        assert_eq!(got.table.ids, ["7", "b"]);
        assert_eq!(got.table.tags, [words("B-LOC I-LOC"), words("B-PER")]);

        let cases = [
            (
                "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\"]}\n",
                "x.jsonl: line 1: 2 words in 'tokens' but 1 tags in 'tags'",
            ),
            (
                "{\"tokens\": [\"a\"], \"tags\": [\"O\"]}\n{\"tokens\": [\"a\"]}\n",
                "x.jsonl: line 2: no field 'tags' (found: tokens)",
            ),
            ("{\"tokens\": [\"a\"], \"tags\": [3]}\n", "'tags' item 1 should be a string"),
            (
                "{\"tokens\": [\"a\", \"b\"], \"tags\": [\"O\", \"I-X\"]}\n",
                "x.jsonl: line 1: word 2: \"I-X\" continues no entity",
            ),
            ("[1, 2]\n", "x.jsonl: line 1: not a JSON object"),
        ];
        for (text, want) in cases {
            let error = read(text, "x.jsonl", &options(InputFormat::Auto)).expect_err(want);
            assert!(format!("{error:#}").contains(want), "{want}: {error:#}");
        }
    }

    #[test]
    fn csv_is_not_a_tagged_format() {
        let error = read("text,label\na,b\n", "x.csv", &options(InputFormat::Auto)).expect_err("csv");
        assert!(error.to_string().contains("token classification reads CoNLL"), "{error}");
    }
}
