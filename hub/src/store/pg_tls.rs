//! TLS to PostgreSQL. The hub encrypts whenever the server offers TLS (`sslmode=prefer`,
//! the default of a connection string) and insists on it with `sslmode=require`; either
//! way the server's certificate is verified, against the system's roots or the CA
//! certificates of `--store-ca`, and its name against the host connected to. A server
//! whose certificate cannot be verified is an error that says how to fix it, never an
//! unverified channel (libpq's `prefer` and `require` encrypt without verifying).
//! `sslmode=disable` connects without TLS; so do Unix sockets.
use std::{path::Path, sync::Arc};

use anyhow::{Context as _, bail};
use tokio_postgres_rustls::MakeRustlsConnect;
use tokio_rustls::rustls::{
    ClientConfig, RootCertStore,
    crypto::ring,
    pki_types::{CertificateDer, pem::PemObject},
};

/// How the hub's PostgreSQL connections are encrypted: made once, from the flags.
#[derive(Clone)]
pub struct PgTls(MakeRustlsConnect);

impl PgTls {
    /// Trusts the certificates in `ca` (PEM) when given, else the system's roots.
    pub fn new(ca: Option<&Path>) -> anyhow::Result<Self> {
        let roots = match ca {
            Some(file) => ca_file(file)?,
            None => system_roots(),
        };
        let config = ClientConfig::builder_with_provider(Arc::new(ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS for PostgreSQL")?
            .with_root_certificates(roots)
            .with_no_client_auth();
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

/// The system's CA certificates; ones that cannot be parsed are skipped, as every TLS
/// client does (a system store often holds a few).
fn system_roots() -> RootCertStore {
    let mut roots = RootCertStore::empty();
    let found = rustls_native_certs::load_native_certs();
    roots.add_parsable_certificates(found.certs);
    roots
}

/// A connection error in the TLS handshake (the server's certificate failing
/// verification, nearly always) gets the ways out; others are returned as they are.
pub fn explain(error: anyhow::Error) -> anyhow::Error {
    if format!("{error:#}").contains("error performing TLS handshake") {
        error.context(
            "PostgreSQL's TLS handshake failed (is its certificate from a CA the hub \
             trusts?): give the hub that CA with --store-ca FILE, or connect without TLS \
             with sslmode=disable in the store URL",
        )
    } else {
        error
    }
}
