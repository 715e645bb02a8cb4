//! The loss against weak labels: each row's target is a distribution over
//! the labels (`label`'s `label_probs`), not one label. Noise-aware, as
//! Snorkel's end models train: the cross-entropy against that distribution,
//! `-Σ_c q_c ln p_c`, or its focal form `-Σ_c q_c (1 - p_c)^γ ln p_c`; each
//! label's weight scales its share, and the mean is over the rows' total
//! weight, so a one-hot target gives exactly [`crate::token::token_loss`]'s
//! (and torch's weighted `CrossEntropyLoss`'s) value.

use burn::tensor::activation::log_softmax;
use burn::tensor::{Tensor, TensorData};

/// The mean loss of `logits` (`[batch, classes]`) against `targets` (each
/// row a distribution over the classes).
pub fn soft_target_loss(
    logits: Tensor<2>,
    targets: Tensor<2>,
    class_weights: Option<&[f32]>,
    focal_gamma: f32,
) -> Tensor<1> {
    let [_, classes] = logits.dims();
    let log_p = log_softmax(logits, 1);
    let mut weighted = targets;
    if let Some(weights) = class_weights {
        let table = Tensor::<1>::from_data(TensorData::new(weights.to_vec(), [classes]), &weighted.device());
        weighted = weighted * table.reshape([1, classes]);
    }
    let per_class = if focal_gamma == 0.0 {
        log_p.neg()
    } else {
        (log_p.clone().exp().neg() + 1.0).powf_scalar(focal_gamma) * log_p.neg()
    };
    (per_class * weighted.clone()).sum() / weighted.sum().clamp_min(1e-12)
}

/// The `[batch, classes]` targets of rows that each have a distribution or a label id.
pub fn soft_targets(rows: &[(Option<&[f32]>, u32)], classes: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mut values = vec![0.0f32; rows.len() * classes];
    for (row, (probs, label)) in rows.iter().enumerate() {
        let out = &mut values[row * classes..(row + 1) * classes];
        match probs {
            Some(probs) => out.copy_from_slice(&probs[..classes]),
            None => out[*label as usize] = 1.0,
        }
    }
    Tensor::from_data(TensorData::new(values, [rows.len(), classes]), device)
}

#[cfg(test)]
mod tests {
    use burn::tensor::Int;

    use super::*;
    use crate::DeviceSpec;
    use crate::test_support::floats;
    use crate::token::token_loss;

    #[test]
    fn one_hot_targets_give_the_hard_label_loss_and_soft_ones_sit_between() {
        let device = DeviceSpec::Cpu.device();
        let logits = Tensor::<2>::from_data(
            TensorData::new(vec![2.0f32, -1.0, 0.5, 0.1, 0.3, -0.2, -1.5, 1.2, 0.4], [3, 3]),
            &device,
        );
        let labels = [0u32, 2, 1];
        let hard = Tensor::<2, Int>::from_data(
            TensorData::new(labels.iter().map(|&l| i64::from(l)).collect::<Vec<_>>(), [3, 1]),
            &device,
        );
        let one_hot = soft_targets(&labels.iter().map(|&l| (None, l)).collect::<Vec<_>>(), 3, &device);
        let weights = [0.5f32, 2.0, 1.0];
        for (gamma, weights) in [(0.0, None), (2.0, None), (0.0, Some(&weights[..])), (2.0, Some(&weights[..]))] {
            let soft = floats(soft_target_loss(logits.clone(), one_hot.clone(), weights, gamma))[0];
            let reference = floats(token_loss(logits.clone().reshape([3, 1, 3]), hard.clone(), weights, gamma))[0];
            assert!((soft - reference).abs() < 1e-6, "gamma {gamma}, weights {weights:?}: {soft} vs {reference}");
        }
        // A target split between two labels costs the mix of their losses.
        let half: [f32; 3] = [0.5, 0.5, 0.0];
        let mixed = soft_targets(&[(Some(&half[..]), 0)], 3, &device);
        let row = logits.clone().slice([0..1, 0..3]);
        let ours = floats(soft_target_loss(row.clone(), mixed, None, 0.0))[0];
        let log_p = floats(log_softmax(row, 1).reshape([3]));
        assert!((ours - -(0.5 * log_p[0] + 0.5 * log_p[1])).abs() < 1e-6, "{ours} vs {log_p:?}");
    }
}
