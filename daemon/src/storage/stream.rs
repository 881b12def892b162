//! A stream shard's log: records addressed by sequence number, each stamped with its
//! arrival time, read from any position and found by time. The streams engine keeps
//! one per stream shard, on the core that owns the shard; it is the same segmented,
//! group-committed log as the queues', opened without replaying it.
//!
//! - A record's payload is its arrival time (epoch ms, little-endian u64) and its data.
//!   Arrival times never decrease within a log (a clock step back is clamped), so both
//!   sequence numbers and times can be searched by bisection.
//! - Index: per segment, a sparse list of (seq, offset, time) points, one at least every
//!   `INDEX_EVERY` bytes. Segments written since the start are indexed as they are
//!   written; older ones the first time a read or a time lookup needs them (one
//!   sequential read of the segment). The start reads only the last two segments.
//! - Readers see only records kept as the fsync mode promises (`Log::readable_seq`).
//! - Retention removes whole segments whose every record is older than the cutoff; when
//!   it next has work in a log is known without opening it (`retention_due_on_disk`).

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::path::Path;
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;

use super::log::{Location, Log, LogOptions, Recovery, StorageError};
use super::record::{decode_past_skips, kind, Decoded, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX};
use crate::env::Env;

/// Bytes between index points of a segment, at most.
const INDEX_EVERY: u64 = 64 * 1024;
/// Bytes read to learn a segment's first arrival time.
const FIRST_READ: usize = 16 * 1024;
/// Bytes read at a time when reading records forward.
const READ_STEP: usize = 256 * 1024;

/// Records gathered by one `read`, and its limits.
struct Batch {
    out: Vec<StreamRecord>,
    bytes: usize,
    max_records: usize,
    max_bytes: usize,
    readable: u64,
    /// Bytes read from the disk at a time.
    step: usize,
}

impl Batch {
    fn full(&self) -> bool {
        self.out.len() >= self.max_records || (!self.out.is_empty() && self.bytes >= self.max_bytes)
    }
}

/// One record read back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRecord {
    pub seq: u64,
    pub timestamp_ms: u64,
    pub data: Bytes,
}

#[derive(Debug, Clone, Copy)]
struct Point {
    seq: u64,
    offset: u64,
    timestamp_ms: u64,
}

pub struct StreamLog {
    log: Rc<Log>,
    /// Index points by segment number (segments not yet indexed are absent).
    index: RefCell<HashMap<u64, Vec<Point>>>,
    /// First arrival times of segments not indexed.
    first_times: RefCell<HashMap<u64, u64>>,
    last_timestamp_ms: Cell<u64>,
}

fn damaged(log: &Log, number: u64, offset: u64, reason: &'static str) -> StorageError {
    StorageError::Unreadable { path: log.segment_path(number), offset, reason }
}

/// Splits a stream record's payload into its time and data.
fn split(payload: &[u8]) -> Option<(u64, &[u8])> {
    let (time, data) = payload.split_first_chunk::<8>()?;
    Some((u64::from_le_bytes(*time), data))
}

impl StreamLog {
    /// Opens (or creates) the log in `options.dir`, reading only its last two segments.
    pub async fn open(options: LogOptions) -> Result<(StreamLog, Recovery), StorageError> {
        StreamLog::open_in(Env::Glommio, options).await
    }

    /// `open` in `env` (the simulator's world, in tests).
    pub async fn open_in(env: Env, options: LogOptions) -> Result<(StreamLog, Recovery), StorageError> {
        let mut points: HashMap<u64, Vec<Point>> = HashMap::new();
        let mut last_timestamp_ms = 0;
        let mut bad = None;
        let (log, recovery) = Log::open_tail(env, options, |location, kind, payload| match (kind, split(payload)) {
            (kind::STREAM_RECORD, Some((timestamp_ms, _))) => {
                last_timestamp_ms = last_timestamp_ms.max(timestamp_ms);
                add_point(points.entry(location.segment).or_default(), location, timestamp_ms);
            }
            _ => bad = Some(location),
        })
        .await?;
        if let Some(location) = bad {
            return Err(StorageError::Corrupt {
                path: log.segment_path(location.segment),
                offset: location.offset,
                reason: "a record that is not a stream record",
            });
        }
        // Only segments read in full are indexed; the others wait for their first reader.
        let full: Vec<u64> = log.segments().iter().rev().take(2).map(|(number, _)| *number).collect();
        points.retain(|number, _| full.contains(number));
        for number in full {
            points.entry(number).or_default();
        }
        let stream = StreamLog {
            log,
            index: RefCell::new(points),
            first_times: RefCell::default(),
            last_timestamp_ms: Cell::new(last_timestamp_ms),
        };
        Ok((stream, recovery))
    }

    /// Appends one record arriving at `now_ms`; returns its sequence number and arrival time
    /// (never earlier than the previous record's). Durable once `durable` returns for it.
    pub fn append(&self, data: &[u8], now_ms: u64) -> Result<(u64, u64), StorageError> {
        self.append_parts(&[data], now_ms)
    }

    /// Appends one record whose data is `parts` one after the other (copied once, into
    /// the log's staging area).
    pub fn append_parts(&self, parts: &[&[u8]], now_ms: u64) -> Result<(u64, u64), StorageError> {
        self.append_with(now_ms, |out| {
            for part in parts {
                out.extend_from_slice(part);
            }
        })
    }

    /// Appends one record whose data `encode` appends straight into the log's staging area
    /// (so it can seal it in place there).
    pub fn append_with(&self, now_ms: u64, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(u64, u64), StorageError> {
        let timestamp_ms = now_ms.max(self.last_timestamp_ms.get());
        if let Some(number) = self.log.take_restarted() {
            // Its records were lost before they were written: what the index says of it is stale.
            self.index.borrow_mut().retain(|segment, _| *segment < number);
            self.index.borrow_mut().insert(number, Vec::new());
            self.first_times.borrow_mut().retain(|segment, _| *segment < number);
        }
        let (location, _) = self.log.append_encoded(kind::STREAM_RECORD, |out| {
            out.extend_from_slice(&timestamp_ms.to_le_bytes());
            encode(out);
        })?;
        self.last_timestamp_ms.set(timestamp_ms);
        let mut index = self.index.borrow_mut();
        // A segment this log started has been indexed from its first record.
        if location.offset == 0 || index.contains_key(&location.segment) {
            add_point(index.entry(location.segment).or_default(), location, timestamp_ms);
        }
        Ok((location.seq, timestamp_ms))
    }

    /// Waits until record `seq` is kept as the fsync mode promises.
    pub async fn durable(&self, seq: u64) -> Result<(), StorageError> {
        self.log.durable(seq).await
    }

    /// Sequence number of the oldest record kept (the next one when the log is empty).
    pub fn first_seq(&self) -> u64 {
        self.log.segments().first().map_or_else(|| self.log.next_seq(), |(_, first)| *first)
    }

    /// The last record synced to the disk (what a power loss cannot take).
    pub fn synced_seq(&self) -> u64 {
        self.log.synced_seq()
    }

    /// The newest record readers may see (kept as the fsync mode promises).
    pub fn readable_seq(&self) -> u64 {
        self.log.readable_seq()
    }

    /// Sequence number the next record will get.
    pub fn next_seq(&self) -> u64 {
        self.log.next_seq()
    }

    /// Arrival time of the newest record (0 when there has been none).
    pub fn last_timestamp_ms(&self) -> u64 {
        self.last_timestamp_ms.get()
    }

    /// Records from `from_seq` on (from the oldest kept, if `from_seq` is older), in order, at
    /// most `max_records` and about `max_bytes` of data (always at least one record if any
    /// is readable). Empty when `from_seq` is past the newest readable record.
    pub async fn read(&self, from_seq: u64, max_records: usize, max_bytes: usize) -> Result<Vec<StreamRecord>, StorageError> {
        self.read_in_steps(from_seq, max_records, max_bytes, READ_STEP).await
    }

    /// `read`, reading the disk `step` bytes at a time (a reader that wants megabytes at once
    /// makes fewer round trips with a larger step).
    pub async fn read_in_steps(
        &self,
        from_seq: u64,
        max_records: usize,
        max_bytes: usize,
        step: usize,
    ) -> Result<Vec<StreamRecord>, StorageError> {
        let mut batch = Batch { out: Vec::new(), bytes: 0, max_records, max_bytes, readable: self.log.readable_seq(), step };
        let mut seq = from_seq.max(self.first_seq());
        while seq <= batch.readable && !batch.full() {
            let Some((number, next_first)) = self.segment_of(seq) else { break };
            let start = self.point_before(number, |point| point.seq <= seq).await?;
            if self.read_forward(number, start.offset, &mut seq, &mut batch).await? {
                break;
            }
            // The segment's end: go on in the next one (past any gap that repair left).
            if next_first == u64::MAX {
                break;
            }
            seq = seq.max(next_first);
        }
        Ok(batch.out)
    }

    /// Reads segment `number` forward from `offset`, adding records from `*seq` on to `batch`.
    /// Returns true when the reading is done (the batch is full or nothing more is readable),
    /// false at the segment's end.
    async fn read_forward(&self, number: u64, mut offset: u64, seq: &mut u64, batch: &mut Batch) -> Result<bool, StorageError> {
        let mut step = batch.step;
        loop {
            // Records' data are slices of this one buffer: no copy per record.
            let data = Bytes::from(self.log.read_range(number, offset, step).await?);
            let full_read = data.len() == step;
            let mut at = 0usize;
            while at < data.len() {
                let (found_at, decoded) = decode_past_skips(&data, at);
                at = found_at;
                match decoded {
                    Decoded::Record { seq: found, kind: kind::STREAM_RECORD, payload, size } => {
                        if found > batch.readable {
                            return Ok(true);
                        }
                        if found >= *seq {
                            let (timestamp_ms, record) = split(payload)
                                .ok_or_else(|| damaged(&self.log, number, offset + at as u64, "a stream record too short for its time"))?;
                            batch.bytes += record.len();
                            batch.out.push(StreamRecord { seq: found, timestamp_ms, data: data.slice_ref(record) });
                            *seq = found + 1;
                            if batch.full() {
                                return Ok(true);
                            }
                        }
                        at += size;
                    }
                    Decoded::End => return Ok(false),
                    Decoded::Record { .. } => {
                        return Err(damaged(&self.log, number, offset + at as u64, "a record that is not a stream record"))
                    }
                    Decoded::Damaged { reason } => {
                        if !full_read {
                            return Err(damaged(&self.log, number, offset + at as u64, reason));
                        }
                        // Cut by the read's end (or longer than one read): read again from it.
                        let rest = &data[at..];
                        let declared = rest.get(4..8).map_or(0, |len| u32::from_le_bytes([len[0], len[1], len[2], len[3]]) as usize);
                        if at == 0 {
                            let needed = RECORD_HEADER_BYTES + declared;
                            if needed <= step || declared > RECORD_PAYLOAD_BYTES_MAX {
                                return Err(damaged(&self.log, number, offset, reason));
                            }
                            step = needed;
                        }
                        break;
                    }
                }
            }
            if !full_read && at >= data.len() {
                return Ok(false);
            }
            offset += at as u64;
            if at > 0 {
                step = batch.step;
            }
        }
    }

    /// Sequence number of the first record that arrived at or after `timestamp_ms` (the next
    /// sequence number when none did).
    pub async fn seq_at_timestamp(&self, timestamp_ms: u64) -> Result<u64, StorageError> {
        if timestamp_ms > self.last_timestamp_ms.get() {
            return Ok(self.next_seq());
        }
        let segments = self.log.segments();
        // The last segment whose first record arrived before `timestamp_ms` holds the answer
        // (or it is the next segment's first record).
        let mut chosen = None;
        for (number, _) in &segments {
            match self.first_timestamp(*number).await? {
                Some(first) if first < timestamp_ms => chosen = Some(*number),
                Some(_) => break,
                None => break,
            }
        }
        let Some(number) = chosen else { return Ok(self.first_seq()) };
        let start = self.point_before(number, |point| point.timestamp_ms < timestamp_ms).await?;
        let mut from = start.seq;
        loop {
            let records = self.read(from, 1000, READ_STEP).await?;
            // None readable yet: the first record not yet readable is the answer.
            let Some(last) = records.last() else { return Ok(self.log.readable_seq() + 1) };
            if let Some(record) = records.iter().find(|record| record.timestamp_ms >= timestamp_ms) {
                return Ok(record.seq);
            }
            from = last.seq + 1;
        }
    }

    /// Removes every segment whose records all arrived before `cutoff_ms` (retention). The
    /// newest segment always stays. Returns how many were removed.
    pub async fn trim_before_timestamp(&self, cutoff_ms: u64) -> Result<usize, StorageError> {
        let segments = self.log.segments();
        let mut keep_from = None;
        // Segment i's records all arrived no later than segment i + 1's first record.
        for pair in segments.windows(2) {
            match self.first_timestamp(pair[1].0).await? {
                Some(next_first) if next_first < cutoff_ms => keep_from = Some(pair[1].1),
                _ => break,
            }
        }
        let Some(seq) = keep_from else { return Ok(0) };
        let removed = self.log.remove_segments_before(seq).await?;
        let live: Vec<u64> = self.log.segments().iter().map(|(number, _)| *number).collect();
        self.index.borrow_mut().retain(|number, _| live.contains(number));
        self.first_times.borrow_mut().retain(|number, _| live.contains(number));
        Ok(removed)
    }

    /// Removes every segment whose records all come before `seq` (what a Firehose buffer's
    /// destination has taken). The newest segment always stays. Returns how many were removed.
    pub async fn trim_before_seq(&self, seq: u64) -> Result<usize, StorageError> {
        let removed = self.log.remove_segments_before(seq).await?;
        if removed > 0 {
            let live: Vec<u64> = self.log.segments().iter().map(|(number, _)| *number).collect();
            self.index.borrow_mut().retain(|number, _| live.contains(number));
            self.first_times.borrow_mut().retain(|number, _| live.contains(number));
        }
        Ok(removed)
    }

    /// Arrival time after which retention can remove a segment of this log: the first
    /// record's of its second segment (every record of the first arrived no later). `None`
    /// while the log has a single segment holding records: nothing to remove until written.
    pub async fn retention_due(&self) -> Result<Option<u64>, StorageError> {
        match self.log.segments().get(1) {
            Some((number, _)) => self.first_timestamp(*number).await,
            None => Ok(None),
        }
    }

    /// Closes the log (everything appended is written and synced first).
    pub async fn close(&self) -> Result<(), StorageError> {
        self.log.close().await
    }

    /// The segment holding `seq` and the first sequence number of the segment after it
    /// (`u64::MAX` for the newest).
    fn segment_of(&self, seq: u64) -> Option<(u64, u64)> {
        let segments = self.log.segments();
        let at = segments.partition_point(|(_, first)| *first <= seq).checked_sub(1)?;
        Some((segments[at].0, segments.get(at + 1).map_or(u64::MAX, |(_, first)| *first)))
    }

    /// Arrival time of segment `number`'s first record (`None` when it has none). Reads only
    /// that record when the segment is not indexed; remembered.
    async fn first_timestamp(&self, number: u64) -> Result<Option<u64>, StorageError> {
        if let Some(points) = self.index.borrow().get(&number) {
            return Ok(points.first().map(|point| point.timestamp_ms));
        }
        if let Some(first) = self.first_times.borrow().get(&number) {
            return Ok(Some(*first));
        }
        let data = self.log.read_range(number, 0, FIRST_READ).await?;
        let first = match decode_past_skips(&data, 0).1 {
            Decoded::Record { kind: kind::STREAM_RECORD, payload, .. } => split(payload).map(|(time, _)| time),
            Decoded::End => None,
            // Longer than the first read, or damaged: the full index finds out which.
            _ => {
                self.ensure_indexed(number).await?;
                return Ok(self.index.borrow().get(&number).and_then(|points| points.first()).map(|point| point.timestamp_ms));
            }
        };
        if let Some(first) = first {
            self.first_times.borrow_mut().insert(number, first);
        }
        Ok(first)
    }

    /// The last index point of segment `number` for which `before` holds (the segment's start
    /// when none does).
    async fn point_before(&self, number: u64, before: impl Fn(&Point) -> bool) -> Result<Point, StorageError> {
        self.ensure_indexed(number).await?;
        let index = self.index.borrow();
        let points = index.get(&number).map(Vec::as_slice).unwrap_or_default();
        let at = points.partition_point(before);
        Ok(at.checked_sub(1).map_or(Point { seq: 0, offset: 0, timestamp_ms: 0 }, |i| points[i]))
    }

    /// Builds segment `number`'s index from its records, unless it has one.
    async fn ensure_indexed(&self, number: u64) -> Result<(), StorageError> {
        if self.index.borrow().contains_key(&number) {
            return Ok(());
        }
        let data = self.log.read_segment(number).await?;
        let mut points = Vec::new();
        let mut at = 0usize;
        while at < data.len() {
            let (found_at, decoded) = decode_past_skips(&data, at);
            at = found_at;
            match decoded {
                Decoded::Record { seq, kind: kind::STREAM_RECORD, payload, size } => {
                    let (timestamp_ms, _) =
                        split(payload).ok_or_else(|| damaged(&self.log, number, at as u64, "a stream record too short for its time"))?;
                    add_point(&mut points, Location { seq, segment: number, offset: at as u64 }, timestamp_ms);
                    at += size;
                }
                Decoded::End => break,
                Decoded::Record { .. } => return Err(damaged(&self.log, number, at as u64, "a record that is not a stream record")),
                Decoded::Damaged { reason } => return Err(damaged(&self.log, number, at as u64, reason)),
            }
        }
        self.index.borrow_mut().insert(number, points);
        Ok(())
    }
}

/// `StreamLog::retention_due` of the log in `dir`, without opening it: reads the first record
/// of its second segment file only (the log keeps no empty segment before one that holds records).
pub async fn retention_due_on_disk(env: &Env, dir: &Path) -> Result<Option<u64>, StorageError> {
    let mut numbers: Vec<u64> = match env.list_dir(dir) {
        Ok(paths) => paths.iter().filter_map(|path| path.file_name()?.to_str()?.strip_suffix(".log")?.parse::<u64>().ok()).collect(),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(StorageError::Io { path: dir.to_path_buf(), source: Arc::new(error) }),
    };
    numbers.sort_unstable();
    let Some(second) = numbers.get(1) else { return Ok(None) };
    let path = super::log::segment_path(dir, *second);
    let data =
        env.read_file_at(&path, 0, FIRST_READ).await.map_err(|error| StorageError::Io { path: path.clone(), source: Arc::new(error) })?;
    Ok(match decode_past_skips(&data, 0).1 {
        Decoded::Record { kind: kind::STREAM_RECORD, payload, .. } => split(payload).map(|(time, _)| time),
        // Empty, or its first record longer than the read: opening the log finds out.
        Decoded::End => None,
        _ => Some(0),
    })
}

/// Adds a point for the record at `location` if it is a segment's first or far enough from
/// the last point.
fn add_point(points: &mut Vec<Point>, location: Location, timestamp_ms: u64) {
    if points.last().is_none_or(|last| location.offset >= last.offset + INDEX_EVERY) {
        points.push(Point { seq: location.seq, offset: location.offset, timestamp_ms });
    }
}
