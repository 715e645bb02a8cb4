//! `config.json`: the architectures kiln reads (BERT, DistilBERT, RoBERTa,
//! XLM-RoBERTa) as one [`BertConfig`], checked against the weights before
//! anything is allocated.

use std::path::Path;

use burn::nn::{DropoutConfig, EmbeddingConfig, LayerNormConfig, LinearConfig};
use burn::tensor::Device;
use kiln_core::ModelFolder;
use kiln_core::model_folder;
use serde::{Deserialize, Serialize};

use super::ModelError;
use super::network::{
    BertAttention, BertEmbeddings, BertEncoder, BertIntermediate, BertLayer, BertModel, BertPooler, BertResidual,
    BertSelfAttention,
};
use kiln_core::Precision;

use crate::linear::PackedLinear;

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
                    packed: Default::default(),
                },
                output: BertResidual {
                    dense: linear(self.hidden_size, self.hidden_size),
                    layer_norm: norm(),
                    layer_norm_eps: self.layer_norm_eps,
                    dropout: dropout(),
                    packed: PackedLinear::default(),
                },
            },
            intermediate: BertIntermediate {
                dense: linear(self.hidden_size, self.intermediate_size),
                packed: PackedLinear::default(),
            },
            output: BertResidual {
                dense: linear(self.intermediate_size, self.hidden_size),
                layer_norm: norm(),
                layer_norm_eps: self.layer_norm_eps,
                dropout: dropout(),
                packed: PackedLinear::default(),
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
            precision: Precision::Fp32,
            frozen_layers: None,
        }
    }
}
