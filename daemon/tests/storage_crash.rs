//! Kill -9 at random moments loses no acknowledged record.
//!
//! `sluice-log-writer` appends and prints each record's sequence number once it
//! is durable; it is killed with SIGKILL after a random time, restarted on the
//! same directory, and so on. After every kill the log is opened here: every
//! printed record must be present with its exact payload, and the log must hold
//! an unbroken run of sequence numbers.
//!
//! Rounds: `SLUICE_CRASH_ROUNDS` (default 8, which CI runs). For a soak:
//! `SLUICE_CRASH_ROUNDS=500 cargo test --release -p sluice-daemon --test storage_crash`.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

use sluice_daemon::storage::log::{FsyncMode, Log, LogOptions};

fn payload(seq: u64) -> Vec<u8> {
    format!("record {seq};").repeat((seq % 13 + 1) as usize * 7).into_bytes()
}

/// Opens the log (repair off: damage other than a torn tail fails the test) and returns what it replays.
fn replay(dir: std::path::PathBuf) -> Vec<(u64, Vec<u8>)> {
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let mut records = Vec::new();
            let options = LogOptions { dir, segment_bytes: 256 * 1024, fsync: FsyncMode::Always, repair: false, spare_ahead: true };
            let (log, _) =
                Log::open(options, |seq, _, bytes| records.push((seq, bytes.to_vec()))).await.expect("the log opens after a kill");
            log.close().await.expect("close");
            records
        })
        .unwrap()
        .join()
        .unwrap()
}

#[test]
fn acknowledged_records_survive_sigkill() {
    let rounds: u32 = std::env::var("SLUICE_CRASH_ROUNDS").ok().and_then(|n| n.parse().ok()).unwrap_or(8);
    let dir = tempfile::tempdir().unwrap();
    let mut acknowledged_max = 0u64;
    let mut total_acknowledged = 0u64;
    for round in 0..rounds {
        let mut child = Command::new(env!("CARGO_BIN_EXE_sluice-log-writer"))
            .arg(dir.path())
            .arg("16")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Ok(seq) = line.trim().parse::<u64>() {
                    let _ = tx.send(seq);
                }
            }
        });
        // Wait for the first acknowledgement (the writer is up), then a random while more.
        let first = rx.recv_timeout(Duration::from_secs(30)).expect("the writer acknowledges a record");
        std::thread::sleep(Duration::from_millis(20 + fastrand::u64(..200)));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        reader.join().unwrap();
        let acknowledged: Vec<u64> = std::iter::once(first).chain(rx.try_iter()).collect();
        total_acknowledged += acknowledged.len() as u64;
        acknowledged_max = acknowledged_max.max(*acknowledged.iter().max().unwrap());

        let records = replay(dir.path().to_path_buf());
        let last = records.last().map_or(0, |(seq, _)| *seq);
        assert!(last >= acknowledged_max, "round {round}: record {acknowledged_max} was acknowledged but the log ends at {last}");
        for (index, (seq, bytes)) in records.iter().enumerate() {
            assert_eq!(*seq, index as u64 + 1, "round {round}: sequence numbers must run unbroken from 1");
            assert_eq!(bytes, &payload(*seq), "round {round}: record {seq} came back with other bytes");
        }
    }
    assert!(total_acknowledged > 0);
}
