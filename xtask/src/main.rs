//! `cargo xtask <task>`: the project's developer tasks.

mod bench;
mod cargo;
mod demo;

use anyhow::Result;
use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(about = "Developer tasks for tracer")]
struct Cli {
    #[command(subcommand)]
    task: Task,
}

#[derive(Subcommand)]
enum Task {
    /// Install system packages and toolchains (scripts/setup.sh; idempotent).
    Setup,
    /// Trace a Python and an nginx server while curl sends varied requests.
    Demo,
    /// Measure the tracer's overhead on nginx under wrk and at a fixed rate.
    Bench(bench::Options),
    /// Build the release tracer, then run every crate's tests and the e2e suite.
    Test {
        /// Passed to the test binaries (a name filter, --nocapture, ...).
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

fn main() -> Result<()> {
    match Cli::parse().task {
        Task::Setup => cargo::setup(),
        Task::Demo => demo::run(),
        Task::Bench(options) => bench::run(&options),
        Task::Test { args } => cargo::test(&args),
    }
}
