//! `cargo xtask bench`: the tracer's cost on nginx beside no tracing, nginx's own access
//! log and the floors of two capture designs, plain and HTTPS, then at a fixed rate, and
//! the sinks' throughput; all numbers from this one run (rounds interleave so drift hits
//! every arm).

mod alerts;
mod arms;
mod floors;
mod hub;
mod memory;
mod paced;
mod procstat;
mod sinks;
mod store_floor;
mod table;

use crate::cargo;
use anyhow::Result;
use arms::{Arm, Load, Target};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;
use tests::clients::url;
use tests::ports::free_port;
use tests::servers::Nginx;
use tests::tls::tls_url;
use tests::tracer::{RecordSink, Tracer, TracerRun};

/// The body of each request in the uploads section.
const UPLOAD_BYTES: usize = 100 * 1024;

#[derive(clap::Args)]
pub struct Options {
    /// Seconds of each wrk round and of each fixed-rate phase.
    #[arg(long, default_value_t = 10)]
    duration: u32,
    /// Rounds of (tracer off, tracer on), interleaved.
    #[arg(long, default_value_t = 3)]
    rounds: u32,
    /// Concurrent connections of wrk and of the fixed-rate generator.
    #[arg(long, default_value_t = 50)]
    connections: u32,
    /// Concurrent streams per connection of the HTTP/2 rounds (h2load -m).
    #[arg(long, default_value_t = 10)]
    h2_streams: u32,
    /// Requests per second of the fixed-rate phase.
    #[arg(long, default_value_t = 10_000)]
    rate: u32,
    /// Records per run of the sink-throughput section.
    #[arg(long, default_value_t = 100_000)]
    sink_records: u64,
    /// Run only the sink-throughput section.
    #[arg(long)]
    sinks_only: bool,
    /// Also measure this tracer binary (an older build, say) in the same rounds.
    #[arg(long, value_name = "PATH")]
    compare_bin: Option<std::path::PathBuf>,
    /// Run only the floors: empty programs on each candidate hook set beside no tracing,
    /// nginx's own access log and the tracer (plain HTTP).
    #[arg(long)]
    floors: bool,
    /// Run only tracer-hub's section: ingest rates, and query answers against grep/jq.
    #[arg(long)]
    hub: bool,
    /// Run only the detections' latency: request -> alert on NATS, through nginx, the
    /// tracer, JetStream and `tracer-hub serve`.
    #[arg(long)]
    alerts: bool,
    /// Intrusions the alerts section times, one per second.
    #[arg(long, default_value_t = 20)]
    alert_samples: u32,
    /// Access records the hub section generates and stores.
    #[arg(long, default_value_t = 1_000_000)]
    hub_records: u64,
    /// Run only the memory section: the tracer's RSS with many open keep-alive
    /// connections.
    #[arg(long)]
    rss: bool,
    /// Keep-alive connections the memory section holds open.
    #[arg(long, default_value_t = 10_000)]
    rss_connections: u32,
    /// Skip the hub section's NATS ingest and serve the imported store for the dashboard
    /// row instead (for a store too large to ingest twice).
    #[arg(long)]
    hub_no_nats: bool,
    /// Keep the hub section's file and stores in DIR (emptied first) instead of a temp dir.
    #[arg(long, value_name = "DIR")]
    hub_dir: Option<std::path::PathBuf>,
    /// Also drain NATS into SQLite, then into PostgreSQL, with this tracer-hub binary
    /// (an older build, say), in rounds interleaved with this one.
    #[arg(long, value_name = "PATH")]
    hub_compare_bin: Option<std::path::PathBuf>,
}

/// One measured stretch of load with the tracer running.
pub struct Traced {
    pub requests: u64,
    /// CPU seconds the tracer used between ready and stop.
    pub cpu_seconds: f64,
    pub peak_rss_bytes: u64,
    pub run: TracerRun,
}

pub fn run(options: &Options) -> Result<()> {
    let bins = cargo::build_release_for_harness()?;
    if options.alerts {
        return alerts::run(options.alert_samples);
    }
    if options.hub {
        return hub::run(
            &bins.hub,
            options.hub_records,
            &hub::Extras {
                keep: options.hub_dir.as_deref(),
                with_nats: !options.hub_no_nats,
                compare: options.hub_compare_bin.as_deref(),
            },
        );
    }
    let bin = bins.tracer;
    if options.floors {
        return floors::run(
            &bin,
            &arms::Settings {
                seconds: options.duration,
                rounds: options.rounds,
                connections: options.connections,
            },
        );
    }
    if options.sinks_only {
        return sinks::run(&bin, options.sink_records, options.rounds);
    }
    if options.rss {
        return memory::run(&bin, options.rss_connections);
    }
    let (port, tls_port) = (free_port(), free_port());
    let (logging_port, logging_tls_port) = (free_port(), free_port());
    // ALPN h2 on the TLS ports is for h2load; wrk does not offer it and stays on 1.1.
    let mut server = floors::one_worker(port, Some(tls_port), false);
    server.http2 = true;
    let mut logging_server = floors::one_worker(logging_port, Some(logging_tls_port), true);
    logging_server.http2 = true;
    let _nginx = Nginx::start(server)?;
    let _logging = Nginx::start(logging_server)?;
    let settings = arms::Settings {
        seconds: options.duration,
        rounds: options.rounds,
        connections: options.connections,
    };
    println!(
        "nginx 1 worker `return 200` on 127.0.0.1:{port} (TLS on {tls_port}), its \
         access-logging twin on {logging_port} ({logging_tls_port}); wrk -t1 -c{} -d{}s \
         --latency; {} interleaved rounds",
        options.connections, options.duration, options.rounds
    );
    let mut tracers = vec![Arm::Tracer {
        bin: &bin,
        label: "tracer",
        args: &[],
    }];
    if let Some(other) = &options.compare_bin {
        tracers.push(Arm::Tracer {
            bin: other,
            label: "tracer (--compare-bin)",
            args: &[],
        });
    }
    let mut plain_arms = vec![
        Arm::Off,
        Arm::AccessLog,
        Arm::Floor("syscalls"),
        Arm::Floor("raw-exit-filtered"),
    ];
    plain_arms.extend(&tracers);
    // The file sink as an auditor keeps it: rotated, and each rotated file compressed
    // on the same host, which at this rate happens every few seconds.
    plain_arms.extend([
        Arm::Tracer {
            bin: &bin,
            label: "tracer, rotating every 64 MiB, gzip",
            args: ROTATING_GZIP,
        },
        Arm::Tracer {
            bin: &bin,
            label: "tracer, rotating every 64 MiB, zstd",
            args: ROTATING_ZSTD,
        },
    ]);
    let plain = arms::run(
        &bin,
        &Target::wrk(&url(port, "/"), port, &url(logging_port, "/")),
        &plain_arms,
        &settings,
    )?;
    // Long response bodies written by the server (not sendfile): what the kernel must
    // count without copying.
    let mut other_arms = vec![Arm::Off, Arm::AccessLog];
    other_arms.extend(&tracers);
    let (bodies_url, logging_bodies_url) = (
        url(port, floors::BODIES_PATH),
        url(logging_port, floors::BODIES_PATH),
    );
    let bodies = arms::run(
        &bin,
        &Target::wrk(&bodies_url, port, &logging_bodies_url),
        &other_arms,
        &settings,
    )?;
    // Uploads: request bodies the kernel must count without copying (nginx discards
    // them, reading 4 KiB at a time).
    let uploads = arms::run(
        &bin,
        &Target {
            url: &url(port, "/"),
            port,
            logging_url: Some(&url(logging_port, "/")),
            load: Load::WrkUpload {
                bytes: UPLOAD_BYTES,
            },
        },
        &other_arms,
        &settings,
    )?;
    // Keep-alive HTTPS: the handshakes happen once per connection, the rounds measure
    // the cost of the SSL probes on every read and write. The floor there is the
    // probes themselves, empty: a breakpoint per OpenSSL call and a return probe.
    let (https_url, logging_https_url) = (tls_url(tls_port, "/"), tls_url(logging_tls_port, "/"));
    let mut tls_arms = vec![Arm::Off, Arm::AccessLog, Arm::Floor(arms::OPENSSL_PROBES)];
    tls_arms.extend(&tracers);
    let https = arms::run(
        &bin,
        &Target::wrk(&https_url, tls_port, &logging_https_url),
        &tls_arms,
        &settings,
    )?;
    // HTTP/2 over TLS (ALPN h2): the same servers, the same arms, h2load's streams
    // multiplexed on the same number of connections.
    let h2 = arms::run(
        &bin,
        &Target {
            url: &https_url,
            port: tls_port,
            logging_url: Some(&logging_https_url),
            load: Load::H2load {
                streams: options.h2_streams,
            },
        },
        &tls_arms,
        &settings,
    )?;

    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let seconds = options.duration;
    let duration = Duration::from_secs(u64::from(seconds));
    println!(
        "fixed rate: {} req/s over {} connections for {seconds}s, tracer off then on",
        options.rate, options.connections
    );
    let paced_off = paced::run(addr, options.rate, options.connections, duration)?;
    let (paced_on, paced_traced) = traced(&bin, port, &[], || {
        let report = paced::run(addr, options.rate, options.connections, duration)?;
        Ok((report.completed, report))
    })?;

    table::print_arms("wrk, plain HTTP", &plain);
    table::print_arms(
        "wrk, plain HTTP, 100 KiB response bodies (writev, sendfile off)",
        &bodies,
    );
    table::print_arms(
        "wrk, plain HTTP, 100 KiB uploads (POST, nginx discards the body)",
        &uploads,
    );
    table::print_arms("wrk, HTTPS (keep-alive)", &https);
    table::print_arms(
        &format!("h2load, HTTP/2 over TLS (-m{})", options.h2_streams),
        &h2,
    );
    table::print_paced(&paced_off, &paced_on, &paced_traced, options.rate);
    sinks::run(&bin, options.sink_records, options.rounds)?;
    memory::run(&bin, options.rss_connections)
}

/// The file sink rotated every 64 MiB, the newest rotated file kept, compressed with
/// the default (gzip) or zstd.
const ROTATING_GZIP: &[&str] = &["--rotate-size", "64MiB", "--keep", "1"];
const ROTATING_ZSTD: &[&str] = &[
    "--rotate-size",
    "64MiB",
    "--keep",
    "1",
    "--compress",
    "zstd",
];

/// Runs `load` under a fresh tracer, with `args` beside its defaults, and measures the
/// tracer around it.
pub fn traced<T>(
    bin: &Path,
    port: u16,
    args: &[&str],
    load: impl FnOnce() -> Result<(u64, T)>,
) -> Result<(T, Traced)> {
    let args: Vec<&str> = ["--bpf-stats"].iter().chain(args).copied().collect();
    let tracer = Tracer::spawn_with_args(bin, &[port], &args, &[], RecordSink::Summary)?;
    let pid = tracer.pid();
    let cpu_before = procstat::cpu_seconds(pid)?;
    let (requests, report) = load()?;
    // Records trail the traffic a little; give them a moment before sampling.
    std::thread::sleep(Duration::from_millis(200));
    let cpu_seconds = procstat::cpu_seconds(pid)? - cpu_before;
    let peak_rss_bytes = procstat::peak_rss_bytes(pid)?;
    let run = tracer.stop()?;
    Ok((
        report,
        Traced {
            requests,
            cpu_seconds,
            peak_rss_bytes,
            run,
        },
    ))
}
