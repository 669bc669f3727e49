//! Kernel struct field offsets from the running kernel's BTF, and tracepoint record
//! offsets from tracefs, so nothing is hard-coded for one kernel build.
use std::{fs, path::Path};

use anyhow::{Context as _, Result, anyhow, bail};
use btf_rs::{Btf, Type};
use tracer_common::KernelOffsets;

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
        fdt_max_fds: f("fdtable.max_fds")?,
        fdt_fd: f("fdtable.fd")?,
        file_private_data: f("file.private_data")?,
        file_f_inode: f("file.f_inode")?,
        inode_i_mode: f("inode.i_mode")?,
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
    })
}

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
    fn running_kernel_offsets_resolve() {
        let offsets = load(Path::new("/sys/kernel/tracing")).expect("offsets");
        // skc_dport and skc_num share the skc_portpair word, in this order, on every kernel.
        assert_eq!(offsets.sock_common_num, offsets.sock_common_dport + 2);
        assert_eq!(offsets.sock_common_daddr + 4, offsets.sock_common_rcv_saddr);
        assert_ne!(offsets.task_files, 0);
    }
}
