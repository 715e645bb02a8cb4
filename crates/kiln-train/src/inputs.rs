//! Everything `train` reads, checked before any training starts: a bad input
//! fails here, in seconds, with nothing written.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use kiln_config::{CleanConfig, LabelConfig, TokenizeConfig, TrainConfig};
use kiln_core::model_folder::{CONFIG, LABELS, TOKENIZER};
use kiln_core::output::{read_manifest, sha256_file};
use kiln_core::sample::stratified_share;
use kiln_core::{FileHash, LabelMap, ModelFolder, Split};
use kiln_data::clean;
use kiln_data::tokenize::MANIFEST as TOKENIZE_MANIFEST;
use kiln_model::BertConfig;
use kiln_text::load_tokenizer;

use crate::task::{Encoded, TrainTask};

/// The checked inputs of a training run: `E` is the task's processed example.
pub struct TrainInputs<E> {
    pub train: Vec<E>,
    pub validation: Vec<E>,
    pub labels: LabelMap,
    /// The pre-trained model folder, its `config.json` read.
    pub pretrained: ModelFolder,
    pub model: BertConfig,
    /// The pre-trained weights.
    pub weights: PathBuf,
    /// sha256 of every input file, in a fixed order: the data, the labels, the
    /// pre-trained config and weights.
    pub hashes: Vec<FileHash>,
    /// How the data was tokenized and cleaned, from those stages' manifests:
    /// saved with the model so `predict` and `serve` prepare text the same way.
    pub tokenize: Option<TokenizeConfig>,
    pub clean: Option<CleanConfig>,
}

pub fn load<T: TrainTask>(config: &TrainConfig) -> Result<TrainInputs<T::Example>> {
    let dir = &config.input_dir;
    let train_path = Split::Train.path_in(dir);
    let validation_path = Split::Validation.path_in(dir);
    let labels_path = dir.join(LABELS);
    let labels = LabelMap::load(&labels_path).with_context(|| {
        format!("{} is needed with the processed data (run `tokenize` first)", labels_path.display())
    })?;
    let mut train = T::read(&train_path, &labels, &labels_path)?;
    let validation = T::read(&validation_path, &labels, &labels_path)?;
    if config.data_fraction < 1.0 {
        let all = train.len();
        train = stratified_share(train, config.data_fraction, config.seed, T::stratum);
        tracing::info!("training on {} of {all} examples (train.data_fraction {})", train.len(), config.data_fraction);
    }
    if train.is_empty() {
        bail!("{} has no rows: nothing to train on", train_path.display());
    }
    if validation.is_empty() {
        bail!("{} has no rows: training needs a validation split to pick the best model", validation_path.display());
    }

    let tokenize_manifest = read_manifest::<TokenizeConfig>(&dir.join(TOKENIZE_MANIFEST));
    let mut hashes = Vec::new();
    for path in [&train_path, &validation_path, &labels_path] {
        let hash = FileHash::of(path)?;
        let recorded = tokenize_manifest.as_ref().and_then(|m| m.outputs.iter().find(|o| o.path == hash.path));
        if let Some(recorded) = recorded
            && recorded.sha256 != hash.sha256
        {
            bail!(
                "{} changed after `tokenize` wrote it (its sha256 differs from {}): rerun `tokenize`",
                path.display(),
                dir.join(TOKENIZE_MANIFEST).display()
            );
        }
        hashes.push(hash);
    }

    let pretrained = ModelFolder::open(&config.model_dir)?;
    let model = BertConfig::from_folder(&pretrained)?;
    let weights = pretrained.weights().context(
        "training needs pre-trained weights (run `make setup`, or point --model-dir at a Hugging Face model folder)",
    )?;
    let tokenizer = load_tokenizer(&config.model_dir, model.max_position_embeddings)?;
    let vocabulary = tokenizer.get_vocab_size(true);
    if vocabulary > model.vocab_size {
        bail!(
            "{}'s tokenizer has {vocabulary} tokens but the model's embedding table only {} (config.json \
             vocab_size): the tokenizer does not belong to this model",
            config.model_dir.display(),
            model.vocab_size
        );
    }
    check_token_ids(config, &model, &train_path, &train)?;
    check_token_ids(config, &model, &validation_path, &validation)?;
    hashes.push(FileHash::of(&pretrained.path(CONFIG))?);
    hashes.push(FileHash::of(&weights)?);

    let tokenize = tokenize_manifest.map(|m| m.config);
    // Weakly labelled data came through `label`: clean's manifest is where label read from.
    let cleaned_dir = |dir: &Path| -> PathBuf {
        read_manifest::<LabelConfig>(&dir.join(kiln_core::stages::LABEL_DONE))
            .map_or_else(|| dir.to_owned(), |label| label.config.input_dir)
    };
    let clean = tokenize
        .as_ref()
        .and_then(|t| read_manifest::<CleanConfig>(&cleaned_dir(&t.input_dir).join(clean::MANIFEST)))
        .map(|m| m.config);
    if let Some(tokenize) = &tokenize
        && tokenize.model_dir != config.model_dir
    {
        // An exported model's tokenizer.json differs in its truncation settings only: compare the vocabularies.
        let tokenizer_of = |dir: &Path| sha256_file(&dir.join(TOKENIZER)).ok();
        if tokenizer_of(&tokenize.model_dir) != tokenizer_of(&config.model_dir)
            && load_tokenizer(&tokenize.model_dir, model.max_position_embeddings).ok().map(|t| t.get_vocab(true))
                != Some(tokenizer.get_vocab(true))
        {
            tracing::warn!(
                "the data was tokenized with {}'s tokenizer, but the model is {}: make sure they share a vocabulary",
                tokenize.model_dir.display(),
                config.model_dir.display()
            );
        }
    }
    Ok(TrainInputs { train, validation, labels, pretrained, model, weights, hashes, tokenize, clean })
}

/// Token ids must fit the model's embedding table, and lengths its positions.
fn check_token_ids(config: &TrainConfig, model: &BertConfig, path: &Path, examples: &[impl Encoded]) -> Result<()> {
    for (row, example) in examples.iter().enumerate() {
        if let Some(&id) = example.input_ids().iter().find(|&&id| id as usize >= model.vocab_size) {
            bail!(
                "{}: row {} (id {}) has token id {id}, beyond the model's vocabulary of {}: the data was \
                 tokenized for another model (rerun `tokenize` with --model-dir {})",
                path.display(),
                row + 1,
                example.id(),
                model.vocab_size,
                config.model_dir.display()
            );
        }
        if example.input_ids().len() > model.max_position_embeddings {
            bail!(
                "{}: row {} (id {}) has {} tokens, more than the model's {} positions (rerun `tokenize` with a \
                 smaller --max-length)",
                path.display(),
                row + 1,
                example.id(),
                example.input_ids().len(),
                model.max_position_embeddings
            );
        }
    }
    Ok(())
}
