//! Whatever is done to a signed stream's file, `verify` does not panic, and, told
//! where the stream starts and ends (as the hub or NATS tells an auditor), it does not
//! call a changed file intact.
use proptest::prelude::*;

use super::{Expect, verify};
use crate::testing::{signed_stream, tamper};

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn a_changed_file_is_never_intact(tampers in proptest::collection::vec(tamper(), 1..8)) {
        let dir = tempfile::tempdir().unwrap();
        let (original, key) = signed_stream(dir.path(), "web1");
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
