//! The learning-rate schedule: linear warm-up from 0, then linear decay to 0,
//! as Hugging Face's `get_linear_schedule_with_warmup`.
//!
//! A pure function of the step rather than burn's stateful schedulers (whose
//! linear scheduler also refuses to start at 0): a resumed run needs nothing
//! but the step to continue on exactly the same curve.

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LinearSchedule {
    pub peak: f64,
    pub warmup_steps: usize,
    pub total_steps: usize,
}

impl LinearSchedule {
    /// Warm-up takes `ceil(total * warmup_ratio)` steps, as HF computes it.
    pub fn new(peak: f64, warmup_ratio: f64, total_steps: usize) -> Self {
        let warmup_steps = (total_steps as f64 * warmup_ratio).ceil() as usize;
        Self { peak, warmup_steps, total_steps }
    }

    /// The learning rate of the optimizer step that follows `done` completed steps.
    pub fn lr(&self, done: usize) -> f64 {
        if done < self.warmup_steps {
            return self.peak * done as f64 / self.warmup_steps as f64;
        }
        let decay_steps = self.total_steps.saturating_sub(self.warmup_steps).max(1);
        self.peak * (self.total_steps.saturating_sub(done) as f64 / decay_steps as f64).max(0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Values from transformers' get_linear_schedule_with_warmup(opt, 2, 10), lr 1.0.
    #[test]
    fn matches_hugging_face() {
        let schedule = LinearSchedule::new(1.0, 0.2, 10);
        assert_eq!(schedule.warmup_steps, 2);
        let lrs: Vec<f64> = (0..=10).map(|step| schedule.lr(step)).collect();
        let expected = [0.0, 0.5, 1.0, 0.875, 0.75, 0.625, 0.5, 0.375, 0.25, 0.125, 0.0];
        for (got, want) in lrs.iter().zip(expected) {
            assert!((got - want).abs() < 1e-12, "{lrs:?}");
        }
    }

    #[test]
    fn no_warmup_starts_at_the_peak() {
        let schedule = LinearSchedule::new(3e-5, 0.0, 4);
        assert_eq!(schedule.lr(0), 3e-5);
        assert!((schedule.lr(2) - 1.5e-5).abs() < 1e-18);
        assert_eq!(LinearSchedule::new(1.0, 0.1, 100).warmup_steps, 10);
        assert_eq!(LinearSchedule::new(1.0, 0.1, 95).warmup_steps, 10, "rounded up, as HF does");
    }
}
