//! The tracer's memory with many open keep-alive connections: nginx (1 worker) holds
//! N connections from loopback, each of which sends a request, then a second one, then
//! closes. The tracer's resident memory (VmRSS, and its peak VmHWM) is read at each
//! step, beside nginx's worker for scale. The records are waited for at each step, so
//! the tracer has done its work on every connection before it is measured.
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use tests::ports::free_port;
use tests::servers::Nginx;
use tests::tracer::{RecordSink, Tracer};

use super::floors;

/// The goal of issue 12: resident memory with 10,000 open keep-alive connections.
const GOAL_MIB: f64 = 64.0;
/// A hang guard for the records of each step, not an expectation.
const RECORDS_WAIT: Duration = Duration::from_secs(120);
const REQUEST: &[u8] = b"GET /rss HTTP/1.1\r\nHost: localhost\r\n\r\n";

pub fn run(bin: &Path, connections: u32) -> Result<()> {
    raise_open_files(u64::from(connections) + 1024)?;
    let port = free_port();
    let mut config = floors::one_worker(port, None, false);
    // nginx closes idle keep-alive connections once fewer than 1/16 of its slots are
    // free (ngx_drain_connections): leave it plenty.
    config.worker_connections = 2 * connections + 64;
    let nginx = Nginx::start(config)?;
    let worker = nginx_worker(&nginx)?;
    let tracer = Tracer::spawn_with_args(bin, &[port], &[], &[], RecordSink::File)?;
    let pid = tracer.pid();
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let n = connections as usize;

    let mut rows = vec![("started, idle".to_owned(), memory(pid)?, memory(worker)?)];
    let mut open = Vec::with_capacity(n);
    for i in 0..n {
        let mut stream = TcpStream::connect(addr).context("connecting to nginx")?;
        exchange(&mut stream).with_context(|| format!("connection {i}"))?;
        open.push(stream);
    }
    tracer.wait_for_records(n, RECORDS_WAIT)?;
    rows.push((
        format!("{n} connections open, 1 request each"),
        memory(pid)?,
        memory(worker)?,
    ));
    for (i, stream) in open.iter_mut().enumerate() {
        exchange(stream).with_context(|| format!("second request on connection {i}"))?;
    }
    tracer.wait_for_records(2 * n, RECORDS_WAIT)?;
    rows.push((
        format!("{n} connections open, 2 requests each"),
        memory(pid)?,
        memory(worker)?,
    ));
    drop(open);
    // A third request on a fresh connection orders itself after every close in the
    // tracer's input, so its record means the closes were processed.
    exchange(&mut TcpStream::connect(addr)?)?;
    tracer.wait_for_records(2 * n + 1, RECORDS_WAIT)?;
    rows.push(("all closed".to_owned(), memory(pid)?, memory(worker)?));
    let run = tracer.stop()?;

    println!(
        "\nmemory: nginx 1 worker, {n} keep-alive connections from loopback; tracer with the chain on, records to a file\n"
    );
    println!(
        "{:<40} {:>11} {:>11} {:>14} {:>13}",
        "", "tracer RSS", "peak", "private (anon)", "nginx worker"
    );
    for (label, tracer, worker) in &rows {
        println!(
            "{label:<40} {:>7.1} MiB {:>7.1} MiB {:>10.1} MiB {:>9.1} MiB",
            mib(tracer.rss),
            mib(tracer.peak),
            mib(tracer.anon),
            mib(worker.rss)
        );
    }
    let (idle, open) = (&rows[0].1, &rows[1].1);
    println!(
        "private memory per open connection: {:.0} bytes; the rest of the tracer's RSS is its code and the ring buffer mapped from the kernel ({:.1} MiB of RSS that is not private)",
        open.anon.saturating_sub(idle.anon) as f64 / n as f64,
        mib(idle.rss.saturating_sub(idle.anon))
    );
    let peak = rows.iter().map(|(_, t, _)| t.peak).max().unwrap_or(0);
    println!(
        "peak {:.1} MiB against the goal of {GOAL_MIB} MiB at 10,000 connections: {}; {} records, {} kernel losses",
        mib(peak),
        if mib(peak) <= GOAL_MIB {
            "within"
        } else {
            "over"
        },
        run.records.len(),
        run.kernel_lost_total()?
    );
    Ok(())
}

/// One request and its whole response (nginx's `return 200` with Content-Length).
fn exchange(stream: &mut TcpStream) -> Result<()> {
    stream.write_all(REQUEST)?;
    let mut response = Vec::with_capacity(256);
    let mut buf = [0u8; 1024];
    while !complete(&response) {
        let n = stream.read(&mut buf)?;
        if n == 0 {
            bail!(
                "nginx closed the connection after {:?}",
                String::from_utf8_lossy(&response)
            );
        }
        response.extend_from_slice(&buf[..n]);
    }
    Ok(())
}

/// Whether `response` holds a head and the Content-Length bytes after it.
fn complete(response: &[u8]) -> bool {
    let Some(end) = response.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&response[..end]).to_ascii_lowercase();
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .and_then(|v| v.trim().parse::<usize>().ok())
        .unwrap_or(0);
    response.len() >= end + 4 + length
}

struct Memory {
    rss: u64,
    peak: u64,
    /// Private memory (heap, stacks): what the process itself allocated. The rest of
    /// RSS is mapped files and, for the tracer, the ring buffer's pages, a BPF map the
    /// kernel owns and user space maps to read.
    anon: u64,
}

fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let status = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    let kib = |key: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|line| line.strip_prefix(key))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {key} in {path}"))
    };
    Ok(Memory {
        rss: kib("VmRSS:")?,
        peak: kib("VmHWM:")?,
        anon: kib("RssAnon:")?,
    })
}

fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// nginx's only worker.
fn nginx_worker(nginx: &Nginx) -> Result<u32> {
    nginx
        .worker_pids()?
        .first()
        .copied()
        .context("nginx has no worker")
}

/// Lets this process hold `needed` descriptors (one per client socket).
fn raise_open_files(needed: u64) -> Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit write and read only the struct passed.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            bail!("getrlimit: {}", std::io::Error::last_os_error());
        }
        if limit.rlim_cur >= needed {
            return Ok(());
        }
        limit.rlim_cur = needed;
        limit.rlim_max = limit.rlim_max.max(needed);
        if libc::setrlimit(libc::RLIMIT_NOFILE, &limit) != 0 {
            bail!(
                "raising the open-file limit to {needed}: {} (root can)",
                std::io::Error::last_os_error()
            );
        }
    }
    Ok(())
}
