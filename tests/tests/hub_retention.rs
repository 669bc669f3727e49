//! Retention through the real binary, on both stores: `tracer-hub import --retain`
//! drops the days older than the cutoff, a re-import of the same lines stores none of
//! them again, and `integrity` says what went. The stream is sealed by tracer-audit's
//! own chain and checkpoint writers, with dates days in the past, which a live sensor
//! cannot produce.
use std::path::Path;

use anyhow::{Result, anyhow};
use serde_json::Value;
use tests::{
    hub::{Store, ok, run},
    servers::Postgres,
};
use tracer_audit::{
    Kind, StreamId,
    chain::{Chain, ZERO_HASH},
    checkpoint::{Checkpointer, Reason},
    key::AuditKey,
    start::{Start, write_record},
    timestamp::format_rfc3339_ns,
};

const HOUR_NS: i128 = 3_600_000_000_000;
const DAY_NS: i128 = 24 * HOUR_NS;

/// Access lines 3 days old, 25 hours old and 1 hour old, 4 of each, a checkpoint after
/// each group; returns the file's lines, the key argument and the first line's time.
fn stream(dir: &Path) -> Result<(Vec<String>, String, i128)> {
    let key = AuditKey::load_or_create(&dir.join("web1.key"))?;
    let public = format!("web1={}", key.public().base64());
    let mut checkpointer = Checkpointer::new(key, None);
    let mut chain = Chain::new(
        "web1".parse::<StreamId>().map_err(anyhow::Error::msg)?,
        1,
        ZERO_HASH,
    );
    let now = i128::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
    )?;
    let mut out = Vec::new();
    let mut line = Vec::new();
    let mut push = |line: &mut Vec<u8>| -> Result<()> {
        out.push(String::from_utf8(
            line.strip_suffix(b"\n").unwrap_or(line).to_vec(),
        )?);
        line.clear();
        Ok(())
    };
    let first = now - 3 * DAY_NS;
    write_record(
        Start::New,
        &format_rfc3339_ns(first),
        checkpointer.fingerprint(),
        &mut line,
    )?;
    chain.seal(&mut line, Kind::Start);
    push(&mut line)?;
    for (group, at) in [first, now - DAY_NS - HOUR_NS, now - HOUR_NS]
        .into_iter()
        .enumerate()
    {
        for n in 0..4 {
            let ts = format_rfc3339_ns(at + i128::from(n) * 1_000_000_000);
            line.extend_from_slice(
                format!(
                    r#"{{"timestamp":"{ts}","http.request.method":"GET","url.path":"/g{group}/{n}","http.response.status_code":200,"client.address":"192.0.2.7","user.name":"alice"}}"#
                )
                .as_bytes(),
            );
            chain.seal(&mut line, Kind::Access);
            push(&mut line)?;
        }
        let ts = format_rfc3339_ns(at + 10_000_000_000);
        checkpointer.write(&mut chain, Reason::Records, 4, &ts, &mut line)?;
        push(&mut line)?;
    }
    Ok((out, public, first))
}

#[test]
fn retention_drops_old_days_and_what_it_dropped_is_not_stored_again() -> Result<()> {
    let dir = tempfile::tempdir()?;
    retention(&Store::Sqlite(dir.path().join("data")), dir.path(), None)
}

#[test]
fn retention_drops_old_days_and_what_it_dropped_is_not_stored_again_postgres() -> Result<()> {
    let dir = tempfile::tempdir()?;
    let postgres = Postgres::start()?;
    retention(
        &Store::Postgres(postgres.url()),
        dir.path(),
        Some(&postgres),
    )
}

fn retention(store: &Store, dir: &Path, postgres: Option<&Postgres>) -> Result<()> {
    let (lines, key, first) = stream(dir)?;
    let file = dir.join("web1.jsonl");
    std::fs::write(&file, lines.join("\n") + "\n")?;
    let file = file.to_str().ok_or_else(|| anyhow!("non-UTF-8 temp dir"))?;
    let import = |extra: &[&str]| {
        let args = [
            &["import"],
            &store.args()?[..],
            &["--key", &key],
            extra,
            &[file],
        ]
        .concat();
        run(&args)
    };

    // Everything first, then a day's retention over what is stored.
    let all = import(&[])?;
    assert!(all.ok, "{}", all.stderr);
    assert!(all.stderr.contains("16 stored"), "{}", all.stderr);
    if let Some(postgres) = postgres {
        let days = postgres.psql(
            "SELECT count(*) FROM pg_class WHERE relname ~ '^records_d[0-9]+$' AND relkind = 'r'",
        )?;
        assert!(days.trim().parse::<u32>()? >= 2, "{days}");
    }
    let again = import(&["--retain", "1d"])?;
    assert!(again.ok, "{}", again.stderr);
    // The start, the first group and its checkpoint (3 days old), the second group and
    // its checkpoint (25 hours old): 11 lines, every one already stored.
    assert!(
        again.stderr.contains("retention: deleted 11 line(s)"),
        "{}",
        again.stderr
    );
    assert!(again.stderr.contains("0 stored"), "{}", again.stderr);

    let stored = ok(&[&["query"], &store.args()?[..], &["--format", "jsonl"]].concat())?;
    let paths: Vec<String> = stored
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).map(|v| v["url.path"].to_string()))
        .collect::<Result<_, _>>()?;
    assert_eq!(
        paths,
        [r#""/g2/3""#, r#""/g2/2""#, r#""/g2/1""#, r#""/g2/0""#]
    );
    let integrity: Value = serde_json::from_str(&ok(&[
        &["integrity"],
        &store.args()?[..],
        &["--format", "json"],
    ]
    .concat())?)?;
    let stream = &integrity["streams"][0];
    assert_eq!(stream["expired"]["lines"], 11, "{integrity}");
    assert_eq!(stream["expired"]["through_seq"], 11, "{integrity}");
    assert_eq!(stream["breaks"], Value::Array(Vec::new()), "{integrity}");
    if let Some(postgres) = postgres {
        // The 3-day-old day is gone as a whole partition.
        let day = first / DAY_NS;
        let left = postgres.psql(&format!(
            "SELECT count(*) FROM pg_class WHERE relname = 'records_d{day}'"
        ))?;
        assert_eq!(left.trim(), "0", "records_d{day} was dropped");
    }

    // The file once more: what retention deleted is neither stored again nor a conflict.
    let third = import(&["--retain", "1d"])?;
    assert!(third.ok, "{}", third.stderr);
    assert!(
        third
            .stderr
            .contains("0 stored, 5 already stored, 0 conflicting, 11 expired by retention"),
        "{}",
        third.stderr
    );
    Ok(())
}
