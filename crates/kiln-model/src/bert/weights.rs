//! Hugging Face safetensors in and out: each architecture's key names mapped
//! to kiln's and back, and what a load initialised itself.

use std::path::Path;

use burn::store::{BurnToPyTorchAdapter, KeyRemapper, ModuleStore, PyTorchToBurnAdapter, SafetensorsStore};

use super::ModelError;
use super::network::WithHead;

/// What loading a checkpoint found, for the user to see.
#[derive(Debug, Clone, Default)]
pub struct LoadReport {
    pub applied: usize,
    /// Checkpoint tensors the model has no place for (e.g. a pre-training head).
    pub unused: Vec<String>,
    /// Model tensors the checkpoint lacks (only the classification head may be).
    pub initialised: Vec<String>,
    /// The checkpoint's head shape (`[labels, hidden]`), when it had one for
    /// another number of labels and a new head was initialised instead.
    pub replaced_head: Option<Vec<usize>>,
}

/// Hugging Face BERT names (`BertModel`, or `BertForSequenceClassification`
/// under `bert.`) to kiln's, applied in order.
const BERT_TO_KILN: [(&str, &str); 3] = [
    (r"^(embeddings|encoder|pooler)\.", "bert.$1."),
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"LayerNorm", "layer_norm"),
];

const KILN_TO_BERT: [(&str, &str); 2] =
    [(r"\.attention\.self_attn\.", ".attention.self."), (r"layer_norm", "LayerNorm")];

/// RoBERTa and XLM-RoBERTa: BERT's names under `roberta.`.
const ROBERTA_TO_KILN: [(&str, &str); 4] = [
    (r"^roberta\.", "bert."),
    (r"^(embeddings|encoder|pooler)\.", "bert.$1."),
    (r"\.attention\.self\.", ".attention.self_attn."),
    (r"LayerNorm", "layer_norm"),
];

const KILN_TO_ROBERTA: [(&str, &str); 3] =
    [(r"^bert\.", "roberta."), (r"\.attention\.self_attn\.", ".attention.self."), (r"layer_norm", "LayerNorm")];

/// DistilBERT names (`DistilBertModel`, or `DistilBertForSequenceClassification`
/// under `distilbert.`) to kiln's, applied in order.
const DISTILBERT_TO_KILN: [(&str, &str); 12] = [
    (r"^(distilbert\.)?embeddings\.LayerNorm\.", "bert.embeddings.layer_norm."),
    (r"^(distilbert\.)?embeddings\.", "bert.embeddings."),
    (r"^(distilbert\.)?transformer\.layer\.", "bert.encoder.layer."),
    (r"\.attention\.q_lin\.", ".attention.self_attn.query."),
    (r"\.attention\.k_lin\.", ".attention.self_attn.key."),
    (r"\.attention\.v_lin\.", ".attention.self_attn.value."),
    (r"\.attention\.out_lin\.", ".attention.output.dense."),
    (r"\.sa_layer_norm\.", ".attention.output.layer_norm."),
    (r"\.ffn\.lin1\.", ".intermediate.dense."),
    (r"\.ffn\.lin2\.", ".output.dense."),
    (r"\.output_layer_norm\.", ".output.layer_norm."),
    (r"^pre_classifier\.", "bert.pooler.dense."),
];

const KILN_TO_DISTILBERT: [(&str, &str); 12] = [
    (r"^bert\.embeddings\.layer_norm\.", "distilbert.embeddings.LayerNorm."),
    (r"^bert\.embeddings\.", "distilbert.embeddings."),
    (r"^bert\.encoder\.layer\.", "distilbert.transformer.layer."),
    (r"\.attention\.self_attn\.query\.", ".attention.q_lin."),
    (r"\.attention\.self_attn\.key\.", ".attention.k_lin."),
    (r"\.attention\.self_attn\.value\.", ".attention.v_lin."),
    (r"\.attention\.output\.dense\.", ".attention.out_lin."),
    (r"\.attention\.output\.layer_norm\.", ".sa_layer_norm."),
    (r"\.intermediate\.dense\.", ".ffn.lin1."),
    (r"(layer\.\d+)\.output\.dense\.", "$1.ffn.lin2."),
    (r"(layer\.\d+)\.output\.layer_norm\.", "$1.output_layer_norm."),
    (r"^bert\.pooler\.dense\.", "pre_classifier."),
];

/// Loads a Hugging Face BERT checkpoint (`BertModel` keys, or
/// `BertForSequenceClassification` keys under `bert.` with a `classifier`) into
/// `model`. A missing encoder tensor is an error; a missing head keeps its
/// random initialisation and is reported.
pub fn load_safetensors(model: &mut impl WithHead, path: &Path) -> Result<LoadReport, ModelError> {
    load_from_store(model, path, SafetensorsStore::from_file(path), true)
}

/// [`load_safetensors`] without the checkpoint's classification head, for a
/// head whose rows mean other labels: the model keeps its new head.
pub fn load_safetensors_encoder(model: &mut impl WithHead, path: &Path) -> Result<LoadReport, ModelError> {
    load_from_store(model, path, SafetensorsStore::from_file(path), false)
}

/// [`load_safetensors`] from a copy of the file in memory, never a mapping of
/// it: a file replaced or cut short while a server reloads cannot fault the
/// process. Returns the sha256 of the very bytes loaded.
pub fn load_safetensors_copy(model: &mut impl WithHead, path: &Path) -> Result<(LoadReport, String), ModelError> {
    use sha2::Digest;
    let bytes = std::fs::read(path)
        .map_err(|error| ModelError::Weights { path: path.display().to_string(), error: error.to_string() })?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let report = load_from_store(model, path, SafetensorsStore::from_bytes(Some(bytes)), true)?;
    Ok((report, sha256))
}

fn load_from_store(
    model: &mut impl WithHead,
    path: &Path,
    store: SafetensorsStore,
    with_head: bool,
) -> Result<LoadReport, ModelError> {
    let shown = path.display().to_string();
    let (distilbert, roberta) = (model.encoder().is_distilbert(), model.encoder().is_roberta());
    if roberta && model.uses_pooler() {
        return Err(ModelError::UnsupportedHead { path: shown, family: "RoBERTa".into() });
    }
    let patterns = match (distilbert, roberta) {
        (true, _) => DISTILBERT_TO_KILN.to_vec(),
        (_, true) => ROBERTA_TO_KILN.to_vec(),
        _ => BERT_TO_KILN.to_vec(),
    };
    let remapper = KeyRemapper::from_patterns(patterns)
        .map_err(|error| ModelError::Weights { path: shown.clone(), error: error.to_string() })?;
    let mut store = store.with_from_adapter(PyTorchToBurnAdapter).remap(remapper).allow_partial(true);
    // A classification head for another label set (a model fine-tuned elsewhere)
    // cannot be reused: keep the new head, as transformers' ignore_mismatched_sizes.
    let head_shape = model.head_shape();
    let checkpoint_head = store
        .get_tensor("classifier.weight")
        .map_err(|error| ModelError::Weights { path: shown.clone(), error: error.to_string() })?
        .map(|tensor| tensor.shape.to_vec());
    let replaced_head = checkpoint_head.filter(|shape| !with_head || shape.as_slice() != head_shape);
    if replaced_head.is_some() {
        store = store.with_predicate(|path, _| !path.starts_with("classifier."));
    }
    let result = model
        .load_from(&mut store)
        .map_err(|error| ModelError::Weights { path: shown.clone(), error: error.to_string() })?;
    if !result.errors.is_empty() {
        let errors: Vec<String> = result.errors.iter().map(|e| format!("{e:?}")).collect();
        return Err(ModelError::Weights { path: shown, error: errors.join("; ") });
    }
    // A token head has no use for the pooler at all; DistilBERT's
    // pre_classifier (kiln's pooler) belongs to its head, not its encoder.
    let pooler = |path: &str| path.starts_with("bert.pooler.");
    let in_head = |path: &str| path.starts_with("classifier.") || (distilbert && pooler(path));
    let (mut head, encoder): (Vec<String>, Vec<String>) = result
        .missing
        .iter()
        .map(|(path, _)| path.clone())
        .filter(|path| model.uses_pooler() || !pooler(path))
        .partition(|path| in_head(path));
    if replaced_head.is_some() && head.is_empty() {
        head = vec!["classifier.weight".into(), "classifier.bias".into()];
    }
    if !encoder.is_empty() {
        return Err(ModelError::MissingWeights { path: shown, missing: encoder.join(", ") });
    }
    let (mut unused, mut initialised) = (result.unused, head);
    unused.sort();
    initialised.sort();
    unused.retain(|name| !(replaced_head.is_some() && name.starts_with("classifier.")));
    Ok(LoadReport { applied: result.applied.len(), unused, initialised, replaced_head })
}

/// Writes `model` as a Hugging Face `BertForSequenceClassification` checkpoint:
/// HF key names, PyTorch layouts, `format = pt` (transformers refuses other tags).
/// `load_safetensors` reads it back.
pub fn save_safetensors(model: &impl WithHead, path: &Path) -> Result<(), ModelError> {
    let shown = path.display().to_string();
    let patterns = match (model.encoder().is_distilbert(), model.encoder().is_roberta()) {
        (true, _) => KILN_TO_DISTILBERT.to_vec(),
        (_, true) => KILN_TO_ROBERTA.to_vec(),
        _ => KILN_TO_BERT.to_vec(),
    };
    let remapper = KeyRemapper::from_patterns(patterns)
        .map_err(|error| ModelError::Weights { path: shown.clone(), error: error.to_string() })?;
    let mut store = SafetensorsStore::from_file(path)
        .with_to_adapter(BurnToPyTorchAdapter)
        .remap(remapper)
        .metadata("format", "pt")
        .overwrite(true);
    if !model.uses_pooler() {
        store = store.with_predicate(|path, _| !path.starts_with("bert.pooler."));
    }
    model
        .save_into(&mut store)
        .map_err(|error| ModelError::Weights { path: shown.clone(), error: error.to_string() })?;
    // The safetensors writer creates a private (0600) file; weights are meant to be shared.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o644))
            .map_err(|error| ModelError::Write { path: shown, error })?;
    }
    Ok(())
}
