//! Measures training-step throughput (forward, backward, AdamW) of the
//! pre-trained MiniLM on a processed split: groundwork for `make bench-train`.
//!
//! cargo run --release -p kiln-model --example train_step_speed -- \
//!     data/banking77/processed/train.parquet [steps] [batch] [threads]

use std::path::Path;
use std::time::Instant;

use burn::optim::GradientsParams;
use kiln_core::model_folder::WEIGHTS;
use kiln_model::batch::{bucketed_batches, collate};
use kiln_model::bert::load_safetensors;
use kiln_model::optim::AdamWSettings;
use kiln_model::{BertClassifier, BertConfig, DeviceSpec};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let split = args.get(1).map_or("data/banking77/processed/train.parquet", String::as_str);
    let steps: usize = args.get(2).map_or(Ok(20), |s| s.parse())?;
    let batch_size: usize = args.get(3).map_or(Ok(32), |s| s.parse())?;
    let threads: i32 = args.get(4).map_or(Ok(2), |s| s.parse())?;
    tch::set_num_threads(threads);

    let model_dir = Path::new("models/pretrained/all-MiniLM-L6-v2");
    let examples = kiln_data::processed::read_examples(Path::new(split))?;
    let labels = examples.iter().map(|e| e.label_id).max().unwrap_or(0) as usize + 1;
    let device = DeviceSpec::Cpu.device().autodiff();
    let mut model = BertClassifier::new(&BertConfig::load(model_dir)?, labels, &device);
    load_safetensors(&mut model, &model_dir.join(WEIGHTS))?;
    let mut optimizer = AdamWSettings::default().init();

    let lengths: Vec<usize> = examples.iter().map(|e| e.len()).collect();
    let batches = bucketed_batches(&lengths, batch_size, 42);
    let (mut samples, mut tokens, mut started) = (0usize, 0usize, Instant::now());
    for (step, batch) in batches.iter().take(steps + 2).enumerate() {
        if step == 2 {
            // Two warm-up steps (allocator, LibTorch kernels) are not timed.
            (samples, tokens, started) = (0, 0, Instant::now());
        }
        let rows: Vec<_> = batch.iter().map(|&i| &examples[i]).collect();
        let (input, targets) = collate(&rows, 0, &device);
        let (loss, _) = model.loss(input, targets);
        let grads = GradientsParams::from_grads(loss.backward(), &model);
        model = optimizer.step(1e-4, model, grads);
        samples += rows.len();
        tokens += rows.iter().map(|e| e.len()).sum::<usize>();
    }
    let seconds = started.elapsed().as_secs_f64();
    eprintln!(
        "{steps} steps of batch {batch_size}, {threads} threads: {:.1} samples/s, {:.0} tokens/s ({:.2} s/step)",
        samples as f64 / seconds,
        tokens as f64 / seconds,
        seconds / steps as f64
    );
    Ok(())
}
