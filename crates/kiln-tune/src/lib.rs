//! `tune`: hyper-parameter search as a pipeline stage.
//!
//! A study searches the `[tune.space]` of a config ([`space`]): each trial's
//! settings come from a [`sampler`] (random, grid or TPE), each trial is a real
//! `train` process that reports its validations over a pipe ([`link`]), and a
//! [`pruner`] (median or ASHA) stops the unpromising ones. The study lives in
//! an append-only [`journal`], so `tune` survives `kill -9` and many workers
//! share one study ([`worker`]). [`report`] writes what people read.

pub mod journal;
pub mod link;
pub mod pruner;
pub mod report;
pub mod sampler;
pub mod space;
mod tpe;
pub mod worker;
