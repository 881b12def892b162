//! A member of a stream consumer group: a process that shares a stream's shards with the
//! other members of a registered consumer's group, the server keeping the leases and the
//! checkpoints (what KCL keeps in a DynamoDB table).
//!
//! ```text
//! let mut member = GroupMember::new(client, &consumer_arn, "worker-1");
//! loop {
//!     member.heartbeat().await?;                  // at least every member.renew_every()
//!     for shard in member.shards() {
//!         let batch = member.read(&shard, None).await?;
//!         /* process batch.records */
//!         if let Some(last) = batch.records.last() { member.checkpoint(&shard, &last.sequence_number).await?; }
//!         if batch.ended { member.finish(&shard).await?; }   // a closed shard, read to its end
//!     }
//! }
//! ```
//!
//! A member may process a shard until the time it sent the heartbeat that last granted it,
//! plus the lease time; `read` refuses (`LeaseLost`) once that has passed, and the server gives
//! the shard to another member only after it. A member that stops (or dies) loses its shards a
//! lease time later; one that leaves (`leave`) gives them back at once. Records are delivered
//! at least once: what was read but not checkpointed is read again by the next holder.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use sluice_protocol::{ErrorCode, Op, OpError, Reply, ShardLeases, StartingPosition, StreamRecord, SHARD_END};

use crate::{Client, ClientError};

/// One shard this member holds.
struct Held {
    token: u64,
    /// Until when this member may process the shard.
    deadline: Instant,
    next: Next,
}

/// Where the next read of a held shard starts.
enum Next {
    /// Just after the group's checkpoint (`None`: from the shard's start).
    Checkpoint(Option<String>),
    Iterator(String),
    /// A closed shard read to its end.
    Ended,
}

/// What one read of a held shard gave.
#[derive(Debug, Clone)]
pub struct ShardBatch {
    pub shard_id: String,
    pub records: Vec<StreamRecord>,
    /// The shard is closed and read to its end: `finish` it once its records are processed.
    pub ended: bool,
    pub millis_behind_latest: u64,
}

/// A member of a stream consumer group (see the module's comment).
pub struct GroupMember {
    client: Client,
    consumer_arn: String,
    stream_arn: String,
    worker: String,
    max_leases: Option<i32>,
    lease_ms: u64,
    held: BTreeMap<String, Held>,
}

fn lease_lost(shard: &str) -> ClientError {
    ClientError::Server(OpError::new(ErrorCode::LeaseLost, format!("this member no longer holds the lease on {shard}")))
}

fn unexpected(what: &str, reply: Reply) -> ClientError {
    ClientError::Protocol(format!("{what} answered {reply:?}"))
}

impl GroupMember {
    /// A member called `worker` (unique in the group) of the group of the registered stream
    /// consumer `consumer_arn`.
    pub fn new(client: Client, consumer_arn: &str, worker: &str) -> GroupMember {
        let stream_arn = consumer_arn.split("/consumer/").next().unwrap_or(consumer_arn).to_owned();
        GroupMember {
            client,
            consumer_arn: consumer_arn.to_owned(),
            stream_arn,
            worker: worker.to_owned(),
            max_leases: None,
            lease_ms: 0,
            held: BTreeMap::new(),
        }
    }

    /// Holds at most `max` shards (default: its fair share, whatever that is).
    pub fn with_max_leases(mut self, max: i32) -> GroupMember {
        self.max_leases = Some(max);
        self
    }

    pub fn worker(&self) -> &str {
        &self.worker
    }

    /// How often to call `heartbeat`: a third of the lease time (a second before the first).
    pub fn renew_every(&self) -> Duration {
        Duration::from_millis(if self.lease_ms == 0 { 1_000 } else { self.lease_ms / 3 })
    }

    /// Renews this member's leases and takes its share: returns the shards it now holds. Shards
    /// it held that the server no longer grants it (another member asked for them) are given
    /// back at once, so their next holder need not wait for the lease to run out.
    pub async fn heartbeat(&mut self) -> Result<Vec<String>, ClientError> {
        let sent = Instant::now();
        let op = Op::LeaseShards { consumer_arn: self.consumer_arn.clone(), worker: self.worker.clone(), max_leases: self.max_leases };
        let ShardLeases { lease_ms, leases, .. } = match self.client.call(op).await? {
            Reply::ShardLeases(leases) => leases,
            other => return Err(unexpected("LeaseShards", other)),
        };
        self.lease_ms = lease_ms;
        let deadline = sent + Duration::from_millis(lease_ms);
        let mut held = BTreeMap::new();
        for lease in leases {
            let next = match self.held.remove(&lease.shard_id) {
                Some(before) if before.token == lease.token => before.next,
                _ => Next::Checkpoint(lease.checkpoint),
            };
            held.insert(lease.shard_id, Held { token: lease.token, deadline, next });
        }
        let lost: Vec<String> = std::mem::replace(&mut self.held, held).into_keys().collect();
        if !lost.is_empty() {
            let op = Op::ReleaseShards { consumer_arn: self.consumer_arn.clone(), worker: self.worker.clone(), shard_ids: lost };
            self.client.call(op).await?;
        }
        Ok(self.shards())
    }

    /// The shards this member holds now (whose leases have not run out).
    pub fn shards(&self) -> Vec<String> {
        let now = Instant::now();
        self.held.iter().filter(|(_, held)| now < held.deadline).map(|(shard, _)| shard.clone()).collect()
    }

    /// Whether this member may process `shard` now.
    pub fn holds(&self, shard: &str) -> bool {
        self.held.get(shard).is_some_and(|held| Instant::now() < held.deadline)
    }

    /// Until when this member may process `shard`, if it holds it.
    pub fn deadline(&self, shard: &str) -> Option<Instant> {
        self.held.get(shard).map(|held| held.deadline)
    }

    fn held(&mut self, shard: &str) -> Result<&mut Held, ClientError> {
        match self.held.get_mut(shard) {
            Some(held) if Instant::now() < held.deadline => Ok(held),
            _ => Err(lease_lost(shard)),
        }
    }

    /// Reads the next records of a held shard: from just after the group's checkpoint at
    /// first, then on from the last read. Fails with `LeaseLost` if the lease ran out meanwhile.
    pub async fn read(&mut self, shard: &str, limit: Option<i32>) -> Result<ShardBatch, ClientError> {
        let start = match &self.held(shard)?.next {
            Next::Ended => return Ok(ShardBatch { shard_id: shard.to_owned(), records: Vec::new(), ended: true, millis_behind_latest: 0 }),
            Next::Iterator(iterator) => iterator.clone(),
            Next::Checkpoint(checkpoint) => {
                let position = match checkpoint.as_deref() {
                    None => StartingPosition::new("TRIM_HORIZON"),
                    Some(SHARD_END) => {
                        self.held(shard)?.next = Next::Ended;
                        return Ok(ShardBatch { shard_id: shard.to_owned(), records: Vec::new(), ended: true, millis_behind_latest: 0 });
                    }
                    Some(sequence_number) => StartingPosition {
                        sequence_number: Some(sequence_number.to_owned()),
                        ..StartingPosition::new("AFTER_SEQUENCE_NUMBER")
                    },
                };
                self.client.get_shard_iterator(&self.stream_arn, shard, position).await?
            }
        };
        let result = self.client.get_records(&start, limit).await?;
        let held = self.held(shard)?;
        let ended = result.next_iterator.is_none();
        held.next = match result.next_iterator {
            Some(next) => Next::Iterator(next),
            None => Next::Ended,
        };
        Ok(ShardBatch { shard_id: shard.to_owned(), records: result.records, ended, millis_behind_latest: result.millis_behind_latest })
    }

    /// Records that the group has processed `shard` up to `sequence_number`.
    pub async fn checkpoint(&mut self, shard: &str, sequence_number: &str) -> Result<(), ClientError> {
        let token = self.held(shard)?.token;
        let op = Op::CheckpointShard {
            consumer_arn: self.consumer_arn.clone(),
            worker: self.worker.clone(),
            shard_id: shard.to_owned(),
            token,
            sequence_number: sequence_number.to_owned(),
        };
        match self.client.call(op).await {
            Ok(_) => Ok(()),
            Err(error) => {
                if error.code() == Some(ErrorCode::LeaseLost) {
                    self.held.remove(shard);
                }
                Err(error)
            }
        }
    }

    /// Marks a closed shard, read to its end and processed, finished: the group leases it no
    /// more, and its children become leasable.
    pub async fn finish(&mut self, shard: &str) -> Result<(), ClientError> {
        self.checkpoint(shard, SHARD_END).await?;
        self.held.remove(shard);
        Ok(())
    }

    /// Leaves the group, giving back every lease at once.
    pub async fn leave(mut self) -> Result<(), ClientError> {
        self.held.clear();
        let op = Op::ReleaseShards { consumer_arn: self.consumer_arn.clone(), worker: self.worker.clone(), shard_ids: Vec::new() };
        self.client.call(op).await.map(|_| ())
    }
}
