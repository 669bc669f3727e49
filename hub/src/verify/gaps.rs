//! The seqs of a stream missing below its last line: itemised up to a bound, counted
//! beyond it.
//!
//! Gaps are normal, not only a sign of loss. JetStream redelivers a batch a killed hub
//! held after later messages, and hubs sharing one consumer each take a share of a
//! stream's messages as the server hands them out, down to single messages in turn: one
//! hub's batch of 50,000 lines can leave 25,000 gaps that the other hub's next batch
//! fills. Each gap must be known as one, or the line that fills it looks like a line
//! for a seq that was never missing, a conflict.
//!
//! So the first [`MAX_ITEMISED`] gaps are kept as ranges (what `integrity` lists, and
//! what a checkpoint's proof must wait for); beyond them only where the first one not
//! itemised starts and how many seqs they miss in all are kept. A line below that start
//! fills an itemised gap or none; a line at or above it may fill one of those counted,
//! and when the count reaches 0 every gap has been filled.
use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Open gaps itemised per stream: a bound on the chain state each commit writes.
const MAX_ITEMISED: usize = 10_000;

#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(from = "Stored", into = "Stored")]
pub struct Gaps {
    /// First seq -> last seq of each itemised gap.
    itemised: BTreeMap<u64, u64>,
    beyond: Option<Beyond>,
}

/// The gaps opened once [`MAX_ITEMISED`] were open.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Beyond {
    /// Where the first of them starts: every seq from here to the stream's last that is
    /// not stored, and not in an itemised gap, is in one of them.
    from: u64,
    /// The seqs they still miss; `None` in a state stored before they were counted,
    /// which then never counts as filled.
    missing: Option<u64>,
}

impl Gaps {
    /// Seqs `from..=to` did not arrive before the line after them.
    pub fn open(&mut self, from: u64, to: u64) {
        if self.itemised.len() < MAX_ITEMISED && self.beyond.is_none() {
            self.itemised.insert(from, to);
            return;
        }
        let len = to - from + 1;
        let beyond = self.beyond.get_or_insert(Beyond {
            from,
            missing: Some(0),
        });
        beyond.from = beyond.from.min(from);
        beyond.missing = beyond.missing.map(|m| m + len);
    }

    /// `seq`, not stored and below the stream's last line, arrived: whether it was
    /// missing, and is no longer.
    pub fn fill(&mut self, seq: u64) -> bool {
        if let Some((&from, &to)) = self.itemised.range(..=seq).next_back()
            && seq <= to
        {
            self.itemised.remove(&from);
            if from < seq {
                self.itemised.insert(from, seq - 1);
            }
            if seq < to {
                self.itemised.insert(seq + 1, to);
            }
            return true;
        }
        let Some(beyond) = &mut self.beyond else {
            return false;
        };
        if seq < beyond.from {
            return false;
        }
        if let Some(missing) = &mut beyond.missing {
            *missing = missing.saturating_sub(1);
            if *missing == 0 {
                self.beyond = None;
            }
        }
        true
    }

    /// Whether every seq below the stream's last line has arrived.
    pub fn is_empty(&self) -> bool {
        self.itemised.is_empty() && self.beyond.is_none()
    }

    /// The first seq after every open gap that may lie at or below `last_seq`: a
    /// checkpoint proves lines only from there on. Past the itemised gaps, where the
    /// counted ones end is not known, so nothing is proven until they fill.
    pub fn after(&self, last_seq: u64) -> u64 {
        if self.beyond.is_some() {
            return last_seq + 1;
        }
        self.itemised.values().map(|&to| to + 1).max().unwrap_or(0)
    }

    /// The itemised gaps, lowest first.
    pub fn itemised(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.itemised.iter().map(|(&from, &to)| (from, to))
    }

    /// Where the gaps not itemised start, and the seqs they miss if known.
    pub fn beyond(&self) -> Option<(u64, Option<u64>)> {
        self.beyond.map(|b| (b.from, b.missing))
    }

    /// Seqs known to be missing: those of gaps beyond the itemised ones count only if
    /// they were counted (`beyond` says when not).
    pub fn missing(&self) -> u64 {
        let itemised: u64 = self.itemised().map(|(from, to)| to - from + 1).sum();
        itemised + self.beyond.and_then(|b| b.missing).unwrap_or(0)
    }
}

/// How gaps are kept in a stored chain state: the itemised ones as a list (as before
/// they were counted beyond the bound), and `gaps_truncated` when there are more.
#[derive(Serialize, Deserialize)]
struct Stored {
    #[serde(default)]
    gaps: Vec<(u64, u64)>,
    #[serde(default)]
    gaps_truncated: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gaps_beyond_from: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    gaps_beyond_missing: Option<u64>,
}

impl From<Stored> for Gaps {
    fn from(s: Stored) -> Self {
        let itemised: BTreeMap<u64, u64> = s.gaps.into_iter().collect();
        // A state stored before gaps were counted says only that there are more: they
        // lie past the itemised ones, which were opened first.
        let beyond = s.gaps_truncated.then(|| Beyond {
            from: s
                .gaps_beyond_from
                .unwrap_or_else(|| itemised.values().map(|&to| to + 1).max().unwrap_or(1)),
            missing: s.gaps_beyond_missing,
        });
        Gaps { itemised, beyond }
    }
}

impl From<Gaps> for Stored {
    fn from(g: Gaps) -> Self {
        Stored {
            gaps: g.itemised().collect(),
            gaps_truncated: g.beyond.is_some(),
            gaps_beyond_from: g.beyond.map(|b| b.from),
            gaps_beyond_missing: g.beyond.and_then(|b| b.missing),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gap_fills_seq_by_seq_from_either_end_or_the_middle() {
        let mut gaps = Gaps::default();
        gaps.open(5, 9);
        assert!(!gaps.fill(4));
        assert!(gaps.fill(7));
        assert!(!gaps.fill(7), "filled once");
        assert!(gaps.fill(5) && gaps.fill(9));
        assert_eq!(gaps.itemised().collect::<Vec<_>>(), [(6, 6), (8, 8)]);
        assert_eq!(gaps.missing(), 2);
        assert!(gaps.fill(6) && gaps.fill(8));
        assert!(gaps.is_empty());
        assert_eq!(gaps.after(20), 0);
    }

    #[test]
    fn gaps_past_the_bound_are_counted_and_fill_until_none_is_left() {
        let mut gaps = Gaps::default();
        // Every second seq missing, as two hubs taking turns leave them.
        let last = 2 * MAX_ITEMISED as u64 + 1000;
        for seq in (2..last).step_by(2) {
            gaps.open(seq, seq);
        }
        let not_itemised = last / 2 - 1 - MAX_ITEMISED as u64;
        assert_eq!(gaps.itemised().count(), MAX_ITEMISED);
        let from = 2 * MAX_ITEMISED as u64 + 2;
        assert_eq!(gaps.beyond(), Some((from, Some(not_itemised))));
        assert_eq!(gaps.missing(), MAX_ITEMISED as u64 + not_itemised);
        assert_eq!(gaps.after(last), last + 1, "no proof past uncounted gaps");
        // Below where they start, a seq that is in no itemised gap was never missing.
        assert!(!gaps.fill(3));
        let evens: Vec<u64> = (2..last).step_by(2).collect();
        for &seq in evens.iter().rev() {
            assert!(gaps.fill(seq), "{seq}");
        }
        assert!(gaps.is_empty());
        assert_eq!(gaps.missing(), 0);
    }

    #[test]
    fn stored_states_read_back_including_those_from_before_gaps_were_counted() {
        let mut gaps = Gaps::default();
        for seq in (2..2 * MAX_ITEMISED as u64 + 10).step_by(2) {
            gaps.open(seq, seq);
        }
        let json = serde_json::to_string(&gaps).unwrap();
        assert_eq!(serde_json::from_str::<Gaps>(&json).unwrap(), gaps);
        let old = r#"{"gaps":[[3,4],[8,8]],"gaps_truncated":true}"#;
        let mut old: Gaps = serde_json::from_str(old).unwrap();
        assert_eq!(old.beyond(), Some((9, None)));
        assert!(old.fill(12) && old.fill(12), "uncounted: never empty");
        assert!(!old.is_empty());
        let none: Gaps = serde_json::from_str("{}").unwrap();
        assert!(none.is_empty());
    }
}
