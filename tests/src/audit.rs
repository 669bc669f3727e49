//! The audit chain from outside: `tracer verify` and `tracer key show` as a user runs
//! them, and forgeries made the way an attacker who knows the scheme (docs/audit.md)
//! would make them: fields changed, hashes recomputed, checkpoints re-signed.

use crate::workspace::tracer_bin;
use anyhow::{Context, Result, anyhow};
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use ed25519_dalek::{Signer as _, SigningKey, pkcs8::DecodePrivateKey as _};
use sha2::{Digest as _, Sha256};
use std::path::Path;
use std::process::Command;

const HASH_FIELD: &str = ",\"audit.hash\":\"";
const SIGNATURE_FIELD: &str = ",\"audit.signature\":\"";

/// What `tracer verify` said.
#[derive(Debug)]
pub struct Verdict {
    pub ok: bool,
    pub stdout: String,
    pub stderr: String,
}

/// `tracer verify --key KEY FILE...`.
pub fn verify(key: &str, files: &[&Path]) -> Result<Verdict> {
    verify_with(key, &[], files)
}

/// `tracer verify --key KEY FLAGS... FILE...`.
pub fn verify_with(key: &str, flags: &[&str], files: &[&Path]) -> Result<Verdict> {
    let output = Command::new(tracer_bin()?)
        .arg("verify")
        .arg("--key")
        .arg(key)
        .args(flags)
        .args(files)
        .output()
        .context("running tracer verify")?;
    Ok(Verdict {
        ok: output.status.success(),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `tracer key show --key KEY_FILE` (creates the key if missing).
pub fn key_show(key_file: &Path) -> Result<String> {
    let output = Command::new(tracer_bin()?)
        .args(["key", "show", "--key"])
        .arg(key_file)
        .output()
        .context("running tracer key show")?;
    if !output.status.success() {
        return Err(anyhow!(
            "tracer key show failed: {}",
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(String::from_utf8(output.stdout)?)
}

/// `audit.hash` of a line, as raw bytes.
pub fn hash_of(line: &str) -> Result<[u8; 32]> {
    let value: serde_json::Value = serde_json::from_str(line)?;
    let text = value["audit.hash"]
        .as_str()
        .ok_or_else(|| anyhow!("no audit.hash: {line}"))?;
    let mut hash = [0u8; 32];
    hex::decode_to_slice(text, &mut hash)?;
    Ok(hash)
}

/// The line linked to `prev` with a recomputed hash; a checkpoint is re-signed with
/// the PKCS#8 PEM key in `signer` if given. `line` has no newline.
pub fn reseal(line: &str, prev: &[u8; 32], signer: Option<&Path>) -> Result<String> {
    let hash_at = line
        .rfind(HASH_FIELD)
        .ok_or_else(|| anyhow!("not a sealed line: {line}"))?;
    let mut body = line[..hash_at].to_owned();
    let field = "\"audit.prev_hash\":\"";
    let at = body
        .find(field)
        .ok_or_else(|| anyhow!("no prev_hash: {line}"))?
        + field.len();
    body.replace_range(at..at + 64, &hex::encode(prev));
    if let Some(signer) = signer {
        let key = SigningKey::from_pkcs8_pem(&std::fs::read_to_string(signer)?)
            .map_err(|e| anyhow!("{}: {e}", signer.display()))?;
        let sig_at = body
            .rfind(SIGNATURE_FIELD)
            .ok_or_else(|| anyhow!("not a checkpoint: {line}"))?;
        let signature = BASE64.encode(key.sign(&body.as_bytes()[..sig_at]).to_bytes());
        body = format!("{}{SIGNATURE_FIELD}{signature}\"", &body[..sig_at]);
    }
    let hash = Sha256::new()
        .chain_update(prev)
        .chain_update(body.as_bytes())
        .finalize();
    Ok(format!("{body}{HASH_FIELD}{}\"}}", hex::encode(hash)))
}

/// Reseals `lines[from..]` so that the chain after an edit at `from` links again.
pub fn rechain(lines: &mut [String], from: usize) -> Result<()> {
    for i in from..lines.len() {
        let prev = hash_of(&lines[i - 1])?;
        lines[i] = reseal(&lines[i], &prev, None)?;
    }
    Ok(())
}
