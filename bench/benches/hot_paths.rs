//! Hot paths: frame encode and decode, a queue partition's send → receive → delete, and
//! the storage log's append (staged, written and waited for in groups, as the daemon does).

use std::sync::Arc;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use sluice_daemon::queue::partition::{Partition, Payload, ReceiveRules};
use sluice_protocol::{decode_request, Encoder};

fn frames(c: &mut Criterion) {
    let request = sluice_bench::send_batch(10, 1024);
    let mut encoder = Encoder::new();
    let frame = Bytes::copy_from_slice(encoder.request(&request));
    let mut group = c.benchmark_group("frame");
    group.throughput(Throughput::Elements(10));
    group.bench_function("encode SendMessageBatch 10x1KiB", |b| b.iter(|| encoder.request(&request).len()));
    group.bench_function("decode+verify SendMessageBatch 10x1KiB", |b| b.iter(|| decode_request(&frame).unwrap()));
    group.finish();
}

fn partition(c: &mut Criterion) {
    let body = Bytes::from("x".repeat(100));
    let rules = ReceiveRules {
        max_messages: 10,
        visibility_ms: 30_000,
        retention_ms: 345_600_000,
        max_receive_count: None,
        inflight_max: 120_000,
        delay_ms: 0,
    };
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Elements(10));
    group.bench_function("send 10, receive 10, delete 10", |b| {
        b.iter_batched_ref(
            Partition::new,
            |partition| {
                for i in 0..10u128 {
                    let payload = Arc::new(Payload {
                        body: body.clone(),
                        attributes: None,
                        md5_of_body: [0; 16],
                        md5_of_attributes: None,
                        trace_header: None,
                        message_group_id: None,
                        sent_ms: 1,
                        dead_letter_source_arn: None,
                        fifo: None,
                    });
                    partition.send(i, payload, 0, 1);
                }
                let mut delivered = Vec::with_capacity(10);
                partition.receive(2, &rules, &mut delivered, &mut Vec::new()).unwrap();
                for delivery in &delivered {
                    partition.delete(delivery.seq);
                }
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

fn log_append(c: &mut Criterion) {
    use sluice_daemon::storage::log::{FsyncMode, Log, LogOptions};
    let dir = tempfile::tempdir().expect("a scratch directory");
    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound).make().expect("a glommio executor");
    let options =
        LogOptions { dir: dir.path().join("log"), segment_bytes: 64 << 20, fsync: FsyncMode::Never, repair: false, spare_ahead: true };
    let log = executor.run(async move { Log::open(options, |_, _, _| {}).await.expect("opening the log").0 });
    let mut group = c.benchmark_group("log");
    for size in [100usize, 1024] {
        let payload = vec![b'x'; size];
        group.throughput(Throughput::Elements(1));
        // Appends are staged and written 64 at a time, each group waited for (fsync never, so
        // this is the CPU and write cost of the log, not the disk's flush latency).
        group.bench_function(format!("append {size} B, written in groups of 64"), |b| {
            b.iter_custom(|iters| {
                let (log, payload) = (log.clone(), &payload);
                executor.run(async move {
                    let started = std::time::Instant::now();
                    let mut last = None;
                    for i in 0..iters {
                        let seq = log.append(1, payload).expect("append");
                        last = Some(seq);
                        if i % 64 == 63 {
                            log.durable(seq).await.expect("durable");
                        }
                    }
                    if let Some(seq) = last {
                        log.durable(seq).await.expect("durable");
                    }
                    started.elapsed()
                })
            })
        });
    }
    group.finish();
    executor.run(async move { log.close().await.expect("closing the log") });
}

criterion_group!(benches, frames, partition, log_append);
criterion_main!(benches);
