//! The Ed25519 key that signs checkpoints. The private key file is PKCS#8 PEM (what
//! `openssl genpkey -algorithm ed25519` writes), created on first run with mode 0600;
//! the public key is printed by `tracer key show` and given to `tracer verify --key`.
use std::{fmt, fs, io, path::Path};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use ed25519_dalek::{
    Signature, Signer as _, SigningKey, VerifyingKey,
    pkcs8::{
        DecodePrivateKey as _, DecodePublicKey as _, EncodePrivateKey as _, EncodePublicKey as _,
        KeypairBytes, spki::der::pem::LineEnding,
    },
};
use sha2::{Digest as _, Sha256};

use crate::secret_file::{self, SecretFileError};

pub const DEFAULT_KEY_FILE: &str = "/var/lib/tracer/audit.key";
/// Hex digits of SHA-256(public key) in a fingerprint: 128 bits.
const FINGERPRINT_HEX_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("audit key: {0}")]
    File(#[from] SecretFileError),
    #[error("audit key {path}: not an Ed25519 private key in PKCS#8 PEM ({reason})")]
    NotAKey { path: String, reason: String },
    #[error(
        "public key {0:?}: expected a PEM public or private key file, `tracer key show` output, or the base64 of 32 raw bytes"
    )]
    BadPublic(String),
}

/// The signing key. Its Debug output never shows the secret.
pub struct AuditKey(SigningKey);

impl fmt::Debug for AuditKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuditKey {{ public: {} }}", self.public().fingerprint())
    }
}

impl AuditKey {
    /// Reads the key at `path`, creating it (random, 0600, parent 0700) if missing.
    pub fn load_or_create(path: &Path) -> Result<Self, KeyError> {
        let pem = secret_file::read_or_create(path, || {
            let seed: [u8; 32] = secret_file::random_bytes(32)?
                .try_into()
                .map_err(|_| io::Error::other("short read from /dev/urandom"))?;
            // PKCS#8 v1 (the seed alone): OpenSSL 3.0 does not read v2 with the public key.
            let pem = KeypairBytes {
                secret_key: seed,
                public_key: None,
            }
            .to_pkcs8_pem(LineEnding::LF)
            .map_err(io::Error::other)?;
            Ok(pem.as_bytes().to_vec())
        })?;
        Self::from_pem(&pem, path)
    }

    /// Reads an existing key without creating one.
    pub fn load(path: &Path) -> Result<Self, KeyError> {
        Self::from_pem(&secret_file::read(path)?, path)
    }

    fn from_pem(pem: &[u8], path: &Path) -> Result<Self, KeyError> {
        let not_a_key = |reason: String| KeyError::NotAKey {
            path: path.display().to_string(),
            reason,
        };
        let text = std::str::from_utf8(pem).map_err(|e| not_a_key(e.to_string()))?;
        SigningKey::from_pkcs8_pem(text)
            .map(Self)
            .map_err(|e| not_a_key(e.to_string()))
    }

    pub fn public(&self) -> PublicKey {
        PublicKey(self.0.verifying_key())
    }

    pub fn sign(&self, message: &[u8]) -> [u8; 64] {
        self.0.sign(message).to_bytes()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PublicKey(VerifyingKey);

impl PublicKey {
    /// Reads a public key from `arg`: a file holding a PEM public key, a PEM private
    /// key, `tracer key show` output or base64; or the base64 text itself.
    pub fn from_arg(arg: &str) -> Result<Self, KeyError> {
        let text = match fs::read_to_string(arg) {
            Ok(text) => text,
            Err(e) if e.kind() == io::ErrorKind::NotFound => arg.to_owned(),
            Err(e) => return Err(KeyError::BadPublic(format!("{arg}: {e}"))),
        };
        Self::parse(&text).ok_or_else(|| KeyError::BadPublic(arg.to_owned()))
    }

    fn parse(text: &str) -> Option<Self> {
        if let Some(pem) = pem_block(text, "PUBLIC KEY") {
            return VerifyingKey::from_public_key_pem(pem).ok().map(Self);
        }
        if let Some(pem) = pem_block(text, "PRIVATE KEY") {
            return SigningKey::from_pkcs8_pem(pem)
                .ok()
                .map(|k| Self(k.verifying_key()));
        }
        let base64 = text
            .lines()
            .find_map(|l| l.strip_prefix("public key: "))
            .unwrap_or(text)
            .trim();
        let raw: [u8; 32] = BASE64.decode(base64).ok()?.try_into().ok()?;
        VerifyingKey::from_bytes(&raw).ok().map(Self)
    }

    /// First 128 bits of SHA-256 over the 32 raw public key bytes, in hex.
    pub fn fingerprint(&self) -> String {
        let digest = Sha256::digest(self.0.as_bytes());
        let mut hex = hex::encode(digest);
        hex.truncate(FINGERPRINT_HEX_LEN);
        hex
    }

    pub fn base64(&self) -> String {
        BASE64.encode(self.0.as_bytes())
    }

    pub fn pem(&self) -> String {
        // Encoding 32 bytes into SPKI cannot fail.
        self.0.to_public_key_pem(LineEnding::LF).unwrap_or_default()
    }

    /// Whether `signature` is this key's signature of `message` (strict verification:
    /// no malleable signatures, no weak keys).
    pub fn verifies(&self, message: &[u8], signature: &[u8]) -> bool {
        let Ok(bytes) = <[u8; 64]>::try_from(signature) else {
            return false;
        };
        self.0
            .verify_strict(message, &Signature::from_bytes(&bytes))
            .is_ok()
    }

    /// What `tracer key show` prints: readable by `tracer verify --key` and by openssl.
    pub fn show(&self) -> String {
        format!(
            "fingerprint: {}\npublic key: {}\n{}",
            self.fingerprint(),
            self.base64(),
            self.pem()
        )
    }
}

/// The text of the first `-----BEGIN {label}-----` ... `-----END {label}-----` block.
fn pem_block<'a>(text: &'a str, label: &str) -> Option<&'a str> {
    let begin = format!("-----BEGIN {label}-----");
    let end = format!("-----END {label}-----");
    let start = text.find(&begin)?;
    let stop = text[start..].find(&end)? + start + end.len();
    Some(&text[start..stop])
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn created_0600_and_stable_across_loads() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub/audit.key");
        let a = AuditKey::load_or_create(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let b = AuditKey::load(&path).unwrap();
        assert_eq!(a.public(), b.public());
        assert!(
            fs::read_to_string(&path)
                .unwrap()
                .starts_with("-----BEGIN PRIVATE KEY-----")
        );
        assert!(!format!("{a:?}").contains("PRIVATE"));
    }

    #[test]
    fn signatures_verify_only_with_the_right_key_and_message() {
        let dir = tempfile::tempdir().unwrap();
        let a = AuditKey::load_or_create(&dir.path().join("a")).unwrap();
        let b = AuditKey::load_or_create(&dir.path().join("b")).unwrap();
        let sig = a.sign(b"head");
        assert!(a.public().verifies(b"head", &sig));
        assert!(!a.public().verifies(b"heads", &sig));
        assert!(!b.public().verifies(b"head", &sig));
        assert!(!a.public().verifies(b"head", &sig[..63]));
    }

    #[test]
    fn public_key_is_read_from_every_form_it_is_shown_in() {
        let dir = tempfile::tempdir().unwrap();
        let key_path = dir.path().join("k");
        let key = AuditKey::load_or_create(&key_path).unwrap();
        let public = key.public();
        let shown = dir.path().join("shown");
        fs::write(&shown, public.show()).unwrap();
        let pem = dir.path().join("pem");
        fs::write(&pem, public.pem()).unwrap();
        for arg in [
            shown.to_str().unwrap(),
            pem.to_str().unwrap(),
            key_path.to_str().unwrap(),
            &public.base64(),
        ] {
            assert_eq!(PublicKey::from_arg(arg).unwrap(), public, "{arg}");
        }
        assert!(PublicKey::from_arg("not a key").is_err());
        assert_eq!(public.fingerprint().len(), 32);
    }

    #[test]
    fn group_readable_key_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        AuditKey::load_or_create(&path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
        assert!(matches!(
            AuditKey::load_or_create(&path),
            Err(KeyError::File(SecretFileError::TooOpen { .. }))
        ));
    }
}
