//! kiln's BERT against Hugging Face `transformers` on the real all-MiniLM-L6-v2
//! weights (fixture: scripts/fixtures/make_model_fixture.py): max abs difference <= 1e-4
//! in fp32, padded batch included.

use std::path::{Path, PathBuf};

use burn::module::Param;
use burn::tensor::{Int, Tensor, TensorData};
use kiln_model::bert::load_safetensors;
use kiln_model::{BertClassifier, BertConfig, BertInput, DeviceSpec};

const TOLERANCE: f32 = 1e-4;

/// The CPU, or `KILN_TEST_DEVICE` (`cuda`: scripts/checks/gpu_check.sh runs the fp32
/// parity tests on a GPU this way). int8 is CPU-only and ignores it.
fn parity_device() -> burn::tensor::Device {
    let spec = std::env::var("KILN_TEST_DEVICE").map_or(Ok(DeviceSpec::Cpu), |name| name.parse());
    spec.expect("KILN_TEST_DEVICE: cpu, cuda or cuda:N").device()
}

/// The pre-trained MiniLM, which `make setup` (and so `make test`) installs:
/// missing is a broken set-up, not a reason to skip.
fn model_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../models/pretrained/all-MiniLM-L6-v2");
    assert!(dir.join("model.safetensors").exists(), "{} is missing: run `make setup`", dir.display());
    dir
}

#[derive(serde::Deserialize)]
struct Fixture {
    weights_sha256: String,
    shape: [usize; 2],
    hidden_size: usize,
    input_ids: Vec<i64>,
    token_type_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    last_hidden_state: Vec<f32>,
    pooled: Vec<f32>,
    classifier_weight: Vec<f32>,
    classifier_bias: Vec<f32>,
    logits: Vec<f32>,
}

fn fixture() -> Fixture {
    read_fixture("bert_minilm.json")
}

/// A committed fixture from tests/fixtures (made by scripts/fixtures/).
fn read_fixture<T: serde::de::DeserializeOwned>(name: &str) -> T {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures").join(name);
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

impl Fixture {
    /// The fixture's padded batch on `device`.
    fn input(&self, device: &burn::tensor::Device) -> BertInput {
        BertInput::new(
            ints(&self.input_ids, self.shape, device),
            ints(&self.token_type_ids, self.shape, device),
            ints(&self.attention_mask, self.shape, device),
        )
    }
}

/// The fixture's 3-label head (HF's Linear is [out, in]; burn's is [in, out]).
fn fixture_head(model: &mut BertClassifier, fixture: &Fixture, device: &burn::tensor::Device) {
    let shape = [3, fixture.hidden_size];
    let weight = Tensor::<2>::from_data(TensorData::new(fixture.classifier_weight.clone(), shape), device);
    model.classifier.weight = Param::from_tensor(weight.transpose());
    model.classifier.bias =
        Some(Param::from_tensor(Tensor::from_data(TensorData::new(fixture.classifier_bias.clone(), [3]), device)));
}

fn ints(values: &[i64], shape: [usize; 2], device: &burn::tensor::Device) -> Tensor<2, Int> {
    Tensor::from_data(TensorData::new(values.to_vec(), shape), device)
}

fn floats<const D: usize>(tensor: Tensor<D>) -> Vec<f32> {
    tensor.into_data().try_to_vec::<f32>().expect("f32")
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "shapes differ");
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn minilm_matches_transformers_on_a_padded_batch() {
    let dir = model_dir();
    let fixture = fixture();
    let weights = dir.join("model.safetensors");
    assert_eq!(kiln_core::output::sha256_file(&weights).expect("hash"), fixture.weights_sha256);

    let device = parity_device();
    let config = BertConfig::load(&dir).expect("config.json");
    let mut model = BertClassifier::new(&config, 3, &device);
    let report = load_safetensors(&mut model, &weights).expect("weights load");
    assert_eq!(report.initialised, ["classifier.bias", "classifier.weight"], "only the head is new");
    assert_eq!(report.unused, ["bert.embeddings.position_ids"], "every weight but a buffer is used");

    fixture_head(&mut model, &fixture, &device);

    let input = fixture.input(&device);
    let output = model.bert.forward(input.clone());
    let hidden_diff = max_abs_diff(&floats(output.last_hidden_state), &fixture.last_hidden_state);
    let pooled_diff = max_abs_diff(&floats(output.pooled), &fixture.pooled);
    let logits_diff = max_abs_diff(&floats(model.forward(input)), &fixture.logits);
    eprintln!("max abs diff: hidden {hidden_diff:e}, pooled {pooled_diff:e}, logits {logits_diff:e}");
    assert!(hidden_diff <= TOLERANCE, "last hidden state differs by {hidden_diff}");
    assert!(pooled_diff <= TOLERANCE, "pooled output differs by {pooled_diff}");
    assert!(logits_diff <= TOLERANCE, "logits differ by {logits_diff}");
}

fn relative_error(got: &[f32], want: &[f32]) -> f64 {
    assert_eq!(got.len(), want.len(), "shapes differ");
    let diff: f64 = got.iter().zip(want).map(|(a, b)| f64::from(a - b).powi(2)).sum();
    let norm: f64 = want.iter().map(|b| f64::from(*b).powi(2)).sum();
    (diff / norm).sqrt()
}

/// `quantize = "int8"` against torch.ao's `quantize_dynamic` of the same encoder
/// (fixture: scripts/fixtures/make_int8_fixture.py). Both quantize with LibTorch's own
/// ops, so they agree far more closely than either agrees with fp32; a wrong
/// layer, scale or transpose would put kiln as far from torch's int8 as from fp32.
#[test]
fn minilm_int8_matches_torch_quantize_dynamic() {
    #[derive(serde::Deserialize)]
    struct Int8Fixture {
        weights_sha256: String,
        shape: [usize; 2],
        last_hidden_state_int8: Vec<f32>,
    }
    let dir = model_dir();
    let fp32 = fixture();
    let int8: Int8Fixture = read_fixture("bert_minilm_int8.json");
    assert_eq!(int8.weights_sha256, fp32.weights_sha256);
    assert_eq!(int8.shape, fp32.shape);

    let device = DeviceSpec::Cpu.device();
    let mut model = BertClassifier::new(&BertConfig::load(&dir).expect("config.json"), 3, &device);
    load_safetensors(&mut model, &dir.join("model.safetensors")).expect("weights load");
    model.bert.quantize_int8().expect("quantizes");
    let input = fp32.input(&device);
    let hidden = floats(model.bert.encode(input));
    let to_torch_int8 = relative_error(&hidden, &int8.last_hidden_state_int8);
    let to_fp32 = relative_error(&hidden, &fp32.last_hidden_state);
    eprintln!("relative error: to torch int8 {to_torch_int8:.2e}, to fp32 {to_fp32:.2e}");
    assert!(to_torch_int8 < 1e-4, "kiln's int8 encoder is {to_torch_int8} from torch's");
    assert!(to_fp32 > 5.0 * to_torch_int8, "int8 is as close to fp32 ({to_fp32}) as to torch's int8: not quantized?");
}

/// `precision = "bf16"` against `torch.autocast(dtype=torch.bfloat16)` of the
/// same model's first layer, pooler and head (fixture:
/// scripts/fixtures/make_bf16_fixture.py, which says why one layer), in
/// training's form (casts of the live weights) and inference's (packed bf16
/// copies). Both sides round the same products at the same points, so kiln
/// is far closer to autocast than fp32 is, or than the model cast wholly to
/// bf16 (LayerNorm and softmax in bf16 too) is: a wrong cast fails.
#[test]
fn minilm_bf16_matches_torch_autocast() {
    #[derive(serde::Deserialize)]
    struct Bf16Fixture {
        weights_sha256: String,
        shape: [usize; 2],
        layers: usize,
        last_hidden_state_fp32: Vec<f32>,
        logits_fp32: Vec<f32>,
        last_hidden_state_autocast: Vec<f32>,
        logits_autocast: Vec<f32>,
        last_hidden_state_all_bf16: Vec<f32>,
    }
    let dir = model_dir();
    let batch = fixture();
    let bf16: Bf16Fixture = read_fixture("bert_minilm_bf16.json");
    assert_eq!(bf16.weights_sha256, batch.weights_sha256);
    assert_eq!(bf16.shape, batch.shape);

    let device = parity_device();
    let mut model = BertClassifier::new(&BertConfig::load(&dir).expect("config.json"), 3, &device);
    load_safetensors(&mut model, &dir.join("model.safetensors")).expect("weights load");
    model.bert.encoder.layer.truncate(bf16.layers);
    fixture_head(&mut model, &batch, &device);
    let input = batch.input(&device);
    let fp32 = floats(model.bert.encode(input.clone()));
    assert!(relative_error(&fp32, &bf16.last_hidden_state_fp32) < 1e-5, "the fp32 layer is not torch's");

    let fp32_error = relative_error(&bf16.last_hidden_state_fp32, &bf16.last_hidden_state_autocast);
    let fp32_logits_error = relative_error(&bf16.logits_fp32, &bf16.logits_autocast);
    let wrong_cast = relative_error(&bf16.last_hidden_state_all_bf16, &bf16.last_hidden_state_autocast);
    let mut training = model.clone();
    training.bert.set_precision(kiln_core::Precision::Bf16);
    let mut inference = model;
    inference.bert.pack_bf16();
    for (form, model) in [("live casts", training), ("packed copies", inference)] {
        let error = relative_error(&floats(model.bert.encode(input.clone())), &bf16.last_hidden_state_autocast);
        let logits_error = relative_error(&floats(model.forward(input.clone())), &bf16.logits_autocast);
        eprintln!(
            "{form}: relative error to autocast {error:.2e} (logits {logits_error:.2e}); fp32 to autocast \
             {fp32_error:.2e} (logits {fp32_logits_error:.2e}), all-bf16 to autocast {wrong_cast:.2e}"
        );
        assert!(error < fp32_error / 20.0, "{form}: kiln's bf16 is {error} from autocast, fp32 is {fp32_error}");
        assert!(error < wrong_cast / 20.0, "{form}: kiln's bf16 is {error} from autocast, all-bf16 {wrong_cast}");
        assert!(
            logits_error < fp32_logits_error / 5.0,
            "{form}: logits {logits_error} from autocast's, fp32's are {fp32_logits_error}"
        );
    }
}

#[test]
fn int8_packs_every_encoder_layer_and_leaves_the_float_weights() {
    let dir = model_dir();
    let device = DeviceSpec::Cpu.device();
    let config = BertConfig::load(&dir).expect("config.json");
    let mut model = BertClassifier::new(&config, 3, &device);
    load_safetensors(&mut model, &dir.join("model.safetensors")).expect("weights load");
    let before = floats(model.bert.encoder.layer[0].intermediate.dense.weight.val());
    model.bert.quantize_int8().expect("quantizes");
    assert!(model.bert.encoder.layer.iter().all(|layer| layer.intermediate.packed.is_int8()));
    assert_eq!(floats(model.bert.encoder.layer[0].intermediate.dense.weight.val()), before);
}

#[test]
fn padding_does_not_change_real_tokens() {
    let dir = model_dir();
    let fixture = fixture();
    let device = parity_device();
    let config = BertConfig::load(&dir).expect("config.json");
    let mut model = BertClassifier::new(&config, 2, &device);
    load_safetensors(&mut model, &dir.join("model.safetensors")).expect("weights load");

    // Row 1 of the fixture ("Great film!") is padded; run it alone, unpadded.
    let [_, seq] = fixture.shape;
    let row = &fixture.attention_mask[seq..2 * seq];
    let real = row.iter().filter(|&&m| m == 1).count();
    assert!(real < seq, "the fixture row must carry padding");
    let alone = BertInput::new(
        ints(&fixture.input_ids[seq..seq + real], [1, real], &device),
        ints(&fixture.token_type_ids[seq..seq + real], [1, real], &device),
        ints(&row[..real], [1, real], &device),
    );
    let alone = floats(model.bert.forward(alone).last_hidden_state);
    let hidden = fixture.hidden_size;
    let padded = &fixture.last_hidden_state[seq * hidden..(seq + real) * hidden];
    let diff = max_abs_diff(&alone, padded);
    assert!(diff <= TOLERANCE, "padding changed real tokens' states by {diff}");
}

#[test]
fn unsupported_configs_are_clear_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let write = |json: &str| std::fs::write(dir.path().join("config.json"), json).expect("write");
    write(
        r#"{"model_type": "gpt2", "vocab_size": 10, "hidden_size": 8, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 8}"#,
    );
    let message = BertConfig::load(dir.path()).expect_err("gpt2").to_string();
    assert!(message.contains("model_type 'gpt2'") && message.contains("config.json"), "{message}");
    write(
        r#"{"model_type": "bert", "vocab_size": 10, "hidden_size": 9, "num_hidden_layers": 1, "num_attention_heads": 2, "intermediate_size": 16, "max_position_embeddings": 8}"#,
    );
    assert!(BertConfig::load(dir.path()).expect_err("heads").to_string().contains("multiple"));
    assert!(BertConfig::load(&dir.path().join("nowhere")).is_err());
}

#[derive(serde::Deserialize)]
struct FixtureTensor {
    shape: Vec<usize>,
    data: Vec<f32>,
}

#[derive(serde::Deserialize)]
struct DistilBertFixture {
    config: serde_json::Value,
    tensors: std::collections::BTreeMap<String, FixtureTensor>,
    shape: [usize; 2],
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    last_hidden_state: Vec<f32>,
    logits: Vec<f32>,
}

/// Writes a fixture's model back out as the folder transformers saved:
/// config.json and model.safetensors under its own key names; `tensors` are
/// (name, little-endian f32 bytes, shape).
fn write_model_folder(config: &serde_json::Value, bytes: Vec<(String, Vec<u8>, Vec<usize>)>, dir: &Path) {
    std::fs::write(dir.join("config.json"), config.to_string()).expect("config.json");
    let views = bytes.iter().map(|(name, data, shape)| {
        (
            name.clone(),
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), data).expect("view"),
        )
    });
    let metadata = std::collections::HashMap::from([("format".to_owned(), "pt".to_owned())]);
    let file = safetensors::serialize(views, Some(metadata)).expect("serialise");
    std::fs::write(dir.join("model.safetensors"), file).expect("model.safetensors");
}

/// The tensor names in a safetensors file's header.
fn safetensors_keys(path: &Path) -> Vec<String> {
    let bytes = std::fs::read(path).expect("read");
    let (_, metadata) = safetensors::SafeTensors::read_metadata(&bytes).expect("a safetensors file");
    let mut keys: Vec<String> = metadata.tensors().keys().cloned().collect();
    keys.sort();
    keys
}

/// DistilBERT from the same blocks: a seeded random `DistilBertForSequenceClassification`
/// as transformers saves it (fixture: scripts/fixtures/make_distilbert_fixture.py) loads by
/// DistilBERT's key names, reproduces its outputs, and saves back under them.
#[test]
fn distilbert_matches_transformers_and_round_trips_its_key_names() {
    let fixture: DistilBertFixture = read_fixture("distilbert_tiny.json");
    let dir = tempfile::tempdir().expect("tempdir");
    let bytes = fixture
        .tensors
        .iter()
        .map(|(name, t)| (name.clone(), t.data.iter().flat_map(|v| v.to_le_bytes()).collect(), t.shape.clone()))
        .collect();
    write_model_folder(&fixture.config, bytes, dir.path());
    let config = BertConfig::load(dir.path()).expect("a DistilBERT config.json");
    assert!(config.is_distilbert() && config.type_vocab_size == 0);
    assert_eq!(config.classification_architecture(), "DistilBertForSequenceClassification");

    let device = parity_device();
    let mut model = BertClassifier::new(&config, 3, &device);
    let report = load_safetensors(&mut model, &dir.path().join("model.safetensors")).expect("loads");
    assert!(report.initialised.is_empty() && report.unused.is_empty(), "{report:?}");

    let shape = fixture.shape;
    let input = BertInput::new(
        ints(&fixture.input_ids, shape, &device),
        ints(&vec![0; shape[0] * shape[1]], shape, &device),
        ints(&fixture.attention_mask, shape, &device),
    );
    let hidden = floats(model.bert.forward(input.clone()).last_hidden_state);
    // Only real tokens are compared: what sits at padded positions is unspecified.
    let real: Vec<(f32, f32)> = hidden
        .chunks(config.hidden_size)
        .zip(fixture.last_hidden_state.chunks(config.hidden_size))
        .zip(&fixture.attention_mask)
        .filter(|(_, mask)| **mask == 1)
        .flat_map(|((ours, theirs), _)| ours.iter().copied().zip(theirs.iter().copied()).collect::<Vec<_>>())
        .collect();
    let hidden_diff = real.iter().map(|(a, b)| (a - b).abs()).fold(0.0, f32::max);
    assert!(hidden_diff <= TOLERANCE, "last hidden state differs by {hidden_diff}");
    let logits = floats(model.forward(input.clone()));
    let logits_diff = max_abs_diff(&logits, &fixture.logits);
    assert!(logits_diff <= TOLERANCE, "logits differ by {logits_diff}");
    eprintln!("distilbert parity: max abs diff hidden {hidden_diff:.2e}, logits {logits_diff:.2e}");

    let saved = dir.path().join("saved.safetensors");
    kiln_model::bert::save_safetensors(&model, &saved).expect("saves");
    let theirs: Vec<String> = fixture.tensors.keys().cloned().collect();
    assert_eq!(safetensors_keys(&saved), theirs, "kiln saves DistilBERT under transformers' own names");
    let mut reloaded = BertClassifier::new(&config, 3, &device);
    load_safetensors(&mut reloaded, &saved).expect("reloads");
    assert_eq!(floats(reloaded.forward(input)), logits);
}

#[derive(serde::Deserialize)]
struct HexTensor {
    shape: Vec<usize>,
    f32_hex: String,
}

#[derive(serde::Deserialize)]
struct TokenModel {
    input_ids: Vec<i64>,
    attention_mask: Vec<i64>,
    config: serde_json::Value,
    tensors: std::collections::BTreeMap<String, HexTensor>,
    logits: Vec<f32>,
    losses: std::collections::BTreeMap<String, f32>,
}

#[derive(serde::Deserialize)]
struct TokenFixture {
    shape: [usize; 2],
    labels: Vec<i64>,
    class_weights: Vec<f32>,
    focal_gamma: f32,
    models: std::collections::BTreeMap<String, TokenModel>,
}

/// Token classification heads: seeded random `BertForTokenClassification`,
/// `DistilBertForTokenClassification`, `RobertaForTokenClassification` and
/// `XLMRobertaForTokenClassification` as transformers saves them (fixture:
/// scripts/fixtures/make_token_fixture.py) load by their key names (no pooler, no
/// pre_classifier), reproduce transformers' logits, give torch's masked,
/// weighted and focal losses, and save back exactly transformers' keys.
#[test]
fn token_classifiers_match_transformers_and_torch_losses() {
    use kiln_model::BertTokenClassifier;
    use kiln_model::token::token_loss;
    let fixture: TokenFixture = read_fixture("token_tiny.json");
    let device = parity_device();
    let shape = fixture.shape;
    let labels = Tensor::<2, Int>::from_data(TensorData::new(fixture.labels.clone(), shape), &device);
    assert_eq!(fixture.models.len(), 4);
    for (name, model_fixture) in &fixture.models {
        let dir = tempfile::tempdir().expect("tempdir");
        let bytes = model_fixture
            .tensors
            .iter()
            .map(|(key, t)| (key.clone(), hex::decode(&t.f32_hex).expect("hex"), t.shape.clone()))
            .collect();
        write_model_folder(&model_fixture.config, bytes, dir.path());
        let config = BertConfig::load(dir.path()).expect("config.json");
        assert_eq!(config.is_roberta(), name.contains("roberta"), "{name}");
        let mut model = BertTokenClassifier::new(&config, 5, &device);
        let report = load_safetensors(&mut model, &dir.path().join("model.safetensors")).expect("loads");
        assert!(report.initialised.is_empty(), "{name}: {report:?}");
        assert!(report.unused.iter().all(|k| k.ends_with("position_ids")), "{name}: {report:?}");
        let input = BertInput::new(
            ints(&model_fixture.input_ids, shape, &device),
            ints(&vec![0; shape[0] * shape[1]], shape, &device),
            ints(&model_fixture.attention_mask, shape, &device),
        );
        let logits = model.forward(input.clone());
        // Padded positions are compared too: transformers computes them the same way.
        let diff = max_abs_diff(&floats(logits.clone()), &model_fixture.logits);
        assert!(diff <= TOLERANCE, "{name}: logits differ by {diff}");
        let loss =
            |weights: Option<&[f32]>, gamma: f32| floats(token_loss(logits.clone(), labels.clone(), weights, gamma))[0];
        let weights = Some(fixture.class_weights.as_slice());
        for (key, ours) in [
            ("cross_entropy", loss(None, 0.0)),
            ("weighted_cross_entropy", loss(weights, 0.0)),
            ("weighted_focal", loss(weights, fixture.focal_gamma)),
        ] {
            let theirs = model_fixture.losses[key];
            assert!((ours - theirs).abs() <= 1e-5, "{name} {key}: kiln {ours}, torch {theirs}");
        }
        eprintln!("{name} token classification parity: max abs diff logits {diff:.2e}");

        let saved = dir.path().join("saved.safetensors");
        kiln_model::bert::save_safetensors(&model, &saved).expect("saves");
        let theirs: Vec<String> =
            model_fixture.tensors.keys().filter(|k| !k.ends_with("position_ids")).cloned().collect();
        assert_eq!(safetensors_keys(&saved), theirs, "{name}: kiln saves transformers' own names, no pooler");
        if config.is_roberta() {
            // RoBERTa's sequence head (dense + out_proj) is not BERT's: a clear error, not a wrong model.
            let mut sequence = BertClassifier::new(&config, 5, &device);
            let error = load_safetensors(&mut sequence, &saved).expect_err("no RoBERTa sequence head yet");
            assert!(error.to_string().contains("token classification"), "{error}");
        }
    }
}
