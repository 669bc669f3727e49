//! What `--output FILE` and the `[output.file]` table configure, checked while parsing so
//! that a bad value is reported with its flag or its line before anything starts.
use std::{fmt, num::NonZeroU32, path::PathBuf, str::FromStr, time::Duration};

use serde::{Deserialize, Deserializer, de};

/// Settings of one file sink.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileSettings {
    /// The live file; rotated files are written next to it.
    pub path: PathBuf,
    #[serde(default)]
    pub mode: Mode,
    #[serde(default)]
    pub rotate_size: Option<ByteSize>,
    #[serde(default)]
    pub rotate_interval: Option<Interval>,
    #[serde(default)]
    pub compress: Compression,
    /// Rotated files kept (newest first); `None` keeps all of them.
    #[serde(default)]
    pub keep: Option<NonZeroU32>,
}

impl FileSettings {
    /// A file with the defaults: mode 0600, no rotation, gzip once rotated, keep all.
    pub fn new(path: PathBuf) -> Self {
        Self {
            path,
            mode: Mode::default(),
            rotate_size: None,
            rotate_interval: None,
            compress: Compression::default(),
            keep: None,
        }
    }
}

impl fmt::Display for FileSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (mode {}", self.path.display(), self.mode)?;
        match (self.rotate_size, self.rotate_interval) {
            (None, None) => write!(f, ", never rotated")?,
            (size, interval) => {
                let mut when = Vec::new();
                if let Some(size) = size {
                    when.push(format!("at {size}"));
                }
                if let Some(interval) = interval {
                    when.push(format!("every {interval}"));
                }
                write!(f, ", rotated {}", when.join(" or "))?;
                write!(f, ", compressed with {}", self.compress)?;
                match self.keep {
                    Some(n) => write!(f, ", {n} rotated file(s) kept")?,
                    None => write!(f, ", all rotated files kept")?,
                }
            }
        }
        write!(f, ")")
    }
}

/// Permission bits of the live and rotated files (exactly these: the umask does not apply).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mode(u32);

impl Mode {
    pub fn bits(self) -> u32 {
        self.0
    }

    fn new(bits: u32) -> Result<Self, String> {
        if bits > 0o777 {
            return Err(format!(
                "{bits:#o} is not a permission mode (write it in octal, like \"0640\")"
            ));
        }
        if bits & 0o200 == 0 {
            return Err(format!(
                "{bits:04o} does not let the owner write; the tracer appends to the file"
            ));
        }
        Ok(Self(bits))
    }
}

impl Default for Mode {
    fn default() -> Self {
        Self(0o600)
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:04o}", self.0)
    }
}

impl FromStr for Mode {
    type Err = String;

    /// Octal, with or without a leading `0` or `0o`: `0640`, `640`, `0o640`.
    fn from_str(s: &str) -> Result<Self, String> {
        let digits = s.strip_prefix("0o").unwrap_or(s);
        let bits = u32::from_str_radix(digits, 8)
            .map_err(|_| format!("{s:?} is not an octal permission mode like 0640"))?;
        Self::new(bits)
    }
}

impl<'de> Deserialize<'de> for Mode {
    /// A string is octal ("0640"); an integer is taken as is, so TOML's `0o640` works
    /// and a decimal `640` is refused as out of range rather than misread.
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        match StringOrNumber::deserialize(d)? {
            StringOrNumber::String(s) => s.parse().map_err(de::Error::custom),
            StringOrNumber::Number(n) => u32::try_from(n)
                .map_err(|_| format!("{n} is not a permission mode"))
                .and_then(Self::new)
                .map_err(de::Error::custom),
        }
    }
}

/// How rotated files are compressed.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default, Deserialize, clap::ValueEnum,
)]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    #[default]
    Gzip,
    Zstd,
    None,
}

impl Compression {
    /// Suffix of a compressed rotated file, without the dot.
    pub fn extension(self) -> Option<&'static str> {
        match self {
            Self::Gzip => Some("gz"),
            Self::Zstd => Some("zst"),
            Self::None => None,
        }
    }
}

impl fmt::Display for Compression {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Gzip => "gzip",
            Self::Zstd => "zstd",
            Self::None => "none",
        })
    }
}

/// A size in bytes, at least one: `65536`, `64k`, `100M`, `1G` (K, M, G are powers of 1024;
/// `KiB`, `MiB`, `GiB` and lower case are accepted too).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ByteSize(u64);

impl ByteSize {
    pub fn bytes(self) -> u64 {
        self.0
    }
}

impl FromStr for ByteSize {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let text = s.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let shift = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => 0,
            "k" | "kib" => 10,
            "m" | "mib" => 20,
            "g" | "gib" => 30,
            _ => {
                return Err(format!(
                    "{s:?}: unknown unit (use a number of bytes, or K, M, G)"
                ));
            }
        };
        let bytes = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(1 << shift))
            .ok_or_else(|| format!("{s:?} is not a size like 65536, 64k or 100M"))?;
        if bytes == 0 {
            return Err("a size of 0 bytes would rotate after every record".to_owned());
        }
        Ok(Self(bytes))
    }
}

impl fmt::Display for ByteSize {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (shift, unit) in [(30, "G"), (20, "M"), (10, "K")] {
            if self.0.is_multiple_of(1 << shift) {
                return write!(f, "{}{unit}", self.0 >> shift);
            }
        }
        write!(f, "{} bytes", self.0)
    }
}

impl<'de> Deserialize<'de> for ByteSize {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StringOrNumber::deserialize(d)?.parse()
    }
}

/// Time between rotations, whole seconds, at least one: `3600`, `1h`, `15m`, `90s`.
/// Rotation happens when the wall clock crosses a multiple of it since the Unix epoch
/// (UTC), so `1h` rotates on the hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interval(u64);

impl Interval {
    pub fn seconds(self) -> u64 {
        self.0
    }

    pub fn duration(self) -> Duration {
        Duration::from_secs(self.0)
    }
}

impl FromStr for Interval {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let duration = match s.trim().parse::<u64>() {
            Ok(seconds) => Duration::from_secs(seconds),
            Err(_) => humantime::parse_duration(s.trim())
                .map_err(|e| format!("{s:?} is not a duration like 1h, 15m or 3600 ({e})"))?,
        };
        if duration.subsec_nanos() != 0 || duration.as_secs() == 0 {
            return Err(format!(
                "{s:?}: the interval must be whole seconds, at least 1"
            ));
        }
        Ok(Self(duration.as_secs()))
    }
}

impl fmt::Display for Interval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.duration()))
    }
}

impl<'de> Deserialize<'de> for Interval {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        StringOrNumber::deserialize(d)?.parse()
    }
}

/// Config values that read naturally as either (`rotate_size = "100M"` or `104857600`).
#[derive(Deserialize)]
#[serde(untagged)]
enum StringOrNumber {
    String(String),
    Number(i64),
}

impl StringOrNumber {
    /// Parses either form as its text: `64k` and `65536` alike.
    fn parse<T: FromStr<Err = String>, E: de::Error>(self) -> Result<T, E> {
        match self {
            Self::String(s) => s.parse(),
            Self::Number(n) => n.to_string().parse(),
        }
        .map_err(E::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for (text, bytes) in [
            ("65536", 65536),
            ("64k", 65536),
            ("64K", 65536),
            ("64KiB", 65536),
            ("100M", 100 << 20),
            ("2G", 2 << 30),
        ] {
            assert_eq!(text.parse::<ByteSize>().unwrap().bytes(), bytes, "{text}");
        }
        for bad in ["", "0", "k", "10X", "-5", "99999999999999999999G"] {
            assert!(bad.parse::<ByteSize>().is_err(), "{bad:?}");
        }
        assert_eq!("100M".parse::<ByteSize>().unwrap().to_string(), "100M");
    }

    #[test]
    fn intervals() {
        for (text, seconds) in [("3600", 3600), ("1h", 3600), ("15m", 900), ("90s", 90)] {
            assert_eq!(
                text.parse::<Interval>().unwrap().seconds(),
                seconds,
                "{text}"
            );
        }
        for bad in ["0", "0s", "1.5s", "500ms", "soon"] {
            assert!(bad.parse::<Interval>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn modes() {
        assert_eq!("0640".parse::<Mode>().unwrap().bits(), 0o640);
        assert_eq!("600".parse::<Mode>().unwrap().bits(), 0o600);
        assert_eq!("0o644".parse::<Mode>().unwrap().bits(), 0o644);
        for bad in ["0800", "1777", "0444", "rw-------"] {
            assert!(bad.parse::<Mode>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn toml_table() {
        #[derive(Deserialize)]
        struct T {
            file: FileSettings,
        }
        let t: T = toml::from_str(
            "[file]\npath = \"/var/log/a.jsonl\"\nmode = 0o640\nrotate_size = \"64k\"\nrotate_interval = 900\ncompress = \"zstd\"\nkeep = 3\n",
        )
        .unwrap();
        assert_eq!(t.file.mode.bits(), 0o640);
        assert_eq!(t.file.rotate_size.map(ByteSize::bytes), Some(65536));
        assert_eq!(t.file.rotate_interval.map(Interval::seconds), Some(900));
        assert_eq!(t.file.compress, Compression::Zstd);
        assert_eq!(t.file.keep.map(NonZeroU32::get), Some(3));
        let defaults: T = toml::from_str("[file]\npath = \"a\"\n").unwrap();
        assert_eq!(defaults.file, FileSettings::new("a".into()));
        assert!(toml::from_str::<T>("[file]\npath = \"a\"\nmode = 640\n").is_err());
    }
}
