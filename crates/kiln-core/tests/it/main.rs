//! kiln-core's integration tests, in one binary: scores and statistics checked
//! against the Python libraries' own outputs (fixtures from scripts/fixtures/).

mod calibration_scipy;
mod entities_seqeval;
mod metrics_sklearn;
