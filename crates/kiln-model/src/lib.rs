//! kiln's model crate: the compute backend today, BERT-family encoders and
//! classification heads next (see the model/train issue).

pub mod device;

pub use device::{DeviceError, DeviceSpec};
