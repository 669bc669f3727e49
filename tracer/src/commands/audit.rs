//! `tracer key show` and `tracer verify`.
use std::{path::Path, process::ExitCode};

use anyhow::{Context as _, Result};

use tracer_audit::{
    key::{AuditKey, DEFAULT_KEY_FILE, PublicKey},
    verify,
};

use crate::cli::VerifyArgs;

/// The public key of the key file at `path` (created if missing), as printed.
pub fn key_show(path: Option<&Path>) -> Result<String> {
    let path = path.unwrap_or(Path::new(DEFAULT_KEY_FILE));
    let existed = path.exists();
    let key = AuditKey::load_or_create(path)?;
    if !existed {
        eprintln!("tracer: created the audit key {}", path.display());
    }
    Ok(key.public().show())
}

/// Exit 0: intact; 1: damage found (named on stdout); 2: the files or key could not be read.
pub fn verify(args: &VerifyArgs) -> ExitCode {
    let key = match public_key(args.key.as_deref()) {
        Ok(key) => key,
        Err(e) => {
            eprintln!("tracer: verify: {e:#}");
            return ExitCode::from(2);
        }
    };
    let expect = verify::Expect {
        start: args.expect_start,
        end_seq: args.expect_end_seq,
    };
    match verify::verify(&args.files, &key, expect) {
        Ok(Ok(intact)) => {
            println!("{intact}");
            ExitCode::SUCCESS
        }
        Ok(Err(failure)) => {
            println!("FAILED: {failure}");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("tracer: verify: {e}");
            ExitCode::from(2)
        }
    }
}

fn public_key(arg: Option<&str>) -> Result<PublicKey> {
    match arg {
        Some(arg) => Ok(PublicKey::from_arg(arg)?),
        None => Ok(AuditKey::load(Path::new(DEFAULT_KEY_FILE))
            .context("no --key given and the default key file cannot be read")?
            .public()),
    }
}
