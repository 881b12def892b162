//! A shard's part of a scrape (`metrics`): its counters, its queues' messages as they are now,
//! and its own state; and the scrape itself, which asks every shard for its part.

use std::collections::HashMap;
use std::rc::Rc;

use futures::future::join_all;

use super::{Answer, Call, Shard};
use crate::engine::Host;
use crate::metrics::render::{render, Format};
use crate::metrics::{Entity, QueueGauges, Report, ShardGauges};

/// This shard's report.
pub fn report(shard: &Rc<Shard>) -> Report {
    let snapshot = shard.snapshot();
    let streams: HashMap<u64, &crate::catalog::streams::StreamMeta> = snapshot.streams.values().map(|meta| (meta.id, &**meta)).collect();
    let counters = shard.metrics.counters(|entity| match entity {
        Entity::Queue(id) => snapshot.by_id.contains_key(&id),
        Entity::StreamShard(id, index) => streams.get(&id).is_some_and(|meta| meta.shard(index).is_some()),
        Entity::Topic(name) => snapshot.topics.contains_key(name),
        Entity::DeliveryStream(id) => snapshot.firehose.values().any(|meta| meta.id == id),
    });
    let firehose = shard
        .firehose
        .all()
        .iter()
        .map(|buffer| {
            let gauges = crate::metrics::FirehoseGauges {
                buffered_records: buffer.pending_records.get(),
                buffered_bytes: buffer.pending_bytes.get(),
                oldest_ms: buffer.oldest_ms.get().filter(|_| buffer.pending_records.get() > 0),
            };
            (buffer.id, gauges)
        })
        .collect();
    let mut queues = Vec::new();
    for meta in snapshot.client_queues() {
        let counts = crate::queue::service::count_local(shard, meta.id);
        let (oldest_sent_ms, resident_bytes, on_disk_only, logged_bytes) = match shard.queues.partitions.borrow().get(&meta.id) {
            Some(partition) => (partition.oldest_sent_ms(), partition.resident_bytes(), partition.on_disk(), partition.logged_bytes()),
            None => (None, 0, 0, 0),
        };
        if counts != Default::default() || oldest_sent_ms.is_some() {
            let gauges = QueueGauges {
                visible: counts.visible,
                in_flight: counts.inflight,
                delayed: counts.delayed,
                oldest_sent_ms,
                resident_bytes,
                on_disk_only,
                logged_bytes,
            };
            queues.push((meta.id, gauges));
        }
    }
    let storage = &shard.queues.storage;
    let log = storage.log();
    let stats = log.stats();
    let commits = log.commit_stats();
    let gauges = ShardGauges {
        connections: shard.shutdown.connections.get() as u64,
        memory_budget_bytes: storage.budget(),
        memory_used_bytes: storage.resident_bytes(),
        log_segments: log.segments().len() as u64,
        log_bytes: log.disk_bytes(),
        log_appends: stats.appends,
        log_flushes: stats.flushes,
        log_fdatasyncs: stats.fdatasyncs,
        commit_records: commits.records,
        commit_micros: commits.micros,
        stream_logs_open: shard.streams.open_logs().len() as u64,
        requests_in_flight: shard.metrics.requests_in_flight.get(),
        bus_calls_pending: shard.bus.pending() as u64,
        bus_calls_serving: shard.metrics.bus_calls_serving.get(),
        busy_micros: glommio::executor().executor_stats().executor_runtime().as_micros() as u64,
        task_delays: shard.metrics.task_delays(),
        history_points: shard.monitor.history.borrow().points(),
        history_points_dropped: shard.monitor.history.borrow().dropped,
        compactions: shard.metrics.compaction().0,
        compaction_relocated_bytes: shard.metrics.compaction().1,
        compaction_segments_removed: shard.metrics.compaction().2,
        cluster: shard.cluster.get().map(|node| node.gauges()),
    };
    Report { shard: shard.id, counters, queues, gauges, firehose }
}

/// Every shard's report, gathered over the bus, rendered in `format`.
pub async fn scrape(shard: &Rc<Shard>, format: Format) -> String {
    let reports = gather(shard).await;
    render(&reports, &shard.snapshot(), shard.env.now_ms(), format)
}

/// Every shard's report (those that answer), gathered over the bus.
pub async fn gather(shard: &Rc<Shard>) -> Vec<Report> {
    let asks = (0..shard.count).map(|peer| async move {
        if peer == shard.id {
            return Some(report(shard));
        }
        match shard.bus.call(peer, Call::Metrics).await {
            Ok(Answer::Metrics(report)) => Some(*report),
            Ok(other) => {
                tracing::warn!(peer, ?other, "a shard answered a scrape with something else");
                None
            }
            Err(error) => {
                tracing::warn!(peer, %error, "a shard did not answer a scrape");
                None
            }
        }
    });
    join_all(asks).await.into_iter().flatten().collect()
}

/// Shard, in the background: every `PROBE_EVERY`, a task spawned into each task queue
/// measures how long it waited for its first poll (`Metrics::task_delay`).
pub async fn probe_task_queues(shard: Rc<Shard>, queues: [glommio::TaskQueueHandle; 2]) {
    const PROBE_EVERY: std::time::Duration = std::time::Duration::from_millis(500);
    while shard.rest(PROBE_EVERY).await {
        for (index, queue) in queues.iter().enumerate() {
            let spawned = std::time::Instant::now();
            match glommio::spawn_local_into(async move { spawned.elapsed() }, *queue) {
                Ok(task) => {
                    let waited = task.await;
                    shard.metrics.task_delay(index, waited.as_micros() as u64);
                }
                Err(error) => tracing::debug!(%error, "cannot probe a task queue"),
            }
        }
    }
}
