//! The stream log on real files: records read back by sequence number from anywhere,
//! found by arrival time, after a reopen that reads only the log's tail, and trimmed by
//! retention a whole segment at a time.

use sluice_daemon::storage::stream::{StreamLog, StreamRecord};

mod common;
use common::{options, run};

fn data(i: u64) -> Vec<u8> {
    format!("record {i} ").repeat((i % 13 + 1) as usize).into_bytes()
}

/// Arrival clock of record `i`: ten records per millisecond, and a step back at 2500.
fn clock(i: u64) -> u64 {
    let ms = 1_000_000 + i / 10;
    if (2500..2600).contains(&i) {
        ms - 5_000
    } else {
        ms
    }
}

/// The first record arriving at or after `time`, by looking at every one.
fn expected_at(records: &[StreamRecord], time: u64, next: u64) -> u64 {
    records.iter().find(|record| record.timestamp_ms >= time).map_or(next, |record| record.seq)
}

async fn check(log: &StreamLog, records: &[StreamRecord]) {
    let next = records.last().unwrap().seq + 1;
    assert_eq!(log.next_seq(), next);
    assert_eq!(log.read(1, 100, usize::MAX).await.unwrap(), records[..100]);
    for from in (1..next).step_by(97) {
        let got = log.read(from, 7, usize::MAX).await.unwrap();
        let want: Vec<StreamRecord> = records.iter().filter(|r| r.seq >= from).take(7).cloned().collect();
        assert_eq!(got, want, "reading 7 from {from}");
    }
    // A byte limit still returns at least one record; past the end, nothing.
    assert_eq!(log.read(4000, 100, 1).await.unwrap(), records[3999..4000]);
    assert!(log.read(next, 100, usize::MAX).await.unwrap().is_empty());
    // A long read crosses every segment.
    let all = log.read(1, usize::MAX, usize::MAX).await.unwrap();
    assert_eq!(all.len(), records.len());
    assert!(all == records, "every record, in order");
    for time in [0, 999_999, 1_000_000, 1_000_001, 1_000_123, 1_000_250, 1_000_399, 1_000_499, 1_000_500, 1_000_501, 2_000_000] {
        assert_eq!(log.seq_at_timestamp(time).await.unwrap(), expected_at(records, time, next), "first record at or after {time}");
    }
}

#[test]
fn records_are_read_by_sequence_number_and_found_by_time_before_and_after_a_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 256 * 1024);
    let reopened = opts.clone();
    let records = run(move || async move {
        let (log, _) = StreamLog::open(opts).await.unwrap();
        assert_eq!(log.read(1, 10, usize::MAX).await.unwrap(), []);
        let mut records = Vec::new();
        for i in 1..=5000u64 {
            let (seq, timestamp_ms) = log.append(&data(i), clock(i)).unwrap();
            assert_eq!(seq, i);
            records.push(StreamRecord { seq, timestamp_ms, data: data(i).into() });
        }
        // Arrival times never go back, even when the clock does.
        assert!(records.windows(2).all(|pair| pair[0].timestamp_ms <= pair[1].timestamp_ms));
        assert_eq!(records[2550].timestamp_ms, records[2498].timestamp_ms);
        log.durable(5000).await.unwrap();
        check(&log, &records).await;
        log.close().await.unwrap();
        records
    });
    run(move || async move {
        let (log, recovery) = StreamLog::open(reopened).await.unwrap();
        // Only the tail was read at the start.
        assert!(recovery.records < 5000, "the reopen replayed {} records", recovery.records);
        assert_eq!(log.last_timestamp_ms(), records.last().unwrap().timestamp_ms);
        check(&log, &records).await;
        // Appends go on from the end, in time order.
        let (seq, timestamp_ms) = log.append(b"after", 5).unwrap();
        assert_eq!((seq, timestamp_ms), (5001, records.last().unwrap().timestamp_ms));
        log.durable(seq).await.unwrap();
        assert_eq!(log.read(5001, 10, usize::MAX).await.unwrap()[0].data.as_ref(), b"after");
        log.close().await.unwrap();
    });
}

#[test]
fn retention_removes_whole_segments_older_than_the_cutoff() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 128 * 1024);
    run(move || async move {
        let (log, _) = StreamLog::open(opts).await.unwrap();
        let mut records = Vec::new();
        for i in 1..=4000u64 {
            let (seq, timestamp_ms) = log.append(&data(i), 1_000 + i).unwrap();
            records.push(StreamRecord { seq, timestamp_ms, data: data(i).into() });
        }
        log.durable(4000).await.unwrap();
        assert_eq!(log.trim_before_timestamp(1_000).await.unwrap(), 0, "nothing is that old");
        let removed = log.trim_before_timestamp(3_000).await.unwrap();
        assert!(removed > 0);
        let first = log.first_seq();
        // Everything from the cutoff on is kept; what is gone was all older than it.
        assert!(records[first as usize - 1].timestamp_ms < 3_000 || first == 1);
        assert!(records[..first as usize - 1].iter().all(|r| r.timestamp_ms < 3_000));
        let kept = log.read(1, usize::MAX, usize::MAX).await.unwrap();
        assert_eq!(kept, records[first as usize - 1..], "a read from before the oldest starts at the oldest kept");
        assert_eq!(log.seq_at_timestamp(0).await.unwrap(), first);
        // The newest segment always stays.
        log.trim_before_timestamp(u64::MAX).await.unwrap();
        assert_eq!(log.read(4000, 1, usize::MAX).await.unwrap(), records[3999..]);
        log.close().await.unwrap();
    });
}

#[test]
fn records_longer_than_one_read_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 4 * 1024 * 1024);
    let reopened = opts.clone();
    let big: Vec<u8> = (0..900 * 1024).map(|i| (i % 251) as u8).collect();
    let expected = big.clone();
    run(move || async move {
        let (log, _) = StreamLog::open(opts).await.unwrap();
        for i in 0..6u64 {
            log.append(if i % 2 == 0 { &big } else { b"small" }, 10 + i).unwrap();
        }
        log.durable(6).await.unwrap();
        log.close().await.unwrap();
    });
    run(move || async move {
        let (log, _) = StreamLog::open(reopened).await.unwrap();
        let all = log.read(1, 100, usize::MAX).await.unwrap();
        assert_eq!(all.len(), 6);
        for record in &all {
            let want: &[u8] = if record.seq % 2 == 1 { &expected } else { b"small" };
            assert!(record.data == want, "record {} differs", record.seq);
        }
        assert_eq!(log.seq_at_timestamp(13).await.unwrap(), 4);
        log.close().await.unwrap();
    });
}

fn segment_files(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).unwrap().flatten().filter(|entry| entry.path().extension().is_some_and(|ext| ext == "log")).count()
}

#[test]
fn a_log_without_spares_ahead_makes_segments_only_as_it_is_written() {
    let dir = tempfile::tempdir().unwrap();
    let opts = sluice_daemon::storage::log::LogOptions { spare_ahead: false, ..options(dir.path(), 128 * 1024) };
    let (first, again) = (opts.clone(), opts.clone());
    run(move || async move {
        let (log, _) = StreamLog::open(first).await.unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        log.close().await.unwrap();
    });
    assert_eq!(segment_files(dir.path()), 0, "a log never written holds no segment");
    run(move || async move {
        let (log, _) = StreamLog::open(again).await.unwrap();
        for i in 1..=10u64 {
            log.append(&data(i), 1_000 + i).unwrap();
        }
        log.durable(10).await.unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(100)).await;
        log.close().await.unwrap();
    });
    assert_eq!(segment_files(dir.path()), 1, "a little writing makes one segment, no spare");
    run(move || async move {
        let (log, _) = StreamLog::open(opts).await.unwrap();
        assert_eq!(log.read(1, 100, usize::MAX).await.unwrap().len(), 10);
        // Past half of the active segment, the next one is prepared before it is needed.
        for i in 11..=1000u64 {
            log.append(&data(i), 1_000 + i).unwrap();
        }
        log.durable(1000).await.unwrap();
        glommio::timer::sleep(std::time::Duration::from_millis(200)).await;
        log.close().await.unwrap();
    });
    assert!(segment_files(dir.path()) >= 2);
}

#[test]
fn when_retention_next_has_work_is_known_without_opening_the_log() {
    use sluice_daemon::storage::stream::retention_due_on_disk;
    let dir = tempfile::tempdir().unwrap();
    let opts = options(dir.path(), 128 * 1024);
    let path = dir.path().to_path_buf();
    let (open_due, disk_due, second_first) = run(move || async move {
        assert_eq!(retention_due_on_disk(&Default::default(), &path.join("absent")).await.unwrap(), None);
        let (log, _) = StreamLog::open(opts).await.unwrap();
        log.append(&data(1), 1_001).unwrap();
        log.durable(1).await.unwrap();
        // One segment holding records (and maybe an empty spare): nothing can go.
        assert_eq!(log.retention_due().await.unwrap(), None);
        assert_eq!(retention_due_on_disk(&Default::default(), &path).await.unwrap(), None);
        for i in 2..=4000u64 {
            log.append(&data(i), 1_000 + i).unwrap();
        }
        log.durable(4000).await.unwrap();
        let segments = log.read(1, 10_000, usize::MAX).await.unwrap();
        let open_due = log.retention_due().await.unwrap();
        log.close().await.unwrap();
        let disk_due = retention_due_on_disk(&Default::default(), &path).await.unwrap();
        // The second segment's first record: the first whose sequence number the log's second
        // segment starts at, which the reopened log reports.
        let (reopened, _) = StreamLog::open(options(&path, 128 * 1024)).await.unwrap();
        let due = reopened.retention_due().await.unwrap();
        reopened.close().await.unwrap();
        drop(segments);
        (open_due, disk_due, due)
    });
    assert!(open_due.is_some_and(|due| due > 1_001 && due < 5_000), "{open_due:?}");
    assert_eq!(disk_due, open_due);
    assert_eq!(second_first, open_due);
}
