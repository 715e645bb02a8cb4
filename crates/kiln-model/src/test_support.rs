//! Helpers shared by the crate's unit tests.

use burn::tensor::{Device, Int, Tensor, TensorData};

use crate::bert::{BertConfig, BertInput};

/// A BERT small enough to train in milliseconds, without dropout.
pub fn tiny() -> BertConfig {
    BertConfig {
        model_type: "bert".into(),
        vocab_size: 40,
        hidden_size: 16,
        num_hidden_layers: 2,
        num_attention_heads: 2,
        intermediate_size: 32,
        hidden_act: "gelu".into(),
        hidden_dropout_prob: 0.0,
        attention_probs_dropout_prob: 0.0,
        max_position_embeddings: 16,
        type_vocab_size: 2,
        layer_norm_eps: 1e-12,
        classifier_dropout: None,
        pad_token_id: None,
    }
}

/// A batch of `ids` with the given attention `mask`, all token types 0.
pub fn batch(ids: Vec<i64>, mask: Vec<i64>, shape: [usize; 2], device: &Device) -> BertInput {
    let ints = |v: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(v, shape), device);
    BertInput::new(ints(ids), ints(vec![0; shape[0] * shape[1]]), ints(mask))
}

pub fn floats<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32")
}

/// The largest absolute difference between two equally long sequences.
pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}
