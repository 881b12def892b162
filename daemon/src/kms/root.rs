//! The root key: what every KMS key's material is sealed under in the metadata file. It
//! comes from outside the data directory — a file (`--root-key-file`) or the environment
//! (`SLUICE_ROOT_KEY`) — and is never written by the daemon, so a copy of the data
//! directory alone opens nothing.
//!
//! A root key is 32 bytes: the file holds them raw, or as 64 hexadecimal digits, or as
//! base64 (what `openssl rand -hex 32` and `openssl rand -base64 32` print). The metadata
//! file records the key's fingerprint (a SHA-256 of it, cut to 64 bits, which tells keys
//! apart and reveals nothing of them), so a start with the wrong key or none is refused
//! with both fingerprints named instead of failing later on data it cannot read.

use std::path::Path;

use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};

/// The environment variable that may hold the root key itself (hex or base64).
pub const ENV_KEY: &str = "SLUICE_ROOT_KEY";
const KEY_BYTES: usize = 32;
const TAG_BYTES: usize = 16;

/// The root key. Its `Debug` shows the fingerprint only.
pub struct RootKey {
    aead: LessSafeKey,
    /// Derives the keys every shard must agree on without a word (`derive`).
    derivation: ring::hmac::Key,
    fingerprint: String,
}

impl std::fmt::Debug for RootKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootKey({})", self.fingerprint)
    }
}

impl RootKey {
    pub fn from_bytes(bytes: &[u8; KEY_BYTES]) -> RootKey {
        let mut hashed = ring::digest::Context::new(&ring::digest::SHA256);
        hashed.update(b"sluice root key fingerprint\0");
        hashed.update(bytes);
        let digest = hashed.finish();
        let fingerprint = digest.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        let aead = LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"));
        let derivation = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes);
        RootKey { aead, derivation, fingerprint }
    }

    /// Reads a key from what a file or the environment holds: 32 raw bytes, 64 hex digits or
    /// base64 of 32 bytes (surrounding whitespace ignored). `source` names where it came from.
    pub fn parse(content: &[u8], source: &str) -> Result<RootKey, String> {
        if let Ok(raw) = <&[u8; KEY_BYTES]>::try_from(content) {
            // 32 bytes that are also text would be a 32-character key: too weak to be meant.
            if !raw.iter().all(|byte| byte.is_ascii_graphic()) {
                return Ok(RootKey::from_bytes(raw));
            }
        }
        let text = std::str::from_utf8(content)
            .map(str::trim)
            .map_err(|_| format!("the root key in {source} is neither 32 raw bytes nor text (64 hex digits or base64 of 32 bytes)"))?;
        let decoded = if text.len() == 2 * KEY_BYTES && text.bytes().all(|byte| byte.is_ascii_hexdigit()) {
            (0..KEY_BYTES).map(|at| u8::from_str_radix(&text[2 * at..2 * at + 2], 16).unwrap_or(0)).collect()
        } else {
            base64::engine::general_purpose::STANDARD.decode(text).map_err(|_| {
                format!("the root key in {source} is not 64 hex digits or base64 of 32 bytes (make one with `openssl rand -hex 32`)")
            })?
        };
        let bytes: [u8; KEY_BYTES] = decoded.try_into().map_err(|bytes: Vec<u8>| {
            format!("the root key in {source} is {} bytes long; it must be 32 (make one with `openssl rand -hex 32`)", bytes.len())
        })?;
        Ok(RootKey::from_bytes(&bytes))
    }

    /// The root key from `file`, else from `SLUICE_ROOT_KEY`, else none. Both at once is refused
    /// (which one was meant?), and so is a file others may read.
    pub fn load(file: Option<&Path>) -> Result<Option<RootKey>, String> {
        let from_env = std::env::var_os(ENV_KEY).filter(|value| !value.is_empty());
        match (file, from_env) {
            (Some(_), Some(_)) => Err(format!("--root-key-file and {ENV_KEY} are both set: give the root key one way only")),
            (Some(path), None) => {
                let content = std::fs::read(path).map_err(|e| format!("cannot read the root key file {}: {e}", path.display()))?;
                use std::os::unix::fs::PermissionsExt;
                let mode = std::fs::metadata(path).map(|meta| meta.permissions().mode()).unwrap_or(0);
                if mode & 0o077 != 0 {
                    return Err(format!(
                        "the root key file {} can be read by others (mode {:o}): `chmod 600` it first",
                        path.display(),
                        mode & 0o777
                    ));
                }
                RootKey::parse(&content, &path.display().to_string()).map(Some)
            }
            (None, Some(value)) => RootKey::parse(value.as_encoded_bytes(), ENV_KEY).map(Some),
            (None, None) => Ok(None),
        }
    }

    /// 32 bytes derived from the root key for `label` (HMAC-SHA-256): the first material and id
    /// of the keys the services own or AWS manages, which every shard makes alike on its own.
    pub fn derive(&self, label: &str) -> [u8; KEY_BYTES] {
        let tag = ring::hmac::sign(&self.derivation, label.as_bytes());
        tag.as_ref().try_into().expect("HMAC-SHA-256 is 32 bytes")
    }

    /// 16 hex digits that tell root keys apart.
    pub fn fingerprint(&self) -> &str {
        &self.fingerprint
    }

    /// Seals key material for the metadata file: base64 of nonce, ciphertext and tag, bound
    /// to the key's id and version (a sealed material moved to another key does not open).
    pub fn wrap(&self, material: &[u8; KEY_BYTES], key_id: &str, version: u32) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        crate::kms::random(&mut nonce);
        let mut sealed = nonce.to_vec();
        sealed.extend_from_slice(material);
        let aad = format!("{key_id}/{version}");
        let tag = self
            .aead
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(aad.as_bytes()), &mut sealed[NONCE_LEN..])
            .expect("sealing 32 bytes");
        sealed.extend_from_slice(tag.as_ref());
        base64::engine::general_purpose::STANDARD.encode(sealed)
    }

    /// Opens what `wrap` sealed; `None` when it was sealed under another root key or altered.
    pub fn unwrap(&self, wrapped: &str, key_id: &str, version: u32) -> Option<[u8; KEY_BYTES]> {
        let mut sealed = base64::engine::general_purpose::STANDARD.decode(wrapped).ok()?;
        if sealed.len() != NONCE_LEN + KEY_BYTES + TAG_BYTES {
            return None;
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).ok()?;
        let aad = format!("{key_id}/{version}");
        let opened = self.aead.open_in_place(nonce, Aad::from(aad.as_bytes()), &mut sealed[NONCE_LEN..]).ok()?;
        opened.try_into().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_base64_and_raw_keys_are_the_same_key() {
        let bytes: [u8; 32] = std::array::from_fn(|i| (i * 7 + 1) as u8);
        let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let b64 = base64::engine::general_purpose::STANDARD.encode(bytes);
        let raw = RootKey::parse(&bytes, "raw").unwrap();
        assert_eq!(RootKey::parse(format!("{hex}\n").as_bytes(), "hex").unwrap().fingerprint(), raw.fingerprint());
        assert_eq!(RootKey::parse(b64.as_bytes(), "b64").unwrap().fingerprint(), raw.fingerprint());
        let short = base64::engine::general_purpose::STANDARD.encode(b"too short");
        assert!(RootKey::parse(short.as_bytes(), "x").unwrap_err().contains("9 bytes long"));
        assert!(RootKey::parse(b"not a key at all!", "x").unwrap_err().contains("openssl rand"));
        assert!(RootKey::parse(&hex.as_bytes()[..62], "x").is_err());
    }

    #[test]
    fn material_opens_only_under_its_root_key_id_and_version() {
        let root = RootKey::from_bytes(&[1; 32]);
        let other = RootKey::from_bytes(&[2; 32]);
        let material = [9u8; 32];
        let wrapped = root.wrap(&material, "k", 0);
        assert_eq!(root.unwrap(&wrapped, "k", 0), Some(material));
        assert_eq!(other.unwrap(&wrapped, "k", 0), None);
        assert_eq!(root.unwrap(&wrapped, "k", 1), None);
        assert_eq!(root.unwrap(&wrapped, "j", 0), None);
        assert_ne!(root.fingerprint(), other.fingerprint());
    }
}
