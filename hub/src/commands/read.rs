//! `query`, `top` and `integrity`, straight from the store. They work while `serve`
//! ingests (SQLite WAL lets readers see the last commit without blocking the writer).
use std::io::Write as _;

use crate::{
    cli::{IntegrityArgs, QueryArgs, ReportFormat, RowFormat, StoreArgs, TopArgs},
    query::{format, integrity::integrity, records, top::top},
    store::StoreAt,
    when::now_ns,
};

fn reader(store: &StoreArgs) -> anyhow::Result<rusqlite::Connection> {
    StoreAt {
        data: store.data.clone(),
    }
    .open_reader()
}

pub fn query(args: &QueryArgs) -> anyhow::Result<()> {
    let filter = args.filter.check(now_ns())?;
    let conn = reader(&args.store)?;
    let page = records::page(&conn, &filter, args.limit, 0)?;
    let mut out = std::io::stdout().lock();
    match args.format {
        RowFormat::Jsonl => {
            for (_, line) in &page.rows {
                out.write_all(line)?;
                out.write_all(b"\n")?;
            }
        }
        RowFormat::Csv => {
            out.write_all(format::csv(page.rows.iter().map(|(r, _)| r)).as_bytes())?
        }
        RowFormat::Table => {
            out.write_all(format::rows_table(page.rows.iter().map(|(r, _)| r)).as_bytes())?;
            let more = if page.total >= records::COUNT_CAP {
                "+"
            } else {
                ""
            };
            eprintln!(
                "{} of {}{more} matching records",
                page.rows.len(),
                page.total
            );
        }
    }
    Ok(())
}

pub fn top_list(args: &TopArgs) -> anyhow::Result<()> {
    let now = now_ns();
    let mut filter = args.filter.check(now)?;
    filter.from_ns.get_or_insert(now - 86_400_000_000_000);
    let conn = reader(&args.store)?;
    let rows = top(&conn, args.kind, &filter, args.limit)?;
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&rows)?),
        ReportFormat::Table => print!("{}", format::top_table(args.kind.heading(), &rows)),
    }
    Ok(())
}

pub fn integrity_report(args: &IntegrityArgs) -> anyhow::Result<()> {
    let conn = reader(&args.store)?;
    let report = integrity(&conn)?;
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&report)?),
        ReportFormat::Table => print!("{}", format::integrity_table(&report)),
    }
    Ok(())
}
