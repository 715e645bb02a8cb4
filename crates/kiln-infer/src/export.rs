//! `export`: the trained model as a Hugging Face folder
//! (`AutoModelForSequenceClassification.from_pretrained` loads it as it is),
//! with a model card. Built in a temporary folder beside the target and moved
//! into place whole; an existing export is replaced only with `force`.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result, bail};
use kiln_config::ExportConfig;
use kiln_core::model_folder::{
    DATA_PROFILE, EVAL_METRICS, EXPORT_MANIFEST, MODEL_CARD, MODEL_FILES, REFERENCE_PREDICTIONS, TOKENIZER,
    TOKENIZER_CONFIG, TOKENIZER_FILES, TRAIN_MANIFEST,
};
use kiln_core::output::swap_dir_into_place;
use kiln_core::{EvalMetrics, FileHash, Manifest, Task};
use kiln_model::DeviceSpec;

use kiln_model::Predictor;

/// An export is assembled under this prefix beside its target, then swapped in.
const STAGING_PREFIX: &str = ".kiln-export-";

/// What a killed export left beside its target: its staging folder, or the
/// old export it had just swapped out. Never read; removed by the next export.
fn clear_stale_staging(parent: &Path) {
    let Ok(entries) = std::fs::read_dir(parent) else { return };
    for entry in entries.flatten() {
        if entry.file_name().to_string_lossy().starts_with(STAGING_PREFIX) && entry.path().is_dir() {
            tracing::info!("removing {}, left by an interrupted export", entry.path().display());
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

pub fn run(config: &ExportConfig) -> Result<Vec<FileHash>> {
    let target = &config.output_dir;
    let occupied = std::fs::read_dir(target).is_ok_and(|mut entries| entries.next().is_some());
    if occupied && !config.force {
        bail!("{} already exists and is not empty: pass --force to replace it", target.display());
    }
    // Loading the folder is the check: config, weights with a head, labels, tokenizer.
    let predictor = Predictor::load(&config.model_dir, &DeviceSpec::Cpu.device())?;
    let folder = &predictor.folder;
    let parent = target.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).with_context(|| format!("cannot create {}", parent.display()))?;
    clear_stale_staging(parent);
    let staging = tempfile::Builder::new()
        .prefix(STAGING_PREFIX)
        .tempdir_in(parent)
        .with_context(|| format!("cannot write in {}", parent.display()))?;

    // Training's manifest, eval's metrics and the data profile travel with the weights, renamed.
    let metrics = EvalMetrics::load_if_present(&config.eval_metrics)?;
    let model_files = MODEL_FILES.iter().chain(&TOKENIZER_FILES).map(|name| (folder.path(name), *name));
    let records = folder.train_manifest_path().map(|path| (path, TRAIN_MANIFEST));
    let eval =
        [(config.eval_metrics.clone(), EVAL_METRICS), (config.reference_predictions.clone(), REFERENCE_PREDICTIONS)];
    let profile = Some((config.data_profile.clone(), DATA_PROFILE));
    if config.reference_predictions.is_file() {
        kiln_core::calibration::PredictionProfile::load(&config.reference_predictions)?;
    }
    if config.data_profile.is_file() {
        // A profile that does not parse would fail monitoring later: refuse it now.
        kiln_core::DataProfile::load(&config.data_profile)?;
    } else {
        tracing::warn!("no data profile at {} (run `profile`): the export carries none", config.data_profile.display());
    }
    let mut sources = Vec::new();
    for (source, name) in model_files.chain(records).chain(eval).chain(profile) {
        if source.is_file() {
            std::fs::copy(&source, staging.path().join(name))
                .with_context(|| format!("cannot copy {}", source.display()))?;
            sources.push((source, name));
        }
    }
    truncate_like_kiln(staging.path(), predictor.max_length())?;
    let card = model_card(config, &predictor, metrics.as_ref())?;
    std::fs::write(staging.path().join(MODEL_CARD), &card).context("cannot write the model card")?;
    // Each file is hashed once, as staged (the tokenizer files were rewritten);
    // a model file's copy is its source byte for byte, so it is also the input's hash.
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for (source, name) in sources.iter().map(|(source, name)| (Some(source), *name)).chain([(None, MODEL_CARD)]) {
        let sha256 = FileHash::of(&staging.path().join(name))?.sha256;
        if let Some(source) = source.filter(|_| MODEL_FILES.contains(&name)) {
            inputs.push(FileHash { path: source.display().to_string(), sha256: sha256.clone() });
        }
        outputs.push(FileHash { path: target.join(name).display().to_string(), sha256 });
    }
    let mut manifest = Manifest::new("export", config, &serde_json::json!({ "labels": predictor.labels.len() }));
    manifest.inputs = inputs;
    manifest.outputs = outputs.clone();
    let manifest_json = serde_json::to_string_pretty(&manifest).context("manifest")?;
    std::fs::write(staging.path().join(EXPORT_MANIFEST), manifest_json).context("cannot write the export manifest")?;
    swap_dir_into_place(&staging.keep(), target)?;
    Ok(outputs)
}

/// Makes the exported tokenizer files read what kiln reads: transformers
/// truncates at `tokenizer_config.json`'s `model_max_length`, the `tokenizers`
/// library at `tokenizer.json`'s truncation, and both pad only as asked
/// (kiln pads each batch to its longest text, never to a fixed length).
fn truncate_like_kiln(dir: &Path, max_length: usize) -> Result<()> {
    let edit = |name: &str, change: &dyn Fn(&mut serde_json::Map<String, serde_json::Value>)| -> Result<()> {
        let path = dir.join(name);
        let mut json = match std::fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).with_context(|| format!("{} is not valid JSON", path.display()))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => serde_json::json!({}),
            Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
        };
        let map = json.as_object_mut().with_context(|| format!("{} is not a JSON object", path.display()))?;
        change(map);
        std::fs::write(&path, serde_json::to_string_pretty(&json)?)
            .with_context(|| format!("cannot write {}", path.display()))
    };
    edit(TOKENIZER, &|map| {
        map.insert(
            "truncation".into(),
            serde_json::json!({ "direction": "Right", "max_length": max_length, "strategy": "LongestFirst", "stride": 0 }),
        );
        map.insert("padding".into(), serde_json::Value::Null);
    })?;
    edit(TOKENIZER_CONFIG, &|map| {
        map.insert("model_max_length".into(), max_length.into());
    })
}

/// The model card: what the model is, what it was trained on and with, how good
/// it is, and how to use it.
fn model_card(config: &ExportConfig, predictor: &Predictor, metrics: Option<&EvalMetrics>) -> Result<String> {
    let labels = predictor.labels.labels();
    let train_manifest = predictor.folder.train_manifest();

    let tags_words = predictor.task() == Task::TokenClassification;
    let (pipeline_tag, what) = if tags_words {
        ("token-classification", "named-entity tagger")
    } else {
        ("text-classification", "text classifier")
    };
    let mut card = String::new();
    let _ = writeln!(card, "---\nlibrary_name: transformers\npipeline_tag: {pipeline_tag}\ntags:\n- kiln");
    if let Some(m) = metrics {
        let _ = writeln!(
            card,
            "model-index:\n- name: {}\n  results:\n  - task:\n      type: {pipeline_tag}",
            folder_name(&config.output_dir)
        );
        match &m.entities {
            Some(entities) => {
                let _ = writeln!(
                    card,
                    "    metrics:\n    - type: f1\n      name: entity F1 (seqeval, micro)\n      value: {}\n    - type: \
                     f1\n      name: entity F1 (seqeval, macro)\n      value: {}",
                    entities.conlleval.micro.f1, m.macro_f1
                );
            }
            None => {
                let _ = writeln!(
                    card,
                    "    metrics:\n    - type: accuracy\n      value: {}\n    - type: f1\n      name: macro F1\n      value: {}",
                    m.accuracy, m.macro_f1
                );
            }
        }
    }
    let _ = writeln!(card, "---\n\n# {}\n", folder_name(&config.output_dir));
    let _ = writeln!(
        card,
        "A {} {what} ({} layers, hidden size {}) fine-tuned by [kiln](https://github.com/kiln-ml/kiln) \
         to predict {} labels.\n",
        predictor.architecture(),
        predictor.config.num_hidden_layers,
        predictor.config.hidden_size,
        labels.len()
    );
    let _ = writeln!(card, "## Labels\n\n{}\n", labels.iter().map(|l| format!("`{l}`")).collect::<Vec<_>>().join(", "));

    let _ = writeln!(card, "## Evaluation\n");
    match metrics {
        Some(m) => {
            let _ = writeln!(card, "On the `{}` split ({} examples):\n", m.split, m.examples);
            let _ = writeln!(card, "| metric | value |\n|---|---|");
            if let Some(entities) = &m.entities {
                let _ = writeln!(card, "| entity_f1 (seqeval, micro) | {:.4} |", entities.conlleval.micro.f1);
                let _ = writeln!(card, "| entity_f1 (seqeval strict IOB2, micro) | {:.4} |", entities.strict.micro.f1);
            }
            for (key, value) in m.headline() {
                let _ = writeln!(card, "| {key} | {value:.4} |");
            }
            let _ = writeln!(card);
        }
        None => {
            let _ = writeln!(card, "Not evaluated yet (run `eval` before `export` to include its metrics).\n");
        }
    }

    let _ = writeln!(card, "## Training data and inputs\n\nsha256 of every file training read:\n");
    for input in train_manifest.iter().flat_map(|m| &m.inputs) {
        let _ = writeln!(card, "- `{}`: `{}`", input.path, input.sha256);
    }
    if let Some(settings) = &predictor.settings {
        let _ = writeln!(
            card,
            "\n## Training configuration\n\nThe exact cleaning, tokenization and training settings (`kiln.toml`):\n\n```toml\n{}```\n",
            settings.to_toml()
        );
    }
    if tags_words {
        token_usage(&mut card, predictor);
    } else {
        text_usage(&mut card, predictor);
    }
    let _ = writeln!(
        card,
        "With kiln: `serve --model-dir path/to/this/folder` (it applies the training's cleaning and truncation \
         itself, from `kiln.toml`)."
    );
    Ok(card)
}

/// How to use a text classifier.
fn text_usage(card: &mut String, predictor: &Predictor) {
    let _ = writeln!(
        card,
        "## Intended use and limitations\n\nClassifies short texts like those it was trained on into the labels above. \
         It has seen only its training data: texts from another domain, language or label set will be classified \
         with unwarranted confidence. Check the per-class figures from `eval` before relying on a rare class, and \
         keep a human in the loop for decisions that matter.\n"
    );
    let max_length = predictor.max_length();
    let _ = writeln!(
        card,
        "## How to use\n\nTexts are truncated to {max_length} tokens, as in training (the tokenizer files say so).\n"
    );
    match predictor.settings.as_ref().and_then(|s| s.clean.as_ref()) {
        Some(clean) => {
            let rules = kiln_text::clean::describe(clean);
            let _ = writeln!(
                card,
                "kiln cleaned the training texts ({rules}) and cleans every text it predicts on the same way. \
                 With transformers, clean each text first with `kiln_clean`, or the model sees text unlike its \
                 training data:\n\n```python\n{}\nfrom transformers import pipeline\nclassifier = \
                 pipeline(\"text-classification\", model=\"path/to/this/folder\")\n\
                 print(classifier(kiln_clean(\"I am still waiting on my card?\"), truncation=True))\n```\n",
                kiln_text::clean::python_snippet(clean)
            );
        }
        None => {
            let _ = writeln!(
                card,
                "```python\nfrom transformers import pipeline\nclassifier = pipeline(\"text-classification\", \
                 model=\"path/to/this/folder\")\nprint(classifier(\"I am still waiting on my card?\", \
                 truncation=True))\n```\n"
            );
        }
    }
}

/// How to use a named-entity tagger.
fn token_usage(card: &mut String, predictor: &Predictor) {
    let _ = writeln!(
        card,
        "## Intended use and limitations\n\nFinds the entity types above in short texts like those it was trained \
         on, word by word (IOB2 tags). It has seen only its training data: rare types, new spellings and other \
         domains are found less reliably. Check the per-type figures from `eval` before relying on a type.\n"
    );
    let max_length = predictor.max_length();
    let _ = writeln!(
        card,
        "## How to use\n\nTexts are truncated to {max_length} tokens, as in training (the tokenizer files say so).\n\n\
         ```python\nfrom transformers import pipeline\ntagger = pipeline(\"token-classification\", \
         model=\"path/to/this/folder\", aggregation_strategy=\"simple\")\nprint(tagger(\"Ada Lovelace lives in \
         London\"))\n```\n"
    );
    if let Some(clean) = predictor.settings.as_ref().and_then(|s| s.clean.as_ref()) {
        let _ = writeln!(
            card,
            "kiln cleaned the training sentences word by word ({}; a link became `http`, an @mention `@user` \
             where those rules are on). kiln's `predict` and `serve` clean each text the same way and give \
             offsets into the text as sent; with transformers, replace such words yourself for the same results.\n",
            kiln_text::clean::describe(clean)
        );
    }
}

fn folder_name(path: &Path) -> String {
    path.file_name().map_or_else(|| "kiln-model".into(), |n| n.to_string_lossy().into_owned())
}
