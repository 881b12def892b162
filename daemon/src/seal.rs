//! Sealing what the daemon hands out and takes back: receipt handles, shard iterators and
//! pagination tokens carry a MAC under a key kept in the data directory, so a client can
//! present only what it was given — it cannot make up a handle for a message it never
//! received, move an iterator to a shard or position it was never given, or bring one
//! back to life by changing its issue time.
//!
//! The MAC is SipHash-2-4 (a keyed pseudorandom function made for short inputs: ~25 ns
//! for a receipt, against ~130 ns for HMAC-SHA-256 even with the CPU's SHA instructions,
//! and a receipt is sealed and opened once per message), truncated to nothing: its 64 bits
//! are the tag. Guessing a tag takes 2^63 tries on average, each a request.
//!
//! The key is 128 random bits in `handles.key` (mode 0600), made at the first start and
//! read at every later one, so what was handed out before a restart is still accepted
//! after it. Deleting the file invalidates every handle, iterator and token outstanding
//! (their messages become visible again when their visibility timeouts lapse; readers ask
//! for new iterators), which is how to rotate it.

use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;

use siphasher::sip::SipHasher24;

/// The key file's name in the data directory.
pub const KEY_FILE: &str = "handles.key";
const KEY_BYTES: usize = 16;
/// Bytes of a tag.
pub const TAG_BYTES: usize = 8;

/// The daemon's sealing key. Its `Debug` never shows the key.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct SealKey {
    k0: u64,
    k1: u64,
}

impl std::fmt::Debug for SealKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SealKey(..)")
    }
}

/// A fixed key, for what runs without a data directory of its own (unit tests, the
/// simulator picks one per seed); a daemon always loads its own (`load_or_create`).
impl Default for SealKey {
    fn default() -> SealKey {
        SealKey::from_seed(0)
    }
}

impl SealKey {
    /// A key derived from `seed` (tests and the simulator: reproducible).
    pub fn from_seed(seed: u64) -> SealKey {
        SealKey { k0: seed ^ 0x5EA1_0F51_u64.rotate_left(17), k1: seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x0051_1CE5 }
    }

    /// Reads the key of data directory `dir`, making it (durably) if there is none yet.
    /// A key file of the wrong size is refused, never replaced: replacing it would
    /// silently invalidate every handle outstanding.
    pub fn load_or_create(dir: &Path) -> Result<SealKey, String> {
        let path = dir.join(KEY_FILE);
        match std::fs::read(&path) {
            Ok(bytes) => {
                let bytes: [u8; KEY_BYTES] = bytes.as_slice().try_into().map_err(|_| {
                    format!(
                        "{} holds {} bytes, not the {KEY_BYTES} of a key; remove it to make a new one (outstanding receipt handles and iterators then become invalid)",
                        path.display(),
                        bytes.len()
                    )
                })?;
                Ok(SealKey::from_bytes(bytes))
            }
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; KEY_BYTES];
                getrandom::fill(&mut bytes).map_err(|e| format!("cannot draw a random key: {e}"))?;
                let made = (|| -> std::io::Result<()> {
                    let mut file = std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(&path)?;
                    file.write_all(&bytes)?;
                    file.sync_all()?;
                    std::fs::File::open(dir)?.sync_all()
                })();
                made.map_err(|e| format!("cannot write {}: {e}", path.display()))?;
                Ok(SealKey::from_bytes(bytes))
            }
            Err(error) => Err(format!("cannot read {}: {error}", path.display())),
        }
    }

    fn from_bytes(bytes: [u8; KEY_BYTES]) -> SealKey {
        let (k0, k1) = bytes.split_at(8);
        SealKey { k0: u64::from_le_bytes(k0.try_into().unwrap_or_default()), k1: u64::from_le_bytes(k1.try_into().unwrap_or_default()) }
    }

    /// The tag of `bytes`.
    pub fn tag(&self, bytes: &[u8]) -> [u8; TAG_BYTES] {
        SipHasher24::new_with_keys(self.k0, self.k1).hash(bytes).to_be_bytes()
    }

    /// `bytes` followed by their tag.
    pub fn seal(&self, mut bytes: Vec<u8>) -> Vec<u8> {
        let tag = self.tag(&bytes);
        bytes.extend_from_slice(&tag);
        bytes
    }

    /// What `seal` made `sealed` from; `None` if the tag does not match (or is missing).
    pub fn open<'a>(&self, sealed: &'a [u8]) -> Option<&'a [u8]> {
        let body = sealed.len().checked_sub(TAG_BYTES)?;
        let (bytes, tag) = sealed.split_at(body);
        self.verify(bytes, tag).then_some(bytes)
    }

    /// Whether `tag` is `bytes`'s (in time independent of where they differ).
    pub fn verify(&self, bytes: &[u8], tag: &[u8]) -> bool {
        sluice_protocol::auth::same(&self.tag(bytes), tag)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_is_made_once_and_read_back() {
        let dir = std::env::temp_dir().join(format!("sluice-seal-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let made = SealKey::load_or_create(&dir).unwrap();
        assert_eq!(SealKey::load_or_create(&dir).unwrap(), made, "the same key after a restart");
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join(KEY_FILE)).unwrap().permissions().mode() & 0o777, 0o600);
        std::fs::write(dir.join(KEY_FILE), b"short").unwrap();
        assert!(SealKey::load_or_create(&dir).unwrap_err().contains("not the 16 of a key"));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn tags_depend_on_the_key_and_every_byte() {
        let (a, b) = (SealKey::from_seed(1), SealKey::from_seed(2));
        let tag = a.tag(b"payload");
        assert!(a.verify(b"payload", &tag));
        assert!(!b.verify(b"payload", &tag), "another key");
        assert!(!a.verify(b"paylobd", &tag), "another message");
        assert!(!a.verify(b"payload", &tag[..7]), "a short tag");
        assert_eq!(format!("{a:?}"), "SealKey(..)");
        let sealed = a.seal(b"after-this".to_vec());
        assert_eq!(a.open(&sealed), Some(&b"after-this"[..]));
        assert_eq!(b.open(&sealed), None);
        assert_eq!(a.open(&sealed[1..]), None);
        assert_eq!(a.open(b"short"), None);
    }
}
