//! A batch's part of the detection feed (`store::feed`): what its detections would have
//! met, in the order the writer met it, as bytes.
//!
//! An access record travels as its line, which the leader takes apart and enriches
//! again: the line is the record, and the leader's enrichment files are the fleet's.
//! Each message is a tag, then length-prefixed parts; a body is one or more zstd frames,
//! read back as one (the lines of a batch share most of their bytes).
use std::io::Read as _;

use anyhow::Context as _;

use super::{Found, parsed};
use crate::{
    enrich::Enricher,
    ingest::record,
    verify::{Event, Link},
};

const ACCESS: u8 = 1;
const EVENT: u8 = 2;
const HEARD: u8 = 3;
const SEEN: u8 = 4;
const GAPS_CLOSED: u8 = 5;

/// zstd's fastest level that still finds the lines' shared keys.
const LEVEL: i32 = 1;

/// What the leader reads back from a batch's feed.
pub(super) enum Fed {
    Found(Found),
    /// Every gap of the stream was filled in that batch.
    GapsClosed(String),
}

#[derive(Default)]
pub(super) struct Encoder {
    bytes: Vec<u8>,
}

impl Encoder {
    /// Adds what the detections meet of `found`. A retracted record is only taken
    /// back from the rollups, which the batch writes itself.
    pub fn found(&mut self, found: &Found) -> anyhow::Result<()> {
        match found {
            Found::Access {
                link, life, line, ..
            } => {
                let line = line
                    .as_deref()
                    .context("an access record for the detection feed came without its line")?;
                self.bytes.push(ACCESS);
                self.part(serde_json::to_string(link)?.as_bytes());
                self.bytes.push(match life {
                    None => 0,
                    Some(false) => 1,
                    Some(true) => 2,
                });
                self.part(line);
            }
            Found::Event(event, ts_ns) => {
                self.bytes.push(EVENT);
                self.bytes.extend_from_slice(&ts_ns.to_le_bytes());
                self.part(&serde_json::to_vec(event)?);
            }
            Found::Heard(stream, ts_ns) | Found::Seen(stream, ts_ns) => {
                let tag = if matches!(found, Found::Heard(..)) {
                    HEARD
                } else {
                    SEEN
                };
                self.bytes.push(tag);
                self.bytes.extend_from_slice(&ts_ns.to_le_bytes());
                self.part(stream.as_bytes());
            }
            Found::Retract(_) => {}
        }
        Ok(())
    }

    pub fn gaps_closed(&mut self, stream: &str) {
        self.bytes.push(GAPS_CLOSED);
        self.part(stream.as_bytes());
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    pub fn finish(self) -> anyhow::Result<Vec<u8>> {
        zstd::bulk::compress(&self.bytes, LEVEL).context("compressing the detection feed")
    }

    fn part(&mut self, bytes: &[u8]) {
        // Lines are at most 1 MiB, streams and events far less.
        self.bytes
            .extend_from_slice(&(bytes.len() as u32).to_le_bytes());
        self.bytes.extend_from_slice(bytes);
    }
}

/// Largest feed body taken apart: a batch of 50,000 lines of 1 MiB each cannot come
/// (NATS messages are at most a few MiB), so this bounds what a damaged row costs.
const MAX_DECODED: u64 = 4 << 30;

/// The messages of one batch's feed, in order. An access record whose line no longer
/// parses (written by another version) is left out and counted in the second value.
pub(super) fn decode(body: &[u8], enricher: &Enricher) -> anyhow::Result<(Vec<Fed>, usize)> {
    let mut bytes = Vec::new();
    zstd::stream::read::Decoder::new(body)
        .and_then(|d| d.take(MAX_DECODED + 1).read_to_end(&mut bytes))
        .context("decompressing the detection feed")?;
    anyhow::ensure!(
        bytes.len() as u64 <= MAX_DECODED,
        "a detection feed entry is too large"
    );
    let mut reader = Reader { bytes: &bytes };
    let mut fed = Vec::new();
    let mut unreadable = 0;
    while let Some(tag) = reader.byte() {
        match tag {
            ACCESS => {
                let link: Link = serde_json::from_slice(reader.part()?)?;
                let life = match reader.byte() {
                    Some(0) => None,
                    Some(1) => Some(false),
                    Some(2) => Some(true),
                    other => anyhow::bail!("detection feed: bad life byte {other:?}"),
                };
                let line = reader.part()?;
                match record::parse(line) {
                    Ok(fields) => fed.push(Fed::Found(Found::Access {
                        access: Box::new(parsed(fields, enricher)),
                        link,
                        life,
                        line: None,
                    })),
                    Err(_) => unreadable += 1,
                }
            }
            EVENT => {
                let ts_ns = reader.i64()?;
                let event: Event = serde_json::from_slice(reader.part()?)?;
                fed.push(Fed::Found(Found::Event(event, ts_ns)));
            }
            HEARD | SEEN => {
                let ts_ns = reader.i64()?;
                let stream = reader.text()?;
                fed.push(Fed::Found(if tag == HEARD {
                    Found::Heard(stream, ts_ns)
                } else {
                    Found::Seen(stream, ts_ns)
                }));
            }
            GAPS_CLOSED => fed.push(Fed::GapsClosed(reader.text()?)),
            other => anyhow::bail!("detection feed: unknown message tag {other}"),
        }
    }
    Ok((fed, unreadable))
}

struct Reader<'a> {
    bytes: &'a [u8],
}

impl<'a> Reader<'a> {
    fn byte(&mut self) -> Option<u8> {
        let (&first, rest) = self.bytes.split_first()?;
        self.bytes = rest;
        Some(first)
    }

    fn take(&mut self, n: usize) -> anyhow::Result<&'a [u8]> {
        anyhow::ensure!(self.bytes.len() >= n, "detection feed: cut short");
        let (taken, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Ok(taken)
    }

    fn i64(&mut self) -> anyhow::Result<i64> {
        Ok(i64::from_le_bytes(self.take(8)?.try_into()?))
    }

    fn part(&mut self) -> anyhow::Result<&'a [u8]> {
        let len = u32::from_le_bytes(self.take(4)?.try_into()?);
        self.take(len as usize)
    }

    fn text(&mut self) -> anyhow::Result<String> {
        Ok(String::from_utf8(self.part()?.to_vec())?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_comes_back_as_it_went() {
        let line = br#"{"timestamp":"2026-12-08T01:00:00Z","audit.kind":"access","audit.stream":"web-1","audit.seq":7,"user.id":"alice","http.response.status_code":401}"#;
        let enricher = Enricher::load(&crate::enrich::EnrichSettings::default()).unwrap();
        let fields = record::parse(line).expect("a record");
        let event = Event {
            stream: "web-1".to_owned(),
            seq: 9,
            kind: crate::verify::EventKind::Modified,
            detail: "changed".to_owned(),
        };
        let mut encoder = Encoder::default();
        for found in [
            Found::Access {
                access: Box::new(parsed(fields.clone(), &enricher)),
                link: Link::Broken,
                life: Some(true),
                line: Some(line.to_vec().into_boxed_slice()),
            },
            Found::Event(event.clone(), 5),
            Found::Heard("web-1".to_owned(), 6),
            Found::Seen("web-2".to_owned(), -7),
            Found::Retract(Box::new(parsed(fields.clone(), &enricher))),
        ] {
            encoder.found(&found).unwrap();
        }
        let mut body = encoder.finish().unwrap();
        let mut gaps = Encoder::default();
        gaps.gaps_closed("web-3");
        body.extend(gaps.finish().unwrap());
        let (fed, unreadable) = decode(&body, &enricher).unwrap();
        assert_eq!(unreadable, 0);
        assert_eq!(fed.len(), 5, "the retraction is not the detections'");
        let Fed::Found(Found::Access {
            access, link, life, ..
        }) = &fed[0]
        else {
            panic!("an access record first");
        };
        assert_eq!(
            (access.fields == fields, *link, *life),
            (true, Link::Broken, Some(true))
        );
        assert!(matches!(&fed[1], Fed::Found(Found::Event(e, 5)) if *e == event));
        assert!(matches!(&fed[2], Fed::Found(Found::Heard(s, 6)) if s == "web-1"));
        assert!(matches!(&fed[3], Fed::Found(Found::Seen(s, -7)) if s == "web-2"));
        assert!(matches!(&fed[4], Fed::GapsClosed(s) if s == "web-3"));
    }

    #[test]
    fn a_damaged_body_is_an_error_not_a_panic() {
        let enricher = Enricher::load(&crate::enrich::EnrichSettings::default()).unwrap();
        let mut encoder = Encoder::default();
        encoder.gaps_closed("web-3");
        let mut bytes = zstd::stream::decode_all(&encoder.finish().unwrap()[..]).unwrap();
        bytes.truncate(bytes.len() - 1);
        let cut = zstd::bulk::compress(&bytes, LEVEL).unwrap();
        assert!(decode(&cut, &enricher).is_err());
        assert!(decode(b"not zstd", &enricher).is_err());
        let unknown = zstd::bulk::compress(&[9u8], LEVEL).unwrap();
        assert!(decode(&unknown, &enricher).is_err());
    }
}
