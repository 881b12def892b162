//! TLS for client connections (rustls): the server's certificate checked against a CA file
//! (`--ca-file`) or, without one, the public web PKI roots; optionally a client certificate
//! for servers that ask for one (`--tls-client-ca` on the daemon).

use std::path::Path;
use std::sync::Arc;

use futures::{AsyncRead, AsyncWrite};
use futures_rustls::rustls;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};

use crate::ClientError;

/// How to reach a server over TLS: the CAs trusted, the client identity if any, and the name
/// the server's certificate must carry (by default the host of the address connected to).
#[derive(Clone)]
pub struct Tls {
    connector: futures_rustls::TlsConnector,
    server_name: Option<String>,
}

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tls").field("server_name", &self.server_name).finish_non_exhaustive()
    }
}

impl Tls {
    /// Trusts the CAs in `ca_file` (PEM), or the public web PKI when `None`; presents the
    /// certificate chain and key in `identity` (PEM files) when given.
    pub fn new(ca_file: Option<&Path>, identity: Option<(&Path, &Path)>) -> Result<Tls, ClientError> {
        let mut roots = rustls::RootCertStore::empty();
        match ca_file {
            Some(path) => {
                for cert in read_certs(path)? {
                    roots.add(cert).map_err(|e| config_error(path, e))?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        let builder = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| ClientError::Tls(e.to_string()))?
            .with_root_certificates(roots);
        let config = match identity {
            None => builder.with_no_client_auth(),
            Some((cert, key)) => {
                let certs = read_certs(cert)?;
                let key = PrivateKeyDer::from_pem_file(key).map_err(|e| config_error(key, e))?;
                builder.with_client_auth_cert(certs, key).map_err(|e| config_error(cert, e))?
            }
        };
        Ok(Tls { connector: futures_rustls::TlsConnector::from(Arc::new(config)), server_name: None })
    }

    /// Checks the server's certificate for `name` instead of the host connected to.
    pub fn with_server_name(mut self, name: &str) -> Tls {
        self.server_name = Some(name.to_owned());
        self
    }

    /// Shakes hands over `stream` with the server at `host` (a DNS name or an IP address).
    pub async fn connect<S>(&self, host: &str, stream: S) -> Result<futures_rustls::client::TlsStream<S>, ClientError>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let name = self.server_name.as_deref().unwrap_or(host);
        let name = ServerName::try_from(name.trim_start_matches('[').trim_end_matches(']').to_owned())
            .map_err(|e| ClientError::Tls(format!("`{name}` is not a server name: {e}")))?;
        self.connector.connect(name, stream).await.map_err(|e| ClientError::Tls(format!("handshake failed: {e}")))
    }
}

/// The host part of `host:port` (IPv6 in brackets).
pub fn host_of(addr: &str) -> &str {
    match addr.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => addr,
    }
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, ClientError> {
    let certs =
        CertificateDer::pem_file_iter(path).and_then(|certs| certs.collect::<Result<Vec<_>, _>>()).map_err(|e| config_error(path, e))?;
    if certs.is_empty() {
        return Err(ClientError::Tls(format!("{}: no PEM certificate in it", path.display())));
    }
    Ok(certs)
}

fn config_error(path: &Path, error: impl std::fmt::Display) -> ClientError {
    ClientError::Tls(format!("{}: {error}", path.display()))
}

#[cfg(test)]
mod tests {
    #[test]
    fn hosts_come_out_of_addresses() {
        assert_eq!(super::host_of("localhost:9800"), "localhost");
        assert_eq!(super::host_of("127.0.0.1:9800"), "127.0.0.1");
        assert_eq!(super::host_of("[::1]:9800"), "[::1]");
        assert_eq!(super::host_of("sluice.example"), "sluice.example");
    }
}
