//! Durable storage below the engines, knowing none of them: the segmented, CRC-checked,
//! group-committed log on glommio DMA files (`log`), its record format with the one table of
//! record kinds (`record`), the stream log built on it (`stream`), and the metadata file and
//! journal (`meta`), and a Raft group's log on it (`raft`, openraft's log storage). Each engine keeps its own adapter in its own folder (the queue's journal
//! and compaction in `queue::store` and `queue::compaction`, the streams' shard logs in
//! `stream::store`); a request is answered once the log says its records are kept.

pub mod log;
pub mod meta;
pub mod raft;
pub mod record;
pub mod stream;

use sluice_protocol::{ErrorCode, OpError};

use log::StorageError;

/// Position of an appended record; durable once `durable` has returned for it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord)]
pub struct Ticket(pub u64);

/// The error a client gets for a storage failure: refusals a client can retry (space, a
/// segment that cannot be made, a record lost before it was written) are `ServiceUnavailable`.
pub fn storage_error(error: StorageError) -> OpError {
    match error {
        StorageError::Full(_) | StorageError::SegmentUnavailable { .. } | StorageError::Lost(_) => {
            OpError::new(ErrorCode::ServiceUnavailable, error.to_string())
        }
        other => OpError::new(ErrorCode::InternalFailure, format!("storage failure: {other}")),
    }
}
