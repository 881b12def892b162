//! Encryption at rest: what an engine writes to its log about a message's content (a queue
//! message's attributes and body, a stream record's partition key and data) is sealed with
//! AES-256-GCM under a data key when its queue, topic or stream has a KMS key.
//!
//! A data key is derived (HKDF-SHA-256) from the KMS key's current material and a random
//! 128-bit data-key id: only the KMS key's material opens it, as if wrapped by it, and a
//! sealed record names its KMS key, the material version and the data-key id, so it opens
//! after rotations, restarts and compactions without any table beside it. Each shard makes
//! its own data key per KMS key and makes a new one after the resource's reuse period
//! (`KmsDataKeyReusePeriodSeconds`), at a rotation, or after 2^32 seals; nonces are a
//! counter per data key, so sealing costs no system call.
//!
//! A sealed part:
//!
//! | bytes  | field                                     |
//! |--------|-------------------------------------------|
//! | 0      | format, `SEALED`                          |
//! | 1..17  | the KMS key's id (its UUID's 16 bytes)    |
//! | 17..21 | material version, u32 little-endian       |
//! | 21..37 | data-key id                               |
//! | 37..49 | nonce (the data key's seal count, LE)     |
//! | 49..   | ciphertext, then the 16-byte tag          |
//!
//! There is no additional data: what names the data key (bytes 0..37) chooses the key itself,
//! so a name altered opens under another key and fails its tag, and the nonce is the cipher's
//! own input. Bookkeeping around the sealed part (record headers,
//! queue ids, sequence numbers, times, receive counts) stays clear for recovery.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sluice_protocol::{ErrorCode, OpError};

use super::keys::{Keys, KmsKey};

/// The first byte of a sealed part.
pub const SEALED: u8 = 0xA5;
const NAME_BYTES: usize = 1 + 16 + 4 + 16;
const PREFIX_BYTES: usize = NAME_BYTES + NONCE_LEN;
const TAG_BYTES: usize = 16;
/// Bytes sealing adds to what it seals.
pub const SEAL_OVERHEAD: usize = PREFIX_BYTES + TAG_BYTES;
/// Seals under one data key before a new one is made (well within AES-GCM's limits).
const SEALS_PER_DATA_KEY: u64 = 1 << 32;
/// Data keys a shard keeps for opening before it forgets them all (they are derived again).
const OPEN_CACHE_MAX: usize = 4096;
const HKDF_INFO: &[u8] = b"sluice at-rest data key v1";

/// Which key seals a resource's records, as its snapshot says.
#[derive(Debug, Clone)]
pub enum Sealing {
    Key(Arc<KmsKey>),
    /// An AWS-managed key, or the key SSE-SQS uses, not made yet: the first write makes it
    /// (this change, on shard 0) and then seals under it.
    Unmade(super::keys::KeyChange),
    /// The resource names a key that does not exist (writes are refused, as KMS would).
    Missing(String),
}

/// A resource's encryption: its key, and how long a data key serves (ms).
#[derive(Debug, Clone)]
pub struct SealSpec {
    pub sealing: Sealing,
    pub reuse_ms: u64,
}

impl SealSpec {
    /// Whether new data may be sealed now; KMS's error when not (the key is disabled,
    /// pending deletion or gone).
    pub fn writable(&self) -> Result<&Arc<KmsKey>, OpError> {
        match &self.sealing {
            Sealing::Key(key) => key.usable().map(|()| key),
            Sealing::Unmade(_) => Err(OpError::new(ErrorCode::KmsInvalidState, "The key is being made; try again.")),
            Sealing::Missing(reference) => {
                Err(OpError::new(ErrorCode::KmsNotFound, format!("The KMS key {reference} does not exist or is not usable here.")))
            }
        }
    }
}

/// A shard's current data key for one KMS key.
pub struct WriteKey {
    name: [u8; NAME_BYTES],
    /// Shared with the opening cache: what this shard writes it soon reads.
    aead: Rc<LessSafeKey>,
    seals: Cell<u64>,
    made_ms: u64,
}

/// Why a sealed part did not open.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OpenError {
    /// Its KMS key (or that version of it) is no longer held: deleted after its waiting period.
    KeyGone(String),
    /// Not a sealed part, or altered.
    Damaged,
}

impl std::fmt::Display for OpenError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpenError::KeyGone(id) => write!(f, "sealed under KMS key {id}, which was deleted"),
            OpenError::Damaged => f.write_str("a sealed part does not open (damaged or altered)"),
        }
    }
}

fn derive(material: &[u8; 32], data_key_id: &[u8]) -> LessSafeKey {
    let prk = ring::hkdf::Salt::new(ring::hkdf::HKDF_SHA256, data_key_id).extract(material);
    let okm = prk.expand(&[HKDF_INFO], &AES_256_GCM).expect("HKDF output the size of an AES-256 key");
    LessSafeKey::new(UnboundKey::from(okm))
}

/// One shard's data keys: the current one per KMS key for sealing, and those met while
/// opening. Never shared between shards.
#[derive(Default)]
pub struct Keyring {
    keys: RefCell<Arc<Keys>>,
    /// How each encrypted resource's records are sealed, by id (the snapshot's).
    sealed: RefCell<Arc<HashMap<u64, SealSpec>>>,
    write: RefCell<HashMap<[u8; 16], Rc<WriteKey>>>,
    open: RefCell<HashMap<[u8; NAME_BYTES], Rc<LessSafeKey>>>,
    /// The data key opened last: records read together mostly share one.
    last_opened: RefCell<Option<([u8; NAME_BYTES], Rc<LessSafeKey>)>>,
}

impl Keyring {
    pub fn new(keys: Arc<Keys>) -> Keyring {
        Keyring { keys: RefCell::new(keys), ..Keyring::default() }
    }

    /// The keys and sealed resources of a new snapshot.
    pub fn install(&self, keys: Arc<Keys>, sealed: Arc<HashMap<u64, SealSpec>>) {
        if !Arc::ptr_eq(&self.keys.borrow(), &keys) {
            // A key deleted (or its material gone) opens nothing from now on.
            self.open.borrow_mut().clear();
            self.last_opened.borrow_mut().take();
        }
        *self.keys.borrow_mut() = keys;
        *self.sealed.borrow_mut() = sealed;
    }

    /// How resource `id`'s records are sealed, if they are.
    pub fn spec(&self, id: u64) -> Option<SealSpec> {
        self.sealed.borrow().get(&id).cloned()
    }

    /// The data key to seal resource `id`'s next record with (`None`: it is written in clear).
    /// Whatever state its KMS key is in: what the daemon itself writes again (compaction,
    /// moves to a dead-letter queue) is sealed as long as the key's material is held; new
    /// data is refused earlier (`SealSpec::writable`). A key not held (not made yet, or gone)
    /// is an error: nothing that should be sealed is ever written in clear.
    pub fn sealer(&self, id: u64, now_ms: impl FnOnce() -> u64) -> Result<Option<Rc<WriteKey>>, OpError> {
        let sealed = self.sealed.borrow();
        let Some(spec) = sealed.get(&id) else { return Ok(None) };
        match &spec.sealing {
            Sealing::Key(key) => Ok(Some(self.write_key(key, spec.reuse_ms, now_ms()))),
            _ => spec.writable().map(|_| None),
        }
    }

    pub fn keys(&self) -> Arc<Keys> {
        self.keys.borrow().clone()
    }

    /// The data key to seal with under `key` now, made anew when the current one is older than
    /// `reuse_ms`, of an older material version, or used up.
    pub fn write_key(&self, key: &KmsKey, reuse_ms: u64, now_ms: u64) -> Rc<WriteKey> {
        let (version, material) = key.current();
        if let Some(current) = self.write.borrow().get(&key.uuid) {
            let same_version = current.name[17..21] == version.to_le_bytes();
            if same_version && now_ms < current.made_ms.saturating_add(reuse_ms) && current.seals.get() < SEALS_PER_DATA_KEY {
                return current.clone();
            }
        }
        let mut name = [0u8; NAME_BYTES];
        name[0] = SEALED;
        name[1..17].copy_from_slice(&key.uuid);
        name[17..21].copy_from_slice(&version.to_le_bytes());
        super::random(&mut name[21..37]);
        let aead = Rc::new(derive(&material.0, &name[21..37]));
        self.keep_open_key(name, aead.clone());
        let write = Rc::new(WriteKey { name, aead, seals: Cell::new(0), made_ms: now_ms });
        self.write.borrow_mut().insert(key.uuid, write.clone());
        write
    }

    /// Keeps a data key for opening (forgetting them all past `OPEN_CACHE_MAX`).
    fn keep_open_key(&self, name: [u8; NAME_BYTES], aead: Rc<LessSafeKey>) {
        let mut open = self.open.borrow_mut();
        if open.len() >= OPEN_CACHE_MAX {
            open.clear();
        }
        open.insert(name, aead);
    }

    /// Appends to `out` a sealed part holding what `fill` appends: sealed in place, no copy.
    pub fn seal(write: &WriteKey, out: &mut Vec<u8>, fill: impl FnOnce(&mut Vec<u8>)) {
        let count = write.seals.get();
        write.seals.set(count + 1);
        let mut nonce = [0u8; NONCE_LEN];
        nonce[..8].copy_from_slice(&count.to_le_bytes());
        out.extend_from_slice(&write.name);
        out.extend_from_slice(&nonce);
        let body = out.len();
        fill(out);
        let (_, tail) = out.split_at_mut(body);
        let tag = write
            .aead
            .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), tail)
            .expect("sealing within AES-GCM's limits");
        out.extend_from_slice(tag.as_ref());
    }

    /// Opens a sealed part (whatever state its key is in: disabled keys still open what is
    /// already written, for recovery; readers that must refuse check `key_of` first).
    pub fn open(&self, sealed: &[u8]) -> Result<Vec<u8>, OpenError> {
        if sealed.len() < SEAL_OVERHEAD || sealed[0] != SEALED {
            return Err(OpenError::Damaged);
        }
        let name: [u8; NAME_BYTES] = sealed[..NAME_BYTES].try_into().expect("the name's bytes");
        let aead = self.open_key(&name)?;
        let nonce = Nonce::try_assume_unique_for_key(&sealed[NAME_BYTES..PREFIX_BYTES]).map_err(|_| OpenError::Damaged)?;
        let mut plaintext = sealed[PREFIX_BYTES..].to_vec();
        let len = aead.open_in_place(nonce, Aad::empty(), &mut plaintext).map_err(|_| OpenError::Damaged)?.len();
        plaintext.truncate(len);
        Ok(plaintext)
    }

    /// The KMS key a sealed part names, if held.
    pub fn key_of(&self, sealed: &[u8]) -> Option<Arc<KmsKey>> {
        let uuid: [u8; 16] = sealed.get(1..17)?.try_into().ok()?;
        self.keys.borrow().by_uuid(&uuid).cloned()
    }

    fn open_key(&self, name: &[u8; NAME_BYTES]) -> Result<Rc<LessSafeKey>, OpenError> {
        if let Some((last, aead)) = &*self.last_opened.borrow() {
            if last == name {
                return Ok(aead.clone());
            }
        }
        let found = self.open.borrow().get(name).cloned();
        let aead = match found {
            Some(aead) => aead,
            None => self.derive_open_key(name)?,
        };
        *self.last_opened.borrow_mut() = Some((*name, aead.clone()));
        Ok(aead)
    }

    fn derive_open_key(&self, name: &[u8; NAME_BYTES]) -> Result<Rc<LessSafeKey>, OpenError> {
        let uuid: [u8; 16] = name[1..17].try_into().expect("16 bytes");
        let version = u32::from_le_bytes(name[17..21].try_into().expect("4 bytes"));
        let gone = || OpenError::KeyGone(uuid::Uuid::from_bytes(uuid).hyphenated().to_string());
        let keys = self.keys.borrow().clone();
        let key = keys.by_uuid(&uuid).ok_or_else(gone)?;
        let material = key.material(version).ok_or_else(gone)?;
        let aead = Rc::new(derive(&material.0, &name[21..37]));
        self.keep_open_key(*name, aead.clone());
        Ok(aead)
    }
}

/// Whether `bytes` begins a sealed part.
pub fn is_sealed(bytes: &[u8]) -> bool {
    bytes.first() == Some(&SEALED)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{KeyChange, KeyNaming};
    use super::*;

    fn ring_with_key() -> (Keyring, Arc<KmsKey>, Keys) {
        let mut keys = Keys::new(KeyNaming::default());
        let key = keys.apply(KeyChange::Create { description: String::new(), tags: Default::default() }, 0, None).unwrap().unwrap();
        (Keyring::new(Arc::new(keys.clone())), key, keys)
    }

    #[test]
    fn sealed_parts_open_on_another_shard_and_after_rotation() {
        let (ring, key, mut keys) = ring_with_key();
        let write = ring.write_key(&key, 60_000, 0);
        let mut out = b"clear header".to_vec();
        Keyring::seal(&write, &mut out, |out| out.extend_from_slice(b"the body"));
        let sealed = &out[12..];
        assert_eq!(sealed.len(), 8 + SEAL_OVERHEAD);
        assert!(!out.windows(8).any(|w| w == b"the body"));
        keys.apply(KeyChange::RotateNow { key: key.id.clone() }, 1, None).unwrap();
        let other = Keyring::new(Arc::new(keys.clone()));
        assert_eq!(other.open(sealed).unwrap(), b"the body");
        // Altered anywhere — the data-key id, the nonce, the ciphertext — it does not open.
        for at in [25, 40, 60] {
            let mut altered = sealed.to_vec();
            altered[at] ^= 1;
            assert_eq!(other.open(&altered), Err(OpenError::Damaged), "byte {at}");
        }
        let rotated = keys.resolve(&key.id).unwrap().clone();
        let renewed = other.write_key(&rotated, 60_000, 2);
        assert_eq!(renewed.name[17..21], 1u32.to_le_bytes(), "a rotation makes a data key of the new version");
        assert!(Rc::ptr_eq(&renewed, &other.write_key(&rotated, 60_000, 3)), "reused within its period");
        assert!(!Rc::ptr_eq(&renewed, &other.write_key(&rotated, 60_000, 60_002)), "renewed after it");
        let empty = Keyring::new(Arc::new(Keys::default()));
        assert!(matches!(empty.open(sealed), Err(OpenError::KeyGone(_))));
    }

    #[test]
    fn nonces_never_repeat_under_one_data_key() {
        let (ring, key, _) = ring_with_key();
        let write = ring.write_key(&key, u64::MAX, 0);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..1000 {
            let mut out = Vec::new();
            Keyring::seal(&write, &mut out, |out| out.push(1));
            assert!(seen.insert(out[NAME_BYTES..PREFIX_BYTES].to_vec()));
        }
    }
}
