//! `query`, `top` and `integrity`, straight from the store, or through a running hub's
//! API with `--hub`. From the store they work while `serve` ingests
//! (SQLite WAL lets readers see the last commit without blocking the writer).
use std::io::Write as _;

use anyhow::bail;
use clap::ValueEnum as _;
use serde::Deserialize;

use super::remote::RemoteHub;
use crate::{
    cli::{ConflictsArgs, IntegrityArgs, QueryArgs, ReportFormat, RowFormat, StoreArgs, TopArgs},
    query::{
        format,
        integrity::{conflict_lines, integrity},
        records::{self, Row},
        top::{TopRow, top},
    },
    serve::{MAX_EXPORT, MAX_LIMIT},
    store::Db,
    when::now_ns,
};

fn reader(store: &StoreArgs) -> anyhow::Result<Db> {
    store.at()?.open_reader()
}

/// `/api/records` as JSON.
#[derive(Deserialize)]
struct RecordsAnswer {
    records: Vec<Row>,
    total: u64,
    total_capped: bool,
}

/// `/api/top/KIND`.
#[derive(Deserialize)]
struct TopAnswer {
    rows: Vec<TopRow>,
}

pub fn query(args: &QueryArgs) -> anyhow::Result<()> {
    // Checked here too, so a bad filter is the same clear error with or without --hub.
    let filter = args.filter.check(now_ns())?;
    if let Some(hub) = RemoteHub::from_args(&args.source)? {
        return query_hub(&hub, args);
    }
    let mut conn = reader(&args.source.store)?;
    match args.format {
        RowFormat::Jsonl => {
            // Stdout is line-buffered: one write per line would be a syscall per record.
            let mut out = std::io::BufWriter::new(std::io::stdout().lock());
            for line in records::lines(&mut conn, &filter, args.limit)? {
                out.write_all(&line)?;
                out.write_all(b"\n")?;
            }
            out.flush()?;
        }
        RowFormat::Csv => {
            let page = records::page(&mut conn, &filter, args.limit, 0)?;
            std::io::stdout()
                .lock()
                .write_all(format::csv(page.rows.iter().map(|(r, _)| r)).as_bytes())?;
        }
        RowFormat::Table => {
            let page = records::page(&mut conn, &filter, args.limit, 0)?;
            print_rows(
                page.rows.iter().map(|(r, _)| r),
                page.total,
                page.total >= records::COUNT_CAP,
            )?;
        }
    }
    Ok(())
}

/// The same answers from the hub's API: JSONL and CSV are its exports (the stored lines
/// byte for byte), the table is made here from its JSON rows.
fn query_hub(hub: &RemoteHub, args: &QueryArgs) -> anyhow::Result<()> {
    let (most, format) = match args.format {
        RowFormat::Jsonl => (MAX_EXPORT, Some("jsonl")),
        RowFormat::Csv => (MAX_EXPORT, Some("csv")),
        RowFormat::Table => (MAX_LIMIT, None),
    };
    if args.limit > most {
        bail!(
            "--limit {}: a hub answers at most {most} rows in this format; ask for fewer, or use --format jsonl",
            args.limit
        );
    }
    let limit = args.limit.to_string();
    let mut params = args.filter.pairs();
    params.push(("limit", &limit));
    params.extend(format.map(|f| ("format", f)));
    match format {
        Some(_) => std::io::stdout()
            .lock()
            .write_all(&hub.get("/api/records", &params)?)?,
        None => {
            let answer: RecordsAnswer = hub.json("/api/records", &params)?;
            print_rows(answer.records.iter(), answer.total, answer.total_capped)?;
        }
    }
    Ok(())
}

fn print_rows<'a>(
    rows: impl ExactSizeIterator<Item = &'a Row>,
    total: u64,
    capped: bool,
) -> anyhow::Result<()> {
    let shown = rows.len();
    std::io::stdout()
        .lock()
        .write_all(format::rows_table(rows).as_bytes())?;
    let more = if capped { "+" } else { "" };
    eprintln!("{shown} of {total}{more} matching records");
    Ok(())
}

pub fn top_list(args: &TopArgs) -> anyhow::Result<()> {
    let now = now_ns();
    let mut filter = args.filter.check(now)?;
    filter.from_ns.get_or_insert(now - 86_400_000_000_000);
    let rows = match RemoteHub::from_args(&args.source)? {
        Some(hub) => {
            if args.limit > MAX_LIMIT {
                bail!(
                    "--limit {}: a hub answers at most {MAX_LIMIT} rows",
                    args.limit
                );
            }
            let kind = args
                .kind
                .to_possible_value()
                .map(|v| v.get_name().to_owned())
                .unwrap_or_default();
            let limit = args.limit.to_string();
            let mut params = args.filter.pairs();
            params.push(("limit", &limit));
            hub.json::<TopAnswer>(&format!("/api/top/{kind}"), &params)?
                .rows
        }
        None => top(
            &mut reader(&args.source.store)?,
            args.kind,
            &filter,
            args.limit,
        )?,
    };
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ReportFormat::Table => print!("{}", format::top_table(args.kind.heading(), &rows)),
    }
    Ok(())
}

/// Every kept line from the store; at most [`MAX_EXPORT`] through a hub's API.
pub fn conflicts(args: &ConflictsArgs) -> anyhow::Result<()> {
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    if let Some(hub) = RemoteHub::from_args(&args.source)? {
        let params: Vec<(&str, &str)> =
            args.stream.iter().map(|s| ("stream", s.as_str())).collect();
        out.write_all(&hub.get("/api/conflicts", &params)?)?;
    } else {
        let mut conn = reader(&args.source.store)?;
        for line in conflict_lines(&mut conn, args.stream.as_deref(), u64::MAX)? {
            out.write_all(&line)?;
            out.write_all(b"\n")?;
        }
    }
    out.flush()?;
    Ok(())
}

pub fn integrity_report(args: &IntegrityArgs) -> anyhow::Result<()> {
    let report = match RemoteHub::from_args(&args.source)? {
        Some(hub) => hub.json("/api/integrity", &[])?,
        None => integrity(&mut reader(&args.source.store)?)?,
    };
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Table => print!("{}", format::integrity_table(&report)),
    }
    Ok(())
}
