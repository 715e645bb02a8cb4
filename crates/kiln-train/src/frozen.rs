//! The frozen part's output (`train.trainable_layers`). The embeddings and the
//! layers below the trainable ones never change during training, so what they
//! make of a text is the same at every step: it is computed once per training
//! and validation text and kept in memory when it fits
//! `train.frozen_cache_mib`, and each step runs only the layers that train.
//! When it does not fit, training computes it per batch instead. Either way
//! the frozen part runs in inference mode (no dropout): a fixed feature
//! extractor, so both ways train the same model.

use burn::tensor::{Device, Tensor, TensorData};
use kiln_model::BertModel;
use kiln_model::batch::{length_sorted_batches, padded_input};

use crate::task::{Encoded, PAD_ID};

pub struct FrozenPart {
    /// The encoder in inference mode (no autodiff, no dropout); only its frozen part runs.
    encoder: BertModel,
    /// Where `encoder` runs.
    plain: Device,
    width: usize,
    /// Per training text, its tokens' hidden states (`[tokens, width]`, row-major), when kept.
    train: Option<Vec<Vec<f32>>>,
    /// The same for the validation texts.
    validation: Option<Vec<Vec<f32>>>,
}

impl FrozenPart {
    /// `None` when nothing is frozen. `encoder` is the model's encoder in
    /// inference mode, on `plain`.
    pub(crate) fn new<E: Encoded>(
        encoder: BertModel,
        plain: &Device,
        train: &[E],
        validation: &[E],
        cache_mib: usize,
        batch_size: usize,
    ) -> Option<Self> {
        let frozen_layers = encoder.frozen_layers?;
        let width = encoder.embeddings.word_embeddings.weight.dims()[1];
        let tokens: usize = train.iter().chain(validation).map(|e| e.input_ids().len()).sum();
        let mib = (tokens * width * size_of::<f32>()).div_ceil(1 << 20);
        let mut part = Self { encoder, plain: plain.clone(), width, train: None, validation: None };
        if mib > cache_mib {
            tracing::info!(
                "the frozen layers' output for the {} texts would take {mib} MiB (train.frozen_cache_mib {cache_mib}): \
                 computed at every step instead",
                train.len() + validation.len()
            );
            return Some(part);
        }
        part.train = Some(part.compute_all(train, batch_size));
        part.validation = Some(part.compute_all(validation, batch_size));
        tracing::info!(
            "kept the output of the embeddings and {frozen_layers} frozen layer(s) for {} texts ({mib} MiB): each \
             step runs only the layers that train",
            train.len() + validation.len()
        );
        Some(part)
    }

    /// The frozen part's output for each of `examples`, unpadded.
    fn compute_all<E: Encoded>(&self, examples: &[E], batch_size: usize) -> Vec<Vec<f32>> {
        let lengths: Vec<usize> = examples.iter().map(|e| e.input_ids().len()).collect();
        let mut kept = vec![Vec::new(); examples.len()];
        for chunk in length_sorted_batches(&lengths, batch_size) {
            let rows: Vec<&E> = chunk.iter().map(|&i| &examples[i]).collect();
            let padded = self.compute(&rows).into_data().convert::<f32>();
            let padded = padded.as_slice::<f32>().expect("converted to f32 just before. This is a bug.");
            let longest = rows.iter().map(|e| e.input_ids().len()).max().unwrap_or(0);
            for (row, &index) in chunk.iter().enumerate() {
                let start = row * longest * self.width;
                kept[index] = padded[start..start + lengths[index] * self.width].to_vec();
            }
        }
        kept
    }

    /// `[rows, longest, width]` as the frozen part makes it, on `plain`.
    fn compute<E: Encoded>(&self, rows: &[&E]) -> Tensor<3> {
        let input =
            padded_input(rows.iter().map(|e| (e.input_ids(), e.token_type_ids())), rows.len(), PAD_ID, &self.plain);
        self.encoder.encode_frozen(input).expect("a FrozenPart is only made for a frozen encoder. This is a bug.")
    }

    /// The frozen part's output for a training batch (`indices` into the
    /// training split, `rows` those examples), on `device`: kept, or computed now.
    pub(crate) fn train_batch<E: Encoded>(&self, indices: &[usize], rows: &[&E], device: &Device) -> Tensor<3> {
        match &self.train {
            Some(kept) => self.padded(indices.iter().map(|&i| kept[i].as_slice()), device),
            None => self.compute(rows).to_device(device),
        }
    }

    /// The kept output for a validation batch; `None` when not kept (the
    /// model in inference mode then runs the frozen part itself, the same way).
    pub fn validation_batch(&self, indices: &[usize], device: &Device) -> Option<Tensor<3>> {
        let kept = self.validation.as_ref()?;
        Some(self.padded(indices.iter().map(|&i| kept[i].as_slice()), device))
    }

    /// Rows of hidden states padded with zeros to the longest: what sits at a
    /// padded position is masked out of attention and never read by a loss.
    fn padded<'a>(&self, rows: impl Iterator<Item = &'a [f32]> + Clone, device: &Device) -> Tensor<3> {
        let count = rows.clone().count();
        let longest = rows.clone().map(|r| r.len() / self.width).max().unwrap_or(0);
        let mut values = Vec::with_capacity(count * longest * self.width);
        for row in rows {
            values.extend_from_slice(row);
            values.resize(values.len() + longest * self.width - row.len(), 0.0);
        }
        Tensor::from_data(TensorData::new(values, [count, longest, self.width]), device)
    }
}
