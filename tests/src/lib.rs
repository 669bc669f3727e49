//! Harness for the end-to-end tests: runs the real `tracer` binary against real
//! servers (Python, nginx) and clients (curl, ab, wrk, raw sockets) on loopback.
//!
//! Everything it spawns lives in its own process group and is killed when its
//! guard is dropped, so a failing (panicking) test leaves nothing behind.

pub mod alertmanager;
pub mod audit;
pub mod clients;
pub mod hub;
pub mod identity;
pub mod load;
pub mod output;
pub mod ports;
pub mod process;
pub mod procfs;
pub mod record;
pub mod scenario;
pub mod servers;
pub mod tls;
pub mod tracer;
pub mod workspace;
