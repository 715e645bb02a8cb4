//! kiln's model crate: the compute backend, BERT-family encoders with a
//! sequence-classification head or a token-classification one, and [`Predictor`], a model folder loaded for
//! prediction.

pub mod batch;
pub mod bert;
pub mod device;
mod layer_norm;
pub mod linear;
pub mod loss;
pub mod optim;
mod predictor;
#[cfg(test)]
mod test_support;
pub mod token;

pub use bert::{BertClassifier, BertConfig, BertInput, BertModel, LoadReport, ModelError, WithHead};
pub use device::{DeviceError, DeviceSpec};
/// What [`Predictor`] finds in a text with a token-classification model.
pub use kiln_text::aggregate::Entity;
pub use predictor::{EncodedText, Predictor, WrongTask};
pub use token::BertTokenClassifier;
