//! tracer: an eBPF host-level HTTP access tracer.
//!
//! Data flows through the modules in this order:
//! `kernel` (load programs, read ring-buffer events) -> `connection` (per-connection
//! state) -> `http` (HTTP/1.x exchanges) -> `enrich` + `record` (process, wall-clock
//! time, JSON record) -> `sink` (where records go). `identity` says who made each
//! request; `config` reads the TOML file. `pipeline` wires them together.
pub mod audit;
pub mod cli;
pub mod commands;
pub mod config;
pub mod connection;
pub mod enrich;
pub mod http;
pub mod identity;
pub mod kernel;
pub mod pipeline;
pub mod record;
pub mod sink;
