//! Kernel struct field offsets from the running kernel's BTF, and tracepoint record
//! offsets from tracefs, so nothing is hard-coded for one kernel build.
use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use tracer_common::{KernelOffsets, Syscall};

pub const VMLINUX_BTF: &str = "/sys/kernel/btf/vmlinux";

/// Reads every offset the kernel programs need.
pub fn load(tracefs: &Path) -> Result<KernelOffsets> {
    let btf = Btf::from_file(VMLINUX_BTF)
        .map_err(|e| anyhow!("{e}"))
        .with_context(|| format!("reading kernel BTF from {VMLINUX_BTF}"))?;
    let f = |path: &str| field_offset(&btf, path).with_context(|| format!("BTF field {path}"));
    Ok(KernelOffsets {
        task_files: f("task_struct.files")?,
        files_fdt: f("files_struct.fdt")?,
        fdt_max_fds: fdt_window(f("fdtable.max_fds")?, f("fdtable.fd")?)?,
        file_private_data: f("file.private_data")?,
        file_f_inode: f("file.f_inode")?,
        inode_i_mode: f("inode.i_mode")?,
        inode_i_ino: f("inode.i_ino")?,
        socket_sk: f("socket.sk")?,
        sock_common_family: f("sock_common.skc_family")?,
        sock_common_state: f("sock_common.skc_state")?,
        sock_common_num: f("sock_common.skc_num")?,
        sock_common_dport: f("sock_common.skc_dport")?,
        sock_common_rcv_saddr: f("sock_common.skc_rcv_saddr")?,
        sock_common_daddr: f("sock_common.skc_daddr")?,
        sock_common_v6_rcv_saddr: f("sock_common.skc_v6_rcv_saddr")?,
        sock_common_v6_daddr: f("sock_common.skc_v6_daddr")?,
        sock_protocol: f("sock.sk_protocol")?,
        sock_type: f("sock.sk_type")?,
        sock_common: f("sock.__sk_common")?,
        tcp_bytes_received: f("tcp_sock.bytes_received")?,
        tcp_rcv_nxt: f("tcp_sock.rcv_nxt")?,
        tcp_copied_seq: f("tcp_sock.copied_seq")?,
        tcp_bytes_sent: f("tcp_sock.bytes_sent")?,
        fork_child_pid: tracepoint_field(tracefs, "sched/sched_process_fork", "child_pid")?,
        regs_syscall_nr: f(abi::SYSCALL_NR)?,
        regs_args: args_window([f(abi::ARGS[0])?, f(abi::ARGS[1])?, f(abi::ARGS[2])?])?,
        regs_arg4: f(abi::ARG4)?,
        thread_status: match abi::THREAD_STATUS {
            Some(status) => f("task_struct.thread_info")? + f(status)?,
            None => u32::MAX,
        },
        syscall_nr: Syscall::CAPTURED.map(abi::number),
    })
}

/// The offset of the three argument registers, which the kernel programs read at once:
/// the third argument's register first, then the second's and the first's, 8 bytes
/// apart (x86_64's `pt_regs` is user ABI, through ptrace, so this holds on every kernel).
fn args_window([first, second, third]: [u32; 3]) -> Result<u32> {
    if second != third + 8 || first != third + 16 {
        bail!(
            "struct pt_regs keeps the syscall arguments at offsets {first}, {second}, {third}, \
             not together in reverse order as the kernel programs read them"
        );
    }
    Ok(third)
}

/// The offset of `fdtable.max_fds`, which the kernel programs read together with the
/// `fd` array pointer 8 bytes after it: the descriptor walk runs on every captured
/// syscall, and each kernel read it saves is paid per request.
fn fdt_window(max_fds: u32, fd: u32) -> Result<u32> {
    if fd != max_fds + 8 {
        bail!(
            "struct fdtable keeps max_fds at offset {max_fds} and fd at {fd}, \
             not 8 bytes apart as the kernel programs read them"
        );
    }
    Ok(max_fds)
}

/// Where this architecture's syscall entry saves the number and the first three
/// arguments in `struct pt_regs`, and what each captured syscall's number is. The
/// kernel programs read them back when the syscall returns.
#[cfg(target_arch = "x86_64")]
mod abi {
    use tracer_common::Syscall;

    pub const SYSCALL_NR: &str = "pt_regs.orig_ax";
    pub const ARGS: [&str; 3] = ["pt_regs.di", "pt_regs.si", "pt_regs.dx"];
    /// The syscall ABI's fourth argument (the C ABI's is rcx, which `syscall` clobbers).
    pub const ARG4: &str = "pt_regs.r10";
    /// A 64-bit process may still make 32-bit syscalls (`int 0x80`), numbered apart.
    pub const THREAD_STATUS: Option<&str> = Some("thread_info.status");

    pub fn number(syscall: Syscall) -> u32 {
        let nr = match syscall {
            Syscall::Read => libc::SYS_read,
            Syscall::Readv => libc::SYS_readv,
            Syscall::Recvfrom => libc::SYS_recvfrom,
            Syscall::Recvmsg => libc::SYS_recvmsg,
            Syscall::Write => libc::SYS_write,
            Syscall::Writev => libc::SYS_writev,
            Syscall::Sendto => libc::SYS_sendto,
            Syscall::Sendmsg => libc::SYS_sendmsg,
            Syscall::Sendfile => libc::SYS_sendfile,
            Syscall::SpliceRead => libc::SYS_splice,
            Syscall::Preadv2 => libc::SYS_preadv2,
            Syscall::Pwritev2 => libc::SYS_pwritev2,
            Syscall::Recvmmsg => libc::SYS_recvmmsg,
            Syscall::Sendmmsg => libc::SYS_sendmmsg,
            // Not syscalls, or splice's other direction (one program for both): never
            // matched.
            Syscall::SpliceWrite | Syscall::SslRead | Syscall::SslWrite => return u32::MAX,
        };
        nr as u32
    }
}

#[cfg(not(target_arch = "x86_64"))]
compile_error!(
    "the capture reads syscall arguments from x86_64's struct pt_regs; \
     other architectures are not supported yet"
);

/// Byte offset of `struct.field`, searching through anonymous struct/union members the
/// way C name lookup does. Bitfields are refused: the programs read whole bytes.
fn field_offset(btf: &Btf, path: &str) -> Result<u32> {
    let (type_name, field) = path.split_once('.').context("expected struct.field")?;
    let candidates = btf
        .resolve_types_by_name(type_name)
        .map_err(|e| anyhow!("{e}"))?;
    let strukt = candidates
        .iter()
        .find_map(|t| match t {
            Type::Struct(s) => Some(s),
            _ => None,
        })
        .with_context(|| format!("no struct {type_name} in BTF"))?;
    let bits = member_bit_offset(btf, strukt, field)?
        .with_context(|| format!("struct {type_name} has no field {field}"))?;
    if bits % 8 != 0 {
        bail!("{path} is not byte aligned (bit offset {bits})");
    }
    Ok(bits / 8)
}

fn member_bit_offset(btf: &Btf, strukt: &btf_rs::Struct, field: &str) -> Result<Option<u32>> {
    for member in &strukt.members {
        let name = btf.resolve_name(member).unwrap_or_default();
        if name == field {
            if member.bitfield_size().is_some_and(|size| size != 0) {
                bail!("{field} is a bitfield");
            }
            return Ok(Some(member.bit_offset()));
        }
        if !name.is_empty() {
            continue;
        }
        // An anonymous struct or union: its members are fields of the outer struct.
        let inner = btf
            .resolve_chained_type(member)
            .map_err(|e| anyhow!("{e}"))?;
        if let Type::Struct(s) | Type::Union(s) = &inner
            && let Some(bits) = member_bit_offset(btf, s, field)?
        {
            return Ok(Some(member.bit_offset() + bits));
        }
    }
    Ok(None)
}

/// Offset of `field` in a tracepoint's record, from its `format` file.
fn tracepoint_field(tracefs: &Path, event: &str, field: &str) -> Result<u32> {
    let path = tracefs.join("events").join(event).join("format");
    let format =
        fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    parse_format_offset(&format, field)
        .with_context(|| format!("no field {field} in {}", path.display()))
}

fn parse_format_offset(format: &str, field: &str) -> Option<u32> {
    format.lines().find_map(|line| {
        let mut parts = line.trim().split(';').map(str::trim);
        let decl = parts.next()?.strip_prefix("field:")?;
        let name = decl
            .rsplit(|c: char| c.is_whitespace() || c == '*')
            .next()?;
        if name != field {
            return None;
        }
        parts.find_map(|p| p.strip_prefix("offset:")?.parse().ok())
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tracefs_format_lines() {
        let format = "name: sched_process_fork\nformat:\n\
            \tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;\n\
            \tfield:__data_loc char[] parent_comm;\toffset:8;\tsize:4;\tsigned:0;\n\
            \tfield:pid_t parent_pid;\toffset:12;\tsize:4;\tsigned:1;\n\
            \tfield:pid_t child_pid;\toffset:20;\tsize:4;\tsigned:1;\n";
        assert_eq!(parse_format_offset(format, "child_pid"), Some(20));
        assert_eq!(parse_format_offset(format, "parent_pid"), Some(12));
        assert_eq!(parse_format_offset(format, "pid"), None);
    }

    #[test]
    fn argument_registers_must_lie_together_in_reverse() {
        assert_eq!(args_window([112, 104, 96]).unwrap(), 96);
        for scattered in [[96, 104, 112], [112, 104, 88], [120, 104, 96]] {
            let error = args_window(scattered).unwrap_err().to_string();
            assert!(error.contains("not together"), "{error}");
        }
    }

    #[test]
    fn the_descriptor_array_must_follow_max_fds() {
        assert_eq!(fdt_window(0, 8).unwrap(), 0);
        for apart in [(0, 16), (8, 0), (4, 8)] {
            let error = fdt_window(apart.0, apart.1).unwrap_err().to_string();
            assert!(error.contains("not 8 bytes apart"), "{error}");
        }
    }

    #[test]
    fn running_kernel_offsets_resolve() {
        let offsets = load(Path::new("/sys/kernel/tracing")).expect("offsets");
        // skc_dport and skc_num share the skc_portpair word, in this order, on every kernel.
        assert_eq!(offsets.sock_common_num, offsets.sock_common_dport + 2);
        assert_eq!(offsets.sock_common_daddr + 4, offsets.sock_common_rcv_saddr);
        assert_ne!(offsets.task_files, 0);
        // x86_64's pt_regs is user ABI (ptrace): orig_ax at 120, di 112, si 104, dx 96.
        assert_eq!(offsets.regs_syscall_nr, 120);
        assert_eq!(offsets.regs_args, 96);
        assert_eq!(offsets.regs_arg4, 56);
        assert_ne!(offsets.thread_status, u32::MAX);
        assert_eq!(offsets.syscall_nr[Syscall::Read as usize], 0);
        assert_eq!(offsets.syscall_nr[Syscall::Recvfrom as usize], 45);
        assert_eq!(offsets.syscall_nr[Syscall::Sendfile as usize], 40);
    }
}
