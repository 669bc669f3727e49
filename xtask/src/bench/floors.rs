//! `cargo xtask bench --floors`: the physical floor of each capture design. Empty
//! programs (they return at once) on each candidate hook set, beside no tracing,
//! nginx's own access log and the tracer, in one interleaved run.

use super::arms::{self, Arm, Load, Settings, Target};
use super::table::print_arms;
use anyhow::Result;
use std::path::Path;
use tests::clients::url;
use tests::ports::free_port;
use tests::servers::{Nginx, NginxConfig};

/// `tracer floor` hook names, in the table's order.
pub const HOOKS: &[&str] = &[
    "syscalls",
    "raw-syscalls",
    "raw-syscalls-filtered",
    "raw-exit-filtered",
    "tp-btf",
    "sock",
    "raw-sock",
    "cgroup-skb",
    "tc",
];

pub fn run(bin: &Path, settings: &Settings) -> Result<()> {
    let (port, logging_port) = (free_port(), free_port());
    let _nginx = Nginx::start(one_worker(port, None, false))?;
    let _logging = Nginx::start(one_worker(logging_port, None, true))?;
    println!(
        "floors: nginx 1 worker `return 200` on 127.0.0.1:{port} (its access-logging twin on \
         {logging_port}); wrk -t1 -c{} -d{}s; {} interleaved rounds",
        settings.connections, settings.seconds, settings.rounds
    );
    let mut arms = vec![Arm::Off, Arm::AccessLog];
    arms.extend(HOOKS.iter().map(|&hook| Arm::Floor(hook)));
    arms.push(Arm::Tracer {
        bin,
        label: "tracer",
        args: &[],
    });
    let (plain, logging) = (url(port, "/"), url(logging_port, "/"));
    let target = Target {
        url: &plain,
        port,
        logging_url: Some(&logging),
        load: Load::Wrk,
    };
    let results = arms::run(bin, &target, &arms, settings)?;
    print_arms("floors, plain HTTP", &results);
    Ok(())
}

/// One worker: wrk, the tracer and nginx then share the two cores the same way in
/// every arm.
pub fn one_worker(port: u16, tls_port: Option<u16>, access_log: bool) -> NginxConfig {
    let mut config = NginxConfig::new(port);
    config.workers = 1;
    config.tls_port = tls_port;
    config.access_log = access_log;
    config.access_log_json_buffered = access_log;
    // The big file written by writev, 32 KiB at a time, as a proxy or an application
    // server writes its bodies (sendfile's are never copied).
    config.extra_locations = format!("        location = {BODIES_PATH} {{ sendfile off; }}\n");
    config
}

/// A 100 KiB file nginx serves without sendfile (`tests::servers::BIG_FILE_SIZE`).
pub const BODIES_PATH: &str = "/big.bin";
