//! One function per subcommand; each builds what it needs from settled arguments.
pub mod alerts;
pub mod import;
pub mod password;
pub mod read;
pub mod serve;

use crate::{
    cli::{DetectArgs, IngestArgs},
    detect::{Detections, Detector, sigma::Sigma},
    enrich::Enricher,
    pipeline::{Outcome, Pipeline},
    store::StoreAt,
    verify::keys::Keys,
};

fn pipeline(args: &IngestArgs) -> anyhow::Result<Pipeline> {
    let IngestArgs {
        store,
        verify,
        enrich,
        detect,
    } = args;
    let keys = Keys::from_pairs(verify.keys.iter().map(String::as_str))?;
    let enricher = Enricher::load(&enrich.settings())?;
    let writer = StoreAt {
        data: store.data.clone(),
    }
    .open_writer()?;
    let detect = detect.clone();
    Pipeline::new(
        keys,
        enricher,
        writer,
        Box::new(move |writer| detector(&detect, writer)),
    )
}

/// The detector, resumed from the store. The rule files are read each time (at start,
/// and after a failed batch), so an invalid edit shows at once.
fn detector(args: &DetectArgs, writer: &crate::store::Writer) -> anyhow::Result<Detector> {
    let settings = Detections::load(args.detections.as_deref())?;
    let sigma = Sigma::load(&args.rules)?;
    Ok(Detector::new(settings, sigma, writer.detect_state()?))
}

/// One line for stderr about what ingest did.
fn summary(outcome: &Outcome) -> String {
    let breaks = outcome.events.iter().filter(|e| e.kind.is_break()).count();
    format!(
        "{} stored, {} already stored, {} conflicting, {} rejected, {} integrity findings ({} breaks), {} alerts raised or updated",
        outcome.stored,
        outcome.duplicates,
        outcome.conflicts,
        outcome.rejected,
        outcome.events.len(),
        breaks,
        outcome.alerts.len()
    )
}
