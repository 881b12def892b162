//! Native authentication: the server's `Hello` answer carries a fresh nonce; the client
//! answers with `Authenticate`, an HMAC-SHA256 of the nonce and its access key id under its
//! secret. The secret never crosses the wire, and a proof is good for that nonce only.

use hmac::{Hmac, Mac};
use sha2::Sha256;

/// What a proof signs.
pub fn challenge(nonce: &str, access_key_id: &str) -> String {
    format!("sluice-authenticate-v1\n{nonce}\n{access_key_id}")
}

/// The proof that the holder of `secret` answers `nonce` as `access_key_id` with (lower-case hex).
pub fn proof(secret: &str, nonce: &str, access_key_id: &str) -> String {
    hex(&hmac_sha256(secret.as_bytes(), challenge(nonce, access_key_id).as_bytes()))
}

/// Whether `claimed` is the proof `secret` gives.
pub fn verify(secret: &str, nonce: &str, access_key_id: &str, claimed: &str) -> bool {
    same(proof(secret, nonce, access_key_id).as_bytes(), claimed.as_bytes())
}

/// HMAC-SHA256 of `data` under `key` (also SigV4's primitive).
pub fn hmac_sha256(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).expect("HMAC takes a key of any length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

/// Lower-case hex of `bytes`.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for byte in bytes {
        out.push(DIGITS[(byte >> 4) as usize] as char);
        out.push(DIGITS[(byte & 0xf) as usize] as char);
    }
    out
}

/// Whether `a` and `b` are equal, in time independent of where they differ (for MACs).
pub fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_proof_binds_the_secret_the_nonce_and_the_key() {
        let good = proof("secret-0123456789", "n1", "AKIA1");
        assert_eq!(good.len(), 64);
        assert!(verify("secret-0123456789", "n1", "AKIA1", &good));
        assert!(!verify("secret-0123456789", "n2", "AKIA1", &good), "another nonce");
        assert!(!verify("secret-0123456789", "n1", "AKIA2", &good), "another key id");
        assert!(!verify("other-secret-0123", "n1", "AKIA1", &good), "another secret");
        assert!(!verify("secret-0123456789", "n1", "AKIA1", &good[..63]));
        assert_eq!(hex(&[0x00, 0x9f, 0xff]), "009fff");
    }
}
