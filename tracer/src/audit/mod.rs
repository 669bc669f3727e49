//! The sealed stream the sensor writes: every line goes through the chain of
//! `tracer_audit` and then to the sinks (`output`).
pub mod output;
#[cfg(test)]
mod verify_tests;

pub use output::{Output, SealedLines, Settings};
