use std::process::ExitCode;

use clap::Parser as _;
use tracer::{
    cli::{Cli, Command, ConfigCommand, KeyCommand},
    commands, config,
    kernel::check,
    pipeline, sink,
};

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
        Command::SinkBench(args) => match sink::bench::run(&args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
        Command::Verify(args) => commands::audit::verify(&args),
        Command::Run(args) => match pipeline::run(*args) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("tracer: error: {e:#}");
                ExitCode::FAILURE
            }
        },
    }
}
