//! The fields of one decoded header block, names and values in one buffer.
//!
//! HPACK hands over fields one by one; kept as a vector of owned names and values they
//! cost two allocations per field, and as many frees when the stream ends: with the
//! request head built from them, allocation was a fifth of the tracer's CPU under
//! `h2load` (`perf`). Here a block costs two: its bytes and their spans.

/// Decoded fields in the order the block gave them; pseudo-headers (`:path`) are those
/// whose name starts with a colon.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Fields {
    bytes: Vec<u8>,
    /// (name start, name end, value start, value end) in `bytes`.
    spans: Vec<[u32; 4]>,
}

impl Fields {
    /// Empty, with room for `bytes` of names and values and `fields` fields.
    pub fn with_capacity(bytes: usize, fields: usize) -> Self {
        Self {
            bytes: Vec::with_capacity(bytes),
            spans: Vec::with_capacity(fields),
        }
    }

    /// Appends a field. A block is bounded far below 4 GiB (HPACK's header list bound,
    /// HTTP/1's head limit), so the offsets fit; a field that would not is dropped.
    pub fn push(&mut self, name: &[u8], value: &[u8]) {
        let start = self.bytes.len();
        let Ok(end) = u32::try_from(start + name.len() + value.len()) else {
            return;
        };
        let start = start as u32;
        let name_end = start + name.len() as u32;
        self.bytes.extend_from_slice(name);
        self.bytes.extend_from_slice(value);
        self.spans.push([start, name_end, name_end, end]);
    }

    /// Every field, pseudo-headers included.
    pub fn iter(&self) -> impl Clone + Iterator<Item = (&[u8], &[u8])> {
        self.spans.iter().map(|&[ns, ne, vs, ve]| {
            (
                &self.bytes[ns as usize..ne as usize],
                &self.bytes[vs as usize..ve as usize],
            )
        })
    }

    /// The fields that are not pseudo-headers, in order.
    pub fn regular(&self) -> impl Clone + Iterator<Item = (&[u8], &[u8])> {
        self.iter().filter(|(name, _)| !is_pseudo(name))
    }

    /// The first pseudo-header called exactly `name` (`:path`).
    pub fn pseudo(&self, name: &str) -> Option<&[u8]> {
        self.iter()
            .find(|(n, _)| is_pseudo(n) && *n == name.as_bytes())
            .map(|(_, v)| v)
    }

    /// The first regular field called `name`, ignoring case.
    pub fn get(&self, name: &str) -> Option<&[u8]> {
        self.regular()
            .find(|(n, _)| n.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, v)| v)
    }

    pub fn status(&self) -> Option<u16> {
        std::str::from_utf8(self.pseudo(":status")?)
            .ok()?
            .parse()
            .ok()
    }
}

fn is_pseudo(name: &[u8]) -> bool {
    name.first() == Some(&b':')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pseudo_and_regular_fields_are_told_apart_in_order() {
        let mut fields = Fields::default();
        fields.push(b":method", b"GET");
        fields.push(b"Accept", b"*/*");
        fields.push(b":path", b"/a");
        fields.push(b"accept", b"text/html");
        fields.push(b"", b"empty name");
        assert_eq!(fields.pseudo(":path"), Some(&b"/a"[..]));
        assert_eq!(fields.pseudo("accept"), None);
        assert_eq!(fields.get("ACCEPT"), Some(&b"*/*"[..]));
        assert_eq!(fields.get(":method"), None);
        let regular: Vec<_> = fields.regular().collect();
        assert_eq!(
            regular,
            [
                (&b"Accept"[..], &b"*/*"[..]),
                (&b"accept"[..], &b"text/html"[..]),
                (&b""[..], &b"empty name"[..])
            ]
        );
        assert_eq!(fields.iter().count(), 5);
    }

    #[test]
    fn status_is_a_number_or_nothing() {
        let mut fields = Fields::default();
        assert_eq!(fields.status(), None);
        fields.push(b":status", b"2x0");
        assert_eq!(fields.status(), None);
        let mut fields = Fields::default();
        fields.push(b":status", b"204");
        assert_eq!(fields.status(), Some(204));
    }
}
