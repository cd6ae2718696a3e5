//! TLS for the fake servers: [`TestPki`], a private CA and a server
//! certificate for `127.0.0.1` and `localhost` made at test time (as a
//! company's internal CA would sign an inference server's), and the
//! listener that serves over it, counting the connections it accepts.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose, SanType};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::rustls;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_util::either::Either;

use crate::server::Shared;

/// A private CA and a server certificate it signed, for `127.0.0.1` and
/// `localhost`. No client trusts the CA unless told to.
pub struct TestPki {
    ca_pem: String,
    server_cert: CertificateDer<'static>,
    server_key: Vec<u8>,
}

impl TestPki {
    /// Makes a fresh CA (ECDSA P-256) and a server certificate signed by it.
    pub fn generate() -> io::Result<TestPki> {
        let mut ca = CertificateParams::new(Vec::<String>::new()).map_err(other)?;
        ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca.distinguished_name
            .push(DnType::CommonName, "Shardline test CA");
        ca.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca_key = KeyPair::generate().map_err(other)?;
        let ca_cert = ca.self_signed(&ca_key).map_err(other)?;

        let mut server = CertificateParams::new(vec!["localhost".to_string()]).map_err(other)?;
        server
            .subject_alt_names
            .push(SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server
            .distinguished_name
            .push(DnType::CommonName, "localhost");
        let server_key = KeyPair::generate().map_err(other)?;
        let server_cert = server
            .signed_by(&server_key, &ca_cert, &ca_key)
            .map_err(other)?;
        Ok(TestPki {
            ca_pem: ca_cert.pem(),
            server_cert: server_cert.der().clone(),
            server_key: server_key.serialize_der(),
        })
    }

    /// The CA's certificate in PEM, what a client is told to trust.
    pub fn ca_pem(&self) -> &str {
        &self.ca_pem
    }

    /// Writes [`TestPki::ca_pem`] to `path`.
    pub fn write_ca(&self, path: &Path) -> io::Result<()> {
        std::fs::write(path, &self.ca_pem)
    }

    pub(crate) fn acceptor(&self) -> io::Result<TlsAcceptor> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key.clone()));
        let config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(other)?
            .with_no_client_auth()
            .with_single_cert(vec![self.server_cert.clone()], key)
            .map_err(other)?;
        Ok(TlsAcceptor::from(Arc::new(config)))
    }
}

fn other(e: impl std::fmt::Display) -> io::Error {
    io::Error::other(e.to_string())
}

/// Longest a client may take over its TLS handshake. Handshakes run one at
/// a time in `accept`, so a stalled client must not stall the others long.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);

/// Accepts connections, over TLS when it has an acceptor, and counts them
/// in [`crate::FakeStats::connections`] (a client that refuses the
/// certificate is counted too, though no request reaches a route).
pub(crate) struct CountingListener {
    pub tcp: TcpListener,
    pub tls: Option<TlsAcceptor>,
    pub shared: Arc<Shared>,
}

impl axum::serve::Listener for CountingListener {
    type Io = Either<TcpStream, TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (stream, addr) = match self.tcp.accept().await {
                Ok(accepted) => accepted,
                Err(e) => {
                    // Out of file descriptors and the like: wait, as axum does.
                    tracing::debug!(error = %e, "fake server: accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            self.shared.connections.fetch_add(1, Ordering::SeqCst);
            let Some(acceptor) = &self.tls else {
                return (Either::Left(stream), addr);
            };
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(stream)).await {
                Ok(Ok(tls)) => return (Either::Right(tls), addr),
                Ok(Err(e)) => tracing::debug!(error = %e, "fake server: TLS handshake failed"),
                Err(_) => tracing::debug!("fake server: TLS handshake timed out"),
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}
