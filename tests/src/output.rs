//! What the tracer's file sink left on disk: the live file and its rotated files
//! (`NAME.YYYYMMDDTHHMMSS.mmmZ[.gz|.zst]`), decompressed and parsed strictly.

use anyhow::{Context, Result, anyhow, bail};
use serde_json::Value;
use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use tempfile::TempDir;

/// The rotated files of `live`, oldest first (their names sort chronologically).
pub fn rotated_files(live: &Path) -> Result<Vec<PathBuf>> {
    let dir = live.parent().context("live file has no directory")?;
    let base = live
        .file_name()
        .and_then(|n| n.to_str())
        .context("live file name")?;
    let prefix = format!("{base}.");
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<Vec<_>>>()?
        .into_iter()
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with(&prefix))
        })
        .collect();
    files.sort();
    Ok(files)
}

/// A file's text, decompressed by its suffix.
pub fn read_text(path: &Path) -> Result<String> {
    let file = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut text = String::new();
    let name = path.to_string_lossy();
    if name.ends_with(".gz") {
        flate2::read::GzDecoder::new(file).read_to_string(&mut text)
    } else if name.ends_with(".zst") {
        zstd::Decoder::new(file)?.read_to_string(&mut text)
    } else {
        let mut file = file;
        file.read_to_string(&mut text)
    }
    .with_context(|| format!("reading {}", path.display()))?;
    Ok(text)
}

/// The access records in a file (see [`file_lines`]).
pub fn file_records(path: &Path) -> Result<Vec<Value>> {
    Ok(crate::tracer::access_records(&file_lines(path)?)
        .cloned()
        .collect())
}

/// Every line in a file: each one JSON object, the file ending with a newline, no empty
/// lines (a split record would show as one of these).
pub fn file_lines(path: &Path) -> Result<Vec<Value>> {
    let text = read_text(path)?;
    if !text.is_empty() && !text.ends_with('\n') {
        bail!(
            "{} ends in a partial line: {:?}",
            path.display(),
            tail(&text)
        );
    }
    text.lines()
        .enumerate()
        .map(|(i, line)| {
            let value: Value = serde_json::from_str(line).with_context(|| {
                format!("{} line {} is not JSON: {line}", path.display(), i + 1)
            })?;
            if !value.is_object() {
                bail!("{} line {} is not an object", path.display(), i + 1);
            }
            Ok(value)
        })
        .collect()
}

/// The access records of all rotated files, oldest first, then of the live file.
pub fn all_records(live: &Path) -> Result<Vec<Value>> {
    let mut records = Vec::new();
    for file in all_files(live)? {
        records.extend(file_records(&file)?);
    }
    Ok(records)
}

/// The rotated files, oldest first, then the live file: the order `tracer verify` takes.
pub fn all_files(live: &Path) -> Result<Vec<PathBuf>> {
    let mut files = rotated_files(live)?;
    files.push(live.to_path_buf());
    Ok(files)
}

fn tail(text: &str) -> &str {
    let start = text.len().saturating_sub(80);
    text.get(start..).unwrap_or(text)
}

/// A tmpfs of a given size mounted on a temp dir, unmounted when dropped: a disk that
/// really fills up.
pub struct Tmpfs {
    dir: TempDir,
}

impl Tmpfs {
    /// `options` as for `mount -o`, e.g. `size=1m` or `ro,size=64k`.
    pub fn mount(options: &str) -> Result<Self> {
        let dir = tempfile::tempdir()?;
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "tmpfs"])
            .arg(dir.path())
            .status()
            .context("running mount")?;
        if !status.success() {
            return Err(anyhow!("mount -t tmpfs -o {options} failed: {status}"));
        }
        Ok(Self { dir })
    }

    pub fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Writes `path` until the file system is full; returns the bytes written.
    pub fn fill(&self, path: &Path) -> Result<u64> {
        use std::io::Write;
        let mut file = File::create(path)?;
        let chunk = vec![0u8; 4096];
        let mut written = 0u64;
        loop {
            match file.write(&chunk) {
                Ok(0) => return Ok(written),
                Ok(n) => written += n as u64,
                Err(e) if e.raw_os_error() == Some(libc::ENOSPC) => return Ok(written),
                Err(e) => return Err(e).context("filling the tmpfs"),
            }
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a process still holding a file there must not make the test fail here.
        let _ = Command::new("umount")
            .arg("-l")
            .arg(self.dir.path())
            .status();
    }
}
