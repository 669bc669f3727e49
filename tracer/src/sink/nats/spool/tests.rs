use std::fs;

use super::*;

fn line(i: usize) -> Vec<u8> {
    format!("{{\"record\":{i},\"pad\":\"{}\"}}\n", "x".repeat(100)).into_bytes()
}

/// Reads every readable record, acknowledging each one.
fn read_all(reader: &mut SpoolReader) -> Vec<String> {
    let mut out = Vec::new();
    while let Some(record) = reader.next_record().unwrap() {
        out.push(String::from_utf8(record.payload.to_vec()).unwrap());
        let bytes = record.spooled_bytes();
        reader.ack(record.end, 1, bytes);
    }
    out
}

fn expected(range: std::ops::Range<usize>) -> Vec<String> {
    range
        .map(|i| String::from_utf8(line(i)).unwrap().trim_end().to_owned())
        .collect()
}

fn segments(dir: &Path) -> Vec<u64> {
    list_segments(dir)
        .unwrap()
        .into_iter()
        .map(|(n, _)| n)
        .collect()
}

#[test]
fn records_are_readable_after_commit_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader, recovered) = open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.backlog.records, 0);
    for i in 0..3 {
        assert_eq!(writer.append(&line(i)).unwrap(), Appended::Spooled);
    }
    assert!(reader.next_record().unwrap().is_none(), "not committed yet");
    writer.commit().unwrap();
    assert_eq!(read_all(&mut reader), expected(0..3));
    let counters = &reader.shared().counters;
    assert_eq!(counters.backlog().records, 0);
    assert_eq!(Counters::get(&counters.spooled_records), 3);
}

#[test]
fn rewind_goes_back_to_the_oldest_unacknowledged_record() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader, _) = open(dir.path(), 1 << 20).unwrap();
    for i in 0..3 {
        writer.append(&line(i)).unwrap();
    }
    writer.commit().unwrap();
    let first = reader.next_record().unwrap().unwrap();
    reader.next_record().unwrap().unwrap();
    reader.ack(first.end, 1, first.spooled_bytes());
    reader.rewind();
    assert_eq!(read_all(&mut reader), expected(1..3));
}

#[test]
fn a_reopened_spool_replays_the_unacknowledged_records_first() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut writer, mut reader, _) = open(dir.path(), 1 << 20).unwrap();
        for i in 0..5 {
            writer.append(&line(i)).unwrap();
        }
        writer.sync().unwrap();
        for _ in 0..2 {
            let record = reader.next_record().unwrap().unwrap();
            reader.ack(record.end, 1, record.spooled_bytes());
        }
        // Read but never acknowledged: must come back.
        reader.next_record().unwrap().unwrap();
        reader.persist(true).unwrap();
    }
    let (mut writer, mut reader, recovered) = open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.backlog.records, 3);
    assert_eq!(recovered.backlog.bytes, 3 * line(0).len() as u64);
    assert_eq!(reader.shared().counters.backlog().records, 3);
    writer.append(&line(5)).unwrap();
    writer.commit().unwrap();
    assert_eq!(read_all(&mut reader), expected(2..6));
}

#[test]
fn acknowledged_segments_are_deleted() {
    let dir = tempfile::tempdir().unwrap();
    // 4 KiB segments: about 35 records each.
    let (mut writer, mut reader, _) = open(dir.path(), 32 << 10).unwrap();
    for i in 0..100 {
        assert_eq!(writer.append(&line(i)).unwrap(), Appended::Spooled);
    }
    writer.commit().unwrap();
    let before = segments(dir.path());
    assert!(before.len() >= 3, "{before:?}");
    assert_eq!(read_all(&mut reader), expected(0..100));
    reader.persist(true).unwrap();
    assert_eq!(segments(dir.path()), [*before.last().unwrap()]);
    let disk = Counters::get(&reader.shared().counters.disk_bytes);
    assert_eq!(
        disk,
        fs::metadata(segment_path(dir.path(), before[before.len() - 1]))
            .unwrap()
            .len()
    );
}

#[test]
fn a_full_spool_discards_and_counts_until_acknowledgements_free_room() {
    let dir = tempfile::tempdir().unwrap();
    let (mut writer, mut reader, _) = open(dir.path(), 16 << 10).unwrap();
    let mut spooled = 0;
    let mut full = 0;
    for i in 0..400 {
        match writer.append(&line(i)).unwrap() {
            Appended::Spooled => spooled += 1,
            Appended::Full => full += 1,
        }
    }
    writer.commit().unwrap();
    assert!(full > 0 && spooled > 0, "{spooled} spooled, {full} full");
    let counters = &reader.shared().counters;
    assert_eq!(Counters::get(&counters.discarded), full);
    assert!(Counters::get(&counters.disk_bytes) <= 16 << 10);
    let total: u64 = list_segments(dir.path())
        .unwrap()
        .iter()
        .map(|(_, l)| l)
        .sum();
    assert!(total <= 16 << 10, "{total} bytes on disk");
    // Records that were kept are all there, in order: no gap inside them.
    assert_eq!(read_all(&mut reader), expected(0..spooled as usize));
    reader.persist(true).unwrap();
    assert_eq!(writer.append(&line(1000)).unwrap(), Appended::Spooled);
}

#[test]
fn a_record_cut_short_by_a_crash_is_removed_on_open() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut writer, _reader, _) = open(dir.path(), 1 << 20).unwrap();
        writer.append(&line(0)).unwrap();
        writer.append(&line(1)).unwrap();
        writer.commit().unwrap();
    }
    let last = *segments(dir.path()).last().unwrap();
    let path = segment_path(dir.path(), last);
    let mut bytes = fs::read(&path).unwrap();
    bytes.extend_from_slice(b"{\"record\":2,\"pa");
    fs::write(&path, bytes).unwrap();

    let (_writer, mut reader, recovered) = open(dir.path(), 1 << 20).unwrap();
    assert_eq!(recovered.cut_bytes, 15);
    assert_eq!(recovered.backlog.records, 2);
    assert_eq!(Counters::get(&reader.shared().counters.discarded), 1);
    assert_eq!(read_all(&mut reader), expected(0..2));
}

#[test]
fn an_unusable_cursor_replays_from_the_oldest_segment() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (mut writer, mut reader, _) = open(dir.path(), 1 << 20).unwrap();
        writer.append(&line(0)).unwrap();
        writer.commit().unwrap();
        read_all(&mut reader);
        reader.persist(true).unwrap();
    }
    fs::write(dir.path().join(CURSOR), "garbage").unwrap();
    let (_writer, mut reader, recovered) = open(dir.path(), 1 << 20).unwrap();
    assert!(recovered.cursor_problem.is_some());
    assert_eq!(read_all(&mut reader), expected(0..1));
}

#[test]
fn one_tracer_per_spool() {
    let dir = tempfile::tempdir().unwrap();
    let _first = open(dir.path(), 1 << 20).unwrap();
    let second = open(dir.path(), 1 << 20).err().unwrap();
    assert!(matches!(second, SpoolError::InUse(_)), "{second}");
}

#[test]
fn the_spool_is_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let parent = tempfile::tempdir().unwrap();
    let dir = parent.path().join("spool");
    let (mut writer, _reader, _) = open(&dir, 1 << 20).unwrap();
    writer.append(&line(0)).unwrap();
    writer.commit().unwrap();
    assert_eq!(
        fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let segment = segment_path(&dir, segments(&dir)[0]);
    assert_eq!(
        fs::metadata(segment).unwrap().permissions().mode() & 0o777,
        0o600
    );
}
