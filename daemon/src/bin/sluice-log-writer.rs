//! `sluice-log-writer DIR [APPENDERS]`: appends records to a storage log in DIR
//! forever, with `--fsync always` semantics, printing each record's sequence
//! number once it is durable. The crash test (`daemon/tests/storage_crash.rs`)
//! kills it with SIGKILL at random moments and checks that every printed record
//! survived. Record payloads are derived from their sequence numbers, so the
//! checker can verify content, not just presence.

use std::io::Write;
use std::path::PathBuf;

use sluice_daemon::storage::log::{FsyncMode, Log, LogOptions};

/// The payload of record `seq`: its number, repeated to a size that varies with it.
pub fn payload(seq: u64) -> Vec<u8> {
    format!("record {seq};").repeat((seq % 13 + 1) as usize * 7).into_bytes()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        eprintln!("usage: sluice-log-writer DIR [APPENDERS]");
        std::process::exit(2);
    };
    let appenders: usize = args.next().and_then(|n| n.parse().ok()).unwrap_or(16);
    // Small segments so that crashes also land on segment roll-overs.
    let options = LogOptions { dir, segment_bytes: 256 * 1024, fsync: FsyncMode::Always, repair: false, spare_ahead: true };
    glommio::LocalExecutorBuilder::default()
        .spawn(move || async move {
            let (log, _) = Log::open(options, |_, _, _| {}).await.expect("opening the log");
            let tasks: Vec<_> = (0..appenders)
                .map(|_| {
                    let log = log.clone();
                    glommio::spawn_local(async move {
                        loop {
                            // append does no I/O and cannot yield: next_seq is the seq it assigns.
                            let seq = log.next_seq();
                            let assigned = log.append(1, &payload(seq)).expect("append");
                            assert_eq!(assigned, seq);
                            log.durable(seq).await.expect("durable");
                            let mut out = std::io::stdout().lock();
                            let _ = writeln!(out, "{seq}");
                        }
                    })
                })
                .collect();
            for task in tasks {
                task.await;
            }
        })
        .expect("executor")
        .join()
        .expect("writer");
}
