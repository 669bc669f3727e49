//! The state file: where the chain stands, so a restart continues it. Written with
//! mode 0600 to a temporary file that is renamed over the old one (a reader never sees
//! half a state), synced to disk at checkpoints, seq reservations and shutdown. A lock
//! on `FILE.lock` keeps two tracers from sharing one state file (and so one stream).
use std::{
    ffi::OsString,
    fs::{self, File, OpenOptions},
    io::{self, Write as _},
    os::{fd::AsRawFd as _, unix::fs::OpenOptionsExt as _},
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

use super::chain::{Hash, Head, parse_hex, to_hex};
use crate::secret_file::create_parent_dir;

pub const DEFAULT_STATE_FILE: &str = "/var/lib/tracer/audit.state";
const VERSION: u32 = 1;

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("audit state file {path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "audit state file {path} is in use by another running tracer (lock {lock} is held); give each tracer its own --audit-state"
    )]
    Locked { path: PathBuf, lock: PathBuf },
    #[error(
        "audit state file {path} is not a tracer state ({reason}); move it away to start a new chain (its seqs would start again at 1)"
    )]
    Corrupt { path: PathBuf, reason: String },
}

/// What the state file holds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Saved {
    pub stream: String,
    /// The last line handed to the sinks and flushed (seq 0: none yet).
    pub head: Head,
    /// No line with a seq above this was written by the tracer that saved this state;
    /// one that stops uncleanly may have written any seq up to it.
    pub reserved_until: u64,
    /// The tracer stopped cleanly: `head` is its last line and nothing above it was used.
    pub clean: bool,
    /// The last checkpoint written, which the next one links to.
    pub checkpoint: Option<Head>,
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct OnDisk {
    version: u32,
    stream: String,
    seq: u64,
    hash: String,
    reserved_until: u64,
    clean: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_seq: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    checkpoint_hash: Option<String>,
}

/// An open, locked state file.
#[derive(Debug)]
pub struct StateFile {
    path: PathBuf,
    tmp: PathBuf,
    /// Held open for the lock.
    _lock: File,
}

impl StateFile {
    /// Locks the state file at `path` and reads it (`None`: no chain yet).
    pub fn open(path: &Path) -> Result<(Self, Option<Saved>), StateError> {
        let io_err = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        create_parent_dir(path).map_err(io_err)?;
        let lock_path = suffixed(path, ".lock");
        let lock = OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .mode(0o600)
            .open(&lock_path)
            .map_err(io_err)?;
        // SAFETY: a valid open descriptor.
        if unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
            let e = io::Error::last_os_error();
            return Err(if e.kind() == io::ErrorKind::WouldBlock {
                StateError::Locked {
                    path: path.to_owned(),
                    lock: lock_path,
                }
            } else {
                io_err(e)
            });
        }
        let saved = match fs::read(path) {
            Ok(bytes) => Some(parse(&bytes).map_err(|reason| StateError::Corrupt {
                path: path.to_owned(),
                reason,
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err(e)),
        };
        let file = Self {
            path: path.to_owned(),
            tmp: suffixed(path, ".tmp"),
            _lock: lock,
        };
        Ok((file, saved))
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Replaces the state; with `durable`, it is on disk when this returns.
    pub fn save(&self, saved: &Saved, durable: bool) -> io::Result<()> {
        let on_disk = OnDisk {
            version: VERSION,
            stream: saved.stream.clone(),
            seq: saved.head.seq,
            hash: to_hex(&saved.head.hash),
            reserved_until: saved.reserved_until,
            clean: saved.clean,
            checkpoint_seq: saved.checkpoint.map(|c| c.seq),
            checkpoint_hash: saved.checkpoint.map(|c| to_hex(&c.hash)),
        };
        let mut text = serde_json::to_vec(&on_disk).map_err(io::Error::other)?;
        text.push(b'\n');
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .mode(0o600)
            .open(&self.tmp)?;
        file.write_all(&text)?;
        if durable {
            file.sync_all()?;
        }
        fs::rename(&self.tmp, &self.path)?;
        if durable && let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            File::open(dir)?.sync_all()?;
        }
        Ok(())
    }
}

fn parse(bytes: &[u8]) -> Result<Saved, String> {
    let d: OnDisk = serde_json::from_slice(bytes).map_err(|e| e.to_string())?;
    if d.version != VERSION {
        return Err(format!(
            "version {} (this tracer writes {VERSION})",
            d.version
        ));
    }
    let hash = |text: &str| -> Result<Hash, String> {
        parse_hex(text).ok_or_else(|| format!("{text:?} is not a 64-digit hex hash"))
    };
    let checkpoint = match (d.checkpoint_seq, d.checkpoint_hash) {
        (Some(seq), Some(h)) => Some(Head {
            seq,
            hash: hash(&h)?,
        }),
        (None, None) => None,
        _ => return Err("checkpoint_seq and checkpoint_hash come together".to_owned()),
    };
    if d.reserved_until < d.seq {
        return Err(format!(
            "reserved_until {} is below seq {}",
            d.reserved_until, d.seq
        ));
    }
    Ok(Saved {
        stream: d.stream,
        head: Head {
            seq: d.seq,
            hash: hash(&d.hash)?,
        },
        reserved_until: d.reserved_until,
        clean: d.clean,
        checkpoint,
    })
}

fn suffixed(path: &Path, suffix: &str) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(suffix);
    PathBuf::from(name)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn saved() -> Saved {
        Saved {
            stream: "h".to_owned(),
            head: Head {
                seq: 12,
                hash: [3; 32],
            },
            reserved_until: 100,
            clean: false,
            checkpoint: Some(Head {
                seq: 10,
                hash: [4; 32],
            }),
        }
    }

    #[test]
    fn round_trip_0600_and_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.state");
        let (file, none) = StateFile::open(&path).unwrap();
        assert_eq!(none, None);
        file.save(&saved(), true).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(matches!(
            StateFile::open(&path),
            Err(StateError::Locked { .. })
        ));
        drop(file);
        let (_file, again) = StateFile::open(&path).unwrap();
        assert_eq!(again, Some(saved()));
    }

    #[test]
    fn corrupt_state_is_an_error_not_a_new_chain() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("audit.state");
        for text in [
            "garbage",
            r#"{"version":1,"stream":"h","seq":5,"hash":"00","reserved_until":9,"clean":true}"#,
            r#"{"version":1,"stream":"h","seq":5,"hash":"0000000000000000000000000000000000000000000000000000000000000000","reserved_until":4,"clean":true}"#,
        ] {
            fs::write(&path, text).unwrap();
            let err = StateFile::open(&path).unwrap_err();
            assert!(matches!(err, StateError::Corrupt { .. }), "{text}: {err}");
        }
    }
}
