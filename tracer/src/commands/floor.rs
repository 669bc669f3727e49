//! `tracer floor HOOK`: holds empty programs on one hook set until killed, for
//! `cargo xtask bench --floors`.
use anyhow::Result;

use crate::kernel::floors::{self, Hook};

pub const READY: &str = "tracer: floor ready";

pub fn run(hook: Hook, ports: &[u16]) -> Result<()> {
    match hook {
        Hook::OpensslProbes => {
            anyhow::ensure!(
                !ports.is_empty(),
                "openssl-probes needs --port: whose OpenSSL"
            )
        }
        _ => anyhow::ensure!(ports.is_empty(), "--port is for openssl-probes only"),
    }
    let _programs = floors::attach(hook, ports)?;
    eprintln!("{READY} ({hook})");
    // Links are file descriptors: the kernel detaches them when SIGTERM ends the process.
    loop {
        std::thread::park();
    }
}
