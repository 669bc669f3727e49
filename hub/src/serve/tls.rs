//! HTTPS for the dashboard and API (rustls), so the hub can listen beyond loopback
//! without a proxy in front.
//!
//! The certificate and key files are watched: a renewed pair (certbot, a secret
//! rotation) is used for new connections within seconds, without a restart. A pair that
//! cannot be used is reported and the previous one kept.
//!
//! With `--tls-client-ca`, every connection must present a client certificate issued by
//! one of those CAs (mutual TLS), before any login: a stolen token alone does not reach
//! the dashboard or the API. That file is watched too.
//!
//! Handshakes run in their own tasks, bounded in number and time, so a client that
//! stalls mid-handshake holds neither the accept loop nor a slot for long. Failed
//! handshakes (scanners, plain HTTP sent to the TLS port) are counted and reported on
//! stderr at 1, 2, 4, 8... failures, never silently dropped and never a flood.
use std::{
    io,
    net::SocketAddr,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, SystemTime},
};

use anyhow::Context as _;
use tokio::{
    net::{TcpListener, TcpStream},
    sync::{Semaphore, mpsc, watch},
};
use tokio_rustls::{
    TlsAcceptor,
    rustls::{
        RootCertStore, ServerConfig,
        crypto::{CryptoProvider, ring},
        pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
        server::{WebPkiClientVerifier, danger::ClientCertVerifier},
    },
    server::TlsStream,
};

/// How long a client may take to finish its handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes under way at once; further connections wait in the kernel's backlog.
const MAX_HANDSHAKES: usize = 256;
/// How often the certificate and key files are looked at for a change.
const RELOAD_CHECK: Duration = Duration::from_secs(2);

/// The files the server's TLS comes from.
#[derive(Clone)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    /// The CAs (PEM) client certificates must chain to; `None`: no client certificate
    /// is asked for.
    pub client_ca: Option<PathBuf>,
}

impl TlsFiles {
    fn paths(&self) -> impl Iterator<Item = &Path> {
        [Some(&self.cert), Some(&self.key), self.client_ca.as_ref()]
            .into_iter()
            .flatten()
            .map(PathBuf::as_path)
    }
}

/// The files, and the configuration last loaded from them.
pub struct Certified {
    files: TlsFiles,
    stamps: Option<Stamps>,
    config: Arc<ServerConfig>,
}

impl Certified {
    /// Loads the files now: ones that cannot be used stop the hub at start.
    pub fn load(files: TlsFiles) -> anyhow::Result<Self> {
        // Taken first, so that a change while loading is seen at the first check.
        let stamps = stamps(&files);
        Ok(Self {
            config: server_config(&files)?,
            files,
            stamps,
        })
    }
}

/// What tells a file changed: its modification time and size, for each file.
type Stamps = Vec<(SystemTime, u64)>;

fn stamps(files: &TlsFiles) -> Option<Stamps> {
    files
        .paths()
        .map(|path| {
            std::fs::metadata(path)
                .and_then(|m| Ok((m.modified()?, m.len())))
                .ok()
        })
        .collect()
}

/// Loads the pair again whenever the files change, and hands it to the accept loop. A
/// pair that fails (a key written before its certificate, say) is reported once and
/// tried again at the next change; meanwhile the last good one serves.
async fn reload_on_change(
    files: TlsFiles,
    mut loaded: Option<Stamps>,
    current: watch::Sender<Arc<ServerConfig>>,
) {
    let mut failed = None;
    let mut tick = tokio::time::interval(RELOAD_CHECK);
    loop {
        tick.tick().await;
        let now = stamps(&files);
        if now.is_none() || now == loaded || now == failed {
            continue;
        }
        match server_config(&files) {
            Ok(config) => {
                current.send_replace(config);
                loaded = now;
                failed = None;
                eprintln!(
                    "tracer-hub: TLS certificate {} reloaded; new connections use it",
                    files.cert.display()
                );
            }
            Err(e) => {
                failed = now;
                eprintln!(
                    "tracer-hub: TLS certificate or key changed but cannot be used, still serving the previous pair: {e:#}"
                );
            }
        }
    }
}

/// The certificate chain and key from PEM files, as a server configuration that speaks
/// HTTP/1.1 (what the API and the live feed use) over TLS 1.2 or 1.3, asking for a
/// client certificate when there are client CAs.
fn server_config(files: &TlsFiles) -> anyhow::Result<Arc<ServerConfig>> {
    let (cert, key) = (&files.cert, &files.key);
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading the TLS certificate chain {}", cert.display()))?;
    let private = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("reading the TLS private key {}", key.display()))?;
    let provider = Arc::new(ring::default_provider());
    let builder = ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .context("choosing TLS versions")?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => builder.with_client_cert_verifier(client_verifier(ca, provider)?),
    };
    let mut config = builder.with_single_cert(chain, private).with_context(|| {
        format!(
            "the TLS key {} does not fit the certificate {}",
            key.display(),
            cert.display()
        )
    })?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

/// Verifies client certificates against the CAs in `ca` (PEM); none is optional.
fn client_verifier(
    ca: &Path,
    provider: Arc<CryptoProvider>,
) -> anyhow::Result<Arc<dyn ClientCertVerifier>> {
    let mut roots = RootCertStore::empty();
    let certs = CertificateDer::pem_file_iter(ca)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("reading --tls-client-ca {}", ca.display()))?;
    anyhow::ensure!(
        !certs.is_empty(),
        "--tls-client-ca {}: no PEM certificate in it",
        ca.display()
    );
    for cert in certs {
        roots
            .add(cert)
            .with_context(|| format!("--tls-client-ca {}: not a CA certificate", ca.display()))?;
    }
    WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
        .build()
        .with_context(|| format!("--tls-client-ca {}", ca.display()))
}

/// Accepted connections whose handshake completed, for `axum::serve`.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
}

impl TlsListener {
    /// Starts accepting on `tcp`, and watching the certificate's files (within a Tokio
    /// runtime).
    pub fn new(tcp: TcpListener, certified: Certified) -> io::Result<Self> {
        let local = tcp.local_addr()?;
        let (done, ready) = mpsc::channel(MAX_HANDSHAKES);
        let (current, configs) = watch::channel(certified.config);
        tokio::spawn(reload_on_change(certified.files, certified.stamps, current));
        tokio::spawn(accept_loop(tcp, configs, done));
        Ok(Self { ready, local })
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(accepted) => accepted,
            // The accept loop only ends with the runtime; wait for shutdown.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        Ok(self.local)
    }
}

async fn accept_loop(
    tcp: TcpListener,
    configs: watch::Receiver<Arc<ServerConfig>>,
    done: mpsc::Sender<(TlsStream<TcpStream>, SocketAddr)>,
) {
    let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
    let failures = Arc::new(AtomicU64::new(0));
    loop {
        let Ok(slot) = slots.clone().acquire_owned().await else {
            return;
        };
        let (stream, peer) = match tcp.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of descriptors, say: report it and let the condition pass.
                eprintln!("tracer-hub: accepting a connection: {e}");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let acceptor = TlsAcceptor::from(configs.borrow().clone());
        let (done, failures) = (done.clone(), failures.clone());
        tokio::spawn(async move {
            let _slot = slot;
            let outcome = tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await;
            let error = match outcome {
                Ok(Ok(tls)) => {
                    let _ = done.send((tls, peer)).await;
                    return;
                }
                Ok(Err(e)) => e.to_string(),
                Err(_) => format!("no handshake within {}s", HANDSHAKE_TIMEOUT.as_secs()),
            };
            let n = failures.fetch_add(1, Ordering::Relaxed) + 1;
            if n.is_power_of_two() {
                eprintln!(
                    "tracer-hub: TLS handshake from {peer} failed: {error} ({n} failed so far)"
                );
            }
        });
    }
}
