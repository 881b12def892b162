//! The records one core took for each delivery stream and has not delivered yet: a log per
//! delivery stream per core (`storage::stream::StreamLog`, in
//! `DATA_DIR/firehose/<id>/core-<n>`), which is the buffer itself — memory holds only counts.
//!
//! A log record is a kind byte and its body: `DATA` and the record's bytes, or `DELIVERED`
//! and the sequence number of the first record not delivered yet (little-endian u64), written
//! once the destination has taken everything before it. At open the last `DELIVERED` says
//! where delivery resumes; segments wholly before it are removed as deliveries go.

use std::cell::Cell;
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use bytes::Bytes;
use sluice_protocol::{ErrorCode, OpError};

use crate::env::notify::LocalNotify;
use crate::env::Env;
use crate::storage::log::{FsyncMode, LogOptions};
use crate::storage::storage_error;
use crate::storage::stream::StreamLog;

pub const DATA: u8 = 0;
pub const DELIVERED: u8 = 1;
/// A record sealed at rest under this core's data key for the delivery stream's KMS key
/// (`kms::at_rest`): a delivery stream with server-side encryption on.
pub const DATA_SEALED: u8 = 2;

fn is_data(kind: Option<&u8>) -> bool {
    matches!(kind, Some(&DATA) | Some(&DATA_SEALED))
}

/// Bytes read at a time from a log (at open, and by deliveries of records not in memory).
const READ_BYTES: usize = 4 << 20;
/// Bytes of records a buffer keeps in memory for its deliveries (`Tail`).
pub const TAIL_BYTES_MAX: u64 = 64 << 20;

/// The newest records of a buffer as they were put (slices of their requests' frames, no
/// copy), so that deliveries take them from memory instead of reading the log back: every data
/// record with a sequence number in `from..until`, while they fit `TAIL_BYTES_MAX`. Records
/// past it are on disk only, and read from there; a new window starts once this one is empty.
/// (`max`: the store's budget, `TAIL_BYTES_MAX` but in the simulator.)
#[derive(Default)]
struct Tail {
    from: u64,
    until: u64,
    records: std::collections::VecDeque<(u64, u64, Bytes)>,
    bytes: u64,
    max: u64,
}

impl Tail {
    /// Keeps the newest record, `seq`: the oldest ones go while it would not fit (they are on
    /// disk, and read from there if a delivery still needs them). One larger than the whole
    /// budget is not kept, and nothing before it is either.
    fn keep(&mut self, seq: u64, arrival_ms: u64, record: &Bytes) {
        let len = record.len() as u64;
        if self.until != seq || len > self.max {
            *self = Tail { from: seq + 1, until: seq + 1, max: self.max, ..Tail::default() };
            if len > self.max {
                return;
            }
            self.from = seq;
        }
        while self.bytes + len > self.max {
            let Some((evicted, _, data)) = self.records.pop_front() else { break };
            self.bytes -= data.len() as u64;
            self.from = evicted + 1;
        }
        if self.records.is_empty() {
            self.from = seq;
        }
        self.records.push_back((seq, arrival_ms, record.clone()));
        self.bytes += len;
        self.until = seq + 1;
    }

    /// Sequence number `seq` went to a record that is not data (a delivery mark): the window
    /// goes on past it.
    fn skip(&mut self, seq: u64) {
        if self.until == seq {
            self.until = seq + 1;
        }
    }
}

/// A batch taken from a buffer: its records, their bytes, the first one's arrival time, and
/// the first sequence number after it.
pub struct Taken {
    pub records: Vec<Bytes>,
    /// Each record's sequence number in the buffer's log (with the buffer, its record id).
    pub seqs: Arc<[u64]>,
    pub bytes: u64,
    pub arrival_ms: u64,
    pub to: u64,
}

/// Buffers (logs) one core keeps per delivery stream at most: concurrent puts spread over them
/// (a put takes the least busy), so their group commits proceed side by side, as a stream's
/// shards do; a quiet stream uses only the first.
pub const LANES: u8 = 4;

/// Where delivery stream `id` keeps what core `core` took in lane `lane`.
pub fn buffer_dir(data_dir: &Path, id: u64, core: usize, lane: u8) -> PathBuf {
    data_dir.join("firehose").join(format!("{id:010}")).join(format!("core-{core:03}-{lane}"))
}

/// One delivery stream's buffer on this core.
pub struct Buffer {
    pub id: u64,
    pub lane: u8,
    /// Puts appending to it now (waiting for their records to be durable).
    pub puts: Cell<u32>,
    pub log: StreamLog,
    /// Sequence number of the first record not delivered.
    pub delivered: Cell<u64>,
    /// Records not delivered, and their bytes.
    pub pending_records: Cell<u64>,
    pub pending_bytes: Cell<u64>,
    /// Arrival time of the oldest record not delivered (`None`: none).
    pub oldest_ms: Cell<Option<u64>>,
    /// Arrival time of the oldest record not yet handed to a delivery (`None`: none).
    pub fresh_since: Cell<Option<u64>>,
    /// Notified on each put (and when the buffer goes).
    pub appended: LocalNotify,
    /// Set when the delivery stream is deleted: its delivery loop ends.
    pub gone: Cell<bool>,
    /// Whether its delivery loop runs.
    pub running: Cell<bool>,
    /// Held while delivered segments are removed (`trim`), and by closing, which waits for it.
    trimming: futures::lock::Mutex<()>,
    tail: std::cell::RefCell<Tail>,
}

impl Buffer {
    /// Appends records (durable once `log.durable` says so); returns each one's sequence number.
    /// With `seal`, each is sealed at rest (in memory they stay as they came).
    pub fn append(&self, records: &[Bytes], now_ms: u64, seal: Option<&crate::kms::at_rest::WriteKey>) -> Result<Vec<u64>, OpError> {
        let mut seqs = Vec::with_capacity(records.len());
        let mut bytes = 0;
        let mut tail = self.tail.borrow_mut();
        // One buffer for every sealed record of the batch.
        let mut sealed = Vec::new();
        for record in records {
            let appended = match seal {
                None => self.log.append_parts(&[&[DATA], record], now_ms),
                Some(write) => {
                    sealed.clear();
                    crate::kms::at_rest::Keyring::seal(write, &mut sealed, |out| out.extend_from_slice(record));
                    self.log.append_parts(&[&[DATA_SEALED], &sealed], now_ms)
                }
            };
            let (seq, arrival_ms) = appended.map_err(storage_error)?;
            seqs.push(seq);
            bytes += record.len() as u64;
            tail.keep(seq, arrival_ms, record);
        }
        if self.oldest_ms.get().is_none() {
            self.oldest_ms.set(Some(now_ms));
        }
        if self.fresh_since.get().is_none() {
            self.fresh_since.set(Some(now_ms));
        }
        self.pending_records.set(self.pending_records.get() + records.len() as u64);
        self.pending_bytes.set(self.pending_bytes.get() + bytes);
        Ok(seqs)
    }

    /// Records that everything before `next` is delivered (the destination has it, durably):
    /// a mark in the log, not waited for — it is synced with the next group commit, and one lost
    /// in a crash only means those records are delivered again. Segments wholly before it can
    /// go then (`trim`): their records are delivered whether or not the mark survives.
    pub fn mark_delivered(&self, next: u64, records: u64, bytes: u64, now_ms: u64) -> Result<(), OpError> {
        self.delivered.set(next);
        self.pending_records.set(self.pending_records.get().saturating_sub(records));
        self.pending_bytes.set(self.pending_bytes.get().saturating_sub(bytes));
        {
            let mut tail = self.tail.borrow_mut();
            while tail.records.front().is_some_and(|(seq, _, _)| *seq < next) {
                if let Some((_, _, record)) = tail.records.pop_front() {
                    tail.bytes -= record.len() as u64;
                }
            }
            tail.from = tail.from.max(next);
        }
        let (mark, _) = self.log.append_parts(&[&[DELIVERED], &next.to_le_bytes()], now_ms).map_err(storage_error)?;
        self.tail.borrow_mut().skip(mark);
        Ok(())
    }

    /// Removes the log's segments wholly delivered, unless a removal is under way (the next
    /// delivery tries again).
    pub async fn trim(&self) -> Result<(), OpError> {
        let Some(_held) = self.trimming.try_lock() else { return Ok(()) };
        // Closed (or closing: it waits for a removal under way, and none starts after).
        if self.gone.get() {
            return Ok(());
        }
        self.log.trim_before_seq(self.delivered.get()).await.map_err(storage_error)?;
        Ok(())
    }

    /// Closes the log once a removal under way is done (everything appended is written and
    /// synced first).
    async fn close(&self) -> Result<(), crate::storage::log::StorageError> {
        let _held = self.trimming.lock().await;
        self.log.close().await
    }

    /// Up to `size` bytes of records from `from` on (at least one), from memory when the tail
    /// holds them, else read from the log; `None` when none is readable yet.
    pub async fn take(&self, from: u64, size: u64, keyring: &crate::kms::at_rest::Keyring) -> Result<Option<Taken>, String> {
        if let Some(taken) = self.take_from_tail(from, size) {
            return Ok(taken);
        }
        let mut next = from;
        let (mut records, mut seqs, mut bytes, mut arrival_ms) = (Vec::new(), Vec::new(), 0u64, None::<u64>);
        // Up to where the tail starts (when it starts after `from`): past it, memory has the records.
        let tail_from = {
            let tail = self.tail.borrow();
            (!tail.records.is_empty() && from < tail.from).then_some(tail.from)
        };
        'read: loop {
            // What the batch still wants, read in one step (up to 8 MiB): one round trip, not one
            // per 256 KiB — and not a whole batch's size again for the few records a read's
            // count of bytes (each record's kind byte with it) left out.
            let want = size.saturating_sub(bytes).max(1) as usize;
            let step = want.clamp(256 << 10, 8 << 20);
            let read = self.log.read_in_steps(next, 100_000, want, step).await.map_err(|e| e.to_string())?;
            if read.is_empty() {
                break;
            }
            for record in read {
                if tail_from.is_some_and(|from| record.seq >= from) {
                    break 'read;
                }
                next = record.seq + 1;
                if is_data(record.data.first()) {
                    let data = match record.data.first() {
                        Some(&DATA_SEALED) => Bytes::from(
                            keyring.open(&record.data[1..]).map_err(|e| format!("record {} cannot be opened: {e:?}", record.seq))?,
                        ),
                        _ => record.data.slice(1..),
                    };
                    bytes += data.len() as u64;
                    arrival_ms.get_or_insert(record.timestamp_ms);
                    records.push(data);
                    seqs.push(record.seq);
                    if bytes >= size {
                        break 'read;
                    }
                }
            }
        }
        Ok((next > from).then(|| Taken { records, seqs: seqs.into(), bytes, arrival_ms: arrival_ms.unwrap_or_default(), to: next }))
    }

    /// Arrival time of the first data record at or after `from` that is not delivered: from
    /// memory when the tail holds it (no disk read), else from the log; `None` when none.
    pub async fn arrival_from(&self, from: u64) -> Option<u64> {
        {
            let tail = self.tail.borrow();
            if !tail.records.is_empty() && from >= tail.from && from < tail.until {
                let at = tail.records.partition_point(|(seq, _, _)| *seq < from);
                return tail.records.get(at).map(|(_, arrival, _)| *arrival);
            }
        }
        let read = self.log.read(from, 16, 64 << 10).await.ok()?;
        read.iter().find(|record| is_data(record.data.first())).map(|record| record.timestamp_ms)
    }

    /// `take` from memory: `None` when the tail does not hold `from`'s records.
    fn take_from_tail(&self, from: u64, size: u64) -> Option<Option<Taken>> {
        let tail = self.tail.borrow();
        if tail.records.is_empty() || from < tail.from || from >= tail.until {
            return None;
        }
        let readable = self.log.readable_seq();
        let at = tail.records.partition_point(|(seq, _, _)| *seq < from);
        let (mut records, mut seqs, mut bytes, mut arrival_ms, mut to) = (Vec::new(), Vec::new(), 0u64, None, from);
        for (seq, arrival, record) in tail.records.range(at..) {
            if *seq > readable {
                break;
            }
            bytes += record.len() as u64;
            arrival_ms.get_or_insert(*arrival);
            records.push(record.clone());
            seqs.push(*seq);
            to = seq + 1;
            if bytes >= size {
                break;
            }
        }
        if records.is_empty() {
            return Some(None);
        }
        Some(Some(Taken { records, seqs: seqs.into(), bytes, arrival_ms: arrival_ms.unwrap_or_default(), to }))
    }
}

/// The delivery streams' buffers this core holds.
pub struct FirehoseStore {
    env: Env,
    data_dir: PathBuf,
    segment_bytes: u64,
    fsync: FsyncMode,
    repair: bool,
    /// Each buffer's `Tail` budget.
    tail_bytes: u64,
    buffers: std::cell::RefCell<HashMap<(u64, u8), Rc<Buffer>>>,
    /// Delivery streams with a Kinesis source whose reader runs on this core (`source`).
    pub readers: std::cell::RefCell<std::collections::HashSet<u64>>,
    /// Held while a buffer is opened, so two puts never open one twice.
    opening: futures::lock::Mutex<()>,
}

impl FirehoseStore {
    pub fn new(env: Env, data_dir: &Path, segment_bytes: u64, fsync: FsyncMode, repair: bool, tail_bytes: u64) -> FirehoseStore {
        FirehoseStore {
            env,
            data_dir: data_dir.to_path_buf(),
            segment_bytes,
            fsync,
            repair,
            tail_bytes,
            buffers: Default::default(),
            readers: Default::default(),
            opening: futures::lock::Mutex::new(()),
        }
    }

    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// The buffer of delivery stream `id` in lane `lane`, if open.
    pub fn get(&self, id: u64, lane: u8) -> Option<Rc<Buffer>> {
        self.buffers.borrow().get(&(id, lane)).cloned()
    }

    /// The lane a put into delivery stream `id` takes: the open one with the fewest puts in
    /// flight (the first on a tie); when every open one is busy, the next lane not open yet.
    pub fn pick_lane(&self, id: u64) -> u8 {
        let buffers = self.buffers.borrow();
        let mut best: Option<(u32, u8)> = None;
        for lane in 0..LANES {
            match buffers.get(&(id, lane)) {
                Some(buffer) if best.is_none_or(|(puts, _)| buffer.puts.get() < puts) => best = Some((buffer.puts.get(), lane)),
                Some(_) => {}
                None if best.is_none_or(|(puts, _)| puts > 0) => return lane,
                None => {}
            }
        }
        best.map_or(0, |(_, lane)| lane)
    }

    /// Every open buffer.
    pub fn all(&self) -> Vec<Rc<Buffer>> {
        self.buffers.borrow().values().cloned().collect()
    }

    /// The buffer of delivery stream `id` on core `core`, opened (and its log read to find
    /// where delivery resumes) if it is not yet.
    pub async fn open(&self, id: u64, core: usize, lane: u8) -> Result<Rc<Buffer>, OpError> {
        if let Some(buffer) = self.get(id, lane) {
            return Ok(buffer);
        }
        let _held = self.opening.lock().await;
        if let Some(buffer) = self.get(id, lane) {
            return Ok(buffer);
        }
        let options = LogOptions {
            dir: buffer_dir(&self.data_dir, id, core, lane),
            segment_bytes: self.segment_bytes,
            fsync: self.fsync,
            repair: self.repair,
            spare_ahead: false,
        };
        let (log, recovery) = StreamLog::open_in(self.env.clone(), options).await.map_err(storage_error)?;
        if let Some((path, offset, bytes)) = &recovery.torn_tail {
            tracing::warn!(file = %path.display(), offset, bytes, "cut a torn write at the end of a delivery stream's buffer (it was never acknowledged)");
        }
        let (delivered, pending_records, pending_bytes, oldest_ms) = scan(&log).await?;
        let buffer = Rc::new(Buffer {
            id,
            lane,
            puts: Cell::new(0),
            log,
            delivered: Cell::new(delivered),
            pending_records: Cell::new(pending_records),
            pending_bytes: Cell::new(pending_bytes),
            oldest_ms: Cell::new(oldest_ms),
            fresh_since: Cell::new(oldest_ms),
            appended: LocalNotify::new(),
            gone: Cell::new(false),
            running: Cell::new(false),
            trimming: futures::lock::Mutex::new(()),
            tail: std::cell::RefCell::new(Tail { max: self.tail_bytes, ..Tail::default() }),
        });
        self.buffers.borrow_mut().insert((id, lane), buffer.clone());
        Ok(buffer)
    }

    /// Whether core `core` has a buffer of delivery stream `id` on disk.
    pub fn on_disk(&self, id: u64, core: usize, lane: u8) -> bool {
        self.env.list_dir(&buffer_dir(&self.data_dir, id, core, lane)).is_ok()
    }

    /// The (delivery stream id, lane) of the buffers this core has on disk, by listing the
    /// directory (for removing those of deleted delivery streams).
    fn listed(&self, core: usize) -> Vec<(u64, u8)> {
        let root = self.data_dir.join("firehose");
        let Ok(entries) = self.env.list_dir(&root) else { return Vec::new() };
        let ids = entries.iter().filter_map(|path| path.file_name()?.to_str()?.parse::<u64>().ok());
        ids.flat_map(|id| (0..LANES).map(move |lane| (id, lane))).filter(|(id, lane)| self.on_disk(*id, core, *lane)).collect()
    }

    /// On a new snapshot: closes and deletes the open buffers of delivery streams that are gone
    /// (`live` says which are not). Every buffer of a live delivery stream with records is
    /// open (`resume` opened those on disk at start), so no directory is read.
    pub async fn forget_gone(&self, core: usize, live: impl Fn(u64) -> bool) {
        let _held = self.opening.lock().await;
        let gone: Vec<Rc<Buffer>> = {
            let mut buffers = self.buffers.borrow_mut();
            let keys: Vec<(u64, u8)> = buffers.keys().copied().filter(|(id, _)| !live(*id)).collect();
            keys.iter().filter_map(|key| buffers.remove(key)).collect()
        };
        for buffer in &gone {
            buffer.gone.set(true);
            buffer.appended.notify_all();
            if let Err(error) = buffer.close().await {
                tracing::warn!(id = buffer.id, %error, "closing a deleted delivery stream's buffer failed");
            }
            self.remove_buffer(buffer.id, core, buffer.lane).await;
        }
    }

    /// At start: deletes the buffers on disk of delivery streams that are gone (deleted while
    /// the daemon was down, or mid-delete).
    pub async fn remove_orphans(&self, core: usize, live: impl Fn(u64) -> bool) {
        let _held = self.opening.lock().await;
        for (id, lane) in self.listed(core).into_iter().filter(|(id, _)| !live(*id)) {
            self.remove_buffer(id, core, lane).await;
        }
    }

    async fn remove_buffer(&self, id: u64, core: usize, lane: u8) {
        let dir = buffer_dir(&self.data_dir, id, core, lane);
        // File by file through the reactor: a blocking unlink of full segments would stall the shard.
        for file in self.env.list_dir(&dir).unwrap_or_default() {
            if let Err(error) = self.env.remove(&file).await {
                tracing::warn!(file = %file.display(), %error, "cannot remove a deleted delivery stream's buffer");
            }
        }
        let _ = std::fs::remove_dir(&dir);
        // The stream's directory goes with its last buffer (whichever core removes it last).
        let _ = std::fs::remove_dir(dir.parent().unwrap_or(&dir));
    }

    /// Closes every buffer (everything appended is written and synced first).
    pub async fn close(&self) {
        let buffers: Vec<Rc<Buffer>> = self.buffers.borrow_mut().drain().map(|(_, buffer)| buffer).collect();
        for buffer in buffers {
            buffer.gone.set(true);
            buffer.appended.notify_all();
            if let Err(error) = buffer.close().await {
                tracing::error!(id = buffer.id, %error, "closing a delivery stream's buffer failed");
            }
        }
    }
}

/// Reads a buffer's log through: where delivery resumes (after the last `DELIVERED`), and the
/// count, bytes and oldest arrival time of what is not delivered.
async fn scan(log: &StreamLog) -> Result<(u64, u64, u64, Option<u64>), OpError> {
    let mut delivered = log.first_seq();
    // (seq, bytes, arrival) of each data record since the last checkpoint seen.
    let mut pending: std::collections::VecDeque<(u64, u64, u64)> = Default::default();
    let mut from = log.first_seq();
    loop {
        let records = log.read(from, 100_000, READ_BYTES).await.map_err(storage_error)?;
        let Some(last) = records.last() else { break };
        from = last.seq + 1;
        for record in &records {
            match record.data.first() {
                Some(&DATA) | Some(&DATA_SEALED) => pending.push_back((record.seq, record.data.len() as u64 - 1, record.timestamp_ms)),
                Some(&DELIVERED) => {
                    let next = record.data.get(1..9).and_then(|bytes| bytes.try_into().ok()).map(u64::from_le_bytes).ok_or_else(|| {
                        OpError::new(ErrorCode::InternalFailure, "a delivery stream's buffer holds a damaged delivery mark")
                    })?;
                    delivered = delivered.max(next);
                    while pending.front().is_some_and(|(seq, _, _)| *seq < delivered) {
                        pending.pop_front();
                    }
                }
                _ => return Err(OpError::new(ErrorCode::InternalFailure, "a delivery stream's buffer holds a record of no known kind")),
            }
        }
    }
    let bytes = pending.iter().map(|(_, bytes, _)| bytes).sum();
    Ok((delivered, pending.len() as u64, bytes, pending.front().map(|(_, _, arrival)| *arrival)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail(max: u64) -> Tail {
        Tail { max, ..Tail::default() }
    }

    fn seqs(tail: &Tail) -> Vec<u64> {
        tail.records.iter().map(|(seq, _, _)| *seq).collect()
    }

    #[test]
    fn the_tail_keeps_the_newest_records_that_fit() {
        let mut tail = tail(30);
        for seq in 1..=5 {
            tail.keep(seq, seq * 10, &Bytes::from(vec![0u8; 10]));
        }
        assert_eq!(seqs(&tail), [3, 4, 5], "the oldest went to make room");
        assert_eq!((tail.from, tail.until, tail.bytes), (3, 6, 30));
    }

    #[test]
    fn a_delivery_mark_does_not_break_the_window() {
        let mut tail = tail(100);
        tail.keep(1, 0, &Bytes::from_static(b"a"));
        tail.skip(2);
        tail.keep(3, 0, &Bytes::from_static(b"b"));
        assert_eq!(seqs(&tail), [1, 3]);
        assert_eq!((tail.from, tail.until), (1, 4));
    }

    #[test]
    fn a_gap_starts_a_new_window() {
        let mut tail = tail(100);
        tail.keep(1, 0, &Bytes::from_static(b"a"));
        tail.keep(5, 0, &Bytes::from_static(b"b"));
        assert_eq!(seqs(&tail), [5], "records 2 to 4 were never seen: memory claims nothing before 5");
        assert_eq!((tail.from, tail.until), (5, 6));
    }

    #[test]
    fn a_record_larger_than_the_budget_is_not_kept_nor_anything_before_it() {
        let mut tail = tail(10);
        tail.keep(1, 0, &Bytes::from_static(b"small"));
        tail.keep(2, 0, &Bytes::from(vec![0u8; 11]));
        assert!(tail.records.is_empty());
        assert_eq!((tail.from, tail.until, tail.bytes), (3, 3, 0));
        tail.keep(3, 0, &Bytes::from_static(b"next"));
        assert_eq!(seqs(&tail), [3]);
        assert_eq!(tail.from, 3);
    }
}
