//! The JSON writer of records (`record`) and their identity fields (`identity`).
//! serde_json escaped every key of every record, ~40 of them,
//! byte by byte through its generic serializer: its string escaping alone was 27% of
//! building a record (perf on the record's own loop, 2026-12-04). Keys here are
//! constants checked at compile time to need no escaping, so they are copied; values
//! are escaped exactly as serde_json escapes them (the golden records and a proptest
//! against serde_json hold it to that).
use std::{io::Write as _, net::IpAddr};

use tracer_audit::timestamp::Rfc3339;

/// A [`Key`] checked at compile time: `key!("url.path")`.
macro_rules! key {
    ($name:literal) => {
        const { $crate::json::Key::new(concat!(",\"", $name, "\":")) }
    };
}

/// An object key that needs no JSON escaping, held as the bytes that precede its value
/// (`,"url.path":`), so writing it is one copy of a constant. Made by `key!`, which
/// fails to compile for a key that would need escaping.
#[derive(Clone, Copy)]
pub struct Key(&'static [u8]);

impl Key {
    pub const fn new(prefix: &'static str) -> Self {
        let bytes = prefix.as_bytes();
        let n = bytes.len();
        assert!(
            n >= 4
                && bytes[0] == b','
                && bytes[1] == b'"'
                && bytes[n - 2] == b'"'
                && bytes[n - 1] == b':',
            "a key is written as ,\"name\":"
        );
        let mut i = 2;
        while i < n - 2 {
            assert!(
                needs_no_escape(bytes[i]),
                "a record key must need no JSON escaping"
            );
            i += 1;
        }
        Self(bytes)
    }
}

const fn needs_no_escape(b: u8) -> bool {
    b >= 0x20 && b != b'"' && b != b'\\'
}

/// The fields of one JSON object, appended to a buffer. Every key is written with the
/// comma before it, so writing one is a copy of a constant; [`Fields::finish`] turns the
/// first comma into the opening brace; without it the fields are a fragment to splice
/// after others (the process's). The object is left open (no closing brace): the
/// record's identity and process fields follow it.
pub struct Fields<'o> {
    out: &'o mut Vec<u8>,
    start: usize,
}

impl<'o> Fields<'o> {
    pub fn open(out: &'o mut Vec<u8>) -> Self {
        let start = out.len();
        Self { out, start }
    }

    /// Opens the object: `{` and the fields written, without their first comma.
    pub fn finish(self) {
        match self.out.get_mut(self.start) {
            Some(comma) => *comma = b'{',
            None => self.out.push(b'{'),
        }
    }

    #[inline(always)]
    fn key(&mut self, key: Key) {
        self.out.extend_from_slice(key.0);
    }

    #[inline]
    pub fn str(&mut self, key: Key, value: &str) {
        self.key(key);
        string(self.out, value);
    }

    #[inline]
    pub fn opt_str(&mut self, key: Key, value: Option<&str>) {
        if let Some(value) = value {
            self.str(key, value);
        }
    }

    pub fn time(&mut self, key: Key, value: &Rfc3339) {
        self.key(key);
        self.out.push(b'"');
        self.out.extend_from_slice(value.as_bytes());
        self.out.push(b'"');
    }

    pub fn opt_time(&mut self, key: Key, value: Option<&Rfc3339>) {
        if let Some(value) = value {
            self.time(key, value);
        }
    }

    #[inline]
    pub fn uint(&mut self, key: Key, value: impl Into<u64>) {
        self.key(key);
        self.out
            .extend_from_slice(itoa::Buffer::new().format(value.into()).as_bytes());
    }

    #[inline]
    pub fn opt_uint(&mut self, key: Key, value: Option<impl Into<u64>>) {
        if let Some(value) = value {
            self.uint(key, value);
        }
    }

    pub fn opt_bool(&mut self, key: Key, value: Option<bool>) {
        if let Some(value) = value {
            self.key(key);
            self.out
                .extend_from_slice(if value { b"true" } else { b"false" });
        }
    }

    /// An array of strings; nothing when `values` is empty.
    pub fn str_list<S: AsRef<str>>(&mut self, key: Key, values: &[S]) {
        let Some((first, rest)) = values.split_first() else {
            return;
        };
        self.key(key);
        self.out.push(b'[');
        string(self.out, first.as_ref());
        for value in rest {
            self.out.push(b',');
            string(self.out, value.as_ref());
        }
        self.out.push(b']');
    }

    pub fn opt_ip(&mut self, key: Key, value: Option<IpAddr>) {
        let Some(ip) = value else { return };
        self.key(key);
        self.out.push(b'"');
        match ip {
            IpAddr::V4(v4) => {
                // Built on the stack and copied once: this runs four times per record.
                let mut text = [0u8; 15];
                let mut len = 0;
                for (i, octet) in v4.octets().into_iter().enumerate() {
                    if i > 0 {
                        text[len] = b'.';
                        len += 1;
                    }
                    for digit in
                        [octet / 100, octet / 10 % 10, octet % 10]
                            .into_iter()
                            .skip(match octet {
                                0..10 => 2,
                                10..100 => 1,
                                _ => 0,
                            })
                    {
                        text[len] = b'0' + digit;
                        len += 1;
                    }
                }
                self.out.extend_from_slice(&text[..len]);
            }
            // Writing to a Vec cannot fail; an address's text needs no escaping.
            IpAddr::V6(v6) => {
                let _ = write!(self.out, "{v6}");
            }
        }
        self.out.push(b'"');
    }
}

/// `value` as a JSON string: `"` and `\` escaped, control characters as `\b \t \n \f \r`
/// or `\u00xx`, everything else (DEL and non-ASCII included) as is, like serde_json.
fn string(out: &mut Vec<u8>, value: &str) {
    let bytes = value.as_bytes();
    out.reserve(bytes.len() + 2);
    out.push(b'"');
    let plain = plain_prefix(bytes);
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate().skip(plain) {
        if needs_no_escape(b) {
            continue;
        }
        out.extend_from_slice(&bytes[start..i]);
        match b {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            b'\x08' => out.extend_from_slice(b"\\b"),
            b'\t' => out.extend_from_slice(b"\\t"),
            b'\n' => out.extend_from_slice(b"\\n"),
            b'\x0c' => out.extend_from_slice(b"\\f"),
            b'\r' => out.extend_from_slice(b"\\r"),
            _ => {
                const HEX: &[u8; 16] = b"0123456789abcdef";
                out.extend_from_slice(b"\\u00");
                out.push(HEX[usize::from(b >> 4)]);
                out.push(HEX[usize::from(b & 0xf)]);
            }
        }
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

/// How many leading bytes need no escaping, eight at a time: values are mostly plain,
/// and a byte-at-a-time scan was most of the writer's cost.
fn plain_prefix(bytes: &[u8]) -> usize {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGHS: u64 = ONES * 0x80;
    // Nonzero exactly when some byte of `w` is below `n` (n <= 0x80): the classic
    // "has less" test; a byte equal to `c` is a byte of `w ^ c` below 1.
    let has_below = |w: u64, n: u8| w.wrapping_sub(ONES * u64::from(n)) & !w & HIGHS;
    let mut i = 0;
    for chunk in bytes.as_chunks::<8>().0 {
        let w = u64::from_le_bytes(*chunk);
        let special = has_below(w, 0x20)
            | has_below(w ^ (ONES * u64::from(b'"')), 1)
            | has_below(w ^ (ONES * u64::from(b'\\')), 1);
        if special != 0 {
            break;
        }
        i += 8;
    }
    i + bytes[i..]
        .iter()
        .take_while(|&&b| needs_no_escape(b))
        .count()
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use proptest::prelude::*;

    use super::*;

    const K: Key = key!("url.path");

    fn object(write: impl FnOnce(&mut Fields<'_>)) -> serde_json::Value {
        let mut out = b"prefix".to_vec();
        let mut fields = Fields::open(&mut out);
        write(&mut fields);
        fields.finish();
        assert!(
            out.starts_with(b"prefix{"),
            "bytes before the object are kept"
        );
        out.drain(..6);
        out.push(b'}');
        serde_json::from_slice(&out).expect("valid JSON")
    }

    proptest! {
        #[test]
        fn strings_are_escaped_as_serde_json_escapes_them(value in any::<String>()) {
            let mut ours = Vec::new();
            string(&mut ours, &value);
            prop_assert_eq!(ours, serde_json::to_vec(&value).unwrap());
        }
    }

    proptest! {
        #[test]
        fn the_plain_prefix_ends_at_the_first_byte_to_escape(bytes in proptest::collection::vec(any::<u8>(), 0..40)) {
            let first = bytes.iter().position(|&b| !needs_no_escape(b)).unwrap_or(bytes.len());
            prop_assert_eq!(plain_prefix(&bytes), first);
        }
    }

    #[test]
    fn every_control_byte_and_quote_matches_serde_json() {
        let all: String = (0u8..0x80).map(char::from).collect();
        let mut ours = Vec::new();
        string(&mut ours, &all);
        assert_eq!(ours, serde_json::to_vec(&all).unwrap());
    }

    #[test]
    fn addresses_and_numbers_are_written_as_serde_json_writes_them() {
        for ip in [
            IpAddr::V4(Ipv4Addr::new(0, 10, 200, 255)),
            IpAddr::V4(Ipv4Addr::new(9, 99, 100, 1)),
            IpAddr::V6(Ipv6Addr::LOCALHOST),
            IpAddr::V6(Ipv4Addr::new(127, 0, 0, 1).to_ipv6_mapped()),
            "2001:db8::1:0:0:1".parse().unwrap(),
        ] {
            let got = object(|f| f.opt_ip(K, Some(ip)));
            assert_eq!(got, serde_json::json!({ "url.path": ip }));
        }
        let got = object(|f| {
            f.uint(K, u64::MAX);
            f.opt_uint(key!("a"), Some(0u16));
            f.opt_uint(key!("b"), None::<u32>);
            f.opt_str(key!("c"), None);
            f.opt_ip(key!("d"), None);
        });
        assert_eq!(got, serde_json::json!({ "url.path": u64::MAX, "a": 0 }));
        assert_eq!(object(|f| f.opt_str(K, None)), serde_json::json!({}));
        let got = object(|f| {
            f.opt_bool(key!("t"), Some(true));
            f.opt_bool(key!("f"), Some(false));
            f.opt_bool(key!("n"), None);
            f.str_list(key!("l"), &["a\"b", "c"]);
            f.str_list::<&str>(key!("e"), &[]);
        });
        assert_eq!(
            got,
            serde_json::json!({ "t": true, "f": false, "l": ["a\"b", "c"] })
        );
        let time = Rfc3339::new(1_795_375_670_123_456_789);
        assert_eq!(
            object(|f| f.opt_time(K, Some(&time))),
            serde_json::json!({ "url.path": time.as_str() })
        );
    }
}
