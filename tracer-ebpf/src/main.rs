//! Kernel programs of tracer.
//!
//! Only tracepoints are used: this kernel (and many locked-down production kernels) has no
//! kprobes and no BPF trampolines. The hot path, run for every read/write-family syscall
//! of every process on the host, is one hash lookup of the caller's tgid in
//! `WATCHED_TGIDS`; everything else happens only for processes that serve a watched port.
#![no_std]
#![no_main]

mod body;
mod conn;
mod emit;
mod maps;
mod probes;
mod sock;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects programs that could reach this; it is never executed.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 4] = *b"GPL\0";
