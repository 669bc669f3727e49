//! A throwaway PostgreSQL 15 cluster (Debian's postgresql-15) for the hub's PostgreSQL
//! store: its own data dir, port and socket dir, stopped and removed on drop.
//!
//! The hub is given a role with a password over TCP, as in production; the harness
//! itself (`psql`, `dump`) is the superuser over the cluster's socket, without one.

use super::{START_TIMEOUT, spawn_logged};
use crate::ports::free_port;
use crate::process::Guarded;
use crate::tls::Certificate;
use anyhow::{Context, Result, bail, ensure};
use std::io::Read as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};
use tempfile::TempDir;

/// Debian keeps each major version's programs here; the /usr/bin wrappers of
/// postgresql-common pick a version by cluster configuration this one does not have.
const BIN: &str = "/usr/lib/postgresql/15/bin";
/// The server refuses to run as root, which the tests are.
const OWNER: &str = "nobody";
/// The superuser initdb creates, reached over the socket without a password.
const SUPERUSER: &str = "postgres";
/// The role the hub logs in as, and the database it owns.
const ROLE: &str = "tracer";
/// Lines of the server log that a failed start shows.
const LOG_TAIL: usize = 30;

pub struct Postgres {
    // Declared first: the server is reaped before its directory is removed.
    server: Guarded,
    dir: TempDir,
    port: u16,
    password: String,
    durable: bool,
    tls: bool,
}

impl Postgres {
    /// A fresh cluster on 127.0.0.1 and a free port, with the role and database `tracer`
    /// (its password random), accepting connections when this returns.
    pub fn start() -> Result<Self> {
        Self::start_with(false, None)
    }

    /// [`Self::start`], flushing every commit to disk as a production server does:
    /// what the benchmarks measure.
    pub fn start_durable() -> Result<Self> {
        Self::start_with(true, None)
    }

    /// [`Self::start`] serving TLS with `cert` (for 127.0.0.1) and refusing every TCP
    /// connection without it (`hostssl` only in pg_hba.conf).
    pub fn start_tls(cert: &Certificate) -> Result<Self> {
        Self::start_with(false, Some((cert, TlsLogin::Password)))
    }

    /// [`Self::start_tls`], where a TCP login proves itself with a client certificate
    /// from `cert`'s CA naming the role (`cert` in pg_hba.conf), not with a password.
    pub fn start_tls_client_certs(cert: &Certificate) -> Result<Self> {
        Self::start_with(false, Some((cert, TlsLogin::ClientCertificate)))
    }

    fn start_with(durable: bool, tls: Option<(&Certificate, TlsLogin)>) -> Result<Self> {
        let dir = owned_dir()?;
        initdb(dir.path())?;
        if let Some((cert, login)) = tls {
            require_tls(dir.path(), cert, login)?;
        }
        let port = free_port();
        let server = spawn(dir.path(), port, durable, tls.is_some())?;
        // Built before waiting, so that a failed start still stops the server on drop.
        let mut postgres = Self {
            server,
            dir,
            port,
            password: random_password()?,
            durable,
            tls: tls.is_some(),
        };
        postgres.ready().with_context(|| {
            format!(
                "starting PostgreSQL on 127.0.0.1:{port}; its log ends:\n{}",
                postgres.log_tail()
            )
        })?;
        Ok(postgres)
    }

    /// `postgres://tracer:PASSWORD@127.0.0.1:PORT/tracer`: what the hub is given.
    pub fn url(&self) -> String {
        self.url_of(ROLE)
    }

    /// The password of [`Self::url`] (hex, so the URL needs no escaping).
    pub fn password(&self) -> &str {
        &self.password
    }

    /// The cluster's files, for searches of everything the server ever wrote.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Runs `sql` in the `tracer` database as the superuser; the output of `psql -qAt`
    /// (rows only, one a line, columns split by `|`) without its last newline. Several
    /// statements in one `sql` run in one transaction, and each one's rows are printed.
    pub fn psql(&self, sql: &str) -> Result<String> {
        self.psql_in(ROLE, sql)
    }

    /// `pg_dump --data-only` of the `tracer` database: every row it holds, as text to
    /// search. `bytea` comes out escaped rather than in hex, so that the printable bytes
    /// of binary columns (the hub keeps each line as `bytea`) read as themselves.
    pub fn dump(&self) -> Result<Vec<u8>> {
        let output = self
            .client("pg_dump")
            .args(["--data-only", "-d", ROLE])
            .env("PGOPTIONS", "-c bytea_output=escape")
            .output()
            .context("running pg_dump")?;
        Ok(succeeded("pg_dump", output)?.stdout)
    }

    /// Another database owned by `tracer` (for tests that need two stores); its URL.
    pub fn create_database(&self, name: &str) -> Result<String> {
        ensure!(
            name.bytes().all(|b| b.is_ascii_lowercase() || b == b'_'),
            "database name {name:?}: lowercase letters and _ only (it is not quoted)"
        );
        self.psql_in("postgres", &format!("CREATE DATABASE {name} OWNER {ROLE}"))?;
        Ok(self.url_of(name))
    }

    /// Restarts the server on the same port and data dir, as an operator would
    /// (`pg_ctl stop -m fast`: every session is ended, what was committed stays), and
    /// returns once it accepts connections again. The clients connected (a hub) see
    /// their connection closed.
    pub fn restart(&mut self) -> Result<()> {
        let output = as_owner(self.dir.path(), "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "fast", "-w"])
            .output()
            .context("running pg_ctl stop")?;
        succeeded("pg_ctl stop -m fast", output)?;
        self.server.wait_timeout(START_TIMEOUT)?;
        // The new server's log starts afresh; the old one is kept beside it.
        let log = log_file(self.dir.path());
        std::fs::rename(&log, log.with_extension("log.before-restart"))
            .with_context(|| format!("renaming {}", log.display()))?;
        // The old server is reaped; its Guarded only kills a process group now gone.
        self.server = spawn(self.dir.path(), self.port, self.durable, self.tls)?;
        self.wait_accepting().with_context(|| {
            format!(
                "restarting PostgreSQL on 127.0.0.1:{}; its log ends:\n{}",
                self.port,
                self.log_tail()
            )
        })
    }

    fn url_of(&self, database: &str) -> String {
        format!(
            "postgres://{ROLE}:{}@127.0.0.1:{}/{database}",
            self.password, self.port
        )
    }

    /// Waits until the server accepts connections, then creates the role and database.
    fn ready(&mut self) -> Result<()> {
        self.wait_accepting()?;
        self.psql_in(
            "postgres",
            &format!("CREATE ROLE {ROLE} LOGIN PASSWORD '{}'", self.password),
        )?;
        self.create_database(ROLE)?;
        Ok(())
    }

    fn wait_accepting(&mut self) -> Result<()> {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if self.accepting()? {
                return Ok(());
            }
            if let Some(status) = self.server.try_exit()? {
                bail!("postgres exited ({status}) before accepting connections");
            }
            if Instant::now() >= deadline {
                bail!("postgres not accepting connections after {START_TIMEOUT:?}");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `pg_isready` over TCP, the way the hub connects: it also proves the address and
    /// port. The server answers "starting up" (1) or nothing (2) until it is ready.
    fn accepting(&self) -> Result<bool> {
        let status = Command::new(bin("pg_isready"))
            .args(["-q", "-t", "2", "-h", "127.0.0.1", "-p"])
            .arg(self.port.to_string())
            .stdin(Stdio::null())
            .status()
            .context("running pg_isready")?;
        match status.code() {
            Some(0) => Ok(true),
            Some(1 | 2) => Ok(false),
            _ => bail!(
                "pg_isready could not check 127.0.0.1:{} ({status})",
                self.port
            ),
        }
    }

    /// `psql` as the superuser in `database`, stopping at the first error.
    pub fn psql_in(&self, database: &str, sql: &str) -> Result<String> {
        let output = self
            .client("psql")
            .args([
                "-X",
                "-q",
                "-At",
                "-v",
                "ON_ERROR_STOP=1",
                "-d",
                database,
                "-c",
                sql,
            ])
            .output()
            .context("running psql")?;
        let output = succeeded("psql", output).with_context(|| format!("in {database}: {sql}"))?;
        let text = String::from_utf8(output.stdout).context("psql output is not UTF-8")?;
        Ok(text.strip_suffix('\n').unwrap_or(&text).to_owned())
    }

    /// A client program connecting as the superuser over the socket (the socket dir
    /// is reachable by its owner and root only, so `trust` there admits no one else).
    fn client(&self, program: &str) -> Command {
        let mut command = Command::new(bin(program));
        command
            .arg("-h")
            .arg(socket_dir(self.dir.path()))
            .arg("-p")
            .arg(self.port.to_string())
            .args(["-U", SUPERUSER])
            .stdin(Stdio::null());
        command
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(log_file(self.dir.path())).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(LOG_TAIL)..].join("\n")
    }
}

impl Drop for Postgres {
    fn drop(&mut self) {
        // Immediate: nothing in the cluster is worth a shutdown checkpoint. If this
        // fails, the Guarded drop still kills the server's process group.
        let _ = as_owner(self.dir.path(), "pg_ctl")
            .arg("stop")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-m", "immediate", "-w"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
}

fn bin(program: &str) -> PathBuf {
    Path::new(BIN).join(program)
}

fn socket_dir(dir: &Path) -> PathBuf {
    dir.join("socket")
}

fn log_file(dir: &Path) -> PathBuf {
    dir.join("server.log")
}

/// `program` from [`BIN`] run as [`OWNER`], in `dir` (the test's working directory
/// may be one the owner cannot enter).
fn as_owner(dir: &Path, program: &str) -> Command {
    let mut command = Command::new("runuser");
    command
        .args(["-u", OWNER, "--"])
        .arg(bin(program))
        .current_dir(dir)
        .stdin(Stdio::null());
    command
}

/// A 0700 directory under /tmp (not $TMPDIR, which may be inside /root) with the socket
/// dir in it, both owned by [`OWNER`].
fn owned_dir() -> Result<TempDir> {
    let dir = tempfile::Builder::new()
        .prefix("tracer-pg-")
        .tempdir_in("/tmp")
        .context("creating the PostgreSQL dir")?;
    reachable_by_owner(dir.path())?;
    let socket = socket_dir(dir.path());
    std::fs::create_dir(&socket).with_context(|| format!("creating {}", socket.display()))?;
    let status = Command::new("chown")
        .args(["-R", &format!("{OWNER}:")])
        .arg(dir.path())
        .status()
        .context("running chown")?;
    ensure!(
        status.success(),
        "chown {OWNER}: {}: {status}",
        dir.path().display()
    );
    Ok(dir)
}

/// Fails unless every parent of `dir` lets others through, as [`OWNER`] must get in.
fn reachable_by_owner(dir: &Path) -> Result<()> {
    for parent in dir.ancestors().skip(1) {
        let mode = std::fs::metadata(parent)
            .with_context(|| format!("stat {}", parent.display()))?
            .permissions()
            .mode();
        ensure!(
            mode & 0o001 != 0,
            "{OWNER} cannot traverse {} (mode {:o})",
            parent.display(),
            mode & 0o7777
        );
    }
    Ok(())
}

/// A new cluster in `dir`/data: passwords (SCRAM) over TCP, trust over the socket.
fn initdb(dir: &Path) -> Result<()> {
    let output = as_owner(dir, "initdb")
        .arg("-D")
        .arg(dir.join("data"))
        .args(["-U", SUPERUSER, "-E", "UTF8", "--locale=C"])
        .args(["--auth-host=scram-sha-256", "--auth-local=trust"])
        // Throwaway: no need to wait for the disk.
        .args(["--no-sync", "--no-instructions"])
        .output()
        .context("running initdb")?;
    succeeded("initdb", output)?;
    Ok(())
}

/// How a TCP session logs in to a cluster that serves TLS.
#[derive(Clone, Copy, PartialEq)]
enum TlsLogin {
    Password,
    ClientCertificate,
}

/// The certificate and key in the data dir (the key readable by [`OWNER`] only, as the
/// server demands), and TCP connections admitted over TLS only; with client
/// certificates, the CA that issues them is the one the server trusts (`root.crt`).
fn require_tls(dir: &Path, cert: &Certificate, login: TlsLogin) -> Result<()> {
    let data = dir.join("data");
    let mut files = vec![(cert.cert(), "server.crt"), (cert.key(), "server.key")];
    if login == TlsLogin::ClientCertificate {
        files.push((cert.ca(), "root.crt"));
        let conf = data.join("postgresql.conf");
        let mut settings = std::fs::read_to_string(&conf).context("reading postgresql.conf")?;
        settings.push_str("ssl_ca_file = 'root.crt'\n");
        std::fs::write(&conf, settings).context("writing postgresql.conf")?;
    }
    for (from, name) in files {
        let to = data.join(name);
        std::fs::copy(&from, &to).with_context(|| format!("copying {}", from.display()))?;
        std::fs::set_permissions(&to, std::fs::Permissions::from_mode(0o600))?;
        let status = Command::new("chown")
            .arg(format!("{OWNER}:"))
            .arg(&to)
            .status()
            .context("running chown")?;
        ensure!(status.success(), "chown {}: {status}", to.display());
    }
    let hba = data.join("pg_hba.conf");
    let rules = std::fs::read_to_string(&hba).context("reading pg_hba.conf")?;
    let tls_only: String = rules
        .lines()
        .map(|line| match line.strip_prefix("host ") {
            Some(rest) if login == TlsLogin::ClientCertificate => {
                // The last field is the login method.
                let fields: Vec<&str> = rest.split_whitespace().collect();
                let (_, rule) = fields.split_last().unwrap_or((&"", &[]));
                format!("hostssl {} cert\n", rule.join(" "))
            }
            Some(rest) => format!("hostssl {rest}\n"),
            None => format!("{line}\n"),
        })
        .collect();
    ensure!(tls_only.contains("hostssl"), "no host rule in {rules}");
    std::fs::write(&hba, tls_only).context("writing pg_hba.conf")?;
    Ok(())
}

/// The server in the foreground, as a Guarded child logging to `dir`/server.log.
fn spawn(dir: &Path, port: u16, durable: bool, tls: bool) -> Result<Guarded> {
    let mut command = as_owner(dir, "postgres");
    command
        .arg("-D")
        .arg(dir.join("data"))
        .arg("-p")
        .arg(port.to_string())
        .args(["-c", "listen_addresses=127.0.0.1"])
        .arg("-c")
        .arg(format!(
            "unix_socket_directories={}",
            socket_dir(dir).display()
        ));
    if tls {
        command.args(["-c", "ssl=on"]);
    }
    if !durable {
        // No flush to disk at commit: the tests kill hubs, never this server (a restart
        // stops it cleanly, writing out what was committed), so what a commit
        // acknowledged is still there for the next reader, and the hub's batches do not
        // wait on a disk shared with the rest of the test.
        command.args(["-c", "fsync=off", "-c", "synchronous_commit=off"]);
    }
    spawn_logged(&mut command, "postgres", &log_file(dir))
}

/// 128 random bits in hex.
fn random_password() -> Result<String> {
    let mut bytes = [0u8; 16];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut urandom| urandom.read_exact(&mut bytes))
        .context("reading /dev/urandom")?;
    Ok(hex::encode(bytes))
}

/// `output`, or an error with its stderr unless `what` succeeded.
fn succeeded(what: &str, output: Output) -> Result<Output> {
    if !output.status.success() {
        bail!(
            "{what} failed ({}):\n{}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output)
}

#[cfg(test)]
mod unit {
    use super::*;

    /// The harness itself: the role logs in over TCP with its password only, the
    /// superuser helpers see what it wrote, and drop leaves nothing running or on disk.
    #[test]
    fn a_cluster_admits_its_role_by_password_and_goes_away_on_drop() -> Result<()> {
        let postgres = Postgres::start()?;
        let as_role = |url: &str| {
            Command::new(bin("psql"))
                .args(["-X", "-q", "-At", "-d", url, "-c"])
                .arg(
                    "CREATE TABLE IF NOT EXISTS t (v text, b bytea); \
                     INSERT INTO t VALUES ('kept', 'bytes kept'); SELECT current_user",
                )
                .stdin(Stdio::null())
                .output()
        };
        let output = succeeded("psql as tracer", as_role(&postgres.url())?)?;
        assert_eq!(String::from_utf8_lossy(&output.stdout), "tracer\n");
        let wrong = postgres
            .url()
            .replace(postgres.password(), "not-the-password");
        assert!(
            !as_role(&wrong)?.status.success(),
            "a wrong password let in"
        );

        assert_eq!(postgres.psql("SELECT count(*), min(v) FROM t")?, "1|kept");
        let dump = String::from_utf8(postgres.dump()?)?;
        assert!(dump.contains("kept\tbytes kept"), "{dump}");
        let other = postgres.create_database("second")?;
        succeeded("psql in the second database", as_role(&other)?)?;

        let (dir, port) = (postgres.dir.path().to_owned(), postgres.port);
        drop(postgres);
        assert!(!dir.exists(), "{} left behind", dir.display());
        assert!(
            std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
            "still listening on {port}"
        );
        Ok(())
    }
}
