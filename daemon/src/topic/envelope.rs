//! The JSON document an SQS subscriber receives for each notification (when raw
//! delivery is off), written field by field in the order SNS writes them.
//!
//! Everything but `UnsubscribeURL` is the same for every subscription of one publish,
//! so the document is written once per publish as a head and a tail, and each
//! subscription's body is head + its unsubscribe URL + tail.

use base64::engine::general_purpose::STANDARD;
use base64::Engine;
use bytes::{BufMut, Bytes, BytesMut};
use sha1::Digest;
use sluice_protocol::MessageAttribute;

use crate::catalog::feeds::{unsubscribe_base, UNSUBSCRIBE_FIELD};

/// What one notification says.
pub struct Notification<'a> {
    pub message_id: &'a str,
    /// A FIFO topic's sequence number of the message.
    pub sequence_number: Option<&'a str>,
    pub topic_arn: &'a str,
    pub subject: Option<&'a str>,
    pub message: &'a str,
    /// ISO-8601 UTC with milliseconds.
    pub timestamp: &'a str,
    /// `1` (SHA1) or `2` (SHA256).
    pub signature_version: &'a str,
    /// Only when the message was published as a plain string.
    pub attributes: &'a [MessageAttribute],
}

/// A notification's body, ready to be completed per subscription.
pub struct Envelope {
    head: Vec<u8>,
    tail: Vec<u8>,
    unsubscribe_base: String,
}

fn string(out: &mut Vec<u8>, text: &str) {
    serde_json::to_writer(&mut *out, text).expect("writing a string to a Vec cannot fail");
}

fn field(out: &mut Vec<u8>, name: &str, value: &str) {
    out.push(b',');
    string(out, name);
    out.push(b':');
    string(out, value);
}

/// The string SNS signs for a notification (its fields in alphabetical order).
fn string_to_sign(n: &Notification<'_>) -> String {
    let mut text = format!("Message\n{}\nMessageId\n{}\n", n.message, n.message_id);
    if let Some(subject) = n.subject {
        text.push_str(&format!("Subject\n{subject}\n"));
    }
    text.push_str(&format!("Timestamp\n{}\nTopicArn\n{}\nType\nNotification\n", n.timestamp, n.topic_arn));
    text
}

impl Envelope {
    /// `public_url` is where this server's HTTP front end is reached (for SigningCertURL
    /// and UnsubscribeURL).
    pub fn new(n: &Notification<'_>, public_url: &str) -> Envelope {
        let public_url = public_url.trim_end_matches('/');
        let mut head = Vec::with_capacity(n.message.len() + 512);
        head.extend_from_slice(b"{\"Type\":\"Notification\"");
        field(&mut head, "MessageId", n.message_id);
        if let Some(sequence_number) = n.sequence_number {
            field(&mut head, "SequenceNumber", sequence_number);
        }
        field(&mut head, "TopicArn", n.topic_arn);
        if let Some(subject) = n.subject {
            field(&mut head, "Subject", subject);
        }
        field(&mut head, "Message", n.message);
        field(&mut head, "Timestamp", n.timestamp);
        field(&mut head, "SignatureVersion", n.signature_version);
        // The digest of what SNS signs, not an RSA signature: this server holds no signing
        // key yet, so receivers cannot verify it (see the README).
        let digest = match n.signature_version {
            "2" => STANDARD.encode(sha2::Sha256::digest(string_to_sign(n).as_bytes())),
            _ => STANDARD.encode(sha1::Sha1::digest(string_to_sign(n).as_bytes())),
        };
        field(&mut head, "Signature", &digest);
        field(&mut head, "SigningCertURL", &format!("{public_url}{}", crate::sns_signing::CERT_PATH));
        head.extend_from_slice(UNSUBSCRIBE_FIELD);
        let mut tail = Vec::new();
        if !n.attributes.is_empty() {
            tail.extend_from_slice(b",\"MessageAttributes\":{");
            for (i, attribute) in n.attributes.iter().enumerate() {
                if i > 0 {
                    tail.push(b',');
                }
                string(&mut tail, &attribute.name);
                tail.extend_from_slice(b":{\"Type\":");
                string(&mut tail, &attribute.data_type);
                tail.extend_from_slice(b",\"Value\":");
                match (&attribute.string_value, &attribute.binary_value) {
                    (Some(text), _) => string(&mut tail, text),
                    (None, Some(bytes)) => string(&mut tail, &STANDARD.encode(bytes)),
                    (None, None) => string(&mut tail, ""),
                }
                tail.push(b'}');
            }
            tail.push(b'}');
        }
        tail.push(b'}');
        Envelope { head, tail, unsubscribe_base: unsubscribe_base(public_url) }
    }

    /// The envelope without its unsubscribe URL, as a feed of envelopes keeps it for every
    /// subscription that reads it (`catalog::feeds::complete_envelope` finishes it).
    pub fn shared(&self) -> Bytes {
        let mut shared = BytesMut::with_capacity(self.head.len() + self.tail.len());
        shared.put_slice(&self.head);
        shared.put_slice(&self.tail);
        shared.freeze()
    }

    /// The length of the body a subscription whose ARN is `arn_len` bytes long receives.
    pub fn body_len(&self, arn_len: usize) -> usize {
        self.head.len() + self.tail.len() + self.unsubscribe_base.len() + arn_len + 2
    }

    /// The body one subscription receives.
    pub fn body_for(&self, subscription_arn: &str) -> Bytes {
        let mut body =
            BytesMut::with_capacity(self.head.len() + self.tail.len() + self.unsubscribe_base.len() + subscription_arn.len() + 2);
        body.put_slice(&self.head);
        body.put_u8(b'"');
        // ARNs and the base URL hold nothing JSON escapes.
        body.put_slice(self.unsubscribe_base.as_bytes());
        body.put_slice(subscription_arn.as_bytes());
        body.put_u8(b'"');
        body.put_slice(&self.tail);
        body.freeze()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envelope_is_json_with_every_field_in_order() {
        let attributes = [MessageAttribute::string("color", "String", "red"), MessageAttribute::binary("blob", vec![1u8, 2, 3])];
        let n = Notification {
            message_id: "63a3f6b6-d533-4a47-aef9-fcf5cf758c76",
            sequence_number: None,
            topic_arn: "arn:aws:sns:us-east-1:000000000000:T",
            subject: Some("Hi \"there\""),
            message: "line1\nline2",
            timestamp: "2012-03-29T05:12:16.901Z",
            signature_version: "1",
            attributes: &attributes,
        };
        let body = Envelope::new(&n, "http://127.0.0.1:4566/").body_for("arn:aws:sns:us-east-1:000000000000:T:abc");
        let text = std::str::from_utf8(&body).unwrap();
        let value: serde_json::Value = serde_json::from_str(text).unwrap();
        assert_eq!(value["Type"], "Notification");
        assert_eq!(value["Subject"], "Hi \"there\"");
        assert_eq!(value["Message"], "line1\nline2");
        assert_eq!(
            value["UnsubscribeURL"],
            "http://127.0.0.1:4566/?Action=Unsubscribe&SubscriptionArn=arn:aws:sns:us-east-1:000000000000:T:abc"
        );
        assert_eq!(value["MessageAttributes"]["blob"]["Value"], "AQID");
        assert_eq!(value["MessageAttributes"]["color"]["Type"], "String");
        let order: Vec<&str> = [
            "Type",
            "MessageId",
            "TopicArn",
            "Subject",
            "Message",
            "Timestamp",
            "SignatureVersion",
            "Signature",
            "SigningCertURL",
            "UnsubscribeURL",
            "MessageAttributes",
        ]
        .into_iter()
        .collect();
        let positions: Vec<usize> = order.iter().map(|k| text.find(&format!("\"{k}\":")).unwrap()).collect();
        assert!(positions.windows(2).all(|w| w[0] < w[1]), "{text}");
        let signature = STANDARD.decode(value["Signature"].as_str().unwrap()).unwrap();
        assert_eq!(signature.len(), 20, "version 1 is a SHA-1 digest");
    }
}
