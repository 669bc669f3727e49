//! Where to probe an OpenSSL build so that the probes do not single-step.
//!
//! A uprobe replaces an instruction with a breakpoint; unless the kernel can emulate that
//! instruction (push, nop, call, jmp, jcc on x86_64), it executes it out of line under a
//! single-step trap. Measured under HTTPS load here, that debug trap took about 30% of
//! all CPU: `SSL_read`, `SSL_write` and their `_ex` forms start with `sub $N,%rsp`. In
//! OpenSSL 1.1.1 and 3.x, `SSL_read_ex` is `sub $8,%rsp; call ssl_read_internal`, and
//! `SSL_read` calls the same function, which takes `SSL_read_ex`'s arguments and starts
//! with a push; likewise for writes. When the file has exactly that shape (checked, not
//! assumed), the probes go on the internal functions; otherwise on the exported ones.
use std::path::Path;

use object::{Object as _, ObjectSection as _, ObjectSymbol as _};

/// File offsets of the internal read and write functions behind `SSL_read(_ex)` and
/// `SSL_write(_ex)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Internal {
    pub read: u64,
    pub write: u64,
}

/// Reads `path` and finds the internal functions; None when its code has another shape.
pub fn internal(path: &Path) -> Option<Internal> {
    let data = std::fs::read(path).ok()?;
    let file = object::File::parse(&*data).ok()?;
    if file.architecture() != object::Architecture::X86_64 {
        return None;
    }
    let code = Code { file: &file };
    Some(Internal {
        read: code.shared_callee("SSL_read_ex", "SSL_read")?,
        write: code.shared_callee("SSL_write_ex", "SSL_write")?,
    })
}

struct Code<'a, 'data> {
    file: &'a object::File<'data>,
}

/// How far into the plain form to look for its call of the internal function.
const SEARCH: u64 = 64;

impl Code<'_, '_> {
    /// The function `ex` tail-wraps (`sub $8,%rsp; call F`), if `plain` calls F too and F
    /// starts with a push; its file offset.
    fn shared_callee(&self, ex: &str, plain: &str) -> Option<u64> {
        let ex_addr = self.symbol(ex)?;
        let bytes = self.bytes(ex_addr, 9)?;
        let callee = match bytes {
            [0x48, 0x83, 0xec, 0x08, 0xe8, rel @ ..] => call_target(ex_addr + 4, rel)?,
            _ => return None,
        };
        if !starts_with_push(self.bytes(callee, 2)?) {
            return None;
        }
        let plain_addr = self.symbol(plain)?;
        let body = self.bytes(plain_addr, SEARCH as usize)?;
        let called = (0..body.len().saturating_sub(4)).any(|i| {
            body[i] == 0xe8
                && body[i + 1..i + 5]
                    .try_into()
                    .ok()
                    .and_then(|rel: [u8; 4]| call_target(plain_addr + i as u64, &rel))
                    == Some(callee)
        });
        if !called {
            return None;
        }
        self.file_offset(callee)
    }

    fn symbol(&self, name: &str) -> Option<u64> {
        self.file
            .dynamic_symbols()
            .chain(self.file.symbols())
            .find(|s| s.name() == Ok(name) && s.is_definition())
            .map(|s| s.address())
    }

    fn bytes(&self, addr: u64, len: usize) -> Option<&[u8]> {
        let section = self.section(addr)?;
        let data = section.data().ok()?;
        let start = usize::try_from(addr - section.address()).ok()?;
        data.get(start..start.checked_add(len)?)
    }

    fn file_offset(&self, addr: u64) -> Option<u64> {
        let section = self.section(addr)?;
        let (offset, _) = section.file_range()?;
        Some(addr - section.address() + offset)
    }

    fn section(&self, addr: u64) -> Option<object::Section<'_, '_>> {
        self.file
            .sections()
            .find(|s| s.address() <= addr && addr < s.address() + s.size())
    }
}

/// Target of a 5-byte relative call at `at` whose rel32 is `rel`.
fn call_target(at: u64, rel: &[u8]) -> Option<u64> {
    let rel = i32::from_le_bytes(rel.try_into().ok()?);
    (at + 5).checked_add_signed(i64::from(rel))
}

/// `push %reg` (0x50-0x57), or with a REX.B prefix for r8-r15: emulated by the kernel.
fn starts_with_push(bytes: &[u8]) -> bool {
    matches!(bytes, [0x50..=0x57, ..] | [0x41, 0x50..=0x57])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_targets_go_both_ways() {
        // e8 3d fe ff ff at 0x3544e calls 0x35290 (libssl 3.0 on Debian 12).
        assert_eq!(
            call_target(0x3544e, &[0x3d, 0xfe, 0xff, 0xff]),
            Some(0x35290)
        );
        assert_eq!(call_target(0x100, &[0x10, 0, 0, 0]), Some(0x115));
    }

    #[test]
    fn pushes_are_recognised_and_stack_adjustments_are_not() {
        assert!(starts_with_push(&[0x41, 0x55]));
        assert!(starts_with_push(&[0x55, 0x48]));
        assert!(!starts_with_push(&[0x48, 0x83]));
        assert!(!starts_with_push(&[0xf3, 0x0f]));
    }
}
