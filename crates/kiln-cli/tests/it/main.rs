//! kiln-cli's integration tests, in one binary (uv's `tests/it` layout): the stage
//! binaries run as a user runs them, on the default data and on BANKING77.

#[allow(dead_code)] // Each helper serves some of the modules.
mod common;
mod deploy;
mod fuzz;
mod gate;
mod pipeline;
mod serve;
mod shards;
mod stages;
mod tokens;
mod tune;
mod weak;
