//! `eval`: score a model folder on a labelled split and write what a person
//! and DVC want to see: metrics.json, per_class.csv, confusion.csv (long form),
//! predictions.parquet and report.md, plus the CSV files `dvc plots` draws from
//! (`dvc plots` reads CSV, not Parquet or JSON lines).

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::types::Float32Type;
use arrow_array::{ArrayRef, Float32Array, StringArray};
use kiln_config::{EvalConfig, TokenizeConfig};
use kiln_core::calibration::PredictionProfile;
use kiln_core::model_folder::{CONFIG, LABELS, REFERENCE_PREDICTIONS};
use kiln_core::output::read_manifest;
use kiln_core::scores::{ClassScores, Confusion, argmax};
use kiln_core::{EvalMetrics, Example, FileHash, LabelMap, Manifest, Progress, Split, StagedOutput, Task};
use kiln_data::parquet::{batch, write_parquet};
use kiln_data::processed::{check_label_ids, read_examples};
use kiln_data::schema::{self, list_column};
use kiln_data::tokenize::MANIFEST as TOKENIZE_MANIFEST;
use kiln_model::device;

use kiln_model::Predictor;
use kiln_plots::{CONFUSION_SVG, CURVES_SVG, Curves, confusion_svg, curves_svg};

mod tokens;

pub const METRICS: &str = EvalMetrics::FILE;
pub const PER_CLASS: &str = "per_class.csv";
pub const CONFUSION: &str = "confusion.csv";
pub const PREDICTIONS: &str = "predictions.parquet";
pub const REPORT: &str = kiln_core::stages::REPORT;
pub const MANIFEST: &str = kiln_core::stages::EVAL_DONE;
/// One row per example (`actual,predicted`): DVC's confusion template counts rows.
pub const PLOT_CONFUSION: &str = "plot_confusion.csv";
/// `step,loss` of training, from `train`'s metrics log.
pub const PLOT_TRAIN_LOSS: &str = "plot_train_loss.csv";
/// `step,loss,accuracy,macro_f1` of each validation during training.
pub const PLOT_VALIDATION: &str = "plot_validation.csv";

/// One scored example.
struct Scored<'a> {
    example: &'a Example,
    actual: usize,
    predicted: usize,
    probabilities: Vec<f32>,
}

pub fn run(config: &EvalConfig, progress: &Progress) -> Result<EvalMetrics> {
    config.validate()?;
    let spec = anyhow::Context::context(device::configure(&config.device, config.threads), "config key `eval.device`")?;
    let mut predictor = Predictor::load(&config.model_dir, &spec.device())?;
    let precision = device::precision(config.precision, spec).context("config key `eval.precision`")?;
    predictor.set_precision(precision)?;
    if predictor.task() == Task::TokenClassification {
        return tokens::run(config, &predictor, progress);
    }
    let split = config.split;
    let data_path = split.path_in(&config.input_dir);
    let examples = read_examples(&data_path)?;
    if examples.is_empty() {
        bail!("{} has no rows to evaluate", data_path.display());
    }
    let data_labels = LabelMap::load(&config.input_dir.join(LABELS))?;
    let actual = true_labels(config, &predictor, &data_labels, split, &examples)?;
    let texts = texts_by_id(&config.input_dir, split);
    let mut staged = StagedOutput::new(&config.output_dir)?;
    let probabilities = in_chunks(config, &examples, split, progress, |c, n| predictor.probabilities_batched(c, n))?;

    let labels = &predictor.labels;
    let reference = if config.reference_split == split {
        PredictionProfile::of(split.name(), labels.labels(), &probabilities, &actual, config.low_confidence)
    } else {
        let path = config.reference_split.path_in(&config.input_dir);
        let examples = read_examples(&path)?;
        let actual = true_labels(config, &predictor, &data_labels, config.reference_split, &examples)?;
        let rows = in_chunks(config, &examples, config.reference_split, progress, |c, n| {
            predictor.probabilities_batched(c, n)
        })?;
        PredictionProfile::of(config.reference_split.name(), labels.labels(), &rows, &actual, config.low_confidence)
    };
    let mut confusion = Confusion::new(labels.len());
    let mut loss = 0.0;
    let scored: Vec<Scored> = examples
        .iter()
        .zip(actual)
        .zip(probabilities)
        .map(|((example, actual), probabilities)| {
            let predicted = argmax(&probabilities);
            confusion.add(actual, predicted);
            loss -= f64::from(probabilities[actual].max(f32::MIN_POSITIVE)).ln();
            Scored { example, actual, predicted, probabilities }
        })
        .collect();

    let folder = &predictor.folder;
    let model_files = vec![FileHash::of(&folder.weights()?)?, FileHash::of(&folder.path(CONFIG))?];
    let data = FileHash::of(&data_path)?;
    let metrics = EvalMetrics::new(&confusion, loss / scored.len() as f64, labels.labels(), split, model_files, data);

    staged.write_json(METRICS, &metrics)?;
    write_per_class(&mut staged, &metrics)?;
    write_confusion(&mut staged, &confusion, labels)?;
    write_predictions(&mut staged, &scored, labels, &texts)?;
    confusion_svg(&confusion, labels, &staged.stage(CONFUSION_SVG))?;
    write_csv(
        &mut staged,
        PLOT_CONFUSION,
        ["actual", "predicted"],
        scored.iter().map(|s| [labels.labels()[s.actual].clone(), labels.labels()[s.predicted].clone()]),
    )?;
    staged.write_json(REFERENCE_PREDICTIONS, &reference)?;
    let curves = write_curves(&mut staged, config)?;
    let pictures = Pictures { curves };
    let mut report = report(&metrics, &scored, labels, &texts, config.report_top, pictures);
    report.push_str(&calibration_note(&reference));
    staged.write_bytes(REPORT, report.as_bytes())?;

    let mut manifest = Manifest::new(
        "eval",
        config,
        &serde_json::json!({
            "accuracy": metrics.accuracy, "macro_f1": metrics.macro_f1, "examples": metrics.examples,
        }),
    );
    manifest.inputs = metrics.model.iter().cloned().chain([metrics.data.clone()]).collect();
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(metrics)
}

/// Each example's true label as a model label id, after checking `split`'s
/// label ids against the data's `labels.json` and its labels against the model's.
fn true_labels(
    config: &EvalConfig,
    predictor: &Predictor,
    data_labels: &LabelMap,
    split: Split,
    examples: &[Example],
) -> Result<Vec<usize>> {
    let path = split.path_in(&config.input_dir);
    check_label_ids(&path, examples, data_labels, &config.input_dir.join(LABELS))?;
    let to_model = label_mapping(data_labels, &predictor.labels, examples, &path)?;
    Ok(examples.iter().map(|e| to_model[e.label_id as usize]).collect())
}

/// `predict` over `rows` in chunks of `batch_size * 16` under a progress bar
/// named after `split` (text and tagged rows alike), outputs in input order.
fn in_chunks<R, O>(
    config: &EvalConfig,
    rows: &[R],
    split: Split,
    progress: &Progress,
    predict: impl Fn(&[R], usize) -> Result<Vec<O>>,
) -> Result<Vec<O>> {
    let bar = progress.rows(rows.len() as u64, split.name());
    let mut outputs = Vec::with_capacity(rows.len());
    for chunk in rows.chunks(config.batch_size * 16) {
        outputs.extend(predict(chunk, config.batch_size)?);
        bar.inc(chunk.len() as u64);
    }
    bar.finish_and_clear();
    Ok(outputs)
}

/// The training curves (a picture and the CSV files `dvc plots` draws) from
/// `train`'s metrics log; whether there were any.
fn write_curves(staged: &mut StagedOutput, config: &EvalConfig) -> Result<bool> {
    let curves = Curves::load(&config.train_metrics)?;
    match &curves {
        Some(curves) => {
            curves_svg(curves, &staged.stage(CURVES_SVG))?;
            write_csv(
                staged,
                PLOT_TRAIN_LOSS,
                ["step", "loss"],
                curves.train_loss.iter().map(|(step, loss)| [step.to_string(), loss.to_string()]),
            )?;
            let validations = curves.eval_loss.iter().zip(&curves.eval_accuracy).zip(&curves.eval_macro_f1);
            write_csv(
                staged,
                PLOT_VALIDATION,
                ["step", "loss", "accuracy", "macro_f1"],
                validations.map(|(((step, loss), (_, accuracy)), (_, f1))| {
                    [step.to_string(), loss.to_string(), accuracy.to_string(), f1.to_string()]
                }),
            )?;
        }
        None => tracing::info!("no training curves: {} is absent", config.train_metrics.display()),
    }
    Ok(curves.is_some())
}

/// A paragraph of `report.md` on how far confidence can be trusted.
fn calibration_note(reference: &PredictionProfile) -> String {
    let c = &reference.confidence;
    format!(
        "\n## Confidence on the {} split (the model's reference for monitoring)\n\n\
         {} rows, accuracy {:.4}; mean top probability {:.4}, margin {:.4}, entropy {:.4} nats; {:.1}% below {}.\n\
         Temperature scaling fits T = {:.3}: negative log-likelihood {:.4} -> {:.4}, expected calibration error \
         {:.4} -> {:.4} ({} bins). Saved as `{REFERENCE_PREDICTIONS}`; `export` carries it.\n",
        reference.split,
        reference.rows,
        reference.accuracy,
        c.mean_top,
        c.mean_margin,
        c.mean_entropy,
        100.0 * c.low_confidence_share,
        c.low_confidence_threshold,
        reference.temperature,
        reference.nll_before,
        reference.nll_after,
        reference.ece_before,
        reference.ece_after,
        kiln_core::calibration::CONFIDENCE_BINS,
    )
}

/// Model label id of each data label id; a data label the model does not know is an error.
fn label_mapping(data: &LabelMap, model: &LabelMap, examples: &[Example], path: &Path) -> Result<Vec<usize>> {
    let mut mapping = Vec::with_capacity(data.len());
    for (data_id, label) in data.labels().iter().enumerate() {
        match model.id(label) {
            Some(id) => mapping.push(id as usize),
            None => {
                let rows: Vec<&Example> = examples.iter().filter(|e| e.label_id as usize == data_id).collect();
                if let Some(first) = rows.first() {
                    bail!(
                        "{}: label '{label}' ({} rows, first id {}) is not one the model knows ({} labels: {})",
                        path.display(),
                        rows.len(),
                        first.id,
                        model.len(),
                        preview(model.labels())
                    );
                }
                mapping.push(usize::MAX);
            }
        }
    }
    Ok(mapping)
}

fn preview(labels: &[String]) -> String {
    let shown: Vec<&str> = labels.iter().take(8).map(String::as_str).collect();
    if labels.len() > shown.len() { format!("{}, ...", shown.join(", ")) } else { shown.join(", ") }
}

/// The cleaned texts of a split, by id (empty when unavailable).
fn texts_by_id(processed: &Path, split: Split) -> HashMap<String, String> {
    let table = cleaned_split(processed, "texts", |dir| schema::read_split(dir, split));
    table.map(|t| t.ids.into_iter().zip(t.texts).collect()).unwrap_or_default()
}

/// A split of the `clean` output the data in `processed` was tokenized from
/// (found through tokenize's manifest), read by `read` from that folder;
/// `None`, with a warning that predictions will have no `what`, when unavailable.
fn cleaned_split<T>(processed: &Path, what: &str, read: impl FnOnce(&Path) -> Result<T>) -> Option<T> {
    let found = read_manifest::<TokenizeConfig>(&processed.join(TOKENIZE_MANIFEST))
        .context("no readable tokenize manifest")
        .and_then(|manifest| read(&manifest.config.input_dir));
    found
        .map_err(|error| tracing::warn!("predictions will have no {what}: cannot find the cleaned split ({error:#})"))
        .ok()
}

fn write_per_class(staged: &mut StagedOutput, metrics: &EvalMetrics) -> Result<()> {
    let rows = metrics.per_class.iter().map(|(label, s)| {
        [
            label.clone(),
            format!("{:.6}", s.precision),
            format!("{:.6}", s.recall),
            format!("{:.6}", s.f1),
            s.support.to_string(),
        ]
    });
    write_csv(staged, PER_CLASS, ["label", "precision", "recall", "f1", "support"], rows)
}

/// One CSV file of the staged output: the header, then `rows`.
fn write_csv<const N: usize>(
    staged: &mut StagedOutput,
    name: &str,
    header: [&str; N],
    rows: impl Iterator<Item = [String; N]>,
) -> Result<()> {
    let (path, writer) = staged.create(name)?;
    let mut csv = csv::Writer::from_writer(writer);
    csv.write_record(header)?;
    for row in rows {
        csv.write_record(row)?;
    }
    csv.flush().with_context(|| format!("cannot write {}", path.display()))
}

/// Long form: one `actual,predicted,count` row per non-empty cell.
fn write_confusion(staged: &mut StagedOutput, confusion: &Confusion, labels: &LabelMap) -> Result<()> {
    let name = |id: usize| labels.labels()[id].clone();
    let cells = (0..labels.len()).flat_map(|actual| (0..labels.len()).map(move |predicted| (actual, predicted)));
    let rows = cells.filter_map(|(actual, predicted)| {
        let count = confusion.count(actual, predicted);
        (count > 0).then(|| [name(actual), name(predicted), count.to_string()])
    });
    write_csv(staged, CONFUSION, ["actual", "predicted", "count"], rows)
}

fn write_predictions(
    staged: &mut StagedOutput,
    scored: &[Scored],
    labels: &LabelMap,
    texts: &HashMap<String, String>,
) -> Result<()> {
    let name = |id: usize| labels.labels()[id].as_str();
    let strings = |values: Vec<Option<&str>>| Arc::new(StringArray::from(values)) as ArrayRef;
    let ids = scored.iter().map(|s| Some(s.example.id.as_str())).collect();
    let text = scored.iter().map(|s| texts.get(&s.example.id).map(String::as_str)).collect();
    let actual = scored.iter().map(|s| Some(name(s.actual))).collect();
    let predicted = scored.iter().map(|s| Some(name(s.predicted))).collect();
    let probability = Float32Array::from_iter_values(scored.iter().map(|s| s.probabilities[s.predicted]));
    let all = list_column::<Float32Type>(scored.iter().map(|s| s.probabilities.as_slice()));
    let table = batch(vec![
        (schema::ID, strings(ids)),
        (schema::TEXT, strings(text)),
        (schema::LABEL, strings(actual)),
        (schema::PREDICTED, strings(predicted)),
        (schema::PROBABILITY, Arc::new(probability)),
        (schema::PROBABILITIES, all),
    ])?;
    write_parquet(staged, PREDICTIONS, &table)
}

/// `report.md`: headline figures, the weakest classes, the most confident mistakes.
fn report(
    metrics: &EvalMetrics,
    scored: &[Scored],
    labels: &LabelMap,
    texts: &HashMap<String, String>,
    top: usize,
    pictures: Pictures,
) -> String {
    let mut out = String::new();
    let mut line = |text: String| {
        out.push_str(&text);
        out.push('\n');
    };
    line(format!("# Evaluation: {} split, {} examples\n", metrics.split, metrics.examples));
    line("| metric | value |\n|---|---|".into());
    line(format!("| accuracy | {:.4} |", metrics.accuracy));
    line(format!("| macro F1 | {:.4} |", metrics.macro_f1));
    line(format!("| macro precision / recall | {:.4} / {:.4} |", metrics.macro_precision, metrics.macro_recall));
    line(format!("| weighted F1 | {:.4} |", metrics.weighted_f1));
    line(format!("| loss | {:.4} |", metrics.loss));
    line(format!("\nModel: `{}` (sha256 {}).", metrics.model[0].path, &metrics.model[0].sha256[..12]));
    line(format!("Data: `{}` (sha256 {}).\n", metrics.data.path, &metrics.data.sha256[..12]));
    if pictures.curves {
        line(format!("![Training curves]({CURVES_SVG})\n"));
    }

    let mut worst: Vec<&(String, ClassScores)> = metrics.per_class.iter().filter(|(_, s)| s.support > 0).collect();
    worst.sort_by(|a, b| a.1.f1.total_cmp(&b.1.f1).then_with(|| a.0.cmp(&b.0)));
    line(format!("## The {} weakest classes (by F1)\n", top.min(worst.len())));
    line("| class | F1 | precision | recall | support |\n|---|---|---|---|---|".into());
    for (label, s) in worst.iter().take(top) {
        line(format!("| {} | {:.3} | {:.3} | {:.3} | {} |", cell(label), s.f1, s.precision, s.recall, s.support));
    }

    let mut mistakes: Vec<&Scored> = scored.iter().filter(|s| s.actual != s.predicted).collect();
    mistakes.sort_by(|a, b| b.probabilities[b.predicted].total_cmp(&a.probabilities[a.predicted]));
    line(format!("\n## The {} most confident mistakes\n", top.min(mistakes.len())));
    line("| id | text | true | predicted | probability |\n|---|---|---|---|---|".into());
    for s in mistakes.iter().take(top) {
        let text = texts.get(&s.example.id).map_or("", String::as_str);
        line(format!(
            "| {} | {} | {} | {} | {:.3} |",
            cell(&s.example.id),
            cell(text),
            cell(&labels.labels()[s.actual]),
            cell(&labels.labels()[s.predicted]),
            s.probabilities[s.predicted]
        ));
    }
    line(format!("\n## Confusion matrix\n\n![Confusion matrix]({CONFUSION_SVG})"));
    out
}

/// Which pictures sit beside the report.
#[derive(Clone, Copy)]
struct Pictures {
    curves: bool,
}

/// Text made safe for a Markdown table cell.
fn cell(text: &str) -> String {
    let flat: String = text.replace('|', "\\|").replace(['\n', '\r'], " ");
    if flat.chars().count() > 120 { format!("{}...", flat.chars().take(117).collect::<String>()) } else { flat }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn labels_map_by_name_and_unknown_ones_are_named() {
        let example = |id: &str, label_id| Example {
            id: id.into(),
            input_ids: vec![1],
            token_type_ids: None,
            label_id,
            label_probs: None,
            weight: None,
        };
        let model = LabelMap::from_ordered_names(vec!["b".into(), "a".into()]);
        let data = LabelMap::from_labels(["a", "b"]);
        let examples = [example("r1", 0), example("r2", 1)];
        assert_eq!(label_mapping(&data, &model, &examples, Path::new("test.parquet")).expect("maps"), [1, 0]);

        let data = LabelMap::from_labels(["a", "b", "zebra"]);
        let examples = [example("r1", 0), example("r7", 2), example("r9", 2)];
        let error = label_mapping(&data, &model, &examples, Path::new("test.parquet")).expect_err("unknown label");
        let message = error.to_string();
        assert!(message.contains("'zebra'") && message.contains("2 rows") && message.contains("r7"), "{message}");
    }

    #[test]
    fn cells_escape_pipes_and_newlines_and_stay_short() {
        assert_eq!(cell("a|b\nc"), "a\\|b c");
        assert_eq!(cell(&"x".repeat(200)).chars().count(), 120);
    }
}
