//! `tracer-hub`: the composition root.
mod enrich;

fn main() {
    let _ = enrich::Enricher::load(&enrich::EnrichSettings::default());
}
