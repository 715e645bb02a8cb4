//! Where one training step's time goes: forward (with the loss), backward,
//! gradient collection and global-norm clipping, and the AdamW update, on
//! fixed batches of `batch` x `length` real tokens (no padding) whose token ids
//! follow `scripts/bench/bench_step_reference.py`'s formula, so plain torch can time
//! the identical step. `make bench-train` runs both and prints the ratio.
//!
//! cargo run --release --example train_step -- MODEL_DIR [threads] [batch] [lengths] [steps] [precision]
//! e.g. `models/pretrained/all-MiniLM-L6-v2 2 32 16,32 10 bf16`; prints one JSON
//! line per length (milliseconds per step, median over the timed steps).

#![allow(clippy::print_stdout)] // A measuring tool: its figures are its output.

use std::path::Path;
use std::time::Instant;

use burn::optim::GradientsParams;
use burn::tensor::{Device, Int, Tensor};
use kiln_core::model_folder::WEIGHTS;
use kiln_core::{Example, Precision};
use kiln_model::batch::collate;
use kiln_model::bert::load_safetensors;
use kiln_model::optim::{AdamWSettings, clip_global_norm};
use kiln_model::{BertClassifier, BertConfig, BertInput, DeviceSpec, device};

/// BANKING77's label count: the head's size barely matters to the step.
const LABELS: usize = 77;
const WARMUP_STEPS: usize = 3;

/// The token id at (`row`, `column`) of a `length`-token text: [CLS] ... [SEP],
/// spread over the vocabulary. `bench_step_reference.py` has the same formula.
fn token_id(row: usize, column: usize, length: usize) -> u32 {
    match column {
        0 => 101,
        c if c + 1 == length => 102,
        c => 1000 + ((row * 7919 + c * 104_729) % 20_000) as u32,
    }
}

/// `batch` texts of `length` real tokens, collated as `train` collates them.
fn fixed_batch(batch: usize, length: usize, device: &Device) -> (BertInput, Tensor<1, Int>) {
    let examples: Vec<Example> = (0..batch)
        .map(|row| Example {
            id: row.to_string(),
            input_ids: (0..length).map(|column| token_id(row, column, length)).collect(),
            token_type_ids: Some(vec![0; length]),
            label_id: (row % LABELS) as u32,
            label_probs: None,
            weight: None,
        })
        .collect();
    collate(&examples.iter().collect::<Vec<_>>(), 0, device)
}

/// Milliseconds per phase, one entry a step.
#[derive(Default)]
struct Phases {
    forward: Vec<f64>,
    backward: Vec<f64>,
    clip: Vec<f64>,
    optimizer: Vec<f64>,
    total: Vec<f64>,
}

fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    sorted[sorted.len() / 2]
}

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = Path::new(args.get(1).map_or("models/pretrained/all-MiniLM-L6-v2", String::as_str));
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    let batch: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let lengths: Vec<usize> =
        args.get(4).map_or("16,32", String::as_str).split(',').map(str::parse).collect::<Result<_, _>>()?;
    let steps: usize = args.get(5).map_or(Ok(10), |s| s.parse())?;
    let precision = match args.get(6).map_or("fp32", String::as_str) {
        "fp32" => Precision::Fp32,
        "bf16" => Precision::Bf16,
        other => anyhow::bail!("precision must be fp32 or bf16, got {other}"),
    };
    device::set_threads(threads);

    let device = DeviceSpec::Cpu.device().autodiff();
    let config = BertConfig::load(model_dir)?;
    for length in lengths {
        let mut model = BertClassifier::new(&config, LABELS, &device);
        load_safetensors(&mut model, &model_dir.join(WEIGHTS))?;
        model.bert.set_precision(precision);
        let mut optimizer = AdamWSettings::default().init();
        let (input, labels) = fixed_batch(batch, length, &device);
        let mut phases = Phases::default();
        for step in 0..WARMUP_STEPS + steps {
            let started = Instant::now();
            let (loss, _) = model.loss(input.clone(), labels.clone());
            // Reading the loss is what `train` does each step; on the CPU it
            // costs nothing, as LibTorch has already computed it.
            let _ = loss.clone().into_scalar::<f32>();
            let forward = Instant::now();
            let gradients = loss.backward();
            let backward = Instant::now();
            let (grads, _norm) = clip_global_norm(&model, GradientsParams::from_grads(gradients, &model), 1.0);
            let clipped = Instant::now();
            model = optimizer.step(1e-4, model, grads);
            let done = Instant::now();
            if step >= WARMUP_STEPS {
                let ms = |from: Instant, to: Instant| (to - from).as_secs_f64() * 1e3;
                phases.forward.push(ms(started, forward));
                phases.backward.push(ms(forward, backward));
                phases.clip.push(ms(backward, clipped));
                phases.optimizer.push(ms(clipped, done));
                phases.total.push(ms(started, done));
            }
        }
        println!(
            "{}",
            serde_json::json!({
                "side": if precision == Precision::Bf16 { "kiln bf16" } else { "kiln" },
                "batch": batch,
                "length": length,
                "threads": threads,
                "steps": steps,
                "forward_ms": median(&phases.forward),
                "backward_ms": median(&phases.backward),
                "clip_ms": median(&phases.clip),
                "optimizer_ms": median(&phases.optimizer),
                "step_ms": median(&phases.total),
            })
        );
    }
    Ok(())
}
