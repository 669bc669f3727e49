//! One function per subcommand; each builds what it needs from settled arguments.
pub mod import;
pub mod password;
pub mod read;
pub mod serve;

use crate::{
    cli::IngestArgs,
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
    } = args;
    let keys = Keys::from_pairs(verify.keys.iter().map(String::as_str))?;
    let enricher = Enricher::load(&enrich.settings())?;
    let writer = StoreAt {
        data: store.data.clone(),
    }
    .open_writer()?;
    Pipeline::new(keys, enricher, writer)
}

/// One line for stderr about what ingest did.
fn summary(outcome: &Outcome) -> String {
    let breaks = outcome.events.iter().filter(|e| e.kind.is_break()).count();
    format!(
        "{} stored, {} already stored, {} conflicting, {} rejected, {} integrity findings ({} breaks)",
        outcome.stored,
        outcome.duplicates,
        outcome.conflicts,
        outcome.rejected,
        outcome.events.len(),
        breaks
    )
}
