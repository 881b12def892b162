//! `KinesisStreamAsSource`: a delivery stream that reads a Kinesis stream of this server. It
//! reads as a consumer group does (`catalog::groups`): the group of the stream consumer
//! `firehose-<delivery stream>` (registered by core 0 when missing, deregistered with the
//! delivery stream), one worker per core, each leasing its share of the shards. A worker reads
//! each shard it holds from its checkpoint (from the delivery stream's creation time, the
//! first time), appends what it reads to its core's buffer of the delivery stream, and once
//! that is durable checkpoints the last sequence number read: what is checkpointed is in a
//! buffer, so it is delivered at least once; what is read and not checkpointed is read again.
//! A closed shard read to its end is checkpointed `SHARD_END`, which makes its children
//! eligible: splits and merges are followed as the group's leases follow them.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use sluice_protocol::{ErrorCode, Op, Reply, ShardLease, StartingPosition, SHARD_END};

use super::FirehoseHost;
use crate::catalog::firehose::{DeliveryStreamMeta, KinesisSource};

/// Records asked for in one GetRecords.
const READ_RECORDS: i32 = 10_000;
/// Bytes appended to the buffer at once.
const APPEND_BYTES_MAX: usize = 4 << 20;
/// Wait between reads of a shard with nothing new.
const IDLE_POLL: Duration = Duration::from_millis(200);
/// Wait after a failure (a refused read, a full buffer) before trying again.
const RETRY: Duration = Duration::from_secs(1);

/// Starts this core's reader of every delivery stream with a Kinesis source that has none yet.
pub fn start<H: FirehoseHost>(host: &Rc<H>) {
    let snapshot = host.snapshot();
    for meta in snapshot.firehose.values().filter(|meta| meta.source.is_some()) {
        if !host.firehose().readers.borrow_mut().insert(meta.id) {
            continue;
        }
        let (shard, id) = (host.clone(), meta.id);
        host.env().clone().spawn(async move {
            read(&shard, id).await;
            shard.firehose().readers.borrow_mut().remove(&id);
        });
    }
}

fn current(host: &impl FirehoseHost, id: u64) -> Option<std::sync::Arc<DeliveryStreamMeta>> {
    host.snapshot().firehose.values().find(|meta| meta.id == id).cloned()
}

/// Waits `wait`, or less when the shard stops; answers whether to go on.
async fn pause<H: FirehoseHost>(host: &Rc<H>, wait: Duration) -> bool {
    let timer = host.env().sleep(wait);
    let stopping = host.shutdown().event.listen();
    futures::pin_mut!(timer, stopping);
    futures::future::select(timer, stopping).await;
    !host.shutdown().requested.get()
}

/// A shard's reader, as its worker sees it: told to stop, and whether it has ended.
struct Reading {
    stop: Rc<Cell<bool>>,
    ended: Rc<Cell<bool>>,
}

/// One core's worker in the delivery stream's consumer group: renews its leases, starts a
/// reader for each shard it newly holds and stops those of shards it no longer does. Ends when
/// the delivery stream is deleted or the shard stops.
async fn read<H: FirehoseHost>(host: &Rc<H>, id: u64) {
    let worker = format!("sluice-core-{}", host.id());
    // Each shard read now, by id.
    let readers: RefCell<HashMap<String, Reading>> = RefCell::default();
    let stop_all = || readers.borrow().values().for_each(|reading| reading.stop.set(true));
    loop {
        if host.shutdown().requested.get() {
            stop_all();
            return;
        }
        let Some(meta) = current(&**host, id) else {
            stop_all();
            return;
        };
        let Some(source) = meta.source.clone() else { return };
        let consumer_name = KinesisSource::consumer_name(&meta.name);
        let snapshot = host.snapshot();
        let stream = snapshot.streams.get(&source.stream);
        let consumer = stream.and_then(|stream| stream.consumers.iter().find(|consumer| consumer.name == consumer_name));
        let mut wait = RETRY;
        match consumer.map(|consumer| consumer.arn.clone()) {
            None => {
                // Core 0 registers the group's consumer; the others wait for it.
                if host.id() == 0 && stream.is_some() {
                    let op = Op::RegisterStreamConsumer { stream: source.stream.clone(), name: consumer_name };
                    match host.stream_op(op).await {
                        Ok(_) => {
                            tracing::info!(delivery_stream = %meta.name, stream = %source.stream, "registered the stream consumer it reads as")
                        }
                        Err(error) if error.code == ErrorCode::ResourceInUse => {}
                        Err(error) => {
                            tracing::warn!(delivery_stream = %meta.name, %error, "cannot register the stream consumer it reads as")
                        }
                    }
                }
            }
            Some(consumer_arn) => {
                let op = Op::LeaseShards { consumer_arn: consumer_arn.clone(), worker: worker.clone(), max_leases: None };
                match host.stream_op(op).await {
                    Ok(Reply::ShardLeases(leases)) => {
                        wait = Duration::from_millis((leases.lease_ms / 3).max(200));
                        let held: Vec<ShardLease> =
                            leases.leases.into_iter().filter(|lease| lease.worker.as_deref() == Some(worker.as_str())).collect();
                        let mut running = readers.borrow_mut();
                        running.retain(|shard, reading| {
                            let keep = held.iter().any(|lease| &lease.shard_id == shard) && !reading.ended.get();
                            if !keep {
                                reading.stop.set(true);
                            }
                            keep
                        });
                        for lease in held {
                            if running.contains_key(&lease.shard_id) {
                                continue;
                            }
                            let (stop, ended) = (Rc::new(Cell::new(false)), Rc::new(Cell::new(false)));
                            running.insert(lease.shard_id.clone(), Reading { stop: stop.clone(), ended: ended.clone() });
                            let (shard, consumer_arn, worker) = (host.clone(), consumer_arn.clone(), worker.clone());
                            host.env().clone().spawn(async move {
                                read_shard(&shard, id, &consumer_arn, &worker, lease, &stop).await;
                                ended.set(true);
                            });
                        }
                    }
                    Ok(other) => tracing::warn!(delivery_stream = %meta.name, ?other, "LeaseShards answered something else"),
                    Err(error) => tracing::warn!(delivery_stream = %meta.name, %error, "cannot lease the stream's shards"),
                }
            }
        }
        if !pause(host, wait).await {
            stop_all();
            return;
        }
    }
}

/// Reads one leased shard into this core's buffer until the lease is lost, the shard is read
/// to its end, or `stop` is set.
async fn read_shard<H: FirehoseHost>(host: &Rc<H>, id: u64, consumer_arn: &str, worker: &str, lease: ShardLease, stop: &Cell<bool>) {
    let Some(meta) = current(&**host, id) else { return };
    let Some(source) = meta.source.clone() else { return };
    // Where reading starts: after the checkpoint, or at the delivery stream's creation.
    let mut last: Option<String> = match lease.checkpoint.as_deref() {
        Some(SHARD_END) => return,
        checkpoint => checkpoint.map(str::to_owned),
    };
    let mut iterator: Option<String> = None;
    let checkpoint = |sequence_number: String| Op::CheckpointShard {
        consumer_arn: consumer_arn.to_owned(),
        worker: worker.to_owned(),
        shard_id: lease.shard_id.clone(),
        token: lease.token,
        sequence_number,
    };
    loop {
        if stop.get() || host.shutdown().requested.get() || current(&**host, id).is_none() {
            return;
        }
        let it = match iterator.take() {
            Some(it) => it,
            None => {
                let position = match &last {
                    Some(sequence_number) => StartingPosition {
                        kind: "AFTER_SEQUENCE_NUMBER".into(),
                        sequence_number: Some(sequence_number.clone()),
                        timestamp_ms: None,
                    },
                    None => {
                        StartingPosition { kind: "AT_TIMESTAMP".into(), sequence_number: None, timestamp_ms: Some(meta.created_ms as i64) }
                    }
                };
                let op = Op::GetShardIterator { stream: source.stream.clone(), shard_id: lease.shard_id.clone(), position };
                match host.stream_op(op).await {
                    Ok(Reply::ShardIterator(it)) => it,
                    other => {
                        tracing::warn!(delivery_stream = %meta.name, shard = %lease.shard_id, ?other, "cannot start reading a shard");
                        if !pause(host, RETRY).await {
                            return;
                        }
                        continue;
                    }
                }
            }
        };
        let read = host.stream_op(Op::GetRecords { iterator: it.clone(), limit: Some(READ_RECORDS), stream_arn: None }).await;
        let result = match read {
            Ok(Reply::Records(result)) => result,
            other => {
                // An expired iterator, a throttled read: start again from what was put.
                tracing::debug!(delivery_stream = %meta.name, shard = %lease.shard_id, ?other, "a read failed; trying again");
                if !pause(host, RETRY).await {
                    return;
                }
                continue;
            }
        };
        if let Some(newest) = result.records.last() {
            let records: Vec<Bytes> = result.records.iter().map(|record| record.data.clone()).collect();
            if !put_all(host, &meta, &records, stop).await {
                return;
            }
            let sequence_number = newest.sequence_number.clone();
            if let Err(error) = host.stream_op(checkpoint(sequence_number.clone())).await {
                // The lease is gone: whoever holds it now reads on from the last checkpoint.
                tracing::info!(delivery_stream = %meta.name, shard = %lease.shard_id, %error, "stops reading a shard");
                return;
            }
            last = Some(sequence_number);
        }
        match result.next_iterator {
            None => {
                // Read to its end: done, and its children may be leased.
                if let Err(error) = host.stream_op(checkpoint(SHARD_END.into())).await {
                    tracing::info!(delivery_stream = %meta.name, shard = %lease.shard_id, %error, "cannot checkpoint a shard's end");
                }
                return;
            }
            Some(next) => iterator = Some(next),
        }
        if result.records.is_empty() && !pause(host, IDLE_POLL).await {
            return;
        }
    }
}

/// Appends `records` to this core's buffer in parts of at most `APPEND_BYTES_MAX`, waiting
/// while the buffer is full; answers false when stopped first.
async fn put_all<H: FirehoseHost>(host: &Rc<H>, meta: &DeliveryStreamMeta, records: &[Bytes], stop: &Cell<bool>) -> bool {
    let mut start = 0;
    while start < records.len() {
        let mut end = start;
        let mut bytes = 0;
        while end < records.len() && (end == start || bytes + records[end].len() <= APPEND_BYTES_MAX) {
            bytes += records[end].len();
            end += 1;
        }
        match super::service::append(host, meta, &records[start..end]).await {
            Ok(_) => start = end,
            Err(error) => {
                if error.code != ErrorCode::ServiceUnavailable {
                    tracing::warn!(delivery_stream = %meta.name, %error, "cannot keep records read from the stream; trying again");
                }
                if stop.get() || !pause(host, RETRY).await {
                    return false;
                }
            }
        }
    }
    true
}
