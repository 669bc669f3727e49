//! Which process served a request.

use anyhow::Result;
use tests::clients::{RawConn, get};
use tests::ports::free_port;
use tests::record::RecordExt;
use tests::servers::{Nginx, NginxConfig};
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
