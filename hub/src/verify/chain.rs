//! The per-stream chain check.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use tracer_audit::{
    chain::{Hash, to_hex},
    start::{NEW_STREAM, UNCLEAN_STOP},
    verify::parse::Sealed,
};

use super::{Stored, gaps::Gaps};
use crate::ingest::record::{self, Fields};

/// Where a stream's chain stands after the lines stored so far.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq)]
pub struct StreamState {
    pub first_seq: u64,
    pub last_seq: u64,
    #[serde(with = "hex_hash")]
    pub last_hash: Hash,
    /// The first seq after the last break: a checkpoint proves nothing before it.
    pub clean_from: u64,
    /// Every seq up to this one is covered by a verified checkpoint.
    pub verified_through: Option<u64>,
    pub last_checkpoint: Option<u64>,
    /// The time written in the last checkpoint.
    #[serde(default)]
    pub last_checkpoint_ns: Option<i64>,
    /// The fingerprint of the key the last checkpoint names (`audit.key.fingerprint`).
    #[serde(default)]
    pub key: Option<String>,
    /// A verified checkpoint that came while gaps past the itemised ones were open:
    /// where they end was not known, so it proves its lines once they fill.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pending_proof: Option<u64>,
    pub records: u64,
    pub last_seen_ns: i64,
    /// The first line stored was the stream's first (seq 1, a new stream).
    pub start_seen: bool,
    /// Seqs missing below `last_seq`.
    #[serde(flatten)]
    pub gaps: Gaps,
    /// What retention deleted of this stream.
    #[serde(default)]
    pub expired: Option<Expired>,
}

/// Lines of a stream deleted by retention: none of them is stored again if it comes
/// back (a file imported anew, a redelivery), and the integrity report says what went.
#[derive(Clone, Copy, Debug, Serialize, Deserialize, PartialEq)]
pub struct Expired {
    /// The highest seq deleted. Below it, a seq not stored was deleted or never came
    /// (an open gap says which).
    pub through_seq: u64,
    pub lines: u64,
    /// The last retention cutoff: lines older than this were deleted.
    pub before_ns: i64,
}

impl StreamState {
    /// Seqs known to be missing (see [`Gaps::missing`]).
    pub fn missing(&self) -> u64 {
        self.gaps.missing()
    }

    /// What a verified checkpoint at `seq` proves: the lines after the last proven one,
    /// the last break and every open gap, through `seq`.
    fn prove(&mut self, seq: u64) -> Option<(u64, u64)> {
        let from = self
            .verified_through
            .map_or(self.first_seq, |v| v + 1)
            .max(self.clean_from)
            .max(self.gaps.after(self.last_seq));
        (from <= seq).then(|| {
            self.verified_through = Some(seq);
            (from, seq)
        })
    }
}

mod hex_hash {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};
    use tracer_audit::chain::{Hash, parse_hex, to_hex};

    pub fn serialize<S: Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&to_hex(hash))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Hash, D::Error> {
        let text = String::deserialize(d)?;
        parse_hex(&text).ok_or_else(|| D::Error::custom("not a 64-digit hex hash"))
    }
}

/// How a line relates to the chain before it. (Serialised for the detection feed.)
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Link {
    /// It continues the chain.
    Linked,
    /// The first line the hub sees of this stream, not at its start.
    Joined,
    /// It follows seqs the hub has not (yet) received.
    AfterGap,
    /// It arrived late and fills a gap, linking to its stored neighbours.
    Filled,
    /// A start after an unclean stop, linking to the line it names.
    Restart,
    /// It does not link: see the event.
    #[serde(rename = "break")]
    Broken,
    /// Already stored with the same hash: a redelivery, dropped.
    Duplicate,
    /// Its seq is stored with another hash: not stored, see the event.
    Conflict,
    /// Retention deleted its seq already: not stored again.
    Expired,
    /// The sensor's own line, kept as a conflict or arriving now, in place of a stored
    /// line that the sensor's next signed checkpoint shows was forged.
    Restored,
}

impl Link {
    pub fn as_str(self) -> &'static str {
        match self {
            Link::Linked => "linked",
            Link::Joined => "joined",
            Link::AfterGap => "after_gap",
            Link::Filled => "filled",
            Link::Restart => "restart",
            Link::Broken => "break",
            Link::Duplicate => "duplicate",
            Link::Conflict => "conflict",
            Link::Expired => "expired",
            Link::Restored => "restored",
        }
    }
}

/// What integrity event a line raised.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// Its bytes do not match its hash, or it does not link to the line before.
    Modified,
    /// Its seq is stored already with another hash.
    Conflict,
    /// A new chain (seq 1) in the middle of a stream.
    Reset,
    /// A checkpoint whose signature does not verify, or that commits to another head.
    Signature,
    /// The sensor restarted after an unclean stop.
    Restart,
    /// The sensor reported events, bytes or records it could not record.
    Loss,
    /// A checkpoint of a stream without a configured key: not verifiable.
    Unkeyed,
    /// A line that is not a sealed record.
    Unsealed,
    /// A stored line that a checkpoint signed with the stream's key contradicts: the
    /// sensor did not write it. The event's seq is the stored line's.
    Forged,
}

impl EventKind {
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Modified => "modified",
            EventKind::Conflict => "conflict",
            EventKind::Reset => "reset",
            EventKind::Signature => "signature",
            EventKind::Restart => "restart",
            EventKind::Loss => "loss",
            EventKind::Unkeyed => "unkeyed",
            EventKind::Unsealed => "unsealed",
            EventKind::Forged => "forged",
        }
    }

    /// Whether the event says the trail is damaged (a restart or a reported loss is
    /// the sensor being honest, not damage).
    pub fn is_break(self) -> bool {
        matches!(
            self,
            EventKind::Modified
                | EventKind::Conflict
                | EventKind::Reset
                | EventKind::Signature
                | EventKind::Unsealed
                | EventKind::Forged
        )
    }

    /// The line it is about failed verification, so it proves nothing about its sensor.
    /// (A reset breaks the chain, but its line is a sensor's genuine new start; a
    /// forgery is named by a genuine checkpoint, about another line.)
    pub fn discredits_line(self) -> bool {
        self.is_break() && !matches!(self, EventKind::Reset | EventKind::Forged)
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub stream: String,
    pub seq: u64,
    pub kind: EventKind,
    pub detail: String,
}

/// The outcome for one line.
#[derive(Debug)]
pub struct Verdict {
    pub sealed: Sealed,
    pub link: Link,
    pub events: Vec<Event>,
    /// A verified checkpoint: the seqs it newly covers.
    pub covers: Option<(u64, u64)>,
    /// Stored seqs that this line, a checkpoint signed with the stream's key, shows the
    /// sensor did not write.
    pub disowned: Vec<u64>,
}

impl Verdict {
    /// A kept line of the sensor's, stored in place of a forged one ([`Restoration`]).
    pub fn restored(sealed: Sealed) -> Self {
        Self {
            sealed,
            link: Link::Restored,
            events: Vec::new(),
            covers: None,
            disowned: Vec::new(),
        }
    }

    /// A line that is not stored as a record (a redelivery, a conflict, an expired
    /// seq), with the events that say why.
    fn unstored(sealed: Sealed, link: Link, events: Vec<Event>) -> Self {
        Self {
            sealed,
            link,
            events,
            covers: None,
            disowned: Vec::new(),
        }
    }
}

/// The chain state of every stream.
pub struct Chains {
    streams: HashMap<String, StreamState>,
    /// The checkpoint ([`Chains::restoration`]) whose own seq holds a forged line it
    /// replaces: (stream, seq), until [`Chains::check`] meets it.
    restoring: Option<(String, u64)>,
}

/// Lines a restoration walks back at most: a sensor signs a checkpoint at least every
/// 2 minutes and every few thousand records, so its chain back to the last one is
/// short; a longer walk is someone else's doing and is not followed.
const MAX_RESTORE_WALK: u64 = 100_000;

/// What a signed checkpoint's own chain puts back ([`Chains::restoration`]).
pub struct Restoration {
    /// The sensor's lines kept as conflicts that take the place of forged stored ones,
    /// lowest seq first.
    pub lines: Vec<Restored>,
    /// Stored lines on the chain that were marked broken because a forged line stood
    /// before them: they link now.
    pub relinked: Vec<u64>,
    /// One `forged` event per stored line replaced (the checkpoint's own seq among them).
    pub events: Vec<Event>,
}

/// A kept line of the sensor's, to store in place of a forged one.
pub struct Restored {
    pub sealed: Sealed,
    pub fields: Fields,
    pub line: Vec<u8>,
}

/// What verification needs of a stored line to walk the chain through it.
pub struct StoredLink {
    pub hash: Hash,
    pub prev_hash: Hash,
    /// Stored as a break (`link` = `break`).
    pub broken: bool,
}

impl Chains {
    pub fn new(streams: HashMap<String, StreamState>) -> Self {
        Self {
            streams,
            restoring: None,
        }
    }

    /// A checkpoint signed with the stream's key commits, through its `prev_hash` and
    /// the `prev_hash` of every line before it, to the sensor's own chain back to its
    /// previous checkpoint. Where the store holds other lines on that chain (forged
    /// ahead of the sensor, which can publish to the stream, so the sensor's own were
    /// refused as conflicts and kept), this walks it back and returns the kept lines
    /// that take their places, with a `forged` event for each line they replace; the
    /// chain state then continues from the sensor's lines. `None`: nothing to restore,
    /// or the chain cannot be followed all the way (a line neither stored nor kept, a
    /// stored broken line that fails its own hash, a head the walk does not meet), and
    /// [`Chains::check`] names what it can as before.
    ///
    /// Only a checkpoint that continues the stored chain speaks for it (its previous
    /// checkpoint is stored with the hash it names), as for `forged` findings. It walks
    /// only after a break since the previous checkpoint, or when the checkpoint does not
    /// follow the stream's last stored line: an honest stream never does.
    pub fn restoration(
        &mut self,
        sealed: &Sealed,
        stream: &str,
        stored: &mut dyn Stored,
    ) -> anyhow::Result<Option<Restoration>> {
        self.restoring = None;
        let (Some(cp), Some(state)) = (&sealed.checkpoint, self.streams.get(stream)) else {
            return Ok(None);
        };
        let seq = sealed.seq;
        let Some(prev_seq) = cp
            .prev_seq
            .filter(|&p| p < seq && seq - p <= MAX_RESTORE_WALK)
        else {
            return Ok(None);
        };
        let follows = seq == state.last_seq + 1 && sealed.prev_hash == state.last_hash;
        if !sealed.content_ok
            || cp.signature_ok != Some(true)
            || (follows && state.clean_from <= prev_seq + 1)
            || stored.stored_hash(stream, prev_seq)? != Some(cp.prev_hash)
        {
            return Ok(None);
        }
        let mut lines = Vec::new();
        let mut relinked = Vec::new();
        let mut replaced = Vec::new();
        // The hash the sensor's line at `at` has, walking down from the checkpoint.
        let mut want = sealed.prev_hash;
        let mut head_met = cp.head_seq == prev_seq && cp.head_hash == cp.prev_hash;
        for at in (prev_seq + 1..seq).rev() {
            if at == cp.head_seq {
                if want != cp.head_hash {
                    return Ok(None);
                }
                head_met = true;
            }
            match stored.stored_link(stream, at)? {
                Some(line) if line.hash == want => {
                    if line.broken {
                        let verifies = stored.stored_line(stream, at)?.is_some_and(|bytes| {
                            tracer_audit::verify::parse::parse(&bytes, None)
                                .is_ok_and(|s| s.content_ok && s.hash == want)
                        });
                        if !verifies {
                            return Ok(None);
                        }
                        relinked.push(at);
                    }
                    want = line.prev_hash;
                }
                Some(line) => {
                    let Some(bytes) = stored.kept_conflict_line(stream, at, &want)? else {
                        return Ok(None);
                    };
                    let Ok(kept) = tracer_audit::verify::parse::parse(&bytes, None) else {
                        return Ok(None);
                    };
                    // It was kept as a conflict, so it parsed then; it is held to that.
                    let Ok(fields) = record::parse(&bytes) else {
                        return Ok(None);
                    };
                    if !kept.content_ok || kept.hash != want || kept.seq != at {
                        return Ok(None);
                    }
                    want = kept.prev_hash;
                    replaced.push((at, line.hash, kept.hash));
                    lines.push(Restored {
                        sealed: kept,
                        fields,
                        line: bytes,
                    });
                }
                None => return Ok(None),
            }
        }
        if want != cp.prev_hash || !head_met {
            return Ok(None);
        }
        let own = stored
            .stored_hash(stream, seq)?
            .filter(|&h| h != sealed.hash);
        if let Some(forged) = own {
            replaced.push((seq, forged, sealed.hash));
        }
        if replaced.is_empty() {
            return Ok(None);
        }
        lines.reverse();
        replaced.sort_by_key(|&(at, ..)| at);
        let state = self.streams.get_mut(stream).expect("looked up above");
        // The chain from the previous checkpoint through this one is the sensor's now;
        // a break after it stands.
        if state.clean_from <= seq + 1 {
            state.clean_from = state.clean_from.min(prev_seq + 1);
        }
        if let Some(restored) = lines.iter().find(|r| r.sealed.seq == state.last_seq) {
            state.last_hash = restored.sealed.hash;
        }
        if own.is_some() {
            self.restoring = Some((stream.to_owned(), seq));
        }
        let events = replaced
            .into_iter()
            .map(|(at, forged, own)| Event {
                stream: stream.to_owned(),
                seq: at,
                kind: EventKind::Forged,
                detail: format!(
                    "the sensor did not write the stored line: it has hash {}, and the checkpoint at seq {seq}, signed with the stream's key, chains to the sensor's own line there ({}), which now stands in its place; the forged line is kept (tracer-hub conflicts)",
                    short(&forged),
                    short(&own)
                ),
            })
            .collect();
        Ok(Some(Restoration {
            lines,
            relinked,
            events,
        }))
    }

    /// Links one line of `stream`, taken apart by [`super::seal`] (which checked its
    /// hash and signature, a step that needs no chain state).
    pub fn check(
        &mut self,
        sealed: Sealed,
        line: &[u8],
        stream: &str,
        ts_ns: i64,
        stored: &mut dyn Stored,
    ) -> anyhow::Result<Verdict> {
        let mut events = Vec::new();
        let mut event = |kind: EventKind, detail: String| {
            events.push(Event {
                stream: stream.to_owned(),
                seq: sealed.seq,
                kind,
                detail,
            })
        };
        let seq = sealed.seq;
        let restoring = self
            .restoring
            .take()
            .is_some_and(|(s, at)| s == stream && at == seq);
        let start_reason = sealed.start.as_ref().map(|s| s.reason.as_str());
        let new_stream = seq == 1 && start_reason == Some(NEW_STREAM);
        let mut link = match self.streams.get_mut(stream) {
            None if new_stream => Link::Linked,
            None => Link::Joined,
            Some(state) if seq <= state.last_seq => match stored.stored_hash(stream, seq)? {
                Some(hash) if hash == sealed.hash && sealed.content_ok => Link::Duplicate,
                // The same bytes as the stored line, which failed its hash when it was
                // stored (a tampered line redelivered, or a file imported twice): named
                // once, then.
                Some(hash)
                    if hash == sealed.hash
                        && stored.stored_line(stream, seq)?.as_deref() == Some(line) =>
                {
                    Link::Duplicate
                }
                // A copy of a stored line, altered but with its hash left as it was:
                // redelivery brings the same bytes, so this is someone else's line. The
                // stored one stands; this one is named, never dropped in silence.
                Some(hash) if hash == sealed.hash => {
                    event(
                        EventKind::Modified,
                        format!(
                            "seq {seq} is stored; this copy of it does not match its audit.hash"
                        ),
                    );
                    return Ok(Verdict::unstored(sealed, Link::Conflict, events));
                }
                // The forged line at this checkpoint's own seq, which it replaces.
                Some(_) if restoring => Link::Restored,
                // A sensor that lost its chain state begins again at seq 1 under the
                // same stream id: its seqs collide with the stored ones until they
                // pass them, and those lines are conflicts. Said once, where it
                // begins, with what to do.
                Some(_) if new_stream => {
                    event(
                        EventKind::Reset,
                        format!(
                            "a new chain starts (seq 1) in the middle of the stream, whose seqs up to {} are stored: the sensor lost its chain state, and its lines up to that seq collide with stored ones and are kept apart as conflicts (tracer-hub conflicts), not stored as records; give it a new --stream-id, or restore its state file",
                            state.last_seq
                        ),
                    );
                    return Ok(Verdict::unstored(sealed, Link::Conflict, events));
                }
                Some(hash) => {
                    event(
                        EventKind::Conflict,
                        format!(
                            "seq {seq} is stored with hash {}, this line has {}",
                            short(&hash),
                            short(&sealed.hash)
                        ),
                    );
                    let disowned = disowned(&sealed, stream, stored)?;
                    events.extend(forgeries(stream, seq, &disowned));
                    return Ok(Verdict {
                        sealed,
                        link: Link::Conflict,
                        events,
                        covers: None,
                        disowned: disowned.iter().map(|d| d.seq).collect(),
                    });
                }
                None if state.gaps.fill(seq) => {
                    let before = match seq.checked_sub(1) {
                        Some(prev) if prev > 0 => stored.stored_hash(stream, prev)?,
                        _ => None,
                    };
                    let after = stored.stored_prev_hash(stream, seq + 1)?;
                    if before.is_some_and(|h| h != sealed.prev_hash)
                        || after.is_some_and(|h| h != sealed.hash)
                    {
                        event(
                            EventKind::Modified,
                            format!(
                                "seq {seq} arrived late and does not link to its stored neighbours"
                            ),
                        );
                        Link::Broken
                    } else {
                        Link::Filled
                    }
                }
                None if state.expired.is_some_and(|e| seq <= e.through_seq) => {
                    return Ok(Verdict::unstored(sealed, Link::Expired, events));
                }
                // A line before the first the store met: hubs sharing a consumer each
                // take a share from the stream's first message on, and the stream is
                // first stored from whichever share commits first. The lines between
                // this one and that first line are missing until they come.
                None if seq < state.first_seq => {
                    if seq + 1 < state.first_seq {
                        state.gaps.open(seq + 1, state.first_seq - 1);
                    }
                    state.first_seq = seq;
                    state.start_seen |= new_stream;
                    let after = stored.stored_prev_hash(stream, seq + 1)?;
                    if after.is_some_and(|h| h != sealed.hash) {
                        event(
                            EventKind::Modified,
                            format!(
                                "seq {seq} arrived after later lines and does not link to the stored line after it"
                            ),
                        );
                        Link::Broken
                    } else {
                        Link::Filled
                    }
                }
                None => {
                    event(
                        EventKind::Conflict,
                        format!(
                            "seq {seq} arrived after seq {} but was never missing",
                            state.last_seq
                        ),
                    );
                    return Ok(Verdict::unstored(sealed, Link::Conflict, events));
                }
            },
            Some(_) if new_stream => {
                event(
                    EventKind::Reset,
                    "a new chain starts (seq 1) in the middle of the stream".to_owned(),
                );
                Link::Broken
            }
            Some(state) if seq == state.last_seq + 1 => {
                if sealed.prev_hash == state.last_hash {
                    Link::Linked
                } else {
                    event(
                        EventKind::Modified,
                        format!(
                            "audit.prev_hash {} is not the hash of seq {} ({})",
                            short(&sealed.prev_hash),
                            state.last_seq,
                            short(&state.last_hash)
                        ),
                    );
                    Link::Broken
                }
            }
            Some(state) => {
                let last_seq = state.last_seq;
                let named = sealed.start.as_ref().and_then(|s| s.previous_seq);
                let links_back = match named {
                    Some(previous) if start_reason == Some(UNCLEAN_STOP) => stored
                        .stored_hash(stream, previous)?
                        .is_some_and(|hash| hash == sealed.prev_hash),
                    _ => false,
                };
                if links_back {
                    event(
                        EventKind::Restart,
                        format!(
                            "the sensor restarted after an unclean stop; it resumes after seq {} and skipped seqs {}..{}",
                            named.unwrap_or_default(),
                            last_seq + 1,
                            seq - 1
                        ),
                    );
                    Link::Restart
                } else {
                    state.gaps.open(last_seq + 1, seq - 1);
                    Link::AfterGap
                }
            }
        };
        if !sealed.content_ok && link != Link::Duplicate {
            event(
                EventKind::Modified,
                "its bytes do not match its audit.hash".to_owned(),
            );
            link = Link::Broken;
        }
        if link == Link::Duplicate {
            return Ok(Verdict {
                sealed,
                link,
                events,
                covers: None,
                disowned: Vec::new(),
            });
        }
        let state = self
            .streams
            .entry(stream.to_owned())
            .or_insert_with(|| StreamState {
                first_seq: seq,
                last_seq: 0,
                last_hash: [0; 32],
                clean_from: seq,
                verified_through: None,
                last_checkpoint: None,
                last_checkpoint_ns: None,
                key: None,
                pending_proof: None,
                records: 0,
                last_seen_ns: ts_ns,
                start_seen: link == Link::Linked,
                gaps: Gaps::default(),
                expired: None,
            });
        if link == Link::Broken {
            state.clean_from = seq + 1;
        }
        if seq > state.last_seq || (restoring && seq == state.last_seq) {
            state.last_seq = seq;
            state.last_hash = sealed.hash;
        }
        // A line that takes a forged one's place was counted as that one.
        if link != Link::Restored {
            state.records += 1;
        }
        state.last_seen_ns = state.last_seen_ns.max(ts_ns);
        let mut covers = None;
        let mut disowned = Vec::new();
        if let Some(cp) = &sealed.checkpoint {
            state.last_checkpoint = Some(seq);
            state.last_checkpoint_ns = Some(ts_ns);
            state.key = Some(cp.fingerprint.clone());
            let head_ok = if cp.head_seq == seq {
                false
            } else {
                match stored.stored_hash(stream, cp.head_seq)? {
                    Some(hash) => hash == cp.head_hash,
                    // Not here yet (JetStream redelivers a killed hub's batch after later
                    // messages): the checkpoint must name the line it links to, and that
                    // line is held to this one's prev_hash when it fills the gap.
                    None => cp.head_seq + 1 == seq && cp.head_hash == sealed.prev_hash,
                }
            };
            match cp.signature_ok {
                None => event(
                    EventKind::Unkeyed,
                    format!(
                        "checkpoint signed by key {} but no key is configured for stream {stream}",
                        cp.fingerprint
                    ),
                ),
                Some(false) => {
                    event(
                        EventKind::Signature,
                        format!(
                            "the checkpoint's signature does not verify with the configured key (it names key {})",
                            cp.fingerprint
                        ),
                    );
                    state.clean_from = seq + 1;
                }
                Some(true) if !head_ok => {
                    event(
                        EventKind::Signature,
                        format!(
                            "the checkpoint commits to seq {} with hash {}, which is not the stored line",
                            cp.head_seq,
                            short(&cp.head_hash)
                        ),
                    );
                    state.clean_from = seq + 1;
                    disowned = self::disowned(&sealed, stream, stored)?;
                }
                // Lines before an open gap are not linked to the checkpoint until the
                // gap fills (then the store carries the proof back to them).
                Some(true) if state.gaps.beyond().is_some() => state.pending_proof = Some(seq),
                Some(true) => {
                    covers = state.prove(seq);
                    state.pending_proof = None;
                }
            }
        } else if state.gaps.beyond().is_none()
            && let Some(pending) = state.pending_proof.take()
        {
            // This line filled the last of the gaps the checkpoint had to wait for.
            covers = state.prove(pending);
        }
        events.extend(forgeries(stream, seq, &disowned));
        Ok(Verdict {
            sealed,
            link,
            events,
            covers,
            disowned: disowned.iter().map(|d| d.seq).collect(),
        })
    }

    pub fn streams(&self) -> &HashMap<String, StreamState> {
        &self.streams
    }

    /// Takes `stream`'s state as the store holds it now (`None`: the store has not seen
    /// it), for a store that other hubs write too.
    pub fn reload(&mut self, stream: &str, state: Option<StreamState>) {
        match state {
            Some(state) => self.streams.insert(stream.to_owned(), state),
            None => self.streams.remove(stream),
        };
    }

    /// Retention deleted `lines` lines of `stream` older than `before_ns`, up to seq
    /// `through_seq`.
    pub fn expire(&mut self, stream: &str, through_seq: u64, lines: u64, before_ns: i64) {
        if let Some(state) = self.streams.get_mut(stream) {
            let expired = state.expired.get_or_insert(Expired {
                through_seq: 0,
                lines: 0,
                before_ns,
            });
            expired.through_seq = expired.through_seq.max(through_seq);
            expired.lines += lines;
            expired.before_ns = before_ns;
        }
    }
}

/// A stored line that a signed checkpoint names with another hash.
struct Disowned {
    seq: u64,
    stored: Hash,
    signed: Hash,
    /// The line the sensor signed for is kept among the conflicts.
    kept: bool,
}

/// The stored lines that `sealed`, a checkpoint signed with the stream's key, shows the
/// sensor did not write: at the checkpoint's own seq and at its head, where the store
/// holds another hash than the one signed for. Only a checkpoint that continues the
/// stored chain speaks for it (its previous checkpoint is stored, with the hash it
/// names): a sensor that lost its chain state begins again at seq 1 with the same key,
/// and the checkpoints of that new chain name seqs of lines it did write in the old.
fn disowned(
    sealed: &Sealed,
    stream: &str,
    stored: &mut dyn Stored,
) -> anyhow::Result<Vec<Disowned>> {
    let Some(cp) = &sealed.checkpoint else {
        return Ok(Vec::new());
    };
    let Some(prev_seq) = cp.prev_seq else {
        return Ok(Vec::new());
    };
    if !sealed.content_ok
        || cp.signature_ok != Some(true)
        || stored.stored_hash(stream, prev_seq)? != Some(cp.prev_hash)
    {
        return Ok(Vec::new());
    }
    let mut found = Vec::new();
    for (seq, signed) in [(cp.head_seq, cp.head_hash), (sealed.seq, sealed.hash)] {
        if let Some(hash) = stored.stored_hash(stream, seq)?
            && hash != signed
        {
            // The checkpoint itself, refused as a conflict, is kept next.
            let kept =
                seq == sealed.seq || stored.kept_conflict_line(stream, seq, &signed)?.is_some();
            found.push(Disowned {
                seq,
                stored: hash,
                signed,
                kept,
            });
        }
    }
    Ok(found)
}

/// A `forged` event for each disowned line, naming the checkpoint at `by`.
fn forgeries<'a>(
    stream: &'a str,
    by: u64,
    disowned: &'a [Disowned],
) -> impl Iterator<Item = Event> + 'a {
    disowned.iter().map(move |d| Event {
        stream: stream.to_owned(),
        seq: d.seq,
        kind: EventKind::Forged,
        detail: format!(
            "the sensor did not write the stored line: it has hash {}, and the checkpoint at seq {by}, signed with the stream's key, names {}{}",
            short(&d.stored),
            short(&d.signed),
            if d.kept {
                "; the sensor's line is kept (tracer-hub conflicts)"
            } else {
                ""
            }
        ),
    })
}

fn short(hash: &Hash) -> String {
    to_hex(hash)[..16].to_owned()
}
