//! Command-line interface.
use std::num::NonZeroU16;

use clap::{Args, Parser, Subcommand};

#[derive(Parser, Debug)]
#[command(
    name = "tracer",
    version,
    about = "eBPF host-level HTTP access tracer: who accessed what, when, from where, served by which process"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Trace HTTP requests received on the given local ports; one JSON record per request on stdout.
    Run(RunArgs),
    /// Check whether this host can run the tracer; exits non-zero naming what is missing.
    Check,
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// Local TCP port to watch (IPv4 and IPv6, any local address). Repeat for several ports.
    #[arg(long = "port", short = 'p', required = true, value_name = "PORT")]
    pub ports: Vec<NonZeroU16>,

    /// Size of the kernel ring buffer in bytes (a power of two, at least one page).
    #[arg(long, default_value_t = 16 << 20, value_parser = parse_ringbuf_size)]
    pub ringbuf_bytes: u32,

    /// Seconds between loss/health reports on stderr (only printed when something changed).
    #[arg(long, default_value_t = 10, value_parser = clap::value_parser!(u64).range(1..))]
    pub stats_interval: u64,

    /// Extra query parameter name whose value is written as REDACTED (the built-in list
    /// covers access_token, api_key, password, sig, X-Amz-Signature and more).
    #[arg(long = "redact-query-param", value_name = "NAME")]
    pub redact_query_params: Vec<String>,
}

fn parse_ringbuf_size(s: &str) -> Result<u32, String> {
    let n: u32 = s.parse().map_err(|e| format!("{e}"))?;
    if n < 4096 || !n.is_power_of_two() {
        return Err(format!("{n} is not a power of two >= 4096"));
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn run_requires_a_port_and_rejects_bad_ones() {
        assert!(Cli::try_parse_from(["tracer", "run"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--port", "0"]).is_err());
        assert!(Cli::try_parse_from(["tracer", "run", "--port", "70000"]).is_err());
        assert!(
            Cli::try_parse_from(["tracer", "run", "-p", "80", "--ringbuf-bytes", "5000"]).is_err()
        );
        let cli = Cli::try_parse_from(["tracer", "run", "-p", "80", "--port", "8080"]).unwrap();
        let Command::Run(args) = cli.command else {
            panic!("not run")
        };
        assert_eq!(args.ports.len(), 2);
    }
}
