//! Commands other than `run`, above the library layers: they take parsed flags and
//! print results.
pub mod audit;
pub mod floor;
pub mod sink_bench;
