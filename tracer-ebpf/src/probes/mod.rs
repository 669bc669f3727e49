//! One file per group of tracepoints.
mod io;
mod lifecycle;
