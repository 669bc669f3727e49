//! Credentials for the broker, read once at start so that a missing or unreadable file
//! is an error before `ready`. Their contents are never printed.
use std::{fs, io, path::Path};

use async_nats::ConnectOptions;

use super::settings::NatsConfig;

pub enum Auth {
    /// None, or a user and password inside the URL.
    Url,
    /// A `.creds` file's contents (user JWT and NKey seed).
    Credentials(String),
    Token(String),
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("nats.creds_file and nats.token_file are both set; give one")]
    Both,
    #[error("{path}: {source}")]
    Read { path: String, source: io::Error },
    #[error("{path}: no credentials in it ({source})")]
    Creds { path: String, source: io::Error },
    #[error("{path}: the token file is empty")]
    EmptyToken { path: String },
}

impl Auth {
    pub fn load(config: &NatsConfig) -> Result<Self, AuthError> {
        match (&config.creds_file, &config.token_file) {
            (Some(_), Some(_)) => Err(AuthError::Both),
            (Some(path), None) => {
                let text = read(path)?;
                // Parsed here only to fail early; every connection parses it again.
                ConnectOptions::new()
                    .credentials(&text)
                    .map_err(|source| AuthError::Creds {
                        path: path.display().to_string(),
                        source,
                    })?;
                Ok(Self::Credentials(text))
            }
            (None, Some(path)) => {
                let token = read(path)?.trim_end_matches(['\r', '\n']).to_owned();
                if token.is_empty() {
                    return Err(AuthError::EmptyToken {
                        path: path.display().to_string(),
                    });
                }
                Ok(Self::Token(token))
            }
            (None, None) => Ok(Self::Url),
        }
    }

    pub fn apply(&self, options: ConnectOptions) -> io::Result<ConnectOptions> {
        match self {
            Self::Url => Ok(options),
            Self::Credentials(text) => options.credentials(text),
            Self::Token(token) => Ok(options.token(token.clone())),
        }
    }
}

fn read(path: &Path) -> Result<String, AuthError> {
    fs::read_to_string(path).map_err(|source| AuthError::Read {
        path: path.display().to_string(),
        source,
    })
}
