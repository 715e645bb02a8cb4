//! Where one short request's time goes: tokenize, then the forward pass, for a
//! model folder, one text at a time and in a batch of 32, in fp32 and int8.
//!
//! cargo run --release -p kiln-model --example predict_latency -- artifacts/model [threads]

#![allow(clippy::print_stdout)] // A measuring tool: its figures are its output.

use std::path::Path;
use std::time::Instant;

use kiln_config::Quantize;
use kiln_model::{DeviceSpec, Predictor};

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().collect();
    let dir = args.get(1).map_or("artifacts/model", String::as_str);
    let threads: usize = args.get(2).map_or(Ok(2), |s| s.parse())?;
    kiln_model::device::set_threads(threads);
    for quantize in [Quantize::None, Quantize::Int8] {
        let mut predictor = Predictor::load(Path::new(dir), &DeviceSpec::Cpu.device())?;
        predictor.quantize(quantize)?;
        println!("{}:", quantize.as_str());
        measure(&predictor)?;
    }
    Ok(())
}

fn measure(predictor: &Predictor) -> anyhow::Result<()> {
    let text = "I still have not received my new card, when will it arrive?";
    let time = |label: &str, runs: usize, f: &mut dyn FnMut() -> anyhow::Result<()>| -> anyhow::Result<()> {
        for _ in 0..5 {
            f()?;
        }
        let mut times = Vec::with_capacity(runs);
        for _ in 0..runs {
            let started = Instant::now();
            f()?;
            times.push(started.elapsed().as_secs_f64() * 1e3);
        }
        times.sort_by(f64::total_cmp);
        println!("{label:<28} p50 {:7.3} ms  min {:7.3} ms", times[runs / 2], times[0]);
        Ok(())
    };
    let one = predictor.encode(&[text])?;
    println!("tokens: {}", one[0].input_ids.len());
    time("encode 1", 200, &mut || predictor.encode(&[text]).map(drop))?;
    time("forward 1", 200, &mut || predictor.probabilities(&[&one[0]]).map(drop))?;
    let texts = vec![text; 32];
    let many = predictor.encode(&texts)?;
    let refs: Vec<_> = many.iter().collect();
    time("forward 32", 30, &mut || predictor.probabilities(&refs).map(drop))?;
    Ok(())
}
