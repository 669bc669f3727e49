//! One file per group of probes.
mod io;
mod io_uring;
mod lifecycle;
mod tls;
