//! Reading the store: filtered records, one record with its proof, top-N, the time
//! series and totals, and per-stream integrity. The CLI and the HTTP API both call
//! these, so `tracer-hub query` and the dashboard give the same answers.
pub mod alerts;
pub mod filter;
pub mod format;
pub mod integrity;
pub mod records;
pub mod series;
pub mod top;
