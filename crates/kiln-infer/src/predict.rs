//! `predict`: classify a file of texts, chunk by chunk, into Parquet: a
//! label per text, or (token classification) the entities of each text.
//!
//! Texts are streamed from the input as `ingest` reads them, `chunk_rows` at a
//! time; each chunk is cleaned with the model's own saved settings, tokenized,
//! predicted and appended to the output as a Parquet row group, so memory stays
//! bounded whatever the file's size. The output is a temp file renamed into
//! place: a bad row half way leaves nothing behind.

use std::io::Write;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, Result};
use arrow_array::{ArrayRef, Float32Array, ListArray, RecordBatch, StringArray, StructArray, UInt32Array};
use arrow_buffer::OffsetBuffer;
use arrow_schema::{DataType, Field, Fields, Schema, SchemaRef};
use kiln_config::{Aggregation, PredictConfig};
use kiln_core::output::StreamedFile;
use kiln_core::scores::top_k as ranked_classes;
use kiln_core::{Progress, Task};
use kiln_data::parquet;
use kiln_data::read::{self, ColumnMap, LabelSource, ReadOptions};
use kiln_data::schema;
use kiln_data::shards::{self, PartInfo};
use kiln_model::device;
use kiln_text::aggregate::Entity;
use serde::Serialize;

use kiln_model::Predictor;

#[derive(Debug, Clone, Serialize)]
pub struct PredictReport {
    pub rows: usize,
    /// The output file, or this shard's part.
    pub output: std::path::PathBuf,
    /// Reading, cleaning, tokenizing, predicting and writing.
    pub seconds: f64,
    pub rows_per_second: f64,
}

pub fn run(config: &PredictConfig, progress: &Progress) -> Result<PredictReport> {
    config.validate()?;
    let input = config.input_file.as_deref().context("predict.input_file is required. This is a bug.")?;
    let spec =
        anyhow::Context::context(device::configure(&config.device, config.threads), "config key `predict.device`")?;
    let mut predictor = Predictor::load(&config.model_dir, &spec.device())?;
    predictor.quantize(config.quantize)?;
    let precision = device::inference_precision(config.precision, config.quantize, spec)
        .context("config key `predict.precision`")?;
    predictor.set_precision(precision)?;
    let started = Instant::now();
    let stem = input.file_stem().map_or_else(|| "row".into(), |s| s.to_string_lossy().into_owned());
    let options = ReadOptions { format: config.format, has_header: config.has_header, quoting: config.quoting };
    let columns = ColumnMap {
        text: &config.text_column,
        label: LabelSource::None,
        id: config.id_column.as_deref(),
        id_prefix: &stem,
    };

    // A shard writes its part, with each row's input row for the merge.
    let shard = config.shard()?;
    let output = if shard.is_whole() { config.output_file.clone() } else { config.part_file(shard) };
    let out = StreamedFile::create(&output)?;
    let top_k = config.top_k.min(predictor.labels.len());
    let tags_words = predictor.task() == Task::TokenClassification;
    let columns_schema = Arc::new(if tags_words { entities_schema(config.aggregation) } else { output_schema(top_k) });
    let file_schema = if shard.is_whole() { Arc::clone(&columns_schema) } else { shards::part_schema(&columns_schema) };
    let mut writer = parquet::writer(std::io::BufWriter::new(out.file()), Arc::clone(&file_schema))?;

    let bar = progress.file(input);
    let mut rows = 0usize;
    let totals =
        read::for_each_chunk_of_shard(input, &options, &columns, config.chunk_rows, shard, &bar, &mut |records| {
            let texts: Vec<&str> = records.texts.iter().map(String::as_str).collect();
            let frame = if tags_words {
                let entities = predictor.entities(&texts, config.aggregation, config.batch_size)?;
                entities_frame(Arc::clone(&columns_schema), config.aggregation, &records.ids, &entities)?
            } else {
                let examples = predictor.encode(&texts)?;
                let probabilities = predictor.probabilities_batched(&examples, config.batch_size)?;
                chunk_frame(&predictor, Arc::clone(&columns_schema), &records.ids, &probabilities, top_k)?
            };
            let frame = if shard.is_whole() {
                frame
            } else {
                shards::part_batch(Arc::clone(&file_schema), &records.rows, &frame)?
            };
            writer.write(&frame).context("cannot write predictions")?;
            // A row group per chunk keeps memory bounded, whatever the file's size.
            writer.flush().context("cannot write predictions")?;
            rows += records.len();
            let rate = rows as f64 / started.elapsed().as_secs_f64().max(1e-9);
            bar.set_prefix(format!("{rows} rows, {rate:.0} rows/s"));
            Ok(())
        })?;
    if !shard.is_whole() {
        let input_bytes = std::fs::metadata(input).with_context(|| format!("cannot read {}", input.display()))?.len();
        let info =
            PartInfo { shard, input: input.display().to_string(), input_bytes, input_rows: totals.rows_in_file() };
        info.write_to(&mut writer);
    }
    let finish = || -> Result<()> { Ok(writer.into_inner()?.flush()?) };
    finish().context("cannot finish the Parquet output")?;
    bar.finish_and_clear();
    out.commit()?;
    let seconds = started.elapsed().as_secs_f64();
    Ok(PredictReport { rows, output, seconds, rows_per_second: rows as f64 / seconds.max(1e-9) })
}

fn output_schema(top_k: usize) -> Schema {
    let mut fields = vec![
        Field::new(schema::ID, DataType::Utf8, false),
        Field::new(schema::PREDICTED, DataType::Utf8, false),
        Field::new(schema::PROBABILITY, DataType::Float32, false),
    ];
    for rank in 1..=top_k {
        let (label, probability) = schema::top_k_columns(rank);
        fields.push(Field::new(label, DataType::Utf8, false));
        fields.push(Field::new(probability, DataType::Float32, false));
    }
    Schema::new(fields)
}

fn chunk_frame(
    predictor: &Predictor,
    schema: SchemaRef,
    ids: &[String],
    probabilities: &[Vec<f32>],
    top_k: usize,
) -> Result<RecordBatch> {
    let labels = predictor.labels.labels();
    let ranked: Vec<Vec<usize>> = probabilities.iter().map(|row| ranked_classes(row, top_k)).collect();
    let names =
        |rank: usize| Arc::new(StringArray::from_iter_values(ranked.iter().map(|r| &labels[r[rank]]))) as ArrayRef;
    let scores = |rank: usize| {
        Arc::new(Float32Array::from_iter_values(ranked.iter().zip(probabilities).map(|(r, p)| p[r[rank]]))) as ArrayRef
    };
    let mut columns = vec![Arc::new(StringArray::from_iter_values(ids)) as ArrayRef, names(0), scores(0)];
    // Flat columns rather than lists: every Parquet reader (pandas included) takes them.
    for rank in 0..top_k {
        columns.extend([names(rank), scores(rank)]);
    }
    RecordBatch::try_new(schema, columns).context("the predictions table disagrees with its schema. This is a bug.")
}

/// The fields of one entity, as the token-classification pipeline names
/// them (`entity` holds the sub-word's tag with `none`, `entity_group` the
/// type otherwise).
fn entity_fields(strategy: Aggregation) -> Fields {
    let kind = if strategy == Aggregation::None { "entity" } else { "entity_group" };
    Fields::from(vec![
        Field::new(kind, DataType::Utf8, false),
        Field::new("score", DataType::Float32, false),
        Field::new("word", DataType::Utf8, false),
        Field::new("start", DataType::UInt32, false),
        Field::new("end", DataType::UInt32, false),
    ])
}

/// The list items of the entities column.
fn entity_item(strategy: Aggregation) -> Arc<Field> {
    Arc::new(Field::new("item", DataType::Struct(entity_fields(strategy)), false))
}

/// `id` and `entities`: a list of entities per text (character offsets into the text).
fn entities_schema(strategy: Aggregation) -> Schema {
    Schema::new(vec![
        Field::new(schema::ID, DataType::Utf8, false),
        Field::new(ENTITIES, DataType::List(entity_item(strategy)), false),
    ])
}

/// The column of entities in token-classification predictions.
pub const ENTITIES: &str = "entities";

fn entities_frame(
    schema: SchemaRef,
    strategy: Aggregation,
    ids: &[String],
    entities: &[Vec<Entity>],
) -> Result<RecordBatch> {
    let all: Vec<&Entity> = entities.iter().flatten().collect();
    let offset = |f: fn(&Entity) -> usize| {
        Arc::new(UInt32Array::from_iter_values(all.iter().map(|e| u32::try_from(f(e)).unwrap_or(u32::MAX)))) as ArrayRef
    };
    let kinds = all.iter().map(|e| e.entity_group.as_deref().or(e.entity.as_deref()).unwrap_or_default());
    let columns: Vec<ArrayRef> = vec![
        Arc::new(StringArray::from_iter_values(kinds)),
        Arc::new(Float32Array::from_iter_values(all.iter().map(|e| e.score))),
        Arc::new(StringArray::from_iter_values(all.iter().map(|e| e.word.as_str()))),
        offset(|e| e.start),
        offset(|e| e.end),
    ];
    let structs = StructArray::try_new(entity_fields(strategy), columns, None).context("entities. This is a bug.")?;
    let offsets = OffsetBuffer::from_lengths(entities.iter().map(Vec::len));
    let lists = ListArray::try_new(entity_item(strategy), offsets, Arc::new(structs), None)
        .context("entity lists. This is a bug.")?;
    RecordBatch::try_new(schema, vec![Arc::new(StringArray::from_iter_values(ids)), Arc::new(lists)])
        .context("the predictions table disagrees with its schema. This is a bug.")
}
