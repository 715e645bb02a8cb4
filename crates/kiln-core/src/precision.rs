//! The one name for the dtype an encoder's matrix products run in, shared by
//! `train`, `eval`, `predict`, `serve` and `tune`, and `/v1/model`.

use serde::{Deserialize, Serialize};

/// The dtype of the matrix products. `bf16` is mixed precision, as
/// `torch.autocast(dtype=torch.bfloat16)` runs a BERT: the linear layers and
/// attention's two products in bf16 (fp32 accumulation), while the weights,
/// the optimizer state, the embeddings, LayerNorm, softmax and the loss stay
/// fp32, and so do checkpoints and exported weights.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Precision {
    /// fp32 throughout.
    #[default]
    Fp32,
    /// bf16 matrix products; stops with an error where the device has no
    /// fast bf16 (a CPU without AVX-512 BF16 or AMX, a GPU before Ampere).
    Bf16,
    /// bf16 where the device has fast bf16 products, fp32 elsewhere.
    Auto,
}

impl Precision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Fp32 => "fp32",
            Self::Bf16 => "bf16",
            Self::Auto => "auto",
        }
    }

    /// What runs, given whether the device has fast bf16 (asked only when
    /// it matters, so fp32 never probes the hardware): `auto` made concrete,
    /// or the reason an explicit `bf16` cannot run.
    pub fn resolve(self, fast_bf16: impl FnOnce() -> bool, device: &str) -> Result<Self, PrecisionError> {
        if self == Self::Fp32 {
            return Ok(Self::Fp32);
        }
        match (self, fast_bf16()) {
            (_, true) => Ok(Self::Bf16),
            (Self::Auto, false) => Ok(Self::Fp32),
            _ => Err(PrecisionError::NoBf16(device.to_owned())),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PrecisionError {
    #[error(
        "precision = \"bf16\": {0} has no fast bf16 matrix products (a CPU needs AVX-512 BF16 or AMX, a GPU \
         compute capability 8.0 or later); use precision = \"fp32\", or \"auto\" to take bf16 only where it is fast"
    )]
    NoBf16(String),
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auto_takes_bf16_only_where_it_is_fast_and_bf16_refuses_otherwise() {
        assert_eq!(Precision::Auto.resolve(|| true, "cpu"), Ok(Precision::Bf16));
        assert_eq!(Precision::Auto.resolve(|| false, "cpu"), Ok(Precision::Fp32));
        assert_eq!(Precision::Fp32.resolve(|| true, "cpu"), Ok(Precision::Fp32));
        assert_eq!(Precision::Bf16.resolve(|| true, "cuda:0"), Ok(Precision::Bf16));
        let error = Precision::Bf16.resolve(|| false, "this CPU (AMD EPYC)").expect_err("refused");
        assert!(error.to_string().contains("this CPU (AMD EPYC) has no fast bf16"), "{error}");
        assert!(error.to_string().contains("precision = \"fp32\""), "{error}");
    }
}
