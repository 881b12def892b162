//! The key service's ciphertexts (Encrypt, GenerateDataKey, Decrypt): AES-256-GCM under the
//! named key's current material, in a blob that names its key and version, so Decrypt needs
//! no key id and data sealed before a rotation still opens after it.
//!
//! | bytes  | field                                   |
//! |--------|-----------------------------------------|
//! | 0      | format, 1                               |
//! | 1..17  | the key's id (its UUID's 16 bytes)      |
//! | 17..21 | material version, u32 little-endian     |
//! | 21..33 | nonce (random)                          |
//! | 33..   | ciphertext, then the 16-byte tag        |
//!
//! The header and the encryption context (pairs sorted by key, each part length-prefixed)
//! are the additional data: a ciphertext whose header was altered, or opened with another
//! context, does not open.

use std::sync::Arc;

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use sluice_protocol::{ErrorCode, KeyValues, OpError};

use super::keys::{Keys, KmsKey};

const FORMAT: u8 = 1;
const HEADER_BYTES: usize = 1 + 16 + 4 + NONCE_LEN;
const TAG_BYTES: usize = 16;
/// The largest plaintext Encrypt takes (as KMS).
pub const PLAINTEXT_BYTES_MAX: usize = 4096;
/// The largest ciphertext Decrypt takes (as KMS: 6144 bytes).
pub const CIPHERTEXT_BYTES_MAX: usize = 6144;

fn additional_data(header: &[u8], context: &KeyValues) -> Vec<u8> {
    let mut pairs: Vec<&(String, String)> = context.iter().collect();
    pairs.sort();
    let mut aad = header.to_vec();
    for (key, value) in pairs {
        for part in [key, value] {
            aad.extend_from_slice(&(part.len() as u32).to_le_bytes());
            aad.extend_from_slice(part.as_bytes());
        }
    }
    aad
}

fn aead(material: &[u8; 32]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, material).expect("a 32-byte AES-256 key"))
}

/// Seals `plaintext` under `key`'s current material (the caller checked the key is usable).
pub fn encrypt(key: &KmsKey, plaintext: &[u8], context: &KeyValues) -> Vec<u8> {
    let (version, material) = key.current();
    let mut nonce = [0u8; NONCE_LEN];
    super::random(&mut nonce);
    let mut blob = Vec::with_capacity(HEADER_BYTES + plaintext.len() + TAG_BYTES);
    blob.push(FORMAT);
    blob.extend_from_slice(&key.uuid);
    blob.extend_from_slice(&version.to_le_bytes());
    blob.extend_from_slice(&nonce);
    let aad = additional_data(&blob, context);
    blob.extend_from_slice(plaintext);
    let tag = aead(&material.0)
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&aad), &mut blob[HEADER_BYTES..])
        .expect("sealing a plaintext within AES-GCM's limits");
    blob.extend_from_slice(tag.as_ref());
    blob
}

fn invalid() -> OpError {
    OpError::new(ErrorCode::InvalidCiphertext, "The ciphertext is invalid, was altered, or its encryption context does not match.")
}

/// The key a ciphertext names (it may not be held).
pub fn key_of<'k>(keys: &'k Keys, blob: &[u8]) -> Result<&'k Arc<KmsKey>, OpError> {
    if blob.len() < HEADER_BYTES + TAG_BYTES || blob[0] != FORMAT {
        return Err(invalid());
    }
    let uuid: [u8; 16] = blob[1..17].try_into().expect("16 bytes");
    keys.by_uuid(&uuid).ok_or_else(|| {
        OpError::new(
            ErrorCode::KmsNotFound,
            format!("The key {} the ciphertext was made with does not exist.", uuid::Uuid::from_bytes(uuid)),
        )
    })
}

/// Opens a ciphertext made by `encrypt` with `key` (from `key_of`, checked usable by the caller).
pub fn decrypt(key: &KmsKey, blob: &[u8], context: &KeyValues) -> Result<Vec<u8>, OpError> {
    if blob.len() < HEADER_BYTES + TAG_BYTES || blob[0] != FORMAT || blob[1..17] != key.uuid {
        return Err(invalid());
    }
    let version = u32::from_le_bytes(blob[17..21].try_into().expect("4 bytes"));
    let material = key.material(version).ok_or_else(invalid)?;
    let nonce = Nonce::try_assume_unique_for_key(&blob[21..HEADER_BYTES]).map_err(|_| invalid())?;
    let aad = additional_data(&blob[..HEADER_BYTES], context);
    let mut sealed = blob[HEADER_BYTES..].to_vec();
    let opened = aead(&material.0).open_in_place(nonce, Aad::from(&aad), &mut sealed).map_err(|_| invalid())?;
    let len = opened.len();
    sealed.truncate(len);
    Ok(sealed)
}

#[cfg(test)]
mod tests {
    use super::super::keys::{KeyChange, KeyNaming};
    use super::*;

    #[test]
    fn ciphertexts_open_after_rotation_and_only_with_their_context() {
        let mut keys = Keys::new(KeyNaming::default());
        let key = keys.apply(KeyChange::Create { description: String::new(), tags: Default::default() }, 0, None).unwrap().unwrap();
        let context: KeyValues = vec![("purpose".into(), "test".into())];
        let blob = encrypt(&key, b"secret", &context);
        keys.apply(KeyChange::RotateNow { key: key.id.clone() }, 1, None).unwrap();
        let rotated = keys.resolve(&key.id).unwrap().clone();
        assert_eq!(key_of(&keys, &blob).unwrap().id, key.id);
        assert_eq!(decrypt(&rotated, &blob, &context).unwrap(), b"secret");
        assert_eq!(decrypt(&rotated, &blob, &vec![]).unwrap_err().code, ErrorCode::InvalidCiphertext);
        let mut altered = blob.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(decrypt(&rotated, &altered, &context).unwrap_err().code, ErrorCode::InvalidCiphertext);
        let newer = encrypt(&rotated, b"later", &context);
        assert_eq!(&newer[17..21], &1u32.to_le_bytes(), "new data uses the new version");
        assert_eq!(decrypt(&rotated, &newer, &context).unwrap(), b"later");
    }
}
