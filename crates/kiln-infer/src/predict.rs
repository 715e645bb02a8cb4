//! `predict`: classify a file of texts, chunk by chunk, into Parquet.
//!
//! Texts are streamed from the input as `ingest` reads them, `chunk_rows` at a
//! time; each chunk is cleaned with the model's own saved settings, tokenized,
//! predicted and appended to the output as a Parquet row group, so memory stays
//! bounded whatever the file's size. The output is a temp file renamed into
//! place: a bad row half way leaves nothing behind.

use std::path::Path;
use std::time::Instant;

use anyhow::{Context, Result};
use kiln_config::PredictConfig;
use kiln_core::Progress;
use kiln_core::metrics::top_k as ranked_classes;
use kiln_data::read::{self, ColumnMap, LabelSource, ReadOptions};
use kiln_data::schema;
use kiln_model::device;
use polars::prelude::*;
use serde::Serialize;

use kiln_model::Predictor;

#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    pub rows: usize,
    /// Reading, cleaning, tokenizing, predicting and writing.
    pub seconds: f64,
    pub rows_per_second: f64,
}

pub fn run(config: &PredictConfig, progress: &Progress) -> Result<PredictReport> {
    config.validate()?;
    let input = config.input_file.as_deref().context("predict.input_file is required. This is a bug.")?;
    let spec =
        anyhow::Context::context(device::configure(&config.device, config.threads), "config key `predict.device`")?;
    let predictor = Predictor::load(&config.model_dir, &spec.device())?;
    let started = Instant::now();
    let stem = input.file_stem().map_or_else(|| "row".into(), |s| s.to_string_lossy().into_owned());
    let options = ReadOptions { format: config.format, has_header: config.has_header, quoting: config.quoting };
    let columns = ColumnMap {
        text: &config.text_column,
        label: LabelSource::None,
        id: config.id_column.as_deref(),
        id_prefix: &stem,
    };

    let out_dir = config.output_file.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let temp = tempfile::Builder::new()
        .prefix(".kiln-predict-")
        .tempfile_in(out_dir)
        .with_context(|| format!("cannot write in {}", out_dir.display()))?;
    let top_k = config.top_k.min(predictor.labels.len());
    let mut writer = ParquetWriter::new(temp.as_file())
        .with_compression(ParquetCompression::Zstd(None))
        .batched(&output_schema(top_k))
        .map_err(anyhow::Error::from)
        .context("cannot start the Parquet output")?;

    let bar = progress.file(input);
    let mut rows = 0usize;
    read::for_each_chunk(input, &options, &columns, config.chunk_rows, &bar, &mut |records| {
        let texts: Vec<&str> = records.texts.iter().map(String::as_str).collect();
        let examples = predictor.encode(&texts)?;
        let probabilities = predictor.probabilities_batched(&examples, config.batch_size)?;
        let frame = chunk_frame(&predictor, &records.ids, &probabilities, top_k)?;
        writer.write_batch(&frame).map_err(anyhow::Error::from).context("cannot write predictions")?;
        rows += records.len();
        let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
        bar.set_prefix(format!("{rows} rows, {rate:.0} rows/s"));
        Ok(())
    })?;
    writer.finish().map_err(anyhow::Error::from).context("cannot finish the Parquet output")?;
    bar.finish_and_clear();
    // Temp files are private (0600); predictions are meant to be read by others.
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(temp.path(), std::fs::Permissions::from_mode(0o644))?;
    }
    temp.persist(&config.output_file)
        .with_context(|| format!("cannot move predictions into {}", config.output_file.display()))?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(PredictReport { rows, seconds, rows_per_second: rows as f64 / seconds.max(1e-9) })
}

fn output_schema(top_k: usize) -> Schema {
    let mut fields = vec![
        Field::new(schema::ID.into(), DataType::String),
        Field::new("predicted".into(), DataType::String),
        Field::new("probability".into(), DataType::Float32),
    ];
    for rank in 1..=top_k {
        fields.push(Field::new(format!("label_{rank}").into(), DataType::String));
        fields.push(Field::new(format!("probability_{rank}").into(), DataType::Float32));
    }
    Schema::from_iter(fields)
}

fn chunk_frame(predictor: &Predictor, ids: &[String], probabilities: &[Vec<f32>], top_k: usize) -> Result<DataFrame> {
    let labels = predictor.labels.labels();
    let ranked: Vec<Vec<usize>> = probabilities.iter().map(|row| ranked_classes(row, top_k)).collect();
    let mut columns = vec![
        Column::new(schema::ID.into(), ids),
        Column::new("predicted".into(), ranked.iter().map(|r| labels[r[0]].as_str()).collect::<Vec<_>>()),
        Column::new("probability".into(), ranked.iter().zip(probabilities).map(|(r, p)| p[r[0]]).collect::<Vec<f32>>()),
    ];
    // Flat columns rather than lists: every Parquet reader (pandas included) takes them.
    for rank in 0..top_k {
        let names: Vec<&str> = ranked.iter().map(|r| labels[r[rank]].as_str()).collect();
        let scores: Vec<f32> = ranked.iter().zip(probabilities).map(|(r, p)| p[r[rank]]).collect();
        columns.push(Column::new(format!("label_{}", rank + 1).into(), names));
        columns.push(Column::new(format!("probability_{}", rank + 1).into(), scores));
    }
    Ok(DataFrame::new_infer_height(columns)?)
}
