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

mod config;
mod network;
mod weights;

pub use config::{BERT, BertConfig, DISTILBERT, ROBERTA, XLM_ROBERTA, safetensors_values};
pub use network::{BertClassifier, BertInput, BertModel, BertOutput, WithHead};
pub use weights::{LoadReport, load_safetensors, load_safetensors_copy, load_safetensors_encoder, save_safetensors};

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

#[cfg(test)]
mod tests {
    use burn::optim::{AdamWConfig, GradientsParams};
    use burn::tensor::{Int, Tensor, TensorData};

    use kiln_core::Precision;

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::{batch, floats, max_abs_diff, tiny};

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

    /// Training's shortcut for frozen layers: the encoder started from the
    /// frozen part's output (`frozen_hidden`) gives what the whole encoder
    /// gives, and the inference copy training computes that output with
    /// (`valid()`) still knows which layers are frozen.
    #[test]
    fn starting_above_the_frozen_layers_gives_the_whole_encoders_output() {
        let device = DeviceSpec::Cpu.device();
        let mut model = BertClassifier::new(&tiny(), 3, &device.clone().autodiff());
        let probe = batch(vec![1, 2], vec![1, 1], [1, 2], &device.clone().autodiff());
        assert!(model.bert.encode_frozen(probe).is_none(), "nothing frozen");
        model.bert.freeze_below_top(1);
        let model = burn::module::Module::valid(&model);
        assert_eq!(model.bert.frozen_layers, Some(1), "of tiny's 2 layers");
        let ids = vec![5, 6, 7, 8, 9, 10, 11, 0, 0];
        let input = batch(ids, vec![1, 1, 1, 1, 1, 1, 1, 0, 0], [3, 3], &device);
        let whole = floats(model.forward(input.clone()));
        let mut started = input.clone();
        started.frozen_hidden = model.bert.encode_frozen(input);
        let above = floats(model.forward(started));
        let diff = max_abs_diff(&whole, &above);
        assert!(diff < 1e-6, "largest difference {diff}: {whole:?} against {above:?}");
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

    /// A head of the right shape whose rows mean other labels is left out on request.
    #[test]
    fn a_head_can_be_left_out() {
        let device = DeviceSpec::Cpu.device();
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("model.safetensors");
        let saved = BertClassifier::new(&tiny(), 3, &device);
        save_safetensors(&saved, &path).expect("save");
        let input = batch(vec![1, 5, 9], vec![1; 3], [1, 3], &device);
        let mut fresh = BertClassifier::new(&tiny(), 3, &device);
        let report = load_safetensors_encoder(&mut fresh, &path).expect("encoder loads");
        assert_eq!(report.initialised, ["classifier.bias", "classifier.weight"]);
        assert_eq!(floats(saved.bert.forward(input.clone()).pooled), floats(fresh.bert.forward(input.clone()).pooled));
        assert_ne!(floats(saved.forward(input.clone())), floats(fresh.forward(input.clone())), "its own head kept");
        let mut whole = BertClassifier::new(&tiny(), 3, &device);
        assert!(load_safetensors(&mut whole, &path).expect("loads").initialised.is_empty());
        assert_eq!(floats(saved.forward(input.clone())), floats(whole.forward(input)));
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
        for precision in [Precision::Fp32, Precision::Bf16] {
            overfit_32_examples(precision);
        }
    }

    /// bf16 training: the same loss and gradients as fp32 up to bf16's
    /// rounding (not equal: the products did run in bf16), every gradient an
    /// fp32 tensor for the fp32 weights, through the head, the encoder's
    /// linear layers and back to the embeddings.
    #[test]
    fn bf16_gradients_are_fp32_and_follow_fp32s() {
        let device = DeviceSpec::Cpu.device().autodiff();
        let model = BertClassifier::new(&tiny(), 3, &device);
        let ids: Vec<i64> = (0..4 * 6).map(|i| 1 + (i * 7) % 39).collect();
        let input = batch(ids, vec![1; 24], [4, 6], &device);
        let targets = Tensor::<1, Int>::from_data(TensorData::new(vec![0i64, 1, 2, 1], [4]), &device);
        let gradients = |precision| {
            let mut model = model.clone();
            model.bert.set_precision(precision);
            let (loss, _) = model.loss(input.clone(), targets.clone());
            let grads = loss.clone().backward();
            let layer = &model.bert.encoder.layer[0];
            let grad = |tensor: Tensor<2>| floats(tensor.grad(&grads).expect("a gradient"));
            let bias = |tensor: Tensor<1>| floats(tensor.grad(&grads).expect("a gradient"));
            let bias_of = |linear: &burn::nn::Linear| linear.bias.as_ref().expect("bias").val();
            (
                floats(loss)[0],
                [
                    grad(model.classifier.weight.val()),
                    grad(layer.attention.self_attn.query.weight.val()),
                    bias(bias_of(&layer.intermediate.dense)),
                    grad(model.bert.embeddings.word_embeddings.weight.val()),
                ],
            )
        };
        let (fp32_loss, fp32) = gradients(Precision::Fp32);
        let (bf16_loss, bf16) = gradients(Precision::Bf16);
        assert!((fp32_loss - bf16_loss).abs() < 1e-2 * fp32_loss, "losses {fp32_loss} and {bf16_loss}");
        for (name, a, b) in ["head", "query", "feed-forward bias", "embeddings"]
            .iter()
            .zip(&fp32)
            .zip(&bf16)
            .map(|((n, a), b)| (n, a, b))
        {
            let norm = a.iter().map(|x| x * x).sum::<f32>().sqrt();
            let diff = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum::<f32>().sqrt();
            assert!(norm > 0.0, "{name}: no fp32 gradient");
            assert!(diff < 5e-2 * norm, "{name}: bf16 gradient {diff} from fp32's (norm {norm})");
            assert!(diff > 0.0, "{name}: bf16 gradient equals fp32's: the products did not run in bf16");
        }
    }

    fn overfit_32_examples(precision: Precision) {
        let device = DeviceSpec::Cpu.device().autodiff();
        let mut model = BertClassifier::new(&tiny(), 2, &device);
        model.bert.set_precision(precision);
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
        assert!(final_loss < losses[0] / 10.0, "{precision}: loss fell from {} to only {final_loss}", losses[0]);
        assert_eq!(correct, 32, "{precision}: memorised {correct}/32 (loss {final_loss})");
        assert_eq!(model.bert.precision, precision, "the optimizer's step keeps the precision");
    }
}
