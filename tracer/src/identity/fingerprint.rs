//! Fingerprints of credentials that must never be written: an HMAC-SHA256 under a
//! per-install secret, so the same key yields the same fingerprint across restarts
//! while the fingerprint alone cannot be tested against guessed keys elsewhere.
use std::{
    fmt,
    path::{Path, PathBuf},
};

use hmac::{Hmac, Mac as _};
use sha2::Sha256;

use tracer_audit::secret_file::{self, SecretFileError};

/// Bytes of a newly created secret.
const SECRET_LEN: usize = 32;
/// A shorter secret file was not written by the tracer (or was truncated).
const MIN_SECRET_LEN: usize = 16;
/// 16 hex digits: collisions stay negligible for the keys one host sees.
const FINGERPRINT_BYTES: usize = 8;

#[derive(Debug, thiserror::Error)]
pub enum SecretError {
    #[error(transparent)]
    File(#[from] SecretFileError),
    #[error("{path} holds {len} bytes, fewer than {MIN_SECRET_LEN}: not a tracer secret")]
    TooShort { path: PathBuf, len: usize },
}

/// The per-install HMAC key.
#[derive(Clone)]
pub struct Fingerprinter {
    mac: Hmac<Sha256>,
}

impl fmt::Debug for Fingerprinter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Fingerprinter { secret: <hidden> }")
    }
}

/// The first 8 bytes of an HMAC, written as 16 lowercase hex digits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fingerprint([u8; FINGERPRINT_BYTES]);

impl Fingerprint {
    pub fn hex(&self) -> [u8; FINGERPRINT_BYTES * 2] {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mut out = [0u8; FINGERPRINT_BYTES * 2];
        for (i, byte) in self.0.iter().enumerate() {
            out[2 * i] = DIGITS[usize::from(byte >> 4)];
            out[2 * i + 1] = DIGITS[usize::from(byte & 0xf)];
        }
        out
    }
}

impl fmt::Display for Fingerprint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let hex = self.hex();
        // Hex digits are ASCII.
        f.write_str(std::str::from_utf8(&hex).unwrap_or_default())
    }
}

impl Fingerprinter {
    pub fn from_secret(secret: &[u8]) -> Self {
        Self {
            // HMAC accepts keys of any length.
            mac: Hmac::<Sha256>::new_from_slice(secret).unwrap_or_else(|_| unreachable!()),
        }
    }

    /// Reads the secret at `path`, creating it (0600, parent 0700) with random bytes if
    /// it does not exist.
    pub fn load_or_create(path: &Path) -> Result<Self, SecretError> {
        let secret = secret_file::read_or_create(path, || secret_file::random_bytes(SECRET_LEN))?;
        if secret.len() < MIN_SECRET_LEN {
            return Err(SecretError::TooShort {
                path: path.to_owned(),
                len: secret.len(),
            });
        }
        Ok(Self::from_secret(&secret))
    }

    pub fn fingerprint(&self, credential: &[u8]) -> Fingerprint {
        let mut mac = self.mac.clone();
        mac.update(credential);
        let digest = mac.finalize().into_bytes();
        let mut out = [0u8; FINGERPRINT_BYTES];
        out.copy_from_slice(&digest[..FINGERPRINT_BYTES]);
        Fingerprint(out)
    }
}

#[cfg(test)]
mod tests {
    use std::{fs, os::unix::fs::PermissionsExt as _};

    use super::*;

    #[test]
    fn same_key_same_fingerprint_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/fingerprint.key");
        let a = Fingerprinter::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = Fingerprinter::load_or_create(&path).unwrap();
        assert_eq!(a.fingerprint(b"k1"), b.fingerprint(b"k1"));
        assert_ne!(a.fingerprint(b"k1"), a.fingerprint(b"k2"));
        assert_eq!(a.fingerprint(b"k1").to_string().len(), 16);
        assert!(!format!("{a:?}").contains(&format!("{:?}", fs::read(&path).unwrap())));
    }

    #[test]
    fn refuses_open_or_short_secrets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        fs::write(&path, [7u8; 32]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            Fingerprinter::load_or_create(&path),
            Err(SecretError::File(SecretFileError::TooOpen { .. }))
        ));
        fs::write(&path, [7u8; 3]).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o600)).unwrap();
        assert!(matches!(
            Fingerprinter::load_or_create(&path),
            Err(SecretError::TooShort { .. })
        ));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("key", "The quick brown fox jumps over the lazy dog") starts f7bc83f430538424.
        let f = Fingerprinter::from_secret(b"key");
        assert_eq!(
            f.fingerprint(b"The quick brown fox jumps over the lazy dog")
                .to_string(),
            "f7bc83f430538424"
        );
    }
}
