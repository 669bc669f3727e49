//! Real HTTP servers on loopback, each killed (with its workers) on drop.

mod apache;
mod grpc;
mod nats;
mod nginx;
mod node;
mod postgres;
mod python;

pub use apache::{APACHE_HELLO, Apache};
pub use grpc::{GRPC_VENV, GrpcServer, grpc_client, grpc_python};
pub use nats::{
    Inbox, Message, NatsServer, consumer_info, jetstream_api, publish, stream_messages, subscribe,
};
pub use nginx::{BIG_FILE_SIZE, HELLO, Nginx, NginxConfig, STATIC_PAGE};
pub use node::{NodeCluster, NodeHttpServer};
pub use postgres::Postgres;
pub use python::{
    Moves, MovingServer, PassedListener, PyHttpServer, RingServer, RingSetup, ScriptServer,
};

use crate::process::Guarded;
use anyhow::{Context, Result, bail};
use std::fs::File;
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const START_TIMEOUT: Duration = Duration::from_secs(15);

/// Spawns a server with stdout and stderr in `log` (a pipe nobody reads
/// would block a chatty server).
fn spawn_logged(command: &mut Command, name: &str, log: &Path) -> Result<Guarded> {
    let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
    let err = out.try_clone()?;
    command
        .stdin(Stdio::null())
        .stdout(Stdio::from(out))
        .stderr(Stdio::from(err));
    Guarded::spawn(command, name)
}

/// Waits until the server writes `line` to its log: for servers whose readiness must be
/// known without connecting to them (a connection changes what a server loads).
fn wait_logged(child: &mut Guarded, line: &str, log: &Path) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.lines().any(|l| l == line) {
            return Ok(());
        }
        if let Some(status) = child.try_exit()? {
            bail!(
                "{} exited ({status}) before logging {line:?}; log:\n{text}",
                child.name()
            );
        }
        if Instant::now() >= deadline {
            bail!(
                "{} logged no {line:?} after {START_TIMEOUT:?}; log:\n{text}",
                child.name()
            );
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits until `addr` accepts connections. The probe connection sends
/// nothing, so it yields no record even if a tracer is already running.
fn wait_listening(child: &mut Guarded, addr: SocketAddr, log: &Path) -> Result<()> {
    let deadline = Instant::now() + START_TIMEOUT;
    loop {
        if let Some(status) = child.try_exit()? {
            bail!(
                "{} exited ({status}) before listening on {addr}; log:\n{}",
                child.name(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return Ok(());
        }
        if Instant::now() >= deadline {
            bail!(
                "{} not listening on {addr} after {START_TIMEOUT:?}; log:\n{}",
                child.name(),
                std::fs::read_to_string(log).unwrap_or_default()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Makes `dir` traversable by unprivileged server workers (temp dirs are 0700).
pub(crate) fn open_up(dir: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))
        .with_context(|| format!("chmod 755 {}", dir.display()))
}

/// Spawns a server and waits until it accepts connections on 127.0.0.1:`port`.
pub(crate) fn start_listening(
    command: &mut Command,
    name: &str,
    log: &Path,
    port: u16,
) -> Result<Guarded> {
    let mut child = spawn_logged(command, name, log)?;
    wait_listening(
        &mut child,
        SocketAddr::from((std::net::Ipv4Addr::LOCALHOST, port)),
        log,
    )?;
    Ok(child)
}
