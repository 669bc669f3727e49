//! The stream id: which chain a line belongs to (`audit.stream`). Restricted to
//! characters that need no JSON escaping, so sealing can copy it verbatim.
use std::{fmt, fs, str::FromStr};

use serde::{Deserialize, Deserializer, de::Error as _};

const MAX_LEN: usize = 128;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StreamId(String);

impl StreamId {
    /// The host name (the kernel's), or `localhost` when it cannot be read or is not a
    /// valid id.
    pub fn from_host_name() -> Self {
        fs::read_to_string("/proc/sys/kernel/hostname")
            .ok()
            .and_then(|name| name.trim().parse().ok())
            .unwrap_or_else(|| Self("localhost".to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl FromStr for StreamId {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-' | ':');
        if s.is_empty() || s.len() > MAX_LEN || !s.chars().all(allowed) {
            return Err(format!(
                "{s:?} is not a stream id: 1 to {MAX_LEN} characters from A-Z a-z 0-9 . _ - :"
            ));
        }
        Ok(Self(s.to_owned()))
    }
}

impl fmt::Display for StreamId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for StreamId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_need_no_escaping() {
        assert!("web-01.example.com".parse::<StreamId>().is_ok());
        assert!("eu:web_1".parse::<StreamId>().is_ok());
        for bad in ["", "a\"b", "a b", "a\\b", "ü", &"x".repeat(129)] {
            assert!(bad.parse::<StreamId>().is_err(), "{bad:?}");
        }
        assert!(!StreamId::from_host_name().as_str().is_empty());
    }
}
