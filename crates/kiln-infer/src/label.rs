//! `label`: weak supervision between `clean` and `tokenize`. The labelling
//! functions of `[label]` vote on each row of the unlabelled split (or
//! abstain); the votes are kept as a Parquet label matrix (reused while the
//! functions and the data stay the same, so trying another label model costs
//! no second pass); a label model learns from the votes alone how far to
//! trust each function; each row gets `label` and `label_probs`. The other
//! splits pass through with their gold labels, so every later stage works
//! unchanged. `label_report.json` and `report.md` say what each function did
//! (Snorkel's `LFAnalysis`).

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result, bail};
use arrow_array::{ArrayRef, StringArray};
use kiln_config::{LabelConfig, LabelModelKind, UncoveredRows};
use kiln_core::scores::argmax;
use kiln_core::{FileHash, LabelMap, Manifest, Progress, Split, StagedOutput, Task};
use kiln_data::parquet::{batch, read_parquet, write_parquet};
use kiln_data::schema::{self, TextTable};
use kiln_label::{
    ABSTAIN, DawidSkene, EmSettings, Function, LabelMatrix, LoadModel, MatrixCompletion, MatrixCompletionSettings,
    ModelVoter, Rule, analyse, majority,
};
use kiln_model::{DeviceSpec, Predictor};
use kiln_plots::{BarRow, horizontal_bars_svg};
use serde::Serialize;

/// The manifest, written last (it holds the report).
pub const MANIFEST: &str = kiln_core::stages::LABEL_DONE;
/// Every vote that is not an abstain: `id`, `function`, `vote` (a label name).
pub const MATRIX: &str = "label_matrix.parquet";
/// Coverage, conflicts and accuracy of each function.
pub const FUNCTIONS_SVG: &str = "label_functions.svg";
pub const FUNCTION: &str = "function";
pub const VOTE: &str = "vote";

/// Texts a `model` function predicts at once.
const MODEL_BATCH: usize = 64;

/// What one labelling function did.
#[derive(Debug, Clone, Serialize)]
pub struct FunctionReport {
    pub name: String,
    pub kind: &'static str,
    /// The share of rows it votes on, of those on which another function votes too, and of those on which another votes another label.
    pub coverage: f64,
    pub overlaps: f64,
    pub conflicts: f64,
    /// The labels it votes.
    pub polarity: Vec<String>,
    /// On `gold_split`: how often its vote is the gold label, and how many gold rows it votes on.
    pub empirical_accuracy: Option<f64>,
    pub gold_votes: Option<usize>,
    /// What the label model learned of its accuracy, without gold.
    pub learned_accuracy: Option<f64>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LabelReport {
    pub split: Split,
    pub labels: Vec<String>,
    pub model: LabelModelKind,
    pub rows: usize,
    /// Rows at least one function votes on.
    pub covered: usize,
    pub uncovered_share: f64,
    pub dropped_uncovered: usize,
    pub kept_uncovered: usize,
    /// Rows that came with a label distribution of their own (`retrain`'s
    /// feedback, one-hot): kept as they are, not relabelled.
    pub given: usize,
    /// Rows written, and how many got each weak label (the given ones apart).
    pub rows_out: usize,
    pub weak_labels: BTreeMap<String, usize>,
    pub functions: Vec<FunctionReport>,
    /// Functions that vote on no row at all.
    pub idle_functions: Vec<String>,
    pub gold_split: Option<Split>,
    pub gold_rows: usize,
    /// The label model, fitted on the labelled split, on the gold split: how
    /// often its most probable label is the gold one, on the rows some function covers.
    pub gold_accuracy: Option<f64>,
    /// On the same rows, the mean probability the label model gives the gold
    /// label: how right the distributions are, which `train.weak_targets =
    /// "distribution"` learns. Far under `gold_accuracy`: the label model is
    /// less sure than it is right.
    pub gold_probability: Option<f64>,
    pub gold_coverage: Option<f64>,
    /// Where the labelled split has labels of its own (a benchmark's hidden
    /// gold): how often the weak label of a covered row is that label, and
    /// the mean probability its distribution gives that label.
    pub accuracy_on_split_labels: Option<f64>,
    pub probability_on_split_labels: Option<f64>,
    /// Whether the label matrix of the last run was reused (same functions, same data).
    pub matrix_reused: bool,
    /// What the matrix depends on: it is reused only while this is the same.
    pub matrix_key: serde_json::Value,
    pub seconds_applying: f64,
}

/// Labels `config.split` of `config.input_dir` into `config.output_dir`.
pub fn run(config: &LabelConfig, progress: &Progress) -> Result<LabelReport> {
    config.validate()?;
    let labels = config.sorted_labels();
    let input = config.split.path_in(&config.input_dir);
    let table = TextTable::read(&input, "clean")?;
    if table.is_empty() {
        bail!("{} has no rows to label", input.display());
    }
    let given = given_rows(&table, &labels, &input)?;
    let functions = compile(config, &labels)?;
    // Hashed once: the matrix key and the manifest's inputs both name it.
    let input_hash = FileHash::of(&input)?;
    let key = matrix_key(config, &labels, &input_hash)?;
    let previous = previous_matrix(config, &key, &table, &labels);
    let matrix_reused = previous.is_some();
    let started = std::time::Instant::now();
    let matrix = match previous {
        Some(matrix) => {
            tracing::info!("reusing the label matrix of the last run (same functions, same data)");
            matrix
        }
        None => {
            let bar = progress.rows(table.len() as u64, "labelling functions");
            let matrix = kiln_label::apply_with_progress(&functions, &table.texts, labels.len(), |rows| {
                bar.inc(rows as u64);
            })?;
            bar.finish_and_clear();
            matrix
        }
    };
    let seconds_applying = started.elapsed().as_secs_f64();

    let summaries = analyse(&matrix, None);
    let covered: Vec<bool> = (0..matrix.rows()).map(|row| matrix.covered(row)).collect();
    let covered_rows = covered.iter().filter(|&&c| c).count();
    if covered_rows == 0 {
        bail!(
            "no labelling function votes on any row of {} ({} rows): check [[label.functions]] ({})",
            input.display(),
            table.len(),
            functions.iter().map(|f| f.name.as_str()).collect::<Vec<_>>().join(", ")
        );
    }
    let idle_functions: Vec<String> =
        functions.iter().zip(&summaries).filter(|(_, s)| s.coverage == 0.0).map(|(f, _)| f.name.clone()).collect();
    if !idle_functions.is_empty() {
        tracing::warn!("these labelling functions vote on no row: {}", idle_functions.join(", "));
    }

    let model = fit_label_model(config, &matrix)?;
    let (probabilities, learned) = (model.predict_proba(&matrix), model.accuracies());
    let gold = config.gold_split.map(|split| gold_analysis(config, split, &functions, &labels, &model)).transpose()?;

    let to_label = |row: usize| !given[row];
    let scored: Vec<usize> = (0..table.len()).filter(|&r| to_label(r) && covered[r]).collect();
    let split_gold: Option<Vec<usize>> =
        scored.iter().map(|&r| labels.iter().position(|l| *l == table.labels[r])).collect();
    let (accuracy_on_split_labels, probability_on_split_labels) =
        split_gold.and_then(|gold| agreement(&probabilities, &scored, &gold)).unzip();
    // The matrix names rows by id: its table is made before the rows are filtered.
    let matrix_table = matrix_batch(&matrix, &table.ids, &functions, &labels)?;

    // The labelled split: given rows as they came, covered rows, and the
    // uncovered ones if kept. The table is moved, not copied (a million rows
    // are hundreds of MB).
    let keep: Vec<bool> =
        (0..covered.len()).map(|r| given[r] || covered[r] || config.uncovered == UncoveredRows::Keep).collect();
    let rows = table.len();
    let mut out = table;
    let mut probs = out.label_probs.take().unwrap_or_default();
    probs.resize(rows, Vec::new());
    let mut weak_labels = BTreeMap::new();
    for (row, weak) in probabilities.into_iter().enumerate() {
        if to_label(row) {
            out.labels[row] = labels[argmax(&weak)].clone();
            probs[row] = weak.into_iter().map(|v| v as f32).collect();
            if keep[row] {
                *weak_labels.entry(out.labels[row].clone()).or_insert(0) += 1;
            }
        }
    }
    out.label_probs = Some(probs);
    out.retain(&keep);

    let functions_report: Vec<FunctionReport> = config
        .functions
        .iter()
        .zip(&summaries)
        .enumerate()
        .map(|(index, (spec, summary))| FunctionReport {
            name: spec.name.clone(),
            kind: spec.rule.kind(),
            coverage: summary.coverage,
            overlaps: summary.overlaps,
            conflicts: summary.conflicts,
            polarity: summary.polarity.iter().map(|&l| labels[l].clone()).collect(),
            empirical_accuracy: gold.as_ref().and_then(|g| g.functions[index].empirical_accuracy),
            gold_votes: gold
                .as_ref()
                .map(|g| g.functions[index].correct.unwrap_or(0) + g.functions[index].incorrect.unwrap_or(0)),
            learned_accuracy: learned.as_ref().map(|l| l[index]),
        })
        .collect();
    let report = LabelReport {
        split: config.split,
        labels: labels.clone(),
        model: config.model,
        rows,
        covered: covered_rows,
        uncovered_share: 1.0 - covered_rows as f64 / rows as f64,
        dropped_uncovered: keep.iter().filter(|&&k| !k).count(),
        kept_uncovered: match config.uncovered {
            UncoveredRows::Keep => (0..rows).filter(|&r| to_label(r) && !covered[r]).count(),
            UncoveredRows::Drop => 0,
        },
        given: given.iter().filter(|&&g| g).count(),
        rows_out: out.len(),
        weak_labels,
        functions: functions_report,
        idle_functions,
        gold_split: config.gold_split,
        gold_rows: gold.as_ref().map_or(0, |g| g.rows),
        gold_accuracy: gold.as_ref().and_then(|g| g.accuracy),
        gold_probability: gold.as_ref().and_then(|g| g.probability),
        gold_coverage: gold.as_ref().map(|g| g.coverage),
        accuracy_on_split_labels,
        probability_on_split_labels,
        matrix_reused,
        matrix_key: key,
        seconds_applying,
    };

    let mut staged = StagedOutput::new(&config.output_dir)?;
    let mut inputs = vec![input_hash];
    out.write(&mut staged, &config.split.file_name())?;
    for split in Split::ALL.into_iter().filter(|&s| s != config.split) {
        let path = split.path_in(&config.input_dir);
        TextTable::read(&path, "clean")?;
        inputs.push(FileHash::of(&path)?);
        staged.copy(&path, &split.file_name())?;
    }
    write_parquet(&mut staged, MATRIX, &matrix_table)?;
    staged.write_bytes(
        kiln_core::model_folder::LABELS,
        LabelMap::from_ordered_names(labels.clone()).to_json().as_bytes(),
    )?;
    let picture = staged.stage(FUNCTIONS_SVG);
    functions_svg(&report, &picture)?;
    staged.write_bytes(kiln_core::stages::REPORT, markdown(&report).as_bytes())?;
    let mut manifest = Manifest::new("label", config, &report);
    manifest.inputs = inputs;
    staged.commit_manifest(MANIFEST, manifest)?;
    Ok(report)
}

/// Which rows came with a distribution of their own (a label someone gave,
/// as `retrain` adds feedback); each must be over `labels`.
fn given_rows(table: &TextTable, labels: &[String], input: &Path) -> Result<Vec<bool>> {
    let Some(probs) = &table.label_probs else { return Ok(vec![false; table.len()]) };
    if let Some((row, p)) = probs.iter().enumerate().find(|(_, p)| !p.is_empty() && p.len() != labels.len()) {
        bail!(
            "{}: row {} (id {}) comes with {} label_probs, but [label] labels lists {} labels",
            input.display(),
            row + 1,
            table.ids[row],
            p.len(),
            labels.len()
        );
    }
    Ok(probs.iter().map(|p| !p.is_empty()).collect())
}

fn compile(config: &LabelConfig, labels: &[String]) -> Result<Vec<Function>> {
    config
        .functions
        .iter()
        .map(|spec| Function::compile(spec, labels, &Models).context("config key `label.functions`"))
        .collect()
}

/// What the gold split says of the functions and of the label model.
struct Gold {
    functions: Vec<kiln_label::FunctionSummary>,
    rows: usize,
    coverage: f64,
    accuracy: Option<f64>,
    probability: Option<f64>,
}

/// Each function's accuracy on the gold split, and the label model's.
fn gold_analysis(
    config: &LabelConfig,
    split: Split,
    functions: &[Function],
    labels: &[String],
    model: &FittedModel,
) -> Result<Gold> {
    let path = split.path_in(&config.input_dir);
    let table = TextTable::read(&path, "clean")?;
    let gold = table
        .labels
        .iter()
        .enumerate()
        .map(|(row, label)| {
            labels.iter().position(|l| l == label).with_context(|| {
                format!(
                    "{}: row {} ({}) has the label `{label}`, which is not in label.labels ({}); \
                     label.gold_split needs gold labels from that list",
                    path.display(),
                    row + 1,
                    table.ids[row],
                    labels.join(", ")
                )
            })
        })
        .collect::<Result<Vec<usize>>>()?;
    let matrix = kiln_label::apply(functions, &table.texts, labels.len())?;
    let covered: Vec<usize> = (0..matrix.rows()).filter(|&row| matrix.covered(row)).collect();
    let probabilities = model.predict_proba(&matrix);
    let covered_gold: Vec<usize> = covered.iter().map(|&row| gold[row]).collect();
    let (accuracy, probability) = agreement(&probabilities, &covered, &covered_gold).unzip();
    Ok(Gold {
        functions: analyse(&matrix, Some(&gold)),
        rows: table.len(),
        coverage: covered.len() as f64 / table.len().max(1) as f64,
        accuracy,
        probability,
    })
}

/// Over `rows` of `probabilities`, `gold` being their labels: how often the
/// most probable label is the gold one, and the mean probability the gold
/// label gets. `None` without rows.
fn agreement(probabilities: &[Vec<f64>], rows: &[usize], gold: &[usize]) -> Option<(f64, f64)> {
    if rows.is_empty() {
        return None;
    }
    let right = rows.iter().zip(gold).filter(|&(&row, &label)| argmax(&probabilities[row]) == label).count();
    let mass: f64 = rows.iter().zip(gold).map(|(&row, &label)| probabilities[row][label]).sum();
    Some((right as f64 / rows.len() as f64, mass / rows.len() as f64))
}

/// A label model fitted on the labelled split, which can label other rows too.
enum FittedModel {
    Majority,
    DawidSkene(DawidSkene),
    Snorkel(MatrixCompletion),
}

impl FittedModel {
    fn predict_proba(&self, matrix: &LabelMatrix) -> Vec<Vec<f64>> {
        match self {
            Self::Majority => majority(matrix),
            Self::DawidSkene(model) => model.predict_proba(matrix),
            Self::Snorkel(model) => model.predict_proba(matrix),
        }
    }

    /// Each function's learned accuracy, where the model learns one.
    fn accuracies(&self) -> Option<Vec<f64>> {
        match self {
            Self::Majority => None,
            Self::DawidSkene(model) => Some(model.accuracies()),
            Self::Snorkel(model) => Some(model.accuracies()),
        }
    }
}

fn fit_label_model(config: &LabelConfig, matrix: &LabelMatrix) -> Result<FittedModel> {
    Ok(match config.model {
        LabelModelKind::Majority => FittedModel::Majority,
        LabelModelKind::DawidSkene => {
            let settings = EmSettings {
                max_iterations: config.max_iterations,
                tolerance: config.tolerance,
                ..EmSettings::default()
            };
            FittedModel::DawidSkene(DawidSkene::fit(matrix, settings))
        }
        LabelModelKind::Snorkel => {
            if matrix.functions() < 3 {
                tracing::warn!(
                    "the snorkel label model learns little from fewer than three functions; \
                     consider label.model = \"majority\""
                );
            }
            let settings = MatrixCompletionSettings {
                epochs: config.epochs,
                learning_rate: config.learning_rate,
                l2: config.l2,
                class_balance: (!config.class_balance.is_empty()).then(|| config.class_balance.clone()),
                seed: config.seed,
                ..MatrixCompletionSettings::default()
            };
            FittedModel::Snorkel(MatrixCompletion::fit(matrix, &settings).context("the snorkel label model")?)
        }
    })
}

/// What the matrix depends on: the labels, the functions as declared, the
/// data, and the files they read (word lists, model weights, scripts named
/// on a command line).
fn matrix_key(config: &LabelConfig, labels: &[String], input: &FileHash) -> Result<serde_json::Value> {
    let mut files = BTreeMap::from([(input.path.clone(), input.sha256.clone())]);
    let mut hash = |path: &Path| -> Result<()> {
        if path.is_file() {
            files.insert(path.display().to_string(), FileHash::of(path)?.sha256);
        }
        Ok(())
    };
    for spec in &config.functions {
        match &spec.rule {
            Rule::Lexicon { file, .. } => hash(file)?,
            Rule::Model { model_dir, .. } => {
                hash(&model_dir.join(kiln_core::model_folder::WEIGHTS))?;
                hash(&model_dir.join(kiln_core::model_folder::LABELS))?;
            }
            Rule::Command { command, .. } => {
                for part in command {
                    hash(Path::new(part))?;
                }
            }
            _ => {}
        }
    }
    Ok(serde_json::json!({ "labels": labels, "functions": config.functions, "files": files }))
}

/// The last run's matrix, if it was made from the same functions and data.
fn previous_matrix(
    config: &LabelConfig,
    key: &serde_json::Value,
    table: &TextTable,
    labels: &[String],
) -> Option<LabelMatrix> {
    let manifest: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(config.output_dir.join(MANIFEST)).ok()?).ok()?;
    if manifest["report"]["matrix_key"] != *key {
        return None;
    }
    let path = config.output_dir.join(MATRIX);
    let frame = read_parquet(&path, "label").ok()?;
    let ids = schema::strings(&frame, schema::ID, &path).ok()?;
    let names = schema::strings(&frame, FUNCTION, &path).ok()?;
    let votes = schema::strings(&frame, VOTE, &path).ok()?;
    let rows: HashMap<&str, usize> = table.ids.iter().enumerate().map(|(row, id)| (id.as_str(), row)).collect();
    let columns: HashMap<&str, usize> =
        config.functions.iter().enumerate().map(|(at, f)| (f.name.as_str(), at)).collect();
    let width = config.functions.len();
    let mut matrix = vec![ABSTAIN; table.len() * width];
    for ((id, name), vote) in ids.iter().zip(&names).zip(&votes) {
        let (row, column) = (rows.get(id.as_str())?, columns.get(name.as_str())?);
        matrix[row * width + column] = i32::try_from(labels.iter().position(|l| l == vote)?).ok()?;
    }
    LabelMatrix::new(width, labels.len(), matrix).ok()
}

/// The label matrix as a table: a row per vote (`id`, `function`, `vote`).
fn matrix_batch(
    matrix: &LabelMatrix,
    ids: &[String],
    functions: &[Function],
    labels: &[String],
) -> Result<arrow_array::RecordBatch> {
    let (mut row_ids, mut names, mut votes) = (Vec::new(), Vec::new(), Vec::new());
    for (row, id) in ids.iter().enumerate() {
        for (column, function) in functions.iter().enumerate() {
            if let Some(vote) = matrix.vote(row, column) {
                row_ids.push(id.as_str());
                names.push(function.name.as_str());
                votes.push(labels[vote].as_str());
            }
        }
    }
    let column = |values: Vec<&str>| Arc::new(StringArray::from(values)) as ArrayRef;
    batch(vec![(schema::ID, column(row_ids)), (FUNCTION, column(names)), (VOTE, column(votes))])
}

fn functions_svg(report: &LabelReport, path: &Path) -> Result<()> {
    let with_gold = report.functions.iter().any(|f| f.empirical_accuracy.is_some());
    let with_learned = report.functions.iter().any(|f| f.learned_accuracy.is_some());
    let mut series = vec!["coverage".to_owned(), "conflicts".to_owned()];
    if with_gold {
        series.push("accuracy on gold".into());
    }
    if with_learned {
        series.push("learned accuracy".into());
    }
    let rows: Vec<BarRow> = report
        .functions
        .iter()
        .map(|f| {
            let mut values = vec![f.coverage, f.conflicts];
            if with_gold {
                values.push(f.empirical_accuracy.unwrap_or(0.0));
            }
            if with_learned {
                values.push(f.learned_accuracy.unwrap_or(0.0));
            }
            BarRow { label: f.name.clone(), values }
        })
        .collect();
    horizontal_bars_svg("Labelling functions", &series, &rows, |v| format!("{:.0}%", v * 100.0), path)
}

fn markdown(report: &LabelReport) -> String {
    let percent = |v: f64| format!("{:.1}%", v * 100.0);
    let optional = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), percent);
    let mut page = format!(
        "# Weak labels\n\n{} rows of the {} split; {} ({}) covered by at least one function. Label model: `{}`. \
         {} rows written ({} uncovered dropped, {} kept with the class balance, {} came labelled and kept their label).\n\n",
        report.rows,
        report.split,
        report.covered,
        percent(1.0 - report.uncovered_share),
        serde_json::to_value(report.model).ok().and_then(|v| v.as_str().map(str::to_owned)).unwrap_or_default(),
        report.rows_out,
        report.dropped_uncovered,
        report.kept_uncovered,
        report.given,
    );
    let labels: Vec<String> = report.weak_labels.iter().map(|(l, n)| format!("{l} {n}")).collect();
    let _ = writeln!(page, "Weak labels written: {}.\n", labels.join(", "));
    if let (Some(split), Some(accuracy), Some(probability), Some(coverage)) =
        (report.gold_split, report.gold_accuracy, report.gold_probability, report.gold_coverage)
    {
        let _ = writeln!(
            page,
            "On the {split} split's gold labels, the label model is right on {} of the {} of rows some function \
             covers, and gives the gold label a mean probability of {}.\n",
            percent(accuracy),
            percent(coverage),
            percent(probability)
        );
    }
    if let (Some(accuracy), Some(probability)) = (report.accuracy_on_split_labels, report.probability_on_split_labels) {
        let _ = writeln!(
            page,
            "The split's own labels agree with the weak label on {} of covered rows; the mean probability of \
             their label is {}.\n",
            percent(accuracy),
            percent(probability)
        );
    }
    let _ = writeln!(page, "![Labelling functions]({FUNCTIONS_SVG})\n");
    let gold = report.gold_split.map_or_else(|| "gold".to_owned(), |s| format!("{s} ({} rows)", report.gold_rows));
    let _ = writeln!(
        page,
        "| function | kind | polarity | coverage | overlaps | conflicts | accuracy on {gold} | learned accuracy |\n\
         |---|---|---|---:|---:|---:|---:|---:|"
    );
    for f in &report.functions {
        let _ = writeln!(
            page,
            "| {} | {} | {} | {} | {} | {} | {} | {} |",
            f.name,
            f.kind,
            f.polarity.join(", "),
            percent(f.coverage),
            percent(f.overlaps),
            percent(f.conflicts),
            optional(f.empirical_accuracy),
            optional(f.learned_accuracy)
        );
    }
    if !report.idle_functions.is_empty() {
        let _ = writeln!(page, "\nThese functions vote on no row: {}.", report.idle_functions.join(", "));
    }
    page
}

/// Opens a `model` function's folder (kiln's or Hugging Face's) on the CPU.
struct Models;

impl LoadModel for Models {
    fn load(&self, dir: &Path) -> Result<Box<dyn ModelVoter>, String> {
        let predictor = Predictor::load(dir, &DeviceSpec::Cpu.device()).map_err(|error| format!("{error:#}"))?;
        if predictor.task() != Task::SequenceClassification {
            return Err("it tags words; a labelling function needs a model that labels texts".into());
        }
        let labels = predictor.labels.labels().to_vec();
        Ok(Box::new(ModelFunction { predictor: std::sync::Mutex::new(predictor), labels }))
    }
}

struct ModelFunction {
    /// LibTorch modules are not `Sync`; one call at a time.
    predictor: std::sync::Mutex<Predictor>,
    labels: Vec<String>,
}

impl ModelVoter for ModelFunction {
    fn labels(&self) -> &[String] {
        &self.labels
    }

    fn predict(&self, texts: &[&str]) -> Result<Vec<(usize, f32)>, String> {
        let predictor = self.predictor.lock().map_err(|_| "the model failed earlier".to_owned())?;
        let examples = predictor.encode(texts).map_err(|error| format!("{error:#}"))?;
        let probabilities =
            predictor.probabilities_batched(&examples, MODEL_BATCH).map_err(|error| format!("{error:#}"))?;
        Ok(probabilities
            .iter()
            .map(|p| {
                let best = argmax(p);
                (best, p[best])
            })
            .collect())
    }
}
