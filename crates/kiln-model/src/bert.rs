//! BERT, shaped like Hugging Face's `BertModel` and
//! `BertForSequenceClassification` so their checkpoints load by name: post-norm
//! encoder layers, exact GELU, the checkpoint's layer-norm epsilon, a tanh
//! pooler over [CLS], and a linear classifier on top.
//!
//! DistilBERT is the same network built from the same blocks: no token types,
//! and its head's `pre_classifier` + ReLU stands where BERT's pooler + tanh is.
//! Its checkpoints load and save under DistilBERT's own key names.
//!
//! RoBERTa and XLM-RoBERTa are BERT with positions counted from the padding
//! id + 1 and skipping padding, one token type, and `roberta.` key names
//! (token classification; their sequence head is shaped differently).

use std::path::Path;

use crate::layer_norm::layer_norm;
use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, EmbeddingConfig, LayerNorm, LayerNormConfig, Linear, LinearConfig};
use burn::store::{
    BurnToPyTorchAdapter, KeyRemapper, ModuleSnapshot, ModuleStore, PyTorchToBurnAdapter, SafetensorsStore,
};
use burn::tensor::activation::{gelu, relu, softmax, tanh};
use burn::tensor::{Device, Int, Tensor};
use kiln_core::ModelFolder;
use kiln_core::model_folder;

use crate::int8::{Int8Error, Int8Twin};
use serde::{Deserialize, Serialize};

/// The fields of a Hugging Face `config.json` that shape a BERT encoder.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct BertConfig {
    pub model_type: String,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_dropout")]
    pub hidden_dropout_prob: f64,
    #[serde(default = "default_dropout")]
    pub attention_probs_dropout_prob: f64,
    pub max_position_embeddings: usize,
    #[serde(default = "default_type_vocab")]
    pub type_vocab_size: usize,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    /// Dropout before the classifier; `None` means `hidden_dropout_prob`, as in HF.
    #[serde(default)]
    pub classifier_dropout: Option<f64>,
    /// The padding token; RoBERTa counts positions from it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pad_token_id: Option<usize>,
}

/// DistilBERT's own `config.json` names.
#[derive(Deserialize)]
struct DistilBertConfig {
    vocab_size: usize,
    dim: usize,
    n_layers: usize,
    n_heads: usize,
    hidden_dim: usize,
    #[serde(default = "default_act")]
    activation: String,
    #[serde(default = "default_dropout")]
    dropout: f64,
    #[serde(default = "default_dropout")]
    attention_dropout: f64,
    max_position_embeddings: usize,
    #[serde(default = "default_seq_classif_dropout")]
    seq_classif_dropout: f64,
}

fn default_seq_classif_dropout() -> f64 {
    0.2
}

impl From<DistilBertConfig> for BertConfig {
    fn from(d: DistilBertConfig) -> Self {
        Self {
            model_type: DISTILBERT.into(),
            vocab_size: d.vocab_size,
            hidden_size: d.dim,
            num_hidden_layers: d.n_layers,
            num_attention_heads: d.n_heads,
            intermediate_size: d.hidden_dim,
            hidden_act: d.activation,
            hidden_dropout_prob: d.dropout,
            attention_probs_dropout_prob: d.attention_dropout,
            max_position_embeddings: d.max_position_embeddings,
            type_vocab_size: 0,
            // DistilBERT's LayerNorms use eps 1e-12, fixed in its code.
            layer_norm_eps: 1e-12,
            classifier_dropout: Some(d.seq_classif_dropout),
            pad_token_id: None,
        }
    }
}

pub const BERT: &str = "bert";
pub const DISTILBERT: &str = "distilbert";
pub const ROBERTA: &str = "roberta";
pub const XLM_ROBERTA: &str = "xlm-roberta";

fn default_act() -> String {
    "gelu".into()
}
fn default_dropout() -> f64 {
    0.1
}
fn default_type_vocab() -> usize {
    2
}
fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error("cannot write {path}: {error}")]
    Write { path: String, error: std::io::Error },
    #[error("{path} is not a Hugging Face BERT config: {error}")]
    Config { path: String, error: serde_json::Error },
    #[error("{path}: model_type '{found}' is not supported (kiln supports: bert, distilbert, roberta, xlm-roberta)")]
    UnsupportedModelType { path: String, found: String },
    #[error("{path}: hidden_act '{found}' is not supported (kiln supports: gelu)")]
    UnsupportedActivation { path: String, found: String },
    #[error("{path}: hidden_size {hidden} is not a positive multiple of num_attention_heads {heads}")]
    BadHeads { path: String, hidden: usize, heads: usize },
    #[error("cannot load weights from {path}: {error}")]
    Weights { path: String, error: String },
    #[error("{path} lacks encoder weights the model needs: {missing}")]
    MissingWeights { path: String, missing: String },
    #[error("{path}: {family} models are supported for token classification; their sequence head is not yet")]
    UnsupportedHead { path: String, family: String },
    #[error(
        "{config} describes an encoder of {implied} parameters, but {weights} holds {found} values: the config does \
         not belong to these weights (nothing was allocated)"
    )]
    WeightsTooSmall { config: String, weights: String, implied: String, found: u128 },
    #[error("{path} is not a safetensors file: {error}")]
    NotSafetensors { path: String, error: String },
}

/// Largest safetensors header read (the format's own limit is 100 MB).
const MAX_HEADER_BYTES: u64 = 100_000_000;

/// The count of values a safetensors file holds, from its header alone.
pub fn safetensors_values(path: &Path) -> Result<u128, ModelError> {
    use std::io::Read;
    let bad = |error: String| ModelError::NotSafetensors { path: path.display().to_string(), error };
    let mut file = std::fs::File::open(path).map_err(|e| bad(e.to_string()))?;
    let size = file.metadata().map_err(|e| bad(e.to_string()))?.len();
    let mut prefix = [0u8; 8];
    file.read_exact(&mut prefix).map_err(|_| bad("shorter than its 8-byte header size".into()))?;
    let header_bytes = u64::from_le_bytes(prefix);
    if header_bytes > MAX_HEADER_BYTES || header_bytes > size.saturating_sub(8) {
        return Err(bad(format!("a header of {header_bytes} bytes in a file of {size}")));
    }
    let mut header = vec![0u8; header_bytes as usize];
    file.read_exact(&mut header).map_err(|e| bad(e.to_string()))?;
    let tensors: std::collections::BTreeMap<String, serde_json::Value> =
        serde_json::from_slice(&header).map_err(|e| bad(format!("its header is not JSON: {e}")))?;
    let mut values: u128 = 0;
    for (name, tensor) in tensors.iter().filter(|(name, _)| *name != "__metadata__") {
        let shape = tensor["shape"].as_array().ok_or_else(|| bad(format!("tensor {name} has no shape")))?;
        let count =
            shape.iter().try_fold(1u128, |count, dim| dim.as_u64().and_then(|d| count.checked_mul(u128::from(d))));
        values =
            count.and_then(|c| values.checked_add(c)).ok_or_else(|| bad(format!("tensor {name} has a bad shape")))?;
    }
    Ok(values)
}

impl BertConfig {
    /// Reads and checks a model folder's `config.json` (BERT or DistilBERT).
    pub fn load(model_dir: &Path) -> anyhow::Result<Self> {
        Ok(Self::from_folder(&ModelFolder::open(model_dir)?)?)
    }

    /// The encoder shape of an opened model folder (its `config.json`, read once).
    pub fn from_folder(folder: &ModelFolder) -> Result<Self, ModelError> {
        let shown = folder.path(model_folder::CONFIG).display().to_string();
        let value = folder.config();
        let bad = |error| ModelError::Config { path: shown.clone(), error };
        let config: Self = match folder.model_type() {
            Some(DISTILBERT) => DistilBertConfig::deserialize(value).map_err(bad)?.into(),
            Some(BERT | ROBERTA | XLM_ROBERTA) => Self::deserialize(value).map_err(bad)?,
            other => {
                let found = other.unwrap_or("(none)").to_owned();
                return Err(ModelError::UnsupportedModelType { path: shown, found });
            }
        };
        if config.hidden_act != "gelu" {
            return Err(ModelError::UnsupportedActivation { path: shown, found: config.hidden_act });
        }
        if config.num_attention_heads == 0 || !config.hidden_size.is_multiple_of(config.num_attention_heads) {
            return Err(ModelError::BadHeads {
                path: shown,
                hidden: config.hidden_size,
                heads: config.num_attention_heads,
            });
        }
        Ok(config)
    }

    pub fn is_distilbert(&self) -> bool {
        self.model_type == DISTILBERT
    }

    /// Parameters of the encoder this config describes (embeddings and
    /// layers; no pooler, no head), or `None` when the count overflows.
    pub fn encoder_parameters(&self) -> Option<u128> {
        let [vocab, h, layers, i, positions, types] = [
            self.vocab_size,
            self.hidden_size,
            self.num_hidden_layers,
            self.intermediate_size,
            self.max_position_embeddings,
            self.type_vocab_size,
        ]
        .map(|n| n as u128);
        let embeddings = vocab.checked_add(positions)?.checked_add(types)?.checked_mul(h)?.checked_add(2 * h)?;
        let attention = h.checked_mul(h)?.checked_add(h)?.checked_mul(4)?;
        let feed_forward = h.checked_mul(i)?.checked_mul(2)?.checked_add(i)?.checked_add(h)?;
        let layer = attention.checked_add(feed_forward)?.checked_add(4 * h)?;
        embeddings.checked_add(layers.checked_mul(layer)?)
    }

    /// Refuses a config whose encoder is larger than the weights file holds,
    /// reading only the file's header: absurd dimensions are an error here,
    /// before anything is allocated (not an abort inside the allocator).
    pub fn check_fits(&self, config_path: &Path, weights: &Path) -> Result<(), ModelError> {
        let found = safetensors_values(weights)?;
        let implied = self.encoder_parameters();
        if implied.is_none_or(|implied| implied > found) {
            return Err(ModelError::WeightsTooSmall {
                config: config_path.display().to_string(),
                weights: weights.display().to_string(),
                implied: implied.map_or_else(|| "more than 2^128".into(), |n| n.to_string()),
                found,
            });
        }
        Ok(())
    }

    pub fn is_roberta(&self) -> bool {
        matches!(self.model_type.as_str(), ROBERTA | XLM_ROBERTA)
    }

    /// The Hugging Face class a fine-tuned model of this kind is saved as.
    pub fn classification_architecture(&self) -> &'static str {
        if self.is_distilbert() { "DistilBertForSequenceClassification" } else { "BertForSequenceClassification" }
    }

    /// The Hugging Face class a model of this kind tagging words is saved as.
    pub fn token_classification_architecture(&self) -> &'static str {
        match self.model_type.as_str() {
            DISTILBERT => "DistilBertForTokenClassification",
            ROBERTA => "RobertaForTokenClassification",
            XLM_ROBERTA => "XLMRobertaForTokenClassification",
            _ => "BertForTokenClassification",
        }
    }

    pub fn init(&self, device: &Device) -> BertModel {
        let norm = || LayerNormConfig::new(self.hidden_size).with_epsilon(self.layer_norm_eps).init(device);
        let linear = |i, o| LinearConfig::new(i, o).init(device);
        let dropout = || DropoutConfig::new(self.hidden_dropout_prob).init();
        let layer = |_| BertLayer {
            attention: BertAttention {
                self_attn: BertSelfAttention {
                    query: linear(self.hidden_size, self.hidden_size),
                    key: linear(self.hidden_size, self.hidden_size),
                    value: linear(self.hidden_size, self.hidden_size),
                    dropout: DropoutConfig::new(self.attention_probs_dropout_prob).init(),
                    heads: self.num_attention_heads,
                    int8: Default::default(),
                },
                output: BertResidual {
                    dense: linear(self.hidden_size, self.hidden_size),
                    layer_norm: norm(),
                    layer_norm_eps: self.layer_norm_eps,
                    dropout: dropout(),
                    int8: Int8Twin::default(),
                },
            },
            intermediate: BertIntermediate {
                dense: linear(self.hidden_size, self.intermediate_size),
                int8: Int8Twin::default(),
            },
            output: BertResidual {
                dense: linear(self.intermediate_size, self.hidden_size),
                layer_norm: norm(),
                layer_norm_eps: self.layer_norm_eps,
                dropout: dropout(),
                int8: Int8Twin::default(),
            },
        };
        BertModel {
            embeddings: BertEmbeddings {
                word_embeddings: EmbeddingConfig::new(self.vocab_size, self.hidden_size).init(device),
                position_embeddings: EmbeddingConfig::new(self.max_position_embeddings, self.hidden_size).init(device),
                token_type_embeddings: (self.type_vocab_size > 0)
                    .then(|| EmbeddingConfig::new(self.type_vocab_size, self.hidden_size).init(device)),
                layer_norm: norm(),
                layer_norm_eps: self.layer_norm_eps,
                dropout: dropout(),
                positions_after_padding: self.is_roberta(),
                padding_id: self.pad_token_id.unwrap_or(1),
            },
            encoder: BertEncoder { layer: (0..self.num_hidden_layers).map(layer).collect() },
            pooler: BertPooler { dense: linear(self.hidden_size, self.hidden_size), relu: self.is_distilbert() },
        }
    }
}

#[derive(Module, Debug)]
pub struct BertEmbeddings {
    pub word_embeddings: Embedding,
    pub position_embeddings: Embedding,
    /// Absent in DistilBERT, which has no token types.
    pub token_type_embeddings: Option<Embedding>,
    pub layer_norm: LayerNorm,
    /// burn's LayerNorm keeps its epsilon private; training's native kernel needs it.
    #[module(skip)]
    pub layer_norm_eps: f64,
    pub dropout: Dropout,
    /// RoBERTa: a token's position is the padding id + its place among the
    /// non-padding tokens (transformers' `create_position_ids_from_input_ids`).
    pub positions_after_padding: bool,
    pub padding_id: usize,
}

impl BertEmbeddings {
    fn forward(&self, input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>) -> Tensor<3> {
        let [_, seq] = input_ids.dims();
        let device = input_ids.device();
        let positions = if self.positions_after_padding {
            let real = input_ids.clone().not_equal_elem(self.padding_id as i64).int();
            (real.clone().cumsum(1) * real).add_scalar(self.padding_id as i64)
        } else {
            Tensor::<1, Int>::arange(0..seq as i64, &device).reshape([1, seq])
        };
        let mut summed = self.word_embeddings.forward(input_ids) + self.position_embeddings.forward(positions);
        if let Some(token_types) = &self.token_type_embeddings {
            summed = summed + token_types.forward(token_type_ids);
        }
        self.dropout.forward(layer_norm(&self.layer_norm, self.layer_norm_eps, summed))
    }
}

#[derive(Module, Debug)]
pub struct BertSelfAttention {
    pub query: Linear,
    pub key: Linear,
    pub value: Linear,
    pub dropout: Dropout,
    pub heads: usize,
    #[module(skip)]
    pub int8: [Int8Twin; 3],
}

impl BertSelfAttention {
    /// `mask_bias` is 0 for real tokens and a huge negative number for padding,
    /// shaped `[batch, 1, 1, seq]`, exactly as Hugging Face adds it to the scores.
    fn forward(&self, hidden: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let [batch, seq, width] = hidden.dims();
        let head_dim = width / self.heads;
        let split = |x: Tensor<3>| x.reshape([batch, seq, self.heads, head_dim]).swap_dims(1, 2);
        let [query_int8, key_int8, value_int8] = &self.int8;
        let query = split(query_int8.forward(&self.query, hidden.clone()));
        let key = split(key_int8.forward(&self.key, hidden.clone()));
        let value = split(value_int8.forward(&self.value, hidden));
        let scores = query.matmul(key.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt()) + mask_bias;
        let probs = self.dropout.forward(softmax(scores, 3));
        probs.matmul(value).swap_dims(1, 2).reshape([batch, seq, width])
    }
}

/// Dense, dropout, then layer norm over the residual: BERT's post-norm step.
#[derive(Module, Debug)]
pub struct BertResidual {
    pub dense: Linear,
    pub layer_norm: LayerNorm,
    #[module(skip)]
    pub layer_norm_eps: f64,
    pub dropout: Dropout,
    #[module(skip)]
    pub int8: Int8Twin,
}

impl BertResidual {
    fn forward(&self, hidden: Tensor<3>, residual: Tensor<3>) -> Tensor<3> {
        let summed = self.dropout.forward(self.int8.forward(&self.dense, hidden)) + residual;
        layer_norm(&self.layer_norm, self.layer_norm_eps, summed)
    }
}

#[derive(Module, Debug)]
pub struct BertAttention {
    pub self_attn: BertSelfAttention,
    pub output: BertResidual,
}

#[derive(Module, Debug)]
pub struct BertIntermediate {
    pub dense: Linear,
    #[module(skip)]
    pub int8: Int8Twin,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidual,
}

impl BertLayer {
    fn forward(&self, hidden: Tensor<3>, mask_bias: Tensor<4>) -> Tensor<3> {
        let attended =
            self.attention.output.forward(self.attention.self_attn.forward(hidden.clone(), mask_bias), hidden);
        let inner = gelu(self.intermediate.int8.forward(&self.intermediate.dense, attended.clone()));
        self.output.forward(inner, attended)
    }
}

#[derive(Module, Debug)]
pub struct BertEncoder {
    pub layer: Vec<BertLayer>,
}

/// BERT's pooler (dense + tanh over [CLS]), or DistilBERT's `pre_classifier`
/// (dense + ReLU over [CLS]) when `relu`.
#[derive(Module, Debug)]
pub struct BertPooler {
    pub dense: Linear,
    pub relu: bool,
}

#[derive(Module, Debug)]
pub struct BertModel {
    pub embeddings: BertEmbeddings,
    pub encoder: BertEncoder,
    pub pooler: BertPooler,
}

/// One batch of token ids, padded to a common length; `attention_mask` is 1 for
/// real tokens and 0 for padding.
#[derive(Debug, Clone)]
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2, Int>,
}

pub struct BertOutput {
    /// `[batch, seq, hidden]`
    pub last_hidden_state: Tensor<3>,
    /// `[batch, hidden]`: tanh(dense(hidden state of [CLS])), ReLU for DistilBERT.
    pub pooled: Tensor<2>,
}

impl BertModel {
    /// Packs an int8 copy of every encoder linear layer (Q, K, V, attention
    /// output, both feed-forward layers) for CPU inference; embeddings, layer
    /// norms, the pooler and the head stay fp32. Inference only: gradients do
    /// not flow through the int8 layers.
    pub fn quantize_int8(&mut self) -> Result<(), Int8Error> {
        for layer in &mut self.encoder.layer {
            let attention = &mut layer.attention.self_attn;
            attention.int8 =
                [Int8Twin::pack(&attention.query)?, Int8Twin::pack(&attention.key)?, Int8Twin::pack(&attention.value)?];
            layer.attention.output.int8 = Int8Twin::pack(&layer.attention.output.dense)?;
            layer.intermediate.int8 = Int8Twin::pack(&layer.intermediate.dense)?;
            layer.output.int8 = Int8Twin::pack(&layer.output.dense)?;
        }
        Ok(())
    }

    /// The encoder and its pooler over [CLS] (what a sequence head reads).
    pub fn forward(&self, input: BertInput) -> BertOutput {
        let hidden = self.encode(input);
        let [batch, _, width] = hidden.dims();
        let cls = hidden.clone().slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        let dense = self.pooler.dense.forward(cls);
        let pooled = if self.pooler.relu { relu(dense) } else { tanh(dense) };
        BertOutput { last_hidden_state: hidden, pooled }
    }

    /// The last hidden state alone, `[batch, seq, hidden]`: a token head has
    /// no use for the pooler, so it is not run.
    pub fn encode(&self, input: BertInput) -> Tensor<3> {
        let [batch, seq] = input.input_ids.dims();
        // Hugging Face's extended mask: (1 - mask) * f32::MIN, added to every score.
        let mask_bias = (input.attention_mask.float().neg() + 1.0).mul_scalar(f32::MIN).reshape([batch, 1, 1, seq]);
        let mut hidden = self.embeddings.forward(input.input_ids, input.token_type_ids);
        for layer in &self.encoder.layer {
            hidden = layer.forward(hidden, mask_bias.clone());
        }
        hidden
    }

    /// DistilBERT's head ReLUs where BERT's pooler tanhs.
    pub fn is_distilbert(&self) -> bool {
        self.pooler.relu
    }

    pub fn is_roberta(&self) -> bool {
        self.embeddings.positions_after_padding
    }
}

/// BERT with a classification head, like `BertForSequenceClassification`.
#[derive(Module, Debug)]
pub struct BertClassifier {
    pub bert: BertModel,
    pub dropout: Dropout,
    pub classifier: Linear,
}

impl BertClassifier {
    pub fn new(config: &BertConfig, num_labels: usize, device: &Device) -> Self {
        Self {
            bert: config.init(device),
            dropout: DropoutConfig::new(config.classifier_dropout.unwrap_or(config.hidden_dropout_prob)).init(),
            classifier: LinearConfig::new(config.hidden_size, num_labels).init(device),
        }
    }

    /// Logits, `[batch, num_labels]`.
    pub fn forward(&self, input: BertInput) -> Tensor<2> {
        let pooled = self.bert.forward(input).pooled;
        self.classifier.forward(self.dropout.forward(pooled))
    }

    /// Mean cross-entropy of the logits against `labels` (`[batch]` label ids), and the logits.
    pub fn loss(&self, input: BertInput, labels: Tensor<1, Int>) -> (Tensor<1>, Tensor<2>) {
        self.weighted_loss(input, labels, None)
    }

    /// Cross-entropy weighted per class (`class_weights[label]`, mean over the
    /// weights as torch does), and the logits.
    pub fn weighted_loss(
        &self,
        input: BertInput,
        labels: Tensor<1, Int>,
        class_weights: Option<&[f32]>,
    ) -> (Tensor<1>, Tensor<2>) {
        let logits = self.forward(input);
        let loss = CrossEntropyLossConfig::new()
            .with_weights(class_weights.map(<[f32]>::to_vec))
            .init(&logits.device())
            .forward(logits.clone(), labels);
        (loss, logits)
    }

    pub fn is_distilbert(&self) -> bool {
        self.bert.is_distilbert()
    }

    pub fn num_labels(&self) -> usize {
        self.classifier.weight.dims()[1]
    }
}

/// A BERT encoder with a head on top, as loading and saving see it: the
/// sequence head ([`BertClassifier`]) and the token head
/// ([`crate::token::BertTokenClassifier`]) load and save the same way.
pub trait WithHead: ModuleSnapshot {
    fn encoder(&self) -> &BertModel;
    /// The linear layer whose outputs are the labels.
    fn classifier(&self) -> &Linear;
    /// Whether BERT's pooler (DistilBERT's `pre_classifier`) belongs to this
    /// model: the sequence head reads [CLS] through it, the token head does not
    /// (transformers' `*ForTokenClassification` has none), so it is neither
    /// required on load nor written on save.
    fn uses_pooler(&self) -> bool;

    /// The head's weight in Hugging Face's layout, `[labels, hidden]`.
    fn head_shape(&self) -> [usize; 2] {
        let [hidden, labels] = self.classifier().weight.dims();
        [labels, hidden]
    }
}

impl WithHead for BertClassifier {
    fn encoder(&self) -> &BertModel {
        &self.bert
    }

    fn classifier(&self) -> &Linear {
        &self.classifier
    }

    fn uses_pooler(&self) -> bool {
        true
    }
}

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
    load_from_store(model, path, SafetensorsStore::from_file(path))
}

/// [`load_safetensors`] from a copy of the file in memory, never a mapping of
/// it: a file replaced or cut short while a server reloads cannot fault the
/// process. Returns the sha256 of the very bytes loaded.
pub fn load_safetensors_copy(model: &mut impl WithHead, path: &Path) -> Result<(LoadReport, String), ModelError> {
    use sha2::Digest;
    let bytes = std::fs::read(path)
        .map_err(|error| ModelError::Weights { path: path.display().to_string(), error: error.to_string() })?;
    let sha256 = hex::encode(sha2::Sha256::digest(&bytes));
    let report = load_from_store(model, path, SafetensorsStore::from_bytes(Some(bytes)))?;
    Ok((report, sha256))
}

fn load_from_store(model: &mut impl WithHead, path: &Path, store: SafetensorsStore) -> Result<LoadReport, ModelError> {
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
    let replaced_head = checkpoint_head.filter(|shape| shape.as_slice() != head_shape);
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

#[cfg(test)]
mod tests {
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::TensorData;

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::{batch, floats, tiny};

    #[test]
    fn shapes_follow_the_config() {
        let device = DeviceSpec::Cpu.device();
        let model = BertClassifier::new(&tiny(), 5, &device);
        let input = batch((0..21).map(|i| i % 40).collect(), vec![1; 21], [3, 7], &device);
        let output = model.bert.forward(input.clone());
        assert_eq!(output.last_hidden_state.dims(), [3, 7, 16]);
        assert_eq!(output.pooled.dims(), [3, 16]);
        assert_eq!(model.forward(input).dims(), [3, 5]);
    }

    /// What `save_safetensors` writes, `load_safetensors` reads back exactly,
    /// under Hugging Face's key names.
    #[test]
    fn saved_weights_load_back_with_hf_names() {
        let device = DeviceSpec::Cpu.device();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let model = BertClassifier::new(&tiny(), 4, &device);
        save_safetensors(&model, &path).expect("save");

        let mut loaded = BertClassifier::new(&tiny(), 4, &device);
        let report = load_safetensors(&mut loaded, &path).expect("load");
        assert!(report.unused.is_empty() && report.initialised.is_empty(), "{report:?}");
        let input = batch(vec![1, 5, 9, 2, 3, 0], vec![1, 1, 1, 1, 1, 0], [2, 3], &device);
        assert_eq!(floats(model.forward(input.clone())), floats(loaded.forward(input)));

        let bytes = std::fs::read(&path).expect("read");
        let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).expect("a safetensors file");
        let tensors = header.tensors();
        for key in [
            "bert.embeddings.LayerNorm.weight",
            "bert.encoder.layer.1.attention.self.query.weight",
            "bert.pooler.dense.bias",
            "classifier.weight",
        ] {
            assert!(tensors.contains_key(key), "missing HF key {key}");
        }
        assert_eq!(header.metadata().as_ref().and_then(|m| m.get("format")).map(String::as_str), Some("pt"));
        assert_eq!(tensors["classifier.weight"].shape, [4, 16], "PyTorch layout [out, in]");
    }

    /// A checkpoint with a head for another label count (a model fine-tuned
    /// elsewhere) loads its encoder; the head is new and reported.
    #[test]
    fn a_head_for_other_labels_is_replaced() {
        let device = DeviceSpec::Cpu.device();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let three = BertClassifier::new(&tiny(), 3, &device);
        save_safetensors(&three, &path).expect("save");
        let mut five = BertClassifier::new(&tiny(), 5, &device);
        let report = load_safetensors(&mut five, &path).expect("encoder loads");
        assert_eq!(report.replaced_head, Some(vec![3, 16]));
        assert_eq!(report.initialised, ["classifier.bias", "classifier.weight"]);
        let input = batch(vec![1, 5, 9], vec![1; 3], [1, 3], &device);
        assert_eq!(floats(three.bert.forward(input.clone()).pooled), floats(five.bert.forward(input).pooled));
    }

    #[test]
    fn padded_positions_are_ignored() {
        let device = DeviceSpec::Cpu.device();
        let model = BertClassifier::new(&tiny(), 3, &device);
        let mask = vec![1, 1, 1, 0, 0];
        let one = model.forward(batch(vec![2, 7, 9, 0, 0], mask.clone(), [1, 5], &device));
        let other = model.forward(batch(vec![2, 7, 9, 33, 12], mask, [1, 5], &device));
        let diff = floats(one).iter().zip(floats(other)).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(diff < 1e-6, "what sits under padding changed the logits by {diff}");
        let unmasked = model.forward(batch(vec![2, 7, 9, 33, 12], vec![1; 5], [1, 5], &device));
        let first = model.forward(batch(vec![2, 7, 9, 0, 0], vec![1, 1, 1, 0, 0], [1, 5], &device));
        let moved = floats(first).iter().zip(floats(unmasked)).map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
        assert!(moved > 1e-4, "without the mask the extra tokens must matter (this checks the test itself)");
    }

    #[test]
    fn a_32_example_set_is_overfitted() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let mut model = BertClassifier::new(&tiny(), 2, &device);
        let mut optimizer = AdamWConfig::new().with_epsilon(1e-8).with_weight_decay(0.0).init();
        // 32 random sequences of 8 tokens with random labels: only memorising fits them.
        let mut state = 7u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 33) as i64
        };
        let ids: Vec<i64> = (0..32 * 8).map(|_| 1 + next() % 39).collect();
        let labels: Vec<i64> = (0..32).map(|_| next() % 2).collect();
        let input = batch(ids, vec![1; 32 * 8], [32, 8], &device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(labels.clone(), [32]), &device);

        let mut losses = Vec::new();
        for _ in 0..150 {
            let (loss, _) = model.loss(input.clone(), targets.clone());
            losses.push(floats(loss.clone())[0]);
            let grads = GradientsParams::from_grads(loss.backward(), &model);
            model = optimizer.step(3e-3, model, grads);
        }
        let (loss, logits) = model.loss(input, targets);
        let predicted = logits.argmax(1).into_data().try_to_vec::<i64>().expect("ids");
        let correct = predicted.iter().zip(&labels).filter(|(p, l)| p == l).count();
        let final_loss = floats(loss)[0];
        assert!(final_loss < losses[0] / 10.0, "loss fell from {} to only {final_loss}", losses[0]);
        assert_eq!(correct, 32, "memorised {correct}/32 (loss {final_loss})");
    }
}
