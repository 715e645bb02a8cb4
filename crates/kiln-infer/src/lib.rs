//! The batch stages that use a trained model ([`kiln_model::Predictor`]):
//! [`eval`] scores it on a labelled split (pictures from `kiln-plots`), [`predict`] labels
//! a file of texts, and [`export`] writes it as a Hugging Face folder.

pub mod eval;
pub mod export;
pub mod predict;
