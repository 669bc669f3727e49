//! One sealed line, taken apart: its audit fields, whether its hash matches its bytes,
//! and for checkpoints whether the signature verifies with the given key.
use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};
use serde::Deserialize;

use crate::{
    chain::{HASH_FIELD, HASH_SUFFIX_LEN, Hash, Kind, MAX_SEQ, link_hash, parse_hex},
    checkpoint::SIGNATURE_FIELD,
    key::PublicKey,
};

#[derive(Clone, Debug)]
pub struct Sealed {
    pub kind: Kind,
    pub stream: String,
    pub seq: u64,
    pub prev_hash: Hash,
    pub hash: Hash,
    /// `audit.hash` is the hash of the line's canonical bytes and `audit.prev_hash`.
    pub content_ok: bool,
    pub timestamp: Option<String>,
    pub checkpoint: Option<CheckpointFields>,
    pub start: Option<StartFields>,
}

#[derive(Clone, Debug)]
pub struct CheckpointFields {
    pub head_seq: u64,
    pub head_hash: Hash,
    pub records: u64,
    pub prev_seq: Option<u64>,
    pub prev_hash: Hash,
    pub fingerprint: String,
    /// Whether the signature verifies with the stream's key; `None` without a key.
    pub signature_ok: Option<bool>,
    /// `shutdown` for the last line of a clean stop; `records`, `interval`, `rotation`.
    pub reason: Option<String>,
}

#[derive(Clone, Debug)]
pub struct StartFields {
    pub reason: String,
    pub previous_seq: Option<u64>,
    pub skipped_seqs: Option<u64>,
}

/// The fields verify reads; any other field is covered by the hash only. A repeated
/// key is an error (serde refuses duplicate fields), so a line cannot say two things.
#[derive(Deserialize)]
struct Fields {
    timestamp: Option<String>,
    #[serde(rename = "audit.kind")]
    kind: String,
    #[serde(rename = "audit.stream")]
    stream: String,
    #[serde(rename = "audit.seq")]
    seq: u64,
    #[serde(rename = "audit.prev_hash")]
    prev_hash: String,
    #[serde(rename = "audit.hash")]
    hash: String,
    #[serde(rename = "audit.signature")]
    signature: Option<String>,
    #[serde(rename = "audit.checkpoint.head_seq")]
    head_seq: Option<u64>,
    #[serde(rename = "audit.checkpoint.head_hash")]
    head_hash: Option<String>,
    #[serde(rename = "audit.checkpoint.records")]
    records: Option<u64>,
    #[serde(rename = "audit.checkpoint.reason")]
    checkpoint_reason: Option<String>,
    #[serde(rename = "audit.checkpoint.prev_seq")]
    checkpoint_prev_seq: Option<u64>,
    #[serde(rename = "audit.checkpoint.prev_hash")]
    checkpoint_prev_hash: Option<String>,
    #[serde(rename = "audit.key.fingerprint")]
    fingerprint: Option<String>,
    #[serde(rename = "audit.start.reason")]
    start_reason: Option<String>,
    #[serde(rename = "audit.start.previous_seq")]
    previous_seq: Option<u64>,
    #[serde(rename = "audit.start.skipped_seqs")]
    skipped_seqs: Option<u64>,
}

/// Takes `line` (without its newline) apart; `Err` says why it is not a sealed line.
/// Without `key` a checkpoint's signature is left unchecked.
pub fn parse(line: &[u8], key: Option<&PublicKey>) -> Result<Sealed, String> {
    let suffix = HASH_SUFFIX_LEN - 1;
    if line.len() < suffix || !line.ends_with(b"\"}") {
        return Err("not a sealed record (no audit.hash at its end)".to_owned());
    }
    let canonical = &line[..line.len() - suffix];
    if !line[canonical.len()..].starts_with(HASH_FIELD) {
        return Err("not a sealed record (audit.hash is not its last field)".to_owned());
    }
    let fields: Fields =
        serde_json::from_slice(line).map_err(|e| format!("not a sealed record ({e})"))?;
    if !(1..=MAX_SEQ).contains(&fields.seq) {
        return Err(format!(
            "not a sealed record (audit.seq is outside 1..={MAX_SEQ})"
        ));
    }
    for (name, seq) in [
        ("audit.checkpoint.head_seq", fields.head_seq),
        ("audit.checkpoint.prev_seq", fields.checkpoint_prev_seq),
        ("audit.start.previous_seq", fields.previous_seq),
        ("audit.start.skipped_seqs", fields.skipped_seqs),
    ] {
        if seq.is_some_and(|seq| seq > MAX_SEQ) {
            return Err(format!("not a sealed record ({name} is above {MAX_SEQ})"));
        }
    }
    let hash_of = |name: &str, text: &str| {
        parse_hex(text).ok_or_else(|| format!("{name} {text:?} is not a 64-digit hex hash"))
    };
    let kind =
        Kind::parse(&fields.kind).ok_or_else(|| format!("unknown audit.kind {:?}", fields.kind))?;
    let prev_hash = hash_of("audit.prev_hash", &fields.prev_hash)?;
    let hash = hash_of("audit.hash", &fields.hash)?;
    let content_ok = link_hash(&prev_hash, canonical) == hash;
    let checkpoint = match kind {
        Kind::Checkpoint => Some(checkpoint_fields(&fields, canonical, key)?),
        _ => None,
    };
    let start = fields.start_reason.clone().map(|reason| StartFields {
        reason,
        previous_seq: fields.previous_seq,
        skipped_seqs: fields.skipped_seqs,
    });
    if kind == Kind::Start && start.is_none() {
        return Err("a start record without audit.start.reason".to_owned());
    }
    Ok(Sealed {
        kind,
        stream: fields.stream,
        seq: fields.seq,
        prev_hash,
        hash,
        content_ok,
        timestamp: fields.timestamp,
        checkpoint,
        start,
    })
}

fn checkpoint_fields(
    fields: &Fields,
    canonical: &[u8],
    key: Option<&PublicKey>,
) -> Result<CheckpointFields, String> {
    let missing = |name: &str| format!("a checkpoint without {name}");
    let signed_len = canonical
        .windows(SIGNATURE_FIELD.len())
        .rposition(|w| w == SIGNATURE_FIELD)
        .ok_or_else(|| missing("audit.signature"))?;
    let signature = fields
        .signature
        .as_deref()
        .ok_or_else(|| missing("audit.signature"))?;
    let signature_ok = key.map(|key| {
        BASE64
            .decode(signature)
            .is_ok_and(|sig| key.verifies(&canonical[..signed_len], &sig))
    });
    let hash = |name: &str, value: &Option<String>| {
        value
            .as_deref()
            .and_then(parse_hex)
            .ok_or_else(|| missing(name))
    };
    Ok(CheckpointFields {
        head_seq: fields
            .head_seq
            .ok_or_else(|| missing("audit.checkpoint.head_seq"))?,
        head_hash: hash("audit.checkpoint.head_hash", &fields.head_hash)?,
        records: fields
            .records
            .ok_or_else(|| missing("audit.checkpoint.records"))?,
        prev_seq: fields.checkpoint_prev_seq,
        prev_hash: hash("audit.checkpoint.prev_hash", &fields.checkpoint_prev_hash)?,
        fingerprint: fields.fingerprint.clone().unwrap_or_default(),
        signature_ok,
        reason: fields.checkpoint_reason.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{StreamId, chain::Chain};

    fn sealed_at(seq: u64) -> Vec<u8> {
        let mut chain = Chain::new("web1".parse::<StreamId>().unwrap(), seq, [0; 32]);
        let mut line = br#"{"timestamp":"2026-12-03T02:00:00Z"}"#.to_vec();
        chain.seal(&mut line, Kind::Access);
        line.pop();
        line
    }

    #[test]
    fn seqs_outside_the_bound_are_not_sealed_lines() {
        let top = parse(&sealed_at(MAX_SEQ), None).unwrap();
        assert_eq!((top.seq, top.content_ok), (MAX_SEQ, true));
        let past = parse(&sealed_at(MAX_SEQ + 1), None).unwrap_err();
        assert!(past.contains("audit.seq is outside"), "{past}");
        let text = String::from_utf8(sealed_at(1)).unwrap();
        let zero = parse(
            text.replace("\"audit.seq\":1,", "\"audit.seq\":0,")
                .as_bytes(),
            None,
        )
        .unwrap_err();
        assert!(zero.contains("audit.seq is outside"), "{zero}");
    }
}
