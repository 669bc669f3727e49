//! One function per subcommand; each builds what it needs from settled arguments.
pub mod alerts;
pub mod import;
pub mod password;
pub mod read;
mod remote;
pub mod rules;
pub mod serve;

use crate::{
    cli::{DetectArgs, IngestArgs},
    detect::{Detections, Detector, sigma::Sigma},
    enrich::Enricher,
    pipeline::{Expiry, Leader, Outcome, Pipeline},
    verify::keys::Keys,
};

fn pipeline(args: &IngestArgs) -> anyhow::Result<Pipeline> {
    let IngestArgs {
        store,
        verify,
        enrich,
        detect,
        retain: _,
    } = args;
    let keys = Keys::from_pairs(verify.keys.iter().map(String::as_str))?;
    let enricher = Enricher::load(&enrich.settings())?;
    let writer = store.at()?.open_writer()?;
    let detect = detect.clone();
    Pipeline::new(
        keys,
        enricher,
        writer,
        Box::new(move |writer| detector(&detect, writer)),
    )
}

/// The fleet's detections, on a connection of their own (`pipeline::Leader`).
fn leader(args: &IngestArgs) -> anyhow::Result<Leader> {
    let enricher = Enricher::load(&args.enrich.settings())?;
    let writer = args.store.at()?.open_writer()?;
    let detect = args.detect.clone();
    Ok(Leader::new(
        writer,
        enricher,
        Box::new(move |writer| detector(&detect, writer)),
    ))
}

/// The detector, resumed from the store. The rule files are read each time (at start,
/// and after a failed batch), so an invalid edit shows at once.
fn detector(args: &DetectArgs, writer: &mut crate::store::Writer) -> anyhow::Result<Detector> {
    let settings = Detections::load(args.detections.as_deref())?;
    let sigma = Sigma::load(&args.rules)?;
    Ok(Detector::new(settings, sigma, writer.detect_state()?))
}

/// Lines deleted per retention step: one transaction, short enough to let ingest in.
const EXPIRE_CHUNK: usize = 5_000;

/// The retention cutoff now: what is older than `retain` goes.
fn retention_cutoff(retain: std::time::Duration) -> i64 {
    crate::when::now_ns().saturating_sub(i64::try_from(retain.as_nanos()).unwrap_or(i64::MAX))
}

/// One line for stderr about what a retention run deleted.
fn expiry_summary(expiry: &Expiry, cutoff_ns: i64) -> String {
    format!(
        "retention: deleted {} line(s) older than {} and {} rollup, alert and note row(s)",
        expiry.lines,
        crate::when::format_ns(cutoff_ns),
        expiry.other_rows
    )
}

/// One line for stderr about what ingest did.
fn summary(outcome: &Outcome) -> String {
    let breaks = outcome.events.iter().filter(|e| e.kind.is_break()).count();
    let restored = match outcome.restored {
        0 => String::new(),
        n => format!(", {n} of the sensor's own lines restored in place of forged ones"),
    };
    format!(
        "{} stored, {} already stored, {} conflicting, {} expired by retention, {} rejected, {} integrity findings ({} breaks), {} alerts raised or updated{restored}",
        outcome.stored,
        outcome.duplicates,
        outcome.conflicts,
        outcome.expired,
        outcome.rejected,
        outcome.events.len(),
        breaks,
        outcome.alerts.len()
    )
}
