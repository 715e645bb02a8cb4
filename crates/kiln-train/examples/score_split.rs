//! Scores a trained model folder on a processed split (accuracy, macro-F1,
//! loss): how the BANKING77 quality figure in the train issue's note was taken,
//! until the `eval` stage lands.
//!
//! cargo run --release -p kiln-train --example score_split -- \
//!     artifacts/banking77/model data/banking77/processed/test.parquet [threads]

use std::path::Path;

use kiln_core::LabelMap;
use kiln_core::model_folder::{LABELS, WEIGHTS};
use kiln_model::bert::load_safetensors;
use kiln_model::{BertClassifier, BertConfig, DeviceSpec, device};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let model_dir = Path::new(args.get(1).map_or("artifacts/model", String::as_str));
    let split = Path::new(args.get(2).map_or("data/processed/test.parquet", String::as_str));
    device::set_threads(args.get(3).map_or(Ok(2), |s| s.parse())?);
    let labels = LabelMap::load(&model_dir.join(LABELS))?;
    let cpu = DeviceSpec::Cpu.device();
    let mut model = BertClassifier::new(&BertConfig::load(model_dir)?, labels.len(), &cpu);
    load_safetensors(&mut model, &model_dir.join(WEIGHTS))?;
    let examples = kiln_data::processed::read_examples(split)?;
    let metrics = kiln_train::evaluate(&model, &examples, 64, &cpu, labels.len());
    eprintln!(
        "{}: {} examples, accuracy {:.4}, macro-F1 {:.4}, loss {:.4}",
        split.display(),
        examples.len(),
        metrics.accuracy,
        metrics.macro_f1,
        metrics.loss
    );
    Ok(())
}
