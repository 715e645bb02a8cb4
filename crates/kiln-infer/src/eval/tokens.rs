//! `eval` for token classification: entity-level precision, recall and F1
//! per type in seqeval's default (conlleval) and strict IOB2 modes, word
//! accuracy, a confusion of entity types and the most confident wrong spans.
//! Words are scored where training validated them: at each word's first
//! sub-word, in the window that reads it with the most context.

use std::collections::{BTreeSet, HashMap};
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::types::Float32Type;
use arrow_array::{ArrayRef, StringArray};
use kiln_config::EvalConfig;
use kiln_core::calibration::{EntityProfile, PredictionProfile, ProfiledEntity, ProfiledText};
use kiln_core::entities::{EntityScores, Mode, Span, score, spans, words_in_span};
use kiln_core::metrics::EntityMetrics;
use kiln_core::model_folder::{CONFIG, LABELS, REFERENCE_PREDICTIONS};
use kiln_core::scores::{Confusion, argmax};
use kiln_core::{EvalMetrics, FileHash, LabelMap, Manifest, Progress, Split, StagedOutput, TaggedExample};
use kiln_data::parquet::{batch, write_parquet};
use kiln_data::processed::read_tagged_examples;
use kiln_data::schema::{self, TaggedTable, list_column, string_list_column};
use kiln_model::Predictor;
use kiln_plots::{CONFUSION_SVG, CURVES_SVG, confusion_svg};
use kiln_text::align::sentence_words;

use super::{MANIFEST, METRICS, PLOT_CONFUSION, PREDICTIONS, REPORT, calibration_note, cell, write_csv};
use super::{cleaned_split, in_chunks, write_confusion, write_curves, write_per_class};

/// The column of `confusion.csv` and `plot_confusion.csv` for "no entity
/// there": a true entity the model missed, or one it made up.
const NO_ENTITY: &str = "O";

/// One sentence, scored word by word.
struct Sentence<'a> {
    id: &'a str,
    /// The words scored (those with a label), as indices into the sentence.
    words: Vec<usize>,
    truth: Vec<String>,
    predicted: Vec<String>,
    /// The predicted tag's probability, per scored word.
    confidence: Vec<f32>,
    /// The entities of `truth` and of `predicted` (conlleval mode), found once
    /// for the confusion and the report.
    true_spans: Vec<Span>,
    predicted_spans: Vec<Span>,
}

impl<'a> Sentence<'a> {
    fn new(id: &'a str, words: Vec<usize>, truth: Vec<String>, predicted: Vec<String>, confidence: Vec<f32>) -> Self {
        let (true_spans, predicted_spans) = (spans(&truth, Mode::Conlleval), spans(&predicted, Mode::Conlleval));
        Self { id, words, truth, predicted, confidence, true_spans, predicted_spans }
    }
}

/// Whether two entities share a word.
fn overlaps(a: &Span, b: &Span) -> bool {
    a.start < b.end && b.start < a.end
}

pub(super) fn run(config: &EvalConfig, predictor: &Predictor, progress: &Progress) -> Result<EvalMetrics> {
    let split = config.split;
    let data_path = split.path_in(&config.input_dir);
    let data_labels = LabelMap::load(&config.input_dir.join(LABELS))?;
    let rows = read_rows(&data_path, &data_labels, &predictor.labels)?;
    if rows.is_empty() {
        bail!("{} has no rows to evaluate", data_path.display());
    }
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let probabilities = in_chunks(config, &rows, split, progress, |c, n| predictor.tag_probabilities_batched(c, n))?;
    let labels = &predictor.labels;
    let name = |id: usize| labels.labels().get(id).cloned().unwrap_or_else(|| NO_ENTITY.to_owned());

    let (mut loss, mut positions) = (0.0, 0usize);
    for (row, p) in rows.iter().zip(&probabilities) {
        for (&label, scores) in row.labels.iter().zip(p) {
            if label >= 0 {
                loss -= f64::from(scores[label as usize].max(f32::MIN_POSITIVE)).ln();
                positions += 1;
            }
        }
    }
    let loss = loss / positions.max(1) as f64;

    let (sentences, word_rows, word_truth) = scored_sentences(&rows, &probabilities, &name);
    let truth: Vec<&[String]> = sentences.iter().map(|s| s.truth.as_slice()).collect();
    let guess: Vec<&[String]> = sentences.iter().map(|s| s.predicted.as_slice()).collect();
    let scores_in = |mode| {
        score(&truth, &guess, mode).context("every sentence has as many predicted tags as true ones. This is a bug.")
    };
    let entities = EntityMetrics { conlleval: scores_in(Mode::Conlleval)?, strict: scores_in(Mode::Strict)? };
    let (micro_f1, strict_micro_f1) = (entities.conlleval.micro.f1, entities.strict.micro.f1);

    let reference = if config.reference_split == split {
        PredictionProfile::of(split.name(), labels.labels(), &word_rows, &word_truth, config.low_confidence)
    } else {
        let path = config.reference_split.path_in(&config.input_dir);
        let rows = read_rows(&path, &data_labels, labels)?;
        let probabilities = in_chunks(config, &rows, config.reference_split, progress, |c, n| {
            predictor.tag_probabilities_batched(c, n)
        })?;
        let (_, word_rows, word_truth) = scored_sentences(&rows, &probabilities, &name);
        PredictionProfile::of(
            config.reference_split.name(),
            labels.labels(),
            &word_rows,
            &word_truth,
            config.low_confidence,
        )
    };
    let mut reference = reference;
    reference.entities = served_entities(config, predictor)?;

    let folder = &predictor.folder;
    let model_files = vec![FileHash::of(&folder.weights()?)?, FileHash::of(&folder.path(CONFIG))?];
    let data = FileHash::of(&data_path)?;
    let metrics = EvalMetrics::for_entities(entities, loss, sentences.len(), split, model_files, data);
    let words = words_by_id(&config.input_dir, split);

    staged.write_json(METRICS, &metrics)?;
    write_per_class(&mut staged, &metrics)?;
    let pairs = span_pairs(&sentences);
    let kinds = LabelMap::from_ordered_names(span_kinds(&pairs));
    let mut confusion = Confusion::new(kinds.len());
    for (actual, predicted) in &pairs {
        if let (Some(a), Some(p)) = (kinds.id(actual), kinds.id(predicted)) {
            confusion.add(a as usize, p as usize);
        }
    }
    write_confusion(&mut staged, &confusion, &kinds)?;
    confusion_svg(&confusion, &kinds, &staged.stage(CONFUSION_SVG))?;
    write_csv(&mut staged, PLOT_CONFUSION, ["actual", "predicted"], pairs.iter().map(|(a, p)| [a.clone(), p.clone()]))?;
    write_predictions(&mut staged, &sentences, &words)?;
    staged.write_json(REFERENCE_PREDICTIONS, &reference)?;
    let curves = write_curves(&mut staged, config)?;
    let mut report = report(&metrics, &sentences, &words, config.report_top, curves);
    report.push_str(&calibration_note(&reference));
    staged.write_bytes(REPORT, report.as_bytes())?;

    let mut manifest = Manifest::new(
        "eval",
        config,
        &serde_json::json!({
            "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "micro_f1": micro_f1,
            "strict_micro_f1": strict_micro_f1, "examples": metrics.examples,
        }),
    );
    manifest.inputs = metrics.model.iter().cloned().chain([metrics.data.clone()]).collect();
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(metrics)
}

/// The reference split's sentences read as `serve` reads texts (words
/// joined by spaces; entities grouped as `eval.aggregation` says, as
/// `serve.aggregation` does; character offsets), scored against their true
/// entities: what `monitor` compares live entities and span feedback with.
/// `None` when the cleaned split cannot be found.
fn served_entities(config: &EvalConfig, predictor: &Predictor) -> Result<Option<EntityProfile>> {
    let split = config.reference_split;
    let Some(table) =
        cleaned_split(&config.input_dir, "reference entities", |dir| TaggedTable::read(&split.path_in(dir), "clean"))
    else {
        return Ok(None);
    };
    let mut texts = Vec::with_capacity(table.len());
    let mut profiled = Vec::with_capacity(table.len());
    for (words, tags) in table.tokens.iter().zip(&table.tags) {
        // Character offsets of each word in the words joined by spaces.
        let text = words.join(" ");
        let mut at = 0;
        let offsets: Vec<(usize, usize)> = words
            .iter()
            .map(|word| {
                let span = (at, at + word.chars().count());
                at = span.1 + 1;
                span
            })
            .collect();
        let truth = spans(tags, Mode::Conlleval)
            .into_iter()
            .map(|span| (span.kind, offsets[span.start].0, offsets[span.end - 1].1))
            .collect();
        texts.push(text);
        profiled.push(ProfiledText { truth, predicted: Vec::new() });
    }
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let found = predictor.entities(&refs, config.aggregation, config.batch_size)?;
    for ((text, profiled), entities) in texts.iter().zip(&mut profiled).zip(found) {
        profiled.predicted = entities
            .into_iter()
            .filter_map(|e| {
                let kind = e.entity_group?;
                let words = words_in_span(text, e.start, e.end).unwrap_or(0);
                Some(ProfiledEntity { kind, start: e.start, end: e.end, score: f64::from(e.score), words })
            })
            .collect();
    }
    Ok(Some(EntityProfile::of(&profiled)))
}

/// Each sentence's scored words (true tag, predicted tag, its probability),
/// with every scored word's probabilities and true label id (for the
/// calibration profile).
fn scored_sentences<'a>(
    rows: &'a [TaggedExample],
    probabilities: &[Vec<Vec<f32>>],
    name: &dyn Fn(usize) -> String,
) -> (Vec<Sentence<'a>>, Vec<Vec<f32>>, Vec<usize>) {
    let (mut word_rows, mut word_truth) = (Vec::new(), Vec::new());
    let sentences = sentence_words(rows, probabilities)
        .into_iter()
        .map(|sentence| {
            let n = sentence.words.len();
            let (mut words, mut truth, mut predicted, mut confidence) =
                (Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n), Vec::with_capacity(n));
            for (word, true_label, scores) in sentence.words {
                let guess = argmax(&scores);
                words.push(word);
                truth.push(name(true_label as usize));
                predicted.push(name(guess));
                confidence.push(scores[guess]);
                word_truth.push(true_label as usize);
                word_rows.push(scores);
            }
            Sentence::new(sentence.id, words, truth, predicted, confidence)
        })
        .collect();
    (sentences, word_rows, word_truth)
}

/// A processed split with its labels as the model's label ids: a tag in the
/// data that the model does not know is an error naming it.
fn read_rows(path: &Path, data_labels: &LabelMap, model_labels: &LabelMap) -> Result<Vec<TaggedExample>> {
    let mut rows = read_tagged_examples(path, data_labels)?;
    let to_model: Vec<Option<i32>> =
        data_labels.labels().iter().map(|tag| model_labels.id(tag).map(|id| id as i32)).collect();
    for row in &mut rows {
        for label in row.labels.iter_mut().filter(|l| **l >= 0) {
            *label = match to_model[*label as usize] {
                Some(id) => id,
                None => bail!(
                    "{}: sentence {} has the tag '{}', which the model does not know (it tags {})",
                    path.display(),
                    row.id,
                    data_labels.labels()[*label as usize],
                    model_labels.labels().join(", ")
                ),
            };
        }
    }
    Ok(rows)
}

/// Every true and every predicted entity (conlleval mode) as an (actual,
/// predicted) pair of types: a true entity with the type of the predicted
/// one on the same words (or, failing that, one overlapping it), else
/// [`NO_ENTITY`]; then each predicted entity that touches no true one, as
/// ([`NO_ENTITY`], its type).
fn span_pairs(sentences: &[Sentence]) -> Vec<(String, String)> {
    let mut pairs = Vec::new();
    for sentence in sentences {
        let (truth, guess) = (&sentence.true_spans, &sentence.predicted_spans);
        for t in truth {
            let same = guess.iter().find(|g| g.start == t.start && g.end == t.end);
            let matched = same.or_else(|| guess.iter().find(|g| overlaps(g, t)));
            pairs.push((t.kind.clone(), matched.map_or_else(|| NO_ENTITY.to_owned(), |g| g.kind.clone())));
        }
        for g in guess.iter().filter(|g| !truth.iter().any(|t| overlaps(g, t))) {
            pairs.push((NO_ENTITY.to_owned(), g.kind.clone()));
        }
    }
    pairs
}

/// The entity types of `pairs`, sorted, then [`NO_ENTITY`].
fn span_kinds(pairs: &[(String, String)]) -> Vec<String> {
    let kinds: BTreeSet<&String> =
        pairs.iter().flat_map(|(a, p)| [a, p]).filter(|kind| kind.as_str() != NO_ENTITY).collect();
    kinds.into_iter().cloned().chain([NO_ENTITY.to_owned()]).collect()
}

/// The words of a split's cleaned sentences, by id (empty when unavailable).
fn words_by_id(processed: &Path, split: Split) -> HashMap<String, Vec<String>> {
    let table = cleaned_split(processed, "words", |dir| TaggedTable::read(&split.path_in(dir), "clean"));
    table.map(|t| t.ids.into_iter().zip(t.tokens).collect()).unwrap_or_default()
}

/// A row per sentence: its scored words, their true and predicted tags and
/// the predicted tag's probability, lists of one length.
fn write_predictions(
    staged: &mut StagedOutput,
    sentences: &[Sentence],
    words: &HashMap<String, Vec<String>>,
) -> Result<()> {
    let ids = Arc::new(StringArray::from_iter_values(sentences.iter().map(|s| s.id))) as ArrayRef;
    let tokens: Vec<Vec<String>> = sentences.iter().map(|s| sentence_words_text(s, words)).collect();
    let truth: Vec<Vec<String>> = sentences.iter().map(|s| s.truth.clone()).collect();
    let predicted: Vec<Vec<String>> = sentences.iter().map(|s| s.predicted.clone()).collect();
    let table = batch(vec![
        (schema::ID, ids),
        (schema::TOKENS, string_list_column(&tokens)),
        (schema::TAGS, string_list_column(&truth)),
        (schema::PREDICTED, string_list_column(&predicted)),
        (schema::PROBABILITY, list_column::<Float32Type>(sentences.iter().map(|s| s.confidence.as_slice()))),
    ])?;
    write_parquet(staged, PREDICTIONS, &table)
}

/// The scored words of a sentence as text (empty strings when the cleaned
/// split is unavailable).
fn sentence_words_text(sentence: &Sentence, words: &HashMap<String, Vec<String>>) -> Vec<String> {
    let all = words.get(sentence.id);
    sentence.words.iter().map(|&w| all.and_then(|words| words.get(w)).cloned().unwrap_or_default()).collect()
}

/// A predicted entity that is not a true one, with the model's confidence in it.
struct WrongSpan<'a> {
    sentence: &'a Sentence<'a>,
    span: &'a Span,
    confidence: f32,
}

/// `report.md`: headline figures in both modes, the entity types, the most
/// confident wrong spans and the confusion of types.
fn report(
    metrics: &EvalMetrics,
    sentences: &[Sentence],
    words: &HashMap<String, Vec<String>>,
    top: usize,
    curves: bool,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    let Some(EntityMetrics { conlleval, strict }) = &metrics.entities else {
        return out;
    };
    line(format!("# Evaluation: {} split, {} sentences, {} words\n", metrics.split, metrics.examples, conlleval.words));
    line(
        "Entity-level scores as seqeval 1.2.2 computes them: by default (conlleval: an `I-` after `O` starts an \
          entity) and in strict IOB2 mode (only `B-` starts one, and an entity must be well formed).\n"
            .into(),
    );
    line("| metric | seqeval default | strict IOB2 |\n|---|---|---|".into());
    let both =
        |label: &str, f: fn(&EntityScores) -> f64| format!("| {label} | {:.4} | {:.4} |", f(conlleval), f(strict));
    line(both("entity F1 (micro)", |s| s.micro.f1));
    line(both("entity precision (micro)", |s| s.micro.precision));
    line(both("entity recall (micro)", |s| s.micro.recall));
    line(both("entity F1 (macro over types)", |s| s.macro_avg.f1));
    line(both("entity F1 (weighted by support)", |s| s.weighted.f1));
    line(format!("| word accuracy | {:.4} | |", conlleval.token_accuracy));
    line(format!("| loss (per labelled sub-word) | {:.4} | |", metrics.loss));
    line(format!("\nModel: `{}` (sha256 {}).", metrics.model[0].path, &metrics.model[0].sha256[..12]));
    line(format!("Data: `{}` (sha256 {}).\n", metrics.data.path, &metrics.data.sha256[..12]));
    if curves {
        line(format!("![Training curves]({CURVES_SVG})\n"));
    }

    line("## Entity types\n".into());
    line("| type | F1 | precision | recall | support | predicted | strict F1 |\n|---|---|---|---|---|---|---|".into());
    for (kind, s) in &conlleval.per_type {
        let strict_f1 = strict.per_type.get(kind).map_or(0.0, |s| s.f1);
        line(format!(
            "| {} | {:.3} | {:.3} | {:.3} | {} | {} | {:.3} |",
            cell(kind),
            s.f1,
            s.precision,
            s.recall,
            s.support,
            s.predicted,
            strict_f1
        ));
    }

    let mut wrong: Vec<WrongSpan> = sentences
        .iter()
        .flat_map(|sentence| {
            let wrong = sentence.predicted_spans.iter().filter(|s| !sentence.true_spans.contains(s));
            wrong.map(move |span| {
                let confidence = sentence.confidence[span.start..span.end].iter().sum::<f32>()
                    / (span.end - span.start).max(1) as f32;
                WrongSpan { sentence, span, confidence }
            })
        })
        .collect();
    wrong.sort_by(|a, b| b.confidence.total_cmp(&a.confidence));
    line(format!("\n## The {} most confident wrong entities\n", top.min(wrong.len())));
    line(
        "Predicted entities that are not true ones (seqeval default mode), by the mean probability of their \
          words' tags.\n"
            .into(),
    );
    line("| id | words | predicted | true entities there | confidence | sentence |\n|---|---|---|---|---|---|".into());
    for w in wrong.iter().take(top) {
        let text = sentence_words_text(w.sentence, words);
        let shown = |span: &Span| format!("{} ({})", text[span.start..span.end].join(" "), span.kind);
        let overlapping: Vec<String> =
            w.sentence.true_spans.iter().filter(|t| overlaps(t, w.span)).map(shown).collect();
        let truth = if overlapping.is_empty() { "none".to_owned() } else { overlapping.join("; ") };
        line(format!(
            "| {} | {} | {} | {} | {:.3} | {} |",
            cell(w.sentence.id),
            cell(&text[w.span.start..w.span.end].join(" ")),
            cell(&w.span.kind),
            cell(&truth),
            w.confidence,
            cell(&text.join(" "))
        ));
    }
    line(format!(
        "\n## Confusion of entity types\n\nEach true entity against the predicted one on its words (or \
         overlapping them); `{NO_ENTITY}` is no entity: a missed one in its column, a made-up one in its row.\n\n\
         ![Confusion of entity types]({CONFUSION_SVG})"
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sentence<'a>(truth: &[&str], predicted: &[&str]) -> Sentence<'a> {
        let owned = |tags: &[&str]| tags.iter().map(|t| (*t).to_owned()).collect::<Vec<_>>();
        Sentence::new("s", (0..truth.len()).collect(), owned(truth), owned(predicted), vec![0.9; truth.len()])
    }

    #[test]
    fn entity_types_pair_by_words_and_misses_and_inventions_pair_with_no_entity() {
        let sentences = [
            sentence(&["B-person", "I-person", "O", "B-location"], &["B-person", "I-person", "O", "B-group"]),
            sentence(&["B-person", "I-person", "O", "O"], &["O", "B-person", "O", "B-location"]),
            sentence(&["B-product", "O"], &["O", "O"]),
        ];
        let pairs = span_pairs(&sentences);
        let pair = |a: &str, p: &str| (a.to_owned(), p.to_owned());
        assert_eq!(
            pairs,
            [
                pair("person", "person"),
                pair("location", "group"),
                pair("person", "person"), // overlapping, not the same words
                pair("O", "location"),
                pair("product", "O"),
            ]
        );
        assert_eq!(span_kinds(&pairs), ["group", "location", "person", "product", "O"]);
    }
}
