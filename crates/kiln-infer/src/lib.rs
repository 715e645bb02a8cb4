//! The batch stages that use a trained model ([`kiln_model::Predictor`]):
//! [`eval`] scores it on a labelled split (pictures from `kiln-plots`), [`predict`] labels
//! a file of texts, [`export`] writes it as a Hugging Face folder, and [`gate`]
//! compares a registry candidate with production before a promotion. [`label`]
//! turns labelling functions' votes into weak labels (a `model` function runs a model).

pub mod eval;
pub mod export;
pub mod gate;
pub mod label;
pub mod predict;
