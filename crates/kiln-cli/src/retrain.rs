//! `retrain`: new data in, a better model out, or nothing. Builds the next
//! data version (the current raw splits plus the feedback, `kiln_data::retrain`),
//! runs the same stages with the same settings into `[retrain] output_dir`,
//! registers the export as a candidate and lets the gate decide whether it
//! replaces production. A weakly supervised config runs `label` too: feedback
//! rows keep the label they were given, and with `retrain.weak_labels` the
//! served texts without feedback are labelled by the same functions.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_config::{PipelineConfig, RetrainConfig, RetrainInit};
use kiln_core::gate::GateDecision;
use kiln_core::{ModelFolder, Progress, Split, Task};
use kiln_data::retrain::{FeedbackData, FeedbackRow, HOLDOUT, RAW};
use kiln_track::registry::Registry;
use kiln_train::{Control, Outcome};

#[derive(Debug)]
pub enum Retrained {
    /// Too little usable feedback (`[retrain] min_feedback`): no candidate.
    NothingToDo(FeedbackData),
    Judged {
        data: FeedbackData,
        version: u32,
        decision: Box<GateDecision>,
        /// `retrain.weak_labels`: served texts the functions labelled that
        /// joined training (after `clean` and `label` dropped theirs).
        weak_added: Option<usize>,
        /// A warm start (`retrain.init = "production"`): the version it started from.
        warm_from: Option<u32>,
    },
}

/// The production model a warm start trains from.
struct WarmStart {
    version: u32,
    dir: PathBuf,
}

/// `retrain.init = "production"`: the registry's production model, checked
/// before any data is built; `None` for a start from pre-trained weights.
fn warm_start(config: &PipelineConfig, settings: &RetrainConfig) -> Result<Option<WarmStart>> {
    if settings.init == RetrainInit::Pretrained {
        return Ok(None);
    }
    let registry = Registry::new(&config.registry);
    let index = registry.load()?;
    let Some(production) = index.production() else {
        bail!(
            "retrain.init = \"production\" starts from the production model, and the registry {} has none: \
             promote one first, or set retrain.init = \"pretrained\"",
            registry.dir().display()
        );
    };
    let dir = registry.version_dir(production.version);
    let folder = ModelFolder::open(&dir)
        .with_context(|| format!("retrain.init = \"production\": cannot read {}", production.name()))?;
    if folder.task() != config.task {
        bail!(
            "retrain.init = \"production\": {} is a {} model, and this config's task is {}",
            production.name(),
            folder.task(),
            config.task
        );
    }
    Ok(Some(WarmStart { version: production.version, dir }))
}

/// The pipeline's settings with every stage's folders moved under `root`,
/// file names kept: the same stages, the same settings, a new output folder;
/// a warm start trains from the production model for `retrain.warm_epochs`.
fn stages_under(
    config: &PipelineConfig,
    root: &Path,
    settings: &RetrainConfig,
    warm: Option<&WarmStart>,
) -> PipelineConfig {
    let mut c = config.clone();
    let named = |path: &Path, folder: &str| {
        root.join(folder).join(path.file_name().map_or_else(|| path.as_os_str().to_owned(), ToOwned::to_owned))
    };
    c.clean.input_dir = root.join(RAW);
    c.clean.output_dir = root.join("interim");
    // A weak config's training texts are `label`'s output, served ones included.
    let trained_on = if config.weak_labels() { "labelled" } else { "interim" };
    c.label.input_dir = root.join("interim");
    c.label.output_dir = root.join("labelled");
    c.tokenize.input_dir = root.join(trained_on);
    c.tokenize.output_dir = root.join("processed");
    c.profile.input_dir = root.join(trained_on);
    c.profile.input_file = None;
    c.profile.output_dir = root.join("profile");
    c.train.input_dir = root.join("processed");
    c.train.output_dir = root.join("model");
    c.train.run_dir = root.join("train");
    c.train.resume = false;
    c.eval.model_dir = root.join("model");
    c.eval.input_dir = root.join("processed");
    c.eval.output_dir = root.join("eval");
    c.eval.train_metrics = named(&config.eval.train_metrics, "train");
    c.export.model_dir = root.join("model");
    c.export.output_dir = root.join("export");
    c.export.eval_metrics = named(&config.export.eval_metrics, "eval");
    c.export.reference_predictions = named(&config.export.reference_predictions, "eval");
    c.export.data_profile = named(&config.export.data_profile, "profile");
    c.gate.output_dir = root.join("gate");
    // Retrain owns its output folder: each run replaces the last one's export.
    c.export.force = true;
    if let Some(warm) = warm {
        c.train.model_dir = warm.dir.clone();
        c.train.epochs = settings.warm_epochs;
        c.train.learning_rate = settings.warm_learning_rate;
        c.train.trainable_layers = settings.warm_trainable_layers;
    }
    c
}

pub fn run(config: &PipelineConfig, progress: &Progress, control: &Control) -> Result<Retrained> {
    let settings = config.retrain.resolved(&config.serve, &config.ingest);
    settings.validate()?;
    if config.task == Task::TokenClassification {
        return run_tagged(config, &settings, progress, control);
    }
    if settings.weak_labels && !config.weak_labels() {
        bail!(
            "retrain.weak_labels labels served texts with the config's [[label.functions]], and this config has none"
        );
    }
    // Feedback and served texts join the training split: `label` must be what labels it.
    if config.weak_labels() && config.label.split != Split::Train {
        bail!(
            "retrain adds feedback and served texts to the train split, but label.split is {}: set it to train",
            config.label.split
        );
    }
    let warm = warm_start(config, &settings)?;
    let log_dir = settings.log_dir.as_deref().context("retrain.log_dir is not resolved. This is a bug.")?;
    let base_dir = settings.base_dir.as_deref().context("retrain.base_dir is not resolved. This is a bug.")?;
    // Streamed: memory follows the feedback, not the size of the log.
    let (labelled, pass) = kiln_core::prediction_log::labelled_predictions(log_dir)?;
    if let Some(first) = pass.damaged.first() {
        tracing::warn!("{} damaged line(s) in the prediction log skipped, the first: {first:?}", pass.damaged.len());
    }
    let feedback: Vec<FeedbackRow> = labelled
        .into_iter()
        .map(|row| FeedbackRow { request_id: row.request_id, index: row.index, text: row.text, label: row.label })
        .collect();
    // The key serve signs request ids with (its log folder's, unless set):
    // only the server side can tell which feedback the gate holds out.
    let key_file = config.serve.signing_key_file.clone().unwrap_or_else(|| log_dir.join(kiln_config::SIGNING_KEY));
    let key = kiln_core::secret::load_or_create_key(&key_file)?;
    let labels = config.label.sorted_labels();
    let served = match settings.weak_labels {
        true => {
            let (texts, counts, _) =
                kiln_core::prediction_log::served_without_feedback(log_dir, settings.weak_max_rows)?;
            Some((texts, counts))
        }
        false => None,
    };
    let weak = config.weak_labels().then(|| kiln_data::retrain::WeakInputs {
        labels: &labels,
        served: served.as_ref().map(|(texts, counts)| (texts.as_slice(), counts)),
        weight: settings.weak_weight as f32,
    });
    let data = kiln_data::retrain::build(&feedback, base_dir, &config.clean, &settings, &key, weak)?;
    tracing::info!(
        "feedback: {} predictions, {} added to training, {} held out for the gate ({} without text, {} leaking into \
         validation/test, {} with a new label dropped)",
        data.feedback,
        data.added_to_train,
        data.held_out,
        data.without_text,
        data.leaking,
        data.dropped_new_label
    );
    if let Some(served) = &data.served {
        tracing::info!(
            "served texts without feedback: {} added for the labelling functions (weight {}), {} duplicates, {} \
             leaking, {} without text, {} beyond retrain.weak_max_rows",
            served.added,
            served.weight,
            served.duplicate,
            served.leaking,
            served.log.without_text,
            served.log.beyond_limit
        );
    }
    if data.usable() < settings.min_feedback {
        return Ok(Retrained::NothingToDo(data));
    }
    log_warm_start(warm.as_ref(), &data, &settings);
    let root = &settings.output_dir;
    let stages = stages_under(config, root, &settings, warm.as_ref());
    kiln_data::clean::run(&stages.clean, progress)?;
    let mut weak_added = None;
    if config.weak_labels() {
        let report = kiln_infer::label::run(&stages.label, progress)?;
        tracing::info!(
            "label: {} rows labelled by the functions, {} kept their feedback label",
            report.rows_out - report.given,
            report.given
        );
        if data.served.is_some() {
            let labelled = kiln_data::schema::read_split(&stages.label.output_dir, stages.label.split)?;
            weak_added =
                Some(labelled.ids.iter().filter(|id| id.starts_with(kiln_data::retrain::SERVED_PREFIX)).count());
        }
    }
    kiln_data::tokenize::run(&stages.tokenize, progress)?;
    judge(config, &stages, data, weak_added, warm.map(|w| w.version), progress, control)
}

/// A tagger's retraining: the texts whose entities came back as feedback
/// become tagged sentences by their spans (`kiln_data::retrain::build_tagged`);
/// then the same stages and gate as a classifier's.
fn run_tagged(
    config: &PipelineConfig,
    settings: &kiln_config::RetrainConfig,
    progress: &Progress,
    control: &Control,
) -> Result<Retrained> {
    if settings.weak_labels {
        bail!("retrain.weak_labels labels served texts with labelling functions, which tag no words: turn it off");
    }
    let warm = warm_start(config, settings)?;
    let log_dir = settings.log_dir.as_deref().context("retrain.log_dir is not resolved. This is a bug.")?;
    let base_dir = settings.base_dir.as_deref().context("retrain.base_dir is not resolved. This is a bug.")?;
    let (feedback, pass) = kiln_core::prediction_log::tagged_predictions(log_dir)?;
    if let Some(first) = pass.damaged.first() {
        tracing::warn!("{} damaged line(s) in the prediction log skipped, the first: {first:?}", pass.damaged.len());
    }
    let key_file = config.serve.signing_key_file.clone().unwrap_or_else(|| log_dir.join(kiln_config::SIGNING_KEY));
    let key = kiln_core::secret::load_or_create_key(&key_file)?;
    let data = kiln_data::retrain::build_tagged(&feedback, base_dir, settings, &key)?;
    let spans = data.spans.clone().unwrap_or_default();
    tracing::info!(
        "span feedback: {} texts, {} added to training, {} held out for the gate ({} without text, {} leaking into \
         validation/test, {} with a new entity type dropped; spans that do not fit: {} out of range, {} partial, {} \
         conflicting)",
        data.feedback,
        data.added_to_train,
        data.held_out,
        data.without_text,
        data.leaking,
        data.dropped_new_label,
        spans.out_of_range,
        spans.partial,
        spans.conflicting
    );
    if data.usable() < settings.min_feedback {
        return Ok(Retrained::NothingToDo(data));
    }
    log_warm_start(warm.as_ref(), &data, settings);
    let stages = stages_under(config, &settings.output_dir, settings, warm.as_ref());
    kiln_data::clean::run_tagged(&stages.clean, progress)?;
    kiln_data::tokenize::run_tagged(&stages.tokenize, progress)?;
    judge(config, &stages, data, None, warm.map(|w| w.version), progress, control)
}

fn log_warm_start(warm: Option<&WarmStart>, data: &FeedbackData, settings: &RetrainConfig) {
    if let (Some(warm), Some(replayed)) = (warm, data.replayed) {
        tracing::info!(
            "warm start from production v{}: {} epoch(s) of its top {} layers at learning rate {} on the feedback and \
             {replayed} of the {} old training rows (retrain.replay_share {})",
            warm.version,
            settings.warm_epochs,
            settings.warm_trainable_layers,
            settings.warm_learning_rate,
            data.base_rows.get(Split::Train.name()).copied().unwrap_or_default(),
            settings.replay_share
        );
    }
}

/// Profile, train, eval, export, register and gate the new data version
/// (cleaned and tokenized already) under `stages`, `pipeline`'s folders moved.
fn judge(
    pipeline: &PipelineConfig,
    stages: &PipelineConfig,
    data: FeedbackData,
    weak_added: Option<usize>,
    warm_from: Option<u32>,
    progress: &Progress,
    control: &Control,
) -> Result<Retrained> {
    kiln_data::profile::run(&stages.profile.resolved(&stages.tokenize), progress)?;
    match kiln_train::run_for(&stages.train, stages.task, progress, control)? {
        Outcome::Finished(summary) => tracing::info!(
            "trained: validation macro-F1 {:.4} at step {}",
            summary.best.metrics.macro_f1,
            summary.best.step
        ),
        Outcome::Interrupted { .. } | Outcome::Pruned { .. } => bail!("interrupted during training; run retrain again"),
    }
    let metrics = kiln_infer::eval::run(&stages.eval, progress)?;
    tracing::info!("test split: accuracy {:.4}, macro-F1 {:.4}", metrics.accuracy, metrics.macro_f1);
    kiln_infer::export::run(&stages.export)?;
    let added = Registry::new(&stages.registry).add(&stages.export.output_dir, stages.registry.promote_first)?;
    let version = added.version.version;
    tracing::info!("registered the retrained model as {}", added.version.name());

    let mut gate = stages.gate.clone();
    gate.candidate = Some(version);
    gate.holdout = vec![Split::Test.path_in(&stages.clean.output_dir)];
    if data.held_out > 0 {
        // The feedback held out, beside the new version's raw splits.
        gate.holdout.push(stages.clean.input_dir.join(HOLDOUT));
    }
    // The test split, the holdout's first part, was scored already: by the
    // challenger in this run's eval, and by production in the pipeline's own
    // eval when this pipeline trained it (the gate checks the weights' hashes).
    let known: Vec<_> = [&stages.eval.output_dir, &pipeline.eval.output_dir]
        .into_iter()
        .filter_map(|dir| {
            kiln_infer::gate::KnownPredictions::from_eval(dir)
                .inspect_err(|error| tracing::debug!("no predictions to reuse in {}: {error:#}", dir.display()))
                .ok()
        })
        .collect();
    let decision = kiln_infer::gate::run_with(&gate, &stages.registry, progress, &known)?;
    Ok(Retrained::Judged { data, version, decision: Box::new(decision), weak_added, warm_from })
}
