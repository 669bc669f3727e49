//! `tracer-hub import FILE...`: files in chain order, committed in batches.
use std::{path::PathBuf, sync::mpsc};

use crate::{
    cli::ImportArgs,
    ingest::{
        Line,
        file::{FileLines, chain_order},
    },
    pipeline::{Expiry, Outcome},
};

/// Lines per transaction. Every commit rewrites each index page the batch touched
/// (the user, credential and client indexes take one page per distinct key), so larger
/// batches write less per record: 200,000 records imported in 15.3 s with 5,000, 9.9 s
/// with 50,000 (`cargo xtask bench --hub`). 50,000 lines hold about 50 MB.
const BATCH: usize = 50_000;

pub fn run(args: &ImportArgs) -> anyhow::Result<()> {
    let mut pipeline = super::pipeline(&args.ingest)?;
    let mut total = Outcome::default();
    let files = chain_order(&args.files)?;
    // The next batch is read while this one is stored.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (read_tx, read_rx) = mpsc::sync_channel(1);
        scope.spawn(move || read(&files, &read_tx));
        for read in read_rx {
            match read? {
                Read::Lines(lines) => {
                    let mut outcome = pipeline.ingest(&lines)?;
                    outcome.rows.clear();
                    total.add(outcome);
                }
                Read::End(path) => eprintln!("tracer-hub: imported {}", path.display()),
            }
        }
        Ok(())
    })?;
    // Silent sensors, judged at the newest record's time: an import has no "now".
    total.alerts.extend(pipeline.tick(pipeline.newest_ns())?);
    if let Some(retain) = args.ingest.retain {
        let cutoff = super::retention_cutoff(retain);
        let mut deleted = Expiry::default();
        loop {
            let step = pipeline.expire(cutoff, super::EXPIRE_CHUNK)?;
            deleted.lines += step.lines;
            deleted.other_rows += step.other_rows;
            if step.done {
                break;
            }
        }
        eprintln!("tracer-hub: {}", super::expiry_summary(&deleted, cutoff));
    }
    pipeline.analyze()?;
    eprintln!("tracer-hub: {}", super::summary(&total));
    Ok(())
}

/// What the reading thread hands over, in the files' order.
enum Read {
    Lines(Vec<Line>),
    /// The file's every line was handed over.
    End(PathBuf),
}

/// Reads `files` in [`BATCH`]es until they end, a read fails, or `to` is dropped (the
/// import failed).
fn read(files: &[PathBuf], to: &mpsc::SyncSender<anyhow::Result<Read>>) {
    let result = (|| -> anyhow::Result<()> {
        for path in files {
            let mut file = FileLines::open(path)?;
            let mut lines = Vec::with_capacity(BATCH);
            while let Some(line) = file.next_line()? {
                lines.push(line);
                if lines.len() >= BATCH {
                    let full = std::mem::replace(&mut lines, Vec::with_capacity(BATCH));
                    if to.send(Ok(Read::Lines(full))).is_err() {
                        return Ok(());
                    }
                }
            }
            if !lines.is_empty() && to.send(Ok(Read::Lines(lines))).is_err() {
                return Ok(());
            }
            if to.send(Ok(Read::End(path.clone()))).is_err() {
                return Ok(());
            }
        }
        Ok(())
    })();
    if let Err(e) = result {
        let _ = to.send(Err(e));
    }
}
