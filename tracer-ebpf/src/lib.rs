#![no_std]
//! The kernel programs are the `tracer` binary target; this empty library lets
//! `tracer/build.rs` depend on the crate so cargo rebuilds it when it changes.
