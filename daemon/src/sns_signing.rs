//! SNS message signatures receivers can verify (the topic engine signs HTTP/S deliveries with it): RSA PKCS#1 v1.5 over the string SNS signs,
//! with SHA-1 (`SignatureVersion` 1) or SHA-256 (2), and the signing certificate served at
//! `SigningCertURL` (`/SimpleNotificationService-sluice.pem` on the gateway).
//!
//! The key is `--sns-signing-key` (PEM, PKCS#8 or PKCS#1) or, without it, one the daemon makes
//! at the first signature it needs and keeps in `DATA_DIR/sns-signing-key.pem` (mode 0600), so
//! that messages signed before a restart still verify after it. The certificate is made from
//! the key (self-signed) and kept beside it. Signing costs a millisecond or two: it runs on
//! glommio's blocking pool, off the shard, as each HTTP delivery is made.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::{DecodePrivateKey, EncodePrivateKey, LineEnding};
use rsa::signature::{SignatureEncoding, Signer as _};
use rsa::RsaPrivateKey;
use serde_json::{Map, Value};

/// Where the signing certificate is served, under the gateway's public URL.
pub const CERT_PATH: &str = "/SimpleNotificationService-sluice.pem";

const KEY_FILE: &str = "sns-signing-key.pem";
const CERT_FILE: &str = "sns-signing-cert.pem";
const KEY_BITS: usize = 2048;

/// The daemon's SNS signing key, loaded or made on first use (once for all shards).
#[derive(Debug)]
pub struct SnsSigning {
    data_dir: PathBuf,
    key_file: Option<PathBuf>,
    signer: OnceLock<Result<Arc<Signer>, String>>,
}

pub struct Signer {
    /// The key ready to sign with each digest (made once, not per signature).
    sha1: rsa::pkcs1v15::SigningKey<sha1::Sha1>,
    sha256: rsa::pkcs1v15::SigningKey<sha2::Sha256>,
    cert_pem: String,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").finish_non_exhaustive()
    }
}

impl SnsSigning {
    pub fn new(data_dir: &Path, key_file: Option<&Path>) -> SnsSigning {
        SnsSigning { data_dir: data_dir.to_owned(), key_file: key_file.map(Path::to_owned), signer: OnceLock::new() }
    }

    /// The signer, read or made on first use (blocking: call it off the shard).
    pub fn signer(&self) -> Result<Arc<Signer>, String> {
        self.signer.get_or_init(|| self.open().map(Arc::new)).clone()
    }

    fn open(&self) -> Result<Signer, String> {
        let (key_path, cert_path) = match &self.key_file {
            Some(path) => (path.clone(), None),
            None => (self.data_dir.join(KEY_FILE), Some(self.data_dir.join(CERT_FILE))),
        };
        let key = match std::fs::read_to_string(&key_path) {
            Ok(pem) => RsaPrivateKey::from_pkcs8_pem(&pem)
                .or_else(|_| RsaPrivateKey::from_pkcs1_pem(&pem))
                .map_err(|e| format!("SNS signing key {}: not an RSA private key in PEM ({e})", key_path.display()))?,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && self.key_file.is_none() => {
                let key =
                    RsaPrivateKey::new(&mut rsa::rand_core::OsRng, KEY_BITS).map_err(|e| format!("cannot make an SNS signing key: {e}"))?;
                let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| format!("cannot encode the SNS signing key: {e}"))?;
                write_private(&key_path, pem.as_bytes())?;
                tracing::info!(file = %key_path.display(), "made the SNS signing key");
                key
            }
            Err(error) => return Err(format!("cannot read SNS signing key {}: {error}", key_path.display())),
        };
        // The certificate is the key's: a kept one is used while it is the key's, else made again.
        let cert_pem = match cert_path.as_ref().and_then(|path| std::fs::read_to_string(path).ok()) {
            Some(pem) if certifies(&pem, &key) => pem,
            _ => {
                let pem = certificate(&key)?;
                if let Some(path) = &cert_path {
                    std::fs::write(path, &pem).map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                }
                pem
            }
        };
        Ok(Signer { sha1: rsa::pkcs1v15::SigningKey::new(key.clone()), sha256: rsa::pkcs1v15::SigningKey::new(key), cert_pem })
    }
}

fn write_private(path: &Path, bytes: &[u8]) -> Result<(), String> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| format!("cannot create {}: {e}", path.display()))?;
    file.write_all(bytes).and_then(|()| file.sync_all()).map_err(|e| format!("cannot write {}: {e}", path.display()))
}

/// A self-signed certificate for `key`.
fn certificate(key: &RsaPrivateKey) -> Result<String, String> {
    let pem = key.to_pkcs8_pem(LineEnding::LF).map_err(|e| e.to_string())?;
    let pair = rcgen::KeyPair::from_pkcs8_pem_and_sign_algo(&pem, &rcgen::PKCS_RSA_SHA256).map_err(|e| e.to_string())?;
    let mut params = rcgen::CertificateParams::new(vec!["sns.sluice.local".to_owned()]).map_err(|e| e.to_string())?;
    params.distinguished_name.push(rcgen::DnType::CommonName, "Sluice SNS signing");
    params.not_after = rcgen::date_time_ymd(2099, 12, 31);
    let cert = params.self_signed(&pair).map_err(|e| format!("cannot make the SNS signing certificate: {e}"))?;
    Ok(cert.pem())
}

/// Whether `cert_pem` is a certificate of `key` (its public key is the key's).
fn certifies(cert_pem: &str, key: &RsaPrivateKey) -> bool {
    use rsa::pkcs1::EncodeRsaPublicKey;
    let Ok(public) = key.to_public_key().to_pkcs1_der() else { return false };
    let Ok(der) = rustls_pki_types::CertificateDer::from_pem_slice(cert_pem.as_bytes()) else { return false };
    // The certificate's SubjectPublicKeyInfo holds the PKCS#1 public key as its bit string.
    der.as_ref().windows(public.as_bytes().len()).any(|window| window == public.as_bytes())
}

use rustls_pki_types::pem::PemObject;

impl Signer {
    /// The certificate receivers verify with (PEM).
    pub fn cert_pem(&self) -> &str {
        &self.cert_pem
    }

    /// The base64 signature of `text` for `version` (`"2"`: SHA-256, else SHA-1).
    pub fn sign(&self, version: &str, text: &str) -> String {
        let signature = if version == "2" { self.sha256.sign(text.as_bytes()).to_vec() } else { self.sha1.sign(text.as_bytes()).to_vec() };
        STANDARD.encode(signature)
    }

    /// Signs an SNS JSON message (Notification, SubscriptionConfirmation,
    /// UnsubscribeConfirmation): its `Signature` set, the rest as it was. `None` for a body
    /// that is not such a message (a raw delivery).
    pub fn sign_message(&self, body: &[u8]) -> Option<Vec<u8>> {
        let mut message: Map<String, Value> = serde_json::from_slice(body).ok()?;
        let text = string_to_sign(&message)?;
        let version = message.get("SignatureVersion").and_then(Value::as_str).unwrap_or("1").to_owned();
        message.insert("Signature".into(), Value::String(self.sign(&version, &text)));
        serde_json::to_vec(&message).ok()
    }
}

/// The string SNS signs for a message: the signed keys it has, in order, as `Key\nValue\n`.
pub fn string_to_sign(message: &Map<String, Value>) -> Option<String> {
    let keys: &[&str] = match message.get("Type")?.as_str()? {
        "Notification" => &["Message", "MessageId", "Subject", "Timestamp", "TopicArn", "Type"],
        "SubscriptionConfirmation" | "UnsubscribeConfirmation" => {
            &["Message", "MessageId", "SubscribeURL", "Timestamp", "Token", "TopicArn", "Type"]
        }
        _ => return None,
    };
    let mut text = String::new();
    for key in keys {
        if let Some(value) = message.get(*key).and_then(Value::as_str) {
            text.push_str(key);
            text.push('\n');
            text.push_str(value);
            text.push('\n');
        }
    }
    Some(text)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rsa::signature::Verifier;

    #[test]
    fn messages_are_signed_as_sns_signs_them_and_the_key_is_kept() {
        let dir = tempfile::tempdir().unwrap();
        let signing = SnsSigning::new(dir.path(), None);
        let signer = signing.signer().unwrap();
        let body = br#"{"Type":"Notification","MessageId":"m-1","TopicArn":"arn:aws:sns:us-east-1:000000000000:t","Message":"hi","Timestamp":"2026-12-06T00:00:00.000Z","SignatureVersion":"2","Signature":"","SigningCertURL":"https://x/c.pem"}"#;
        let signed: Map<String, Value> = serde_json::from_slice(&signer.sign_message(body).unwrap()).unwrap();
        let text = string_to_sign(&signed).unwrap();
        assert_eq!(text, "Message\nhi\nMessageId\nm-1\nTimestamp\n2026-12-06T00:00:00.000Z\nTopicArn\narn:aws:sns:us-east-1:000000000000:t\nType\nNotification\n");
        let signature = STANDARD.decode(signed["Signature"].as_str().unwrap()).unwrap();
        let public = rsa::pkcs1v15::VerifyingKey::<sha2::Sha256>::new(AsRef::<RsaPrivateKey>::as_ref(&signer.sha256).to_public_key());
        public.verify(text.as_bytes(), &rsa::pkcs1v15::Signature::try_from(&signature[..]).unwrap()).unwrap();
        assert!(signer.cert_pem().starts_with("-----BEGIN CERTIFICATE-----"));
        assert!(certifies(signer.cert_pem(), signer.sha256.as_ref()));
        // A second start reads the same key and certificate.
        let again = SnsSigning::new(dir.path(), None).signer().unwrap();
        assert_eq!(again.cert_pem(), signer.cert_pem());
        assert_eq!(again.sign("1", "x"), signer.sign("1", "x"));
        assert!(signer.sign_message(b"raw text, not an SNS message").is_none());
    }
}
