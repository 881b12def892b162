//! Client-side encryption: envelope encryption of message bodies and stream record data, so
//! that what the broker keeps — and the broker itself — never sees them in clear.
//!
//! Each message (or each batch: one data key for all of its messages, each with its own
//! nonce) gets a fresh 256-bit data key; the content is sealed with AES-256-GCM under it,
//! and the data key is kept beside the content *wrapped* by a key the reader must hold:
//!
//! - a **local key** the client holds (`Envelope::local`, `file:PATH` in the CLI): the data
//!   key is sealed under it with AES-256-GCM; the key is named by its fingerprint (the first
//!   8 bytes of its SHA-256, in hex), so a reader with another key is told so;
//! - a **key of the key service** (`Envelope::kms`, `kms:KEY` in the CLI: a key id, ARN or
//!   alias): the data key comes from `GenerateDataKey` and is opened with `Decrypt`, so who
//!   may read is whoever the server's policies let use the key.
//!
//! ## Format, version 1
//!
//! A **message** (SQS, or SNS delivered raw) keeps its content in its body and two message
//! attributes:
//!
//! | attribute           | type   | value                                                     |
//! |---------------------|--------|-----------------------------------------------------------|
//! | `SluiceEnvelope`    | String | `1;AES-256-GCM;PROVIDER` — version, algorithm, wrapping key (`local:FINGERPRINT` or `kms:KEY-ARN`) |
//! | `SluiceEnvelopeKey` | Binary | the wrapped data key                                      |
//!
//! and its body is base64 (so it is valid text for every protocol) of the 12-byte nonce, the
//! ciphertext and the 16-byte tag. The additional data is the `SluiceEnvelope` value. The
//! message's other attributes stay in clear (filter policies read them).
//!
//! A **stream record**'s data is `SLE1`, a u16 (big-endian) length and the same
//! `1;AES-256-GCM;PROVIDER` text, a u16 length and the wrapped data key, the nonce, the
//! ciphertext and the tag; everything before the nonce is the additional data.
//!
//! A local key wraps a data key as the 12-byte nonce, the sealed key and the tag, with the
//! provider text as additional data. Data keys from the key service are wrapped by it, with the
//! encryption context `{"sluice-envelope": "1"}`.

use std::collections::HashMap;
use std::sync::Mutex;

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use bytes::{Bytes, BytesMut};
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use sluice_protocol::{MessageAttribute, Op, PublishEntry, PutRecordsEntry, ReceivedMessage, Reply, SendEntry, StreamRecord};

use crate::{Client, ClientError};

/// The message attribute naming the format, algorithm and wrapping key.
pub const ATTRIBUTE: &str = "SluiceEnvelope";
/// The message attribute holding the wrapped data key.
pub const KEY_ATTRIBUTE: &str = "SluiceEnvelopeKey";
/// The first bytes of a sealed stream record.
pub const RECORD_MAGIC: &[u8; 4] = b"SLE1";
const VERSION: &str = "1";
const ALGORITHM: &str = "AES-256-GCM";
const TAG_BYTES: usize = 16;
const KEY_BYTES: usize = 32;
/// Data keys from the key service a reader keeps opened (then it forgets them all).
const OPENED_KEYS_MAX: usize = 1024;

fn failed(message: impl Into<String>) -> ClientError {
    ClientError::Envelope(message.into())
}

/// The key data keys are wrapped by.
enum Wrapping {
    Local { provider: String, aead: Box<LessSafeKey> },
    Kms { key: String },
}

/// Seals and opens content for one wrapping key. Share it: it keeps the data keys it opened.
pub struct Envelope {
    wrapping: Wrapping,
    random: SystemRandom,
    opened: Mutex<HashMap<Vec<u8>, [u8; KEY_BYTES]>>,
}

/// A data key ready to seal with: the key, its wrapped form and the provider text.
struct DataKey {
    aead: LessSafeKey,
    wrapped: Bytes,
    header: String,
}

fn aead(key: &[u8; KEY_BYTES]) -> LessSafeKey {
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, key).expect("a 32-byte AES-256 key"))
}

/// A counter nonce (data keys are fresh per message or batch, so an index is unique).
fn nonce(index: u64) -> [u8; NONCE_LEN] {
    let mut nonce = [0u8; NONCE_LEN];
    nonce[4..].copy_from_slice(&index.to_be_bytes());
    nonce
}

impl Envelope {
    /// Wraps data keys under a 256-bit key the client holds.
    pub fn local(key: &[u8; KEY_BYTES]) -> Envelope {
        let digest = ring::digest::digest(&ring::digest::SHA256, key);
        let fingerprint: String = digest.as_ref()[..8].iter().map(|byte| format!("{byte:02x}")).collect();
        Envelope::new(Wrapping::Local { provider: format!("local:{fingerprint}"), aead: Box::new(aead(key)) })
    }

    /// Wraps data keys under a key of the server's key service (a key id, ARN or alias).
    pub fn kms(key: impl Into<String>) -> Envelope {
        Envelope::new(Wrapping::Kms { key: key.into() })
    }

    /// `kms:KEY`, or `file:PATH` of a file holding a local key (32 raw bytes, 64 hex digits or base64).
    pub fn from_spec(spec: &str) -> Result<Envelope, String> {
        if let Some(key) = spec.strip_prefix("kms:") {
            if key.is_empty() {
                return Err("kms: needs a key id, ARN or alias, e.g. kms:alias/orders".into());
            }
            return Ok(Envelope::kms(key));
        }
        let Some(path) = spec.strip_prefix("file:") else {
            return Err(format!("`{spec}` is not kms:KEY or file:PATH"));
        };
        let content = std::fs::read(path).map_err(|e| format!("cannot read the key file {path}: {e}"))?;
        Ok(Envelope::local(&parse_key(&content).map_err(|e| format!("{path}: {e}"))?))
    }

    fn new(wrapping: Wrapping) -> Envelope {
        Envelope { wrapping, random: SystemRandom::new(), opened: Mutex::new(HashMap::new()) }
    }

    async fn data_key(&self, client: &Client) -> Result<DataKey, ClientError> {
        match &self.wrapping {
            Wrapping::Local { provider, aead: wrapper } => {
                let mut key = [0u8; KEY_BYTES];
                let mut wrap_nonce = [0u8; NONCE_LEN];
                self.random.fill(&mut key).map_err(|_| failed("no random bytes for a data key"))?;
                self.random.fill(&mut wrap_nonce).map_err(|_| failed("no random bytes for a nonce"))?;
                let header = format!("{VERSION};{ALGORITHM};{provider}");
                let mut wrapped = wrap_nonce.to_vec();
                wrapped.extend_from_slice(&key);
                let tag = wrapper
                    .seal_in_place_separate_tag(
                        Nonce::assume_unique_for_key(wrap_nonce),
                        Aad::from(provider.as_bytes()),
                        &mut wrapped[NONCE_LEN..],
                    )
                    .map_err(|_| failed("cannot wrap a data key"))?;
                wrapped.extend_from_slice(tag.as_ref());
                Ok(DataKey { aead: aead(&key), wrapped: wrapped.into(), header })
            }
            Wrapping::Kms { key } => {
                let op = Op::GenerateDataKey { key: key.clone(), bytes: KEY_BYTES as i32, context: context(), without_plaintext: false };
                match client.call(op).await? {
                    Reply::KeyData { key_arn, ciphertext: Some(wrapped), plaintext: Some(plaintext) } => {
                        let key: [u8; KEY_BYTES] =
                            plaintext.as_ref().try_into().map_err(|_| failed("the key service answered a data key of the wrong size"))?;
                        Ok(DataKey { aead: aead(&key), wrapped, header: format!("{VERSION};{ALGORITHM};kms:{key_arn}") })
                    }
                    other => Err(crate::unexpected(other)),
                }
            }
        }
    }

    /// The data key a header and wrapped key name, opened.
    async fn open_key(&self, client: &Client, header: &str, wrapped: &[u8]) -> Result<LessSafeKey, ClientError> {
        let mut parts = header.splitn(3, ';');
        let (version, algorithm, provider) = (parts.next(), parts.next(), parts.next().unwrap_or(""));
        if version != Some(VERSION) || algorithm != Some(ALGORITHM) {
            return Err(failed(format!("envelope `{header}` is not version {VERSION} with {ALGORITHM}")));
        }
        match &self.wrapping {
            Wrapping::Local { provider: mine, aead: wrapper } => {
                if provider != mine {
                    return Err(failed(format!("sealed for {provider}; this reader holds {mine}")));
                }
                if wrapped.len() != NONCE_LEN + KEY_BYTES + TAG_BYTES {
                    return Err(failed("the wrapped data key is not one"));
                }
                let nonce = Nonce::try_assume_unique_for_key(&wrapped[..NONCE_LEN]).map_err(|_| failed("bad nonce"))?;
                let mut key = wrapped[NONCE_LEN..].to_vec();
                let opened = wrapper
                    .open_in_place(nonce, Aad::from(mine.as_bytes()), &mut key)
                    .map_err(|_| failed("the data key does not open under this key (altered, or another key)"))?;
                let opened: &[u8; KEY_BYTES] = (&*opened).try_into().map_err(|_| failed("the data key is not 32 bytes"))?;
                Ok(aead(opened))
            }
            Wrapping::Kms { .. } => {
                if !provider.starts_with("kms:") {
                    return Err(failed(format!("sealed for {provider}, not with the key service")));
                }
                if let Some(key) = self.opened.lock().expect("opened keys").get(wrapped) {
                    return Ok(aead(key));
                }
                let op = Op::Decrypt { ciphertext: Bytes::copy_from_slice(wrapped), key: None, context: context() };
                let key: [u8; KEY_BYTES] = match client.call(op).await? {
                    Reply::KeyData { plaintext: Some(plaintext), .. } => {
                        plaintext.as_ref().try_into().map_err(|_| failed("the key service opened a data key of the wrong size"))?
                    }
                    other => return Err(crate::unexpected(other)),
                };
                let mut opened = self.opened.lock().expect("opened keys");
                if opened.len() >= OPENED_KEYS_MAX {
                    opened.clear();
                }
                opened.insert(wrapped.to_vec(), key);
                Ok(aead(&key))
            }
        }
    }

    /// Seals the bodies of `entries` (a batch shares one fresh data key), adding the two
    /// envelope attributes to each.
    pub async fn seal_entries(&self, client: &Client, entries: &mut [SendEntry]) -> Result<(), ClientError> {
        let key = self.data_key(client).await?;
        for (index, entry) in entries.iter_mut().enumerate() {
            entry.body = seal_body(&key, index as u64, &entry.body)?;
            add_attributes(&mut entry.attributes, &key)?;
        }
        Ok(())
    }

    /// Seals one message's body under a fresh data key.
    pub async fn seal_entry(&self, client: &Client, mut entry: SendEntry) -> Result<SendEntry, ClientError> {
        self.seal_entries(client, std::slice::from_mut(&mut entry)).await?;
        Ok(entry)
    }

    /// Seals a message to publish (subscribers decrypt what is delivered raw).
    pub async fn seal_publish(&self, client: &Client, mut entry: PublishEntry) -> Result<PublishEntry, ClientError> {
        let key = self.data_key(client).await?;
        entry.message = seal_body(&key, 0, &entry.message)?;
        add_attributes(&mut entry.attributes, &key)?;
        Ok(entry)
    }

    /// Opens a received message sealed by an `Envelope`, in place: its body becomes the clear
    /// content and the envelope attributes go. A message without the envelope attributes is
    /// left as it is and answers `false`.
    pub async fn open_message(&self, client: &Client, message: &mut ReceivedMessage) -> Result<bool, ClientError> {
        let header = message.message_attributes.iter().find(|a| a.name == ATTRIBUTE).and_then(|a| a.string_value.clone());
        let Some(header) = header else { return Ok(false) };
        let wrapped = message
            .message_attributes
            .iter()
            .find(|a| a.name == KEY_ATTRIBUTE)
            .and_then(|a| a.binary_value.clone())
            .ok_or_else(|| failed(format!("message {} has {ATTRIBUTE} but no {KEY_ATTRIBUTE}", message.message_id)))?;
        let key = self.open_key(client, &header, &wrapped).await?;
        let sealed = STANDARD.decode(&message.body).map_err(|_| failed(format!("message {}'s body is not base64", message.message_id)))?;
        if sealed.len() < NONCE_LEN + TAG_BYTES {
            return Err(failed(format!("message {}'s body is too short to be sealed", message.message_id)));
        }
        let nonce = Nonce::try_assume_unique_for_key(&sealed[..NONCE_LEN]).map_err(|_| failed("bad nonce"))?;
        let mut content = sealed[NONCE_LEN..].to_vec();
        let len = key
            .open_in_place(nonce, Aad::from(header.as_bytes()), &mut content)
            .map_err(|_| failed(format!("message {} does not open (altered, or sealed under another key)", message.message_id)))?
            .len();
        content.truncate(len);
        message.body = content.into();
        message.message_attributes.retain(|a| a.name != ATTRIBUTE && a.name != KEY_ATTRIBUTE);
        Ok(true)
    }

    /// Seals the data of `records` (one fresh data key for them all).
    pub async fn seal_records(&self, client: &Client, records: &mut [PutRecordsEntry]) -> Result<(), ClientError> {
        let key = self.data_key(client).await?;
        for (index, record) in records.iter_mut().enumerate() {
            let mut out = BytesMut::with_capacity(record.data.len() + key.header.len() + key.wrapped.len() + 48);
            out.extend_from_slice(RECORD_MAGIC);
            out.extend_from_slice(&(key.header.len() as u16).to_be_bytes());
            out.extend_from_slice(key.header.as_bytes());
            out.extend_from_slice(&(key.wrapped.len() as u16).to_be_bytes());
            out.extend_from_slice(&key.wrapped);
            let aad_end = out.len();
            let nonce = nonce(index as u64);
            out.extend_from_slice(&nonce);
            out.extend_from_slice(&record.data);
            let (head, tail) = out.split_at_mut(aad_end + NONCE_LEN);
            let tag = key
                .aead
                .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(&head[..aad_end]), tail)
                .map_err(|_| failed("cannot seal a record"))?;
            out.extend_from_slice(tag.as_ref());
            record.data = out.freeze();
        }
        Ok(())
    }

    /// Opens a record sealed by `seal_records`, in place; one that is not sealed is left as
    /// it is and answers `false`.
    pub async fn open_record(&self, client: &Client, record: &mut StreamRecord) -> Result<bool, ClientError> {
        let data = record.data.clone();
        if !data.starts_with(RECORD_MAGIC) {
            return Ok(false);
        }
        let damaged = || failed(format!("record {} is not a whole envelope", record.sequence_number));
        let take = |at: &mut usize, len: usize| -> Result<&[u8], ClientError> {
            let part = data.get(*at..*at + len).ok_or_else(damaged)?;
            *at += len;
            Ok(part)
        };
        let mut at = RECORD_MAGIC.len();
        let header_len = u16::from_be_bytes(take(&mut at, 2)?.try_into().expect("2 bytes")) as usize;
        let header = std::str::from_utf8(take(&mut at, header_len)?).map_err(|_| damaged())?.to_owned();
        let wrapped_len = u16::from_be_bytes(take(&mut at, 2)?.try_into().expect("2 bytes")) as usize;
        let wrapped = take(&mut at, wrapped_len)?.to_vec();
        let aad_end = at;
        let nonce = Nonce::try_assume_unique_for_key(take(&mut at, NONCE_LEN)?).map_err(|_| damaged())?;
        if data.len() < at + TAG_BYTES {
            return Err(damaged());
        }
        let key = self.open_key(client, &header, &wrapped).await?;
        let mut content = data[at..].to_vec();
        let len = key
            .open_in_place(nonce, Aad::from(&data[..aad_end]), &mut content)
            .map_err(|_| failed(format!("record {} does not open (altered, or sealed under another key)", record.sequence_number)))?
            .len();
        content.truncate(len);
        record.data = content.into();
        Ok(true)
    }
}

fn context() -> Vec<(String, String)> {
    vec![("sluice-envelope".to_owned(), VERSION.to_owned())]
}

fn seal_body(key: &DataKey, index: u64, body: &[u8]) -> Result<Bytes, ClientError> {
    let nonce = nonce(index);
    let mut sealed = nonce.to_vec();
    sealed.extend_from_slice(body);
    let tag = key
        .aead
        .seal_in_place_separate_tag(Nonce::assume_unique_for_key(nonce), Aad::from(key.header.as_bytes()), &mut sealed[NONCE_LEN..])
        .map_err(|_| failed("cannot seal a message"))?;
    sealed.extend_from_slice(tag.as_ref());
    Ok(STANDARD.encode(sealed).into_bytes().into())
}

fn add_attributes(attributes: &mut Vec<MessageAttribute>, key: &DataKey) -> Result<(), ClientError> {
    if attributes.iter().any(|a| a.name == ATTRIBUTE || a.name == KEY_ATTRIBUTE) {
        return Err(failed(format!("the message already carries {ATTRIBUTE}")));
    }
    attributes.push(MessageAttribute::string(ATTRIBUTE, "String", key.header.clone()));
    attributes.push(MessageAttribute::binary(KEY_ATTRIBUTE, key.wrapped.clone()));
    Ok(())
}

/// A 256-bit key from a file's content: 32 raw bytes, 64 hex digits or base64.
pub fn parse_key(content: &[u8]) -> Result<[u8; KEY_BYTES], String> {
    if let Ok(raw) = <[u8; KEY_BYTES]>::try_from(content) {
        if !raw.iter().all(u8::is_ascii_graphic) {
            return Ok(raw);
        }
    }
    let text = std::str::from_utf8(content).map(str::trim).map_err(|_| "not 32 raw bytes, hex or base64".to_owned())?;
    let bytes = if text.len() == 2 * KEY_BYTES && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        (0..KEY_BYTES).map(|i| u8::from_str_radix(&text[2 * i..2 * i + 2], 16).unwrap_or(0)).collect()
    } else {
        STANDARD.decode(text).map_err(|_| "not 64 hex digits or base64 (make a key with `openssl rand -hex 32`)".to_owned())?
    };
    bytes.try_into().map_err(|bytes: Vec<u8>| format!("the key is {} bytes; it must be 32", bytes.len()))
}
