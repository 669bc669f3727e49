//! The store's own floor: how fast each database takes in the rows the hub stored, when
//! the database copies them itself (`INSERT ... SELECT`) into empty tables with the same
//! columns and indexes, in the same batches, with nothing parsed, verified, enriched or
//! detected. Ingest cannot beat it; how close it comes is what the hub's own work costs.
//!
//! The rollups are copied as the hub left them, one row per bucket, where ingest upserts
//! a bucket once per batch that touched it: the floor is, if anything, low.
use std::{path::Path, time::Instant};

use anyhow::{Context, Result};
use rusqlite::Connection;
use tests::servers::Postgres;

/// Records per transaction, as `tracer-hub import` commits them.
const BATCH: i64 = 50_000;
const ROLLUPS: [&str; 2] = ["rollup", "rollup_users"];

/// Seconds SQLite takes to copy the records and rollups of the store at `stored` into a
/// new file in `dir`, with the hub's pragmas.
pub fn sqlite(stored: &Path, dir: &Path) -> Result<f64> {
    let file = dir.join("floor.sqlite");
    let _ = std::fs::remove_file(&file);
    let conn = Connection::open(&file).with_context(|| format!("creating {}", file.display()))?;
    conn.pragma_update(None, "journal_mode", "WAL")?;
    conn.pragma_update(None, "synchronous", "NORMAL")?;
    conn.pragma_update(None, "cache_size", -65_536)?;
    conn.pragma_update(None, "wal_autocheckpoint", 10_000)?;
    conn.execute(
        "ATTACH ?1 AS src",
        [stored.to_str().context("non-UTF-8 store path")?],
    )?;
    // The tables before their indexes.
    let ddl: Vec<String> = conn
        .prepare(
            "SELECT sql FROM src.sqlite_master
             WHERE (tbl_name GLOB 'records_*' OR tbl_name IN ('rollup', 'rollup_users'))
                AND sql IS NOT NULL
             ORDER BY type = 'index'",
        )?
        .query_map([], |r| r.get(0))?
        .collect::<rusqlite::Result<_>>()?;
    for sql in &ddl {
        conn.execute_batch(sql)?;
    }
    // The hub keeps a table per day.
    let days: Vec<(String, i64)> = conn
        .prepare(
            "SELECT name FROM src.sqlite_master WHERE type = 'table' AND name GLOB 'records_*'",
        )?
        .query_map([], |r| r.get::<_, String>(0))?
        .collect::<rusqlite::Result<Vec<_>>>()?
        .into_iter()
        .map(|table| {
            let last = conn.query_row(
                &format!("SELECT COALESCE(MAX(id), 0) FROM src.{table}"),
                [],
                |r| r.get(0),
            )?;
            Ok((table, last))
        })
        .collect::<Result<_>>()?;
    let started = Instant::now();
    for (table, last) in &days {
        let mut from = 0;
        while from < *last {
            conn.execute_batch(&format!(
                "BEGIN; INSERT INTO main.{table} SELECT * FROM src.{table}
                    WHERE id > {from} AND id <= {}; COMMIT;",
                from + BATCH
            ))?;
            from += BATCH;
        }
    }
    conn.execute_batch("BEGIN")?;
    for table in ROLLUPS {
        conn.execute_batch(&format!(
            "INSERT INTO main.{table} SELECT * FROM src.{table}"
        ))?;
    }
    conn.execute_batch("COMMIT")?;
    let seconds = started.elapsed().as_secs_f64();
    drop(conn);
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(dir.join(format!("floor.sqlite{suffix}")));
    }
    Ok(seconds)
}

/// Seconds PostgreSQL takes to copy the records and rollups of its `tracer` database
/// into tables of the same columns and indexes (`LIKE ... INCLUDING ALL`) in a schema of
/// their own, dropped afterwards.
pub fn postgres(pg: &Postgres) -> Result<f64> {
    let mut create = String::from("DROP SCHEMA IF EXISTS floor CASCADE; CREATE SCHEMA floor;");
    for table in ["records"].iter().chain(&ROLLUPS) {
        create.push_str(&format!(
            "CREATE TABLE floor.{table} (LIKE public.{table} INCLUDING ALL);"
        ));
    }
    pg.psql(&create)?;
    let last: i64 = pg
        .psql("SELECT COALESCE(MAX(seq), 0) FROM public.records")?
        .trim()
        .parse()
        .context("the records' last seq")?;
    let started = Instant::now();
    let mut from = 0;
    while from < last {
        pg.psql(&format!(
            "INSERT INTO floor.records SELECT * FROM public.records
                WHERE seq > {from} AND seq <= {} ORDER BY stream, seq",
            from + BATCH
        ))?;
        from += BATCH;
    }
    pg.psql(
        &ROLLUPS
            .iter()
            .map(|t| format!("INSERT INTO floor.{t} SELECT * FROM public.{t};"))
            .collect::<String>(),
    )?;
    let seconds = started.elapsed().as_secs_f64();
    pg.psql("DROP SCHEMA floor CASCADE")?;
    Ok(seconds)
}
