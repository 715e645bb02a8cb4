//! kiln-monitor's integration tests, in one binary: `monitor` on logs it did not
//! write, and its statistics against scipy.

mod monitor;
mod stats_scipy;
mod tagger;
