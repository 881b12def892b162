//! Hot paths: frame encode and decode, a queue partition's send → receive → delete, the
//! storage log's append (staged, written and waited for in groups, as the daemon does), and
//! what security adds: a receipt handle sealed and opened, a SigV4 signature verified, an
//! access decision.

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

fn security(c: &mut Criterion) {
    use sluice_daemon::gateway::sigv4;
    let mut group = c.benchmark_group("security");
    let key = sluice_daemon::seal::SealKey::from_seed(1);
    let receipt = sluice_daemon::queue::receipt::Receipt { shard: 1, queue_id: 7, seq: 123_456, receive_count: 1, tag: 42 };
    group.bench_function("receipt handle seal + open", |b| {
        b.iter(|| sluice_daemon::queue::receipt::Receipt::decode(&receipt.encode(&key), &key).is_some())
    });
    // A request botocore signed (the verifier's unit vector), verified the way the gateway does.
    let credentials = sluice_daemon::credentials::Credentials::parse(
        r#"{"principals":[{"access_key_id":"AKIDEXAMPLE","secret_access_key":"wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"}]}"#,
        "000000000000",
    )
    .unwrap();
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("host", "127.0.0.1:4566"),
        ("x-amz-target", "AmazonSQS.CreateQueue"),
        ("content-type", "application/x-amz-json-1.0"),
        ("x-amz-date", "20261206T120000Z"),
        ("authorization", "AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/20261206/us-east-1/sqs/aws4_request, SignedHeaders=content-type;host;x-amz-date;x-amz-target, Signature=366a66c4da3cbefcf56911de06aaa4b0335a376085d03143820d4530e262cbf6"),
    ] {
        headers.insert(http::HeaderName::from_static(name), http::HeaderValue::from_static(value));
    }
    let body = br#"{"QueueName":"orders"}"#;
    group.bench_function("SigV4 verify (JSON request, 4 signed headers)", |b| {
        b.iter(|| {
            let request = sigv4::Signed { method: "POST", path: "/", query: "", headers: &headers, body };
            sigv4::verify(&credentials, "us-east-1", &request, 1_796_558_400).is_ok()
        })
    });
    // A request decided as the daemon decides it with --credentials: the principal's identity
    // policy (the bench's: allow sqs:*, sns:*, kinesis:*, deny DeleteQueue) and the queue's policy.
    use sluice_daemon::policy::{allowed, Action, Kind, Policy, Request, Who};
    let identity = [Policy::parse(
        r#"{"Statement": [{"Effect": "Allow", "Action": ["sqs:*", "sns:*", "kinesis:*"], "Resource": "*"},
                          {"Effect": "Deny", "Action": "sqs:DeleteQueue", "Resource": "*"}]}"#,
        Kind::Identity,
    )
    .unwrap()];
    let queue_policy = Policy::parse(
        r#"{"Statement": [{"Effect": "Allow", "Principal": {"Service": "sns.amazonaws.com"}, "Action": "sqs:SendMessage",
                           "Resource": "arn:aws:sqs:us-east-1:000000000000:orders",
                           "Condition": {"ArnEquals": {"aws:SourceArn": "arn:aws:sns:us-east-1:000000000000:events"}}}]}"#,
        Kind::Resource,
    )
    .unwrap();
    let request = Request {
        who: Who::Principal { arn: "arn:aws:iam::000000000000:user/bench", account: "000000000000" },
        action: Action::named("sqs:SendMessage").unwrap(),
        resource: Some("arn:aws:sqs:us-east-1:000000000000:orders"),
        source_arn: None,
        source_account: None,
        source_ip: Some(std::net::Ipv4Addr::LOCALHOST.into()),
        secure: false,
    };
    group.bench_function("access decision (identity policy of 2 statements, queue policy of 1)", |b| {
        b.iter(|| allowed(Some(&identity), Some(&queue_policy), "000000000000", &request))
    });
    group.finish();
}

/// Encryption at rest: sealing and opening a 1 KiB record under a shard's data key (what each
/// encrypted message or stream record costs on write and on read), and a queue message's
/// journal event encoded clear against sealed.
fn encryption(c: &mut Criterion) {
    use sluice_daemon::kms::at_rest::Keyring;
    use sluice_daemon::kms::keys::{KeyChange, KeyNaming, Keys};
    let mut group = c.benchmark_group("encryption");
    let mut keys = Keys::new(KeyNaming::default());
    let key = keys.apply(KeyChange::Create { description: String::new(), tags: Default::default() }, 0, None).unwrap().unwrap();
    let ring = Keyring::new(std::sync::Arc::new(keys));
    let write = ring.write_key(&key, u64::MAX, 0);
    let data = vec![7u8; 1024];
    let mut out = Vec::with_capacity(2048);
    group.throughput(Throughput::Bytes(1024));
    group.bench_function("seal 1 KiB", |b| {
        b.iter(|| {
            out.clear();
            Keyring::seal(&write, &mut out, |out| out.extend_from_slice(&data));
            out.len()
        })
    });
    let mut sealed = Vec::new();
    Keyring::seal(&write, &mut sealed, |out| out.extend_from_slice(&data));
    group.bench_function("open 1 KiB", |b| b.iter(|| ring.open(&sealed).unwrap().len()));
    group.bench_function("copy 1 KiB (for scale)", |b| {
        b.iter(|| {
            out.clear();
            out.extend_from_slice(&data);
            out.len()
        })
    });
    group.finish();
}

criterion_group!(benches, frames, partition, log_append, security, encryption);
criterion_main!(benches);
