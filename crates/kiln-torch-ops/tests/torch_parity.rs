//! kiln's int8 layer against torch.ao's dynamic quantized Linear with per-channel
//! weights (fixture: scripts/fixtures/make_int8_fixture.py). Both run LibTorch's fbgemm
//! ops on the same numbers, so they agree to float rounding; a wrong scale,
//! zero point or weight layout would be off by the quantization error (~1%).

use std::path::Path;

use kiln_torch_ops::Int8Linear;
use tch::Tensor;

#[derive(serde::Deserialize)]
struct Fixture {
    weight: Vec<f32>,
    bias: Vec<f32>,
    input: Vec<f32>,
    input_shape: Vec<i64>,
    int8_output: Vec<f32>,
    float_output: Vec<f32>,
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter().zip(b).map(|(x, y)| (x - y).abs()).fold(0.0, f32::max)
}

#[test]
fn int8_linear_matches_torch_quantize_dynamic() {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/fixtures/int8_linear_torch.json");
    let fixture: Fixture = serde_json::from_str(&std::fs::read_to_string(path).expect("fixture")).expect("parses");
    let out_features = fixture.bias.len() as i64;
    let in_features = *fixture.input_shape.last().expect("shape");
    let weight = Tensor::from_slice(&fixture.weight).reshape([out_features, in_features]);
    let bias = Tensor::from_slice(&fixture.bias);
    let input = Tensor::from_slice(&fixture.input).reshape(&fixture.input_shape[..]);

    let layer = Int8Linear::pack(&weight, Some(&bias)).expect("packs");
    let output = layer.forward(&input).expect("runs");
    let mut expected_shape = fixture.input_shape.clone();
    *expected_shape.last_mut().expect("shape") = out_features;
    assert_eq!(output.size(), expected_shape);
    let got: Vec<f32> = output.flatten(0, -1).try_into().expect("f32");

    let to_torch_int8 = max_abs_diff(&got, &fixture.int8_output);
    let to_float = max_abs_diff(&got, &fixture.float_output);
    assert!(to_torch_int8 < 1e-5, "differs from torch's int8 layer by {to_torch_int8}");
    // The check above is only meaningful if quantization visibly moves the output.
    assert!(to_float > 1e-3, "int8 output equals fp32 ({to_float}): was anything quantized?");
}
