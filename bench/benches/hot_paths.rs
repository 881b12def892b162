//! Hot paths: frame encode and decode, and a queue partition's send → receive → delete.

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
    let rules =
        ReceiveRules { max_messages: 10, visibility_ms: 30_000, retention_ms: 345_600_000, max_receive_count: None, inflight_max: 120_000 };
    let mut group = c.benchmark_group("partition");
    group.throughput(Throughput::Elements(10));
    group.bench_function("send 10, receive 10, delete 10", |b| {
        b.iter_batched_ref(
            Partition::new,
            |partition| {
                for i in 0..10u128 {
                    let payload = Arc::new(Payload {
                        message_id: i,
                        body: body.clone(),
                        attributes: None,
                        md5_of_body: [0; 16],
                        md5_of_attributes: None,
                        trace_header: None,
                        message_group_id: None,
                        sent_ms: 1,
                        dead_letter_source_arn: None,
                    });
                    partition.send(payload, 0, 1);
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

criterion_group!(benches, frames, partition);
criterion_main!(benches);
