//! Inputs shared by Sluice's micro-benchmarks (`cargo bench -p sluice-bench`).

use bytes::Bytes;
use sluice_protocol::{Op, Request, SendEntry};

/// A SendMessageBatch request of `entries` messages of `body_bytes` each.
pub fn send_batch(entries: usize, body_bytes: usize) -> Request {
    let body = Bytes::from("x".repeat(body_bytes));
    let entries = (0..entries).map(|i| SendEntry { id: i.to_string(), body: body.clone(), ..SendEntry::default() }).collect();
    Request { id: 1, op: Op::SendMessageBatch { queue: "bench".into(), entries } }
}

#[cfg(test)]
mod tests {
    #[test]
    fn send_batch_has_the_asked_shape() {
        let request = super::send_batch(10, 100);
        let sluice_protocol::Op::SendMessageBatch { entries, .. } = request.op else { panic!("not a batch") };
        assert_eq!(entries.len(), 10);
        assert!(entries.iter().all(|e| e.body.len() == 100));
    }
}
