//! Where records go. Each sink takes one serialized JSON line at a time.
mod stdout;

pub use stdout::StdoutSink;
