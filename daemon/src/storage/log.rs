//! A shard's append-only log: segments of CRC-checked records on glommio DMA
//! files (O_DIRECT through io_uring), group-committed.
//!
//! - Segments are files numbered in order (`00000000000000000001.log`), each
//!   created at its full size and filled with written zeros before use: a write
//!   never extends a file nor lands on an unwritten extent (on ext4 the first
//!   write into a fallocated extent costs a journal commit at the next
//!   fdatasync: measured here, 1 KiB records went 17x faster into written zeros).
//!   The next segment is prepared in the background ahead of need: at once (a queue log:
//!   the reserve deletes use when the disk fills) or once the active one is half full (a
//!   stream shard's: a log that is not written makes no segment files at all).
//!   The end of the log is the first all-zero header.
//! - `append` copies a record into the staging area and returns its sequence
//!   number at once (no I/O). One flusher task writes everything staged since its
//!   last pass in one aligned write per segment and makes it durable with one
//!   `fdatasync` — or, for a small flush with `--fsync always`, writes it through an O_DSYNC
//!   handle, one operation (docs/storage-sync-latency.md). Appends that arrive while a flush
//!   runs ride the next one.
//! - `durable(seq)` waits until `seq` is as durable as the fsync mode promises.
//! - `open` replays every record in order, cuts a torn tail (the last flush was
//!   interrupted: damage with nothing valid after it, or — its blocks having reached the
//!   disk out of order — damage inside that flush's records with only its records after
//!   it, told by the flush number each record header carries), and refuses to start on
//!   other damage followed by valid records (corruption), naming file and offset,
//!   unless asked to repair, which keeps every valid record and reports what it dropped.
//! - A segment that cannot be made (a full disk, descriptors exhausted …) refuses the writes
//!   that need it, with the cause named (only ENOSPC/EDQUOT is "full"), and is tried again
//!   every second. Records already staged for it are refused to their waiters (`Lost`);
//!   their sequence numbers are never handed out again, and a SKIP record marks the gap.
//!
//! Invariants: sequence numbers increase by one per record across segments, except across
//! a SKIP record (repair, or records lost before they were written);
//! bytes on disk past `write_pos` of the active segment are zero; the log is
//! written by its owning shard only.

use std::cell::{Cell, RefCell};
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use crate::env::{Env, File, ReadData};

use super::record::{
    begin_record, decode_past_skips, decode_record, finish_record, flush_of, kind, position_of, record_bytes, skip_header, Decoded,
    POSITION_MAX, RECORD_ALIGN, RECORD_HEADER_BYTES, RECORD_PAYLOAD_BYTES_MAX,
};
use crate::env::notify::LocalNotify;

/// Direct I/O alignment used for every write (covers 512-byte and 4 KiB devices).
const BLOCK_BYTES: u64 = 4096;
/// Default segment size.
pub const SEGMENT_BYTES_DEFAULT: u64 = 64 * 1024 * 1024;

/// When an append counts as kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncMode {
    /// After its flush's `fdatasync`: survives power loss. The default.
    Always,
    /// After its flush is written; `fdatasync` at most every given interval:
    /// a crash of the machine can lose up to that much acknowledged data.
    Interval(Duration),
    /// At once, before any write: fastest, and a crash can lose whatever was not yet written.
    Never,
}

#[derive(Debug, Clone)]
pub struct LogOptions {
    pub dir: PathBuf,
    pub segment_bytes: u64,
    pub fsync: FsyncMode,
    /// Keep valid records past corruption (reported in `Recovery::dropped`) instead of refusing to open.
    pub repair: bool,
    /// Prepare the next segment as soon as the active one is in use: the reserve a full disk
    /// leaves for what frees space (a queue's deletes), for a log per core. Otherwise only
    /// once the active segment is half full (and not at all for a log never written): for
    /// many logs each written little (stream shards).
    pub spare_ahead: bool,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum StorageError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: Arc<std::io::Error>,
    },
    #[error("{path} is damaged at offset {offset} ({reason}) and valid records follow; start with --repair to keep every valid record (and skip the damage)")]
    Corrupt { path: PathBuf, offset: u64, reason: &'static str },
    #[error("a record of {0} bytes does not fit in a segment")]
    TooLarge(usize),
    #[error("the log stopped accepting writes after a failure: {0}")]
    Failed(String),
    #[error("no space for a new log segment in {0}: free disk space (or let compaction and retention free it)")]
    Full(PathBuf),
    /// A new segment could not be made for a reason other than a full disk (descriptors
    /// exhausted, permissions, the directory gone …): the cause is named, never called "full".
    #[error("cannot create a new log segment in {dir}: {cause}")]
    SegmentUnavailable { dir: PathBuf, cause: String },
    #[error("record {0} was not written: the segment it was staged for could not be created (the write was refused, nothing was kept)")]
    Lost(u64),
    #[error("the record at offset {offset} of {path} cannot be read back: {reason}")]
    Unreadable { path: PathBuf, offset: u64, reason: &'static str },
}

impl StorageError {
    /// Whether this is the disk (or a quota on it) being full.
    pub fn is_disk_full(&self) -> bool {
        match self {
            StorageError::Full(_) => true,
            StorageError::Io { source, .. } => {
                matches!(source.kind(), std::io::ErrorKind::StorageFull | std::io::ErrorKind::QuotaExceeded)
                    || matches!(source.raw_os_error(), Some(28 /* ENOSPC */) | Some(122 /* EDQUOT */))
            }
            _ => false,
        }
    }

    /// What to answer a writer when the next segment could not be made because of `self`.
    fn refusal(&self, dir: &Path) -> StorageError {
        if self.is_disk_full() {
            StorageError::Full(dir.to_path_buf())
        } else {
            StorageError::SegmentUnavailable { dir: dir.to_path_buf(), cause: self.to_string() }
        }
    }
}

fn io_error(path: &Path, error: impl Into<std::io::Error>) -> StorageError {
    StorageError::Io { path: path.to_path_buf(), source: Arc::new(error.into()) }
}

/// Where a record is: its sequence number, segment (by number) and byte offset in that file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Location {
    pub seq: u64,
    pub segment: u64,
    pub offset: u64,
}

/// Largest span `read_many` covers with one read.
const READ_SPAN_MAX: u64 = 256 * 1024;

/// Segment files kept open for reads (the active segment's file is always open).
const READ_FILES_OPEN_MAX: usize = 16;

/// What `open` found.
#[derive(Debug, Default)]
pub struct Recovery {
    pub records: u64,
    pub last_seq: u64,
    /// A torn tail that was cut: file, offset, and bytes discarded.
    pub torn_tail: Option<(PathBuf, u64, u64)>,
    /// With repair: damaged ranges skipped (file, offset, reason).
    pub dropped: Vec<(PathBuf, u64, &'static str)>,
}

struct Segment {
    /// Position in the log's order; names the file.
    number: u64,
    /// Sequence number of the segment's first record (the next one, while it is empty).
    first_seq: u64,
    path: PathBuf,
    /// Open only while it is written to: the active segment (fds are finite, segments are not).
    file: Option<Rc<File>>,
    /// With `--fsync always`: an O_DSYNC handle small flushes are written through (see
    /// `write_chunks`), opened at the first of them; closed with `file`.
    dsync_file: Option<Rc<File>>,
    /// Whether the file exists; a staged segment is created (or taken from the spare) by the flusher.
    on_disk: bool,
    /// Bytes of records in this segment that the owner still needs (see `hold`).
    live_bytes: u64,
}

/// The next segment, prepared ahead of need.
enum Spare {
    None,
    Preparing(u64),
    Ready(u64, Rc<File>),
}

/// Records staged for one segment, not yet handed to the disk.
struct Chunk {
    /// The segment, by its first sequence number (indexes shift when retention removes segments).
    segment: u64,
    pos: u64,
    bytes: Vec<u8>,
    last_seq: u64,
}

impl State {
    fn segment(&self, first_seq: u64) -> &Segment {
        let index = self.segments.binary_search_by_key(&first_seq, |s| s.first_seq).expect("staged segment exists");
        &self.segments[index]
    }

    fn segment_mut(&mut self, first_seq: u64) -> &mut Segment {
        let index = self.segments.binary_search_by_key(&first_seq, |s| s.first_seq).expect("staged segment exists");
        &mut self.segments[index]
    }
}

struct State {
    /// Every segment, the active one last, including one staged but not yet created.
    segments: Vec<Segment>,
    /// Logical end of the active segment (where the next record goes).
    write_pos: u64,
    next_seq: u64,
    chunks: Vec<Chunk>,
    /// The segment and bytes of the last, partly filled block already on disk; rewritten
    /// in front of the next write to that segment so every write stays block-aligned.
    tail_segment: u64,
    tail_block: Vec<u8>,
    written_seq: u64,
    durable_seq: u64,
    failed: Option<String>,
    /// Sequence numbers handed out for records that were never written (their segment could
    /// not be created), newest last: their waiters are told so. They are never handed out
    /// again, so a waiter cannot mistake a later record for its own.
    lost: Vec<(u64, u64)>,
    /// The next record starts after a run of lost sequence numbers: a SKIP record goes first,
    /// so that replay accepts the gap.
    gap_pending: bool,
}

/// Runs of lost sequence numbers remembered for waiters (each run is one failed flush; a
/// waiter is woken by that very flush, so only the newest few matter).
const LOST_RUNS_MAX: usize = 64;

pub struct Log {
    options: LogOptions,
    /// Where the files are and whose tasks and timers run the log.
    env: Env,
    state: RefCell<State>,
    /// Notified when records are staged or the log is closing.
    work: LocalNotify,
    /// Notified after every flush (and on failure).
    flushed: LocalNotify,
    closing: Cell<bool>,
    /// The flusher has written and synced everything and stopped (after `close`).
    stopped: Cell<bool>,
    stats: Cell<LogStats>,
    commits: Cell<CommitStats>,
    spare: RefCell<Spare>,
    /// Notified when a spare segment finishes preparing (or fails to).
    spare_done: LocalNotify,
    /// When and why preparing a spare last failed; cleared on success.
    spare_failed: RefCell<Option<(Duration, StorageError)>>,
    /// When preparing a spare last failed (kept after a success: `space_tight`).
    spare_failed_last: Cell<Option<Duration>>,
    /// A segment whose staged records were dropped because it could not be created: it
    /// starts again empty (readers' indexes of it are stale). Taken by `take_restarted`.
    restarted: Cell<Option<u64>>,
    /// Segment files opened for reads, most recently used last.
    read_files: RefCell<Vec<(u64, Rc<File>)>>,
    /// Number of the flush that will write the records staged now (stamped in their headers).
    next_flush: Cell<u64>,
    /// Records staged so far for that flush (stamped in each header as its position).
    flush_position: Cell<u64>,
}

/// Why a flush stopped.
enum FlushFailure {
    /// The file of segment `segment` (by first sequence number) could not be made: nothing
    /// was written for it or later; everything through `written_through` was written and synced.
    NoSegment { error: StorageError, written_through: Option<u64>, segment: u64 },
    /// A write or sync failed: what is on disk is unknown, and the log stops.
    Fatal(StorageError),
}

impl From<StorageError> for FlushFailure {
    fn from(error: StorageError) -> Self {
        FlushFailure::Fatal(error)
    }
}

/// How long after a failed attempt the next spare segment is tried.
const SPARE_RETRY: Duration = Duration::from_secs(1);
/// How long after a spare could not be made compaction still counts space as short.
const SPACE_TIGHT_FOR: Duration = Duration::from_secs(60);

/// Counters, for tests and benchmarks.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct LogStats {
    pub appends: u64,
    /// Flushes: each writes everything staged since the previous one.
    pub flushes: u64,
    pub fdatasyncs: u64,
    /// Segments the flusher had to create itself, every write waiting, because no prepared
    /// spare was there for it (0 unless the log outruns the zeroing of spares).
    pub segments_created_inline: u64,
}

/// Group commits: records per commit, and each commit's write (and sync, as `--fsync` says)
/// in µs (kept apart from `LogStats`, which every append touches).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct CommitStats {
    pub records: crate::metrics::Buckets,
    pub micros: crate::metrics::Buckets,
}

/// Largest flush written through an O_DSYNC handle rather than as a write and an fdatasync
/// (latency-bound flushes: a few records from synchronous producers).
const DSYNC_FLUSH_BYTES_MAX: u64 = 16 * 1024;

pub(crate) fn segment_path(dir: &Path, number: u64) -> PathBuf {
    dir.join(format!("{number:020}.log"))
}

async fn open_segment(env: &Env, path: &Path) -> Result<Rc<File>, StorageError> {
    let file = env.open(path).await.map_err(|e| io_error(path, e))?;
    Ok(Rc::new(file))
}

/// Writes `len` bytes at `offset` (both whole blocks), made by `fill` straight into a DMA
/// buffer. A short write goes on from where it stopped (the device took whole blocks);
/// one that makes no progress, or stops inside a block, fails: a write is whole or an error.
async fn write_fully(file: &File, path: &Path, offset: u64, len: usize, fill: impl Fn(&mut [u8])) -> Result<(), StorageError> {
    let mut buffer = file.alloc(len);
    fill(buffer.as_bytes_mut());
    let mut done = file.write_at(buffer, offset).await.map_err(|e| io_error(path, e))?;
    while done < len {
        if done == 0 || done % BLOCK_BYTES as usize != 0 {
            return Err(io_error(path, short_write(done, len, offset)));
        }
        let mut whole = vec![0u8; len];
        fill(&mut whole);
        let mut rest = file.alloc(len - done);
        rest.as_bytes_mut().copy_from_slice(&whole[done..]);
        match file.write_at(rest, offset + done as u64).await.map_err(|e| io_error(path, e))? {
            0 => return Err(io_error(path, short_write(done, len, offset))),
            more => done += more,
        }
    }
    Ok(())
}

fn short_write(done: usize, len: usize, offset: u64) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::WriteZero, format!("short write: {done} of {len} bytes at offset {offset}"))
}

/// Creates a segment at full size, writes zeros over all of it, and makes the file
/// and its directory entry durable.
async fn create_segment(env: &Env, dir: &Path, path: &Path, segment_bytes: u64) -> Result<Rc<File>, StorageError> {
    let made = make_segment(env, dir, path, segment_bytes).await;
    if made.is_err() {
        // A segment half made (no space for all of it, say) must not be taken for one later.
        let _ = env.remove_now(path);
    }
    made
}

async fn make_segment(env: &Env, dir: &Path, path: &Path, segment_bytes: u64) -> Result<Rc<File>, StorageError> {
    const ZERO_STEP: u64 = 1 << 20;
    let file = env.create(path).await.map_err(|e| io_error(path, e))?;
    file.pre_allocate(segment_bytes).await.map_err(|e| io_error(path, e))?;
    let mut offset = 0;
    while offset < segment_bytes {
        let step = ZERO_STEP.min(segment_bytes - offset);
        write_fully(&file, path, offset, step as usize, |zeros| zeros.fill(0)).await?;
        offset += step;
    }
    file.fdatasync().await.map_err(|e| io_error(path, e))?;
    env.sync_dir(dir).await.map_err(|e| io_error(dir, e))?;
    Ok(Rc::new(file))
}

async fn read_all(file: &File, path: &Path) -> Result<Vec<u8>, StorageError> {
    let size = file.file_size().await.map_err(|e| io_error(path, e))? as usize;
    let mut data = Vec::with_capacity(size);
    const STEP: usize = 1 << 20;
    while data.len() < size {
        let want = STEP.min((size - data.len()).next_multiple_of(BLOCK_BYTES as usize));
        let read = file.read_at_aligned(data.len() as u64, want).await.map_err(|e| io_error(path, e))?;
        if read.is_empty() {
            break;
        }
        let keep = read.len().min(size - data.len());
        data.extend_from_slice(&read[..keep]);
    }
    // A segment is written in whole blocks; a file cut to another size (by hand, or a
    // filesystem that lost its tail) reads as if zeros followed, so every block of it can be
    // indexed, repaired and written back whole.
    data.resize(data.len().next_multiple_of(BLOCK_BYTES as usize), 0);
    Ok(data)
}

/// Makes glommio decide correctly whether the device under `dir` supports polled I/O.
///
/// glommio probes this once per device, on the first DMA file opened there, by reading
/// offset 0 of that file on the poll ring, and caches the answer. When that file is new
/// and empty, the read returns 0 bytes without reaching the device, so the probe says
/// "pollable" on devices that are not (this virtio disk): every later DMA read then fails
/// with EOPNOTSUPP (glommio issues #605 and #670; `docs/glommio-iopoll-probe.md` has the
/// reproduction). Opening a file with data in it first makes the probe read real blocks.
async fn probe_device(env: &Env, dir: &Path) -> Result<(), StorageError> {
    if env.is_simulated() {
        return Ok(());
    }
    let path = dir.join("dma-probe");
    let sized = std::fs::metadata(&path).is_ok_and(|meta| meta.len() >= BLOCK_BYTES);
    if !sized {
        std::fs::write(&path, vec![0u8; BLOCK_BYTES as usize]).map_err(|e| io_error(&path, e))?;
    }
    let file = open_segment(env, &path).await?;
    drop(file);
    Ok(())
}

/// Reads `len` bytes at `offset` with reads aligned to the log's 4 KiB blocks.
async fn read_span(file: &File, path: &Path, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
    let start = offset / BLOCK_BYTES * BLOCK_BYTES;
    let end = (offset + len as u64).next_multiple_of(BLOCK_BYTES);
    let read = file.read_at_aligned(start, (end - start) as usize).await.map_err(|e| io_error(path, e))?;
    let from = ((offset - start) as usize).min(read.len());
    Ok(read[from..(from + len).min(read.len())].to_vec())
}

/// Sequence number of a segment's first record, reading only that record (`None` when it is
/// empty or its first record does not check).
async fn first_record_seq(file: &File, path: &Path) -> Result<Option<u64>, StorageError> {
    let mut offset = 0u64;
    loop {
        let header = read_span(file, path, offset, RECORD_HEADER_BYTES).await?;
        if header.len() < RECORD_HEADER_BYTES {
            return Ok(None);
        }
        let len = u32::from_le_bytes([header[4], header[5], header[6], header[7]]) as usize;
        if len > RECORD_PAYLOAD_BYTES_MAX {
            return Ok(None);
        }
        let whole = read_span(file, path, offset, RECORD_HEADER_BYTES + len).await?;
        match decode_record(&whole) {
            Decoded::Record { kind: kind::SKIP, size, .. } => offset += size as u64,
            Decoded::Record { seq, .. } => return Ok(Some(seq)),
            _ => return Ok(None),
        }
    }
}

/// Overwrites `[from, to)` of a segment with zeros, keeping `prefix` (the bytes of
/// `from`'s block that come before it).
async fn zero_range(file: &File, path: &Path, from: u64, to: u64, prefix: &[u8]) -> Result<(), StorageError> {
    let start = from / BLOCK_BYTES * BLOCK_BYTES;
    let end = to.next_multiple_of(BLOCK_BYTES).max(start + BLOCK_BYTES);
    write_fully(file, path, start, (end - start) as usize, |bytes| {
        bytes.fill(0);
        bytes[..prefix.len()].copy_from_slice(prefix);
    })
    .await?;
    file.fdatasync().await.map_err(|e| io_error(path, e))
}

/// Whether damage lies inside the log's last flush, which a power loss cut with its blocks
/// on disk out of order: the record just before the damage (flush `before`) and every valid
/// record from `from` on (holes between them allowed) were written by that one flush. It
/// never completed, so none of its records was acknowledged: a torn tail, not corruption.
/// Damage at a flush's very start, or records without a flush number (written by an older
/// version), do not qualify: then records of an earlier, completed flush may be gone.
fn in_last_flush(data: &[u8], from: usize, before: u64) -> bool {
    let flush = flush_of(&data[from..]);
    if flush == 0 || flush != before {
        return false;
    }
    let mut at = Some(from);
    while let Some(here) = at {
        match decode_record(&data[here..]) {
            Decoded::Record { kind: kind::SKIP, size, .. } => at = Some(here + size),
            Decoded::Record { size, .. } => {
                if flush_of(&data[here..]) != flush {
                    return false;
                }
                at = Some(here + size);
            }
            Decoded::End => {
                // Zeros: a block that never arrived, or the end; look past it.
                at = next_valid(data, here + RECORD_ALIGN);
            }
            Decoded::Damaged { .. } => at = next_valid(data, here + RECORD_ALIGN),
        }
    }
    true
}

/// Whether damage lies at the very start of the log's last flush: every valid record from
/// `from` on was written by one flush, and the first of them, less its position in that
/// flush, gives the flush's first sequence number — no later than `next_expected`, the one
/// after the last record read before the damage. Then every record before the damage is
/// there, and only the first records of a flush that never completed are torn. A position
/// that saturated, a record without a flush number, or records missing between the last
/// one read and the flush's start do not qualify: that is damage to earlier flushes.
fn torn_flush_start(data: &[u8], from: usize, next_expected: Option<u64>) -> bool {
    let Decoded::Record { seq, .. } = decode_record(&data[from..]) else { return false };
    let (flush, position) = (flush_of(&data[from..]), position_of(&data[from..]));
    if flush == 0 || position >= POSITION_MAX {
        return false;
    }
    let starts_in_time = match (seq.checked_sub(position), next_expected) {
        (Some(first), Some(expected)) => first <= expected,
        // The log's very first records: nothing before them to lose.
        (Some(first), None) => first == 1,
        (None, _) => false,
    };
    starts_in_time && in_last_flush(data, from, flush)
}

/// Finds the next valid record at or after `from` (8-byte steps), if any.
fn next_valid(data: &[u8], from: usize) -> Option<usize> {
    (from..data.len()).step_by(RECORD_ALIGN).find(|at| matches!(decode_record(&data[*at..]), Decoded::Record { .. }))
}

impl Log {
    /// Opens (or creates) the log in `options.dir`, replaying every record, in order,
    /// into `replay`, and starts its flusher on the current glommio executor.
    pub async fn open(options: LogOptions, replay: impl FnMut(u64, u8, &[u8])) -> Result<(Rc<Log>, Recovery), StorageError> {
        Log::open_in(Env::Glommio, options, replay).await
    }

    /// `open` in `env` (the simulator's world, in tests).
    pub async fn open_in(
        env: Env,
        options: LogOptions,
        mut replay: impl FnMut(u64, u8, &[u8]),
    ) -> Result<(Rc<Log>, Recovery), StorageError> {
        Log::open_with(env, options, false, |location, kind, payload| replay(location.seq, kind, payload)).await
    }

    /// `open`, telling `replay` where each record is (for reading it back later with `read`).
    pub async fn open_located(options: LogOptions, replay: impl FnMut(Location, u8, &[u8])) -> Result<(Rc<Log>, Recovery), StorageError> {
        Log::open_located_in(Env::Glommio, options, replay).await
    }

    /// `open_located` in `env`.
    pub async fn open_located_in(
        env: Env,
        options: LogOptions,
        replay: impl FnMut(Location, u8, &[u8]),
    ) -> Result<(Rc<Log>, Recovery), StorageError> {
        Log::open_with(env, options, false, replay).await
    }

    /// Opens the log reading only its last two segments in full (replayed into `replay`, their
    /// tail checked and cut as `open` does); of the others only the first record is read, for
    /// its sequence number. For logs that are read by position rather than replayed (streams):
    /// the start costs the same however much the log holds. Damage in the unread segments is
    /// found when a read reaches it (`read_range` callers check every record).
    pub async fn open_tail(
        env: Env,
        options: LogOptions,
        replay: impl FnMut(Location, u8, &[u8]),
    ) -> Result<(Rc<Log>, Recovery), StorageError> {
        Log::open_with(env, options, true, replay).await
    }

    async fn open_with(
        env: Env,
        options: LogOptions,
        tail_only: bool,
        mut replay: impl FnMut(Location, u8, &[u8]),
    ) -> Result<(Rc<Log>, Recovery), StorageError> {
        env.create_dir_all(&options.dir).map_err(|e| io_error(&options.dir, e))?;
        probe_device(&env, &options.dir).await?;
        let mut names: Vec<(u64, PathBuf)> = env
            .list_dir(&options.dir)
            .map_err(|e| io_error(&options.dir, e))?
            .into_iter()
            .filter(|path| path.extension().is_some_and(|ext| ext == "log"))
            .filter_map(|path| Some((path.file_stem()?.to_str()?.parse::<u64>().ok()?, path)))
            .collect();
        names.sort();

        // Whether damage is a torn tail depends on what follows it, so learn first which
        // segments hold records (from their first block), then read them one at a time.
        let mut files = Vec::with_capacity(names.len());
        // Whether each segment starts with a valid record (not just bytes that may be damage).
        let mut starts_valid = Vec::with_capacity(names.len());
        let mut removed_empty = false;
        for (number, path) in names {
            let file = open_segment(&env, &path).await?;
            let first = file.read_at_aligned(0, BLOCK_BYTES as usize).await.map_err(|e| io_error(&path, e))?;
            let holds = !matches!(decode_record(&first), Decoded::End);
            let size = file.file_size().await.map_err(|e| io_error(&path, e))?;
            if !holds && size < options.segment_bytes {
                // A segment whose making never finished (a crash, or no space, before it was
                // full size and its directory entry synced): writing into it would put records
                // where a power loss can take the file away. It goes; a new one is made.
                drop(file);
                env.remove_now(&path).map_err(|e| io_error(&path, e))?;
                removed_empty = true;
                continue;
            }
            starts_valid.push(matches!(decode_past_skips(&first, 0).1, Decoded::Record { .. }));
            files.push((number, path, holds));
        }

        let mut segments: Vec<Segment> = Vec::with_capacity(files.len());
        let mut recovery = Recovery::default();
        // None until the first record: retention may have removed the log's beginning.
        let mut expected_seq: Option<u64> = None;
        let mut write_pos = 0u64;
        let mut tail_block = Vec::new();
        // A torn tail to zero: (segment index, offset, end of dirty bytes, bytes of its block before offset).
        let mut cut: Option<(usize, u64, u64, Vec<u8>)> = None;
        // Repairs to make durable: (file, path, aligned offset, block bytes with a SKIP header).
        let mut skips: Vec<(Rc<File>, PathBuf, u64, Vec<u8>)> = Vec::new();
        let mut after_skip = false;
        // The highest flush number read (the next flush goes on from it), and that of the
        // last record read.
        let mut last_flush = 0u64;
        let mut record_flush = 0u64;
        let last_index = files.len().saturating_sub(1);
        // In tail mode the segments from here on are read in full: the last two, and at
        // least the last one that holds records, so that the log's end (its next sequence
        // number) is learnt from records, never guessed. Spares left empty by earlier runs
        // can make the last two segments empty ones, and a power loss can tear the only
        // records of the last one: it counts only when its first record is valid.
        let last_holding = starts_valid.iter().rposition(|valid| *valid).unwrap_or(0);
        let mut read_from = files.len().saturating_sub(2).min(last_holding);
        // ... starting at one that holds a record, so that every segment read in full, empty
        // ones too, learns where the log stands from the one before it.
        while read_from > 0 && !starts_valid[read_from] {
            read_from -= 1;
        }
        for index in 0..files.len() {
            let (number, path, _) = &files[index];
            let file = open_segment(&env, path).await?;
            if tail_only && index < read_from {
                // A damaged first record falls through to the full read, which reports it (or repairs).
                if let Some(first_seq) = first_record_seq(&file, path).await? {
                    segments.push(Segment {
                        number: *number,
                        first_seq,
                        path: path.clone(),
                        file: None,
                        dsync_file: None,
                        on_disk: true,
                        live_bytes: 0,
                    });
                    // The segments read in full continue from wherever this one ends.
                    expected_seq = None;
                    continue;
                }
            }
            let data = &read_all(&file, path).await?;
            let mut pos = 0usize;
            // The segment's first record as replayed (a repaired first record is not it).
            let mut first_replayed = None;
            while pos < data.len() {
                match decode_record(&data[pos..]) {
                    Decoded::Record { kind: kind::SKIP, size, .. } => {
                        pos += size;
                        after_skip = true;
                    }
                    Decoded::Record { seq, kind, payload, size }
                        if expected_seq.is_none_or(|expected| seq == expected || (after_skip && seq > expected)) =>
                    {
                        after_skip = false;
                        record_flush = flush_of(&data[pos..]);
                        last_flush = last_flush.max(record_flush);
                        replay(Location { seq, segment: *number, offset: pos as u64 }, kind, payload);
                        first_replayed.get_or_insert(seq);
                        recovery.records += 1;
                        recovery.last_seq = seq;
                        expected_seq = Some(seq + 1);
                        pos += size;
                    }
                    Decoded::End => break,
                    other => {
                        let reason = match other {
                            Decoded::Damaged { reason } => reason,
                            _ => "sequence number out of order",
                        };
                        let later_valid = next_valid(data, pos + RECORD_ALIGN);
                        let nothing_after = files[index + 1..].iter().all(|(_, _, holds)| !holds);
                        let torn = later_valid.is_none()
                            || later_valid
                                .is_some_and(|at| in_last_flush(data, at, record_flush) || torn_flush_start(data, at, expected_seq));
                        if torn && nothing_after {
                            // Torn tail: the last flush did not complete, so nothing here was acknowledged.
                            let dirty_end = data.iter().rposition(|b| *b != 0).map_or(pos, |at| at + 1).max(pos);
                            recovery.torn_tail = Some((path.clone(), pos as u64, (dirty_end - pos) as u64));
                            let block_start = (pos as u64 / BLOCK_BYTES * BLOCK_BYTES) as usize;
                            cut = Some((index, pos as u64, dirty_end as u64, data[block_start..pos].to_vec()));
                            break;
                        }
                        if !options.repair {
                            return Err(StorageError::Corrupt { path: path.clone(), offset: pos as u64, reason });
                        }
                        recovery.dropped.push((path.clone(), pos as u64, reason));
                        let Some(next) = later_valid else { break };
                        if next - pos >= RECORD_HEADER_BYTES {
                            // Cover the damage with a SKIP record so the next start reads cleanly.
                            let start = pos / BLOCK_BYTES as usize * BLOCK_BYTES as usize;
                            let end = (pos + RECORD_HEADER_BYTES).next_multiple_of(BLOCK_BYTES as usize);
                            let mut block = data[start..end].to_vec();
                            let header = skip_header(&data[pos + RECORD_HEADER_BYTES..next]);
                            block[pos - start..pos - start + RECORD_HEADER_BYTES].copy_from_slice(&header);
                            skips.push((file.clone(), path.clone(), start as u64, block));
                        }
                        after_skip = true;
                        pos = next;
                    }
                }
            }
            if index == last_index {
                write_pos = pos as u64;
                tail_block = data[(pos as u64 / BLOCK_BYTES * BLOCK_BYTES) as usize..pos].to_vec();
            }
            // An empty segment starts at the next sequence number.
            let first_seq = first_replayed.unwrap_or(expected_seq.unwrap_or(1));
            let file = (index == last_index).then_some(file);
            segments.push(Segment { number: *number, first_seq, path: path.clone(), file, dsync_file: None, on_disk: true, live_bytes: 0 });
            if first_replayed.is_none() {
                // Nothing valid here (a segment whose only records a torn tail cut holds none).
                files[index].2 = false;
            }
        }
        // Only the last segment may be empty: drop empty ones before it (spares of an
        // earlier run that were never used), so first sequence numbers stay distinct.
        let mut index = 0;
        while index + 1 < segments.len() {
            if !files[index].2 && segments[index].first_seq == segments[index + 1].first_seq {
                let segment = segments.remove(index);
                files.remove(index);
                env.remove_now(&segment.path).map_err(|e| io_error(&segment.path, e))?;
                removed_empty = true;
                if let Some((cut_index, ..)) = &mut cut {
                    if *cut_index > index {
                        *cut_index -= 1;
                    }
                }
            } else {
                index += 1;
            }
        }
        if removed_empty {
            env.sync_dir(&options.dir).await.map_err(|e| io_error(&options.dir, e))?;
        }
        let next_seq = expected_seq.unwrap_or(1);
        // Sequence numbers are never reused: each segment starts after the one before it,
        // and the log goes on after the last record of every segment that holds one.
        for (index, pair) in segments.windows(2).enumerate() {
            if pair[1].first_seq <= pair[0].first_seq || (files[index + 1].2 && pair[1].first_seq >= next_seq) {
                return Err(StorageError::Corrupt {
                    path: pair[1].path.clone(),
                    offset: 0,
                    reason: "its first sequence number does not follow the segment before it",
                });
            }
        }

        let tail_segment = segments.last().map_or(0, |segment| segment.first_seq);
        let log = Rc::new(Log {
            state: RefCell::new(State {
                segments,
                write_pos,
                next_seq,
                chunks: Vec::new(),
                tail_segment,
                tail_block,
                written_seq: next_seq - 1,
                durable_seq: next_seq - 1,
                failed: None,
                lost: Vec::new(),
                gap_pending: false,
            }),
            options,
            env: env.clone(),
            work: LocalNotify::new(),
            flushed: LocalNotify::new(),
            closing: Cell::new(false),
            stopped: Cell::new(false),
            stats: Cell::new(LogStats::default()),
            commits: Cell::default(),
            spare: RefCell::new(Spare::None),
            spare_done: LocalNotify::new(),
            spare_failed: RefCell::new(None),
            spare_failed_last: Cell::new(None),
            restarted: Cell::new(None),
            read_files: RefCell::new(Vec::new()),
            next_flush: Cell::new(last_flush + 1),
            flush_position: Cell::new(0),
        });
        for (file, path, offset, block) in skips {
            write_fully(&file, &path, offset, block.len(), |bytes| bytes.copy_from_slice(&block)).await?;
            file.fdatasync().await.map_err(|e| io_error(&path, e))?;
        }
        if let Some((index, from, to, prefix)) = cut {
            let path = log.state.borrow().segments[index].path.clone();
            let file = open_segment(&env, &path).await?;
            zero_range(&file, &path, from, to, &prefix).await?;
        }
        // What was replayed counts as kept from now on (a reader may act on it, and the next
        // record takes the sequence number after it), but the run that wrote the tail may have
        // died before syncing it: sync it now, or a power loss could still take it back.
        // (The last segment that holds records: empty spares may follow it.)
        if let Some((_, path, _)) = files.iter().rev().find(|(_, _, holds)| *holds) {
            let file = open_segment(&env, path).await?;
            file.fdatasync().await.map_err(|e| io_error(path, e))?;
        }
        env.spawn(log.clone().flusher());
        log.prepare_spare_if_due();
        Ok((log, recovery))
    }

    /// Prepares the next segment when it is due (`LogOptions::spare_ahead`): at once, or once
    /// the active segment is half full or staged and not yet on disk. Without `spare_ahead` a
    /// log that is not written holds no segment (a thousand idle stream shards hold no
    /// files), and one that is written little holds one, not two.
    fn prepare_spare_if_due(self: &Rc<Self>) {
        let due = {
            let state = self.state.borrow();
            match state.segments.last() {
                _ if self.options.spare_ahead => true,
                None => false,
                Some(segment) if !segment.on_disk => true,
                Some(_) => state.write_pos >= self.options.segment_bytes / 2,
            }
        };
        if due {
            self.ensure_spare();
        }
    }

    /// Starts preparing the segment after the active one, unless it is ready or under way
    /// (or failed less than a second ago).
    pub fn ensure_spare(self: &Rc<Self>) {
        // A staged active segment (no file yet) is itself the one the spare is for: the
        // flusher takes the spare when it first writes there. Preparing the segment after it
        // instead would throw that spare away, and the flusher would create the segment
        // itself, every write waiting meanwhile (measured: a 50 ms stall at every rollover).
        let next = match self.state.borrow().segments.last() {
            Some(segment) if !segment.on_disk => segment.number,
            Some(segment) => segment.number + 1,
            None => 1,
        };
        let current = match &*self.spare.borrow() {
            Spare::None => None,
            Spare::Preparing(number) | Spare::Ready(number, _) => Some(*number),
        };
        if current.is_some_and(|number| number >= next) || self.closing.get() {
            return;
        }
        let now = self.env.monotonic();
        if self.spare_failed.borrow().as_ref().is_some_and(|(at, _)| now.saturating_sub(*at) < SPARE_RETRY) {
            return;
        }
        *self.spare.borrow_mut() = Spare::Preparing(next);
        let log = self.clone();
        self.env.spawn(async move {
            let env = &log.env;
            let path = segment_path(&log.options.dir, next);
            match create_segment(env, &log.options.dir, &path, log.options.segment_bytes).await {
                Ok(file) => {
                    *log.spare.borrow_mut() = Spare::Ready(next, file);
                    if log.spare_failed.take().is_some() {
                        tracing::info!(dir = %log.options.dir.display(), "log segments can be created again");
                    }
                    log.spare_done.notify_all();
                }
                Err(error) => {
                    *log.spare.borrow_mut() = Spare::None;
                    log.segment_failed(error);
                    log.spare_done.notify_all();
                }
            }
        });
    }

    /// Records that a new segment could not be made: writes that need one are refused (with
    /// `error` as the reason) until a later attempt, made by itself after `SPARE_RETRY`,
    /// succeeds — so a log recovers once space is freed even if nothing else asks (a stream
    /// shard that only takes writes).
    fn segment_failed(self: &Rc<Self>, error: StorageError) {
        let first = self.spare_failed.borrow().is_none();
        if first {
            tracing::error!(%error, "cannot make the next log segment; refusing writes that need one until it can be made");
        }
        *self.spare_failed.borrow_mut() = Some((self.env.monotonic(), error));
        self.spare_failed_last.set(Some(self.env.monotonic()));
        let log = self.clone();
        self.env.spawn(async move {
            log.env.sleep(SPARE_RETRY).await;
            if !log.closing.get() {
                log.ensure_spare();
            }
        });
    }

    /// The file for a new segment: the prepared spare when it is this one, else created now.
    async fn take_segment_file(&self, number: u64, path: &Path) -> Result<Rc<File>, StorageError> {
        enum Next {
            Take,
            Wait,
            Create,
        }
        loop {
            let done = self.spare_done.listen();
            // Decide with the borrow released before any await: the preparing task writes `spare`.
            let next = match &*self.spare.borrow() {
                Spare::Ready(spare, _) if *spare == number => Next::Take,
                Spare::Preparing(spare) if *spare == number => Next::Wait,
                _ => Next::Create,
            };
            match next {
                Next::Take => {
                    if let Spare::Ready(_, file) = std::mem::replace(&mut *self.spare.borrow_mut(), Spare::None) {
                        return Ok(file);
                    }
                }
                Next::Wait => done.await,
                Next::Create => {
                    self.count(|stats| stats.segments_created_inline += 1);
                    return create_segment(&self.env, &self.options.dir, path, self.options.segment_bytes).await;
                }
            }
        }
    }

    /// Stages one record and returns its sequence number; no I/O happens here.
    pub fn append(&self, kind: u8, payload: &[u8]) -> Result<u64, StorageError> {
        self.append_located(kind, payload).map(|location| location.seq)
    }

    /// `append`, returning where the record will be on disk.
    pub fn append_located(&self, kind: u8, payload: &[u8]) -> Result<Location, StorageError> {
        self.append_encoded(kind, |out| out.extend_from_slice(payload)).map(|(location, _)| location)
    }

    /// Stages one record whose payload `encode` appends straight into the staging buffer
    /// (no intermediate copy). Returns where the record will be and its payload length.
    pub fn append_encoded(&self, kind: u8, encode: impl FnOnce(&mut Vec<u8>)) -> Result<(Location, usize), StorageError> {
        let mut guard = self.state.borrow_mut();
        let state = &mut *guard;
        if let Some(failure) = &state.failed {
            return Err(StorageError::Failed(failure.clone()));
        }
        // A staged active segment that cannot be created would lose whatever is staged for it.
        if state.segments.last().is_some_and(|segment| !segment.on_disk) {
            if let Some(refusal) = self.segment_refusal() {
                return Err(refusal);
            }
        }
        let seq = state.next_seq;
        if state.segments.is_empty() {
            self.start_segment(state, seq)?;
        }
        // Staged where it goes if it fits the active segment.
        let active = state.segments.last().expect("an active segment").first_seq;
        if state.chunks.last().is_none_or(|chunk| chunk.segment != active) {
            state.chunks.push(Chunk { segment: active, pos: state.write_pos, bytes: Vec::with_capacity(64 * 1024), last_seq: seq });
        }
        let chunk = state.chunks.last_mut().expect("a chunk for the active segment");
        if std::mem::take(&mut state.gap_pending) {
            // Sequence numbers were lost before this record: replay passes the gap after a SKIP.
            chunk.bytes.extend_from_slice(&skip_header(&[]));
            state.write_pos += RECORD_HEADER_BYTES as u64;
        }
        let start = begin_record(&mut chunk.bytes);
        encode(&mut chunk.bytes);
        let len = chunk.bytes.len() - start - RECORD_HEADER_BYTES;
        let size = record_bytes(len) as u64;
        if len > RECORD_PAYLOAD_BYTES_MAX || size > self.options.segment_bytes {
            chunk.bytes.truncate(start);
            if chunk.bytes.is_empty() {
                state.chunks.pop();
            }
            return Err(StorageError::TooLarge(len));
        }
        let position = self.flush_position.get();
        self.flush_position.set(position + 1);
        finish_record(&mut chunk.bytes, start, seq, kind, self.next_flush.get(), position);
        if state.write_pos + size > self.options.segment_bytes {
            // It rolls over to the next segment: moved there (a copy once per segment).
            let record = chunk.bytes.split_off(start);
            if chunk.bytes.is_empty() {
                state.chunks.pop();
            }
            self.start_segment(state, seq)?;
            let segment = state.segments.last().expect("the new segment").first_seq;
            state.chunks.push(Chunk { segment, pos: 0, bytes: record, last_seq: seq });
        } else {
            chunk.last_seq = seq;
        }
        let location = Location { seq, segment: state.segments.last().expect("an active segment").number, offset: state.write_pos };
        state.write_pos += size;
        state.next_seq = seq + 1;
        drop(guard);
        self.count(|stats| stats.appends += 1);
        self.work.notify_all();
        Ok((location, len))
    }

    /// Makes a new, empty segment starting at `seq` the active one (staged: the flusher
    /// creates its file or takes the prepared spare). Refused when space is short.
    fn start_segment(&self, state: &mut State, seq: u64) -> Result<(), StorageError> {
        if let Some(refusal) = self.segment_refusal() {
            return Err(refusal);
        }
        let number = state.segments.last().map_or(1, |segment| segment.number + 1);
        state.segments.push(Segment {
            number,
            first_seq: seq,
            path: segment_path(&self.options.dir, number),
            file: None,
            dsync_file: None,
            on_disk: false,
            live_bytes: 0,
        });
        state.write_pos = 0;
        Ok(())
    }

    /// Reads back the payload of the record at `location`, `size` bytes on disk (as
    /// `record_bytes` counts it), waiting until it is written.
    pub async fn read(&self, location: Location, size: usize) -> Result<Vec<u8>, StorageError> {
        let mut answer = Err(StorageError::Failed("record not read".to_owned()));
        self.read_many(&[(location, size)], |_, record| {
            answer = match record {
                Ok((_, payload)) => Ok(payload.to_vec()),
                Err(error) => Err(error.clone()),
            }
        })
        .await;
        answer
    }

    /// Reads back many records, each given by its location and its size on disk (as
    /// `record_bytes` counts it), handing `each` the index of the record asked for and its
    /// kind and payload (or why it could not be read), checked against checksum, sequence
    /// number and size. Records close together in one segment are read with one aligned
    /// read: a run of small messages costs one I/O, not one each.
    pub async fn read_many(&self, wanted: &[(Location, usize)], mut each: impl FnMut(usize, Result<(u8, &[u8]), &StorageError>)) {
        let mut order: Vec<usize> = (0..wanted.len()).collect();
        order.sort_by_key(|&i| (wanted[i].0.segment, wanted[i].0.offset));
        let mut at = 0;
        while at < order.len() {
            let first = wanted[order[at]].0;
            let mut end = at + 1;
            let mut span_end = first.offset + wanted[order[at]].1 as u64;
            while end < order.len() {
                let (location, size) = wanted[order[end]];
                let next_end = location.offset + size as u64;
                if location.segment != first.segment || next_end.saturating_sub(first.offset) > READ_SPAN_MAX {
                    break;
                }
                span_end = span_end.max(next_end);
                end += 1;
            }
            let group = &order[at..end];
            let last_seq = group.iter().map(|&i| wanted[i].0.seq).max().unwrap_or(0);
            match self.read_group(first.segment, first.offset, span_end, last_seq).await {
                Ok((path, data, start)) => {
                    for &i in group {
                        let (location, size) = wanted[i];
                        let from = (location.offset - start) as usize;
                        let bytes = data.get(from..(from + size).min(data.len())).unwrap_or(&[]);
                        let unreadable = |reason| StorageError::Unreadable { path: path.clone(), offset: location.offset, reason };
                        match decode_record(bytes) {
                            Decoded::Record { seq, kind, payload, size: found } if seq == location.seq && found == size => {
                                each(i, Ok((kind, payload)))
                            }
                            Decoded::Record { .. } => each(i, Err(&unreadable("a different record than expected is there"))),
                            _ => each(i, Err(&unreadable("it is damaged"))),
                        }
                    }
                }
                Err(error) => group.iter().for_each(|&i| each(i, Err(&error))),
            }
            at = end;
        }
    }

    /// One aligned read of `[from, to)` of segment `number`, once record `last_seq` is written.
    async fn read_group(&self, number: u64, from: u64, to: u64, last_seq: u64) -> Result<(PathBuf, ReadData, u64), StorageError> {
        self.written(last_seq).await?;
        let path = segment_path(&self.options.dir, number);
        let file = self.read_file(number, &path).await?;
        let start = from / BLOCK_BYTES * BLOCK_BYTES;
        let end = to.next_multiple_of(BLOCK_BYTES);
        let data = file.read_at_aligned(start, (end - start) as usize).await.map_err(|e| io_error(&path, e))?;
        Ok((path, data, start))
    }

    /// An open file for reading segment `number` (the active one's, or a cached one).
    async fn read_file(&self, number: u64, path: &Path) -> Result<Rc<File>, StorageError> {
        let active = {
            let state = self.state.borrow();
            state.segments.iter().find(|segment| segment.number == number).and_then(|segment| segment.file.clone())
        };
        if let Some(file) = active {
            return Ok(file);
        }
        {
            let mut files = self.read_files.borrow_mut();
            if let Some(index) = files.iter().position(|(n, _)| *n == number) {
                let entry = files.remove(index);
                let file = entry.1.clone();
                files.push(entry);
                return Ok(file);
            }
        }
        let file = open_segment(&self.env, path).await?;
        let mut files = self.read_files.borrow_mut();
        if files.len() >= READ_FILES_OPEN_MAX {
            files.remove(0);
        }
        files.push((number, file.clone()));
        Ok(file)
    }

    /// Waits until record `seq` is kept as the fsync mode promises.
    pub async fn durable(&self, seq: u64) -> Result<(), StorageError> {
        match self.options.fsync {
            FsyncMode::Never => self.wait_until(|_| true).await,
            FsyncMode::Always => self.wait_for(seq, |state| state.durable_seq >= seq).await,
            FsyncMode::Interval(_) => self.wait_for(seq, |state| state.written_seq >= seq).await,
        }
    }

    /// Waits until `done` holds for the log's state; fails once the log has failed.
    async fn wait_until(&self, done: impl Fn(&State) -> bool) -> Result<(), StorageError> {
        loop {
            let flushed = self.flushed.listen();
            {
                let state = self.state.borrow();
                if let Some(failure) = &state.failed {
                    return Err(StorageError::Failed(failure.clone()));
                }
                if done(&state) {
                    return Ok(());
                }
            }
            flushed.await;
        }
    }

    /// `wait_until` for record `seq`, failing if that record was lost instead of written.
    async fn wait_for(&self, seq: u64, done: impl Fn(&State) -> bool) -> Result<(), StorageError> {
        let lost = std::cell::Cell::new(false);
        self.wait_until(|state| {
            lost.set(state.lost.iter().any(|(from, to)| (*from..=*to).contains(&seq)));
            lost.get() || done(state)
        })
        .await?;
        if lost.get() {
            return Err(StorageError::Lost(seq));
        }
        Ok(())
    }

    /// Whether record `seq` was written (handed to the disk) and not lost to a flush that
    /// could not make its segment: a writer that waits only for its last record, like
    /// compaction, asks this of the rest. `false` when that is not known yet, or when runs
    /// lost since `seq` may have been forgotten.
    pub fn kept(&self, seq: u64) -> bool {
        let state = self.state.borrow();
        let forgotten = state.lost.len() >= LOST_RUNS_MAX && state.lost.first().is_some_and(|(from, _)| *from > seq);
        state.written_seq >= seq && !forgotten && !state.lost.iter().any(|(from, to)| (*from..=*to).contains(&seq))
    }

    /// The last sequence number known to be synced to the disk.
    pub fn synced_seq(&self) -> u64 {
        self.state.borrow().durable_seq
    }

    /// Waits until record `seq` has been handed to the disk (not necessarily synced):
    /// lets a bulk writer such as compaction pace itself to the disk.
    pub async fn written(&self, seq: u64) -> Result<(), StorageError> {
        self.wait_for(seq, |state| state.written_seq >= seq).await
    }

    /// Waits until record `seq` is written and synced, whatever the fsync mode (compaction
    /// must not delete old segments before what replaces them is on disk).
    pub async fn sync_through(&self, seq: u64) -> Result<(), StorageError> {
        self.written(seq).await?;
        if self.synced_seq() >= seq {
            return Ok(());
        }
        // Earlier segments were synced before the log moved past them; the active one is left.
        self.sync_active().await
    }

    pub fn commit_stats(&self) -> CommitStats {
        self.commits.get()
    }

    pub fn stats(&self) -> LogStats {
        self.stats.get()
    }

    /// Whether the log is short of space: the next segment could not be prepared. The
    /// active segment (and a prepared spare) still take records, so an owner can keep
    /// accepting what frees space (deletes) while refusing what only adds (new messages).
    pub fn space_low(&self) -> bool {
        self.spare_failed.borrow().is_some()
    }

    /// Whether space is low or was lately (a spare made once compaction freed a little may be
    /// the last that fits): compaction then writes no more than half the room it has.
    fn space_tight(&self) -> bool {
        self.space_low() || self.spare_failed_last.get().is_some_and(|at| self.env.monotonic().saturating_sub(at) < SPACE_TIGHT_FOR)
    }

    /// Why a write that needs a new segment is refused now (the last attempt to prepare one
    /// failed and none is ready), or `None`.
    pub fn segment_refusal(&self) -> Option<StorageError> {
        if matches!(&*self.spare.borrow(), Spare::Ready(..)) {
            return None;
        }
        self.spare_failed.borrow().as_ref().map(|(_, error)| error.refusal(&self.options.dir))
    }

    /// The segment that was started again empty after its staged records were lost, once
    /// (a reader's index of it must be dropped).
    pub fn take_restarted(&self) -> Option<u64> {
        self.restarted.take()
    }

    fn segment_index(state: &State, seq: u64) -> Option<usize> {
        state.segments.partition_point(|segment| segment.first_seq <= seq).checked_sub(1)
    }

    /// Marks `bytes` of record `seq` as still needed by the owner; compaction keeps them.
    pub fn hold(&self, seq: u64, bytes: u32) {
        let mut state = self.state.borrow_mut();
        if let Some(index) = Self::segment_index(&state, seq) {
            state.segments[index].live_bytes += bytes as u64;
        }
    }

    /// Marks a held record as no longer needed.
    pub fn release(&self, seq: u64, bytes: u32) {
        let mut state = self.state.borrow_mut();
        if let Some(index) = Self::segment_index(&state, seq) {
            let segment = &mut state.segments[index];
            segment.live_bytes = segment.live_bytes.saturating_sub(bytes as u64);
        }
    }

    /// Bytes held in segments whose records all come before `seq`.
    pub fn live_bytes_before(&self, seq: u64) -> u64 {
        let state = self.state.borrow();
        let segments = &state.segments;
        (0..segments.len().saturating_sub(1)).take_while(|&i| segments[i + 1].first_seq <= seq).map(|i| segments[i].live_bytes).sum()
    }

    /// What compaction should clean: the longest run of oldest, finished segments at most
    /// half of whose bytes are still held. Returns the first sequence number after that run
    /// and the bytes held in it (to be written again before the run is removed). Cleaning
    /// writes at most half of what it frees, so total writes stay within twice the appends.
    ///
    /// When space is low, or was in the last minute, only runs whose live bytes fit in half the
    /// room left (the active segment and a prepared spare) qualify, so compaction never takes
    /// the space that receives and deletes need; a run with nothing live frees space without
    /// writing.
    pub fn compaction_cutoff(&self) -> Option<(u64, u64)> {
        let state = self.state.borrow();
        let room = (self.options.segment_bytes - state.write_pos)
            + if matches!(&*self.spare.borrow(), Spare::Ready(..)) { self.options.segment_bytes } else { 0 };
        let live_max = if self.space_tight() { room / 2 } else { u64::MAX };
        let segments = &state.segments;
        let (mut size, mut live, mut best) = (0u64, 0u64, None);
        for index in 0..segments.len().saturating_sub(1) {
            if !segments[index + 1].on_disk {
                break;
            }
            size += self.options.segment_bytes;
            live += segments[index].live_bytes;
            if live * 2 <= size && live <= live_max {
                best = Some((segments[index + 1].first_seq, live));
            }
        }
        best
    }

    /// Bytes of segment files on disk (segments times their size; the prepared spare not counted).
    pub fn disk_bytes(&self) -> u64 {
        self.state.borrow().segments.iter().filter(|s| s.on_disk).count() as u64 * self.options.segment_bytes
    }

    fn count(&self, change: impl FnOnce(&mut LogStats)) {
        let mut stats = self.stats.get();
        change(&mut stats);
        self.stats.set(stats);
    }

    /// Deletes every segment whose records all come before `seq` (never the active one).
    /// Returns how many were deleted. Retention and compaction use this to return space.
    pub async fn remove_segments_before(&self, seq: u64) -> Result<usize, StorageError> {
        let removed: Vec<Segment> = {
            let mut state = self.state.borrow_mut();
            let segments = &state.segments;
            // Segment i holds only records below segments[i + 1].first_seq; it must exist on disk
            // and its successor must too (the active segment always stays).
            let count =
                (0..segments.len().saturating_sub(1)).take_while(|&i| segments[i + 1].first_seq <= seq && segments[i + 1].on_disk).count();
            state.segments.drain(..count).collect()
        };
        self.read_files.borrow_mut().retain(|(number, _)| !removed.iter().any(|segment| segment.number == *number));
        for segment in &removed {
            // Through the reactor: a blocking unlink of a full segment would stall this shard.
            self.env.remove(&segment.path).await.map_err(|e| io_error(&segment.path, e))?;
        }
        if !removed.is_empty() {
            // Until the directory is synced a power loss can bring removed segments back, with
            // records their owner has let go of (compacted, or expired) in them.
            self.env.sync_dir(&self.options.dir).await.map_err(|e| io_error(&self.options.dir, e))?;
        }
        Ok(removed.len())
    }

    /// After space was freed: try the next segment again now.
    pub fn retry_spare(self: &Rc<Self>) {
        let long_ago = self.env.monotonic().saturating_sub(SPARE_RETRY);
        let failed = self.spare_failed.borrow_mut().as_mut().map(|(at, _)| *at = long_ago).is_some();
        if failed {
            self.ensure_spare();
        }
    }

    /// First sequence number of each segment, oldest first (retention drops whole segments).
    pub fn segment_first_seqs(&self) -> Vec<u64> {
        self.state.borrow().segments.iter().map(|segment| segment.first_seq).collect()
    }

    /// Every segment: (number, sequence number of its first record, or of the next record
    /// while it is empty), oldest first.
    pub fn segments(&self) -> Vec<(u64, u64)> {
        self.state.borrow().segments.iter().map(|segment| (segment.number, segment.first_seq)).collect()
    }

    /// The last record a reader may see: kept as the fsync mode promises (so a reader never
    /// sees what a crash could take back) and written (so it can be read).
    pub fn readable_seq(&self) -> u64 {
        let state = self.state.borrow();
        match self.options.fsync {
            FsyncMode::Always => state.durable_seq.min(state.written_seq),
            _ => state.written_seq,
        }
    }

    /// The raw bytes of segment `number` from `offset`, at most `len` of them (fewer at the
    /// end of the file). The caller decodes and checks the records (`record::decode_record`).
    pub async fn read_range(&self, number: u64, offset: u64, len: usize) -> Result<Vec<u8>, StorageError> {
        let path = segment_path(&self.options.dir, number);
        let file = self.read_file(number, &path).await?;
        read_span(&file, &path, offset, len).await
    }

    /// The whole of segment `number`, read in 1 MiB steps.
    pub async fn read_segment(&self, number: u64) -> Result<Vec<u8>, StorageError> {
        let path = segment_path(&self.options.dir, number);
        let file = self.read_file(number, &path).await?;
        read_all(&file, &path).await
    }

    /// The path of segment `number` (for reporting damage found by a reader).
    pub fn segment_path(&self, number: u64) -> PathBuf {
        segment_path(&self.options.dir, number)
    }

    /// The sequence number the next append will get.
    pub fn next_seq(&self) -> u64 {
        self.state.borrow().next_seq
    }

    /// Flushes and syncs everything staged, then stops the flusher.
    pub async fn close(&self) -> Result<(), StorageError> {
        self.closing.set(true);
        self.work.notify_all();
        // Records lost for want of a segment never become durable: the flusher's exit is the end.
        let stopped = self.wait_until(|_| self.stopped.get()).await;
        // A segment being made ahead is waited for (none starts once closing): a caller may
        // remove the directory next, and glommio panics when a file's directory goes while the
        // file is being created (docs/glommio-statfs-race.md).
        loop {
            let done = self.spare_done.listen();
            if !matches!(*self.spare.borrow(), Spare::Preparing(_)) {
                break;
            }
            done.await;
        }
        stopped
    }

    /// The group-commit loop: write everything staged, sync, publish, repeat.
    async fn flusher(self: Rc<Self>) {
        let env = self.env.clone();
        let mut last_sync = env.monotonic();
        loop {
            let work = self.work.listen();
            let chunks = std::mem::take(&mut self.state.borrow_mut().chunks);
            if !chunks.is_empty() {
                // Whatever is staged from now on is written by the next flush.
                self.next_flush.set(self.next_flush.get() + 1);
                self.flush_position.set(0);
            }
            if chunks.is_empty() {
                if self.closing.get() {
                    let synced = self.sync_active().await;
                    let mut state = self.state.borrow_mut();
                    match synced {
                        Ok(()) => state.durable_seq = state.written_seq,
                        Err(error) => state.failed = Some(error.to_string()),
                    }
                    drop(state);
                    self.stopped.set(true);
                    self.flushed.notify_all();
                    return;
                }
                // With an interval, written but unsynced records are synced when it is up,
                // even if nothing more arrives.
                let unsynced = {
                    let state = self.state.borrow();
                    (state.durable_seq < state.written_seq).then_some(state.written_seq)
                };
                match (self.options.fsync, unsynced) {
                    (FsyncMode::Interval(every), Some(written)) => {
                        let due = env.sleep(every.saturating_sub(env.monotonic().saturating_sub(last_sync)));
                        futures::pin_mut!(work, due);
                        if let futures::future::Either::Right(_) = futures::future::select(work, due).await {
                            if let Err(error) = self.sync_active().await {
                                tracing::error!(%error, "log sync failed; refusing further appends");
                                self.state.borrow_mut().failed = Some(error.to_string());
                                self.flushed.notify_all();
                                return;
                            }
                            self.count(|stats| stats.fdatasyncs += 1);
                            last_sync = env.monotonic();
                            let mut state = self.state.borrow_mut();
                            state.durable_seq = state.durable_seq.max(written);
                            drop(state);
                            self.flushed.notify_all();
                        }
                    }
                    _ => work.await,
                }
                continue;
            }
            let last_seq = chunks.last().map_or(0, |chunk| chunk.last_seq);
            let sync = match self.options.fsync {
                FsyncMode::Always => true,
                FsyncMode::Interval(every) => env.monotonic().saturating_sub(last_sync) >= every || self.closing.get(),
                FsyncMode::Never => self.closing.get(),
            };
            self.count(|stats| stats.flushes += 1);
            let records = last_seq.saturating_sub(self.state.borrow().written_seq);
            let started = env.monotonic();
            let written = self.write_chunks(chunks, sync).await;
            let micros = env.monotonic().saturating_sub(started).as_micros() as u64;
            let mut commits = self.commits.get();
            commits.records.observe(&crate::metrics::RECORDS_BOUNDS, records);
            commits.micros.observe(&crate::metrics::LATENCY_BOUNDS_US, micros);
            self.commits.set(commits);
            match written {
                Ok(()) => {
                    self.prepare_spare_if_due();
                    let mut state = self.state.borrow_mut();
                    state.written_seq = last_seq;
                    if sync {
                        state.durable_seq = last_seq;
                        last_sync = env.monotonic();
                    }
                }
                Err(FlushFailure::NoSegment { error, written_through, segment }) => {
                    self.drop_unwritten(written_through, segment);
                    tracing::warn!(dir = %self.options.dir.display(), "the writes staged for a log segment that could not be made were refused");
                    self.segment_failed(error);
                }
                Err(FlushFailure::Fatal(error)) => {
                    tracing::error!(%error, "log write failed; refusing further appends");
                    self.state.borrow_mut().failed = Some(error.to_string());
                    self.flushed.notify_all();
                    return;
                }
            }
            self.flushed.notify_all();
        }
    }

    /// The O_DSYNC handle on the segment starting at `first_seq`, opened at its first small flush.
    async fn dsync_handle(&self, first_seq: u64, path: &Path) -> Result<Rc<File>, StorageError> {
        if let Some(file) = self.state.borrow().segment(first_seq).dsync_file.clone() {
            return Ok(file);
        }
        let file = Rc::new(self.env.open_dsync(path).await.map_err(|e| io_error(path, e))?);
        self.state.borrow_mut().segment_mut(first_seq).dsync_file = Some(file.clone());
        Ok(file)
    }

    async fn sync_active(&self) -> Result<(), StorageError> {
        let segment = self.state.borrow().segments.last().and_then(|s| s.file.clone().map(|f| (f, s.path.clone())));
        if let Some((file, path)) = segment {
            file.fdatasync().await.map_err(|e| io_error(&path, e))?;
        }
        Ok(())
    }

    /// After a flush could not create segment `segment` (by first sequence number): what was
    /// written before it stays, every record staged for it or later is dropped (its waiters
    /// are told), and the segment starts again empty, its file still to be made. The log
    /// goes on: sequence numbers continue after the lost ones, past a SKIP record.
    fn drop_unwritten(&self, written_through: Option<u64>, segment: u64) {
        let mut state = self.state.borrow_mut();
        if let Some(seq) = written_through {
            state.written_seq = seq;
            // Chunks before the failed one were synced before the log moved on.
            state.durable_seq = seq;
        }
        let lost = (state.written_seq + 1, state.next_seq - 1);
        state.chunks.clear();
        let Some(index) = state.segments.iter().position(|s| s.first_seq == segment) else {
            state.failed = Some(format!("segment starting at {segment} is missing after a failed flush"));
            return;
        };
        debug_assert!(state.segments[index..].iter().all(|s| !s.on_disk), "only segments never created are dropped");
        state.segments.truncate(index + 1);
        state.write_pos = 0;
        if lost.0 <= lost.1 {
            state.gap_pending = true;
            state.lost.push(lost);
            if state.lost.len() > LOST_RUNS_MAX {
                state.lost.remove(0);
            }
        }
        self.restarted.set(Some(state.segments[index].number));
    }

    /// Writes each chunk with one aligned write; syncs a segment before the log moves past it.
    async fn write_chunks(&self, chunks: Vec<Chunk>, sync: bool) -> Result<(), FlushFailure> {
        let count = chunks.len();
        let mut written_through = None;
        for (index, chunk) in chunks.into_iter().enumerate() {
            let (number, file, on_disk, path, prefix) = {
                let state = self.state.borrow();
                let segment = state.segment(chunk.segment);
                let prefix = if state.tail_segment == chunk.segment { state.tail_block.clone() } else { Vec::new() };
                (segment.number, segment.file.clone(), segment.on_disk, segment.path.clone(), prefix)
            };
            let file = match file {
                Some(file) => file,
                None => {
                    let file = if on_disk {
                        open_segment(&self.env, &path).await?
                    } else {
                        self.take_segment_file(number, &path).await.map_err(|error| FlushFailure::NoSegment {
                            error,
                            written_through,
                            segment: chunk.segment,
                        })?
                    };
                    let mut state = self.state.borrow_mut();
                    let segment = state.segment_mut(chunk.segment);
                    segment.file = Some(file.clone());
                    segment.on_disk = true;
                    file
                }
            };
            let start = chunk.pos - prefix.len() as u64;
            debug_assert_eq!(start % BLOCK_BYTES, 0, "writes start on a block boundary");
            let end = chunk.pos + chunk.bytes.len() as u64;
            // A small flush that must be durable goes through the segment's O_DSYNC handle: one
            // operation, no io_uring worker for an fdatasync on the shard's CPU
            // (docs/storage-sync-latency.md). Large ones keep write + fdatasync.
            let dsync = sync && index + 1 == count && self.options.fsync == FsyncMode::Always && end - start <= DSYNC_FLUSH_BYTES_MAX;
            let file = if dsync { self.dsync_handle(chunk.segment, &path).await? } else { file };
            write_fully(&file, &path, start, (end.next_multiple_of(BLOCK_BYTES) - start) as usize, |bytes| {
                bytes[..prefix.len()].copy_from_slice(&prefix);
                bytes[prefix.len()..prefix.len() + chunk.bytes.len()].copy_from_slice(&chunk.bytes);
                bytes[prefix.len() + chunk.bytes.len()..].fill(0);
            })
            .await?;
            {
                let mut state = self.state.borrow_mut();
                let block_start = end / BLOCK_BYTES * BLOCK_BYTES;
                let tail_from = (block_start - start) as usize;
                let mut tail = Vec::with_capacity((end - block_start) as usize);
                tail.extend_from_slice(&prefix[tail_from.min(prefix.len())..]);
                let from_chunk = tail_from.saturating_sub(prefix.len());
                tail.extend_from_slice(&chunk.bytes[from_chunk..]);
                state.tail_segment = chunk.segment;
                state.tail_block = tail;
            }
            // A segment is synced before anything is written to the next one, so a torn
            // write can only ever be at the very end of the log.
            if sync || index + 1 < count {
                // An O_DSYNC write came back durable: counted as the sync it stands for.
                if !dsync {
                    file.fdatasync().await.map_err(|e| io_error(&path, e))?;
                }
                self.count(|stats| stats.fdatasyncs += 1);
            }
            written_through = Some(chunk.last_seq);
        }
        // Only the active segment keeps its file open. One the log has moved past is synced
        // first, whatever the fsync mode: the log's order on disk must never have a hole.
        let closing: Vec<(Rc<File>, PathBuf)> = {
            let mut state = self.state.borrow_mut();
            let active = state.segments.len().saturating_sub(1);
            state.segments[..active]
                .iter_mut()
                .filter_map(|segment| {
                    segment.dsync_file = None;
                    Some((segment.file.take()?, segment.path.clone()))
                })
                .collect()
        };
        for (file, path) in closing {
            if !sync {
                file.fdatasync().await.map_err(|e| io_error(&path, e))?;
                self.count(|stats| stats.fdatasyncs += 1);
            }
        }
        Ok(())
    }
}
