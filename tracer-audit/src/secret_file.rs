//! Files that hold a secret (the fingerprint HMAC key, the audit signing key): created
//! once with mode 0600 in a 0700 directory, and refused when group or others can read
//! them.
use std::{
    fs::{self, OpenOptions},
    io::{self, Read as _, Write as _},
    os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

#[derive(Debug, thiserror::Error)]
pub enum SecretFileError {
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: io::Error },
    #[error(
        "{path} is readable by group or others (mode {mode:o}); `chmod 600` it: it holds a secret"
    )]
    TooOpen { path: PathBuf, mode: u32 },
}

/// The bytes of the secret at `path`; if there is none, `make` produces them and they
/// are written first. Two tracers starting at once agree on one secret: it is written to
/// a temporary file and linked into place, which fails if one exists.
pub fn read_or_create(
    path: &Path,
    make: impl FnOnce() -> io::Result<Vec<u8>>,
) -> Result<Vec<u8>, SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    };
    match fs::metadata(path) {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            create(path, &make().map_err(io_err)?).map_err(io_err)?
        }
        Err(e) => return Err(io_err(e)),
    }
    read(path)
}

/// The bytes of an existing secret file, refused when group or others can read it.
pub fn read(path: &Path) -> Result<Vec<u8>, SecretFileError> {
    let io_err = |source| SecretFileError::Io {
        path: path.to_owned(),
        source,
    };
    let mut file = fs::File::open(path).map_err(io_err)?;
    let mode = file.metadata().map_err(io_err)?.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(SecretFileError::TooOpen {
            path: path.to_owned(),
            mode,
        });
    }
    let mut secret = Vec::with_capacity(64);
    file.read_to_end(&mut secret).map_err(io_err)?;
    Ok(secret)
}

/// Random bytes from the kernel.
pub fn random_bytes(len: usize) -> io::Result<Vec<u8>> {
    let mut bytes = vec![0u8; len];
    fs::File::open("/dev/urandom")?.read_exact(&mut bytes)?;
    Ok(bytes)
}

/// Creates the parent directory (0700) if it is missing.
pub fn create_parent_dir(path: &Path) -> io::Result<()> {
    match path.parent().filter(|d| !d.as_os_str().is_empty()) {
        Some(dir) => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir),
        None => Ok(()),
    }
}

fn create(path: &Path, contents: &[u8]) -> io::Result<()> {
    create_parent_dir(path)?;
    let tmp = path.with_extension(format!("tmp.{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    let linked = written.and_then(|()| fs::hard_link(&tmp, path));
    let _ = fs::remove_file(&tmp);
    match linked {
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        other => other,
    }
}
