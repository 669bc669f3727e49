use std::{fs, io::Read as _, num::NonZeroU32, os::unix::fs::MetadataExt as _, path::Path};

use super::*;

fn line(i: usize) -> Vec<u8> {
    format!("{{\"n\":{i},\"pad\":\"{}\"}}\n", "x".repeat(100)).into_bytes()
}

/// The file names in `dir`, sorted.
pub(super) fn names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

/// Every line of every file of `live` (rotated ones first), decompressed.
fn all_lines(live: &Path) -> Vec<String> {
    let mut text = String::new();
    for rotated in naming::list(live).unwrap() {
        let file = fs::File::open(&rotated.path).unwrap();
        match rotated.kind {
            naming::Kind::Plain => fs::read_to_string(&rotated.path).map(|t| text.push_str(&t)),
            naming::Kind::Compressed(Compression::Gzip) => flate2::read::GzDecoder::new(file)
                .read_to_string(&mut text)
                .map(drop),
            naming::Kind::Compressed(_) => zstd::Decoder::new(file)
                .unwrap()
                .read_to_string(&mut text)
                .map(drop),
            naming::Kind::Partial => panic!("leftover {}", rotated.path.display()),
        }
        .unwrap();
    }
    text.push_str(&fs::read_to_string(live).unwrap());
    text.lines().map(str::to_owned).collect()
}

#[test]
fn rotates_only_when_asked_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("access.jsonl");
    let mut settings = FileSettings::new(live.clone());
    settings.rotate_size = Some("4k".parse().unwrap());
    settings.compress = Compression::Zstd;
    let mut sink = FileSink::open(settings).unwrap();
    let mut next = 0;
    for _batch in 0..20 {
        if sink.rotation_due() {
            sink.rotate().unwrap();
        }
        // A batch larger than the limit still goes whole into one file.
        for _ in 0..50 {
            sink.write_line(&line(next)).unwrap();
            next += 1;
        }
        sink.flush().unwrap();
        assert!(sink.live.len() >= 50 * 100, "no rotation inside a batch");
    }
    sink.shutdown().unwrap();
    let counters: std::collections::BTreeMap<_, _> = sink.counters().into_iter().collect();
    assert_eq!(counters["rotations"], 19);
    assert_eq!(counters["compressed"], 19);
    let lines = all_lines(&live);
    assert_eq!(lines.len(), next);
    for (i, l) in lines.iter().enumerate() {
        assert!(l.starts_with(&format!("{{\"n\":{i},")), "line {i}: {l}");
    }
    for name in names(dir.path()) {
        assert!(
            name == "access.jsonl" || name.ends_with("Z.zst"),
            "unexpected {name}"
        );
        let mode = fs::metadata(dir.path().join(&name)).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600, "{name}");
    }
}

#[test]
fn retention_keeps_exactly_n_and_a_restart_appends() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("a.jsonl");
    let mut settings = FileSettings::new(live.clone());
    settings.rotate_size = Some("200".parse().unwrap());
    settings.keep = NonZeroU32::new(3);
    let mut sink = FileSink::open(settings.clone()).unwrap();
    for i in 0..10 {
        sink.write_line(&line(i)).unwrap();
        sink.flush().unwrap();
        if sink.rotation_due() {
            sink.rotate().unwrap();
        }
    }
    sink.shutdown().unwrap();
    drop(sink);
    let rotated = naming::list(&live).unwrap();
    assert_eq!(rotated.len(), 3, "{:?}", names(dir.path()));
    assert!(
        rotated
            .iter()
            .all(|r| r.kind == naming::Kind::Compressed(Compression::Gzip))
    );

    let before = fs::metadata(&live).unwrap().len();
    let mut sink = FileSink::open(settings).unwrap();
    sink.write_line(b"{\"after\":\"restart\"}\n").unwrap();
    sink.shutdown().unwrap();
    let text = fs::read_to_string(&live).unwrap();
    assert_eq!(text.len() as u64, before + 20);
    assert!(text.ends_with("{\"after\":\"restart\"}\n"));
}

#[test]
fn an_idle_empty_file_is_never_rotated() {
    let dir = tempfile::tempdir().unwrap();
    let mut settings = FileSettings::new(dir.path().join("a.jsonl"));
    settings.rotate_interval = Some("1s".parse().unwrap());
    let sink = FileSink::open(settings).unwrap();
    assert!(!sink.rotation_due());
}

#[test]
fn a_file_left_from_an_earlier_interval_is_due_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("a.jsonl");
    fs::write(&live, "{}\n").unwrap();
    let old = fs::File::options().write(true).open(&live).unwrap();
    old.set_modified(SystemTime::now() - Duration::from_secs(7200))
        .unwrap();
    let mut settings = FileSettings::new(live);
    settings.rotate_interval = Some("1h".parse().unwrap());
    let sink = FileSink::open(settings).unwrap();
    assert!(sink.rotation_due());
}

#[test]
fn write_errors_hold_a_bounded_backlog_then_deliver_it_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let live = dir.path().join("a.jsonl");
    let mut sink = FileSink::open(FileSettings::new(live.clone())).unwrap();
    sink.backlog_limit = 10 * line(10).len();
    sink.write_line(&line(0)).unwrap();
    sink.flush().unwrap();
    // A descriptor that refuses writes stands for a failing disk.
    let writable = sink.live.replace_file(fs::File::open(&live).unwrap());
    for i in 1..15 {
        sink.write_line(&line(i)).unwrap();
        sink.flush().unwrap();
        assert!(!sink.rotation_due());
    }
    let counters: std::collections::BTreeMap<_, _> = sink.counters().into_iter().collect();
    assert_eq!(counters["write_errors"], 14, "retried at each flush");
    assert_eq!(sink.discarded(), 4, "the newest lines beyond the bound");
    assert_eq!(all_lines(&live).len(), 1);

    sink.live.replace_file(writable);
    sink.flush().unwrap();
    sink.write_line(&line(15)).unwrap();
    sink.flush().unwrap();
    sink.shutdown().unwrap();
    let lines = all_lines(&live);
    let numbers: Vec<usize> = lines
        .iter()
        .map(|l| l[5..l.find(',').unwrap()].parse().unwrap())
        .collect();
    assert_eq!(numbers, [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 15]);
    assert!(sink.trouble.is_none());
}
