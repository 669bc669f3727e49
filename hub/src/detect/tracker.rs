//! What a detection remembers per entity (user, credential, client, asset, endpoint):
//! a map bounded in entries, whose least recently seen entities are forgotten first,
//! and which knows what changed since it was last saved, so each batch writes only
//! the entities it touched.
use std::hash::RandomState;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize, de::DeserializeOwned};

/// Entities kept per tracker unless the detections file says otherwise.
pub const DEFAULT_MAX_ENTITIES: usize = 100_000;

#[derive(Serialize, Deserialize)]
struct Slot<S> {
    last_ns: i64,
    state: S,
    /// Changed since the last save: its key is in [`Tracker::dirty`].
    #[serde(skip)]
    dirty: bool,
}

pub struct Tracker<S> {
    name: &'static str,
    max: usize,
    /// Keyed by what records carry (user names, addresses, paths), so SipHash with a
    /// random key (std's), not hashbrown's faster default, which does not claim to
    /// resist keys chosen to collide.
    slots: HashMap<String, Slot<S>, RandomState>,
    /// Keys changed since the last save, each once while its slot is dirty (a key
    /// forgotten and seen again in one batch may be here twice; its slot says whether
    /// it is still to be written).
    dirty: Vec<String>,
    forgotten: Vec<String>,
}

impl<S: Default + Serialize + DeserializeOwned> Tracker<S> {
    pub fn new(name: &'static str, max: usize) -> Self {
        Self {
            name,
            max: max.max(1),
            slots: HashMap::default(),
            dirty: Vec::new(),
            forgotten: Vec::new(),
        }
    }

    /// The state of `key`, created empty when new; `ts_ns` marks it recently seen.
    /// One hash lookup for a key already held, and its key copied only when it
    /// becomes dirty (every record calls this for several trackers: the lookups and
    /// copies per call were a tenth of the detection thread's time).
    pub fn entry(&mut self, key: &str, ts_ns: i64) -> &mut S {
        if self.slots.len() >= self.max && !self.slots.contains_key(key) {
            self.forget_oldest();
        }
        let slot = self.slots.entry_ref(key).or_insert_with(|| Slot {
            last_ns: ts_ns,
            state: S::default(),
            dirty: false,
        });
        if !slot.dirty {
            slot.dirty = true;
            self.dirty.push(key.to_owned());
        }
        slot.last_ns = slot.last_ns.max(ts_ns);
        &mut slot.state
    }

    #[cfg(test)]
    pub fn get(&self, key: &str) -> Option<&S> {
        self.slots.get(key).map(|s| &s.state)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &S)> {
        self.slots.iter().map(|(k, s)| (k.as_str(), &s.state))
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.slots.len()
    }

    /// Drops the least recently seen eighth, so eviction costs O(log n) per insert
    /// amortised rather than a scan per insert.
    fn forget_oldest(&mut self) {
        let mut ages: Vec<(i64, String)> = self
            .slots
            .iter()
            .map(|(k, s)| (s.last_ns, k.clone()))
            .collect();
        let drop = (self.max / 8).max(1);
        ages.select_nth_unstable_by_key(drop - 1, |(ns, _)| *ns);
        for (_, key) in ages.into_iter().take(drop) {
            self.slots.remove(&key);
            self.forgotten.push(key);
        }
    }
}

/// Receives one changed row: (tracker, key, `Some(json)` to keep or `None` to delete).
pub type RowSink<'a> = dyn FnMut(&str, &str, Option<&str>) -> anyhow::Result<()> + 'a;

/// A tracker as the store sees it: named rows of JSON.
pub trait Persist {
    fn name(&self) -> &'static str;
    /// Restores one entity; a row this version cannot read is skipped and reported.
    fn restore(&mut self, key: &str, state: &str) -> Result<(), serde_json::Error>;
    /// Every change since the last call: `Some(json)` to keep, `None` to delete.
    fn changes(&mut self, out: &mut RowSink<'_>) -> anyhow::Result<()>;
}

impl<S: Default + Serialize + DeserializeOwned> Persist for Tracker<S> {
    fn name(&self) -> &'static str {
        self.name
    }

    fn restore(&mut self, key: &str, state: &str) -> Result<(), serde_json::Error> {
        let slot: Slot<S> = serde_json::from_str(state)?;
        if self.slots.len() < self.max {
            self.slots.insert(key.to_owned(), slot);
        }
        Ok(())
    }

    fn changes(&mut self, out: &mut RowSink<'_>) -> anyhow::Result<()> {
        for key in self.forgotten.drain(..) {
            out(self.name, &key, None)?;
        }
        for key in std::mem::take(&mut self.dirty) {
            if let Some(slot) = self.slots.get_mut(&key)
                && slot.dirty
            {
                slot.dirty = false;
                out(self.name, &key, Some(&serde_json::to_string(slot)?))?;
            }
        }
        Ok(())
    }
}

/// Timestamps of recent events, at most `limit` of them: enough to tell whether
/// `limit` happened within a window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Burst {
    times: Vec<i64>,
}

impl Burst {
    /// Adds one event; returns how many fall within `window_ns` before it (itself
    /// included), up to `limit`.
    pub fn add(&mut self, ts_ns: i64, window_ns: i64, limit: usize) -> usize {
        self.times
            .retain(|&t| t > ts_ns - window_ns && t <= ts_ns + window_ns);
        self.times.push(ts_ns);
        if self.times.len() > limit {
            self.times.sort_unstable();
            let excess = self.times.len() - limit;
            self.times.drain(..excess);
        }
        self.times.len()
    }
}

/// Distinct values seen within a window, at most `limit` of them.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Distinct {
    seen: Vec<(String, i64)>,
}

impl Distinct {
    /// Adds `value` at `ts_ns`; returns how many distinct values fall within
    /// `window_ns`, up to `limit`.
    pub fn add(&mut self, value: &str, ts_ns: i64, window_ns: i64, limit: usize) -> usize {
        self.seen.retain(|(_, t)| *t > ts_ns - window_ns);
        match self.seen.iter_mut().find(|(v, _)| v == value) {
            Some((_, t)) => *t = (*t).max(ts_ns),
            None => {
                if self.seen.len() >= limit {
                    return self.seen.len();
                }
                self.seen.push((value.to_owned(), ts_ns));
            }
        }
        self.seen.len()
    }

    pub fn values(&self) -> impl Iterator<Item = &str> {
        self.seen.iter().map(|(v, _)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_tracker_forgets_the_least_recently_seen_and_reports_it() {
        let mut t: Tracker<u32> = Tracker::new("t", 8);
        for i in 0..8 {
            *t.entry(&format!("k{i}"), i) += 1;
        }
        let mut rows = Vec::new();
        t.changes(&mut |_, k, s| {
            rows.push((k.to_owned(), s.map(str::to_owned)));
            Ok(())
        })
        .unwrap();
        assert_eq!(rows.len(), 8);
        t.entry("k0", 100);
        t.entry("new", 101);
        assert_eq!(t.len(), 8);
        assert!(t.get("k1").is_none(), "the oldest goes");
        assert!(t.get("k0").is_some(), "seen again, kept");
        let mut deleted = Vec::new();
        t.changes(&mut |_, k, s| {
            if s.is_none() {
                deleted.push(k.to_owned());
            }
            Ok(())
        })
        .unwrap();
        assert_eq!(deleted, ["k1"]);
    }

    #[test]
    fn bursts_and_distinct_values_count_within_the_window_and_stay_bounded() {
        let mut b = Burst::default();
        assert_eq!(b.add(0, 10, 3), 1);
        assert_eq!(b.add(5, 10, 3), 2);
        assert_eq!(b.add(20, 10, 3), 1);
        for t in 21..100 {
            assert!(b.add(t, 1_000, 3) <= 3);
        }
        let mut d = Distinct::default();
        assert_eq!(d.add("a", 0, 10, 2), 1);
        assert_eq!(d.add("a", 1, 10, 2), 1);
        assert_eq!(d.add("b", 2, 10, 2), 2);
        assert_eq!(d.add("c", 3, 10, 2), 2);
        assert_eq!(d.add("c", 30, 10, 2), 1);
    }
}
