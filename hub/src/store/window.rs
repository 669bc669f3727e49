//! What the chain check asks of stored lines, read for a run of seqs at once.
//!
//! A late line is checked against the store three times: is its seq stored, and do
//! its neighbours link to it. A batch of late lines (a killed hub's batch delivered
//! again, or the share of a stream another hub left as gaps) asked each question with a
//! query of its own, and on PostgreSQL each query also ended the batch's open COPY, so
//! records went in one `COPY` each: two hubs taking one stream's 200,021 lines in turns
//! made 56,861 COPYs and about 300,000 lookups. The window reads the hashes and chain
//! position of [`SPAN`] seqs in one query and answers from them, and the lines the batch
//! stores are added as they are stored.
use hashbrown::HashMap;

use tracer_audit::chain::Hash;

/// The chain position of a stored line the sensor's own signed checkpoint disowns.
pub const FORGED: &str = "forged";

/// Seqs read at once on either side of the one asked for: a late line's check goes
/// forward, the walk down a checkpoint's chain backward.
pub const SPAN: u64 = 4096;

/// A stored line as the chain check sees it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Known {
    pub hash: Hash,
    pub prev_hash: Hash,
    /// Its chain position is `break`.
    pub broken: bool,
    /// Its chain position is `forged`.
    pub forged: bool,
    /// The seq of the checkpoint that covers it.
    pub checkpoint: Option<i64>,
}

impl Known {
    /// A line stored with chain position `link` (`break`, `forged`, ...).
    pub fn new(hash: Hash, prev_hash: Hash, link: &str, checkpoint: Option<i64>) -> Self {
        Self {
            hash,
            prev_hash,
            broken: link == "break",
            forged: link == FORGED,
            checkpoint,
        }
    }

    /// Whether a checkpoint may cover it: not a break, not forged.
    pub fn provable(&self) -> bool {
        !self.broken && !self.forged
    }
}

/// The stored lines of `stream` with seqs `from..=to`.
pub struct Window {
    stream: String,
    from: u64,
    to: u64,
    lines: HashMap<u64, Known>,
}

impl Window {
    pub fn new(stream: &str, (from, to): (u64, u64), lines: HashMap<u64, Known>) -> Self {
        Self {
            stream: stream.to_owned(),
            from,
            to,
            lines,
        }
    }

    /// The seqs to read for a question about `seq`.
    pub fn around(seq: u64) -> (u64, u64) {
        (seq.saturating_sub(SPAN), seq.saturating_add(SPAN))
    }

    /// `None` when the window does not hold `seq` of `stream`; otherwise the line if it
    /// is stored.
    pub fn get(&self, stream: &str, seq: u64) -> Option<Option<Known>> {
        (stream == self.stream && (self.from..=self.to).contains(&seq))
            .then(|| self.lines.get(&seq).copied())
    }

    /// The batch stored `seq` of `stream`.
    pub fn stored(&mut self, stream: &str, seq: u64, known: Known) {
        if stream == self.stream && (self.from..=self.to).contains(&seq) {
            self.lines.insert(seq, known);
        }
    }

    /// The checkpoint at `checkpoint` covers the provable lines `from..=to` of `stream`
    /// (as the batch's `UPDATE` did).
    pub fn covered(&mut self, stream: &str, (from, to): (u64, u64), checkpoint: i64) {
        if stream != self.stream {
            return;
        }
        for (_, known) in self
            .lines
            .iter_mut()
            .filter(|(seq, known)| (from..=to).contains(*seq) && known.provable())
        {
            known.checkpoint = Some(checkpoint);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_only_for_its_stream_and_seqs_and_learns_what_is_stored() {
        let known = Known {
            hash: [1; 32],
            prev_hash: [0; 32],
            broken: false,
            forged: false,
            checkpoint: None,
        };
        let at = 2 * SPAN;
        let far = Window::new("web1", Window::around(at), HashMap::from([(9, known)]));
        assert_eq!(far.get("web1", 9), None);
        let mut window = Window::new("web1", Window::around(10), HashMap::from([(9, known)]));
        assert_eq!(window.get("web1", 9), Some(Some(known)));
        assert_eq!(window.get("web1", 10), Some(None));
        assert_eq!(window.get("web1", 0), Some(None));
        assert_eq!(window.get("web1", 10 + SPAN), Some(None));
        assert_eq!(window.get("web1", 11 + SPAN), None);
        assert_eq!(window.get("web1", at - 1), None);
        assert_eq!(window.get("web2", 9), None);
        window.stored("web1", 10, known);
        window.stored("web2", 11, known);
        window.stored("web1", 20 + SPAN, known);
        assert_eq!(window.get("web1", 10), Some(Some(known)));
        assert_eq!(window.get("web2", 11), None);
        assert_eq!(window.get("web1", 20 + SPAN), None);
        window.stored(
            "web1",
            11,
            Known {
                broken: true,
                ..known
            },
        );
        window.covered("web1", (9, 11), 30);
        window.covered("web2", (9, 11), 40);
        let checkpoint = |seq| window.get("web1", seq).flatten().map(|k| k.checkpoint);
        assert_eq!(checkpoint(9), Some(Some(30)));
        assert_eq!(checkpoint(10), Some(Some(30)));
        assert_eq!(checkpoint(11), Some(None), "a break is not covered");
    }
}
