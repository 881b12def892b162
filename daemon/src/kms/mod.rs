//! The key service: a subset of AWS KMS inside the daemon, and what it protects.
//!
//! - `root`: the root key every key's material is sealed under on disk (from outside the
//!   data directory).
//! - `keys`: keys, versions of their material, aliases, their changes and how the metadata
//!   file keeps them; held in every snapshot.
//! - `cipher`: the ciphertexts of Encrypt, GenerateDataKey and Decrypt.
//! - `at_rest`: sealing engine records on disk (queue messages, stream records) under data
//!   keys derived from a KMS key, and each shard's cache of those data keys.
//!
//! Below the engines: it imports none of them, nor the catalog.

pub mod at_rest;
pub mod cipher;
pub mod keys;
pub mod root;

/// Fills `bytes` from the operating system's random source. Only ever called off the
/// message path (key and data-key creation, KMS requests, the root key's seals).
pub fn random(bytes: &mut [u8]) {
    getrandom::fill(bytes).expect("the operating system's random source");
}
