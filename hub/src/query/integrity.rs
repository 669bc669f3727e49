//! Per stream (host): how much of its chain is stored and proven, and every break,
//! gap, restart and sensor loss; plus the lines that could not be stored at all.
use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use crate::{
    store::db::{Db, args},
    verify::StreamState,
    when::format_ns,
};

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
    /// Lines refused as conflicts and kept byte for byte (`tracer-hub conflicts`).
    #[serde(default)]
    pub conflicts_kept: u64,
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

/// The first `limit` kept conflicting lines, of one stream or all, by stream and seq.
pub fn conflict_lines(
    conn: &mut Db,
    stream: Option<&str>,
    limit: u64,
) -> anyhow::Result<Vec<Vec<u8>>> {
    let limit = limit.min(i64::MAX as u64) as i64;
    let rows = match stream {
        Some(stream) => conn.query(
            "SELECT line FROM conflicts WHERE stream = ?1 ORDER BY seq, ts, hash LIMIT ?2",
            args![stream, limit],
        )?,
        None => conn.query(
            "SELECT line FROM conflicts ORDER BY stream, seq, ts, hash LIMIT ?1",
            args![limit],
        )?,
    };
    rows.iter().map(|r| r.get(0)).collect()
}

/// Findings listed per stream and kind; the rest are counted in the detail of the last.
const MAX_FINDINGS: usize = 100;

/// Each of the per-stream tables is read once for every stream, not once per stream:
/// anyone who can publish to the stream can name thousands of stream ids, and three
/// statements each made the report of 20,000 streams take 60,000.
pub fn integrity(conn: &mut Db) -> anyhow::Result<Integrity> {
    let states = conn.query("SELECT stream, state FROM streams ORDER BY stream", args![])?;
    let mut findings: HashMap<String, (Vec<Finding>, Vec<Finding>)> = HashMap::new();
    for r in conn.query(
        "SELECT stream, seq, kind, detail, is_break FROM events
         WHERE kind <> 'loss' ORDER BY stream, seq, id",
        args![],
    )? {
        let (breaks, notes) = findings.entry(r.get(0)?).or_default();
        let is_break: bool = r.get(4)?;
        let list = if is_break { breaks } else { notes };
        if list.len() < MAX_FINDINGS {
            list.push(Finding {
                seq: r.get(1)?,
                kind: r.get(2)?,
                detail: r.get(3)?,
            });
        }
    }
    let mut losses: HashMap<String, Vec<LossTotal>> = HashMap::new();
    for r in conn.query(
        "SELECT stream, source, reason, CAST(sum(count) AS BIGINT) FROM losses
         GROUP BY stream, source, reason ORDER BY stream, source, reason",
        args![],
    )? {
        losses.entry(r.get(0)?).or_default().push(LossTotal {
            source: r.get(1)?,
            reason: r.get(2)?,
            count: r.get(3)?,
        });
    }
    let conflicts: HashMap<String, u64> = conn
        .query(
            "SELECT stream, count(*) FROM conflicts GROUP BY stream",
            args![],
        )?
        .iter()
        .map(|r| Ok((r.get(0)?, r.get(1)?)))
        .collect::<anyhow::Result<_>>()?;
    let mut streams = Vec::new();
    for row in states {
        let stream: String = row.get(0)?;
        let state: StreamState = serde_json::from_str(&row.get::<String>(1)?)?;
        let (mut breaks, mut notes) = findings.remove(&stream).unwrap_or_default();
        for (from, to) in state.gaps.itemised() {
            breaks.push(Finding {
                seq: from,
                kind: "gap".to_owned(),
                detail: format!(
                    "seqs {from}..{to} ({} lines) were not received",
                    to - from + 1
                ),
            });
        }
        if let Some((from, missing)) = state.gaps.beyond() {
            let how_many =
                missing.map_or_else(|| "more seqs".to_owned(), |m| format!("{m} more seq(s)"));
            breaks.push(Finding {
                seq: from,
                kind: "gap".to_owned(),
                detail: format!(
                    "{how_many} from seq {from} on were not received, in more gaps than the hub itemises"
                ),
            });
        }
        if let Some(seq) = state.pending_proof {
            notes.push(Finding {
                seq,
                kind: "pending".to_owned(),
                detail: format!(
                    "the checkpoint at seq {seq} verified; it proves the lines before it once the gaps it came after are filled"
                ),
            });
        }
        breaks.sort_by_key(|f| f.seq);
        breaks.truncate(MAX_FINDINGS);
        let losses = losses.remove(&stream).unwrap_or_default();
        streams.push(StreamIntegrity {
            conflicts_kept: conflicts.get(&stream).copied().unwrap_or(0),
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
    let reject_reasons = conn
        .query(
            "SELECT reason, count(*) FROM rejects GROUP BY reason ORDER BY count(*) DESC, reason LIMIT 20",
            args![],
        )?
        .iter()
        .map(|r| {
            Ok(Reason {
                reason: r.get(0)?,
                count: r.get(1)?,
            })
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    let rejected: u64 = conn
        .query_row("SELECT count(*) FROM rejects", args![])?
        .get(0)?;
    Ok(Integrity {
        streams,
        rejected,
        reject_reasons,
    })
}
