//! Each kind of damage on a stream written by the real `Output`, tampered with the way
//! an attacker (or a crash) would. Over 400 lines: one test per kind of damage.
use std::{
    cell::RefCell,
    io,
    path::{Path, PathBuf},
    rc::Rc,
    time::Duration,
};

use base64::{Engine as _, engine::general_purpose::STANDARD as BASE64};

use tracer_audit::{
    Kind,
    chain::{HASH_SUFFIX_LEN, Hash, link_hash, parse_hex, to_hex},
    checkpoint::SIGNATURE_FIELD,
    key::{AuditKey, PublicKey},
    verify::*,
};

use crate::audit::{Output, SealedLines, Settings};

struct Capture(Rc<RefCell<Vec<u8>>>);

impl SealedLines for Capture {
    fn write_line(&mut self, line: &[u8]) -> io::Result<()> {
        self.0.borrow_mut().extend_from_slice(line);
        Ok(())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn rotation_due(&self) -> bool {
        false
    }
    fn rotate(&mut self) -> io::Result<()> {
        Ok(())
    }
    fn shutdown(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn settings(dir: &Path) -> Settings {
    Settings {
        stream: "test-host".parse().unwrap(),
        state_file: dir.join("audit.state"),
        key_file: dir.join("audit.key"),
        checkpoint_records: 5,
        checkpoint_interval: Duration::from_secs(60),
    }
}

/// One run of `records` access lines; `clean`: it ends with the shutdown checkpoint.
fn run(dir: &Path, first: usize, records: usize, clean: bool) -> Vec<Vec<u8>> {
    let captured = Rc::new(RefCell::new(Vec::new()));
    let sinks = Capture(Rc::clone(&captured));
    let mut output = Output::open(&settings(dir), sinks).unwrap();
    output.write_start().unwrap();
    for i in first..first + records {
        output
            .line()
            .extend_from_slice(format!(r#"{{"timestamp":"t","url.path":"/a{i}"}}"#).as_bytes());
        output.commit(Kind::Access).unwrap();
        output.end_batch().unwrap();
    }
    if clean {
        output.shutdown().unwrap();
    }
    let bytes = captured.borrow().clone();
    bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect()
}

fn key(dir: &Path) -> PublicKey {
    AuditKey::load(&dir.join("audit.key")).unwrap().public()
}

fn write(dir: &Path, name: &str, lines: &[Vec<u8>]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, lines.concat()).unwrap();
    path
}

fn check(dir: &Path, lines: &[Vec<u8>]) -> Result<Intact, Failure> {
    let path = write(dir, "out.jsonl", lines);
    verify(&[path], &key(dir), Expect::default()).unwrap()
}

fn failure(dir: &Path, lines: &[Vec<u8>]) -> Failure {
    match check(dir, lines) {
        Ok(intact) => panic!("verified: {intact}"),
        Err(f) => f,
    }
}

fn seq_of(line: &[u8]) -> u64 {
    serde_json::from_slice::<serde_json::Value>(line).unwrap()["audit.seq"]
        .as_u64()
        .unwrap()
}

fn hash_of(line: &[u8]) -> Hash {
    let v: serde_json::Value = serde_json::from_slice(line).unwrap();
    parse_hex(v["audit.hash"].as_str().unwrap()).unwrap()
}

/// What a forger who knows the scheme does: set prev_hash, re-sign (checkpoints, with
/// `signer`) and recompute the hash.
fn reseal(line: &[u8], prev: &Hash, signer: Option<&AuditKey>) -> Vec<u8> {
    let text = std::str::from_utf8(line).unwrap().trim_end();
    let body_end = text.len() - (HASH_SUFFIX_LEN - 1);
    let mut body = text[..body_end].to_owned();
    let field = "\"audit.prev_hash\":\"";
    let at = body.find(field).unwrap() + field.len();
    body.replace_range(at..at + 64, &to_hex(prev));
    if let Some(signer) = signer {
        let sig_at = body
            .rfind(std::str::from_utf8(SIGNATURE_FIELD).unwrap())
            .unwrap();
        let signature = BASE64.encode(signer.sign(&body.as_bytes()[..sig_at]));
        body = format!("{},\"audit.signature\":\"{signature}\"", &body[..sig_at]);
    }
    let hash = link_hash(prev, body.as_bytes());
    format!("{body},\"audit.hash\":\"{}\"}}\n", to_hex(&hash)).into_bytes()
}

/// Reseals `lines[from..]` so that the chain is whole again after an edit at `from`.
fn rechain(lines: &mut [Vec<u8>], from: usize) {
    for i in from..lines.len() {
        let prev = hash_of(&lines[i - 1]);
        lines[i] = reseal(&lines[i], &prev, None);
    }
}

#[test]
fn an_untouched_stream_verifies() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 12, true);
    // start, 12 access, a checkpoint after every 5 lines, the shutdown checkpoint.
    assert_eq!(lines.len(), 1 + 12 + 2 + 1);
    let intact = check(dir.path(), &lines).unwrap();
    assert_eq!(intact.records, 16);
    assert_eq!(intact.last_checkpoint.1, 16);
    let text = intact.to_string();
    assert!(
        text.starts_with("1 file, 16 records, seq 1..16, chain intact, last checkpoint "),
        "{text}"
    );
    assert!(
        text.contains("(seq 16)\nstart: the stream's first record"),
        "{text}"
    );
    assert!(
        text.ends_with("end: the tracer's shutdown checkpoint is the last record"),
        "{text}"
    );
}

#[test]
fn a_changed_field_is_modified() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = run(dir.path(), 0, 12, true);
    lines[3] = String::from_utf8(lines[3].clone())
        .unwrap()
        .replace("/a2", "/b2")
        .into_bytes();
    let f = failure(dir.path(), &lines);
    assert_eq!((f.damage, f.seq), (Damage::Modified, Some(4)), "{f}");
    assert_eq!(f.at.as_ref().unwrap().line, 4);
}

#[test]
fn an_altered_and_rehashed_record_is_modified() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = run(dir.path(), 0, 3, true);
    let edited = String::from_utf8(lines[2].clone())
        .unwrap()
        .replace("/a1", "/b1");
    lines[2] = reseal(edited.as_bytes(), &hash_of(&lines[1]), None);
    let f = failure(dir.path(), &lines);
    assert_eq!((f.damage, f.seq), (Damage::Modified, Some(3)), "{f}");
}

#[test]
fn a_missing_line_is_deleted() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = run(dir.path(), 0, 12, true);
    lines.remove(4);
    let f = failure(dir.path(), &lines);
    assert_eq!((f.damage, f.seq), (Damage::Deleted, Some(6)), "{f}");
    assert!(f.detail.contains("seq 5 is missing"), "{f}");
    assert_eq!(f.at.as_ref().unwrap().line, 5);
}

#[test]
fn copies_and_forgeries_are_inserted() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 12, true);
    // A copy of an earlier line.
    let mut copied = lines.clone();
    copied.insert(6, lines[2].clone());
    let f = failure(dir.path(), &copied);
    assert_eq!((f.damage, f.seq), (Damage::Inserted, Some(3)), "{f}");
    assert_eq!(f.at.as_ref().unwrap().line, 7);
    // A forged record with a made-up hash.
    let mut forged = lines.clone();
    let fake = String::from_utf8(lines[3].clone())
        .unwrap()
        .replace("/a2", "/admin");
    forged.insert(4, fake.into_bytes());
    let f = failure(dir.path(), &forged);
    assert_eq!(f.damage, Damage::Inserted, "{f}");
    assert_eq!(f.at.as_ref().unwrap().line, 5);
    // A forgery that is hashed correctly and claims the next seq.
    let mut rehashed = lines.clone();
    let fake = String::from_utf8(lines[4].clone())
        .unwrap()
        .replace("/a3", "/admin");
    rehashed.insert(4, reseal(fake.as_bytes(), &hash_of(&lines[3]), None));
    let f = failure(dir.path(), &rehashed);
    assert_eq!((f.damage, f.seq), (Damage::Inserted, Some(5)), "{f}");
    assert_eq!(
        f.at.as_ref().unwrap().line,
        5,
        "the forged line, not the genuine one"
    );
}

#[test]
fn swapped_lines_are_reordered() {
    let dir = tempfile::tempdir().unwrap();
    let mut lines = run(dir.path(), 0, 12, true);
    lines.swap(7, 8);
    let f = failure(dir.path(), &lines);
    assert_eq!((f.damage, f.seq), (Damage::Reordered, Some(9)), "{f}");
    assert_eq!(f.at.as_ref().unwrap().line, 8);
}

#[test]
fn a_cut_file_or_a_missing_end_is_truncated() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 12, true);
    let mut cut = lines[..10].to_vec();
    let half = cut[9].len() / 2;
    cut[9].truncate(half);
    let f = failure(dir.path(), &cut);
    assert_eq!(
        (f.damage, f.at.as_ref().unwrap().line),
        (Damage::Truncated, 10),
        "{f}"
    );

    let tail_dropped = &lines[..10];
    let f = failure(dir.path(), tail_dropped);
    assert_eq!((f.damage, f.seq), (Damage::Truncated, Some(10)), "{f}");
    assert!(
        f.detail
            .contains("ends 4 records after the last checkpoint (seq 6"),
        "{f}"
    );
}

#[test]
fn resigned_or_altered_checkpoints_are_signature_mismatches() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 12, true);
    let other = AuditKey::load_or_create(&dir.path().join("other.key")).unwrap();
    // The closing checkpoint re-signed with another key, chain hash recomputed.
    let mut resigned = lines.clone();
    let last = resigned.len() - 1;
    resigned[last] = reseal(&lines[last], &hash_of(&lines[last - 1]), Some(&other));
    let f = failure(dir.path(), &resigned);
    assert_eq!(
        (f.damage, f.seq),
        (Damage::SignatureMismatch, Some(16)),
        "{f}"
    );
    // A checkpoint's timestamp changed and the chain after it recomputed.
    let mut altered = lines.clone();
    let checkpoint = 5;
    assert!(String::from_utf8_lossy(&altered[checkpoint]).contains("\"checkpoint\""));
    let text = String::from_utf8(altered[checkpoint].clone()).unwrap();
    let t = text.find("\"timestamp\":\"").unwrap() + 13;
    let changed = format!("{}1999{}", &text[..t], &text[t + 4..]);
    altered[checkpoint] = changed.into_bytes();
    rechain(&mut altered, checkpoint);
    let f = failure(dir.path(), &altered);
    assert_eq!(
        (f.damage, f.seq),
        (Damage::SignatureMismatch, Some(6)),
        "{f}"
    );
    // The right key, but a different one is given.
    let path = write(dir.path(), "out.jsonl", &lines);
    let f = verify(&[path], &other.public(), Expect::default())
        .unwrap()
        .unwrap_err();
    assert_eq!(f.damage, Damage::SignatureMismatch, "{f}");
    assert!(f.detail.contains("not the given key"), "{f}");
}

#[test]
fn a_clean_restart_continues_the_chain_across_files() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 0, 3, true);
    let second = run(dir.path(), 3, 3, true);
    assert_eq!(seq_of(&second[0]), seq_of(first.last().unwrap()) + 1);
    let a = write(dir.path(), "a.jsonl", &first);
    let b = write(dir.path(), "b.jsonl", &second);
    let intact = verify(&[a.clone(), b.clone()], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap();
    assert_eq!((intact.files, intact.notes.len()), (2, 0), "{intact}");
    // Out of order, the first file's new chain starts after the second's end.
    let f = verify(&[b, a], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap_err();
    assert_eq!(f.damage, Damage::Reset, "{f}");
}

#[test]
fn an_unclean_stop_is_a_declared_restart_gap() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 0, 3, false);
    let second = run(dir.path(), 3, 3, true);
    let start = serde_json::from_slice::<serde_json::Value>(&second[0]).unwrap();
    assert_eq!(start["audit.start.reason"], "unclean_stop");
    assert!(seq_of(&second[0]) > seq_of(first.last().unwrap()) + 1);
    let a = write(dir.path(), "a.jsonl", &first);
    let b = write(dir.path(), "b.jsonl", &second);
    let intact = verify(&[a.clone(), b], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap();
    assert_eq!(intact.notes.len(), 1, "{intact}");
    assert!(intact.notes[0].contains("unclean stop"), "{intact}");
    // The first file alone ends without a closing checkpoint.
    let f = verify(&[a], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap_err();
    assert_eq!(f.damage, Damage::Truncated, "{f}");
}

#[test]
fn compressed_files_verify() {
    use std::io::Write as _;
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 7, true);
    let (head, tail) = lines.split_at(4);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    gz.write_all(&head.concat()).unwrap();
    let gz_path = dir.path().join("1.jsonl.gz");
    std::fs::write(&gz_path, gz.finish().unwrap()).unwrap();
    let zst_path = dir.path().join("2.jsonl.zst");
    std::fs::write(&zst_path, zstd::encode_all(&tail.concat()[..], 3).unwrap()).unwrap();
    let intact = verify(&[gz_path, zst_path], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap();
    assert_eq!(intact.records, lines.len() as u64);
}

#[test]
fn a_run_that_wrote_nothing_before_crashing_keeps_the_link() {
    let dir = tempfile::tempdir().unwrap();
    let first = run(dir.path(), 0, 2, false);
    // Opened (state saved) but crashed before its start line.
    drop(Output::open(&settings(dir.path()), Capture(Rc::default())).unwrap());
    let third = run(dir.path(), 2, 2, true);
    let a = write(dir.path(), "a.jsonl", &first);
    let c = write(dir.path(), "c.jsonl", &third);
    let intact = verify(&[a, c], &key(dir.path()), Expect::default())
        .unwrap()
        .unwrap();
    assert_eq!(intact.notes.len(), 1, "{intact}");
}

/// A slice between two checkpoints verifies, and says it is a slice; the auditor's
/// expectations turn a cut head or tail into a failure.
#[test]
fn slices_say_what_they_prove_and_expectations_catch_cuts() {
    let dir = tempfile::tempdir().unwrap();
    let lines = run(dir.path(), 0, 12, true);
    let key = key(dir.path());
    let seqs = |intact: &Intact| (intact.first_seq, intact.last_seq);

    let whole = write(dir.path(), "whole.jsonl", &lines);
    let last = seq_of(lines.last().unwrap());
    let expect_all = Expect {
        start: true,
        end_seq: Some(last),
    };
    let intact = verify(std::slice::from_ref(&whole), &key, expect_all)
        .unwrap()
        .unwrap();
    assert!(intact.start_seen && intact.shutdown_seen, "{intact}");
    assert_eq!(seqs(&intact), (1, last));

    // Lines 7..=13 run from after the first checkpoint (seq 7) to the second (seq 13).
    let checkpoints: Vec<usize> = lines
        .iter()
        .enumerate()
        .filter(|(_, l)| std::str::from_utf8(l).unwrap().contains("\"checkpoint\""))
        .map(|(i, _)| i)
        .collect();
    let middle = write(
        dir.path(),
        "middle.jsonl",
        &lines[checkpoints[0] + 1..=checkpoints[1]],
    );
    let intact = verify(std::slice::from_ref(&middle), &key, Expect::default())
        .unwrap()
        .unwrap();
    assert!(!intact.start_seen && !intact.shutdown_seen, "{intact}");
    let text = intact.to_string();
    assert!(text.contains("start: NOT seen"), "{text}");
    assert!(text.contains("end: NOT a shutdown checkpoint"), "{text}");

    let head_cut = verify(
        std::slice::from_ref(&middle),
        &key,
        Expect {
            start: true,
            end_seq: None,
        },
    )
    .unwrap()
    .unwrap_err();
    assert_eq!(head_cut.damage, Damage::Truncated);
    assert!(head_cut.detail.contains("head was cut off"), "{head_cut}");

    let tail_cut = write(dir.path(), "tail.jsonl", &lines[..=checkpoints[1]]);
    let failure = verify(&[tail_cut], &key, expect_all).unwrap().unwrap_err();
    assert_eq!(failure.damage, Damage::Truncated);
    assert!(failure.detail.contains("cut off the end"), "{failure}");
}

#[test]
fn heartbeat_checkpoints_of_an_idle_sensor_verify() {
    let dir = tempfile::tempdir().unwrap();
    let captured = Rc::new(RefCell::new(Vec::new()));
    let mut output = Output::open(&settings(dir.path()), Capture(Rc::clone(&captured))).unwrap();
    output.write_start().unwrap();
    output
        .line()
        .extend_from_slice(br#"{"timestamp":"t","url.path":"/a"}"#);
    output.commit(Kind::Access).unwrap();
    output.periodic_checkpoint().unwrap();
    // Idle: two heartbeats in a row, each committing to the one before.
    for _ in 0..2 {
        output.heartbeat_due();
        output.periodic_checkpoint().unwrap();
    }
    output.shutdown().unwrap();
    let bytes = captured.borrow().clone();
    let lines: Vec<Vec<u8>> = bytes
        .split_inclusive(|&b| b == b'\n')
        .map(<[u8]>::to_vec)
        .collect();
    assert_eq!(
        output.counts().checkpoint,
        4,
        "interval, 2 heartbeats, shutdown"
    );
    let intact = check(dir.path(), &lines).unwrap();
    assert_eq!(intact.last_seq, 6, "{intact}");
}
