//! What the file-backed sinks share: a record is a line, so a file that a crash cut
//! short ends at its last newline.
use std::{fs::File, io, os::unix::fs::FileExt as _};

/// The length of `file` (`len` bytes long) up to and including its last newline.
pub fn complete_length(file: &File, len: u64) -> io::Result<u64> {
    const CHUNK: u64 = 64 * 1024;
    let mut end = len;
    let mut buf = vec![0u8; CHUNK as usize];
    while end > 0 {
        let start = end.saturating_sub(CHUNK);
        let chunk = &mut buf[..(end - start) as usize];
        file.read_exact_at(chunk, start)?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}
