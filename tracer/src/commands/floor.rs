//! `tracer floor HOOK`: holds empty programs on one hook set until killed, for
//! `cargo xtask bench --floors`.
use anyhow::Result;

use crate::kernel::floors::{self, Hook};

pub const READY: &str = "tracer: floor ready";

pub fn run(hook: Hook) -> Result<()> {
    let _programs = floors::attach(hook)?;
    eprintln!("{READY} ({hook})");
    // Links are file descriptors: the kernel detaches them when SIGTERM ends the process.
    loop {
        std::thread::park();
    }
}
