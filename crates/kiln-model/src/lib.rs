//! kiln's model crate: the compute backend and BERT-family encoders with a
//! sequence-classification head.

pub mod batch;
pub mod bert;
pub mod device;
pub mod metrics;
pub mod optim;
#[cfg(test)]
mod test_support;

pub use bert::{BertClassifier, BertConfig, BertInput, BertModel, LoadReport, ModelError};
pub use device::{DeviceError, DeviceSpec};
