//! `tracer-hub import FILE...`: files in chain order, committed in batches.
use crate::{
    cli::ImportArgs,
    ingest::file::{FileLines, chain_order},
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
    for path in chain_order(&args.files)? {
        let mut file = FileLines::open(&path)?;
        let mut lines = Vec::with_capacity(BATCH);
        loop {
            let line = file.next_line()?;
            let done = line.is_none();
            lines.extend(line);
            if lines.len() >= BATCH || (done && !lines.is_empty()) {
                let mut outcome = pipeline.ingest(&lines)?;
                outcome.rows.clear();
                total.add(outcome);
                lines.clear();
            }
            if done {
                break;
            }
        }
        eprintln!("tracer-hub: imported {}", path.display());
    }
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
