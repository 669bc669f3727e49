//! Lines anyone who can publish to the stream can send: sealed chains at the ends of
//! the seq range, lines whose seq or stream was changed after sealing, extreme times.
//! Every line is accounted for, and nothing panics.
use std::path::Path;

use tracer_audit::{
    Kind, StreamId,
    chain::{Chain, MAX_SEQ, ZERO_HASH},
    testing::{self, with_seq},
};

use proptest::prelude::*;

use super::tests::{lines_from, pipeline_at};
use super::*;
use crate::{
    query::{filter::Filter, integrity::integrity, records},
    store::StoreAt,
};

fn sealed(stream: &str, first_seq: u64, n: usize) -> Vec<Vec<u8>> {
    let mut chain = Chain::new(stream.parse::<StreamId>().unwrap(), first_seq, ZERO_HASH);
    (0..n).map(|i| access(&mut chain, i)).collect()
}

fn access(chain: &mut Chain, i: usize) -> Vec<u8> {
    access_at(
        chain,
        &format!("2026-12-03T02:00:{:02}Z", i % 60),
        &format!("/x/{i}"),
    )
}

/// An access line of `chain` at time `ts` (RFC 3339) for `path`.
fn access_at(chain: &mut Chain, ts: &str, path: &str) -> Vec<u8> {
    let mut line = format!(
        r#"{{"timestamp":"{ts}","http.request.method":"GET","url.path":"{path}","http.response.status_code":200,"client.address":"203.0.113.9","user.name":"mallory"}}"#
    )
    .into_bytes();
    chain.seal(&mut line, Kind::Access);
    line.pop();
    line
}

/// [`testing::signed_stream`] as lines without their newlines, and `NAME=KEY` for its
/// checkpoints' key.
fn sensor_stream(dir: &Path, name: &str) -> (Vec<Vec<u8>>, String) {
    let (mut lines, key) = testing::signed_stream(dir, name);
    for line in &mut lines {
        line.pop();
    }
    (lines, format!("{name}={}", key.public().base64()))
}

fn pipeline(dir: &Path, keys: &[String]) -> (Pipeline, StoreAt) {
    let store = StoreAt::Sqlite {
        data: dir.join("data"),
    };
    pipeline_at(store, keys)
}

fn accounted(o: &Outcome) -> u64 {
    o.stored + o.duplicates + o.conflicts + o.expired + o.rejected
}

#[test]
fn seqs_at_the_ends_of_the_range_are_stored_or_refused_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let (mut pipeline, store) = pipeline(dir.path(), &[]);
    // Each batch comes from its own place in the file: refused lines are kept once per
    // place.
    // MAX_SEQ - 2 ..= MAX_SEQ + 2: three stored, two refused.
    let top = sealed("edge", MAX_SEQ - 2, 5);
    let outcome = pipeline.ingest(&lines_from(&top, 1)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (3, 2), "{outcome:?}");
    let backwards: Vec<_> = top.iter().rev().cloned().collect();
    let outcome = pipeline.ingest(&lines_from(&backwards, 11)).unwrap();
    assert_eq!(
        (outcome.duplicates, outcome.rejected),
        (3, 2),
        "{outcome:?}"
    );
    // Sealed past the store's integers: all refused.
    let past = sealed("past", i64::MAX as u64 - 1, 4);
    let outcome = pipeline.ingest(&lines_from(&past, 21)).unwrap();
    assert_eq!(outcome.rejected, 4, "{outcome:?}");
    let low = sealed("low", 1, 3);
    let edited = [
        low[0].clone(),
        with_seq(&low[1], "0"),
        with_seq(&low[1], &u64::MAX.to_string()),
        with_seq(&low[1], "18446744073709551616"),
        with_seq(&low[1], "-1"),
        low[2].clone(),
    ];
    let outcome = pipeline.ingest(&lines_from(&edited, 31)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (2, 4), "{outcome:?}");
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    let edge = report.streams.iter().find(|s| s.stream == "edge").unwrap();
    assert_eq!((edge.first_seq, edge.last_seq), (MAX_SEQ - 2, MAX_SEQ));
    assert_eq!((edge.records, edge.missing), (3, 0));
    assert_eq!(report.rejected, 12);
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let mut seqs: Vec<u64> = page.rows.iter().map(|(r, _)| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 3, MAX_SEQ - 2, MAX_SEQ - 1, MAX_SEQ]);
}

/// What a publisher to the stream can do to a sensor's lines: anything done to a file
/// (`testing::Tamper`), and more to the strings the store keeps.
#[derive(Clone, Debug)]
enum Tamper {
    Line(testing::Tamper),
    /// Line `.0` names another stream.
    Stream(usize),
    /// The user name holds a NUL.
    Nul(usize),
    /// The user name is 5,000 letters and digits.
    Long(usize),
}

fn tamper() -> impl Strategy<Value = Tamper> {
    prop_oneof![
        6 => testing::tamper().prop_map(Tamper::Line),
        1 => any::<usize>().prop_map(Tamper::Stream),
        1 => any::<usize>().prop_map(Tamper::Nul),
        1 => any::<usize>().prop_map(Tamper::Long),
    ]
}

/// Applies `tamper` to `lines` of stream `name`.
fn apply(lines: &mut Vec<Vec<u8>>, tamper: &Tamper, name: &str) {
    let n = lines.len();
    let replace = |line: &[u8], from: &str, to: &str| {
        String::from_utf8_lossy(line).replace(from, to).into_bytes()
    };
    match tamper {
        Tamper::Line(t) => t.apply(lines),
        _ if n == 0 => {}
        Tamper::Stream(i) => {
            lines[i % n] = replace(
                &lines[i % n],
                &format!("\"{name}\""),
                &format!("\"{name}b\""),
            );
        }
        Tamper::Nul(i) => lines[i % n] = replace(&lines[i % n], "mallory", "mal\\u0000lory"),
        Tamper::Long(i) => {
            lines[i % n] = replace(&lines[i % n], "mallory", &incompressible()[..5_000]);
        }
    }
}

/// Applies `tampers` to a fresh stream `name` and ingests it into `store`, split at
/// `cuts`: every line is stored, dropped as a duplicate, kept as a conflict or refused,
/// and the integrity report and the records can still be read.
fn tampered(
    store: StoreAt,
    name: &str,
    tampers: &[Tamper],
    cuts: &[usize],
) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().unwrap();
    let (mut lines, key) = sensor_stream(dir.path(), name);
    for t in tampers {
        apply(&mut lines, t, name);
    }
    let (mut pipeline, store) = pipeline_at(store, &[key]);
    let mut at: Vec<usize> = cuts.iter().map(|c| c % (lines.len() + 1)).collect();
    at.sort_unstable();
    let mut from = 0;
    for to in at.into_iter().chain([lines.len()]) {
        let batch = &lines[from..to];
        let outcome = pipeline
            .ingest(&lines_from(batch, from as u64 + 1))
            .unwrap();
        prop_assert_eq!(accounted(&outcome), batch.len() as u64);
        from = to;
    }
    let mut conn = store.open_reader().unwrap();
    integrity(&mut conn).unwrap();
    records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    Ok(())
}

fn tampers() -> impl Strategy<Value = (Vec<Tamper>, Vec<usize>)> {
    (
        proptest::collection::vec(tamper(), 0..30),
        proptest::collection::vec(any::<usize>(), 0..3),
    )
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Whatever is done to a sensor's lines, and however they are split into batches,
    /// each is accounted for (see [`tampered`]).
    #[test]
    fn tampered_lines_are_each_accounted_for((changes, cuts) in tampers()) {
        let dir = tempfile::tempdir().unwrap();
        let store = StoreAt::Sqlite { data: dir.path().join("data") };
        tampered(store, "web1", &changes, &cuts)?;
    }
}

/// The same on PostgreSQL, where more values fail a statement than on SQLite; one
/// database, a stream per case.
#[test]
fn tampered_lines_are_each_accounted_for_postgres() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let store = super::tests::postgres_store(&postgres);
    let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(32));
    let case = std::cell::Cell::new(0);
    runner
        .run(&tampers(), |(changes, cuts)| {
            case.set(case.get() + 1);
            tampered(
                store.clone(),
                &format!("web{}", case.get()),
                &changes,
                &cuts,
            )
        })
        .unwrap();
}

/// 20,000 letters and digits that do not compress (PostgreSQL compresses long values
/// before it indexes them).
fn incompressible() -> String {
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    (0..20_000)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            char::from(b"abcdefghijklmnopqrstuvwxyz0123456789"[(x % 36) as usize])
        })
        .collect()
}

/// Lines whose strings PostgreSQL cannot hold as they are: a NUL (a sensor records one
/// from any client that sends it in a Basic user name), and users and credentials too
/// long for a b-tree entry; then a stream id holding a NUL, and an ordinary line.
fn unholdable_lines() -> Vec<Vec<u8>> {
    let long = incompressible();
    let mut chain = Chain::new("web1".parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    let mut lines: Vec<Vec<u8>> = [
        r#""user.name":"nul\u0000user""#.to_owned(),
        r#""url.path":"/a\u0000""#.to_owned(),
        r#""http.request.method":"G\u0000""#.to_owned(),
        r#""user_agent.original":"x\u0000","user.roles":["r\u0000"]"#.to_owned(),
        format!(r#""user.name":"{long}""#),
        format!(r#""user.id":"{long}""#),
        format!(r#""audit.credential.fingerprint":"{long}""#),
    ]
    .iter()
    .enumerate()
    .map(|(i, field)| {
        let mut line = format!(
            r#"{{"timestamp":"2026-12-03T02:00:0{i}Z","client.address":"203.0.113.9",{field}}}"#
        )
        .into_bytes();
        chain.seal(&mut line, Kind::Access);
        line.pop();
        line
    })
    .collect();
    // A stream id holding a NUL is refused: no sensor's id does.
    let other = sealed("w", 1, 1).remove(0);
    let renamed = String::from_utf8(other)
        .unwrap()
        .replace(r#""audit.stream":"w""#, r#""audit.stream":"w\u0000""#);
    lines.push(renamed.into_bytes());
    lines.push(access(&mut chain, 8));
    lines
}

fn unholdable_strings_are_stored_and_block_nothing(store: StoreAt) {
    let (mut pipeline, store) = pipeline_at(store, &[]);
    let lines = unholdable_lines();
    let outcome = pipeline.ingest(&lines_from(&lines, 1)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (8, 1), "{outcome:?}");
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let users: Vec<_> = page
        .rows
        .iter()
        .filter_map(|(r, _)| r.user.clone())
        .collect();
    assert!(users.contains(&"nul\u{FFFD}user".to_owned()), "{users:?}");
    let long = incompressible();
    assert!(users.contains(&long[..1_024].to_owned()));
    let credentials: Vec<_> = page
        .rows
        .iter()
        .filter_map(|(r, _)| r.credential.clone())
        .collect();
    assert_eq!(credentials, [long[..1_024].to_owned()]);
    // The stored lines are the sealed ones, escapes and all.
    let stored: Vec<_> = page
        .rows
        .iter()
        .map(|(_, line)| String::from_utf8_lossy(line))
        .collect();
    assert!(
        stored
            .iter()
            .any(|l| l.contains(r#""user.name":"nul\u0000user""#)),
        "{stored:?}"
    );
    assert!(
        stored
            .iter()
            .any(|l| l.contains(&format!(r#""user.id":"{long}""#)))
    );
    // Asked for as they were sent, they are found.
    let mut asked = |user: &str| {
        let filter = crate::query::filter::FilterArgs {
            user: Some(user.to_owned()),
            ..Default::default()
        }
        .check(0)
        .unwrap();
        records::page(&mut conn, &filter, 100, 0)
            .unwrap()
            .rows
            .len()
    };
    assert_eq!(asked("nul\0user"), 1);
    assert_eq!(asked(&long), 2);
}

#[test]
fn strings_the_store_cannot_hold_as_they_are_are_stored_and_block_nothing() {
    let dir = tempfile::tempdir().unwrap();
    unholdable_strings_are_stored_and_block_nothing(StoreAt::Sqlite {
        data: dir.path().join("data"),
    });
}

#[test]
fn strings_the_store_cannot_hold_as_they_are_are_stored_and_block_nothing_postgres() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    unholdable_strings_are_stored_and_block_nothing(super::tests::postgres_store(&postgres));
}

/// A value the store refuses in a way no check here foresaw (a constraint an operator
/// added stands in for it): the line that carries it is refused alone, and the lines
/// around it, in the same batch, are stored.
#[test]
fn a_line_the_store_refuses_is_refused_alone_and_blocks_nothing() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let (mut pipeline, store) = pipeline_at(super::tests::postgres_store(&postgres), &[]);
    postgres
        .psql("ALTER TABLE records ADD CONSTRAINT no_poison CHECK (path IS DISTINCT FROM '/x/13')")
        .unwrap();
    let lines = sealed("web1", 1, 40);
    let outcome = pipeline.ingest(&lines_from(&lines, 1)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (39, 1), "{outcome:?}");
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    let web1 = &report.streams[0];
    assert_eq!((web1.records, web1.missing), (39, 1));
    assert_eq!(
        report.reject_reasons.len(),
        1,
        "{:?}",
        report.reject_reasons
    );
    let reason = &report.reject_reasons[0].reason;
    assert!(
        reason.starts_with("the store refused it: PostgreSQL: ERROR:")
            && reason.contains("no_poison"),
        "{reason}"
    );
    // The next batch goes on from there.
    let more = pipeline
        .ingest(&lines_from(&sealed("web2", 1, 3), 41))
        .unwrap();
    assert_eq!(more.stored, 3);
}

/// Lines dated far ahead of the hub's clock would each make a day table (partition):
/// they are refused, counted under one reason, and make no table; lines up to a day
/// ahead are stored.
fn lines_dated_ahead_are_refused_and_make_no_day(store: StoreAt) -> Vec<i64> {
    let (mut pipeline, store) = pipeline_at(store, &[]);
    let now = crate::when::now_ns();
    let hour = 3_600_000_000_000;
    let mut chain = Chain::new("ahead".parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    let lines: Vec<Vec<u8>> = [
        crate::when::format_ns(now - hour),
        "2150-06-01T00:00:00Z".to_owned(),
        crate::when::format_ns(now + 72 * hour),
        crate::when::format_ns(now + 12 * hour),
        crate::when::format_ns(now),
    ]
    .iter()
    .map(|ts| access_at(&mut chain, ts, "/"))
    .collect();
    let outcome = pipeline.ingest(&lines_from(&lines, 1)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (3, 2), "{outcome:?}");
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    assert_eq!(
        (report.streams[0].records, report.streams[0].missing),
        (3, 2)
    );
    assert_eq!(
        report.reject_reasons.len(),
        1,
        "{:?}",
        report.reject_reasons
    );
    let reason = &report.reject_reasons[0];
    assert_eq!(
        (reason.reason.as_str(), reason.count),
        ("bad timestamp: more than a day after the hub's clock", 2)
    );
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let mut seqs: Vec<u64> = page.rows.iter().map(|(r, _)| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, [1, 4, 5]);
    // The days the store made tables for, as days since the epoch: none after the
    // latest stored line's.
    let latest_day = (now + 12 * hour).div_euclid(86_400_000_000_000);
    let days = days_held(&mut conn);
    assert!(days.iter().all(|&day| day <= latest_day), "{days:?}");
    days
}

#[test]
fn lines_dated_ahead_of_the_clock_are_refused_and_make_no_day() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreAt::Sqlite {
        data: dir.path().join("data"),
    };
    assert!(!lines_dated_ahead_are_refused_and_make_no_day(store).is_empty());
}

#[test]
fn lines_dated_ahead_of_the_clock_are_refused_and_make_no_day_postgres() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let store = super::tests::postgres_store(&postgres);
    assert!(!lines_dated_ahead_are_refused_and_make_no_day(store).is_empty());
}

/// The days the store holds a table (SQLite) or partition (PostgreSQL) for.
fn days_held(conn: &mut crate::store::Db) -> Vec<i64> {
    use crate::store::{Dialect, days::Part};
    let parts = match conn.dialect() {
        Dialect::Sqlite => crate::store::days::sqlite_parts(conn).unwrap(),
        Dialect::Postgres => conn
            .query(
                "SELECT relname::text FROM pg_class WHERE relkind = 'r' AND relname LIKE 'records_d%'",
                crate::store::db::args![],
            )
            .unwrap()
            .iter()
            .filter_map(|row| Part::from_table(&row.get::<String>(0).unwrap()))
            .collect(),
    };
    parts
        .into_iter()
        .filter_map(|part| match part {
            Part::Day(day) => Some(day),
            Part::Early | Part::Late => None,
        })
        .collect()
}

/// Anyone who can publish to the stream can name a new stream id in every line. A
/// batch takes each stream's lock until it commits: as an advisory lock, each took a
/// slot of the server's shared lock table, and a batch naming 20,000 stream ids failed
/// with "out of shared memory" every time it came, stalling the stream behind it.
#[test]
fn a_batch_naming_twenty_thousand_streams_is_stored_postgres() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let (mut pipeline, store) = pipeline_at(super::tests::postgres_store(&postgres), &[]);
    let lines: Vec<Vec<u8>> = (0..20_000)
        .flat_map(|i| sealed(&format!("s{i}"), 1, 1))
        .collect();
    let outcome = pipeline.ingest(&lines_from(&lines, 1)).unwrap();
    assert_eq!(
        (outcome.stored, outcome.rejected),
        (20_000, 0),
        "{outcome:?}"
    );
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.streams.len(), 20_000);
    assert!(
        report
            .streams
            .iter()
            .all(|s| s.records == 1 && s.missing == 0)
    );
}

/// Lines naming thousands of past days would each make a partition, and each
/// partition touched takes eight slots of PostgreSQL's shared lock table: a batch
/// naming 3,000 days failed with "out of shared memory" every time it came. Now a
/// batch makes at most 64, only for days of the last 400; the rest go to the default
/// partition, where questions still find them.
#[test]
fn a_batch_naming_three_thousand_past_days_is_stored_postgres() {
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let (mut pipeline, store) = pipeline_at(super::tests::postgres_store(&postgres), &[]);
    let day = 86_400_000_000_000_i64;
    let now = crate::when::now_ns();
    let mut chain = Chain::new("days".parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    let lines: Vec<Vec<u8>> = (0..3_000)
        .map(|i| {
            access_at(
                &mut chain,
                &crate::when::format_ns(now - i * day),
                &format!("/{i}"),
            )
        })
        .collect();
    let outcome = pipeline.ingest(&lines_from(&lines, 1)).unwrap();
    assert_eq!(
        (outcome.stored, outcome.rejected),
        (3_000, 0),
        "{outcome:?}"
    );
    let mut conn = store.open_reader().unwrap();
    let days = days_held(&mut conn);
    assert_eq!(days.len(), 64, "{days:?}");
    let today = now.div_euclid(day);
    assert!(days.iter().all(|&d| d > today - 400), "{days:?}");
    let report = integrity(&mut conn).unwrap();
    assert_eq!(
        (report.streams[0].records, report.streams[0].missing),
        (3_000, 0)
    );
    // A day in a partition, and one in the default partition, each read back.
    for back in [3, 2_500] {
        let filter = Filter {
            from_ns: Some(now - back * day - 1),
            to_ns: Some(now - back * day + 1),
            ..Filter::default()
        };
        let page = records::page(&mut conn, &filter, 10, 0).unwrap();
        let paths: Vec<_> = page.rows.iter().map(|(r, _)| r.path.clone()).collect();
        assert_eq!(paths, [Some(format!("/{back}"))]);
    }
}
