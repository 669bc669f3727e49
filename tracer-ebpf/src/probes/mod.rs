//! One file per group of probes.
mod io;
mod lifecycle;
mod tls;
