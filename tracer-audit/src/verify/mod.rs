//! `tracer verify FILE...`: checks that the files, in the order given, hold one
//! unbroken chain with valid checkpoint signatures, and names the first damage found.
//!
//! A line is accepted when its hash matches its bytes and it links to the line before
//! (next seq, `audit.prev_hash` = that line's hash), or it is a start line after an
//! unclean stop that links to a line it names. Anything else is classified by looking
//! at the lines around it; see [`Damage`].
//!
//! Over 400 lines: the verifier is one state machine over the lines; its outcomes are in
//! `report`, reading files in `input`, parsing lines in `parse`.
pub mod input;
pub mod parse;
mod report;

use std::{
    collections::{HashMap, VecDeque},
    io,
    path::PathBuf,
};

use self::report::thousands;
pub use self::report::{Damage, Failure, Intact};
use self::{
    input::{Lines, Location, RawLine},
    parse::{Sealed, parse},
};
use super::{
    chain::{Hash, Kind, ZERO_HASH},
    key::PublicKey,
    start::{NEW_STREAM, UNCLEAN_STOP},
};

/// Hashes of this many recent lines are kept to recognise duplicates and the line a
/// start after an unclean stop links to.
const RECENT_LINES: usize = 1 << 17;
/// How far ahead a missing seq is looked for before calling it deleted, not reordered.
const REORDER_WINDOW: usize = 10_000;

/// What the auditor knows from elsewhere (the hub, NATS): that the files must begin at
/// the stream's start, and the seq the stream's last record must have.
#[derive(Clone, Copy, Debug, Default)]
pub struct Expect {
    pub start: bool,
    pub end_seq: Option<u64>,
}

/// Checks `files` in order against `key`, then `expect`. `Err` only when a file cannot
/// be read.
pub fn verify(
    files: &[PathBuf],
    key: &PublicKey,
    expect: Expect,
) -> io::Result<Result<Intact, Failure>> {
    Ok(Verifier::new(files, key)
        .run()?
        .and_then(|intact| expect.check(intact)))
}

impl Expect {
    fn check(self, intact: Intact) -> Result<Intact, Failure> {
        let cut = |detail: String| Failure {
            damage: Damage::Truncated,
            at: None,
            seq: Some(intact.first_seq),
            detail,
        };
        if self.start && !intact.start_seen {
            return Err(cut(format!(
                "the files begin at seq {}, not at the stream's start (seq 1 with a new_stream start line): their head was cut off",
                intact.first_seq
            )));
        }
        if let Some(end) = self.end_seq
            && end != intact.last_seq
        {
            let mut failure = cut(if end > intact.last_seq {
                format!(
                    "the files end at seq {}, the stream's last record is seq {end}: {} records were cut off the end",
                    intact.last_seq,
                    thousands(end - intact.last_seq)
                )
            } else {
                format!(
                    "the files end at seq {}, beyond the expected last seq {end}",
                    intact.last_seq
                )
            });
            failure.seq = Some(intact.last_seq);
            if end < intact.last_seq {
                failure.damage = Damage::Inserted;
            }
            return Err(failure);
        }
        Ok(intact)
    }
}

#[derive(Clone)]
struct Accepted {
    seq: u64,
    hash: Hash,
    kind: Kind,
    at: Location,
}

struct LastCheckpoint {
    seq: u64,
    hash: Hash,
    at: Location,
    timestamp: String,
    shutdown: bool,
}

struct Verifier<'a> {
    key: &'a PublicKey,
    lines: Lines,
    last: Option<Accepted>,
    recent: HashMap<u64, (Hash, Location)>,
    recent_order: VecDeque<u64>,
    /// Every checkpoint seen: hash -> seq.
    checkpoints: HashMap<Hash, u64>,
    last_checkpoint: Option<LastCheckpoint>,
    /// Lines since the last checkpoint or start line; `None` until one was seen.
    since_checkpoint: Option<u64>,
    /// An unclean restart happened since the last checkpoint: the next one may link to
    /// an earlier checkpoint than the last one seen.
    unclean_since_checkpoint: bool,
    stream: Option<String>,
    /// The first accepted line: its seq, and whether it opens a new stream.
    first: Option<(u64, bool)>,
    records: u64,
    notes: Vec<String>,
}

type Checked = Result<(), Failure>;

fn fail(damage: Damage, at: &Location, seq: Option<u64>, detail: String) -> Checked {
    Err(Failure {
        damage,
        at: Some(at.clone()),
        seq,
        detail,
    })
}

impl<'a> Verifier<'a> {
    fn new(files: &[PathBuf], key: &'a PublicKey) -> Self {
        Self {
            key,
            lines: Lines::new(files),
            last: None,
            recent: HashMap::new(),
            recent_order: VecDeque::new(),
            checkpoints: HashMap::new(),
            last_checkpoint: None,
            since_checkpoint: None,
            unclean_since_checkpoint: false,
            stream: None,
            first: None,
            records: 0,
            notes: Vec::new(),
        }
    }

    fn run(mut self) -> io::Result<Result<Intact, Failure>> {
        while let Some(raw) = self.lines.next_line()? {
            if let Err(failure) = self.check(raw)? {
                return Ok(Err(failure));
            }
        }
        Ok(self.finish())
    }

    fn check(&mut self, raw: RawLine) -> io::Result<Checked> {
        let at = raw.at;
        if !raw.complete {
            return Ok(fail(
                Damage::Truncated,
                &at,
                None,
                "the line is incomplete (no newline at its end): the file was cut in the middle of a record".to_owned(),
            ));
        }
        let line = parse(&raw.bytes, Some(self.key));
        if let Ok(sealed) = &line
            && self.links(sealed)
        {
            return Ok(self.accept(at, sealed));
        }
        // A genuine record out of place: a later line links to it.
        if let (Ok(sealed), Some(p)) = (&line, &self.last)
            && sealed.content_ok
            && sealed.seq > p.seq + 1
            && let Some(failure) = self.reordered(&at, sealed, p.seq + 1)?
        {
            return Ok(Err(failure));
        }
        // Whatever else is wrong with it: if the next line continues the chain, it is extra.
        if self.next_fits()? {
            let after = self.last.as_ref().map_or(0, |p| p.seq);
            return Ok(fail(
                Damage::Inserted,
                &at,
                line.as_ref().ok().map(|s| s.seq),
                format!(
                    "it does not belong to the chain: the next line continues from seq {after} without it"
                ),
            ));
        }
        let sealed = match line {
            Ok(sealed) => sealed,
            Err(why) => return Ok(fail(Damage::Modified, &at, None, why)),
        };
        self.classify(at, sealed)
    }

    /// Whether `l` continues the chain accepted so far.
    fn links(&self, l: &Sealed) -> bool {
        if !l.content_ok || self.stream.as_ref().is_some_and(|s| *s != l.stream) {
            return false;
        }
        let Some(p) = &self.last else {
            return true;
        };
        match &l.start {
            Some(start) if start.reason == UNCLEAN_STOP => {
                let (Some(after), Some(skipped)) = (start.previous_seq, start.skipped_seqs) else {
                    return false;
                };
                let linked = if p.seq == after {
                    Some(p.hash)
                } else {
                    self.recent.get(&after).map(|(hash, _)| *hash)
                };
                l.seq == after + skipped + 1
                    && (after..l.seq).contains(&p.seq)
                    && linked.is_none_or(|hash| hash == l.prev_hash)
            }
            _ => l.seq == p.seq + 1 && l.prev_hash == p.hash,
        }
    }

    /// The next line is whole, matches its hash and links to the last accepted line.
    fn next_fits(&mut self) -> io::Result<bool> {
        let Some(p) = self.last.clone() else {
            return Ok(false);
        };
        let key = self.key;
        Ok(match self.lines.peek(0)? {
            Some(next) if next.complete => parse(&next.bytes, Some(key))
                .is_ok_and(|n| n.content_ok && n.seq == p.seq + 1 && n.prev_hash == p.hash),
            _ => false,
        })
    }

    /// `l` is whole-looking but does not link: say how.
    fn classify(&mut self, at: Location, l: Sealed) -> io::Result<Checked> {
        let seq = Some(l.seq);
        if !l.content_ok {
            return Ok(fail(
                Damage::Modified,
                &at,
                seq,
                "its content does not match its audit.hash: the record was altered".to_owned(),
            ));
        }
        if let Some(stream) = self.stream.as_ref().filter(|s| **s != l.stream) {
            return Ok(fail(
                Damage::Inserted,
                &at,
                seq,
                format!("it belongs to stream {:?}, not {stream:?}", l.stream),
            ));
        }
        // `links` accepts anything as the first line.
        let Some(p) = self.last.clone() else {
            unreachable!("the first line always links")
        };
        let expected = p.seq + 1;
        if l.start.as_ref().is_some_and(|s| s.reason == NEW_STREAM) {
            return Ok(fail(
                Damage::Reset,
                &at,
                seq,
                format!(
                    "a new chain (seq {}, no previous hash) starts after seq {} ({}): the state file was lost or replaced, or these files belong to different chains",
                    l.seq, p.seq, p.at
                ),
            ));
        }
        if l.seq < expected {
            return self.classify_old_seq(at, l, &p);
        }
        if l.seq > expected {
            return self.classify_gap(at, l, expected);
        }
        // Right seq, wrong link: the previous line or this one was re-hashed.
        let next_links_here = match self.lines.peek(0)? {
            Some(next) => parse(&next.bytes, Some(self.key))
                .is_ok_and(|n| n.seq == l.seq + 1 && n.prev_hash == l.hash),
            None => false,
        };
        Ok(if next_links_here {
            fail(
                Damage::Modified,
                &p.at,
                Some(p.seq),
                format!(
                    "seq {} ({at}) was chained to a different record: this one was altered and its hash recomputed",
                    l.seq
                ),
            )
        } else {
            fail(
                Damage::Modified,
                &at,
                seq,
                format!(
                    "its audit.prev_hash is not the hash of seq {} ({}): altered and re-hashed",
                    p.seq, p.at
                ),
            )
        })
    }

    /// A seq at or below the last accepted one.
    fn classify_old_seq(&mut self, at: Location, l: Sealed, p: &Accepted) -> io::Result<Checked> {
        let seq = Some(l.seq);
        let Some((hash, first_at)) = self.recent.get(&l.seq).cloned() else {
            return Ok(fail(
                Damage::Reordered,
                &at,
                seq,
                format!("seq {} comes after seq {} ({})", l.seq, p.seq, p.at),
            ));
        };
        if hash == l.hash {
            return Ok(fail(
                Damage::Inserted,
                &at,
                seq,
                format!("a copy of seq {} ({first_at})", l.seq),
            ));
        }
        // Two records claim one seq: the one the next line links to belongs.
        let next_links_here = match self.lines.peek(0)? {
            Some(next) => parse(&next.bytes, Some(self.key)).is_ok_and(|n| n.prev_hash == l.hash),
            None => false,
        };
        Ok(if next_links_here {
            fail(
                Damage::Inserted,
                &first_at,
                seq,
                format!(
                    "seq {} appears twice; the chain continues from the other one ({at}), so this one does not belong",
                    l.seq
                ),
            )
        } else {
            fail(
                Damage::Inserted,
                &at,
                seq,
                format!("seq {} was already used ({first_at})", l.seq),
            )
        })
    }

    /// `l` (seq beyond `expected`) is out of order if a later line links to it and a
    /// missing seq comes later.
    fn reordered(
        &mut self,
        at: &Location,
        l: &Sealed,
        expected: u64,
    ) -> io::Result<Option<Failure>> {
        let mut linked = false;
        let mut missing_at = None;
        for n in 0..REORDER_WINDOW {
            let Some(later) = self.lines.peek(n)? else {
                break;
            };
            let Ok(later_line) = parse(&later.bytes, Some(self.key)) else {
                continue;
            };
            linked |= later_line.prev_hash == l.hash;
            if missing_at.is_none() && (expected..l.seq).contains(&later_line.seq) {
                missing_at = Some((later_line.seq, later.at.clone()));
            }
            if linked && missing_at.is_some() {
                break;
            }
        }
        Ok(match missing_at {
            Some((seq, later)) if linked => Some(Failure {
                damage: Damage::Reordered,
                at: Some(at.clone()),
                seq: Some(l.seq),
                detail: format!(
                    "seq {} comes before seq {seq} ({later}): records are out of order",
                    l.seq
                ),
            }),
            _ => None,
        })
    }

    /// A seq beyond the expected one that no later line links to.
    fn classify_gap(&mut self, at: Location, l: Sealed, expected: u64) -> io::Result<Checked> {
        let missing = if l.seq - expected == 1 {
            format!("seq {expected} is missing")
        } else {
            format!("seqs {expected}..{} are missing", l.seq - 1)
        };
        Ok(fail(
            Damage::Deleted,
            &at,
            Some(l.seq),
            format!("{missing} before this record"),
        ))
    }

    fn accept(&mut self, at: Location, l: &Sealed) -> Checked {
        if let Some(start) = &l.start {
            if start.reason == UNCLEAN_STOP
                && let Some(p) = &self.last
            {
                self.notes.push(format!(
                    "restart after an unclean stop at {at}: seqs {}..{} skipped (the stopped tracer's reserved range), chain resumes from seq {}",
                    p.seq + 1,
                    l.seq - 1,
                    start.previous_seq.unwrap_or_default()
                ));
                self.unclean_since_checkpoint = true;
            }
            self.since_checkpoint = Some(0);
        }
        if let Some(cp) = &l.checkpoint {
            self.check_checkpoint(&at, l, cp)?;
            self.checkpoints.insert(l.hash, l.seq);
            self.last_checkpoint = Some(LastCheckpoint {
                seq: l.seq,
                hash: l.hash,
                at: at.clone(),
                timestamp: l.timestamp.clone().unwrap_or_default(),
                shutdown: cp.reason.as_deref() == Some("shutdown"),
            });
            self.since_checkpoint = Some(0);
            self.unclean_since_checkpoint = false;
        } else if let Some(n) = &mut self.since_checkpoint {
            *n += 1;
        }
        if self.last.is_none() && l.seq != 1 {
            self.notes.push(format!(
                "the first record is seq {}: earlier records were not given, so they are not checked",
                l.seq
            ));
        }
        self.stream.get_or_insert_with(|| l.stream.clone());
        self.first.get_or_insert((
            l.seq,
            l.seq == 1 && l.start.as_ref().is_some_and(|s| s.reason == NEW_STREAM),
        ));
        self.records += 1;
        self.recent.insert(l.seq, (l.hash, at.clone()));
        self.recent_order.push_back(l.seq);
        if self.recent_order.len() > RECENT_LINES
            && let Some(old) = self.recent_order.pop_front()
        {
            self.recent.remove(&old);
        }
        self.last = Some(Accepted {
            seq: l.seq,
            hash: l.hash,
            kind: l.kind,
            at,
        });
        Ok(())
    }

    fn check_checkpoint(&self, at: &Location, l: &Sealed, cp: &parse::CheckpointFields) -> Checked {
        let seq = Some(l.seq);
        if cp.signature_ok != Some(true) {
            let detail = if cp.fingerprint != self.key.fingerprint() {
                format!(
                    "the checkpoint is signed for key {}, not the given key {}, and its signature does not verify",
                    cp.fingerprint,
                    self.key.fingerprint()
                )
            } else {
                "its signature does not verify with the given key: the checkpoint was altered"
                    .to_owned()
            };
            return fail(Damage::SignatureMismatch, at, seq, detail);
        }
        if cp.head_seq + 1 != l.seq || cp.head_hash != l.prev_hash {
            return fail(
                Damage::Modified,
                at,
                seq,
                "its head (audit.checkpoint.head_seq/head_hash) is not the record before it"
                    .to_owned(),
            );
        }
        if let Some(previous) = &self.last_checkpoint {
            let links_last = cp.prev_seq == Some(previous.seq) && cp.prev_hash == previous.hash;
            let links_earlier = self.unclean_since_checkpoint
                && cp.prev_seq.is_some()
                && self.checkpoints.get(&cp.prev_hash) == cp.prev_seq.as_ref();
            if !(links_last || links_earlier) {
                return fail(
                    Damage::Modified,
                    at,
                    seq,
                    format!(
                        "it links to checkpoint seq {:?}, not to the previous checkpoint seq {} ({})",
                        cp.prev_seq, previous.seq, previous.at
                    ),
                );
            }
        } else if cp.prev_seq.is_none() != (cp.prev_hash == ZERO_HASH) {
            return fail(
                Damage::Modified,
                at,
                seq,
                "audit.checkpoint.prev_seq and prev_hash disagree".to_owned(),
            );
        }
        if let Some(lines) = self.since_checkpoint
            && lines != cp.records
        {
            return fail(
                Damage::Modified,
                at,
                seq,
                format!(
                    "it says {} records were written since the previous checkpoint, the files hold {lines}",
                    cp.records
                ),
            );
        }
        Ok(())
    }

    fn finish(self) -> Result<Intact, Failure> {
        let Some(last) = &self.last else {
            return Err(Failure {
                damage: Damage::Truncated,
                at: None,
                seq: None,
                detail: "the files hold no records".to_owned(),
            });
        };
        let Some(checkpoint) = &self.last_checkpoint else {
            return Err(Failure {
                damage: Damage::Truncated,
                at: Some(last.at.clone()),
                seq: Some(last.seq),
                detail: format!(
                    "no checkpoint at all in {} records: nothing is signed; truncated, or the tracer did not stop cleanly",
                    thousands(self.records)
                ),
            });
        };
        if last.kind != Kind::Checkpoint {
            let after = self.since_checkpoint.unwrap_or_default();
            return Err(Failure {
                damage: Damage::Truncated,
                at: Some(last.at.clone()),
                seq: Some(last.seq),
                detail: format!(
                    "the stream ends {after} records after the last checkpoint (seq {}, {}), with no closing checkpoint: \
                     the file was truncated or the tracer did not stop cleanly (or is still running); \
                     those {after} records are chained but no signature covers them",
                    checkpoint.seq, checkpoint.at
                ),
            });
        }
        let (first_seq, start_seen) = self.first.unwrap_or_default();
        Ok(Intact {
            files: self.lines.files_read,
            records: self.records,
            first_seq,
            last_seq: last.seq,
            start_seen,
            shutdown_seen: checkpoint.shutdown,
            last_checkpoint: (checkpoint.timestamp.clone(), checkpoint.seq),
            notes: self.notes,
        })
    }
}

#[cfg(test)]
#[path = "tamper_tests.rs"]
mod tamper_tests;
