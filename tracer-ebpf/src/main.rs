//! Kernel programs of tracer.
//!
//! Only tracepoints are used: this kernel (and many locked-down production kernels) has no
//! kprobes and no BPF trampolines. The hot path, run for every read/write-family syscall
//! of every process on the host, is one bit of the `WATCHED_TGIDS` bitmap, the caller's
//! tgid; everything else happens only for processes that serve a watched port.
#![no_std]
// Atomic OR and AND on map memory (maps.rs): the BPF target hides `AtomicU64`'s.
#![feature(core_intrinsics)]
#![allow(internal_features)]
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
