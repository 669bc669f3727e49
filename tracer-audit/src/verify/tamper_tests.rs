//! Whatever is done to a signed stream's file, `verify` does not panic, and, told
//! where the stream starts and ends (as the hub or NATS tells an auditor), it does not
//! call a changed file intact.
use std::path::Path;

use proptest::prelude::*;

use super::{Expect, verify};
use crate::{
    Kind, StreamId,
    chain::{Chain, ZERO_HASH},
    checkpoint::{Checkpointer, Reason},
    key::AuditKey,
    start::{Start, write_record},
    testing::tamper,
};

/// A stream from its start: a start line, 12 access lines with a signed checkpoint
/// after every fourth. Each line ends with its newline.
fn stream(dir: &Path) -> (Vec<Vec<u8>>, AuditKey) {
    let key = AuditKey::load_or_create(&dir.join("audit.key")).unwrap();
    let mut checkpointer = Checkpointer::new(
        AuditKey::load_or_create(&dir.join("audit.key")).unwrap(),
        None,
    );
    let mut chain = Chain::new("web1".parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut start).unwrap();
    chain.seal(&mut start, Kind::Start);
    let mut lines = vec![start];
    for i in 0..12 {
        let mut line = format!(
            r#"{{"timestamp":"2026-12-03T02:00:{i:02}Z","url.path":"/x/{i}","user.name":"mallory"}}"#
        )
        .into_bytes();
        chain.seal(&mut line, Kind::Access);
        lines.push(line);
        if i % 4 == 3 {
            let mut line = Vec::new();
            checkpointer
                .write(
                    &mut chain,
                    Reason::Interval,
                    // The first counts the start line too.
                    if i == 3 { 5 } else { 4 },
                    "2026-12-03T02:01:00Z",
                    &mut line,
                )
                .unwrap();
            lines.push(line);
        }
    }
    (lines, key)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_changed_file_is_never_intact(tampers in proptest::collection::vec(tamper(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let (original, key) = stream(dir.path());
        let mut lines = original.clone();
        for t in &tampers {
            t.apply(&mut lines);
        }
        let file = dir.path().join("access.jsonl");
        std::fs::write(&file, lines.concat()).unwrap();
        let expect = Expect { start: true, end_seq: Some(original.len() as u64) };
        let verdict = verify(&[file], &key.public(), expect).unwrap();
        if lines.concat() != original.concat() {
            prop_assert!(verdict.is_err(), "{tampers:?} verified intact: {verdict:?}");
        } else {
            prop_assert!(verdict.is_ok(), "{verdict:?}");
        }
    }
}
