//! Everything that touches the kernel: capability checks, loading and attaching the
//! programs, discovering already-running servers and their TLS libraries, and decoding
//! ring-buffer events.
pub mod check;
pub mod discovery;
pub mod events;
pub mod floors;
pub mod io_uring;
pub mod loader;
pub mod losses;
pub mod offsets;
pub mod ssl_entry;
#[cfg(test)]
mod tests;
pub mod tls;
pub mod watched;
