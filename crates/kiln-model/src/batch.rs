//! Batches for training and inference: length-bucketed, padded only to the
//! longest text in each batch, so short texts do not pay for long ones.

use burn::tensor::{Device, Int, Tensor, TensorData};
use kiln_core::{Example, TaggedExample};
use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

use crate::bert::BertInput;

/// Batches per bucket: sorting within a bucket groups similar lengths, while the
/// shuffle before it keeps batches varied from epoch to epoch.
const BATCHES_PER_BUCKET: usize = 32;

/// Index batches over examples of the given `lengths`: shuffle, sort by length
/// within buckets of `BATCHES_PER_BUCKET` batches, cut into batches, shuffle the
/// batch order. The same `seed` gives the same batches.
pub fn bucketed_batches(lengths: &[usize], batch_size: usize, seed: u64) -> Vec<Vec<usize>> {
    assert!(batch_size > 0, "batch size must be positive. This is a bug.");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.shuffle(&mut rng);
    let mut batches: Vec<Vec<usize>> = Vec::with_capacity(lengths.len().div_ceil(batch_size));
    for bucket in order.chunks_mut(batch_size * BATCHES_PER_BUCKET) {
        bucket.sort_by_key(|&index| std::cmp::Reverse(lengths[index]));
        batches.extend(bucket.chunks(batch_size).map(<[usize]>::to_vec));
    }
    batches.shuffle(&mut rng);
    batches
}

/// Index batches for inference: examples sorted by length, then cut, so each
/// batch pads little. Deterministic; callers map results back by index.
pub fn length_sorted_batches(lengths: &[usize], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..lengths.len()).collect();
    order.sort_by_key(|&index| lengths[index]);
    order.chunks(batch_size.max(1)).map(<[usize]>::to_vec).collect()
}

/// Pads `examples` to the longest of them and returns the model input and label ids.
pub fn collate(examples: &[&Example], pad_id: u32, device: &Device) -> (BertInput, Tensor<1, Int>) {
    let rows = examples.iter().map(|e| (e.input_ids.as_slice(), e.token_type_ids.as_deref()));
    let input = padded_input(rows, examples.len(), pad_id, device);
    let labels: Vec<i64> = examples.iter().map(|e| i64::from(e.label_id)).collect();
    (input, Tensor::from_data(TensorData::new(labels, [examples.len()]), device))
}

/// Rows of token ids (and token types, when the model takes them), padded to
/// the longest with `pad_id` and masked.
pub fn padded_input<'a>(
    rows: impl Iterator<Item = (&'a [u32], Option<&'a [u8]>)> + Clone,
    count: usize,
    pad_id: u32,
    device: &Device,
) -> BertInput {
    let width = rows.clone().map(|(ids, _)| ids.len()).max().unwrap_or(0);
    let mut ids = Vec::with_capacity(count * width);
    let mut types = Vec::with_capacity(count * width);
    let mut mask = Vec::with_capacity(count * width);
    for (row_ids, row_types) in rows {
        let pad = width - row_ids.len();
        ids.extend(row_ids.iter().map(|&id| i64::from(id)).chain(std::iter::repeat_n(i64::from(pad_id), pad)));
        match row_types {
            Some(t) => types.extend(t.iter().map(|&t| i64::from(t)).chain(std::iter::repeat_n(0, pad))),
            None => types.extend(std::iter::repeat_n(0, width)),
        }
        mask.extend(std::iter::repeat_n(1i64, row_ids.len()).chain(std::iter::repeat_n(0, pad)));
    }
    let ints = |values: Vec<i64>| Tensor::<2, Int>::from_data(TensorData::new(values, [count, width]), device);
    BertInput::new(ints(ids), ints(types), ints(mask))
}

/// Tagged windows padded to the longest of them, without their labels (what
/// prediction needs).
pub fn tagged_input(examples: &[&TaggedExample], pad_id: u32, device: &Device) -> BertInput {
    let rows = examples.iter().map(|e| (e.input_ids.as_slice(), e.token_type_ids.as_deref()));
    padded_input(rows, examples.len(), pad_id, device)
}

/// Pads tagged windows to the longest of them: the model input and the
/// sub-word labels, `[rows, width]`, padding labelled -100 (ignored).
pub fn collate_tagged(examples: &[&TaggedExample], pad_id: u32, device: &Device) -> (BertInput, Tensor<2, Int>) {
    let input = tagged_input(examples, pad_id, device);
    let width = examples.iter().map(|e| e.len()).max().unwrap_or(0);
    let labels: Vec<i64> = examples
        .iter()
        .flat_map(|e| e.labels.iter().map(|&l| i64::from(l)).chain(std::iter::repeat_n(-100, width - e.len())))
        .collect();
    (input, Tensor::from_data(TensorData::new(labels, [examples.len(), width]), device))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DeviceSpec;

    /// A skewed length mix like real text: mostly short, a long tail.
    fn lengths() -> Vec<usize> {
        (0..1000).map(|i| if i % 10 == 0 { 100 + i % 28 } else { 8 + i % 24 }).collect()
    }

    fn padded_tokens(lengths: &[usize], batches: &[Vec<usize>]) -> usize {
        batches.iter().map(|b| b.iter().map(|&i| lengths[i]).max().unwrap_or(0) * b.len()).sum()
    }

    #[test]
    fn every_example_once_in_batches_of_at_most_the_size() {
        let lengths = lengths();
        let batches = bucketed_batches(&lengths, 32, 1);
        let mut seen: Vec<usize> = batches.iter().flatten().copied().collect();
        seen.sort_unstable();
        assert_eq!(seen, (0..lengths.len()).collect::<Vec<_>>());
        assert!(batches.iter().all(|b| !b.is_empty() && b.len() <= 32));
    }

    #[test]
    fn inference_batches_are_sorted_by_length_and_cover_everything() {
        let batches = length_sorted_batches(&[5, 1, 3, 2], 3);
        assert_eq!(batches, [vec![1, 3, 2], vec![0]]);
    }

    #[test]
    fn seeded_and_reshuffled() {
        let lengths = lengths();
        assert_eq!(bucketed_batches(&lengths, 32, 1), bucketed_batches(&lengths, 32, 1));
        assert_ne!(bucketed_batches(&lengths, 32, 1), bucketed_batches(&lengths, 32, 2));
    }

    #[test]
    fn bucketing_cuts_padding() {
        let lengths = lengths();
        let real: usize = lengths.iter().sum();
        let bucketed = padded_tokens(&lengths, &bucketed_batches(&lengths, 32, 3));
        let mut order: Vec<usize> = (0..lengths.len()).collect();
        order.shuffle(&mut ChaCha8Rng::seed_from_u64(3));
        let random: Vec<Vec<usize>> = order.chunks(32).map(<[usize]>::to_vec).collect();
        let unbucketed = padded_tokens(&lengths, &random);
        assert!(bucketed * 2 < unbucketed, "bucketed {bucketed} vs random {unbucketed} padded tokens ({real} real)");
        assert!(bucketed < real * 13 / 10, "bucketed batches should be nearly free of padding: {bucketed} vs {real}");
    }

    #[test]
    fn collate_pads_to_the_longest_and_masks_padding() {
        let device = DeviceSpec::Cpu.device();
        let example = |ids: &[u32], label| Example {
            id: "x".into(),
            input_ids: ids.to_vec(),
            token_type_ids: Some(vec![0; ids.len()]),
            label_id: label,
            label_probs: None,
            weight: None,
        };
        let (a, b) = (example(&[101, 7, 102], 1), example(&[101, 102], 0));
        let (input, labels) = collate(&[&a, &b], 0, &device);
        let ints = |t: Tensor<2, Int>| t.into_data().try_to_vec::<i64>().expect("ints");
        assert_eq!(ints(input.input_ids), [101, 7, 102, 101, 102, 0]);
        assert_eq!(ints(input.attention_mask), [1, 1, 1, 1, 1, 0]);
        assert_eq!(ints(input.token_type_ids), [0; 6]);
        assert_eq!(labels.into_data().try_to_vec::<i64>().expect("labels"), [1, 0]);
    }

    #[test]
    fn tagged_windows_pad_their_labels_as_ignored() {
        let device = DeviceSpec::Cpu.device();
        let window = |ids: &[u32], labels: &[i32]| TaggedExample {
            id: "s".into(),
            window: 0,
            input_ids: ids.to_vec(),
            token_type_ids: None,
            labels: labels.to_vec(),
            word_ids: vec![-1; ids.len()],
        };
        let (a, b) = (window(&[101, 7, 8, 102], &[-100, 2, -100, -100]), window(&[101, 9, 102], &[-100, 0, -100]));
        let (input, labels) = collate_tagged(&[&a, &b], 0, &device);
        let ints = |t: Tensor<2, Int>| t.into_data().try_to_vec::<i64>().expect("ints");
        assert_eq!(ints(input.input_ids), [101, 7, 8, 102, 101, 9, 102, 0]);
        assert_eq!(ints(input.attention_mask), [1, 1, 1, 1, 1, 1, 1, 0]);
        assert_eq!(ints(input.token_type_ids), [0; 8], "a model without token types gets zeros");
        assert_eq!(ints(labels), [-100, 2, -100, -100, -100, 0, -100, -100]);
    }
}
