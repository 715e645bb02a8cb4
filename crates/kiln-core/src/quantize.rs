//! The one name for how inference runs the encoder, shared by the configs,
//! `/v1/model` and the prediction log.

use serde::{Deserialize, Serialize};

/// How `predict` and `serve` run the encoder's linear layers. The model folder
/// stays fp32 either way: quantizing is a choice made at load time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum Quantize {
    /// fp32 throughout, as trained.
    #[default]
    None,
    /// Dynamic int8 (CPU only): weights quantized per output channel once,
    /// activations per call, as PyTorch's `quantize_dynamic`; embeddings, layer
    /// norms and the head stay fp32.
    Int8,
}

impl Quantize {
    /// fp32: what the prediction log leaves unsaid.
    pub fn is_none(&self) -> bool {
        *self == Self::None
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Self::None => "none",
            Self::Int8 => "int8",
        }
    }
}

impl std::fmt::Display for Quantize {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}
