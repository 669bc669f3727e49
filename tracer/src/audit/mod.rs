//! Tamper evidence for the record stream (docs/audit.md): every line is sealed into a
//! hash chain (`chain`), signed checkpoints commit to it (`checkpoint`, `key`), the
//! chain head survives restarts (`state`, `start`), losses become lines of their own
//! (`loss`), `output` writes the sealed stream to the sinks, `verify` checks files, and
//! `commands` are `tracer key show` and `tracer verify`.
pub mod chain;
pub mod checkpoint;
pub mod commands;
pub mod key;
pub mod loss;
pub mod output;
pub mod start;
pub mod state;
pub mod stream;
pub mod verify;

pub use chain::Kind;
pub use loss::LossSnapshot;
pub use output::{AuditError, Output, Settings};
pub use stream::StreamId;
