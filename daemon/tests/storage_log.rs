//! The storage log on real files through glommio: replay, segment rolls, group
//! commit, torn tails and corruption.

use std::io::{Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use sluice_daemon::storage::log::{FsyncMode, Log, LogOptions, StorageError};

mod common;
use common::{options, run};

fn payload(i: u64) -> Vec<u8> {
    format!("record number {i} ").repeat((i % 7 + 1) as usize).into_bytes()
}

/// Bytes on disk of the record holding `payload(i)`.
fn size(i: u64) -> usize {
    sluice_daemon::storage::record::record_bytes(payload(i).len())
}

/// A replayed record: sequence number, kind, payload.
type Replayed = (u64, u8, Vec<u8>);

/// Opens the log, collects what it replays, closes it.
fn reopen(opts: LogOptions) -> Result<(Vec<Replayed>, sluice_daemon::storage::log::Recovery), String> {
    run(move || async move {
        let mut seen = Vec::new();
        let (log, recovery) =
            Log::open(opts, |seq, kind, bytes| seen.push((seq, kind, bytes.to_vec()))).await.map_err(|e| e.to_string())?;
        log.close().await.map_err(|e| e.to_string())?;
        Ok((seen, recovery))
    })
}

#[test]
fn appended_records_are_replayed_in_order_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let written = opts.clone();
    let segments = run(move || async move {
        let (log, recovery) = Log::open(written, |_, _, _| panic!("a new log has no records")).await.unwrap();
        assert_eq!(recovery.records, 0);
        for i in 1..=3000u64 {
            let seq = log.append((i % 5 + 1) as u8, &payload(i)).unwrap();
            assert_eq!(seq, i);
        }
        log.durable(3000).await.unwrap();
        let segments = log.segment_first_seqs();
        log.close().await.unwrap();
        segments
    });
    assert!(segments.len() > 3, "expected the log to roll over several segments, got {segments:?}");
    let (seen, recovery) = reopen(opts.clone()).unwrap();
    assert_eq!(recovery.records, 3000);
    assert!(recovery.torn_tail.is_none());
    for (index, (seq, kind, bytes)) in seen.iter().enumerate() {
        let i = index as u64 + 1;
        assert_eq!((*seq, *kind, bytes.as_slice()), (i, (i % 5 + 1) as u8, payload(i).as_slice()));
    }
    // Appends after a reopen continue the sequence, in the same files.
    let more = opts.clone();
    run(move || async move {
        let (log, _) = Log::open(more, |_, _, _| {}).await.unwrap();
        assert_eq!(log.append(1, b"after reopen").unwrap(), 3001);
        log.durable(3001).await.unwrap();
        log.close().await.unwrap();
    });
    let (seen, _) = reopen(opts).unwrap();
    assert_eq!(seen.len(), 3001);
    assert_eq!(seen.last().unwrap().2, b"after reopen");
}

/// Lets the other tasks (the flusher) run before going on.
async fn yield_now() {
    let mut yielded = false;
    futures::future::poll_fn(|cx| {
        if yielded {
            std::task::Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    })
    .await
}

#[test]
fn each_new_segment_is_the_prepared_spare() {
    // Appends keep arriving while the flusher writes, so the log rolls over into a staged
    // segment while a flush of the one before is under way. The next segment must still be
    // the prepared spare: the flusher never creates one itself (every write would wait).
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let stats = run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        let mut seq = 0;
        for burst in 0..16u64 {
            // About half a segment per burst, so a flush crosses at most one boundary.
            for i in 0..300u64 {
                seq = log.append(1, &payload(burst * 300 + i)).unwrap();
                if i % 5 == 0 {
                    yield_now().await;
                }
            }
            log.durable(seq).await.unwrap();
            // Time for the next spare to be prepared.
            glommio::timer::sleep(Duration::from_millis(50)).await;
        }
        let (stats, segments) = (log.stats(), log.segment_first_seqs());
        log.close().await.unwrap();
        assert!(segments.len() >= 7, "the log rolled over at least 6 times: {segments:?}");
        stats
    });
    assert_eq!(stats.segments_created_inline, 0, "{stats:?}");
}

#[test]
fn concurrent_appends_share_flushes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    let stats = run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        let tasks: Vec<_> = (0..200)
            .map(|i| {
                let log = log.clone();
                glommio::spawn_local(async move {
                    let seq = log.append(1, format!("message {i}").as_bytes()).unwrap();
                    log.durable(seq).await.unwrap();
                })
            })
            .collect();
        for task in tasks {
            task.await;
        }
        let stats = log.stats();
        log.close().await.unwrap();
        stats
    });
    assert_eq!(stats.appends, 200);
    assert!(stats.fdatasyncs < 200, "group commit should need fewer syncs than appends: {stats:?}");
    assert!(stats.fdatasyncs >= 1);
}

fn segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files: Vec<_> =
        std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).filter(|path| path.extension().is_some_and(|e| e == "log")).collect();
    files.sort();
    files
}

/// Segment files that hold at least one record (a prepared spare segment holds none).
fn data_segment_files(dir: &Path) -> Vec<std::path::PathBuf> {
    segment_files(dir)
        .into_iter()
        .filter(|path| {
            // A spare whose preparation was cut short by the test's executor ending may be short.
            let mut header = [0u8; 24];
            std::fs::File::open(path).unwrap().read_exact(&mut header).is_ok() && header.iter().any(|b| *b != 0)
        })
        .collect()
}

/// Writes records 1..=count: all but the last in one flush, the last in a flush of its own
/// (so that damage to the first ones is damage to a completed flush, not a torn last one).
fn write_records(opts: LogOptions, count: u64) {
    run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        for i in 1..count {
            log.append(1, &payload(i)).unwrap();
        }
        if count > 1 {
            log.durable(count - 1).await.unwrap();
        }
        log.append(1, &payload(count)).unwrap();
        log.close().await.unwrap();
    });
}

/// Offset just past the last record of a segment file: the first 8-aligned all-zero header.
fn end_of_records(path: &Path) -> u64 {
    let mut data = Vec::new();
    std::fs::File::open(path).unwrap().read_to_end(&mut data).unwrap();
    let mut pos = 0;
    while let sluice_daemon::storage::record::Decoded::Record { size, .. } = sluice_daemon::storage::record::decode_record(&data[pos..]) {
        pos += size;
    }
    pos as u64
}

#[test]
fn a_torn_tail_is_cut_back_to_the_last_whole_record() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    write_records(opts.clone(), 50);
    let file = data_segment_files(dir.path()).pop().unwrap();
    let end = end_of_records(&file);
    // Half a record's worth of garbage where the next flush would have gone.
    let mut handle = std::fs::OpenOptions::new().write(true).open(&file).unwrap();
    handle.seek(SeekFrom::Start(end)).unwrap();
    handle.write_all(&[0xAB; 37]).unwrap();
    drop(handle);
    let (seen, recovery) = reopen(opts.clone()).unwrap();
    assert_eq!(seen.len(), 50);
    let (path, offset, bytes) = recovery.torn_tail.expect("the torn tail is reported");
    assert_eq!((path, offset, bytes), (file.clone(), end, 37));
    // The cut is on disk: new appends follow the last whole record and reopen cleanly.
    let more = opts.clone();
    run(move || async move {
        let (log, _) = Log::open(more, |_, _, _| {}).await.unwrap();
        let seq = log.append(1, b"next").unwrap();
        assert_eq!(seq, 51);
        log.durable(seq).await.unwrap();
        log.close().await.unwrap();
    });
    let (seen, recovery) = reopen(opts).unwrap();
    assert_eq!(seen.len(), 51);
    assert!(recovery.torn_tail.is_none());
}

#[test]
fn corruption_before_valid_records_refuses_to_open_unless_repairing() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    write_records(opts.clone(), 20);
    let file = data_segment_files(dir.path()).pop().unwrap();
    // Damage the payload of the first record.
    let mut handle = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
    handle.seek(SeekFrom::Start(30)).unwrap();
    handle.write_all(&[0xFF, 0x00, 0xFF]).unwrap();
    drop(handle);
    let error = reopen(opts.clone()).unwrap_err();
    assert!(error.contains(&file.display().to_string()) && error.contains("offset 0"), "{error}");
    let (seen, recovery) = reopen(LogOptions { repair: true, ..opts.clone() }).unwrap();
    assert_eq!(seen.len(), 19, "every valid record is kept");
    assert_eq!(seen[0].0, 2);
    assert_eq!(recovery.dropped.len(), 1);
    assert_eq!(recovery.dropped[0].1, 0);
    // The repair is on disk: the next start needs no repair and sees the same records.
    let (again, recovery) = reopen(opts.clone()).unwrap();
    assert_eq!(again, seen);
    assert!(recovery.dropped.is_empty() && recovery.torn_tail.is_none());
    // And the log goes on from there.
    let more = opts.clone();
    run(move || async move {
        let (log, _) = Log::open(more, |_, _, _| {}).await.unwrap();
        assert_eq!(log.append(1, b"after repair").unwrap(), 21);
        log.close().await.unwrap();
    });
    assert_eq!(reopen(opts).unwrap().0.len(), 20);
}

#[test]
fn retention_removes_whole_segments_that_hold_only_older_records() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let written = opts.clone();
    let (before, after, removed) = run(move || async move {
        let (log, _) = Log::open(written, |_, _, _| {}).await.unwrap();
        for i in 1..=3000u64 {
            log.append(1, &payload(i)).unwrap();
        }
        log.durable(3000).await.unwrap();
        let before = log.segment_first_seqs();
        let cutoff = before[2];
        let removed = log.remove_segments_before(cutoff).await.unwrap();
        // Nothing before the oldest segment's successor: asking again removes nothing.
        assert_eq!(log.remove_segments_before(cutoff).await.unwrap(), 0);
        // The active segment always stays.
        log.remove_segments_before(u64::MAX).await.unwrap();
        let after = log.segment_first_seqs();
        log.append(1, b"still writable").unwrap();
        log.close().await.unwrap();
        (before, after, removed)
    });
    assert_eq!(removed, 2);
    assert_eq!(after, vec![*before.last().unwrap()]);
    assert_eq!(data_segment_files(dir.path()).len(), 1);
    let (seen, _) = reopen(opts).unwrap();
    assert_eq!(seen.first().unwrap().0, *before.last().unwrap());
    assert_eq!(seen.last().unwrap().2, b"still writable");
}

#[test]
fn fsync_never_acknowledges_at_once_and_still_writes_on_close() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions { fsync: FsyncMode::Never, ..options(dir.path(), 1 << 20) };
    let written = opts.clone();
    run(move || async move {
        let (log, _) = Log::open(written, |_, _, _| {}).await.unwrap();
        let seq = log.append(2, b"fast").unwrap();
        log.durable(seq).await.unwrap();
        log.close().await.unwrap();
    });
    let (seen, _) = reopen(LogOptions { fsync: FsyncMode::Interval(Duration::from_millis(5)), ..opts }).unwrap();
    assert_eq!(seen, vec![(1, 2, b"fast".to_vec())]);
}

#[test]
fn records_larger_than_a_segment_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let refused = run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        let refused = matches!(log.append(1, &vec![0u8; 70_000]), Err(StorageError::TooLarge(70_000)));
        log.close().await.unwrap();
        refused
    });
    assert!(refused);
}

#[test]
fn compaction_picks_the_oldest_run_at_most_half_live_and_never_a_held_segment() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        // Records of exactly 1 KiB on disk (1000 bytes + 24-byte header): 64 per segment.
        let record = vec![7u8; 1000];
        let mut held = Vec::new();
        for _ in 0..400 {
            let seq = log.append(1, &record).unwrap();
            log.hold(seq, 1024);
            held.push(seq);
        }
        log.sync_through(400).await.unwrap();
        assert_eq!(log.compaction_cutoff(), None, "everything is live: nothing to clean");
        let firsts = log.segment_first_seqs();
        assert!(firsts.len() >= 6, "{firsts:?}");
        assert_eq!(&firsts[..4], &[1, 65, 129, 193]);
        // Release all of segment 1 and three quarters of segment 2: the longest run at most half
        // live is segments 1–3 (0 + 16 + 64 KiB of 192 KiB); adding segment 4 would pass half.
        for &seq in held.iter().filter(|seq| **seq < 65 + 48) {
            log.release(seq, 1024);
        }
        assert_eq!(log.compaction_cutoff(), Some((193, 80 * 1024)));
        assert_eq!(log.live_bytes_before(193), 80 * 1024);
        // Once what is live there has been written again (and released), the run can go.
        for &seq in held.iter().filter(|seq| **seq < 193) {
            log.release(seq, 1024);
        }
        assert_eq!(log.live_bytes_before(193), 0);
        assert_eq!(log.remove_segments_before(193).await.unwrap(), 3);
        assert_eq!(log.segment_first_seqs()[0], 193);
        log.close().await.unwrap();
    });
}

#[test]
fn interval_mode_syncs_written_records_once_the_interval_is_up_even_when_idle() {
    let dir = tempfile::tempdir().unwrap();
    let opts = LogOptions { fsync: FsyncMode::Interval(Duration::from_secs(3)), ..options(dir.path(), 64 * 1024) };
    run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        // Kept once written: the flush, well within the interval, does not sync.
        let seq = log.append(1, b"kept within the interval").unwrap();
        log.durable(seq).await.unwrap();
        assert!(log.synced_seq() < seq, "the first flush synced although the interval was not up");
        // Nothing else arrives; the sync still comes (waited for by condition, not by time).
        for _ in 0..2000 {
            if log.synced_seq() >= seq {
                break;
            }
            glommio::timer::sleep(Duration::from_millis(10)).await;
        }
        assert!(log.synced_seq() >= seq, "no sync 20 s after an idle write in interval mode");
        log.close().await.unwrap();
    });
}

#[test]
fn records_are_read_back_by_location_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let reopened = opts.clone();
    let locations = run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        let mut locations = Vec::new();
        for i in 1..=3000u64 {
            locations.push(log.append_located(2, &payload(i)).unwrap());
        }
        // Read back at once: the read waits for the record to be written.
        assert_eq!(log.read(locations[2999], size(3000)).await.unwrap(), payload(3000));
        assert_eq!(log.read(locations[0], size(1)).await.unwrap(), payload(1));
        assert!(locations.iter().map(|l| l.segment).collect::<std::collections::HashSet<_>>().len() > 3, "spans segments");
        for (i, location) in locations.iter().enumerate().step_by(37) {
            assert_eq!(log.read(*location, size(i as u64 + 1)).await.unwrap(), payload(i as u64 + 1));
        }
        log.close().await.unwrap();
        locations
    });
    run(move || async move {
        let mut replayed = Vec::new();
        let (log, _) = Log::open_located(reopened, |location, _, _| replayed.push(location)).await.unwrap();
        assert_eq!(replayed, locations, "replay reports the locations the appends did");
        assert_eq!(log.read(locations[2500], size(2501)).await.unwrap(), payload(2501));
        // A location that does not hold that record is an error, not a wrong answer.
        let wrong = sluice_daemon::storage::log::Location { seq: locations[2500].seq + 1, ..locations[2500] };
        assert!(matches!(log.read(wrong, size(2501)).await, Err(StorageError::Unreadable { .. })));
        // A removed segment cannot be read.
        let second = log.segment_first_seqs()[1];
        log.remove_segments_before(second).await.unwrap();
        assert!(log.read(locations[0], size(1)).await.is_err());
        log.close().await.unwrap();
    });
}

#[test]
fn a_log_opened_for_its_tail_keeps_its_end_across_reopens_without_writes() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    let first = opts.clone();
    run(move || async move {
        let (log, _) = Log::open_tail(Default::default(), first, |_, _, _| {}).await.unwrap();
        for i in 1..=20u64 {
            log.append(1, &payload(i)).unwrap();
        }
        log.durable(20).await.unwrap();
        // Let the spare segment be made, as it is in a running daemon.
        glommio::timer::sleep(Duration::from_millis(200)).await;
        log.close().await.unwrap();
    });
    // Each open leaves a new empty spare behind; the records' end must be found every time.
    for reopen in 0..4 {
        let again = opts.clone();
        let (next_seq, replayed) = run(move || async move {
            let mut replayed = 0;
            let (log, _) = Log::open_tail(Default::default(), again, |_, _, _| replayed += 1).await.unwrap();
            glommio::timer::sleep(Duration::from_millis(200)).await;
            let next_seq = log.next_seq();
            log.close().await.unwrap();
            (next_seq, replayed)
        });
        assert_eq!(next_seq, 21, "reopen {reopen}: the next sequence number");
        assert_eq!(replayed, 20, "reopen {reopen}: the segment holding the records is read in full");
    }
    let (seen, _) = reopen(opts).unwrap();
    assert_eq!(seen.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>(), (1..=20).collect::<Vec<_>>());
}

#[test]
fn records_staged_for_a_segment_that_cannot_be_created_are_refused_and_the_log_goes_on() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 64 * 1024);
    // The second segment's name is taken by a directory: its file cannot be created.
    let blocker = dir.path().join(format!("{:020}.log", 2));
    let written = opts.clone();
    let blocked = blocker.clone();
    let (kept, lost, after) = run(move || async move {
        let (log, _) = Log::open(written, |_, _, _| {}).await.unwrap();
        std::fs::create_dir(&blocked).unwrap();
        // Staged in one go, so the roll-over happens before the second segment is tried.
        let record = vec![7u8; 1000];
        let seqs: Vec<u64> = (0..100).map(|_| log.append(1, &record).unwrap()).collect();
        let mut kept = Vec::new();
        let mut lost = Vec::new();
        for seq in seqs {
            match log.durable(seq).await {
                Ok(()) => kept.push(seq),
                Err(StorageError::Lost(_)) => lost.push(seq),
                Err(other) => panic!("record {seq}: {other}"),
            }
        }
        // While the segment cannot be made, writes are refused with the cause named.
        match log.append(1, b"refused") {
            Err(error @ StorageError::SegmentUnavailable { .. }) => assert!(error.to_string().contains("directory"), "{error}"),
            other => panic!("expected a refusal naming the cause, got {other:?}"),
        }
        std::fs::remove_dir(&blocked).unwrap();
        // The log retries by itself and takes writes again.
        let mut after = Vec::new();
        for _ in 0..100 {
            glommio::timer::sleep(Duration::from_millis(50)).await;
            if let Ok(seq) = log.append(2, b"after") {
                log.durable(seq).await.unwrap();
                after.push(seq);
                break;
            }
        }
        log.close().await.unwrap();
        (kept, lost, after)
    });
    assert!(!kept.is_empty() && !lost.is_empty(), "some records fit the first segment, the rest were lost: {kept:?} {lost:?}");
    assert_eq!(kept.last().unwrap() + 1, lost[0]);
    assert_eq!(after.len(), 1, "the log took a write again once the segment could be made");
    assert!(after[0] > *lost.last().unwrap(), "a lost sequence number is never handed out again");
    // Replay: what was kept and what came after, across the gap; nothing that was lost.
    for _ in 0..2 {
        let (seen, _) = reopen(opts.clone()).unwrap();
        let seqs: Vec<u64> = seen.iter().map(|(seq, _, _)| *seq).collect();
        let mut expected = kept.clone();
        expected.extend(&after);
        assert_eq!(seqs, expected);
    }
}

#[test]
fn a_segment_cut_to_an_odd_size_is_repaired_without_a_panic() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    write_records(opts.clone(), 20);
    let file = data_segment_files(dir.path()).pop().unwrap();
    let records: usize = (1..=20).map(size).sum();
    let mut handle = std::fs::OpenOptions::new().read(true).write(true).open(&file).unwrap();
    handle.seek(SeekFrom::Start(30)).unwrap();
    handle.write_all(&[0xFF, 0x00, 0xFF]).unwrap();
    // Cut a few bytes past the last record: a size that is no multiple of a block.
    handle.set_len(records as u64 + 5).unwrap();
    drop(handle);
    let error = reopen(opts.clone()).unwrap_err();
    assert!(error.contains("offset 0"), "{error}");
    let (seen, recovery) = reopen(LogOptions { repair: true, ..opts.clone() }).unwrap();
    assert_eq!(seen.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>(), (2..=20).collect::<Vec<_>>());
    assert_eq!(recovery.dropped.len(), 1);
    let (again, _) = reopen(opts).unwrap();
    assert_eq!(again, seen);
}

/// Writes 10 records in one flush, then 300 in a second one (many blocks), and returns
/// the offset where the second flush's records start.
fn two_flushes(opts: LogOptions) -> u64 {
    run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        for i in 1..=10u64 {
            log.append(1, &payload(i)).unwrap();
        }
        log.durable(10).await.unwrap();
        // Staged with no await between them: one flush writes them all.
        for i in 11..=310u64 {
            log.append(1, &payload(i)).unwrap();
        }
        log.durable(310).await.unwrap();
        log.close().await.unwrap();
    });
    (1..=10u64).map(|i| size(i) as u64).sum()
}

fn overwrite(path: &Path, offset: u64, bytes: &[u8]) {
    let mut file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.write_all(bytes).unwrap();
}

#[test]
fn a_last_flush_whose_blocks_reached_the_disk_out_of_order_is_a_torn_tail() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    let second = two_flushes(opts.clone());
    let segment = dir.path().join(format!("{:020}.log", 1));
    // A power loss kept blocks 0, 1 and 3 of the last flush but not block 2.
    let hole = 2 * 4096;
    assert!(hole > second + 4096, "the hole is inside the second flush's records");
    overwrite(&segment, hole, &[0u8; 4096]);
    let (seen, recovery) = reopen(opts.clone()).expect("a torn last flush is not corruption");
    let (path, offset, _) = recovery.torn_tail.expect("reported as a torn tail");
    assert_eq!(path, segment);
    assert!(offset <= hole, "cut where the hole begins: {offset}");
    let seqs: Vec<u64> = seen.iter().map(|(seq, _, _)| *seq).collect();
    let kept = *seqs.last().unwrap();
    assert_eq!(seqs, (1..=kept).collect::<Vec<_>>(), "what is kept is every record up to the hole");
    assert!((10..310).contains(&kept), "the first flush and the second's records before the hole are kept: {kept}");
    // The log goes on after what it kept, and stays open on the next start.
    let again = opts.clone();
    run(move || async move {
        let (log, _) = Log::open(again, |_, _, _| {}).await.unwrap();
        assert_eq!(log.append(1, b"next").unwrap(), kept + 1);
        log.durable(kept + 1).await.unwrap();
        log.close().await.unwrap();
    });
    let (seen, recovery) = reopen(opts).unwrap();
    assert!(recovery.torn_tail.is_none());
    assert_eq!(seen.len() as u64, kept + 1);
}

#[test]
fn damage_in_a_completed_flush_with_a_later_flush_after_it_is_still_corruption() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    two_flushes(opts.clone());
    let segment = dir.path().join(format!("{:020}.log", 1));
    // A byte of record 5 (first flush, acknowledged) changes: records of both flushes follow.
    let offset: u64 = (1..5u64).map(|i| size(i) as u64).sum::<u64>() + 30;
    let mut byte = [0u8; 1];
    let mut file = std::fs::File::open(&segment).unwrap();
    file.seek(SeekFrom::Start(offset)).unwrap();
    file.read_exact(&mut byte).unwrap();
    overwrite(&segment, offset, &[byte[0] ^ 0xff]);
    let error = reopen(opts).expect_err("damage before a later flush's records is corruption");
    assert!(error.contains("damaged") && error.contains("--repair"), "{error}");
}

/// Writes records 1..=19 in one flush (synced, acknowledged) and 20..=40 in the next.
fn write_two_flushes(opts: LogOptions) {
    run(move || async move {
        let (log, _) = Log::open(opts, |_, _, _| {}).await.unwrap();
        for i in 1..=19 {
            log.append(1, &payload(i)).unwrap();
        }
        log.durable(19).await.unwrap();
        for i in 20..=40 {
            log.append(1, &payload(i)).unwrap();
        }
        log.close().await.unwrap();
    });
}

/// Damages the payload of record `seq` in `file`; returns the record's offset.
fn damage_record(file: &Path, seq: u64) -> u64 {
    let offset: usize = (1..seq).map(size).sum();
    let mut handle = std::fs::OpenOptions::new().read(true).write(true).open(file).unwrap();
    handle.seek(SeekFrom::Start(offset as u64 + 30)).unwrap();
    handle.write_all(&[0xFF, 0x00, 0xFF]).unwrap();
    offset as u64
}

#[test]
fn a_last_flush_torn_at_its_first_record_is_cut_but_damage_before_it_refuses_the_start() {
    // A power loss let the device write the later blocks of the last flush and not its
    // first: the records of that flush after the hole say where it began, so the hole is
    // the torn start of a flush never acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    write_two_flushes(opts.clone());
    let file = data_segment_files(dir.path()).pop().unwrap();
    let offset = damage_record(&file, 20);
    let (seen, recovery) = reopen(opts.clone()).unwrap();
    assert_eq!(seen.iter().map(|(seq, _, _)| *seq).collect::<Vec<_>>(), (1..=19).collect::<Vec<_>>());
    assert_eq!(recovery.torn_tail.map(|(_, at, _)| at), Some(offset));

    // The same damage one record earlier hits the completed (acknowledged) flush: refused.
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 1 << 20);
    write_two_flushes(opts.clone());
    let file = data_segment_files(dir.path()).pop().unwrap();
    let offset = damage_record(&file, 19);
    let error = reopen(opts).unwrap_err();
    assert!(error.contains(&format!("offset {offset}")), "{error}");
}
