//! The audit trail's line format, shared by the sensor (`tracer`) and the hub
//! (`tracer-hub`): one implementation of the chain and its verification.
//!
//! Every line is sealed into a per-stream hash chain (`chain`); signed checkpoints
//! commit to it (`checkpoint`, `key`); a run's first line says where the chain resumed
//! (`start`, with the head kept in `state` across restarts); counters of what could
//! not be recorded become `loss` lines; `verify` checks files, and `verify::parse`
//! takes one sealed line apart for consumers that check a stream line by line.
//! docs/audit.md describes the format.
pub mod chain;
pub mod checkpoint;
pub mod key;
pub mod loss;
pub mod secret_file;
pub mod start;
pub mod state;
pub mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
pub mod timestamp;
pub mod verify;

pub use chain::Kind;
pub use loss::LossSnapshot;
pub use stream::StreamId;
