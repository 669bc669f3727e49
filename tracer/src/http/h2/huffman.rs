//! Huffman strings of HPACK (RFC 7541 §5.2), decoded by httlib-huffman's flattened
//! 5-bit tables, with the few a peer repeats remembered.

/// Huffman strings this direction decoded lately (at most `RECENT_SLOTS` of at most
/// `RECENT_MAX_CODED` coded bytes), by their coded bytes. nginx sends the same `server`,
/// `content-type` and `content-length` values, and a `date` that changes once a second,
/// Huffman-coded in every response and added to the table each time, so each must be
/// decoded to keep the table's size right: decoding was a tenth of the tracer's CPU
/// under h2load. A string's decoding depends on its bytes alone, so a hit is exact.
#[derive(Default)]
pub struct Recent {
    slots: Vec<CodedString>,
    /// The slot the next new string replaces once all are used.
    next: usize,
}

/// A Huffman-coded string and what it decodes to.
type CodedString = (Box<[u8]>, Box<[u8]>);

const RECENT_SLOTS: usize = 8;
const RECENT_MAX_CODED: usize = 32;

impl Recent {
    /// What `coded` decodes to; `None` if it is not valid Huffman code.
    pub fn decode(&mut self, coded: &[u8]) -> Option<Vec<u8>> {
        if coded.len() > RECENT_MAX_CODED {
            return huffman(coded);
        }
        if let Some((_, decoded)) = self.slots.iter().find(|(c, _)| **c == *coded) {
            return Some(decoded.to_vec());
        }
        let decoded = huffman(coded)?;
        let slot = (Box::from(coded), Box::from(decoded.as_slice()));
        if self.slots.len() < RECENT_SLOTS {
            self.slots.push(slot);
        } else {
            self.slots[self.next] = slot;
            self.next = (self.next + 1) % RECENT_SLOTS;
        }
        Some(decoded)
    }
}

fn huffman(coded: &[u8]) -> Option<Vec<u8>> {
    let mut decoded = Vec::with_capacity(coded.len() * 8 / 5);
    httlib_huffman::decode(coded, &mut decoded, httlib_huffman::DecoderSpeed::FiveBits).ok()?;
    Some(decoded)
}

#[cfg(test)]
mod tests {
    use super::{RECENT_MAX_CODED, RECENT_SLOTS, Recent};

    /// Recently decoded Huffman strings come back as decoding them gives, whatever was
    /// decoded between; at most `RECENT_SLOTS` short strings are kept, and a string that
    /// does not decode fails each time.
    #[test]
    fn recent_strings_decode_as_decoding_them() {
        // Up to 66 bytes: the longer ones code to more than RECENT_MAX_CODED.
        let texts: Vec<Vec<u8>> = (0..20)
            .map(|i| format!("value-{i}-{}", "x".repeat(3 * i)).into_bytes())
            .collect();
        let mut recent = Recent::default();
        for round in 0..3 {
            for text in texts.iter().chain(texts.iter().take(3)) {
                let huffman_coded = httlib_huffman_encode(text);
                assert_eq!(
                    recent.decode(&huffman_coded).as_ref(),
                    Some(text),
                    "round {round}"
                );
                assert!(recent.slots.len() <= RECENT_SLOTS);
                assert!(
                    recent
                        .slots
                        .iter()
                        .all(|(c, _)| c.len() <= RECENT_MAX_CODED)
                );
            }
        }
        for _ in 0..2 {
            assert_eq!(recent.decode(&[0xff, 0xff, 0xff, 0xff]), None);
        }
    }

    fn httlib_huffman_encode(text: &[u8]) -> Vec<u8> {
        let mut coded = Vec::new();
        httlib_huffman::encode(text, &mut coded).unwrap();
        coded
    }
}
