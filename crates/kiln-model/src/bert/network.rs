//! The network: embeddings, post-norm encoder layers, pooler and the
//! classification head, shaped like Hugging Face's so checkpoints load by name.

use std::ops::Range;

use burn::module::Module;
use burn::nn::loss::CrossEntropyLossConfig;
use burn::nn::{Dropout, DropoutConfig, Embedding, LayerNorm, Linear, LinearConfig};
use burn::store::ModuleSnapshot;
use burn::tensor::activation::{gelu, relu, softmax, tanh};
use burn::tensor::{Device, Int, Tensor};

use super::BertConfig;
use kiln_core::Precision;

use crate::layer_norm::layer_norm;
use crate::linear::{Int8Error, PackedLinear, for_product, linear_rows, to_f32};

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
    pub packed: [PackedLinear; 3],
}

impl BertSelfAttention {
    /// `mask_bias` is 0 for real tokens and a huge negative number for padding,
    /// shaped `[batch, 1, 1, seq]`, exactly as Hugging Face adds it to the scores.
    ///
    /// In bf16 the two products run in bf16 and the scores are scaled there,
    /// then the mask, softmax and dropout run in fp32, as under `torch.autocast`;
    /// the context comes back in bf16 for the output layer.
    fn forward(&self, hidden: Tensor<3>, mask_bias: Tensor<4>, precision: Precision) -> Tensor<3> {
        let [batch, seq, width] = hidden.dims();
        let head_dim = width / self.heads;
        let split =
            |x: Tensor<3>| for_product(x, precision).reshape([batch, seq, self.heads, head_dim]).swap_dims(1, 2);
        let [query_packed, key_packed, value_packed] = &self.packed;
        let query = split(query_packed.forward(&self.query, hidden.clone(), precision));
        let key = split(key_packed.forward(&self.key, hidden.clone(), precision));
        let value = split(value_packed.forward(&self.value, hidden, precision));
        let scores = to_f32(query.matmul(key.swap_dims(2, 3)).div_scalar((head_dim as f64).sqrt())) + mask_bias;
        let probs = self.dropout.forward(softmax(scores, 3));
        for_product(probs, precision).matmul(value).swap_dims(1, 2).reshape([batch, seq, width])
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
    pub packed: PackedLinear,
}

impl BertResidual {
    fn forward(&self, hidden: Tensor<3>, residual: Tensor<3>, precision: Precision) -> Tensor<3> {
        let dense = to_f32(self.packed.forward(&self.dense, hidden, precision));
        let summed = self.dropout.forward(dense) + residual;
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
    pub packed: PackedLinear,
}

#[derive(Module, Debug)]
pub struct BertLayer {
    pub attention: BertAttention,
    pub intermediate: BertIntermediate,
    pub output: BertResidual,
}

impl BertLayer {
    /// In bf16, GELU runs on the bf16 feed-forward output, as under `torch.autocast`.
    fn forward(&self, hidden: Tensor<3>, mask_bias: Tensor<4>, precision: Precision) -> Tensor<3> {
        let context = self.attention.self_attn.forward(hidden.clone(), mask_bias, precision);
        let attended = self.attention.output.forward(context, hidden, precision);
        let inner = gelu(self.intermediate.packed.forward(&self.intermediate.dense, attended.clone(), precision));
        self.output.forward(inner, attended, precision)
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
    /// The dtype of the matrix products (the weights stay fp32): fp32 unless
    /// a stage asks for bf16 ([`BertModel::set_precision`]).
    #[module(skip)]
    pub precision: Precision,
    /// How many encoder layers [`BertModel::freeze_below_top`] froze (with
    /// the embeddings below them); `None` when nothing is frozen.
    #[module(skip)]
    pub frozen_layers: Option<usize>,
}

/// One batch of token ids, padded to a common length; `attention_mask` is 1 for
/// real tokens and 0 for padding.
#[derive(Debug, Clone)]
pub struct BertInput {
    pub input_ids: Tensor<2, Int>,
    pub token_type_ids: Tensor<2, Int>,
    pub attention_mask: Tensor<2, Int>,
    /// The hidden state after the frozen embeddings and layers
    /// ([`BertModel::encode_frozen`]), `[batch, seq, hidden]`, when the caller
    /// has it: those weights never change in training, so it is computed once
    /// per example instead of at every step, and the encoder starts above them.
    pub frozen_hidden: Option<Tensor<3>>,
}

impl BertInput {
    pub fn new(input_ids: Tensor<2, Int>, token_type_ids: Tensor<2, Int>, attention_mask: Tensor<2, Int>) -> Self {
        Self { input_ids, token_type_ids, attention_mask, frozen_hidden: None }
    }
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
        self.precision = Precision::Fp32;
        self.pack(PackedLinear::int8)
    }

    /// Matrix products in `precision` from now on; in training, bf16 casts
    /// the live fp32 weights in every forward, so gradients reach them.
    pub fn set_precision(&mut self, precision: Precision) {
        self.precision = precision;
    }

    /// Leaves the embeddings and all but the top `trainable` layers out of
    /// training (their weights get no gradient); 0 freezes nothing.
    pub fn freeze_below_top(&mut self, trainable: usize) {
        if trainable == 0 {
            return;
        }
        self.embeddings = self.embeddings.clone().no_grad();
        let frozen = self.encoder.layer.len().saturating_sub(trainable);
        for layer in &mut self.encoder.layer[..frozen] {
            *layer = layer.clone().no_grad();
        }
        self.frozen_layers = Some(frozen);
    }

    /// bf16 for inference: the encoder's linear layers get a bf16 copy of
    /// their weights once, instead of a cast in every forward. Gradients do
    /// not flow through the copies.
    pub fn pack_bf16(&mut self) {
        self.precision = Precision::Bf16;
        let Ok(()) = self.pack(|linear| Ok::<_, std::convert::Infallible>(PackedLinear::bf16(linear)));
    }

    fn pack<E>(&mut self, pack: impl Fn(&Linear) -> Result<PackedLinear, E>) -> Result<(), E> {
        for layer in &mut self.encoder.layer {
            let attention = &mut layer.attention.self_attn;
            attention.packed = [pack(&attention.query)?, pack(&attention.key)?, pack(&attention.value)?];
            layer.attention.output.packed = pack(&layer.attention.output.dense)?;
            layer.intermediate.packed = pack(&layer.intermediate.dense)?;
            layer.output.packed = pack(&layer.output.dense)?;
        }
        Ok(())
    }

    /// The encoder and its pooler over [CLS] (what a sequence head reads).
    pub fn forward(&self, input: BertInput) -> BertOutput {
        let hidden = self.encode(input);
        let [batch, _, width] = hidden.dims();
        let cls = hidden.clone().slice([0..batch, 0..1, 0..width]).reshape([batch, width]);
        let dense = to_f32(linear_rows(&self.pooler.dense, cls, self.precision));
        let pooled = if self.pooler.relu { relu(dense) } else { tanh(dense) };
        BertOutput { last_hidden_state: hidden, pooled }
    }

    /// The last hidden state alone, `[batch, seq, hidden]`: a token head has
    /// no use for the pooler, so it is not run.
    /// With `input.frozen_hidden`, the frozen part is not run again.
    pub fn encode(&self, input: BertInput) -> Tensor<3> {
        let layers = self.encoder.layer.len();
        match input.frozen_hidden {
            Some(hidden) => self.run_layers(hidden, &input.attention_mask, self.frozen_layers.unwrap_or(0)..layers),
            None => self.embed_and_run(input, layers),
        }
    }

    /// The hidden state after the frozen embeddings and layers
    /// ([`BertModel::freeze_below_top`]), what `BertInput::frozen_hidden`
    /// takes; `None` when nothing is frozen. Run it on a model in inference
    /// mode: frozen layers are a fixed feature extractor, without dropout.
    pub fn encode_frozen(&self, input: BertInput) -> Option<Tensor<3>> {
        let frozen = self.frozen_layers?;
        Some(self.embed_and_run(input, frozen))
    }

    /// The embeddings, then the first `layers` encoder layers.
    fn embed_and_run(&self, input: BertInput, layers: usize) -> Tensor<3> {
        let hidden = self.embeddings.forward(input.input_ids, input.token_type_ids);
        self.run_layers(hidden, &input.attention_mask, 0..layers)
    }

    /// The encoder layers `layers` over `hidden`, with Hugging Face's extended
    /// mask: (1 - mask) * f32::MIN, added to every score.
    fn run_layers(&self, mut hidden: Tensor<3>, attention_mask: &Tensor<2, Int>, layers: Range<usize>) -> Tensor<3> {
        let [batch, seq] = attention_mask.dims();
        let mask_bias = (attention_mask.clone().float().neg() + 1.0).mul_scalar(f32::MIN).reshape([batch, 1, 1, seq]);
        for layer in &self.encoder.layer[layers] {
            hidden = layer.forward(hidden, mask_bias.clone(), self.precision);
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
        let pooled = self.dropout.forward(self.bert.forward(input).pooled);
        to_f32(linear_rows(&self.classifier, pooled, self.bert.precision))
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
    fn encoder_mut(&mut self) -> &mut BertModel;
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

    fn encoder_mut(&mut self) -> &mut BertModel {
        &mut self.bert
    }

    fn classifier(&self) -> &Linear {
        &self.classifier
    }

    fn uses_pooler(&self) -> bool {
        true
    }
}
