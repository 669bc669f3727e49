//! Certificates and a scripted TLS client for the HTTPS tests.

use anyhow::{Context, Result, bail};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;
use tempfile::TempDir;

/// A self-signed certificate for `localhost` and 127.0.0.1, made by the openssl CLI.
pub struct Certificate {
    dir: TempDir,
}

impl Certificate {
    pub fn generate() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating certificate dir")?;
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-days", "2", "-subj", "/CN=localhost"])
                .args(["-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"])
                .arg("-keyout")
                .arg(dir.path().join("key.pem"))
                .arg("-out")
                .arg(dir.path().join("cert.pem")),
        )?;
        Self::finish(dir)
    }

    /// A certificate for `localhost` and 127.0.0.1 signed by its own throwaway CA
    /// (`ca()`), as deployments have: rustls, unlike OpenSSL, refuses a self-signed CA
    /// certificate presented as the server's own.
    pub fn generate_with_ca() -> Result<Self> {
        let dir = tempfile::tempdir().context("creating certificate dir")?;
        let at = |name: &str| dir.path().join(name);
        openssl(
            Command::new("openssl")
                .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-days", "2", "-subj", "/CN=tracer test CA"])
                .arg("-keyout")
                .arg(at("ca.key"))
                .arg("-out")
                .arg(at("ca.pem")),
        )?;
        openssl(
            Command::new("openssl")
                .args(["req", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-subj", "/CN=localhost"])
                .arg("-keyout")
                .arg(at("key.pem"))
                .arg("-out")
                .arg(at("leaf.csr")),
        )?;
        std::fs::write(
            at("leaf.ext"),
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(at("leaf.csr"))
                .arg("-CA")
                .arg(at("ca.pem"))
                .arg("-CAkey")
                .arg(at("ca.key"))
                .args(["-CAcreateserial", "-extfile"])
                .arg(at("leaf.ext"))
                .arg("-out")
                .arg(at("cert.pem")),
        )?;
        Self::finish(dir)
    }

    /// A client certificate for `name` (its CN) and its key, issued by the CA of
    /// [`Certificate::generate_with_ca`], in this certificate's directory.
    pub fn issue_client(&self, name: &str) -> Result<(PathBuf, PathBuf)> {
        let at = |file: String| self.dir.path().join(file);
        let (key, csr, ext, cert) = (
            at(format!("client-{name}.key")),
            at(format!("client-{name}.csr")),
            at(format!("client-{name}.ext")),
            at(format!("client-{name}.pem")),
        );
        openssl(
            Command::new("openssl")
                .args(["req", "-newkey", "ec", "-pkeyopt"])
                .arg("ec_paramgen_curve:prime256v1")
                .args(["-nodes", "-subj", &format!("/CN={name}")])
                .arg("-keyout")
                .arg(&key)
                .arg("-out")
                .arg(&csr),
        )?;
        std::fs::write(
            &ext,
            "extendedKeyUsage=clientAuth\nbasicConstraints=CA:FALSE\n",
        )?;
        openssl(
            Command::new("openssl")
                .args(["x509", "-req", "-days", "2", "-in"])
                .arg(&csr)
                .arg("-CA")
                .arg(self.ca())
                .arg("-CAkey")
                .arg(at("ca.key".to_owned()))
                .args(["-CAcreateserial", "-extfile"])
                .arg(&ext)
                .arg("-out")
                .arg(&cert),
        )?;
        Ok((cert, key))
    }

    fn finish(dir: TempDir) -> Result<Self> {
        // Servers whose workers drop privileges read these after startup.
        crate::servers::open_up(dir.path())?;
        for file in ["key.pem", "cert.pem"] {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(
                dir.path().join(file),
                std::fs::Permissions::from_mode(0o644),
            )?;
        }
        Ok(Self { dir })
    }

    pub fn cert(&self) -> PathBuf {
        self.dir.path().join("cert.pem")
    }

    pub fn key(&self) -> PathBuf {
        self.dir.path().join("key.pem")
    }

    /// The CA of [`Certificate::generate_with_ca`]'s certificate.
    pub fn ca(&self) -> PathBuf {
        self.dir.path().join("ca.pem")
    }
}

fn openssl(command: &mut Command) -> Result<()> {
    let output = command
        .output()
        .with_context(|| format!("running {command:?}"))?;
    if !output.status.success() {
        bail!(
            "{command:?} failed: {}",
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// `https://127.0.0.1:PORT/PATH`.
pub fn tls_url(port: u16, path: &str) -> String {
    format!("https://127.0.0.1:{port}{path}")
}

const CLIENT: &str = r#"
import socket, ssl, sys, time
ctx = ssl.create_default_context()
ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
s = ctx.wrap_socket(socket.create_connection(("127.0.0.1", int(sys.argv[1]))))
pause = float(sys.argv[2])
for piece in sys.argv[3:]:
    s.sendall(bytes.fromhex(piece))
    time.sleep(pause)
out = b""
while True:
    data = s.recv(65536)
    if not data:
        break
    out += data
sys.stdout.buffer.write(out)
"#;

/// Sends `pieces` over one TLS connection, each as its own TLS record (so the server's
/// SSL_read sees exactly these splits), `pause` apart, then reads until the server
/// closes: the last request should say `Connection: close`.
pub fn tls_exchange(port: u16, pieces: &[&[u8]], pause: Duration) -> Result<Vec<u8>> {
    let hex: Vec<String> = pieces
        .iter()
        .map(|p| p.iter().map(|b| format!("{b:02x}")).collect())
        .collect();
    let output = Command::new("python3")
        .arg("-c")
        .arg(CLIENT)
        .arg(port.to_string())
        .arg(pause.as_secs_f64().to_string())
        .args(&hex)
        .stdin(Stdio::null())
        .output()
        .context("running the Python TLS client")?;
    if !output.status.success() {
        bail!(
            "TLS client failed ({}): {}",
            output.status,
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(output.stdout)
}

/// `openssl s_client` sending `request` and printing the response until the server closes.
pub fn s_client(port: u16, request: &[u8]) -> Result<String> {
    use std::io::Write;
    let mut child = Command::new("openssl")
        .args(["s_client", "-quiet", "-connect"])
        .arg(format!("127.0.0.1:{port}"))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("running openssl s_client")?;
    child
        .stdin
        .take()
        .context("s_client stdin")?
        .write_all(request)?;
    let output = child.wait_with_output()?;
    Ok(String::from_utf8_lossy(&output.stdout).into_owned())
}

/// The realpath of the host's libssl.so.3, as the dynamic loader resolves it.
pub fn host_libssl() -> Result<PathBuf> {
    let output = Command::new("ldconfig").arg("-p").output()?;
    let listing = String::from_utf8_lossy(&output.stdout);
    let path = listing
        .lines()
        .find(|l| l.trim_start().starts_with("libssl.so.3 "))
        .and_then(|l| l.split_once("=> "))
        .map(|(_, p)| Path::new(p.trim()).to_path_buf())
        .context("no libssl.so.3 in ldconfig -p")?;
    Ok(std::fs::canonicalize(&path)?)
}

/// `gnutls-serv --http`: a real TLS server without OpenSSL, which the tracer cannot see
/// into.
pub struct GnutlsServer {
    child: crate::process::Guarded,
    _dir: TempDir,
}

impl GnutlsServer {
    pub fn start(port: u16, cert: &Certificate) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating gnutls-serv dir")?;
        let log = dir.path().join("server.log");
        let mut command = Command::new("gnutls-serv");
        command
            .args(["--http", "--port", &port.to_string()])
            .arg("--x509certfile")
            .arg(cert.cert())
            .arg("--x509keyfile")
            .arg(cert.key());
        let child = crate::servers::start_listening(&mut command, "gnutls-serv", &log, port)?;
        Ok(Self { child, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}

const NODE_SERVER: &str = r#"
const https = require("https"), fs = require("fs");
const [port, cert, key] = process.argv.slice(2);
https.createServer({ cert: fs.readFileSync(cert), key: fs.readFileSync(key) }, (req, res) => {
  let n = 0;
  req.on("data", (d) => (n += d.length));
  req.on("end", () => {
    res.writeHead(200, { "Content-Type": "text/plain" });
    res.end(`node ${n}\n`);
  });
}).listen(Number(port), "127.0.0.1");
"#;

/// A Node.js HTTPS server (OpenSSL built into the node binary, fed through memory BIOs)
/// answering `node <request body size>\n`.
pub struct NodeHttpsServer {
    child: crate::process::Guarded,
    _dir: TempDir,
}

impl NodeHttpsServer {
    pub fn start(port: u16, cert: &Certificate) -> Result<Self> {
        let dir = tempfile::tempdir().context("creating node dir")?;
        let script = dir.path().join("server.js");
        std::fs::write(&script, NODE_SERVER)?;
        let log = dir.path().join("server.log");
        let mut command = Command::new("node");
        command
            .arg(&script)
            .arg(port.to_string())
            .arg(cert.cert())
            .arg(cert.key());
        let child = crate::servers::start_listening(&mut command, "node", &log, port)?;
        Ok(Self { child, _dir: dir })
    }

    pub fn pid(&self) -> u32 {
        self.child.pid()
    }
}
