//! Answers as text: aligned tables for people, CSV for spreadsheets. Values are record
//! fields, which a client chose, so both neutralise what a terminal or a spreadsheet
//! would interpret: control characters, and CSV cells that start a formula.
use std::fmt::Write as _;

use super::{integrity::Integrity, records::Row, top::TopRow};

const ROW_HEADINGS: [&str; 11] = [
    "time",
    "stream",
    "seq",
    "method",
    "host",
    "path",
    "status",
    "user",
    "credential",
    "client",
    "chain",
];

fn row_cells(row: &Row) -> [String; 11] {
    let text = |v: &Option<String>| v.clone().unwrap_or_default();
    [
        row.ts.clone(),
        row.stream.clone(),
        row.seq.to_string(),
        text(&row.method),
        text(&row.host),
        text(&row.path),
        row.status.map(|s| s.to_string()).unwrap_or_default(),
        text(&row.user),
        text(&row.credential),
        text(&row.client),
        format!("{}{}", row.chain, if row.covered { ", signed" } else { "" }),
    ]
}

pub fn csv<'a>(rows: impl IntoIterator<Item = &'a Row>) -> String {
    let mut out = ROW_HEADINGS.join(",");
    out.push_str("\r\n");
    for row in rows {
        let cells: Vec<String> = row_cells(row).iter().map(|c| csv_cell(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

fn csv_cell(value: &str) -> String {
    let value = if value.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        format!("'{value}")
    } else {
        value.to_owned()
    };
    if value.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value
    }
}

/// One cell for a terminal: control characters escaped, long values cut.
pub fn cell(value: &str, max: usize) -> String {
    let mut out = String::new();
    for c in value.chars() {
        if out.chars().count() >= max {
            out.push('…');
            break;
        }
        if c.is_control() {
            let _ = write!(out, "\\u{{{:x}}}", c as u32);
        } else {
            out.push(c);
        }
    }
    out
}

pub fn table(headings: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headings.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (w, c) in widths.iter_mut().zip(row) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut out = String::new();
    let line = |out: &mut String, cells: &mut dyn Iterator<Item = &str>| {
        let parts: Vec<String> = cells
            .zip(&widths)
            .map(|(c, w)| format!("{c}{}", " ".repeat(w - c.chars().count())))
            .collect();
        out.push_str(parts.join("  ").trim_end());
        out.push('\n');
    };
    line(&mut out, &mut headings.iter().copied());
    for row in rows {
        line(&mut out, &mut row.iter().map(String::as_str));
    }
    out
}

pub fn rows_table<'a>(rows: impl IntoIterator<Item = &'a Row>) -> String {
    let rows: Vec<Vec<String>> = rows
        .into_iter()
        .map(|r| row_cells(r).iter().map(|c| cell(c, 60)).collect())
        .collect();
    table(&ROW_HEADINGS, &rows)
}

pub fn top_table(heading: &str, rows: &[TopRow]) -> String {
    let with_geo = rows.iter().any(|r| r.country.is_some() || r.asn.is_some());
    let mut headings = vec![heading, "requests", "failures", "users"];
    if with_geo {
        headings.extend(["country", "as"]);
    }
    let rows: Vec<Vec<String>> = rows
        .iter()
        .map(|r| {
            let mut cells = vec![
                cell(&r.key, 80),
                r.requests.to_string(),
                r.failures.to_string(),
                r.users
                    .map(|u| u.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
            ];
            if with_geo {
                cells.push(r.country.clone().unwrap_or_default());
                cells.push(match (r.asn, &r.as_org) {
                    (Some(n), Some(org)) => cell(&format!("AS{n} {org}"), 40),
                    (Some(n), None) => format!("AS{n}"),
                    _ => String::new(),
                });
            }
            cells
        })
        .collect();
    table(&headings, &rows)
}

pub fn integrity_table(report: &Integrity) -> String {
    let rows: Vec<Vec<String>> = report
        .streams
        .iter()
        .map(|s| {
            vec![
                cell(&s.stream, 40),
                s.records.to_string(),
                format!("{}..{}", s.first_seq, s.last_seq),
                s.verified_through
                    .map(|v| v.to_string())
                    .unwrap_or_else(|| "-".to_owned()),
                s.breaks.len().to_string(),
                s.losses.iter().map(|l| l.count).sum::<u64>().to_string(),
                s.last_seen.clone(),
            ]
        })
        .collect();
    let mut out = table(
        &[
            "stream",
            "records",
            "seq",
            "verified through",
            "breaks",
            "lost",
            "last seen",
        ],
        &rows,
    );
    for s in &report.streams {
        if !s.start_seen {
            let _ = writeln!(
                out,
                "{}: the stream's start (seq 1) was not received; records before seq {} are not here",
                cell(&s.stream, 40),
                s.first_seq
            );
        }
        for f in s.breaks.iter().chain(&s.notes) {
            let _ = writeln!(
                out,
                "{} seq {}: {}: {}",
                cell(&s.stream, 40),
                f.seq,
                f.kind,
                cell(&f.detail, 200)
            );
        }
        if s.conflicts_kept > 0 {
            let _ = writeln!(
                out,
                "{}: {} conflicting lines kept (tracer-hub conflicts)",
                cell(&s.stream, 40),
                s.conflicts_kept
            );
        }
        for l in &s.losses {
            let _ = writeln!(
                out,
                "{}: sensor loss {} {}: {}",
                cell(&s.stream, 40),
                l.source,
                l.reason,
                l.count
            );
        }
        if let Some(e) = &s.expired {
            let _ = writeln!(
                out,
                "{}: retention deleted {} line(s) older than {} (seqs up to {})",
                cell(&s.stream, 40),
                e.lines,
                e.before,
                e.through_seq
            );
        }
    }
    if report.rejected > 0 {
        let _ = writeln!(out, "rejected lines (not records): {}", report.rejected);
        for r in &report.reject_reasons {
            let _ = writeln!(out, "  {}: {}", r.count, cell(&r.reason, 120));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn csv_quotes_and_defuses_formulas_and_tables_escape_controls() {
        assert_eq!(csv_cell("=HYPERLINK(\"x\")"), "\"'=HYPERLINK(\"\"x\"\")\"");
        assert_eq!(csv_cell("a,b"), "\"a,b\"");
        assert_eq!(csv_cell("/plain"), "/plain");
        assert_eq!(cell("a\u{1b}[31mb", 60), "a\\u{1b}[31mb");
        assert_eq!(cell("abcdef", 3), "abc…");
    }
}
