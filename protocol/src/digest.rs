//! MD5 digests exactly as SQS computes them (aws-semantics.md §2.8).
//!
//! Both are computed without allocating: the hasher is fed piece by piece and
//! attributes are sorted through a slice of references.

use md5::{Digest, Md5};

/// Lower-case hex of 16 digest bytes.
pub fn hex(digest: &[u8; 16]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(32);
    for byte in digest {
        out.push(HEX[(byte >> 4) as usize] as char);
        out.push(HEX[(byte & 0xf) as usize] as char);
    }
    out
}

/// MD5 of a message body's bytes.
pub fn md5_of_body(body: &[u8]) -> [u8; 16] {
    Md5::digest(body).into()
}

/// One message attribute as the digest sees it.
pub trait DigestAttribute {
    fn name(&self) -> &str;
    fn data_type(&self) -> &str;
    /// `Ok(string)` when carried as StringValue, `Err(bytes)` when carried as BinaryValue.
    fn value(&self) -> Result<&str, &[u8]>;
}

/// MD5OfMessageAttributes over `attributes`, or `None` when there are none.
///
/// Names are sorted by their UTF-8 bytes; each attribute contributes the
/// length-prefixed name, length-prefixed data type, a transport byte (1 for
/// string values, 2 for binary) and the length-prefixed value.
pub fn md5_of_attributes<A: DigestAttribute>(attributes: &[A]) -> Option<[u8; 16]> {
    if attributes.is_empty() {
        return None;
    }
    let mut order: Vec<&A> = attributes.iter().collect();
    order.sort_unstable_by(|a, b| a.name().as_bytes().cmp(b.name().as_bytes()));
    let mut hasher = Md5::new();
    let put = |hasher: &mut Md5, bytes: &[u8]| {
        hasher.update((bytes.len() as u32).to_be_bytes());
        hasher.update(bytes);
    };
    for attribute in order {
        put(&mut hasher, attribute.name().as_bytes());
        put(&mut hasher, attribute.data_type().as_bytes());
        match attribute.value() {
            Ok(text) => {
                hasher.update([1u8]);
                put(&mut hasher, text.as_bytes());
            }
            Err(bytes) => {
                hasher.update([2u8]);
                put(&mut hasher, bytes);
            }
        }
    }
    Some(hasher.finalize().into())
}
