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
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret.as_bytes()).expect("HMAC takes a key of any length");
    mac.update(challenge(nonce, access_key_id).as_bytes());
    mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect()
}

/// Whether `claimed` is the proof `secret` gives (in time independent of where they differ).
pub fn verify(secret: &str, nonce: &str, access_key_id: &str, claimed: &str) -> bool {
    let expected = proof(secret, nonce, access_key_id);
    expected.len() == claimed.len() && expected.bytes().zip(claimed.bytes()).fold(0u8, |diff, (a, b)| diff | (a ^ b)) == 0
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
    }
}
