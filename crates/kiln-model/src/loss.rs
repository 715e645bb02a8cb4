//! The loss against weak labels: each row's target is a distribution over
//! the labels (`label`'s `label_probs`), not one label. Noise-aware, as
//! Snorkel's end models train: the cross-entropy against that distribution,
//! `-Σ_c q_c ln p_c`, or its focal form `-Σ_c q_c (1 - p_c)^γ ln p_c`; each
//! label's weight and each row's weight scale its share, and the mean is over
//! the rows' total weight, so a one-hot target gives exactly
//! [`crate::token::token_loss`]'s (and torch's weighted `CrossEntropyLoss`'s)
//! value, and a row of weight 2 counts as that row twice.

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

/// One row's target: its distribution (or, without one, its label id) and its weight.
#[derive(Debug, Clone, Copy)]
pub struct SoftTarget<'a> {
    pub probs: Option<&'a [f32]>,
    pub label: u32,
    pub weight: f32,
}

/// The `[batch, classes]` targets of `rows`, each scaled by its weight.
pub fn soft_targets(rows: &[SoftTarget], classes: usize, device: &burn::tensor::Device) -> Tensor<2> {
    let mut values = vec![0.0f32; rows.len() * classes];
    for (row, target) in rows.iter().enumerate() {
        let out = &mut values[row * classes..(row + 1) * classes];
        match target.probs {
            Some(probs) => out.iter_mut().zip(probs).for_each(|(o, p)| *o = p * target.weight),
            None => out[target.label as usize] = target.weight,
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
        let hard_target = |label| SoftTarget { probs: None, label, weight: 1.0 };
        let one_hot = soft_targets(&labels.map(hard_target), 3, &device);
        let weights = [0.5f32, 2.0, 1.0];
        for (gamma, weights) in [(0.0, None), (2.0, None), (0.0, Some(&weights[..])), (2.0, Some(&weights[..]))] {
            let soft = floats(soft_target_loss(logits.clone(), one_hot.clone(), weights, gamma))[0];
            let reference = floats(token_loss(logits.clone().reshape([3, 1, 3]), hard.clone(), weights, gamma))[0];
            assert!((soft - reference).abs() < 1e-6, "gamma {gamma}, weights {weights:?}: {soft} vs {reference}");
        }
        // A target split between two labels costs the mix of their losses.
        static HALF: [f32; 3] = [0.5, 0.5, 0.0];
        let mixed = soft_targets(&[SoftTarget { probs: Some(&HALF[..]), label: 0, weight: 1.0 }], 3, &device);
        let row = logits.clone().slice([0..1, 0..3]);
        let ours = floats(soft_target_loss(row.clone(), mixed, None, 0.0))[0];
        let log_p = floats(log_softmax(row, 1).reshape([3]));
        assert!((ours - -(0.5 * log_p[0] + 0.5 * log_p[1])).abs() < 1e-6, "{ours} vs {log_p:?}");

        // A row of weight 2 counts as that row twice; a row of weight 0 not at all.
        let weighted = [
            SoftTarget { probs: Some(&HALF[..]), label: 0, weight: 2.0 },
            SoftTarget { probs: None, label: 2, weight: 1.0 },
            SoftTarget { probs: None, label: 1, weight: 0.0 },
        ];
        let once = |target: SoftTarget<'static>| SoftTarget { weight: 1.0, ..target };
        let spelled_out = [once(weighted[0]), once(weighted[0]), once(weighted[1])];
        let first_row_twice =
            Tensor::cat(vec![logits.clone().slice([0..1, 0..3]), logits.clone().slice([0..2, 0..3])], 0);
        for gamma in [0.0, 2.0] {
            let ours = floats(soft_target_loss(logits.clone(), soft_targets(&weighted, 3, &device), None, gamma))[0];
            let targets = soft_targets(&spelled_out, 3, &device);
            let spelled = floats(soft_target_loss(first_row_twice.clone(), targets, None, gamma))[0];
            assert!((ours - spelled).abs() < 1e-6, "gamma {gamma}: {ours} vs {spelled}");
        }
    }
}
