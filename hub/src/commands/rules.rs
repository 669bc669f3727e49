//! `tracer-hub rules`: the detections file and the Sigma rules checked as `serve` reads
//! them, and what they make of each rule, so an edit is tried before a hub restarts
//! with it.
use crate::{
    cli::{ReportFormat, RulesArgs},
    detect,
    query::format::table,
};

pub fn run(args: &RulesArgs) -> anyhow::Result<()> {
    let listing = detect::listing(args.detect.detections.as_deref(), &args.detect.rules)?;
    match args.format {
        ReportFormat::Json => println!("{}", serde_json::to_string_pretty(&listing)?),
        ReportFormat::Table => {
            let overrides = |kind: &str| {
                listing.calendar[kind]
                    .as_object()
                    .map_or(0, serde_json::Map::len)
            };
            println!(
                "learning {}, at most {} entities per tracker, working hours {} ({} user and {} department overrides)\n",
                listing.learning,
                listing.max_entities,
                listing.calendar["default"].as_str().unwrap_or("?"),
                overrides("users"),
                overrides("departments"),
            );
            let rows: Vec<Vec<String>> = listing
                .rules
                .iter()
                .map(|l| {
                    vec![
                        l.rule.clone(),
                        if l.runs { "yes" } else { "no" }.to_owned(),
                        l.severity.as_str().to_owned(),
                        l.source.clone(),
                        l.settings.to_string(),
                    ]
                })
                .collect();
            print!(
                "{}",
                table(&["rule", "runs", "severity", "source", "settings"], &rows)
            );
        }
    }
    Ok(())
}
