//! Renders every shard's `Report`, added up, as Prometheus' text format (0.0.4) or OpenMetrics,
//! through `prometheus-client`'s encoders (names, escaping, `_total`, buckets, `# EOF`).

use std::collections::BTreeMap;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::{Buckets, Report, StreamCounters, Totals, LATENCY_BOUNDS_US, RECORDS_BOUNDS, SERIES_MAX};
use crate::catalog::Snapshot;

/// Which exposition format a scraper asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Prometheus,
    OpenMetrics,
}

impl Format {
    /// OpenMetrics when the `Accept` header asks for it, else Prometheus' text format.
    pub fn from_accept(accept: Option<&str>) -> Format {
        match accept {
            Some(accept) if accept.contains("application/openmetrics-text") => Format::OpenMetrics,
            _ => Format::Prometheus,
        }
    }

    pub fn content_type(self) -> &'static str {
        match self {
            Format::Prometheus => prometheus_client::encoding::prometheus_text::CONTENT_TYPE,
            Format::OpenMetrics => "application/openmetrics-text; version=1.0.0; charset=utf-8",
        }
    }
}

#[derive(Debug, Clone, Copy)]
enum Value {
    Counter(u64),
    /// A counter of seconds.
    CounterSeconds(f64),
    Gauge(i64),
    Seconds(f64),
    /// Buckets under bounds, scaled (µs to seconds: 1e-6; records: 1).
    Histogram(&'static [u64; 15], f64, Buckets),
}

type Labels = Vec<(String, String)>;

/// One metric family: its series, each with its labels.
#[derive(Debug)]
struct Family {
    kind: MetricType,
    series: Vec<(Labels, Value)>,
}

impl EncodeMetric for Family {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), std::fmt::Error> {
        for (labels, value) in &self.series {
            let mut series = encoder.encode_family(labels)?;
            match *value {
                Value::Counter(count) => series.encode_counter::<NoLabelSet, u64, u64>(&count, None)?,
                Value::CounterSeconds(seconds) => series.encode_counter::<NoLabelSet, f64, u64>(&seconds, None)?,
                Value::Gauge(gauge) => series.encode_gauge(&gauge)?,
                Value::Seconds(seconds) => series.encode_gauge(&seconds)?,
                Value::Histogram(bounds, scale, buckets) => {
                    let mut pairs: Vec<(f64, u64)> = bounds.iter().map(|bound| *bound as f64 * scale).zip(buckets.counts).collect();
                    pairs.push((f64::MAX, buckets.above));
                    series.encode_histogram::<NoLabelSet>(buckets.sum as f64 * scale, buckets.count, &pairs, None)?;
                }
            }
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }

    fn is_empty(&self) -> bool {
        self.series.is_empty()
    }
}

/// The families being made, by name, with their help, and how many series were dropped.
struct Families {
    families: BTreeMap<&'static str, (&'static str, Family)>,
    dropped: u64,
}

impl Families {
    fn add(&mut self, name: &'static str, help: &'static str, labels: Labels, value: Value) {
        let kind = match value {
            Value::Counter(_) | Value::CounterSeconds(_) => MetricType::Counter,
            Value::Gauge(_) | Value::Seconds(_) => MetricType::Gauge,
            Value::Histogram(..) => MetricType::Histogram,
        };
        let (_, family) = self.families.entry(name).or_insert_with(|| (help, Family { kind, series: Vec::new() }));
        if family.series.len() >= SERIES_MAX {
            self.dropped += 1;
            return;
        }
        family.series.push((labels, value));
    }
}

fn label(name: &str, value: impl ToString) -> (String, String) {
    (name.to_owned(), value.to_string())
}

/// Renders `reports` (one per shard) against `snapshot` (for names, and enhanced monitoring).
pub fn render(reports: &[Report], snapshot: &Snapshot, now_ms: u64, format: Format) -> String {
    let mut f = Families { families: BTreeMap::new(), dropped: 0 };
    let totals = Totals::of(reports);
    queues(&mut f, &totals, snapshot, now_ms);
    topics(&mut f, &totals, snapshot);
    streams(&mut f, &totals, snapshot);
    firehose(&mut f, &totals, snapshot, now_ms);
    shards(&mut f, reports);
    requests(&mut f, reports);
    binary_requests(&mut f, reports);
    let dropped = f.dropped;
    let mut registry = Registry::default();
    // The encoder ends every help text with a full stop of its own.
    for (name, (help, family)) in f.families {
        registry.register(name, help.trim_end_matches('.'), family);
    }
    registry.register(
        "sluice_metrics_series_dropped",
        "Series left out of this scrape: a family had SERIES_MAX (10,000) already",
        Family { kind: MetricType::Counter, series: vec![(Vec::new(), Value::Counter(dropped))] },
    );
    let mut out = String::new();
    let encoded = match format {
        Format::Prometheus => prometheus_client::encoding::prometheus_text::encode(&mut out, &registry),
        Format::OpenMetrics => prometheus_client::encoding::text::encode(&mut out, &registry),
    };
    if let Err(error) = encoded {
        tracing::error!(%error, "cannot render metrics");
    }
    out
}

fn queues(f: &mut Families, totals: &Totals<'_>, snapshot: &Snapshot, now_ms: u64) {
    for meta in snapshot.client_queues() {
        let labels = || vec![label("queue", &meta.name)];
        let g = totals.queue_gauges.get(&meta.id).copied().unwrap_or_default();
        let c = totals.queues.get(&meta.id).copied().unwrap_or_default();
        f.add(
            "sluice_queue_messages_visible",
            "Messages ready to receive (ApproximateNumberOfMessages).",
            labels(),
            Value::Gauge(g.visible as i64),
        );
        f.add(
            "sluice_queue_messages_in_flight",
            "Messages received and not yet deleted or visible again (ApproximateNumberOfMessagesNotVisible).",
            labels(),
            Value::Gauge(g.in_flight as i64),
        );
        f.add(
            "sluice_queue_messages_delayed",
            "Messages not yet visible for their delay (ApproximateNumberOfMessagesDelayed).",
            labels(),
            Value::Gauge(g.delayed as i64),
        );
        let age = g.oldest_sent_ms.map_or(0.0, |sent| now_ms.saturating_sub(sent) as f64 / 1000.0);
        f.add(
            "sluice_queue_oldest_message_age_seconds",
            "Age of the oldest message in the queue (ApproximateAgeOfOldestMessage); 0 when empty.",
            labels(),
            Value::Seconds(age),
        );
        f.add(
            "sluice_queue_resident_bytes",
            "Bytes of the queue's messages held in memory (bodies, attributes and their bookkeeping).",
            labels(),
            Value::Gauge(g.resident_bytes as i64),
        );
        f.add(
            "sluice_queue_log_bytes",
            "Bytes of the log records holding the queue's messages (what it keeps on disk, before compaction frees the rest).",
            labels(),
            Value::Gauge(g.logged_bytes as i64),
        );
        f.add(
            "sluice_queue_messages_on_disk_only",
            "Messages of the queue kept only in the log (past --memory-budget), read back when received.",
            labels(),
            Value::Gauge(g.on_disk_only as i64),
        );
        f.add("sluice_queue_messages_sent", "Messages sent to the queue (NumberOfMessagesSent).", labels(), Value::Counter(c.sent));
        f.add(
            "sluice_queue_messages_received",
            "Messages handed out by receives (NumberOfMessagesReceived).",
            labels(),
            Value::Counter(c.received),
        );
        f.add("sluice_queue_messages_deleted", "Messages deleted (NumberOfMessagesDeleted).", labels(), Value::Counter(c.deleted));
        f.add(
            "sluice_queue_empty_receives",
            "Receives that returned no message (NumberOfEmptyReceives).",
            labels(),
            Value::Counter(c.empty_receives),
        );
        f.add(
            "sluice_queue_messages_moved_to_dead_letter",
            "Messages moved to the queue's dead-letter queue past maxReceiveCount.",
            labels(),
            Value::Counter(c.moved_to_dead_letter),
        );
    }
}

fn topics(f: &mut Families, totals: &Totals<'_>, snapshot: &Snapshot) {
    for ((name, protocol), c) in totals.deliveries.iter().filter(|((name, _), _)| snapshot.topics.contains_key(*name)) {
        let labels = || vec![label("topic", name), label("protocol", protocol)];
        f.add(
            "sluice_topic_deliveries",
            "Notifications delivered: to SQS queues (a feed's readers as the message enters their feed), HTTP/S POSTs answered 2xx, and records put into Firehose delivery streams (NumberOfNotificationsDelivered).",
            labels(),
            Value::Counter(c.delivered),
        );
        f.add(
            "sluice_topic_delivery_retries",
            "HTTP/S and Firehose delivery attempts that failed and will be retried.",
            labels(),
            Value::Counter(c.retried),
        );
        f.add("sluice_topic_delivery_failures", "Notifications not delivered (NumberOfNotificationsFailed): to SQS, undeliverable (no such queue, denied, too large); HTTP/S, given up after the retry policy's attempts. Dead-lettered when the subscription has a dead-letter queue.", labels(), Value::Counter(c.failed));
    }
    for meta in snapshot.topics.values() {
        let labels = || vec![label("topic", &meta.name)];
        let c = totals.topics.get(meta.name.as_str()).copied().unwrap_or_default();
        f.add(
            "sluice_topic_messages_published",
            "Messages published to the topic (NumberOfMessagesPublished).",
            labels(),
            Value::Counter(c.published),
        );
        f.add(
            "sluice_topic_filtered_out",
            "Subscriptions a message was not delivered to because their filter policy turned it away (NumberOfNotificationsFilteredOut).",
            labels(),
            Value::Counter(c.filtered_out),
        );
        f.add(
            "sluice_topic_published_bytes",
            "Bytes of messages published to the topic (PublishSize, summed).",
            labels(),
            Value::Counter(c.publish_bytes),
        );
    }
}

fn firehose(f: &mut Families, totals: &Totals<'_>, snapshot: &Snapshot, now_ms: u64) {
    for meta in snapshot.firehose.values() {
        let c = totals.firehose.get(&meta.id).copied().unwrap_or_default();
        let g = totals.firehose_gauges.get(&meta.id).copied().unwrap_or_default();
        let labels = || vec![label("delivery_stream", &meta.name)];
        let counters = [
            ("sluice_firehose_incoming_records", "Records put into the delivery stream (IncomingRecords).", c.incoming_records),
            ("sluice_firehose_incoming_bytes", "Bytes put into the delivery stream (IncomingBytes).", c.incoming_bytes),
            ("sluice_firehose_delivered_records", "Records the destination took (DeliveryToS3.Records).", c.delivered_records),
            ("sluice_firehose_delivered_bytes", "Bytes the destination took, before compression (DeliveryToS3.Bytes).", c.delivered_bytes),
            ("sluice_firehose_deliveries", "Objects written to the destination.", c.deliveries),
            ("sluice_firehose_delivery_failures", "Deliveries that failed and are tried again (the records stay buffered).", c.failures),
            (
                "sluice_firehose_backed_up_records",
                "Records the destination refused for its whole retry duration, written to the backup bucket instead.",
                c.backed_up_records,
            ),
        ];
        for (name, help, value) in counters {
            f.add(name, help, labels(), Value::Counter(value));
        }
        f.add(
            "sluice_firehose_buffered_records",
            "Records taken and not delivered yet, on every core.",
            labels(),
            Value::Gauge(g.buffered_records as i64),
        );
        f.add(
            "sluice_firehose_buffered_bytes",
            "Bytes taken and not delivered yet, on every core.",
            labels(),
            Value::Gauge(g.buffered_bytes as i64),
        );
        let freshness = g.oldest_ms.map_or(0, |oldest| now_ms.saturating_sub(oldest) / 1000);
        f.add(
            "sluice_firehose_data_freshness_seconds",
            "Age of the oldest record not delivered yet (DeliveryToS3.DataFreshness; 0 when none).",
            labels(),
            Value::Gauge(freshness as i64),
        );
    }
}

fn streams(f: &mut Families, totals: &Totals<'_>, snapshot: &Snapshot) {
    for meta in snapshot.streams.values() {
        let mut sum = StreamCounters::default();
        for shard in &meta.shards {
            let c = totals.streams.get(&(meta.id, shard.index)).copied().unwrap_or_default();
            sum.add(&c);
            // Enhanced monitoring: the shard-level series it asks for.
            let labels = || vec![label("stream", &meta.name), label("shard", shard.id())];
            let on = |metric: &str| meta.shard_level_metrics.iter().any(|m| m == metric);
            if on("IncomingBytes") {
                f.add(
                    "sluice_stream_shard_incoming_bytes",
                    "Bytes put to the shard (enhanced monitoring: IncomingBytes).",
                    labels(),
                    Value::Counter(c.incoming_bytes),
                );
            }
            if on("IncomingRecords") {
                f.add(
                    "sluice_stream_shard_incoming_records",
                    "Records put to the shard (enhanced monitoring: IncomingRecords).",
                    labels(),
                    Value::Counter(c.incoming_records),
                );
            }
            if on("OutgoingBytes") {
                f.add(
                    "sluice_stream_shard_outgoing_bytes",
                    "Bytes read from the shard (enhanced monitoring: OutgoingBytes).",
                    labels(),
                    Value::Counter(c.outgoing_bytes),
                );
            }
            if on("OutgoingRecords") {
                f.add(
                    "sluice_stream_shard_outgoing_records",
                    "Records read from the shard (enhanced monitoring: OutgoingRecords).",
                    labels(),
                    Value::Counter(c.outgoing_records),
                );
            }
            if on("WriteProvisionedThroughputExceeded") {
                f.add(
                    "sluice_stream_shard_write_throttled",
                    "Records refused past the shard's write limits (enhanced monitoring).",
                    labels(),
                    Value::Counter(c.write_throttled),
                );
            }
            if on("ReadProvisionedThroughputExceeded") {
                f.add(
                    "sluice_stream_shard_read_throttled",
                    "GetRecords refused past the shard's read limits (enhanced monitoring).",
                    labels(),
                    Value::Counter(c.read_throttled),
                );
            }
            if on("IteratorAgeMilliseconds") {
                f.add(
                    "sluice_stream_shard_iterator_age_milliseconds",
                    "MillisBehindLatest of the shard's last read (enhanced monitoring: IteratorAgeMilliseconds).",
                    labels(),
                    Value::Gauge(c.iterator_age_ms as i64),
                );
            }
        }
        let labels = || vec![label("stream", &meta.name)];
        f.add(
            "sluice_stream_incoming_records",
            "Records put to the stream (IncomingRecords).",
            labels(),
            Value::Counter(sum.incoming_records),
        );
        f.add("sluice_stream_incoming_bytes", "Bytes put to the stream (IncomingBytes).", labels(), Value::Counter(sum.incoming_bytes));
        f.add(
            "sluice_stream_outgoing_records",
            "Records read by GetRecords and push subscriptions (GetRecords.Records).",
            labels(),
            Value::Counter(sum.outgoing_records),
        );
        f.add(
            "sluice_stream_outgoing_bytes",
            "Bytes read by GetRecords and push subscriptions (GetRecords.Bytes).",
            labels(),
            Value::Counter(sum.outgoing_bytes),
        );
        f.add("sluice_stream_get_records", "GetRecords calls and push reads served.", labels(), Value::Counter(sum.get_records));
        f.add(
            "sluice_stream_write_throttled",
            "Records refused past shards' write limits (WriteProvisionedThroughputExceeded).",
            labels(),
            Value::Counter(sum.write_throttled),
        );
        f.add(
            "sluice_stream_read_throttled",
            "GetRecords refused past shards' read limits (ReadProvisionedThroughputExceeded).",
            labels(),
            Value::Counter(sum.read_throttled),
        );
        f.add(
            "sluice_stream_iterator_age_milliseconds",
            "The largest MillisBehindLatest of the shards' last reads (GetRecords.IteratorAgeMilliseconds).",
            labels(),
            Value::Gauge(sum.iterator_age_ms as i64),
        );
        f.add("sluice_stream_open_shards", "Open shards of the stream.", labels(), Value::Gauge(meta.open_shards().count() as i64));
        f.add(
            "sluice_stream_consumers",
            "Enhanced fan-out consumers registered on the stream (SubscribeToShard readers).",
            labels(),
            Value::Gauge(meta.consumers.len() as i64),
        );
    }
}

fn shards(f: &mut Families, reports: &[Report]) {
    for report in reports {
        let g = &report.gauges;
        let labels = || vec![label("shard", report.shard)];
        if let Some(cluster) = g.cluster {
            let node = || vec![label("node", cluster.node_id)];
            let facts = [
                (
                    "sluice_cluster_leader",
                    "The metadata group's leader as this node knows it (its node id; 0: none known).",
                    cluster.leader,
                ),
                ("sluice_cluster_term", "The metadata group's Raft term as this node knows it.", cluster.term),
                ("sluice_cluster_last_log_index", "The index of the last entry in this node's metadata log.", cluster.last_log_index),
                ("sluice_cluster_applied_index", "The index of the last metadata entry this node applied.", cluster.applied_index),
                ("sluice_cluster_voters", "Nodes voting in the metadata group.", cluster.voters),
            ];
            for (name, help, value) in facts {
                f.add(name, help, node(), Value::Gauge(value as i64));
            }
            f.add(
                "sluice_cluster_snapshots_installed",
                "Snapshots of the catalog this node was sent by a leader since it started (it was away past the leader's log).",
                node(),
                Value::Counter(cluster.snapshots_installed),
            );
        }
        if report.shard == 0 {
            f.add(
                "sluice_metric_history_points",
                "Points the metric history holds (12 bytes each, within --metric-history-bytes).",
                Vec::new(),
                Value::Gauge(g.history_points as i64),
            );
            f.add(
                "sluice_metric_history_points_dropped",
                "Points cut from the metric history to keep it within --metric-history-bytes.",
                Vec::new(),
                Value::Counter(g.history_points_dropped),
            );
        }
        f.add("sluice_shard_connections", "Connections the shard serves (binary and HTTP).", labels(), Value::Gauge(g.connections as i64));
        f.add(
            "sluice_shard_memory_budget_bytes",
            "The shard's part of --memory-budget.",
            labels(),
            Value::Gauge(g.memory_budget_bytes as i64),
        );
        f.add(
            "sluice_shard_memory_used_bytes",
            "Message bytes the shard holds in memory.",
            labels(),
            Value::Gauge(g.memory_used_bytes as i64),
        );
        f.add("sluice_shard_log_segments", "Segments of the shard's queue log.", labels(), Value::Gauge(g.log_segments as i64));
        f.add("sluice_shard_log_bytes", "Bytes of the shard's queue log on disk.", labels(), Value::Gauge(g.log_bytes as i64));
        f.add("sluice_shard_log_appends", "Records appended to the shard's queue log.", labels(), Value::Counter(g.log_appends));
        f.add("sluice_shard_log_flushes", "Group commits of the shard's queue log.", labels(), Value::Counter(g.log_flushes));
        f.add(
            "sluice_shard_log_fdatasyncs",
            "fdatasync calls (or O_DSYNC writes) of the shard's queue log.",
            labels(),
            Value::Counter(g.log_fdatasyncs),
        );
        f.add(
            "sluice_shard_group_commit_records",
            "Records per group commit of the shard's queue log.",
            labels(),
            Value::Histogram(&RECORDS_BOUNDS, 1.0, g.commit_records),
        );
        f.add(
            "sluice_shard_group_commit_seconds",
            "Time to write (and, as --fsync says, sync) one group commit of the shard's queue log.",
            labels(),
            Value::Histogram(&LATENCY_BOUNDS_US, 1e-6, g.commit_micros),
        );
        f.add("sluice_shard_stream_logs_open", "Stream shard logs the shard has open.", labels(), Value::Gauge(g.stream_logs_open as i64));
        f.add(
            "sluice_shard_compactions",
            "Compaction passes of the shard's queue log that removed segments.",
            labels(),
            Value::Counter(g.compactions),
        );
        f.add(
            "sluice_shard_compaction_relocated_bytes",
            "Bytes of live messages compaction wrote again to free old segments.",
            labels(),
            Value::Counter(g.compaction_relocated_bytes),
        );
        f.add(
            "sluice_shard_compaction_segments_removed",
            "Queue log segments compaction removed.",
            labels(),
            Value::Counter(g.compaction_segments_removed),
        );
        f.add(
            "sluice_shard_requests_in_flight",
            "Client requests (binary and HTTP) the shard is serving now.",
            labels(),
            Value::Gauge(g.requests_in_flight as i64),
        );
        f.add(
            "sluice_shard_bus_calls_pending",
            "Calls the shard sent to other shards that await their answer (the bus's depth).",
            labels(),
            Value::Gauge(g.bus_calls_pending as i64),
        );
        f.add(
            "sluice_shard_bus_calls_serving",
            "Calls from other shards the shard is serving now.",
            labels(),
            Value::Gauge(g.bus_calls_serving as i64),
        );
        f.add(
            "sluice_shard_busy_seconds",
            "Time the shard's executor spent running tasks (not waiting for I/O or sleeping).",
            labels(),
            Value::CounterSeconds(g.busy_micros as f64 / 1e6),
        );
        for (queue, delays) in super::TASK_QUEUES.iter().zip(g.task_delays) {
            f.add(
                "sluice_shard_task_queue_delay_seconds",
                "How long a task spawned into the task queue waited for its first poll (probed twice a second).",
                vec![label("shard", report.shard), label("queue", queue)],
                Value::Histogram(&LATENCY_BOUNDS_US, 1e-6, delays),
            );
        }
    }
}

fn binary_requests(f: &mut Families, reports: &[Report]) {
    let mut total: BTreeMap<(&str, &str), u64> = BTreeMap::new();
    for report in reports {
        for (action, code, count) in report.counters.binary.values() {
            *total.entry((action, code)).or_default() += count;
        }
    }
    for ((action, code), count) in total {
        f.add(
            "sluice_binary_requests",
            "Binary-protocol requests by action and error code (`ok`).",
            vec![label("action", action), label("code", code)],
            Value::Counter(count),
        );
    }
}

fn requests(f: &mut Families, reports: &[Report]) {
    let mut total: BTreeMap<super::RequestKey, Buckets> = BTreeMap::new();
    for report in reports {
        for (key, buckets) in &report.counters.requests {
            total.entry(*key).or_default().add(buckets);
        }
    }
    for ((service, action, code), buckets) in total {
        let labels = vec![label("service", service), label("action", action), label("code", code)];
        f.add(
            "sluice_gateway_request_seconds",
            "Gateway requests by service, action and error code (`ok`), with their latency.",
            labels,
            Value::Histogram(&LATENCY_BOUNDS_US, 1e-6, buckets),
        );
    }
}

#[cfg(test)]
mod tests {
    /// The `sluice_…` names in `text`, each cut at the end of its name.
    fn names(text: &str) -> std::collections::BTreeSet<String> {
        let mut found = std::collections::BTreeSet::new();
        let mut rest = text;
        while let Some(at) = rest.find("sluice_") {
            let name: String = rest[at..].chars().take_while(|c| c.is_ascii_alphanumeric() || *c == '_').collect();
            rest = &rest[at + name.len()..];
            found.insert(name);
        }
        found
    }

    #[test]
    fn the_grafana_dashboard_names_only_families_that_are_rendered() {
        let rendered = names(include_str!("render.rs"));
        let dashboard = names(include_str!("../../../docs/grafana-dashboard.json"));
        assert!(dashboard.len() > 10, "{dashboard:?}");
        for name in &dashboard {
            let family = ["_total", "_bucket", "_sum", "_count"].iter().find_map(|suffix| name.strip_suffix(suffix)).unwrap_or(name);
            assert!(rendered.contains(family), "the dashboard's {name} is not a family /metrics renders");
        }
    }
}
