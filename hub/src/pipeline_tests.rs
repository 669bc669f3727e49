//! The ingest path on real sealed streams (tracer-audit's own chain and checkpoint
//! writers, a real key) into a real SQLite store in a temp dir.
use std::{path::Path, sync::Arc};

use tracer_audit::{
    Kind, StreamId,
    chain::{Chain, ZERO_HASH},
    checkpoint::{Checkpointer, Reason},
    key::AuditKey,
    start::{Start, write_record},
};

use super::*;
use crate::{
    enrich::EnrichSettings,
    ingest::Origin,
    query::{
        filter::Filter,
        integrity::{conflict_lines, integrity},
        records,
    },
    store::StoreAt,
};

struct Sensor {
    chain: Chain,
    checkpointer: Checkpointer,
    since: u64,
}

impl Sensor {
    fn new(dir: &Path, stream: &str) -> (Self, String) {
        let key = AuditKey::load_or_create(&dir.join(format!("{stream}.key"))).unwrap();
        let public = key.public().base64();
        let mut sensor = Self {
            chain: Chain::new(stream.parse::<StreamId>().unwrap(), 1, ZERO_HASH),
            checkpointer: Checkpointer::new(key, None),
            since: 0,
        };
        let mut line = Vec::new();
        write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut line).unwrap();
        sensor.chain.seal(&mut line, Kind::Start);
        (sensor, public)
    }

    fn access(&mut self, n: u64, user: &str) -> Vec<u8> {
        let at = format!("2026-12-03T02:{:02}:{:02}Z", n / 60 % 60, n % 60);
        self.access_at(&at, n, user)
    }

    fn access_at(&mut self, timestamp: &str, n: u64, user: &str) -> Vec<u8> {
        self.access_with(timestamp, n, user, "")
    }

    /// An access line with `more` (JSON members, each with a leading comma) at its end.
    fn access_with(&mut self, timestamp: &str, n: u64, user: &str, more: &str) -> Vec<u8> {
        self.sealed_access(format!(
            r#"{{"timestamp":"{timestamp}","http.request.method":"GET","url.path":"/orders/{n}","http.response.status_code":{},"client.address":"203.0.113.{}","user.name":"{user}"{more}}}"#,
            if n.is_multiple_of(10) { 403 } else { 200 },
            n % 7
        ))
    }

    /// A request refused with 401 to `user` from one client.
    fn denied_at(&mut self, timestamp: &str, user: &str) -> Vec<u8> {
        self.sealed_access(format!(
            r#"{{"timestamp":"{timestamp}","http.request.method":"POST","url.path":"/login","http.response.status_code":401,"client.address":"203.0.113.9","user.name":"{user}"}}"#
        ))
    }

    fn sealed_access(&mut self, text: String) -> Vec<u8> {
        let mut line = text.into_bytes();
        self.chain.seal(&mut line, Kind::Access);
        self.since += 1;
        line.pop();
        line
    }

    fn checkpoint(&mut self) -> Vec<u8> {
        self.checkpoint_at("2026-12-03T03:00:00Z")
    }

    fn checkpoint_at(&mut self, timestamp: &str) -> Vec<u8> {
        let mut line = Vec::new();
        self.checkpointer
            .write(
                &mut self.chain,
                Reason::Interval,
                self.since,
                timestamp,
                &mut line,
            )
            .unwrap();
        self.since = 0;
        line.pop();
        line
    }
}

/// The seqs of a page's records that a verified checkpoint covers.
fn covered(page: &records::Page) -> Vec<u64> {
    page.rows
        .iter()
        .filter(|(r, _)| r.covered)
        .map(|(r, _)| r.seq)
        .collect()
}

fn lines(raw: &[Vec<u8>]) -> Vec<Line> {
    lines_from(raw, 1)
}

/// `raw` as lines of a file, the first at line `first`.
pub(super) fn lines_from(raw: &[Vec<u8>], first: u64) -> Vec<Line> {
    raw.iter()
        .zip(first..)
        .map(|(bytes, line)| Line {
            origin: Origin::File {
                path: Arc::from(Path::new("test.jsonl")),
                line,
            },
            bytes: Ok(bytes.clone()),
        })
        .collect()
}

/// The stored alerts of `rule`.
fn alerts_of(conn: &mut crate::store::Db, rule: &str) -> Vec<crate::store::alerts::Alert> {
    let filter = crate::store::alerts::AlertFilter {
        rule: Some(rule.to_owned()),
        limit: 10,
        ..Default::default()
    };
    crate::store::alerts::list(conn, &filter).unwrap()
}

fn pipeline(dir: &Path, keys: &[String]) -> (Pipeline, StoreAt) {
    pipeline_at(
        StoreAt::Sqlite {
            data: dir.join("data"),
        },
        keys,
    )
}

pub(super) fn pipeline_at(store: StoreAt, keys: &[String]) -> (Pipeline, StoreAt) {
    let keys = Keys::from_pairs(keys.iter().map(String::as_str)).unwrap();
    let enricher = Enricher::load(&EnrichSettings::default()).unwrap();
    (
        Pipeline::new(
            keys,
            enricher,
            store.open_writer().unwrap(),
            Box::new(|writer| {
                Ok(Detector::new(
                    crate::detect::Detections::load(None)?,
                    None,
                    writer.detect_state()?,
                ))
            }),
        )
        .unwrap(),
        store,
    )
}

/// (stored, expired, duplicates, conflicts) of lines given again after retention.
fn again_counts(o: &Outcome) -> (u64, u64, u64, u64) {
    (o.stored, o.expired, o.duplicates, o.conflicts)
}

/// Retention steps until done: the lines each deleted.
fn expire_all(pipeline: &mut Pipeline, cutoff_ns: i64, limit: usize) -> Vec<u64> {
    let mut steps = Vec::new();
    loop {
        let step = pipeline.expire(cutoff_ns, limit).unwrap();
        steps.push(step.lines);
        if step.done {
            return steps;
        }
    }
}

/// The start line [`Sensor::new`] sealed for stream `name`.
fn start_line(name: &str) -> Vec<u8> {
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut start).unwrap();
    let mut first = Chain::new(name.parse::<StreamId>().unwrap(), 1, ZERO_HASH);
    first.seal(&mut start, Kind::Start);
    start.pop();
    start
}

/// A start line, 20 access lines, a checkpoint, 5 more access lines.
fn stream(dir: &Path, name: &str) -> (Vec<Vec<u8>>, String) {
    let (mut sensor, key) = Sensor::new(dir, name);
    let mut out = vec![start_line(name)];
    for n in 1..=20 {
        out.push(sensor.access(n, if n % 2 == 0 { "alice" } else { "bob" }));
    }
    out.push(sensor.checkpoint());
    for n in 21..=25 {
        out.push(sensor.access(n, "carol"));
    }
    (out, key)
}

#[test]
fn a_stream_is_stored_once_covered_by_its_checkpoint_and_redelivery_is_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let outcome = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!((outcome.stored, outcome.rejected), (27, 0));
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);
    let again = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!((again.stored, again.duplicates), (0, 27));

    let mut conn = store.open_reader().unwrap();
    let all = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(all.total, 25, "access records only");
    let covered = covered(&all);
    assert_eq!(
        covered.len(),
        20,
        "the checkpoint covers seqs 2..=21: {covered:?}"
    );
    assert!(covered.iter().all(|s| (2..=21).contains(s)));
    let report = integrity(&mut conn).unwrap();
    let web1 = &report.streams[0];
    assert_eq!(
        (web1.first_seq, web1.last_seq, web1.verified_through),
        (1, 27, Some(22))
    );
    assert!(web1.start_seen && web1.breaks.is_empty());
    let (row, line) = &all.rows[0];
    assert_eq!(row.seq, 27);
    assert_eq!(*line, raw[26], "the original line comes back byte for byte");
}

#[test]
fn an_altered_copy_of_a_stored_line_is_a_finding_and_the_stored_line_stands() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    pipeline.ingest(&lines(&raw)).unwrap();
    // Its audit.hash left as it was, so it names the stored line's hash.
    let altered = String::from_utf8(raw[5].clone())
        .unwrap()
        .replace("bob", "eve")
        .into_bytes();
    let again = pipeline
        .ingest(&lines(&[altered.clone(), raw[6].clone()]))
        .unwrap();
    assert_eq!((again.stored, again.duplicates, again.conflicts), (0, 1, 1));
    let kinds: Vec<_> = again.events.iter().map(|e| (e.seq, e.kind)).collect();
    assert_eq!(kinds, [(6, EventKind::Modified)]);
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let (_, line) = page.rows.iter().find(|(row, _)| row.seq == 6).unwrap();
    assert_eq!(*line, raw[5], "the stored line stands");
    let breaks = &integrity(&mut conn).unwrap().streams[0].breaks;
    assert!(
        breaks.iter().any(|b| b.seq == 6 && b.kind == "modified"),
        "{breaks:?}"
    );
    assert_eq!(conflict_lines(&mut conn, None, 10).unwrap(), [altered]);
}

/// Events as (seq, kind).
/// A store in a throwaway PostgreSQL cluster, which `postgres` keeps running.
pub(super) fn postgres_store(postgres: &::tests::servers::Postgres) -> StoreAt {
    StoreAt::Postgres {
        url: postgres.url(),
        tls: crate::store::PgTls::new(None, None).unwrap(),
    }
}

fn kinds(outcome: &Outcome) -> Vec<(u64, EventKind)> {
    outcome.events.iter().map(|e| (e.seq, e.kind)).collect()
}

/// The honest start of a keyed stream "web1": start, records 2..=5 by alice, a
/// checkpoint at 6, ingested; and a forger's chain continuing after it at seq 7.
fn forged_ahead(dir: &Path) -> (Sensor, Chain, Pipeline, StoreAt) {
    let store = StoreAt::Sqlite {
        data: dir.join("data"),
    };
    forged_ahead_in(dir, store)
}

fn forged_ahead_in(dir: &Path, store: StoreAt) -> (Sensor, Chain, Pipeline, StoreAt) {
    let (mut sensor, key) = Sensor::new(dir, "web1");
    let mut honest = vec![start_line("web1")];
    honest.extend((2..=5).map(|n| sensor.access(n, "alice")));
    honest.push(sensor.checkpoint());
    let (mut pipeline, store) = pipeline_at(store, &[format!("web1={key}")]);
    pipeline.ingest(&lines(&honest)).unwrap();
    // Whoever can publish to the stream continues the chain first: the hash is right.
    let head = tracer_audit::verify::parse::parse(&honest[5], None).unwrap();
    let forger = Chain::new("web1".parse::<StreamId>().unwrap(), 7, head.hash);
    (sensor, forger, pipeline, store)
}

fn forged_record(forger: &mut Chain, path: &str) -> Vec<u8> {
    let mut forged = format!(r#"{{"timestamp":"2026-12-03T02:00:07Z","http.request.method":"GET","url.path":"{path}","http.response.status_code":200,"user.name":"mallory"}}"#).into_bytes();
    forger.seal(&mut forged, Kind::Access);
    forged.pop();
    forged
}

/// Requests per user in the rollups, as `top users` reads them.
fn top_users(conn: &mut crate::store::Db) -> Vec<(String, u64)> {
    crate::query::top::top(
        conn,
        crate::query::top::TopKind::Users,
        &Filter::default(),
        10,
    )
    .unwrap()
    .into_iter()
    .map(|row| (row.key, row.requests))
    .collect()
}

#[test]
fn a_line_forged_ahead_of_its_sensor_is_replaced_by_the_sensors_own_once_its_checkpoint_comes() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, mut forger, mut pipeline, store) = forged_ahead(dir.path());
    let forged = forged_record(&mut forger, "/forged");
    let outcome = pipeline
        .ingest(&lines(std::slice::from_ref(&forged)))
        .unwrap();
    assert_eq!((outcome.stored, kinds(&outcome)), (1, vec![]));

    // The sensor's own seq 7 collides and is kept; its checkpoint at 8, which follows
    // the stored checkpoint at 6, chains to it: the stored seq 7 was forged, and the
    // sensor's takes its place.
    let real = [sensor.access(7, "bob"), sensor.checkpoint()];
    let outcome = pipeline.ingest(&lines(&real)).unwrap();
    assert_eq!(
        kinds(&outcome),
        [(7, EventKind::Conflict), (7, EventKind::Forged)]
    );
    let forged_event = &outcome.events[1];
    assert!(
        forged_event.detail.contains("now stands in its place"),
        "{forged_event:?}"
    );
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let (row, _) = page.rows.iter().find(|(row, _)| row.seq == 7).unwrap();
    assert_eq!(
        (row.chain.as_str(), row.covered, row.user.as_deref()),
        ("restored", true, Some("bob"))
    );
    assert_eq!(covered(&page), [7, 5, 4, 3, 2]);
    assert!(
        page.rows
            .iter()
            .all(|(row, _)| row.path.as_deref() != Some("/forged"))
    );
    let report = integrity(&mut conn).unwrap();
    let stream = &report.streams[0];
    assert!(
        stream
            .breaks
            .iter()
            .any(|b| b.seq == 7 && b.kind == "forged"),
        "{:?}",
        stream.breaks
    );
    assert_eq!(stream.verified_through, Some(8));
    // The forged line is what is kept now, byte for byte.
    assert_eq!(stream.conflicts_kept, 1);
    assert_eq!(
        conflict_lines(&mut conn, Some("web1"), 10).unwrap(),
        [forged]
    );
    // Its request is taken back from the rollups.
    assert_eq!(
        top_users(&mut conn),
        [("alice".to_owned(), 4), ("bob".to_owned(), 1)]
    );

    // The sensor goes on, linked to its own line.
    let next = [sensor.access(9, "bob"), sensor.checkpoint()];
    let outcome = pipeline.ingest(&lines(&next)).unwrap();
    assert_eq!(kinds(&outcome), []);
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(covered(&page), [9, 7, 5, 4, 3, 2]);
}

#[test]
fn a_forged_checkpoint_and_lines_past_it_are_replaced_checkpoint_by_checkpoint() {
    let dir = tempfile::tempdir().unwrap();
    let store = StoreAt::Sqlite {
        data: dir.path().join("data"),
    };
    replaced_checkpoint_by_checkpoint(dir.path(), store);
}

#[test]
fn a_forged_checkpoint_and_lines_past_it_are_replaced_checkpoint_by_checkpoint_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let store = postgres_store(&postgres);
    replaced_checkpoint_by_checkpoint(dir.path(), store);
}

fn replaced_checkpoint_by_checkpoint(dir: &Path, store: StoreAt) {
    let (mut sensor, mut forger, mut pipeline, store) = forged_ahead_in(dir, store);
    // A record at 7, a checkpoint at 8 signed with another key, records at 9 and 10.
    let attacker = AuditKey::load_or_create(&dir.join("attacker.key")).unwrap();
    let mut forged = vec![forged_record(&mut forger, "/forged/7")];
    let mut checkpoint = Vec::new();
    Checkpointer::new(attacker, None)
        .write(
            &mut forger,
            Reason::Interval,
            1,
            "2026-12-03T03:00:00Z",
            &mut checkpoint,
        )
        .unwrap();
    checkpoint.pop();
    forged.push(checkpoint);
    forged.push(forged_record(&mut forger, "/forged/9"));
    forged.push(forged_record(&mut forger, "/forged/10"));
    let outcome = pipeline.ingest(&lines(&forged)).unwrap();
    assert_eq!(kinds(&outcome), [(8, EventKind::Signature)]);

    // The sensor's 7, and its checkpoint at 8 over the forged one.
    let real = [sensor.access(7, "bob"), sensor.checkpoint()];
    let outcome = pipeline.ingest(&lines(&real)).unwrap();
    assert_eq!(
        kinds(&outcome),
        [
            (7, EventKind::Conflict),
            (7, EventKind::Forged),
            (8, EventKind::Forged)
        ]
    );
    // Then 9, 10 and its checkpoint at 11: 9 and 10 collide with forged lines, which
    // the checkpoint at 11 replaces.
    let real = [
        sensor.access(9, "carol"),
        sensor.access(10, "carol"),
        sensor.checkpoint(),
    ];
    let outcome = pipeline.ingest(&lines(&real)).unwrap();
    assert_eq!(
        kinds(&outcome),
        [
            (9, EventKind::Conflict),
            (10, EventKind::Conflict),
            (9, EventKind::Forged),
            (10, EventKind::Forged)
        ]
    );
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(covered(&page), [10, 9, 7, 5, 4, 3, 2]);
    assert!(
        page.rows
            .iter()
            .all(|(row, _)| row.user.as_deref() != Some("mallory")),
        "a forged record stands"
    );
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.streams[0].verified_through, Some(11));
    assert_eq!(report.streams[0].conflicts_kept, 4);
    assert_eq!(
        top_users(&mut conn),
        [
            ("alice".to_owned(), 4),
            ("carol".to_owned(), 2),
            ("bob".to_owned(), 1)
        ]
    );
    // Nor is the forger among any hour's distinct users.
    let mallory: i64 = conn
        .query_row(
            "SELECT count(*) FROM rollup_users WHERE user = 'mallory'",
            crate::store::db::args![],
        )
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(mallory, 0);
}

#[test]
fn a_restored_loss_line_is_a_loss_the_hub_counts() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, mut forger, mut pipeline, store) = forged_ahead(dir.path());
    pipeline
        .ingest(&lines(&[forged_record(&mut forger, "/forged")]))
        .unwrap();
    // The sensor's seq 7 is a loss line: it collides, and comes back with its checkpoint.
    let loss = tracer_audit::loss::Loss {
        counter: tracer_audit::loss::Counter {
            source: tracer_audit::loss::LossSource::Kernel,
            reason: "ringbuf_full",
            total: 12,
        },
        count: 12,
        start_ns: 1_796_000_000_000_000_000,
        end_ns: 1_796_000_001_000_000_000,
    };
    let mut line = Vec::new();
    tracer_audit::loss::write_record(&loss, &mut line).unwrap();
    sensor.chain.seal(&mut line, Kind::Loss);
    line.pop();
    sensor.since += 1;
    let outcome = pipeline
        .ingest(&lines(&[line, sensor.checkpoint()]))
        .unwrap();
    assert_eq!(
        kinds(&outcome),
        [
            (7, EventKind::Conflict),
            (7, EventKind::Forged),
            (7, EventKind::Loss)
        ]
    );
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    let losses = &report.streams[0].losses;
    assert_eq!(losses.len(), 1, "{losses:?}");
    assert_eq!(losses[0].count, 12, "{losses:?}");
}

#[test]
fn without_the_sensors_own_line_a_forged_line_is_named_and_stays() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, mut forger, mut pipeline, store) = forged_ahead(dir.path());
    let forged = forged_record(&mut forger, "/forged");
    pipeline.ingest(&lines(&[forged])).unwrap();
    // The sensor's seq 7 never arrives; its checkpoint at 8 does.
    let _lost = sensor.access(7, "bob");
    let outcome = pipeline.ingest(&lines(&[sensor.checkpoint()])).unwrap();
    let found = kinds(&outcome);
    for expected in [
        (8, EventKind::Modified),
        (8, EventKind::Signature),
        (7, EventKind::Forged),
    ] {
        assert!(found.contains(&expected), "{expected:?} in {found:?}");
    }
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let (row, _) = page.rows.iter().find(|(row, _)| row.seq == 7).unwrap();
    assert_eq!((row.chain.as_str(), row.covered), ("forged", false));
}

#[test]
fn a_sensor_that_began_a_new_chain_with_its_key_disowns_nothing_it_wrote_before() {
    let dir = tempfile::tempdir().unwrap();
    let (mut before, key) = Sensor::new(dir.path(), "web1");
    let mut first = vec![start_line("web1")];
    first.extend((2..=5).map(|n| before.access(n, "alice")));
    first.push(before.checkpoint());
    first.push(before.access(7, "alice"));
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    pipeline.ingest(&lines(&first)).unwrap();

    // Its chain state lost, the key kept: seq 1 again, and checkpoints at 4 and 6 whose
    // seqs, heads and previous checkpoint all name lines of the first chain.
    let (mut after, _) = Sensor::new(dir.path(), "web1");
    let mut second = vec![start_line("web1")];
    second.extend((2..=3).map(|n| after.access(n, "bob")));
    second.push(after.checkpoint());
    second.push(after.access(5, "bob"));
    second.push(after.checkpoint());
    let outcome = pipeline.ingest(&lines(&second)).unwrap();
    let found = kinds(&outcome);
    // (Its start line is byte for byte the first one's here, so a duplicate.)
    assert!(
        found.contains(&(4, EventKind::Conflict)) && found.contains(&(6, EventKind::Conflict)),
        "{found:?}"
    );
    assert!(
        !found.iter().any(|(_, kind)| *kind == EventKind::Forged),
        "{found:?}"
    );
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert!(page.rows.iter().all(|(row, _)| row.chain != "forged"));
}

#[test]
fn a_new_chain_over_stored_seqs_is_a_reset_that_says_what_to_do() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, _store) = pipeline(dir.path(), &[format!("web1={key}")]);
    pipeline.ingest(&lines(&raw)).unwrap();
    // The same sensor a day later, its state file gone.
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-04T02:00:00Z", "fp", &mut start).unwrap();
    Chain::new("web1".parse::<StreamId>().unwrap(), 1, ZERO_HASH).seal(&mut start, Kind::Start);
    start.pop();
    let outcome = pipeline.ingest(&lines(&[start])).unwrap();
    assert_eq!((outcome.stored, outcome.conflicts), (0, 1));
    assert_eq!(kinds(&outcome), [(1, EventKind::Reset)]);
    let detail = &outcome.events[0].detail;
    assert!(
        detail.contains("up to 27 are stored") && detail.contains("--stream-id"),
        "{detail}"
    );
}

#[test]
fn a_stored_line_that_fails_its_hash_given_again_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut raw, key) = stream(dir.path(), "web1");
    raw[5] = String::from_utf8(raw[5].clone())
        .unwrap()
        .replace("bob", "eve")
        .into_bytes();
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let first = pipeline.ingest(&lines(&raw)).unwrap();
    assert!(kinds(&first).contains(&(6, EventKind::Modified)));
    let again = pipeline.ingest(&lines(&raw[5..6])).unwrap();
    assert_eq!(
        (
            again.stored,
            again.duplicates,
            again.conflicts,
            kinds(&again)
        ),
        (0, 1, 0, vec![])
    );
    let mut conn = store.open_reader().unwrap();
    assert!(conflict_lines(&mut conn, None, 10).unwrap().is_empty());
}

#[test]
fn altered_missing_and_foreign_lines_are_findings_and_junk_is_rejected() {
    let dir = tempfile::tempdir().unwrap();
    let (mut raw, key) = stream(dir.path(), "web1");
    let altered = String::from_utf8(raw[5].clone())
        .unwrap()
        .replace("bob", "eve");
    raw[5] = altered.into_bytes();
    raw.remove(10);
    raw.push(b"not json at all".to_vec());
    raw.push(br#"{"timestamp":"2026-12-03T02:00:00Z","audit.kind":"access","audit.stream":"web1","audit.seq":"x"}"#.to_vec());
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let outcome = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!(outcome.rejected, 2);
    let kinds: Vec<_> = outcome.events.iter().map(|e| (e.seq, e.kind)).collect();
    assert!(kinds.contains(&(6, EventKind::Modified)), "{kinds:?}");
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.rejected, 2);
    let web1 = &report.streams[0];
    let gaps: Vec<_> = web1
        .breaks
        .iter()
        .filter(|b| b.kind == "gap")
        .map(|b| b.seq)
        .collect();
    assert_eq!((gaps, web1.missing), (vec![11], 1));
    assert!(web1.verified_through.is_some_and(|v| v == 22));
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let covered = covered(&page);
    assert_eq!(
        covered,
        (12..=21).rev().collect::<Vec<_>>(),
        "only seqs after the gap link to the checkpoint"
    );
}

#[test]
fn a_checkpoint_signed_by_another_key_is_a_signature_finding() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = stream(dir.path(), "web1");
    let (_, other_key) = Sensor::new(dir.path(), "other");
    let (mut pipeline, _) = pipeline(dir.path(), &[format!("web1={other_key}")]);
    let outcome = pipeline.ingest(&lines(&raw)).unwrap();
    assert!(
        outcome
            .events
            .iter()
            .any(|e| e.kind == EventKind::Signature && e.seq == 22)
    );
}

#[test]
fn a_batch_redelivered_after_later_ones_fills_its_gap_and_is_proven() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    let (head, rest) = all.split_at(5);
    let (held, tail) = rest.split_at(6);
    pipeline.ingest(head).unwrap();
    let later = pipeline.ingest(tail).unwrap();
    assert!(later.events.is_empty(), "{:?}", later.events);
    let mut conn = store.open_reader().unwrap();
    assert_eq!(integrity(&mut conn).unwrap().streams[0].missing, 6);
    let gap_alerts = |conn: &mut crate::store::Db| alerts_of(conn, "chain_gap");
    let open = gap_alerts(&mut conn);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].resolved_ns, None, "the gap is open");
    assert!(
        open[0].raised_ns.is_some(),
        "the hub's clock when it raised it"
    );
    let late = pipeline.ingest(held).unwrap();
    assert_eq!(late.stored, 6);
    assert!(late.events.is_empty(), "{:?}", late.events);
    assert!(
        late.alerts.contains(&open[0].id),
        "the resolution is delivered: {:?}",
        late.alerts
    );
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.streams[0].missing, 0);
    assert!(report.streams[0].breaks.is_empty());
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(page.rows.iter().filter(|(r, _)| r.covered).count(), 20);
    let resolved = gap_alerts(&mut conn);
    assert!(
        resolved[0].resolved_ns.is_some(),
        "the filled gap resolves its alert"
    );
    assert!(resolved[0].revision > open[0].revision);
}

#[test]
fn a_gap_that_stays_open_keeps_its_alert_open() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    // Seq 6 never comes; seq 12 fills nothing that was missing before it came.
    pipeline.ingest(&all[..5]).unwrap();
    pipeline.ingest(&all[6..11]).unwrap();
    pipeline.ingest(&all[12..]).unwrap();
    pipeline.ingest(&all[11..12]).unwrap();
    let mut conn = store.open_reader().unwrap();
    assert_eq!(integrity(&mut conn).unwrap().streams[0].missing, 1);
    let alerts = alerts_of(&mut conn, "chain_gap");
    assert!(!alerts.is_empty());
    assert!(alerts.iter().all(|a| a.resolved_ns.is_none()), "{alerts:?}");
}

/// Hubs sharing one consumer take a stream's messages as the server hands them out, down
/// to one at a time in turn: each hub's batch leaves gaps the other's fills, more of
/// them than the chain state itemises. Every late line still fills a gap, none is a
/// conflict, and the next checkpoint proves them all.
#[test]
fn lines_taken_in_turn_by_two_hubs_fill_more_gaps_than_are_itemised() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut raw = vec![start_line("web1")];
    for n in 1..=24_000 {
        raw.push(sensor.access(n, "alice"));
    }
    raw.push(sensor.checkpoint());
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    // The first hub takes every second line, and the checkpoint.
    let checkpoint = raw.len() - 1;
    let mut first = Vec::new();
    let mut second = Vec::new();
    for (i, line) in all.into_iter().enumerate() {
        if i % 2 == 0 || i == checkpoint {
            first.push(line);
        } else {
            second.push(line);
        }
    }
    let one = pipeline.ingest(&first).unwrap();
    assert_eq!((one.stored, one.conflicts), (first.len() as u64, 0));
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.streams[0].missing, second.len() as u64);
    assert_eq!(report.streams[0].verified_through, None);
    assert_eq!(
        report.streams[0]
            .notes
            .iter()
            .map(|n| (n.seq, n.kind.as_str()))
            .collect::<Vec<_>>(),
        [(raw.len() as u64, "pending")]
    );
    let other = pipeline.ingest(&second).unwrap();
    assert_eq!((other.stored, other.conflicts), (second.len() as u64, 0));
    assert!(
        other.events.is_empty(),
        "{:?}",
        other.events.iter().take(3).collect::<Vec<_>>()
    );
    let report = integrity(&mut conn).unwrap();
    assert_eq!(report.streams[0].missing, 0);
    assert!(
        report.streams[0].breaks.is_empty(),
        "{:?}",
        report.streams[0].breaks.iter().take(3).collect::<Vec<_>>()
    );
    // Where gaps past the itemised ones ended was not known when the checkpoint came:
    // it proves its lines once the last of them is filled, without waiting for the next.
    assert_eq!(report.streams[0].verified_through, Some(raw.len() as u64));
    assert!(report.streams[0].notes.is_empty());
    let uncovered = |conn: &mut crate::store::Db| {
        records::page(conn, &Filter::default(), 30_000, 0)
            .unwrap()
            .rows
            .iter()
            .filter(|(r, _)| !r.covered)
            .count()
    };
    assert_eq!(uncovered(&mut conn), 0);
    let next = [sensor.access(24_001, "alice"), sensor.checkpoint()];
    let last = pipeline
        .ingest(&lines_from(&next, raw.len() as u64 + 1))
        .unwrap();
    assert_eq!(last.stored, 2);
    let report = integrity(&mut conn).unwrap();
    assert_eq!(
        report.streams[0].verified_through,
        Some(raw.len() as u64 + 2)
    );
    assert_eq!(uncovered(&mut conn), 0);
}

/// The other hub's share can commit first: the store then meets the stream in its
/// middle, and the lines before, the start line among them, come after.
#[test]
fn lines_before_the_first_stored_come_later_and_link() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    let (early, late) = all.split_at(8);
    let first = pipeline.ingest(late).unwrap();
    assert_eq!(first.conflicts, 0);
    let before = pipeline.ingest(early).unwrap();
    assert_eq!((before.stored, before.conflicts), (8, 0));
    assert!(before.events.is_empty(), "{:?}", before.events);
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    let web1 = &report.streams[0];
    assert_eq!(
        (web1.missing, web1.breaks.len()),
        (0, 0),
        "{:?}",
        web1.breaks
    );
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(covered(&page), (2..=21).rev().collect::<Vec<_>>());
}

/// JetStream redelivers a killed hub's unacknowledged batch after later messages, so a
/// checkpoint can arrive before the line it commits to.
#[test]
fn a_checkpoint_that_arrives_before_its_head_line_is_proven_when_the_line_comes() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    // Seq 21 is the checkpoint's head (seq 22): it comes last.
    let (before, rest) = all.split_at(20);
    let (head_line, after) = rest.split_at(1);
    pipeline.ingest(before).unwrap();
    let early = pipeline.ingest(after).unwrap();
    assert!(early.events.is_empty(), "{:?}", early.events);
    let late = pipeline.ingest(head_line).unwrap();
    assert_eq!(late.stored, 1);
    assert!(late.events.is_empty(), "{:?}", late.events);
    let mut conn = store.open_reader().unwrap();
    let report = integrity(&mut conn).unwrap();
    assert!(
        report.streams[0].breaks.is_empty(),
        "{:?}",
        report.streams[0].breaks
    );
    assert_eq!(report.streams[0].missing, 0);
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(page.rows.iter().filter(|(r, _)| r.covered).count(), 20);
}

#[test]
fn retention_deletes_old_lines_in_chunks_and_they_are_not_stored_again() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let keys = [format!("web1={key}")];
    let (mut pipeline, store) = pipeline(dir.path(), &keys);
    pipeline.ingest(&lines(&raw)).unwrap();
    // The start (02:00:00) and access lines 1..=10 (02:00:01..=02:00:10, seqs 2..=11)
    // are older than the cutoff.
    let cutoff = crate::when::parse_rfc3339_ns("2026-12-03T02:00:11Z").unwrap();
    let steps = expire_all(&mut pipeline, cutoff, 4);
    assert_eq!(steps, [4, 4, 3], "chunks of at most 4 lines");

    let mut conn = store.open_reader().unwrap();
    let left = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let mut seqs: Vec<u64> = left.rows.iter().map(|(r, _)| r.seq).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (12..=21).chain(23..=27).collect::<Vec<_>>());
    let report = integrity(&mut conn).unwrap();
    let web1 = &report.streams[0];
    let expired = web1.expired.as_ref().expect("retention is reported");
    assert_eq!((expired.lines, expired.through_seq), (11, 11));
    assert!(web1.breaks.is_empty(), "{:?}", web1.breaks);

    // Lines that come back are neither stored again nor conflicts, also after a
    // restart (the chain state was committed with the deletions).
    drop(pipeline);
    let (mut pipeline, _) = self::pipeline(dir.path(), &keys);
    let again = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!(again_counts(&again), (0, 11, 16, 0));
    assert!(again.events.is_empty(), "{:?}", again.events);
}

#[test]
fn an_idle_sensor_writing_only_checkpoints_is_not_silent() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "idle");
    let (mut pipeline, _store) = pipeline(dir.path(), &[format!("idle={key}")]);
    let at = |t: &str| crate::when::parse_rfc3339_ns(t).unwrap();
    // One request at 02:00:01, then an hour of checkpoints only, every 4 minutes.
    pipeline
        .ingest(&lines(&[sensor.access(1, "alice")]))
        .unwrap();
    for minute in (4..=60).step_by(4) {
        let hour = 2 + minute / 60;
        let checkpoint =
            sensor.checkpoint_at(&format!("2026-12-03T{hour:02}:{:02}:00Z", minute % 60));
        let outcome = pipeline.ingest(&lines(&[checkpoint])).unwrap();
        assert_eq!(outcome.stored, 1);
        assert!(outcome.events.is_empty(), "{:?}", outcome.events);
    }
    // The silence bound is 5 minutes: at 03:04 the last word is the 03:00 checkpoint.
    assert!(
        pipeline
            .tick(at("2026-12-03T03:04:00Z"))
            .unwrap()
            .is_empty()
    );
    // Once the checkpoints stop too, the sensor is silent.
    assert_eq!(pipeline.tick(at("2026-12-03T03:06:00Z")).unwrap().len(), 1);
}

/// A checkpoint at 02:00:02, then ten minutes of records and no checkpoint.
fn records_after_the_last_checkpoint(dir: &Path) -> (Vec<Vec<u8>>, String) {
    let (mut sensor, key) = Sensor::new(dir, "web1");
    let mut raw = vec![start_line("web1"), sensor.access(1, "alice")];
    raw.push(sensor.checkpoint_at("2026-12-03T02:00:02Z"));
    raw.extend((60..=600).step_by(60).map(|n| sensor.access(n, "alice")));
    (raw, key)
}

#[test]
fn with_a_key_only_signed_checkpoints_say_the_sensor_runs() {
    let at = crate::when::parse_rfc3339_ns("2026-12-03T02:10:00Z").unwrap();
    // Records link whoever wrote them: a killed sensor's stream could go on.
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = records_after_the_last_checkpoint(dir.path());
    let (mut keyed, _) = pipeline(dir.path(), &[format!("web1={key}")]);
    keyed.ingest(&lines(&raw)).unwrap();
    assert_eq!(keyed.tick(at).unwrap().len(), 1, "silent since 02:00:02");
    // Without a key nothing is signed, and every verified line counts.
    let dir = tempfile::tempdir().unwrap();
    let (raw, _) = records_after_the_last_checkpoint(dir.path());
    let (mut unkeyed, _) = pipeline(dir.path(), &[]);
    unkeyed.ingest(&lines(&raw)).unwrap();
    assert!(unkeyed.tick(at).unwrap().is_empty());
}

#[test]
fn a_silent_sensor_alert_is_resolved_when_its_stream_speaks_again() {
    let dir = tempfile::tempdir().unwrap();
    let (raw, key) = stream(dir.path(), "web1");
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    let all = lines(&raw);
    pipeline.ingest(&all[..5]).unwrap();
    // Half an hour after the last line, on the hub's clock.
    let later = crate::when::parse_rfc3339_ns("2026-12-03T02:30:00Z").unwrap();
    let raised = pipeline.tick(later).unwrap();
    assert_eq!(raised.len(), 1);
    let mut conn = store.open_reader().unwrap();
    let silent = |conn: &mut crate::store::Db| alerts_of(conn, "sensor_silent");
    let open = silent(&mut conn);
    assert_eq!(open.len(), 1);
    assert_eq!(open[0].resolved_ns, None);
    let back = pipeline.ingest(&all[5..]).unwrap();
    assert!(
        back.alerts.contains(&open[0].id),
        "the resolution is delivered: {:?}",
        back.alerts
    );
    let resolved = silent(&mut conn);
    assert!(resolved[0].resolved_ns.is_some(), "{resolved:?}");
    assert!(resolved[0].revision > open[0].revision);
    assert!(pipeline.tick(later + 60_000_000_000).unwrap().is_empty());
}

/// Days wholly older than the cutoff go whole, one per step; the day the cutoff falls
/// in loses its older lines in chunks. A checkpoint covers lines across days.
#[test]
fn retention_drops_whole_days_and_deletes_the_older_lines_of_the_cutoffs_day() {
    let dir = tempfile::tempdir().unwrap();
    retention_by_day(
        dir.path(),
        StoreAt::Sqlite {
            data: dir.path().join("data"),
        },
    );
}

/// The same on PostgreSQL (a throwaway cluster), whose days are partitions.
#[test]
fn retention_drops_whole_days_and_deletes_the_older_lines_of_the_cutoffs_day_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let store = postgres_store(&postgres);
    retention_by_day(dir.path(), store);
}

fn retention_by_day(dir: &Path, store: StoreAt) {
    let (mut sensor, key) = Sensor::new(dir, "web1");
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut start).unwrap();
    Chain::new("web1".parse::<StreamId>().unwrap(), 1, ZERO_HASH).seal(&mut start, Kind::Start);
    start.pop();
    let mut raw = vec![start];
    for (n, day) in [
        (1, "03"),
        (2, "03"),
        (3, "03"),
        (4, "04"),
        (5, "04"),
        (6, "04"),
    ] {
        raw.push(sensor.access_at(&format!("2026-12-{day}T10:00:0{n}Z"), n, "alice"));
    }
    raw.push(sensor.checkpoint_at("2026-12-04T11:00:00Z"));
    for n in 7..=9 {
        raw.push(sensor.access_at(&format!("2026-12-05T10:00:0{n}Z"), n, "bob"));
    }
    let keys = [format!("web1={key}")];
    let (mut pipeline, store) = pipeline_at(store, &keys);
    assert_eq!(pipeline.ingest(&lines(&raw)).unwrap().stored, 11);
    let mut conn = store.open_reader().unwrap();
    let page = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    assert_eq!(
        covered(&page),
        [7, 6, 5, 4, 3, 2],
        "across two days' tables"
    );
    // The day tables, or partitions, that hold records.
    let days = |conn: &mut crate::store::Db| {
        let sql = match conn.dialect() {
            crate::store::Dialect::Sqlite => {
                "SELECT name FROM sqlite_schema WHERE name GLOB 'records_d*' AND type = 'table'"
            }
            crate::store::Dialect::Postgres => {
                "SELECT relname FROM pg_class WHERE relname ~ '^records_d[0-9]+$' AND relkind = 'r'"
            }
        };
        let mut names: Vec<String> = conn
            .query(sql, crate::store::db::args![])
            .unwrap()
            .iter()
            .map(|r| r.get(0).unwrap())
            .collect();
        names.sort_unstable();
        names
    };
    assert_eq!(
        days(&mut conn),
        ["records_d20790", "records_d20791", "records_d20792"]
    );

    let cutoff = crate::when::parse_rfc3339_ns("2026-12-04T12:00:00Z").unwrap();
    let steps = expire_all(&mut pipeline, cutoff, 2);
    assert_eq!(steps, [4, 2, 2, 0], "a whole day, then chunks of at most 2");
    assert_eq!(days(&mut conn), ["records_d20791", "records_d20792"]);
    let left = records::page(&mut conn, &Filter::default(), 100, 0).unwrap();
    let seqs: Vec<u64> = left.rows.iter().map(|(r, _)| r.seq).collect();
    assert_eq!(seqs, [11, 10, 9]);
    let report = integrity(&mut conn).unwrap();
    let expired = report.streams[0]
        .expired
        .as_ref()
        .expect("retention is reported");
    assert_eq!((expired.lines, expired.through_seq), (8, 8));

    let again = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!(again_counts(&again), (0, 8, 3, 0));
}

#[test]
fn a_batch_the_store_fails_midway_stores_nothing_and_whole_when_given_again() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut start = Vec::new();
    write_record(Start::New, "2026-12-03T02:00:00Z", "fp", &mut start).unwrap();
    Chain::new("web1".parse::<StreamId>().unwrap(), 1, ZERO_HASH).seal(&mut start, Kind::Start);
    start.pop();
    // More lines than the preparing thread may hold ready (16 chunks of 256): the
    // writer fails while that thread still waits to hand lines over.
    let mut raw = vec![start];
    for n in 1..=5_000 {
        raw.push(sensor.access(n, if n % 3 == 0 { "alice" } else { "bob" }));
    }
    raw.push(sensor.checkpoint());
    let keys = [format!("web1={key}")];
    let (mut hub, store) = pipeline(dir.path(), &keys);
    // The start line makes the day's table, which the fault is put on.
    hub.ingest(&lines(&raw[..1])).unwrap();
    // A SQLite store displays as its file.
    let fault = rusqlite::Connection::open(store.to_string()).unwrap();
    fault
        .execute_batch(
            "CREATE TRIGGER injected BEFORE INSERT ON records_d20790 WHEN NEW.seq = 3000
             BEGIN SELECT RAISE(ABORT, 'injected fault'); END;",
        )
        .unwrap();
    let failed = hub.ingest(&lines(&raw)).unwrap_err();
    assert!(
        format!("{failed:#}").contains("injected fault"),
        "{failed:#}"
    );
    let mut conn = store.open_reader().unwrap();
    let stored: i64 = conn
        .query_row(
            "SELECT count(*) FROM records_d20790",
            crate::store::db::args![],
        )
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(stored, 1, "the failed batch's transaction is rolled back");

    fault.execute_batch("DROP TRIGGER injected").unwrap();
    let outcome = hub.ingest(&lines(&raw)).unwrap();
    assert_eq!(
        (outcome.stored, outcome.duplicates, outcome.rejected),
        (5_001, 1, 0)
    );
    assert!(outcome.events.is_empty(), "{:?}", outcome.events);

    // The detections resumed from the store: the same alerts as a hub that never failed.
    let clean = tempfile::tempdir().unwrap();
    let (mut reference, reference_store) = pipeline(clean.path(), &keys);
    reference.ingest(&lines(&raw)).unwrap();
    let alerts = |store: &StoreAt| {
        let mut conn = store.open_reader().unwrap();
        conn.query(
            "SELECT rule, entity, count, first_ns, last_ns FROM alerts ORDER BY id",
            crate::store::db::args![],
        )
        .unwrap()
        .iter()
        .map(|row| {
            (
                row.get::<String>(0).unwrap(),
                row.get::<String>(1).unwrap(),
                row.get::<i64>(2).unwrap(),
                row.get::<i64>(3).unwrap(),
                row.get::<i64>(4).unwrap(),
            )
        })
        .collect::<Vec<_>>()
    };
    let expected = alerts(&reference_store);
    assert!(!expected.is_empty(), "the stream raises alerts");
    assert_eq!(alerts(&store), expected);
}

/// Once enough lines came to train the store's dictionary, lines are stored compressed
/// (the batch that trained it too), and every question gives them back byte for byte:
/// the page, the JSONL export and one record's detail with its checkpoint.
#[test]
fn lines_stored_compressed_come_back_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut raw: Vec<Vec<u8>> = (0..TRAINING_LINES as u64 + 500)
        .map(|n| sensor.access(n % 3_600, &format!("user{}", n % 13)))
        .collect();
    raw.push(sensor.checkpoint());
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    // Fewer lines than training needs: stored as they came.
    let (first, rest) = raw.split_at(100);
    assert_eq!(pipeline.ingest(&lines(first)).unwrap().stored, 100);
    assert_eq!(
        pipeline.ingest(&lines(rest)).unwrap().stored,
        rest.len() as u64
    );

    let mut conn = store.open_reader().unwrap();
    let stored: Vec<Vec<u8>> = conn
        .query("SELECT line FROM records_d20790 ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    assert_eq!(stored.len(), raw.len());
    assert!(stored[..100].iter().all(|l| l.starts_with(b"{")));
    // The access records after the first batch; the checkpoint's signature and hashes
    // may not compress.
    let after = 100..raw.len() - 1;
    let compressed: usize = stored[after.clone()].iter().map(Vec::len).sum();
    let original: usize = raw[after.clone()].iter().map(Vec::len).sum();
    assert!(
        stored[after].iter().all(|l| !l.starts_with(b"{")) && compressed * 2 < original,
        "{compressed} bytes stored for {original}"
    );

    let wanted = raw.len() as u64;
    let mut exported = records::lines(&mut conn, &Filter::default(), wanted).unwrap();
    exported.reverse();
    let access: Vec<Vec<u8>> = raw[..raw.len() - 1].to_vec();
    assert_eq!(exported, access, "the JSONL export, byte for byte");
    let page = records::page(&mut conn, &Filter::default(), 10, 0).unwrap();
    assert_eq!(page.rows[0].1, raw[raw.len() - 2]);
    // The start line took seq 1: raw[i] is seq i + 2.
    let detail = records::detail(&mut conn, "web1", 2_001).unwrap().unwrap();
    let expected: serde_json::Map<String, serde_json::Value> =
        serde_json::from_slice(&raw[1_999]).unwrap();
    assert_eq!(detail.fields, expected);
    let checkpoint = detail.proof.checkpoint.expect("covered by the checkpoint");
    assert!(checkpoint.key_fingerprint.is_some(), "read from its line");
}

/// The dictionary is trained on records only: lines over [`MAX_SAMPLE_BYTES`] (a
/// stream may send 2,000 lines of 1 MiB) and junk are not kept as samples.
#[test]
fn a_compressed_stored_line_that_fails_its_hash_given_again_is_a_duplicate() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut raw: Vec<Vec<u8>> = (0..TRAINING_LINES as u64 + 500)
        .map(|n| sensor.access(n % 3_600, &format!("user{}", n % 13)))
        .collect();
    raw[300] = String::from_utf8(raw[300].clone())
        .unwrap()
        .replace("/orders/", "/ORDERS/")
        .into_bytes();
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    pipeline.ingest(&lines(&raw[..100])).unwrap();
    let rest = pipeline.ingest(&lines(&raw[100..])).unwrap();
    assert!(kinds(&rest).contains(&(302, EventKind::Modified)));
    let mut conn = store.open_reader().unwrap();
    let stored: Vec<u8> = conn
        .query_row("SELECT line FROM records_d20790 WHERE seq = 302", &[])
        .unwrap()
        .get(0)
        .unwrap();
    assert!(!stored.starts_with(b"{"), "stored compressed");
    // The tampered seq 302 given again, byte for byte; its stored copy is compressed.
    let again = pipeline.ingest(&lines(&raw[300..301])).unwrap();
    assert_eq!(
        (again.duplicates, again.conflicts, kinds(&again)),
        (1, 0, vec![])
    );
}

#[test]
fn long_lines_and_junk_are_not_sampled_for_the_dictionary() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let long_name = "u".repeat(MAX_SAMPLE_BYTES);
    let mut raw: Vec<Vec<u8>> = (0..TRAINING_LINES as u64)
        .map(|n| sensor.access(n % 3_600, &long_name))
        .collect();
    raw.extend((0..TRAINING_LINES).map(|n| format!("junk {n}").into_bytes()));
    let (mut pipeline, _) = pipeline(dir.path(), &[format!("web1={key}")]);
    let outcome = pipeline.ingest(&lines(&raw)).unwrap();
    assert_eq!(
        (outcome.stored, outcome.rejected),
        (TRAINING_LINES as u64, TRAINING_LINES as u64)
    );
    assert!(pipeline.samples.is_empty());
    assert!(pipeline.writer.dictionary().is_none());
}

/// The dictionary trained on a store's first lines is replaced once the lines change so
/// much that it stores them half again larger than it did; lines compressed with
/// either come back byte for byte.
#[test]
fn a_dictionary_the_lines_outgrew_is_replaced_by_one_trained_on_them() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let first: Vec<Vec<u8>> = (0..2_500)
        .map(|n| sensor.access(n % 3_600, &format!("user{}", n % 13)))
        .collect();
    // Then another fleet's lines: fields and values the first lines never had.
    let more = r#","user_agent.original":"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36","url.domain":"payments.internal.example.com","service.name":"payments-api","service.environment":"production-eu-west-3""#;
    let later: Vec<Vec<u8>> = (0..13_000)
        .map(|n| {
            let at = format!(
                "2026-12-03T{:02}:{:02}:{:02}Z",
                3 + n / 3_600,
                n / 60 % 60,
                n % 60
            );
            sensor.access_with(&at, n, &format!("svc-{}", n % 17), more)
        })
        .collect();
    let (worn, retrained) = later.split_at(10_000);
    let (mut pipeline, store) = pipeline(dir.path(), &[format!("web1={key}")]);
    for batch in [&first[..], worn, retrained] {
        assert_eq!(
            pipeline.ingest(&lines(batch)).unwrap().stored,
            batch.len() as u64
        );
    }

    let mut conn = store.open_reader().unwrap();
    let dictionaries: i64 = conn
        .query_row("SELECT count(*) FROM line_dictionaries", &[])
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(dictionaries, 2);
    let stored: Vec<i64> = conn
        .query("SELECT length(line) FROM records_d20790 ORDER BY seq", &[])
        .unwrap()
        .iter()
        .map(|r| r.get(0).unwrap())
        .collect();
    let mean = |lines: &[i64]| lines.iter().sum::<i64>() as f64 / lines.len() as f64;
    let (with_first, with_second) = stored[first.len()..].split_at(worn.len());
    assert!(
        mean(with_second) < 0.7 * mean(with_first),
        "{} bytes a line with the first dictionary, {} with the second",
        mean(with_first),
        mean(with_second)
    );

    let all: Vec<Vec<u8>> = first.iter().chain(&later).cloned().collect();
    let mut exported = records::lines(&mut conn, &Filter::default(), all.len() as u64).unwrap();
    exported.reverse();
    assert_eq!(exported, all, "the JSONL export, byte for byte");
}

/// Every stored access record as `query` lists it, with its stored line.
fn listed(store: &StoreAt) -> Vec<String> {
    let mut conn = store.open_reader().unwrap();
    records::page(&mut conn, &Filter::default(), 1_000, 0)
        .unwrap()
        .rows
        .iter()
        .map(|(row, line)| format!("{row:?} {}", String::from_utf8_lossy(line)))
        .collect()
}

/// Lines of the next batch taken apart while one commits are stored, when their batch
/// comes, as if taken apart with it; offered to a batch of other lines, they are not
/// used. What is taken apart during a commit depends on timing, so the lines ahead are
/// taken apart here as that thread would.
#[test]
fn lines_taken_apart_ahead_are_stored_only_with_the_batch_they_came_from() {
    let dir = tempfile::tempdir().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut raw: Vec<Vec<u8>> = (1..=60)
        .map(|n| sensor.access(n, &format!("user{}", n % 3)))
        .collect();
    raw.push(sensor.checkpoint());
    let (first, second) = (lines_from(&raw[..30], 1), lines_from(&raw[30..], 31));
    let keys = [format!("web1={key}")];
    let ahead_of = |pipeline: &Pipeline, next: &[Line]| {
        let mut ahead = Ahead::default();
        for line in &next[..10] {
            ahead.push(
                line,
                prepare(line, &pipeline.keys, &pipeline.enricher, None),
            );
        }
        ahead
    };

    let (mut plain, plain_store) = pipeline(&dir.path().join("plain"), &keys);
    plain.ingest(&first).unwrap();
    plain.ingest(&second).unwrap();

    let (mut ahead, ahead_store) = pipeline(&dir.path().join("ahead"), &keys);
    ahead.ingest(&first).unwrap();
    // How many of the lines taken ahead a batch of `lines` would take.
    let taken = |pipeline: &mut Pipeline, lines: &[Line]| {
        let lines: Vec<&Line> = lines.iter().collect();
        pipeline.ahead.take_for(&lines).prepared.len()
    };
    ahead.ahead = ahead_of(&ahead, &second);
    assert_eq!(taken(&mut ahead, &second), 10);
    ahead.ahead = ahead_of(&ahead, &second);
    assert_eq!(ahead.ingest(&second).unwrap().stored, 31);
    assert_eq!(listed(&ahead_store), listed(&plain_store));

    // A batch that ends before the lines taken ahead: the rest wait for the next.
    let (mut split, split_store) = pipeline(&dir.path().join("split"), &keys);
    split.ingest(&first).unwrap();
    split.ahead = ahead_of(&split, &second);
    split.ingest(&second[..4]).unwrap();
    assert_eq!(split.ahead.prepared.len(), 6, "kept for the next batch");
    split.ingest(&second[4..]).unwrap();
    assert!(split.ahead.prepared.is_empty());
    assert_eq!(listed(&split_store), listed(&plain_store));

    // Offered the second batch's lines ahead, the first batch of another pipeline
    // stores its own lines.
    let (mut other, other_store) = pipeline(&dir.path().join("other"), &keys);
    other.ahead = ahead_of(&other, &second);
    assert_eq!(taken(&mut other, &first), 0);
    other.ahead = ahead_of(&other, &second);
    other.ingest(&first).unwrap();
    other.ingest(&second).unwrap();
    assert_eq!(listed(&other_store), listed(&plain_store));
}

/// Hubs sharing a PostgreSQL store each store a share of a stream and feed what they
/// stored to the one that leads the detections: a burst split between two hubs, 12
/// denied requests each, is counted whole (24 against a threshold of 20), as one hub
/// that took every line counts it, even when the lead changes hands midway. One line
/// comes late: the gap alert it raised is resolved when it is filled.
#[test]
fn a_burst_split_between_two_hubs_is_counted_whole_by_the_leader_postgres() {
    let dir = tempfile::tempdir().unwrap();
    let postgres = ::tests::servers::Postgres::start().unwrap();
    let (mut sensor, key) = Sensor::new(dir.path(), "web1");
    let mut raw = vec![start_line("web1")];
    for n in 1..=24 {
        raw.push(sensor.denied_at(&format!("2026-12-03T02:00:{n:02}Z"), "mallory"));
    }
    let all = lines(&raw);
    let keys = [format!("web1={key}")];

    // One hub that takes every line: what the fleet must match.
    let (mut single, single_store) = pipeline(&dir.path().join("single"), &keys);
    single.ingest(&all).unwrap();
    let expected = alerts_of(&mut single_store.open_reader().unwrap(), "auth_failures");
    assert!(
        expected.iter().any(|a| a.entity == "user:mallory"),
        "{expected:?}"
    );

    let store = postgres_store(&postgres);
    let (mut a, _) = pipeline_at(store.clone(), &keys);
    let (mut b, _) = pipeline_at(store.clone(), &keys);
    // A damaged entry first: left out and said, not read again and again.
    store
        .open_deliveries()
        .unwrap()
        .execute(
            "INSERT INTO detect_feed (id, body) VALUES (nextval('detect_feed_ids'), ?1)",
            &[&b"not a feed entry".to_vec()],
        )
        .unwrap();
    a.feed_detections();
    b.feed_detections();
    for chunk in all[..12].chunks(4) {
        a.ingest(chunk).unwrap();
    }
    for chunk in all[13..].chunks(4) {
        b.ingest(chunk).unwrap();
    }
    a.ingest(&all[12..13]).unwrap();
    let mut conn = store.open_reader().unwrap();
    assert!(alerts_of(&mut conn, "auth_failures").is_empty());

    let enricher = || Enricher::load(&EnrichSettings::default()).unwrap();
    let detector: fn(&mut crate::store::Writer) -> anyhow::Result<Detector> = |writer| {
        Ok(Detector::new(
            crate::detect::Detections::load(None)?,
            None,
            writer.detect_state()?,
        ))
    };
    let mut first = Leader::new(store.open_writer().unwrap(), enricher(), Box::new(detector));
    let mut second = Leader::new(store.open_writer().unwrap(), enricher(), Box::new(detector));
    let stepped = first.step(None).unwrap();
    assert!(stepped.leads && stepped.more, "{stepped:?}");
    assert_eq!(stepped.damaged.len(), 1, "{stepped:?}");
    assert!(
        stepped.damaged[0].starts_with("feed entry 1: "),
        "{stepped:?}"
    );
    assert!(!second.step(None).unwrap().leads, "one hub leads at a time");
    // Eight entries: the damaged one, a's four batches and b's three; four were read.
    assert_eq!(first.backlog().unwrap(), Some(4));
    assert_eq!(second.backlog().unwrap(), None);
    // The leader stops (its connection closes): the other takes over where it got to.
    drop(first);
    let mut waited = 0;
    let mut stepped = second.step(None).unwrap();
    while !stepped.leads {
        waited += 1;
        assert!(waited < 200, "the lead was not released");
        std::thread::sleep(std::time::Duration::from_millis(50));
        stepped = second.step(None).unwrap();
    }
    while stepped.more {
        stepped = second.step(None).unwrap();
    }
    let fleet = alerts_of(&mut conn, "auth_failures");
    // The late line came last, so the fleet's first finding is the 21st line's, not the
    // 20th's: the same count, a later start.
    let shown = |alerts: &[crate::store::alerts::Alert]| {
        let mut shown: Vec<_> = alerts
            .iter()
            .map(|a| (a.entity.clone(), a.count, a.last_ns))
            .collect();
        shown.sort();
        shown
    };
    assert_eq!(shown(&fleet), shown(&expected));
    let gaps = alerts_of(&mut conn, "chain_gap");
    assert_eq!(gaps.len(), 1, "{gaps:?}");
    assert!(gaps[0].resolved_ns.is_some(), "{gaps:?}");
    let left: i64 = conn
        .query_row("SELECT count(*) FROM detect_feed", &[])
        .unwrap()
        .get(0)
        .unwrap();
    assert_eq!(left, 0, "what the detections saw leaves the feed");
}
