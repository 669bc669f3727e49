//! tracer: an eBPF host-level HTTP access tracer. This is the composition root.
//!
//! Data flows through the modules in this order:
//! `kernel` (load programs, read ring-buffer events) -> `connection` (per-connection
//! state) -> `http` (HTTP/1.x exchanges) -> `identity` + `enrich` (who, process,
//! wall-clock time, redaction) -> `record` (the JSON record) -> `audit` (the sealed
//! chain, from the `tracer_audit` crate) -> `sink` (where records go). `config` and
//! `cli` resolve flags and the TOML file once; `pipeline` wires the layers together for
//! `tracer run`; `commands` are the other subcommands. Every module is private, so
//! rustc reports what nothing uses.
// First: its `key!` macro is used by the modules declared after it.
#[macro_use]
mod json;
mod audit;
mod cli;
mod commands;
mod config;
mod connection;
mod diagnostics;
mod enrich;
mod http;
mod identity;
mod kernel;
mod pipeline;
mod record;
mod sink;

use std::process::ExitCode;

use crate::{
    cli::{Cli, Command, ConfigCommand, KeyCommand},
    kernel::check,
};
use clap::Parser as _;

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .target(env_logger::Target::Stderr)
        .init();
    let cli = Cli::parse();
    match cli.command {
        Command::Check => {
            let findings = check::run();
            for f in &findings {
                let mark = if f.ok { "ok  " } else { "FAIL" };
                eprintln!("{mark} {:<12} {}", f.what, f.detail);
            }
            match check::blocking_problems(&findings) {
                None => {
                    eprintln!("this host can run tracer");
                    ExitCode::SUCCESS
                }
                Some(problems) => {
                    eprintln!("tracer cannot run here: {problems}");
                    ExitCode::FAILURE
                }
            }
        }
        Command::Config(ConfigCommand::Check { file }) => match config::check(&file) {
            Ok(report) => {
                print!("{report}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tracer: config error: {e}");
                ExitCode::FAILURE
            }
        },
        Command::Key(KeyCommand::Show { key }) => match commands::audit::key_show(key.as_deref()) {
            Ok(text) => {
                print!("{text}");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Floor { hook, ports } => match commands::floor::run(hook, &ports) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::SinkBench(args) => match commands::sink_bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Verify(args) => commands::audit::verify(&args),
        Command::Run(args) => match args.resolve().and_then(pipeline::run) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
