//! Per stream (host): how much of its chain is stored and proven, and every break,
//! gap, restart and sensor loss; plus the lines that could not be stored at all.
use rusqlite::{Connection, params};
use serde::{Deserialize, Serialize};

use crate::{verify::StreamState, when::format_ns};

#[derive(Debug, Serialize, Deserialize)]
pub struct Integrity {
    pub streams: Vec<StreamIntegrity>,
    /// Lines that were not records: not JSON, missing keys, wrong types, too long.
    pub rejected: u64,
    pub reject_reasons: Vec<Reason>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Reason {
    pub reason: String,
    pub count: u64,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct StreamIntegrity {
    pub stream: String,
    pub records: u64,
    /// Seqs below `last_seq` not received.
    pub missing: u64,
    pub first_seq: u64,
    pub last_seq: u64,
    pub start_seen: bool,
    pub verified_through: Option<u64>,
    pub last_seen: String,
    pub last_checkpoint: Option<CheckpointMark>,
    /// The fingerprint of the key the last checkpoint names.
    pub key: Option<String>,
    /// Damage: modified, gap (still open), conflict, reset, signature, unsealed.
    pub breaks: Vec<Finding>,
    /// Restarts and checkpoints that could not be checked (no key).
    pub notes: Vec<Finding>,
    pub losses: Vec<LossTotal>,
    /// What retention deleted: those lines are gone by policy, not by damage.
    pub expired: Option<ExpiredLines>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct ExpiredLines {
    pub lines: u64,
    pub through_seq: u64,
    /// Lines older than this were deleted.
    pub before: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct CheckpointMark {
    pub seq: u64,
    pub ts: Option<String>,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct Finding {
    pub seq: u64,
    pub kind: String,
    pub detail: String,
}

#[derive(Debug, Serialize, Deserialize)]
pub struct LossTotal {
    pub source: String,
    pub reason: String,
    pub count: u64,
}

/// Findings listed per stream and kind; the rest are counted in the detail of the last.
const MAX_FINDINGS: usize = 100;

pub fn integrity(conn: &Connection) -> anyhow::Result<Integrity> {
    let mut states = conn.prepare("SELECT stream, state FROM streams ORDER BY stream")?;
    let states = states
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<Result<Vec<_>, _>>()?;
    let mut events = conn.prepare(
        "SELECT seq, kind, detail, is_break FROM events WHERE stream = ?1 ORDER BY seq, id",
    )?;
    let mut losses = conn.prepare(
        "SELECT source, reason, sum(count) FROM losses WHERE stream = ?1 GROUP BY source, reason ORDER BY source, reason",
    )?;
    let mut streams = Vec::new();
    for (stream, state) in states {
        let state: StreamState = serde_json::from_str(&state)?;
        let mut breaks = Vec::new();
        let mut notes = Vec::new();
        let rows = events.query_map([&stream], |r| {
            Ok((
                Finding {
                    seq: r.get::<_, i64>(0)? as u64,
                    kind: r.get(1)?,
                    detail: r.get(2)?,
                },
                r.get::<_, bool>(3)?,
            ))
        })?;
        for row in rows {
            let (finding, is_break) = row?;
            let list = if is_break { &mut breaks } else { &mut notes };
            if finding.kind != "loss" && list.len() < MAX_FINDINGS {
                list.push(finding);
            }
        }
        for &(from, to) in &state.gaps {
            breaks.push(Finding {
                seq: from,
                kind: "gap".to_owned(),
                detail: format!(
                    "seqs {from}..{to} ({} lines) were not received",
                    to - from + 1
                ),
            });
        }
        if state.gaps_truncated {
            breaks.push(Finding {
                seq: state.last_seq,
                kind: "gap".to_owned(),
                detail: "more gaps than the hub itemises; later ones are not listed".to_owned(),
            });
        }
        breaks.sort_by_key(|f| f.seq);
        breaks.truncate(MAX_FINDINGS);
        let losses = losses
            .query_map([&stream], |r| {
                Ok(LossTotal {
                    source: r.get(0)?,
                    reason: r.get(1)?,
                    count: r.get::<_, i64>(2)? as u64,
                })
            })?
            .collect::<Result<Vec<_>, _>>()?;
        streams.push(StreamIntegrity {
            stream,
            records: state.records,
            missing: state.missing(),
            first_seq: state.first_seq,
            last_seq: state.last_seq,
            start_seen: state.start_seen,
            verified_through: state.verified_through,
            last_seen: format_ns(state.last_seen_ns),
            last_checkpoint: state.last_checkpoint.map(|seq| CheckpointMark {
                seq,
                ts: state.last_checkpoint_ns.map(format_ns),
            }),
            key: state.key.clone(),
            breaks,
            notes,
            losses,
            expired: state.expired.map(|e| ExpiredLines {
                lines: e.lines,
                through_seq: e.through_seq,
                before: format_ns(e.before_ns),
            }),
        });
    }
    let mut reasons = conn.prepare(
        "SELECT reason, count(*) FROM rejects GROUP BY reason ORDER BY count(*) DESC LIMIT 20",
    )?;
    let reject_reasons = reasons
        .query_map(params![], |r| {
            Ok(Reason {
                reason: r.get(0)?,
                count: r.get::<_, i64>(1)? as u64,
            })
        })?
        .collect::<Result<Vec<_>, _>>()?;
    let rejected: i64 = conn.query_row("SELECT count(*) FROM rejects", [], |r| r.get(0))?;
    Ok(Integrity {
        streams,
        rejected: rejected as u64,
        reject_reasons,
    })
}
