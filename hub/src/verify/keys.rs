//! Which public key signs which stream's checkpoints: `STREAM=KEY` pairs from the
//! command line or a `[keys]` table, where KEY is anything `tracer key show` prints or
//! a file holding it.
use std::collections::HashMap;

use tracer_audit::key::PublicKey;

#[derive(Debug, thiserror::Error)]
pub enum KeyConfigError {
    #[error(
        "--key {0:?}: expected STREAM=KEY (KEY: a file or the base64 key `tracer key show` prints)"
    )]
    Shape(String),
    #[error("key for stream {stream:?}: {detail}")]
    Key { stream: String, detail: String },
}

#[derive(Clone, Debug, Default)]
pub struct Keys(HashMap<String, PublicKey>);

impl Keys {
    /// Reads `STREAM=KEY` pairs.
    pub fn from_pairs<'a>(
        pairs: impl IntoIterator<Item = &'a str>,
    ) -> Result<Self, KeyConfigError> {
        let mut keys = HashMap::new();
        for pair in pairs {
            let (stream, key) = pair
                .split_once('=')
                .filter(|(s, k)| !s.is_empty() && !k.is_empty())
                .ok_or_else(|| KeyConfigError::Shape(pair.to_owned()))?;
            let key = PublicKey::from_arg(key).map_err(|e| KeyConfigError::Key {
                stream: stream.to_owned(),
                detail: e.to_string(),
            })?;
            keys.insert(stream.to_owned(), key);
        }
        Ok(Self(keys))
    }

    pub fn get(&self, stream: &str) -> Option<&PublicKey> {
        self.0.get(stream)
    }
}
