//! `tracer-hub import FILE...`: files in chain order, committed in batches.
use std::{path::PathBuf, sync::mpsc};

use crate::{
    cli::ImportArgs,
    ingest::{
        Following, Line,
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
    // The next batch is read while this one is stored, and its first lines are taken
    // apart while this one commits.
    std::thread::scope(|scope| -> anyhow::Result<()> {
        let (read_tx, read_rx) = mpsc::sync_channel(1);
        scope.spawn(move || read(&files, &read_tx));
        let mut reads = read_rx.into_iter();
        let mut current: Option<Vec<Line>> = None;
        loop {
            // The files that end before the next batch: after this one. A read that
            // fails ends the import after what was read before it is stored.
            let mut ended = Vec::new();
            let mut next = None;
            let mut failed = None;
            for read in reads.by_ref() {
                match read {
                    Ok(Read::Lines(lines)) => {
                        next = Some(lines);
                        break;
                    }
                    Ok(Read::End(path)) => ended.push(path),
                    Err(e) => {
                        failed = Some(e);
                        break;
                    }
                }
            }
            if let Some(lines) = current.take() {
                let following = next.as_deref().unwrap_or_default();
                total.add(pipeline.ingest_before(&lines, &mut Following(following))?);
            }
            for path in ended {
                eprintln!("tracer-hub: imported {}", path.display());
            }
            if let Some(e) = failed {
                return Err(e);
            }
            match next {
                Some(lines) => current = Some(lines),
                None => return Ok(()),
            }
        }
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
