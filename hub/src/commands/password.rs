//! `tracer-hub password-hash`: the password comes on stdin, never as an argument
//! (arguments show in `ps` and shell history).
use std::io::Read as _;

use anyhow::Context as _;

use crate::serve::auth::hash_password;

pub fn run() -> anyhow::Result<()> {
    let mut password = String::new();
    std::io::stdin()
        .read_to_string(&mut password)
        .context("reading the password from stdin")?;
    let password = password.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        password.len() >= 12,
        "a dashboard password needs at least 12 characters"
    );
    println!("{}", hash_password(password)?);
    Ok(())
}
