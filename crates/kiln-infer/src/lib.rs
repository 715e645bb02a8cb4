//! Inference with a trained model: [`Predictor`] loads a model folder (kiln's
//! `artifacts/model/`, an export, or any Hugging Face folder with a
//! classification head) and turns texts or token ids into class probabilities;
//! [`eval`] scores it on a labelled split.

pub mod eval;
pub mod export;
pub mod plots;
pub mod predict;
mod predictor;
pub mod registry;
pub mod testing;

pub use predictor::Predictor;
