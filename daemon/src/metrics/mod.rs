//! Metrics. Each shard counts what it does in plain fields of its own `Metrics` — no atomics,
//! no locks, nothing shared: a counter is a field of a struct found once per request (or per
//! batch, or per group commit), never per message. A scrape (`/metrics`) asks every shard for
//! its `Report` over the bus, adds them up, and renders them (`render`, with
//! `prometheus-client`'s encoders) in Prometheus' text format or OpenMetrics.
//!
//! Label sets are bounded: queues, topics and streams by name (ids of deleted ones are dropped
//! at the next scrape), stream shards only where enhanced monitoring asks for them, gateway
//! actions by their names in the protocol (`Op::name`), error codes by `ErrorCode`; and no
//! family renders more than `SERIES_MAX` series (the rest are counted in
//! `sluice_metrics_series_dropped_total`).

pub mod alarms;
pub mod history;
pub mod render;

use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap};

/// Series one metric family renders at most.
pub const SERIES_MAX: usize = 10_000;

/// Upper bounds of latency buckets, in microseconds (100 µs to 10 s).
pub const LATENCY_BOUNDS_US: [u64; 15] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 500_000, 1_000_000, 2_500_000, 10_000_000];
/// Upper bounds of group-commit sizes, in records.
pub const RECORDS_BOUNDS: [u64; 15] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1_024, 2_048, 4_096, 8_192, 16_384];

/// A histogram's counts under fixed bounds (`LATENCY_BOUNDS_US` or `RECORDS_BOUNDS`): one
/// count per bound, and the rest above the last.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Buckets {
    pub counts: [u64; 15],
    pub above: u64,
    pub sum: u64,
    pub count: u64,
}

impl Buckets {
    pub fn observe(&mut self, bounds: &[u64; 15], value: u64) {
        match bounds.iter().position(|bound| value <= *bound) {
            Some(at) => self.counts[at] += 1,
            None => self.above += 1,
        }
        self.sum += value;
        self.count += 1;
    }

    pub fn add(&mut self, other: &Buckets) {
        for (count, more) in self.counts.iter_mut().zip(other.counts) {
            *count += more;
        }
        self.above += other.above;
        self.sum += other.sum;
        self.count += other.count;
    }
}

/// What a queue's operations did on one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueCounters {
    pub sent: u64,
    pub received: u64,
    pub deleted: u64,
    pub empty_receives: u64,
    pub moved_to_dead_letter: u64,
}

impl QueueCounters {
    pub fn add(&mut self, other: &QueueCounters) {
        self.sent += other.sent;
        self.received += other.received;
        self.deleted += other.deleted;
        self.empty_receives += other.empty_receives;
        self.moved_to_dead_letter += other.moved_to_dead_letter;
    }
}

/// What one stream shard took and gave, on its owner.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct StreamCounters {
    pub incoming_records: u64,
    pub incoming_bytes: u64,
    pub outgoing_records: u64,
    pub outgoing_bytes: u64,
    pub get_records: u64,
    pub write_throttled: u64,
    pub read_throttled: u64,
    /// The MillisBehindLatest of the last read (GetRecords or a push), a gauge.
    pub iterator_age_ms: u64,
}

impl StreamCounters {
    /// Adds `other`'s counts (the iterator age: the larger).
    pub fn add(&mut self, other: &StreamCounters) {
        self.incoming_records += other.incoming_records;
        self.incoming_bytes += other.incoming_bytes;
        self.outgoing_records += other.outgoing_records;
        self.outgoing_bytes += other.outgoing_bytes;
        self.get_records += other.get_records;
        self.write_throttled += other.write_throttled;
        self.read_throttled += other.read_throttled;
        self.iterator_age_ms = self.iterator_age_ms.max(other.iterator_age_ms);
    }
}

/// What one topic's publishes did on one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TopicCounters {
    pub published: u64,
    pub publish_bytes: u64,
    /// Subscriptions a message was not delivered to because of their filter policy.
    pub filtered_out: u64,
}

/// What one topic's HTTP/S deliveries came to on one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct DeliveryCounters {
    /// POSTs answered 2xx.
    pub delivered: u64,
    /// Failed attempts that will be retried.
    pub retried: u64,
    /// Deliveries given up once the retry policy's attempts were spent (dead-lettered, if the
    /// subscription has a dead-letter queue).
    pub failed: u64,
}

impl DeliveryCounters {
    pub fn add(&mut self, other: &DeliveryCounters) {
        self.delivered += other.delivered;
        self.retried += other.retried;
        self.failed += other.failed;
    }
}

/// What one delivery stream took and delivered on one shard.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirehoseCounters {
    pub incoming_records: u64,
    pub incoming_bytes: u64,
    /// Records and bytes the destination took, and the objects (deliveries) they went in.
    pub delivered_records: u64,
    pub delivered_bytes: u64,
    pub deliveries: u64,
    /// Deliveries that failed (each tried again).
    pub failures: u64,
    /// Records the destination refused for its retry duration, written to the backup bucket.
    pub backed_up_records: u64,
}

impl FirehoseCounters {
    pub fn add(&mut self, other: &FirehoseCounters) {
        self.incoming_records += other.incoming_records;
        self.incoming_bytes += other.incoming_bytes;
        self.delivered_records += other.delivered_records;
        self.delivered_bytes += other.delivered_bytes;
        self.deliveries += other.deliveries;
        self.failures += other.failures;
        self.backed_up_records += other.backed_up_records;
    }
}

/// A delivery stream's buffer on one shard, as a scrape found it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct FirehoseGauges {
    pub buffered_records: u64,
    pub buffered_bytes: u64,
    /// Arrival time of the oldest record not delivered (epoch ms).
    pub oldest_ms: Option<u64>,
}

/// A gateway request's kind: (service, action, error code or `ok`).
pub type RequestKey = (&'static str, &'static str, &'static str);

/// Binary-protocol requests by (action, error code or `ok`), keyed by the action name's
/// address and the code's number — found without hashing text.
pub type BinaryRequests = HashMap<u64, (&'static str, &'static str, u64), std::hash::BuildHasherDefault<crate::env::notify::IdHasher>>;

/// Everything one shard counts.
#[derive(Debug, Default, Clone)]
pub struct Counters {
    pub queues: HashMap<u64, QueueCounters>,
    pub streams: HashMap<(u64, u32), StreamCounters>,
    /// By topic name.
    pub topics: HashMap<String, TopicCounters>,
    /// HTTP/S deliveries by (topic name, protocol).
    pub deliveries: HashMap<String, Vec<(&'static str, DeliveryCounters)>>,
    /// Gateway requests, with their latency (µs).
    pub requests: HashMap<RequestKey, Buckets>,
    /// Binary-protocol requests (counted, not timed: no clock read per request).
    pub binary: BinaryRequests,
    /// By delivery stream id.
    pub firehose: HashMap<u64, FirehoseCounters>,
}

/// The task queues whose scheduling delay is probed: the default one (connections, calls from
/// other shards) and the background one (timers, deliveries, retention, compaction).
pub const TASK_QUEUES: [&str; 2] = ["default", "background"];

/// One shard's metrics.
#[derive(Debug, Default)]
pub struct Metrics {
    counters: RefCell<Counters>,
    /// Client requests (binary and HTTP) being served now.
    pub requests_in_flight: Cell<u64>,
    /// Calls from other shards being served now.
    pub bus_calls_serving: Cell<u64>,
    /// How long a task spawned into each of `TASK_QUEUES` waited for its first poll (µs).
    task_delays: RefCell<[Buckets; 2]>,
    /// Compaction passes of the queue log that removed segments, the bytes they wrote again,
    /// and the segments they removed.
    compaction: Cell<(u64, u64, u64)>,
}

impl Metrics {
    pub fn queue(&self, queue_id: u64, count: impl FnOnce(&mut QueueCounters)) {
        count(self.counters.borrow_mut().queues.entry(queue_id).or_default());
    }

    pub fn stream(&self, stream_id: u64, shard: u32, count: impl FnOnce(&mut StreamCounters)) {
        count(self.counters.borrow_mut().streams.entry((stream_id, shard)).or_default());
    }

    pub fn topic(&self, topic: &str, count: impl FnOnce(&mut TopicCounters)) {
        let mut counters = self.counters.borrow_mut();
        match counters.topics.get_mut(topic) {
            Some(counted) => count(counted),
            None => count(counters.topics.entry(topic.to_owned()).or_default()),
        }
    }

    pub fn delivery(&self, topic: &str, protocol: &'static str, count: impl FnOnce(&mut DeliveryCounters)) {
        let mut counters = self.counters.borrow_mut();
        // Found by the topic's name without making a key (a publish counts here).
        let by_protocol = match counters.deliveries.get_mut(topic) {
            Some(by_protocol) => by_protocol,
            None => counters.deliveries.entry(topic.to_owned()).or_default(),
        };
        match by_protocol.iter_mut().find(|(known, _)| *known == protocol) {
            Some((_, counted)) => count(counted),
            None => {
                let mut counted = DeliveryCounters::default();
                count(&mut counted);
                by_protocol.push((protocol, counted));
            }
        }
    }

    pub fn firehose(&self, id: u64, count: impl FnOnce(&mut FirehoseCounters)) {
        count(self.counters.borrow_mut().firehose.entry(id).or_default());
    }

    /// A probe's wait in task queue `queue` (an index of `TASK_QUEUES`).
    pub fn task_delay(&self, queue: usize, micros: u64) {
        if let Some(buckets) = self.task_delays.borrow_mut().get_mut(queue) {
            buckets.observe(&LATENCY_BOUNDS_US, micros);
        }
    }

    pub fn task_delays(&self) -> [Buckets; 2] {
        *self.task_delays.borrow()
    }

    /// A compaction pass that wrote `relocated` bytes again and removed `removed` segments.
    pub fn compacted(&self, relocated: u64, removed: u64) {
        let (passes, bytes, segments) = self.compaction.get();
        self.compaction.set((passes + 1, bytes + relocated, segments + removed));
    }

    pub fn compaction(&self) -> (u64, u64, u64) {
        self.compaction.get()
    }

    /// Counts a request in flight until the guard is dropped.
    pub fn in_flight(&self) -> InFlight<'_> {
        self.requests_in_flight.set(self.requests_in_flight.get() + 1);
        InFlight(&self.requests_in_flight)
    }

    /// A binary-protocol request of `action` that ended with `code` (`None`: ok).
    pub fn binary_request(&self, action: &'static str, code: Option<sluice_protocol::ErrorCode>) {
        // Action names are static text (`Op::name`): an address names one, in 48 bits.
        let key = ((action.as_ptr() as u64) << 16) | code.map_or(0, |code| code as u64);
        let mut counters = self.counters.borrow_mut();
        let entry = counters.binary.entry(key).or_insert_with(|| (action, code.map_or("ok", |code| code.aws_name()), 0));
        entry.2 += 1;
    }

    pub fn request(&self, key: RequestKey, micros: u64) {
        self.counters.borrow_mut().requests.entry(key).or_default().observe(&LATENCY_BOUNDS_US, micros);
    }

    /// A copy of the counters, forgetting (first) those of queues, streams and topics that
    /// `keep` says are gone.
    pub fn counters(&self, keep: impl Fn(Entity<'_>) -> bool) -> Counters {
        let mut counters = self.counters.borrow_mut();
        counters.queues.retain(|id, _| keep(Entity::Queue(*id)));
        counters.streams.retain(|(id, shard), _| keep(Entity::StreamShard(*id, *shard)));
        counters.topics.retain(|name, _| keep(Entity::Topic(name)));
        counters.deliveries.retain(|name, _| keep(Entity::Topic(name)));
        counters.firehose.retain(|id, _| keep(Entity::DeliveryStream(*id)));
        counters.clone()
    }
}

/// A request in flight (`Metrics::in_flight`), until dropped.
pub struct InFlight<'a>(&'a Cell<u64>);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.set(self.0.get().saturating_sub(1));
    }
}

/// What a counter is about (for forgetting the gone).
#[derive(Debug, Clone, Copy)]
pub enum Entity<'a> {
    Queue(u64),
    StreamShard(u64, u32),
    Topic(&'a str),
    DeliveryStream(u64),
}

/// A queue's messages on one shard, as a scrape found them.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct QueueGauges {
    pub visible: u64,
    pub in_flight: u64,
    pub delayed: u64,
    /// When its oldest message was sent (epoch ms).
    pub oldest_sent_ms: Option<u64>,
    /// Bytes of its messages held in memory, and messages kept only in the log.
    pub resident_bytes: u64,
    pub on_disk_only: u64,
    /// Bytes of the log records holding its messages.
    pub logged_bytes: u64,
}

/// One shard's own state, as a scrape found it.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ShardGauges {
    pub connections: u64,
    pub memory_budget_bytes: u64,
    pub memory_used_bytes: u64,
    /// The queue log's segments and their bytes on disk.
    pub log_segments: u64,
    pub log_bytes: u64,
    pub log_appends: u64,
    pub log_flushes: u64,
    pub log_fdatasyncs: u64,
    /// Records per group commit, and each commit's write-and-sync time (µs).
    pub commit_records: Buckets,
    pub commit_micros: Buckets,
    /// Stream shard logs open.
    pub stream_logs_open: u64,
    /// Client requests being served, calls to other shards awaiting their answer, and calls
    /// from other shards being served.
    pub requests_in_flight: u64,
    pub bus_calls_pending: u64,
    pub bus_calls_serving: u64,
    /// Time the executor spent running tasks (µs), and each task queue's probed scheduling delay.
    pub busy_micros: u64,
    pub task_delays: [Buckets; 2],
    /// Shard 0: points the metric history holds, and those cut for its budget.
    pub history_points: u64,
    pub history_points_dropped: u64,
    /// Compaction passes, bytes written again, segments removed.
    pub compactions: u64,
    pub compaction_relocated_bytes: u64,
    pub compaction_segments_removed: u64,
    /// Shard 0 of a cluster node: the metadata group as this node sees it.
    pub cluster: Option<ClusterGauges>,
}

/// A cluster node's view of the metadata group (`cluster`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ClusterGauges {
    pub node_id: u64,
    /// The leader's node id (0: none known).
    pub leader: u64,
    pub term: u64,
    pub last_log_index: u64,
    pub applied_index: u64,
    pub voters: u64,
    /// Snapshots of the catalog installed from a leader since the start.
    pub snapshots_installed: u64,
}

/// What one shard answers a scrape with.
#[derive(Debug, Default, Clone)]
pub struct Report {
    pub shard: usize,
    pub counters: Counters,
    pub queues: Vec<(u64, QueueGauges)>,
    pub gauges: ShardGauges,
    /// Delivery streams' buffers, by id.
    pub firehose: Vec<(u64, FirehoseGauges)>,
}

/// Every shard's reports added up: what each queue, topic and stream did and holds.
#[derive(Debug, Default)]
pub struct Totals<'a> {
    pub queues: HashMap<u64, QueueCounters>,
    pub queue_gauges: HashMap<u64, QueueGauges>,
    /// By topic name.
    pub topics: HashMap<&'a str, TopicCounters>,
    /// HTTP/S deliveries by (topic name, protocol).
    pub deliveries: BTreeMap<(&'a str, &'static str), DeliveryCounters>,
    pub streams: HashMap<(u64, u32), StreamCounters>,
    /// By delivery stream id.
    pub firehose: HashMap<u64, FirehoseCounters>,
    pub firehose_gauges: HashMap<u64, FirehoseGauges>,
}

impl<'a> Totals<'a> {
    pub fn of(reports: &'a [Report]) -> Totals<'a> {
        let mut totals = Totals::default();
        for report in reports {
            for (id, counted) in &report.counters.queues {
                totals.queues.entry(*id).or_default().add(counted);
            }
            for (id, found) in &report.queues {
                let total = totals.queue_gauges.entry(*id).or_default();
                total.visible += found.visible;
                total.in_flight += found.in_flight;
                total.delayed += found.delayed;
                total.resident_bytes += found.resident_bytes;
                total.on_disk_only += found.on_disk_only;
                total.logged_bytes += found.logged_bytes;
                total.oldest_sent_ms = match (total.oldest_sent_ms, found.oldest_sent_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            for (name, counted) in &report.counters.topics {
                let total = totals.topics.entry(name.as_str()).or_default();
                total.published += counted.published;
                total.publish_bytes += counted.publish_bytes;
                total.filtered_out += counted.filtered_out;
            }
            for (name, by_protocol) in &report.counters.deliveries {
                for (protocol, counted) in by_protocol {
                    totals.deliveries.entry((name.as_str(), protocol)).or_default().add(counted);
                }
            }
            for (key, counted) in &report.counters.streams {
                totals.streams.entry(*key).or_default().add(counted);
            }
            for (id, counted) in &report.counters.firehose {
                totals.firehose.entry(*id).or_default().add(counted);
            }
            for (id, found) in &report.firehose {
                let total = totals.firehose_gauges.entry(*id).or_default();
                total.buffered_records += found.buffered_records;
                total.buffered_bytes += found.buffered_bytes;
                total.oldest_ms = match (total.oldest_ms, found.oldest_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
        }
        totals
    }

    /// A topic's deliveries over every protocol.
    pub fn topic_deliveries(&self, topic: &str) -> DeliveryCounters {
        let mut sum = DeliveryCounters::default();
        for (_, counted) in self.deliveries.range((topic, "")..).take_while(|((name, _), _)| *name == topic) {
            sum.add(counted);
        }
        sum
    }
}
