//! `tracer-hub`: the composition root. Modules import downhill only:
//! ingest -> verify -> enrich -> store -> query/detect/deliver -> serve, with `pipeline` and
//! `commands` above them all (tests/tests/layering.rs checks it).
mod cli;
mod commands;
mod deliver;
mod detect;
mod enrich;
mod ingest;
mod pipeline;
mod query;
mod serve;
mod store;
mod verify;
mod when;

use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command};

#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Serve(args) => commands::serve::run(args),
        Command::Import(args) => commands::import::run(args),
        Command::Query(args) => commands::read::query(args),
        Command::Top(args) => commands::read::top_list(args),
        Command::Integrity(args) => commands::read::integrity_report(args),
        Command::Conflicts(args) => commands::read::conflicts(args),
        Command::Alerts(args) => commands::alerts::run(args),
        Command::Rules(args) => commands::rules::run(args),
        Command::PasswordHash => commands::password::run(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tracer-hub: {e:#}");
            ExitCode::FAILURE
        }
    }
}
