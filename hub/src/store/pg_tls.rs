//! TLS to PostgreSQL. The hub encrypts whenever the server offers TLS (`sslmode=prefer`,
//! the default of a connection string) and insists on it with `sslmode=require`; either
//! way the server's certificate is verified, against the system's roots or the CA
//! certificates of `--store-ca`, and its name against the host connected to. A server
//! whose certificate cannot be verified is an error that says how to fix it, never an
//! unverified channel (libpq's `prefer` and `require` encrypt without verifying).
//! `sslmode=disable` connects without TLS; so do Unix sockets. Where the server
//! authenticates clients by certificate, the hub presents its own (`--store-cert`,
//! `--store-key`).
use std::{path::Path, sync::Arc};

use anyhow::{Context as _, bail};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, PrivateKeyDer, pem::PemObject},
};

/// How the hub's PostgreSQL connections are encrypted: made once, from the flags.
#[derive(Clone)]
pub struct PgTls(MakeRustlsConnect);

impl PgTls {
    /// Trusts the certificates in `ca` (PEM) when given, else the system's roots, and
    /// presents `client` (certificate chain and key, PEM) when given.
    pub fn new(ca: Option<&Path>, client: Option<(&Path, &Path)>) -> anyhow::Result<Self> {
        let roots = match ca {
            Some(file) => ca_file(file)?,
            None => system_roots(),
        };
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS for PostgreSQL")?
            .with_root_certificates(roots);
        let config = match client {
            Some((cert_file, key_file)) => {
                let (chain, key) = client_identity(cert_file, key_file)?;
                config.with_client_auth_cert(chain, key).with_context(|| {
                    format!(
                        "--store-key {} does not belong to --store-cert {}",
                        key_file.display(),
                        cert_file.display()
                    )
                })?
            }
            None => config.with_no_client_auth(),
        };
        Ok(Self(MakeRustlsConnect::new(config)))
    }

    pub fn connector(&self) -> MakeRustlsConnect {
        self.0.clone()
    }
}

fn ca_file(file: &Path) -> anyhow::Result<RootCertStore> {
    let shown = file.display();
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(file)
        .with_context(|| format!("--store-ca {shown}: reading it"))?
    {
        let cert = cert.with_context(|| format!("--store-ca {shown}: not PEM certificates"))?;
        roots
            .add(cert)
            .with_context(|| format!("--store-ca {shown}: a certificate that cannot be used"))?;
    }
    if roots.is_empty() {
        bail!("--store-ca {shown}: no certificate in it");
    }
    Ok(roots)
}

/// The certificate chain and key the hub presents. Errors name the files, never what
/// the key holds.
fn client_identity(
    cert: &Path,
    key: &Path,
) -> anyhow::Result<(Vec<CertificateDer<'static>>, PrivateKeyDer<'static>)> {
    let shown = cert.display();
    let chain = CertificateDer::pem_file_iter(cert)
        .with_context(|| format!("--store-cert {shown}: reading it"))?
        .collect::<Result<Vec<_>, _>>()
        .with_context(|| format!("--store-cert {shown}: not PEM certificates"))?;
    if chain.is_empty() {
        bail!("--store-cert {shown}: no certificate in it");
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("--store-key {}: no PEM private key in it", key.display()))?;
    Ok((chain, key))
}

/// The system's CA certificates; ones that cannot be parsed are skipped, as every TLS
/// client does (a system store often holds a few).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// A connection error in the TLS handshake (the server's certificate failing
/// verification, nearly always), or a server that wants a client certificate, gets the
/// ways out; others are returned as they are.
pub fn explain(error: anyhow::Error) -> anyhow::Error {
    if format!("{error:#}").contains("error performing TLS handshake") {
        error.context(
            "PostgreSQL's TLS handshake failed (is its certificate from a CA the hub \
             trusts?): give the hub that CA with --store-ca FILE, or connect without TLS \
             with sslmode=disable in the store URL",
        )
    } else if format!("{error:#}").contains("requires a valid client certificate") {
        error.context(
            "PostgreSQL logs this connection in by client certificate: give the hub its \
             certificate and key with --store-cert FILE and --store-key FILE",
        )
    } else {
        error
    }
}
