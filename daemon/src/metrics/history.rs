//! Metric history, the way CloudWatch keeps it: every `--metrics-sample-seconds` (60) shard 0
//! turns a scrape into the datapoints AWS publishes (`samples`: `AWS/SQS`
//! `ApproximateNumberOfMessagesVisible` by `QueueName`, `AWS/Kinesis` `IncomingRecords` by
//! `StreamName`, …) — a gauge as it stands, a counter as what it counted since the last
//! sample — and keeps them 15 days, within `--metric-history-bytes`, for GetMetricStatistics,
//! GetMetricData and alarms.
//!
//! Memory: 12 bytes a point (a `u32` second and an `f64`). When the points outgrow the budget,
//! every series is cut to an equal share, oldest points first; `dropped` counts what went.
//!
//! Disk: a log of its own (`<data-dir>/metrics`, the stream log's format, one record per
//! sample, synced): a `points` record is (time, [(series id, value)]), a series id being a hash
//! of its namespace, name and dimensions; a `names` record says which metric an id is — written
//! before a series' first point after a start, and again for every series once a day, so
//! retention (segments past 15 days are removed) keeps the names of what it keeps. A start
//! reads the log back. What was counted between the last sample and a stop is not recorded
//! (counters start again from zero).

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};

use sluice_protocol::{Dimension, MetricId};

use super::{Report, Totals};
use crate::catalog::Snapshot;

/// How long points are kept.
pub const RETENTION_SECONDS: u64 = 15 * 86_400;
/// Memory one point takes.
pub const POINT_BYTES: u64 = 12;
/// Every series is named again in the log this often.
const RENAME_EVERY_SECONDS: u64 = 86_400;

const RECORD_NAMES: u8 = 1;
const RECORD_POINTS: u8 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A value as it stands (a queue's depth).
    Gauge,
    /// A running total; each sample keeps what it grew by.
    Counter,
}

/// One metric's value at a sample.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub metric: MetricId,
    pub unit: &'static str,
    pub kind: Kind,
    pub value: f64,
}

/// One period's statistics.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Stats {
    pub start_s: u64,
    pub count: u64,
    pub sum: f64,
    pub min: f64,
    pub max: f64,
}

impl Stats {
    /// The named statistic (SampleCount, Average, Sum, Minimum, Maximum).
    pub fn statistic(&self, name: &str) -> Option<f64> {
        Some(match name {
            "SampleCount" => self.count as f64,
            "Average" => self.sum / self.count.max(1) as f64,
            "Sum" => self.sum,
            "Minimum" => self.min,
            "Maximum" => self.max,
            _ => return None,
        })
    }
}

pub const STATISTICS: [&str; 5] = ["SampleCount", "Average", "Sum", "Minimum", "Maximum"];

#[derive(Debug, Default)]
struct Series {
    unit: String,
    times: VecDeque<u32>,
    values: VecDeque<f64>,
}

/// The points of every metric, by metric (dimensions sorted by name).
#[derive(Debug)]
pub struct History {
    series: BTreeMap<MetricId, Series>,
    /// Counters' totals at the last sample.
    totals: HashMap<MetricId, f64>,
    points: u64,
    budget_points: u64,
    /// Points cut for the budget.
    pub dropped: u64,
    /// Series named in the log since `named_since_s`.
    named: HashSet<u64>,
    named_since_s: u64,
}

/// A metric's id in the log: FNV-1a over its parts.
pub fn series_id(metric: &MetricId) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    let mut add = |bytes: &[u8]| {
        for byte in bytes.iter().chain(std::iter::once(&0xff)) {
            hash ^= u64::from(*byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    };
    add(metric.namespace.as_bytes());
    add(metric.metric_name.as_bytes());
    for dimension in &metric.dimensions {
        add(dimension.name.as_bytes());
        add(dimension.value.as_bytes());
    }
    hash
}

/// `metric` with its dimensions in name order (how metrics are keyed and matched).
pub fn normalized(mut metric: MetricId) -> MetricId {
    metric.dimensions.sort();
    metric
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    let bytes = &text.as_bytes()[..text.len().min(u16::MAX as usize)];
    out.extend_from_slice(&(bytes.len() as u16).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// Reads a record from disk, trusting nothing.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        Some(self.take(1)?[0])
    }
    fn u32(&mut self) -> Option<u32> {
        Some(u32::from_le_bytes(self.take(4)?.try_into().ok()?))
    }
    fn u64(&mut self) -> Option<u64> {
        Some(u64::from_le_bytes(self.take(8)?.try_into().ok()?))
    }
    fn str(&mut self) -> Option<String> {
        let len = u16::from_le_bytes(self.take(2)?.try_into().ok()?) as usize;
        String::from_utf8(self.take(len)?.to_vec()).ok()
    }
}

/// What one log record holds.
pub enum Record {
    Names(Vec<(u64, MetricId, String)>),
    Points(u64, Vec<(u64, f64)>),
}

pub fn decode(data: &[u8]) -> Option<Record> {
    let mut cursor = Cursor(data);
    let record = match cursor.u8()? {
        RECORD_NAMES => {
            let count = cursor.u32()? as usize;
            let mut names = Vec::with_capacity(count.min(data.len() / 16));
            for _ in 0..count {
                let id = cursor.u64()?;
                let (namespace, metric_name, unit) = (cursor.str()?, cursor.str()?, cursor.str()?);
                let dimensions_count = cursor.u8()?;
                let mut dimensions = Vec::with_capacity(dimensions_count as usize);
                for _ in 0..dimensions_count {
                    dimensions.push(Dimension { name: cursor.str()?, value: cursor.str()? });
                }
                names.push((id, MetricId { namespace, metric_name, dimensions }, unit));
            }
            Record::Names(names)
        }
        RECORD_POINTS => {
            let time_s = cursor.u64()?;
            let count = cursor.u32()? as usize;
            let mut points = Vec::with_capacity(count.min(data.len() / 16));
            for _ in 0..count {
                points.push((cursor.u64()?, f64::from_bits(cursor.u64()?)));
            }
            Record::Points(time_s, points)
        }
        _ => return None,
    };
    cursor.0.is_empty().then_some(record)
}

impl History {
    pub fn new(budget_bytes: u64) -> History {
        History {
            series: BTreeMap::new(),
            totals: HashMap::new(),
            points: 0,
            budget_points: (budget_bytes / POINT_BYTES).max(1),
            dropped: 0,
            named: HashSet::new(),
            named_since_s: 0,
        }
    }

    /// Points held.
    pub fn points(&self) -> u64 {
        self.points
    }

    pub fn series_count(&self) -> usize {
        self.series.len()
    }

    fn push(&mut self, metric: &MetricId, unit: &str, time_s: u64, value: f64) {
        let series = match self.series.get_mut(metric) {
            Some(series) => series,
            None => self.series.entry(metric.clone()).or_insert_with(|| Series { unit: unit.to_owned(), ..Series::default() }),
        };
        let time = u32::try_from(time_s).unwrap_or(u32::MAX);
        // Points stay in time order (a clock that went back writes at the last time).
        let time = series.times.back().map_or(time, |last| time.max(*last));
        series.times.push_back(time);
        series.values.push_back(value);
        self.points += 1;
    }

    /// Replays one record read back from the log (`names` maps ids to metrics and units).
    pub fn replay(&mut self, record: Record, names: &HashMap<u64, (MetricId, String)>) {
        if let Record::Points(time_s, points) = record {
            for (id, value) in points {
                if let Some((metric, unit)) = names.get(&id) {
                    self.push(metric, unit, time_s, value);
                }
            }
            self.trim(time_s);
        }
    }

    /// Records a sample taken at `time_s`: counters keep what they grew by since the last
    /// one. Answers the log record(s) to write, names first.
    pub fn record(&mut self, time_s: u64, samples: Vec<Sample>) -> Vec<Vec<u8>> {
        if time_s >= self.named_since_s + RENAME_EVERY_SECONDS {
            self.named.clear();
            self.named_since_s = time_s;
        }
        let mut names = Vec::new();
        let mut points = Vec::with_capacity(1 + 12 + samples.len() * 16);
        points.push(RECORD_POINTS);
        points.extend_from_slice(&time_s.to_le_bytes());
        points.extend_from_slice(&(samples.len() as u32).to_le_bytes());
        let mut named_count = 0u32;
        for sample in samples {
            let metric = normalized(sample.metric);
            let value = match sample.kind {
                Kind::Gauge => sample.value,
                Kind::Counter => {
                    let last = self.totals.insert(metric.clone(), sample.value).unwrap_or(0.0);
                    // A total that went down was counted afresh (the resource was made again).
                    if sample.value >= last {
                        sample.value - last
                    } else {
                        sample.value
                    }
                }
            };
            let id = series_id(&metric);
            if self.named.insert(id) {
                named_count += 1;
                names.extend_from_slice(&id.to_le_bytes());
                put_str(&mut names, &metric.namespace);
                put_str(&mut names, &metric.metric_name);
                put_str(&mut names, sample.unit);
                let dimensions = &metric.dimensions[..metric.dimensions.len().min(u8::MAX as usize)];
                names.push(dimensions.len() as u8);
                for dimension in dimensions {
                    put_str(&mut names, &dimension.name);
                    put_str(&mut names, &dimension.value);
                }
            }
            points.extend_from_slice(&id.to_le_bytes());
            points.extend_from_slice(&value.to_bits().to_le_bytes());
            self.push(&metric, sample.unit, time_s, value);
        }
        self.trim(time_s);
        let mut records = Vec::new();
        if named_count > 0 {
            let mut record = vec![RECORD_NAMES];
            record.extend_from_slice(&named_count.to_le_bytes());
            record.extend_from_slice(&names);
            records.push(record);
        }
        records.push(points);
        records
    }

    /// Drops points older than the retention, and cuts every series to an equal share when
    /// the points outgrow the budget.
    fn trim(&mut self, now_s: u64) {
        let oldest = u32::try_from(now_s.saturating_sub(RETENTION_SECONDS)).unwrap_or(u32::MAX);
        let share = if self.points > self.budget_points { Some(self.budget_points / self.series.len().max(1) as u64) } else { None };
        let mut removed = 0u64;
        let mut cut = 0u64;
        self.series.retain(|_, series| {
            while series.times.front().is_some_and(|time| *time < oldest) {
                series.times.pop_front();
                series.values.pop_front();
                removed += 1;
            }
            if let Some(share) = share {
                while series.times.len() as u64 > share.max(1) {
                    series.times.pop_front();
                    series.values.pop_front();
                    cut += 1;
                }
            }
            !series.times.is_empty()
        });
        self.points -= removed + cut;
        self.dropped += cut;
        let kept: HashSet<&MetricId> = self.series.keys().collect();
        self.totals.retain(|metric, _| kept.contains(metric));
    }

    /// The unit of a metric that has points.
    pub fn unit(&self, metric: &MetricId) -> Option<&str> {
        self.series.get(metric).map(|series| series.unit.as_str())
    }

    /// The statistics of each `period_s` (aligned to multiples of it) in `start_s..end_s` that
    /// has points, oldest first.
    pub fn statistics(&self, metric: &MetricId, start_s: u64, end_s: u64, period_s: u64) -> Vec<Stats> {
        let Some(series) = self.series.get(metric) else { return Vec::new() };
        let period_s = period_s.max(1);
        let start = u32::try_from(start_s).unwrap_or(u32::MAX);
        let end = u32::try_from(end_s).unwrap_or(u32::MAX);
        let from = series.times.partition_point(|time| *time < start);
        let mut out: Vec<Stats> = Vec::new();
        for (time, value) in series.times.iter().zip(series.values.iter()).skip(from) {
            if *time >= end {
                break;
            }
            let bucket = u64::from(*time) / period_s * period_s;
            match out.last_mut() {
                Some(stats) if stats.start_s == bucket => {
                    stats.count += 1;
                    stats.sum += value;
                    stats.min = stats.min.min(*value);
                    stats.max = stats.max.max(*value);
                }
                _ => out.push(Stats { start_s: bucket, count: 1, sum: *value, min: *value, max: *value }),
            }
        }
        out
    }

    /// Every metric with points, in order.
    pub fn metrics(&self) -> impl Iterator<Item = &MetricId> {
        self.series.keys()
    }
}

fn metric(namespace: &str, name: &str, dimensions: &[(&str, &str)]) -> MetricId {
    MetricId {
        namespace: namespace.to_owned(),
        metric_name: name.to_owned(),
        dimensions: dimensions.iter().map(|(name, value)| Dimension { name: (*name).to_owned(), value: (*value).to_owned() }).collect(),
    }
}

/// The datapoints AWS publishes for SQS, SNS and Kinesis, from every shard's reports.
pub fn samples(reports: &[Report], snapshot: &Snapshot, now_ms: u64) -> Vec<Sample> {
    let totals = Totals::of(reports);
    let mut out = Vec::new();
    let mut add = |metric: MetricId, unit: &'static str, kind: Kind, value: f64| out.push(Sample { metric, unit, kind, value });
    for meta in snapshot.client_queues() {
        let on = [("QueueName", meta.name.as_str())];
        let g = totals.queue_gauges.get(&meta.id).copied().unwrap_or_default();
        let c = totals.queues.get(&meta.id).copied().unwrap_or_default();
        let age = g.oldest_sent_ms.map_or(0.0, |sent| (now_ms.saturating_sub(sent) / 1000) as f64);
        add(metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", &on), "Count", Kind::Gauge, g.visible as f64);
        add(metric("AWS/SQS", "ApproximateNumberOfMessagesNotVisible", &on), "Count", Kind::Gauge, g.in_flight as f64);
        add(metric("AWS/SQS", "ApproximateNumberOfMessagesDelayed", &on), "Count", Kind::Gauge, g.delayed as f64);
        add(metric("AWS/SQS", "ApproximateAgeOfOldestMessage", &on), "Seconds", Kind::Gauge, age);
        add(metric("AWS/SQS", "NumberOfMessagesSent", &on), "Count", Kind::Counter, c.sent as f64);
        add(metric("AWS/SQS", "NumberOfMessagesReceived", &on), "Count", Kind::Counter, c.received as f64);
        add(metric("AWS/SQS", "NumberOfMessagesDeleted", &on), "Count", Kind::Counter, c.deleted as f64);
        add(metric("AWS/SQS", "NumberOfEmptyReceives", &on), "Count", Kind::Counter, c.empty_receives as f64);
    }
    for meta in snapshot.topics.values() {
        let on = [("TopicName", meta.name.as_str())];
        let c = totals.topics.get(meta.name.as_str()).copied().unwrap_or_default();
        let d = totals.topic_deliveries(&meta.name);
        add(metric("AWS/SNS", "NumberOfMessagesPublished", &on), "Count", Kind::Counter, c.published as f64);
        add(metric("AWS/SNS", "NumberOfNotificationsDelivered", &on), "Count", Kind::Counter, d.delivered as f64);
        add(metric("AWS/SNS", "NumberOfNotificationsFailed", &on), "Count", Kind::Counter, d.failed as f64);
        add(metric("AWS/SNS", "NumberOfNotificationsFilteredOut", &on), "Count", Kind::Counter, c.filtered_out as f64);
    }
    for meta in snapshot.streams.values() {
        let mut sum = super::StreamCounters::default();
        for shard in &meta.shards {
            let c = totals.streams.get(&(meta.id, shard.index)).copied().unwrap_or_default();
            sum.add(&c);
            if meta.shard_level_metrics.is_empty() {
                continue;
            }
            let shard_id = shard.id();
            let on = [("StreamName", meta.name.as_str()), ("ShardId", shard_id.as_str())];
            for name in &meta.shard_level_metrics {
                let (unit, kind, value) = match name.as_str() {
                    "IncomingBytes" => ("Bytes", Kind::Counter, c.incoming_bytes),
                    "IncomingRecords" => ("Count", Kind::Counter, c.incoming_records),
                    "OutgoingBytes" => ("Bytes", Kind::Counter, c.outgoing_bytes),
                    "OutgoingRecords" => ("Count", Kind::Counter, c.outgoing_records),
                    "WriteProvisionedThroughputExceeded" => ("Count", Kind::Counter, c.write_throttled),
                    "ReadProvisionedThroughputExceeded" => ("Count", Kind::Counter, c.read_throttled),
                    "IteratorAgeMilliseconds" => ("Milliseconds", Kind::Gauge, c.iterator_age_ms),
                    _ => continue,
                };
                add(metric("AWS/Kinesis", name, &on), unit, kind, value as f64);
            }
        }
        let on = [("StreamName", meta.name.as_str())];
        add(metric("AWS/Kinesis", "IncomingRecords", &on), "Count", Kind::Counter, sum.incoming_records as f64);
        add(metric("AWS/Kinesis", "IncomingBytes", &on), "Bytes", Kind::Counter, sum.incoming_bytes as f64);
        add(metric("AWS/Kinesis", "GetRecords.Records", &on), "Count", Kind::Counter, sum.outgoing_records as f64);
        add(metric("AWS/Kinesis", "GetRecords.Bytes", &on), "Bytes", Kind::Counter, sum.outgoing_bytes as f64);
        add(metric("AWS/Kinesis", "GetRecords.Success", &on), "Count", Kind::Counter, sum.get_records as f64);
        add(metric("AWS/Kinesis", "GetRecords.IteratorAgeMilliseconds", &on), "Milliseconds", Kind::Gauge, sum.iterator_age_ms as f64);
        add(metric("AWS/Kinesis", "WriteProvisionedThroughputExceeded", &on), "Count", Kind::Counter, sum.write_throttled as f64);
        add(metric("AWS/Kinesis", "ReadProvisionedThroughputExceeded", &on), "Count", Kind::Counter, sum.read_throttled as f64);
    }
    for meta in snapshot.firehose.values() {
        let on = [("DeliveryStreamName", meta.name.as_str())];
        let c = totals.firehose.get(&meta.id).copied().unwrap_or_default();
        let g = totals.firehose_gauges.get(&meta.id).copied().unwrap_or_default();
        let freshness = g.oldest_ms.map_or(0.0, |oldest| (now_ms.saturating_sub(oldest) / 1000) as f64);
        add(metric("AWS/Firehose", "IncomingRecords", &on), "Count", Kind::Counter, c.incoming_records as f64);
        add(metric("AWS/Firehose", "IncomingBytes", &on), "Bytes", Kind::Counter, c.incoming_bytes as f64);
        add(metric("AWS/Firehose", "DeliveryToS3.Records", &on), "Count", Kind::Counter, c.delivered_records as f64);
        add(metric("AWS/Firehose", "DeliveryToS3.Bytes", &on), "Bytes", Kind::Counter, c.delivered_bytes as f64);
        add(metric("AWS/Firehose", "DeliveryToS3.DataFreshness", &on), "Seconds", Kind::Gauge, freshness);
        // Successful puts over all puts to the destination: counted now, divided per sample.
        add(metric("AWS/Firehose", "DeliveryToS3.Success", &on), "Count", Kind::Counter, c.deliveries as f64);
        add(metric("AWS/Firehose", "DeliveryToS3.Failures", &on), "Count", Kind::Counter, c.failures as f64);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn depth(queue: &str, value: f64) -> Sample {
        Sample {
            metric: metric("AWS/SQS", "ApproximateNumberOfMessagesVisible", &[("QueueName", queue)]),
            unit: "Count",
            kind: Kind::Gauge,
            value,
        }
    }

    fn sent(queue: &str, value: f64) -> Sample {
        Sample { metric: metric("AWS/SQS", "NumberOfMessagesSent", &[("QueueName", queue)]), unit: "Count", kind: Kind::Counter, value }
    }

    #[test]
    fn counters_keep_what_they_grew_by_and_periods_add_up() {
        let mut history = History::new(1 << 20);
        for (time, total) in [(60, 5.0), (120, 8.0), (180, 8.0), (240, 2.0)] {
            history.record(time, vec![sent("q", total), depth("q", total)]);
        }
        let id = normalized(sent("q", 0.0).metric);
        let minutes: Vec<f64> = history.statistics(&id, 0, 300, 60).iter().map(|s| s.sum).collect();
        assert_eq!(minutes, vec![5.0, 3.0, 0.0, 2.0], "the last total went down: counted afresh");
        let all = history.statistics(&id, 0, 300, 300);
        assert_eq!((all.len(), all[0].sum, all[0].count, all[0].max), (1, 10.0, 4, 5.0));
        let gauge = normalized(depth("q", 0.0).metric);
        let two = history.statistics(&gauge, 120, 240, 60);
        assert_eq!(two.iter().map(|s| (s.start_s, s.max)).collect::<Vec<_>>(), vec![(120, 8.0), (180, 8.0)]);
    }

    #[test]
    fn the_log_records_read_back_to_the_same_points() {
        let mut history = History::new(1 << 20);
        let mut records = Vec::new();
        for time in [60, 120] {
            records.extend(history.record(time, vec![depth("a", time as f64), depth("b", 1.0)]));
        }
        assert_eq!(records.len(), 3, "names once, then points twice");
        let mut names = HashMap::new();
        let mut replayed = History::new(1 << 20);
        for data in &records {
            match decode(data).expect("a record") {
                Record::Names(named) => names.extend(named.into_iter().map(|(id, metric, unit)| (id, (metric, unit)))),
                points => replayed.replay(points, &names),
            }
        }
        let a = normalized(depth("a", 0.0).metric);
        assert_eq!(replayed.statistics(&a, 0, 200, 60), history.statistics(&a, 0, 200, 60));
        assert_eq!(replayed.unit(&a), Some("Count"));
        assert!(decode(&records[0][..records[0].len() - 1]).is_none(), "a cut record is refused");
        assert!(decode(&[9, 1, 2]).is_none());
    }

    #[test]
    fn the_budget_and_the_retention_bound_the_points() {
        let mut history = History::new(POINT_BYTES * 10);
        for minute in 1..=20u64 {
            history.record(minute * 60, vec![depth("a", minute as f64), depth("b", 0.0)]);
        }
        assert!(history.points() <= 10, "{} points", history.points());
        let a = normalized(depth("a", 0.0).metric);
        let kept = history.statistics(&a, 0, u64::MAX, 60);
        assert_eq!(kept.last().map(|s| s.max), Some(20.0), "the newest points stay");
        assert!(history.dropped > 0);
        history.record(20 * 60 + RETENTION_SECONDS + 120, vec![depth("b", 1.0)]);
        assert!(history.statistics(&a, 0, u64::MAX, 60).is_empty(), "points past 15 days are gone");
    }
}
