//! Test certificates (rcgen): an authority that issues server and client certificates for
//! `localhost` and 127.0.0.1 into a directory, as PEM files.

use std::path::{Path, PathBuf};

use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair, SanType};

/// A certificate authority that issues certificates into a directory.
pub struct Authority {
    cert: rcgen::Certificate,
    key: KeyPair,
    /// The CA's certificate, PEM.
    pub file: PathBuf,
}

impl Authority {
    pub fn new(dir: &Path, name: &str) -> Authority {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.distinguished_name.push(rcgen::DnType::CommonName, format!("Sluice test CA {name}"));
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        let file = dir.join(format!("{name}-ca.pem"));
        std::fs::write(&file, cert.pem()).unwrap();
        Authority { cert, key, file }
    }

    /// Issues a certificate for `localhost` and 127.0.0.1 into `{stem}.pem` and `{stem}.key`.
    pub fn issue(&self, dir: &Path, stem: &str) -> (PathBuf, PathBuf) {
        let mut params = CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::IpAddress("127.0.0.1".parse().unwrap()));
        params.distinguished_name.push(rcgen::DnType::CommonName, stem);
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.cert, &self.key).unwrap();
        let (cert_file, key_file) = (dir.join(format!("{stem}.pem")), dir.join(format!("{stem}.key")));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        (cert_file, key_file)
    }
}
