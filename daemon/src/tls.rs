//! TLS on both listeners (rustls). `--tls-cert` and `--tls-key` turn it on for the binary port
//! and the HTTP gateway alike; `--tls-client-ca` asks every client for a certificate issued by
//! one of its CAs (mutual TLS) and refuses the handshake without one. The files are read at
//! start (a file that does not read stops the start) and again on SIGHUP: new connections
//! shake hands with the new certificate, open ones go on with theirs; a file that does not
//! read on SIGHUP is refused and the configuration in force stays.
//!
//! The gateway offers `h2` and `http/1.1` through ALPN; the binary port offers no protocol
//! name (its clients need none). A connection is a `Conn`, plain or TLS, so the front ends serve either
//! without knowing which.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use futures::{AsyncRead, AsyncWrite};
use futures_rustls::rustls;
use futures_rustls::TlsAcceptor;
use glommio::net::TcpStream;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};

/// The files TLS is read from.
#[derive(Clone, Debug)]
pub struct TlsFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
}

/// Which listener a handshake is for: each offers its own ALPN names.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Listener {
    Binary,
    Http,
}

/// The acceptors in force, one per listener, built from the same files.
#[derive(Clone)]
struct Acceptors {
    binary: TlsAcceptor,
    http: TlsAcceptor,
}

/// The TLS configuration in force, replaced as a whole on SIGHUP.
pub struct TlsStore {
    files: TlsFiles,
    current: Mutex<Acceptors>,
}

impl std::fmt::Debug for TlsStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsStore").field("files", &self.files).finish_non_exhaustive()
    }
}

impl TlsStore {
    /// Reads the files; an error names the file and what is wrong with it.
    pub fn open(files: TlsFiles) -> Result<Arc<TlsStore>, String> {
        let acceptors = build(&files)?;
        Ok(Arc::new(TlsStore { files, current: Mutex::new(acceptors) }))
    }

    /// Reads the files again and puts them in force for new connections. On an error the
    /// configuration in force stays.
    pub fn reload(&self) -> Result<(), String> {
        let acceptors = build(&self.files)?;
        *self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner()) = acceptors;
        Ok(())
    }

    /// The acceptor a new connection on `listener` shakes hands with (once per connection).
    pub fn acceptor(&self, listener: Listener) -> TlsAcceptor {
        let current = self.current.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        match listener {
            Listener::Binary => current.binary.clone(),
            Listener::Http => current.http.clone(),
        }
    }

    /// Whether clients must present a certificate.
    pub fn mutual(&self) -> bool {
        self.files.client_ca.is_some()
    }
}

fn build(files: &TlsFiles) -> Result<Acceptors, String> {
    let certs = read_certs(&files.cert, "--tls-cert")?;
    let key = PrivateKeyDer::from_pem_file(&files.key)
        .map_err(|e| format!("--tls-key {}: no private key read ({e}); give a PEM key (PKCS#8, PKCS#1 or SEC1)", files.key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS: {e}"))?;
    let builder = match &files.client_ca {
        None => builder.with_no_client_auth(),
        Some(path) => {
            let mut roots = rustls::RootCertStore::empty();
            for cert in read_certs(path, "--tls-client-ca")? {
                roots.add(cert).map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            }
            let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                .build()
                .map_err(|e| format!("--tls-client-ca {}: {e}", path.display()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| format!("--tls-cert {} and --tls-key {}: {e}", files.cert.display(), files.key.display()))?;
    let binary = Arc::new(config.clone());
    let mut http = config;
    http.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Acceptors { binary: TlsAcceptor::from(binary), http: TlsAcceptor::from(Arc::new(http)) })
}

fn read_certs(path: &Path, flag: &str) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{flag} {}: no PEM certificate in it", path.display()));
    }
    Ok(certs)
}

/// One accepted connection, plain or TLS.
pub enum Conn {
    Plain(TcpStream),
    Tls(Box<futures_rustls::server::TlsStream<TcpStream>>),
}

impl Conn {
    /// Shakes hands when `tls` is on, within `timeout` (a client that connects and says
    /// nothing does not hold a task for ever).
    pub async fn accept(
        stream: TcpStream,
        tls: Option<&TlsStore>,
        listener: Listener,
        timeout: std::time::Duration,
    ) -> Result<Conn, String> {
        let Some(tls) = tls else { return Ok(Conn::Plain(stream)) };
        let handshake = tls.acceptor(listener).accept(stream);
        match glommio::timer::timeout(timeout, async { Ok(handshake.await) }).await {
            Ok(Ok(stream)) => Ok(Conn::Tls(Box::new(stream))),
            Ok(Err(error)) => Err(format!("TLS handshake failed: {error}")),
            Err(_) => Err(format!("TLS handshake not finished within {timeout:?}")),
        }
    }

    /// The socket under the connection.
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Conn::Plain(stream) => stream,
            Conn::Tls(stream) => stream.get_ref().0,
        }
    }

    /// The protocol ALPN chose (`h2`, `http/1.1`), if the client offered any.
    pub fn alpn(&self) -> Option<&[u8]> {
        match self {
            Conn::Plain(_) => None,
            Conn::Tls(stream) => stream.get_ref().1.alpn_protocol(),
        }
    }

    /// Whether the connection is encrypted (`aws:SecureTransport`).
    pub fn secure(&self) -> bool {
        matches!(self, Conn::Tls(_))
    }
}

impl AsyncRead for Conn {
    fn poll_read(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut [u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_read(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Conn {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_write(cx, buf),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_flush(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_flush(cx),
        }
    }

    fn poll_close(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        match self.get_mut() {
            Conn::Plain(stream) => Pin::new(stream).poll_close(cx),
            Conn::Tls(stream) => Pin::new(stream.as_mut()).poll_close(cx),
        }
    }
}
