//! Which process served a request.

use anyhow::Result;
use std::time::Duration;
use tests::clients::{RawConn, curl, get};
use tests::ports::free_port;
use tests::record::{RecordExt, log_lines, served_by, strings, u64s};
use tests::servers::{
    Nginx, NginxConfig, NodeCluster, PassedListener, PyHttpServer, RingServer, RingSetup,
};
use tests::tracer::Tracer;

#[test]
fn nginx_requests_are_attributed_to_workers_not_the_master() -> Result<()> {
    let port = free_port();
    let nginx = Nginx::start(NginxConfig::new(port))?;
    let workers = nginx.worker_pids()?;
    assert_eq!(workers.len(), 2, "workers: {workers:?}");
    let tracer = Tracer::start(&[port])?;
    const CONNECTIONS: usize = 8;
    for i in 0..CONNECTIONS {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(&get(&format!("/worker/{i}"), "localhost"))?;
        assert_eq!(conn.read_response("GET")?.status, 200);
    }
    let run = tracer.stop()?;

    assert_eq!(
        run.records.len(),
        CONNECTIONS,
        "records: {:#?}",
        run.records
    );
    for r in &run.records {
        let pid = r.u64_field("process.pid") as u32;
        assert_ne!(pid, nginx.master_pid(), "attributed to the master: {r}");
        assert!(
            workers.contains(&pid),
            "pid {pid} is no worker of {workers:?}: {r}"
        );
        assert_eq!(
            r.u64_field("thread.id"),
            u64::from(pid),
            "single-threaded worker"
        );
        assert_eq!(r.str_field("process.executable.name"), "nginx");
        assert_eq!(r.str_field("process.executable.path"), "/usr/sbin/nginx");
        // The generated config runs workers as www-data, like a packaged nginx.
        assert_eq!(r.str_field("process.owner"), "www-data");
        assert_eq!(r.u64_field("process.user.id"), 33);
        assert!(!r.has("container.id"), "{r}");
    }
    Ok(())
}

/// A server that holds an io_uring may read and write through it, where the capture
/// cannot see: the tracer says so instead of staying silent. One server set up its ring
/// before the tracer started (found by its descriptors), the other after, while watched
/// (the kernel reports the setup); each is named on stderr once, counted in the summary
/// and in the trail's loss lines. Their plain recv/send requests are still recorded.
#[test]
fn servers_holding_an_io_uring_are_named_and_counted() -> Result<()> {
    let (early_port, late_port) = (free_port(), free_port());
    let early = RingServer::start(early_port, RingSetup::BeforeListening)?;
    let tracer = Tracer::start(&[early_port, late_port])?;
    let late = RingServer::start(late_port, RingSetup::AtFirstConnection)?;
    for port in [early_port, late_port, late_port] {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(&get("/", "localhost"))?;
        assert_eq!(conn.read_response("GET")?.body, b"ok");
    }
    tracer.wait_for_stderr(
        &format!("pid {} (python3) set up an io_uring", late.pid()),
        Duration::from_secs(10),
    )?;
    let run = tracer.stop()?;

    assert_eq!(run.records.len(), 3, "{:#?}", run.records);
    let named = |pid: u32, what: &str| {
        run.stderr
            .matches(&format!("tracer: pid {pid} (python3) {what}: "))
            .count()
    };
    assert_eq!(named(early.pid(), "holds an io_uring"), 1, "{}", run.stderr);
    assert_eq!(named(late.pid(), "set up an io_uring"), 1, "{}", run.stderr);
    assert_eq!(run.summary_u64("io_uring_processes")?, 2);
    assert_eq!(run.loss_count("io_uring_processes"), 2);
    Ok(())
}

/// Python's CGI: the server reads the request and writes the status line, then forks the
/// script with the socket dup2'd onto its stdin and stdout, and the script reads the
/// body and writes the rest of the response on those descriptors. Each request is one
/// record, as the server logged it, with both body sizes, attributed to the server that
/// read it; the child's descriptors join the connection instead of being connections
/// (and non-HTTP bytes) of their own.
#[test]
fn cgi_scripts_writing_to_an_inherited_socket_complete_the_servers_record() -> Result<()> {
    let port = free_port();
    let server = PyHttpServer::start_cgi(port)?;
    let tracer = Tracer::start(&[port])?;
    let body = "x".repeat(5000);
    let base = format!("http://127.0.0.1:{port}");
    assert_eq!(
        curl(&["-s", &format!("{base}/cgi-bin/hello.py")])?,
        "hello from cgi\n"
    );
    assert_eq!(
        curl(&[
            "-s",
            "--data-binary",
            &body,
            &format!("{base}/cgi-bin/count.py")
        ])?,
        "5000\n"
    );
    assert_eq!(
        curl(&["-s", &format!("{base}/hello.txt")])?,
        "hello from python\n"
    );
    let run = tracer.stop()?;

    let recorded = log_lines(
        &run.records,
        &[
            "http.request.method",
            "url.path",
            "http.response.status_code",
        ],
    );
    assert_eq!(recorded, server.logged_requests()?, "{:#?}", run.records);
    assert_eq!(u64s(&run.records, "http.request.body.size"), [0, 5000, 0]);
    assert_eq!(u64s(&run.records, "http.response.body.size"), [15, 5, 18]);
    assert_eq!(
        strings(&run.records, "tracer.outcome"),
        ["complete", "complete", "complete"]
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.u64_field("process.pid") == u64::from(server.pid())),
        "{:#?}",
        run.records
    );
    assert!(
        run.summary_u64("shared_descriptors")? >= 2,
        "{}",
        run.summary
    );
    assert_eq!(run.summary_u64("connections")?, 3, "{}", run.summary);
    assert_eq!(run.summary_u64("non_http_bytes")?, 0, "{}", run.summary);
    assert_eq!(run.summary_u64("desyncs")?, 0, "{}", run.summary);
    Ok(())
}

/// Node's cluster module (round-robin, its default on Linux): the primary accepts each
/// connection and hands it to a worker over a unix socket. The workers were forked
/// before the primary listened, so no hook saw them become servers; they are watched
/// from the message that hands them a connection, before its first byte. Every request
/// a worker logged is recorded once, attributed to that worker, never to the primary.
#[test]
fn connections_handed_to_node_cluster_workers_are_recorded_against_their_logs() -> Result<()> {
    let port = free_port();
    let tracer = Tracer::start(&[port])?;
    let cluster = NodeCluster::start(port, 2, None)?;
    const CONNECTIONS: usize = 6;
    for i in 0..CONNECTIONS {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(&get(&format!("/cluster/{i}"), "localhost"))?;
        assert_eq!(conn.read_response("GET")?.body, b"ok");
    }
    let run = tracer.stop()?;

    let mut logged = cluster.access_log()?;
    logged.sort();
    assert_eq!(logged.len(), CONNECTIONS, "{logged:?}");
    let primary = format!(" {}", cluster.primary_pid());
    assert!(!logged.iter().any(|l| l.ends_with(&primary)), "{logged:?}");
    let recorded = served_by(&run.records);
    assert_eq!(recorded, logged, "{}", run.stderr);
    Ok(())
}

/// A listener passed over a unix socket to a process of its own, as a proxy's seamless
/// reload hands its listeners to the new process: the receiver never listened and no
/// watched process forked it, yet its requests are recorded, attributed to it, from its
/// first accept on the watched port.
#[test]
fn a_process_serving_a_listener_passed_to_it_is_watched_from_its_first_accept() -> Result<()> {
    let port = free_port();
    let tracer = Tracer::start(&[port])?;
    let passed = PassedListener::start(port)?;
    for i in 0..3 {
        let mut conn = RawConn::connect(("127.0.0.1", port))?;
        conn.send(&get(&format!("/passed/{i}"), "localhost"))?;
        assert_eq!(conn.read_response("GET")?.body, b"ok");
    }
    let run = tracer.stop()?;

    assert_eq!(
        strings(&run.records, "url.path"),
        ["/passed/0", "/passed/1", "/passed/2"],
        "{}",
        run.stderr
    );
    assert!(
        run.records
            .iter()
            .all(|r| r.u64_field("process.pid") == u64::from(passed.taker_pid())),
        "taker {}, giver {}: {:#?}",
        passed.taker_pid(),
        passed.giver_pid(),
        run.records
    );
    Ok(())
}
