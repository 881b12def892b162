//! `sluice-load`: a thread-per-core load generator for Sluice and the brokers people run
//! today (Redis Streams, NATS JetStream, RabbitMQ), with HDR latency histograms.
//!
//! Each core is a thread pinned with core_affinity, running one executor: glommio for
//! Sluice, a current-thread tokio runtime for the peers (their own clients need tokio).
//! The workload is the same for every broker (see `run.rs`): closed loop with `--inflight`
//! requests per producer to find the maximum rate, or open loop at `--rate`, where every
//! batch has an intended send time and latency counts from it (no coordinated omission).

mod nats;
mod rabbitmq;
mod record;
mod redis;
mod run;
mod sluice;
mod sluice_firehose;
mod sluice_http;
mod sluice_stream;

use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use clap::{Parser, ValueEnum};
use hdrhistogram::Histogram;

use record::{Live, Op, Recorder, Tick};
use run::{Broker, Plan};

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Target {
    /// Sluice over its binary protocol.
    Sluice,
    /// Sluice through its AWS-compatible HTTP gateway: SQS's AWS JSON 1.0 protocol over
    /// HTTP/1.1 keep-alive connections, one request at a time each, as AWS SDKs send it
    /// (queue workload only).
    SluiceHttp,
    /// Redis Streams: XADD, XREADGROUP, XACK.
    Redis,
    /// NATS JetStream: file storage, publish acks, a pull consumer, acks.
    Nats,
    /// RabbitMQ: durable queue, publisher confirms, manual acks with prefetch.
    Rabbitmq,
}

impl Target {
    fn default_endpoint(self) -> &'static str {
        match self {
            Target::Sluice => "127.0.0.1:9800",
            Target::SluiceHttp => "127.0.0.1:4566",
            Target::Redis => "127.0.0.1:6379",
            Target::Nats => "127.0.0.1:4222",
            Target::Rabbitmq => "127.0.0.1:5672",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
enum Workload {
    /// Producers send batches, consumers receive (long polling) and delete/acknowledge in batches.
    Queue,
    /// Publish once, deliver to --subscribers (Sluice: a topic's raw-delivery queues; Redis: consumer groups; NATS: durable consumers; RabbitMQ: a fanout exchange's queues); consumers drain them all.
    Fanout,
    /// PutRecords with random partition keys over --shards shards; each consumer holds a push
    /// subscription to one shard (consumer i reads shard i mod --shards). Sluice, Redis (a Redis
    /// stream per shard, XREAD), NATS (a JetStream subject per shard, ordered consumers) and
    /// RabbitMQ (a stream queue per shard).
    Stream,
    /// Sluice only: PutRecordBatch into a Firehose delivery stream (GZIP) whose bucket is a
    /// local directory; consumers read the objects from `--firehose-objects` (end-to-end:
    /// Firehose's data freshness).
    Firehose,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "sluice-load",
    version,
    about = "Thread-per-core load generator for Sluice and its peers (Redis Streams, NATS JetStream, RabbitMQ), with HDR latency histograms.",
    long_about = "Thread-per-core load generator for Sluice and its peers (Redis Streams, NATS JetStream, RabbitMQ), with HDR latency \
histograms.\n\nWithout --rate it runs a closed loop: each producer keeps --inflight send requests outstanding, which finds the \
maximum rate. With --rate it runs an open loop: batches are due at fixed intended times and latency counts from the intended \
time, so a broker that stalls cannot hide the stall. A live line each second shows the rate and p99; the final report gives \
msgs/s, MB/s and p50/p99/p99.9/p99.99/max per operation and end to end (from a timestamp in each body)."
)]
struct Args {
    /// Broker to drive.
    #[arg(long, value_enum, default_value_t = Target::Sluice)]
    target: Target,
    /// Broker address [default: the target's usual port on 127.0.0.1: sluice 9800, sluice-http 4566, redis 6379, nats 4222, rabbitmq 5672].
    #[arg(long, env = "SLUICE_ENDPOINT")]
    endpoint: Option<String>,
    /// Access key id of a principal in the broker's `--credentials`: gateway requests are
    /// signed with it (SigV4, `--target sluice-http`), binary connections prove they hold it
    /// after `Hello` (`--target sluice`). Default: none (unsigned, unauthenticated).
    #[arg(long, env = "SLUICE_ACCESS_KEY_ID", requires = "secret_access_key")]
    access_key_id: Option<String>,
    /// The secret of `--access-key-id`.
    #[arg(long, env = "SLUICE_SECRET_ACCESS_KEY", hide_env_values = true, requires = "access_key_id")]
    secret_access_key: Option<String>,
    /// What to run.
    #[arg(long, value_enum, default_value_t = Workload::Queue)]
    workload: Workload,
    /// Sluice queue to use; created if missing (use a fresh name per run). Peers use a fresh
    /// stream, JetStream stream or RabbitMQ queue named `sluice-load`, emptied at the start.
    #[arg(long, default_value = "sluice-load")]
    queue: String,
    /// Body size of each message, in bytes (at least 17: the send timestamp leads each body).
    #[arg(long, default_value_t = 100)]
    message_size: usize,
    /// Messages per send request, 1–10 (the SQS batch limit); receives ask for this many too.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Connections per core; producers and consumers are spread over them (Redis consumers
    /// get a connection each, since a blocked XREADGROUP holds its connection; for
    /// sluice-http each is a pool of up to 64 HTTP/1.1 connections, one per request outstanding).
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Producers per core.
    #[arg(long, default_value_t = 8)]
    producers: usize,
    /// Consumers per core, each receiving then acknowledging a batch in a loop. Receive and
    /// delete are two round trips per batch, so twice the producers keeps up.
    #[arg(long, default_value_t = 16)]
    consumers: usize,
    /// Executors (threads, each pinned to a core) the load generator uses.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Open loop: messages per second across all cores, sent in batches of --batch at fixed
    /// intended times; latency counts from the intended time.
    #[arg(long, conflicts_with = "inflight")]
    rate: Option<u64>,
    /// Closed loop: send requests each producer keeps outstanding [default: 1].
    #[arg(long)]
    inflight: Option<usize>,
    /// Seconds measured, after the warm-up (the run stops by itself).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Seconds run first and left out of the figures.
    #[arg(long, default_value_t = 1)]
    warmup: u64,
    /// Fan-out: queues subscribed to the topic.
    #[arg(long, default_value_t = 10)]
    subscribers: usize,
    /// Stream: shards of the stream.
    #[arg(long, default_value_t = 4)]
    shards: usize,
    /// Stream (sluice): seal the stream's records at rest under this KMS key
    /// (StartStreamEncryption; the broker needs --root-key-file), e.g. `alias/aws/kinesis`.
    /// Default: no encryption.
    #[arg(long, value_name = "KEY")]
    stream_encryption: Option<String>,
    /// Firehose: the directory the broker writes the delivery stream's bucket to
    /// (`<--firehose-local-dir>/<--queue>`, by default `<data-dir>/firehose-objects/sluice-load`);
    /// consumers read the objects there. Without it nothing is read (ingest alone).
    #[arg(long, value_name = "DIR")]
    firehose_objects: Option<std::path::PathBuf>,
    /// Firehose: the delivery stream's buffering size (MiB, 1–128).
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=128))]
    firehose_size_mb: u32,
    /// Firehose: the delivery stream's buffering interval (seconds, 0–900).
    #[arg(long, default_value_t = 0, value_parser = clap::value_parser!(u32).range(0..=900))]
    firehose_interval: u32,
    /// FIFO: message groups (0: a standard queue). For sluice the queue is `QUEUE.fifo`
    /// (deduplication and throughput per message group; with --workload fanout a FIFO topic
    /// `QUEUE.fifo` and FIFO queues `QUEUE-i.fifo`) and each message of a batch goes to the
    /// producer's next group, with a deduplication id of its own; consumers check each group's
    /// order (a message out of order or received twice fails the run); for nats each publish
    /// carries a Nats-Msg-Id (JetStream's deduplication window, set to five minutes as SQS's).
    /// Other targets have no equivalent and refuse it.
    #[arg(long, default_value_t = 0)]
    fifo_groups: usize,
    /// Tenants of a fair queue (0: none; else at least 2): sluice's queue workload on a
    /// standard queue whose messages carry their tenant as MessageGroupId. One noisy tenant
    /// sends --noisy-percent of the messages, the others share the rest in turn; the quiet
    /// tenants' end-to-end latency is reported apart (end_to_end_quiet).
    #[arg(long, default_value_t = 0)]
    tenants: usize,
    /// Tenants: percent of the messages the noisy tenant sends (1-99).
    #[arg(long, default_value_t = 90)]
    noisy_percent: u64,
    /// Tenants: send without MessageGroupId (a queue that is not fair), for comparison.
    #[arg(long)]
    tenants_ungrouped: bool,
    /// Microseconds each consumer spends on a received batch before acknowledging it, as a
    /// consumer doing work would (0: acknowledges at once).
    #[arg(long, default_value_t = 0)]
    work_us: u64,
    /// Stop producing after this many messages in all (0: no limit). The run ends when the
    /// producers and consumers are done (a consumer is, once every send has its answer and
    /// nothing more arrives: a long poll comes back empty, or a push subscription is quiet
    /// for 2 s), or after --duration. With --consumers 0 this fills a queue with an exact
    /// backlog.
    #[arg(long, default_value_t = 0)]
    send_limit: u64,
    /// Leave the threads unpinned (the kernel places them) instead of one per CPU, taken
    /// from the last CPU down (sluiced pins its shards from CPU 0 up).
    #[arg(long)]
    no_pin: bool,
    /// Directory for `summary.json`, one `.hgrm` percentile file per histogram and
    /// `seconds.csv` (one row per second).
    #[arg(long)]
    out: Option<PathBuf>,
}

/// A current-thread tokio runtime, for the peers' clients.
pub fn peer_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_io().enable_time().build().expect("a tokio runtime")
}

fn validate(args: &Args) -> Result<(), String> {
    if args.target == Target::SluiceHttp && args.workload != Workload::Queue {
        return Err("--target sluice-http runs the queue workload only (the gateway's SQS API)".into());
    }
    if args.cores == 0 || args.connections == 0 {
        return Err("--cores and --connections must be at least 1".into());
    }
    if args.fifo_groups > 0
        && (!matches!(args.workload, Workload::Queue | Workload::Fanout) || !matches!(args.target, Target::Sluice | Target::Nats))
    {
        return Err("--fifo-groups runs the queue or fanout workload on sluice (a FIFO queue; a FIFO topic and FIFO queues) or nats (deduplicated publishes) only".into());
    }
    if args.tenants > 0 {
        if args.tenants < 2 || args.workload != Workload::Queue || args.target != Target::Sluice || args.fifo_groups > 0 {
            return Err("--tenants (at least 2: one noisy, the others quiet) runs sluice's queue workload on a standard queue".into());
        }
        if !(1..=99).contains(&args.noisy_percent) {
            return Err("--noisy-percent must be from 1 to 99".into());
        }
        if args.message_size <= run::STAMP_BYTES {
            return Err(format!("--tenants needs --message-size above {}: a quiet tenant's mark follows the stamp", run::STAMP_BYTES));
        }
    }
    if args.duration == 0 {
        return Err("--duration must be at least 1 second".into());
    }
    if args.rate == Some(0) || args.inflight == Some(0) {
        return Err("--rate and --inflight must be at least 1".into());
    }
    let batch_max = match args.workload {
        Workload::Stream | Workload::Firehose => sluice_protocol::limits::PUT_RECORDS_MAX,
        _ => 10,
    };
    if args.workload == Workload::Firehose && args.target != Target::Sluice {
        return Err("--workload firehose runs against --target sluice only".into());
    }
    if args.workload == Workload::Stream {
        if args.shards == 0 || args.shards > 1000 {
            return Err("--shards must be from 1 to 1000".into());
        }
        let consumers = args.cores * args.consumers;
        if !consumers.is_multiple_of(args.shards) {
            return Err(format!(
                "--cores x --consumers ({consumers}) must be a multiple of --shards ({}): every shard is read by as many consumers",
                args.shards
            ));
        }
    }
    if !(1..=batch_max).contains(&args.batch) {
        return Err(format!("--batch must be from 1 to {batch_max}"));
    }
    if args.workload == Workload::Fanout {
        if args.subscribers == 0 {
            return Err("--subscribers must be at least 1".into());
        }
        if args.consumers > 0 && args.cores * args.consumers < args.subscribers {
            return Err(format!(
                "fanout needs a consumer for every subscribed queue (or none, to fill them): --cores x --consumers ({}) is less than --subscribers ({})",
                args.cores * args.consumers,
                args.subscribers
            ));
        }
    }
    Ok(())
}

/// Prepares the broker; returns what an acknowledgement guarantees there.
fn setup(args: &Args, endpoint: &str) -> Result<String, String> {
    match args.target {
        Target::Sluice if args.workload == Workload::Firehose => sluice_firehose::setup(
            endpoint,
            &args.queue,
            args.firehose_size_mb,
            args.firehose_interval,
            args.firehose_objects.as_deref(),
            access_key(args).as_ref(),
        )
        .map(|()| sluice::GUARANTEE.to_owned()),
        Target::Sluice if args.workload == Workload::Stream => sluice_stream::setup(
            endpoint,
            &args.queue,
            args.shards,
            args.cores * args.consumers,
            args.stream_encryption.as_deref(),
            access_key(args).as_ref(),
        )
        .map(|()| sluice::GUARANTEE.to_owned()),
        Target::Sluice => {
            sluice::setup(endpoint, &sluice_queue(args), fanout_subscribers(args), args.fifo_groups, access_key(args).as_ref())
                .map(|()| sluice::GUARANTEE.to_owned())
        }
        Target::SluiceHttp => {
            sluice_http::setup(endpoint, &args.queue, signing_key(args).as_ref()).map(|()| sluice_http::GUARANTEE.to_owned())
        }
        Target::Redis if args.workload == Workload::Stream => redis::setup_shards(endpoint, args.shards),
        Target::Redis => redis::setup(endpoint, fanout_subscribers(args)),
        Target::Nats if args.workload == Workload::Stream => nats::setup_shards(endpoint).map(|()| nats::GUARANTEE.to_owned()),
        Target::Nats => nats::setup(endpoint, fanout_subscribers(args), args.fifo_groups > 0).map(|()| nats::GUARANTEE.to_owned()),
        Target::Rabbitmq if args.workload == Workload::Stream => {
            rabbitmq::setup_shards(endpoint, args.shards).map(|()| rabbitmq::STREAM_GUARANTEE.to_owned())
        }
        Target::Rabbitmq => rabbitmq::setup(endpoint, fanout_subscribers(args)).map(|()| rabbitmq::GUARANTEE.to_owned()),
    }
}

/// How many times each message is received: once per subscribed queue (fanout), once per
/// consumer of its shard (stream), else once.
/// The key gateway requests are signed with, if one was given.
fn signing_key(args: &Args) -> Option<(String, String)> {
    args.access_key_id.clone().zip(args.secret_access_key.clone())
}

/// The same key as the binary client proves it (`Client::connect_as`).
fn access_key(args: &Args) -> Option<sluice_client::AccessKey> {
    signing_key(args).map(|(access_key_id, secret_access_key)| sluice_client::AccessKey { access_key_id, secret_access_key })
}

fn deliveries_per_message(args: &Args) -> usize {
    match args.workload {
        Workload::Stream => (args.cores * args.consumers / args.shards.max(1)).max(1),
        _ => fanout_subscribers(args).max(1),
    }
}

/// Queues subscribed to the topic in the fanout workload; 0 otherwise.
/// The Sluice queue to use: `--queue`, with `.fifo` for a FIFO run.
fn sluice_queue(args: &Args) -> String {
    if args.fifo_groups > 0 {
        format!("{}.fifo", args.queue)
    } else {
        args.queue.clone()
    }
}

fn fanout_subscribers(args: &Args) -> usize {
    if args.workload == Workload::Fanout {
        args.subscribers
    } else {
        0
    }
}

fn run_on_tokio<B: Broker>(broker: B, plan: Plan, core: usize, started: Instant, ticks: mpsc::Sender<Tick>) -> Result<Recorder, String> {
    let runtime = peer_runtime();
    tokio::task::LocalSet::new().block_on(&runtime, run::run_core(broker, plan, core, started, ticks))
}

/// One thread per core, each pinned and running its share; joins them all.
fn run(args: &Args, endpoint: &str, order: &Option<Arc<sluice::GroupOrder>>) -> Result<(Recorder, Instant, String), String> {
    let plan = Plan {
        cores: args.cores,
        message_size: args.message_size.max(run::STAMP_BYTES),
        batch: args.batch,
        connections: args.connections,
        producers: args.producers,
        consumers: args.consumers,
        inflight: args.inflight.unwrap_or(1),
        rate: args.rate,
        warmup: Duration::from_secs(args.warmup),
        duration: Duration::from_secs(args.duration),
        work: Duration::from_micros(args.work_us),
        send_limit: Arc::new(run::SendLimit::new(args.send_limit)),
    };
    let guarantee = setup(args, endpoint)?;
    let cpus = core_affinity::get_core_ids().unwrap_or_default();
    let (tick_tx, tick_rx) = mpsc::channel();
    let started = Instant::now();
    let mut threads = Vec::new();
    for core in 0..args.cores {
        let (plan, ticks, endpoint, target, queue) = (plan.clone(), tick_tx.clone(), endpoint.to_owned(), args.target, sluice_queue(args));
        let (fifo_groups, order) = (args.fifo_groups, order.clone());
        let tenants = (args.tenants > 0).then_some(sluice::Tenants {
            count: args.tenants,
            noisy_percent: args.noisy_percent,
            grouped: !args.tenants_ungrouped,
        });
        let subscribers = fanout_subscribers(args);
        let key = signing_key(args);
        let access_key = access_key(args);
        let (stream, shards) = (args.workload == Workload::Stream, args.shards);
        let firehose = (args.workload == Workload::Firehose).then(|| sluice_firehose::SluiceFirehose {
            endpoint: endpoint.clone(),
            key: access_key.clone(),
            stream: args.queue.clone(),
            objects: args.firehose_objects.clone(),
            consumers: args.cores * args.consumers,
            message_size: args.message_size,
        });
        // From the last CPU down, since sluiced pins its shards from CPU 0 up.
        let pin = (!args.no_pin && !cpus.is_empty()).then(|| cpus[cpus.len() - 1 - core % cpus.len()]);
        let thread = std::thread::Builder::new().name(format!("sluice-load-{core}")).spawn(move || {
            if let Some(cpu) = pin {
                core_affinity::set_for_current(cpu);
            }
            match target {
                Target::Sluice => {
                    let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
                        .name("sluice-load")
                        .make()
                        .map_err(|e| format!("starting a glommio executor: {e}"))?;
                    if let Some(firehose) = firehose {
                        return executor.run(run::run_core(firehose, plan, core, started, ticks));
                    }
                    if stream {
                        return executor.run(run::run_core(
                            sluice_stream::SluiceStream { endpoint, key: access_key, stream: queue, shards },
                            plan,
                            core,
                            started,
                            ticks,
                        ));
                    }
                    executor.run(run::run_core(
                        sluice::Sluice { endpoint, key: access_key, queue, subscribers, fifo_groups, order, tenants },
                        plan,
                        core,
                        started,
                        ticks,
                    ))
                }
                Target::SluiceHttp => {
                    run_on_tokio(sluice_http::SluiceHttp { endpoint, queue, key: key.clone() }, plan, core, started, ticks)
                }
                Target::Redis if stream => {
                    run_on_tokio(redis::RedisShards { url: redis::url(&endpoint), shards }, plan, core, started, ticks)
                }
                Target::Redis => run_on_tokio(redis::Redis { url: redis::url(&endpoint), subscribers }, plan, core, started, ticks),
                Target::Nats if stream => run_on_tokio(nats::NatsShards { endpoint, shards }, plan, core, started, ticks),
                Target::Nats => {
                    run_on_tokio(nats::Nats { endpoint, subscribers, deduplicate: fifo_groups > 0 }, plan, core, started, ticks)
                }
                Target::Rabbitmq if stream => {
                    run_on_tokio(rabbitmq::RabbitShards { uri: rabbitmq::uri(&endpoint), shards }, plan, core, started, ticks)
                }
                Target::Rabbitmq => {
                    run_on_tokio(rabbitmq::Rabbitmq { uri: rabbitmq::uri(&endpoint), subscribers }, plan, core, started, ticks)
                }
            }
        });
        threads.push(thread.map_err(|e| format!("starting a thread: {e}"))?);
    }
    drop(tick_tx);
    let mut live = Live::new(args.cores, plan.message_size);
    live.follow(tick_rx);
    let mut total = Recorder::default();
    for thread in threads {
        total.merge(&thread.join().map_err(|_| "a load thread panicked".to_owned())??);
    }
    write_csv(args, &live.csv)?;
    Ok((total, started + plan.warmup, guarantee))
}

fn write_csv(args: &Args, csv: &str) -> Result<(), String> {
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        std::fs::write(dir.join("seconds.csv"), csv).map_err(|e| format!("writing seconds.csv: {e}"))?;
    }
    Ok(())
}

fn percentiles(h: &Histogram<u64>) -> serde_json::Value {
    let at = |q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
    serde_json::json!({
        "count": h.len(), "p50_us": at(0.5), "p90_us": at(0.9), "p99_us": at(0.99), "p999_us": at(0.999),
        "p9999_us": at(0.9999), "max_us": h.max(), "mean_us": if h.is_empty() { 0.0 } else { h.mean() },
    })
}

fn report(
    args: &Args,
    endpoint: &str,
    total: &Recorder,
    measured_from: Instant,
    guarantee: &str,
    order: Option<&sluice::GroupOrder>,
) -> Result<(), String> {
    let seconds = total.stopped.map_or(0.0, |stopped| stopped.saturating_duration_since(measured_from).as_secs_f64()).max(1e-3);
    let size = args.message_size.max(run::STAMP_BYTES);
    let sent_rate = total.sent as f64 / seconds;
    let received_rate = total.received as f64 / seconds;
    let mode = match args.rate {
        Some(rate) => format!("open loop at {rate} msgs/s"),
        None => format!("closed loop, {} in flight per producer", args.inflight.unwrap_or(1)),
    };
    println!(
        "{:?} {:?} at {endpoint}: {size} B messages, batches of {}, {} core(s) x {} connection(s), {} producers + {} consumers per core, {mode}, {seconds:.1} s measured after {} s warm-up",
        args.target, args.workload, args.batch, args.cores, args.connections, args.producers, args.consumers, args.warmup
    );
    println!("acknowledged: {guarantee}");
    println!("sent     {:>10} msgs  {:>10.0} msgs/s  {:>8.1} MB/s", total.sent, sent_rate, sent_rate * size as f64 / 1e6);
    println!("received {:>10} msgs  {:>10.0} msgs/s  {:>8.1} MB/s", total.received, received_rate, received_rate * size as f64 / 1e6);
    if total.errors > 0 {
        println!("errors   {:>10} requests failed", total.errors);
    }
    let (checked, out_of_order) = order.map_or((0, 0), |o| (o.checked.load(Ordering::Relaxed), o.out_of_order.load(Ordering::Relaxed)));
    if order.is_some() {
        println!("order    {checked:>10} msgs checked against their group's order, {out_of_order} out of order or received twice");
    }
    for op in Op::ALL {
        let h = total.histogram(op);
        if h.is_empty() {
            continue;
        }
        println!(
            "{:<16} n={:<9} p50={:>8}us p99={:>8}us p99.9={:>8}us p99.99={:>8}us max={:>8}us",
            op.name(),
            h.len(),
            h.value_at_quantile(0.5),
            h.value_at_quantile(0.99),
            h.value_at_quantile(0.999),
            h.value_at_quantile(0.9999),
            h.max()
        );
    }
    let Some(dir) = &args.out else { return order_kept(out_of_order) };
    for op in Op::ALL {
        std::fs::write(dir.join(format!("{}.hgrm", op.name())), record::hgrm(total.histogram(op)))
            .map_err(|e| format!("writing .hgrm: {e}"))?;
    }
    let mut summary = serde_json::json!({
        "command": std::env::args().collect::<Vec<_>>().join(" "),
        "target": format!("{:?}", args.target).to_lowercase(), "workload": format!("{:?}", args.workload).to_lowercase(),
        "endpoint": endpoint, "acknowledged": guarantee, "mode": if args.rate.is_some() { "open" } else { "closed" },
        "rate": args.rate, "inflight": args.inflight.unwrap_or(1), "cores": args.cores, "connections": args.connections,
        "producers": args.producers, "consumers": args.consumers, "batch": args.batch, "message_size": size,
        "tenants": args.tenants, "noisy_percent": (args.tenants > 0).then_some(args.noisy_percent),
        "tenants_grouped": (args.tenants > 0).then_some(!args.tenants_ungrouped), "work_us": args.work_us,
        "warmup_seconds": args.warmup, "seconds": seconds,
        "sent": total.sent, "received": total.received, "errors": total.errors,
        "order_checked": order.map(|_| checked), "out_of_order": order.map(|_| out_of_order),
        "deliveries_per_message": deliveries_per_message(args),
        "sent_per_second": sent_rate, "received_per_second": received_rate,
        "sent_mb_per_second": sent_rate * size as f64 / 1e6, "received_mb_per_second": received_rate * size as f64 / 1e6,
    });
    for op in Op::ALL {
        summary[op.name()] = percentiles(total.histogram(op));
    }
    std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).expect("json"))
        .map_err(|e| format!("writing summary.json: {e}"))?;
    order_kept(out_of_order)
}

/// A FIFO run fails when any message came out of its group's order (after its report).
fn order_kept(out_of_order: u64) -> Result<(), String> {
    match out_of_order {
        0 => Ok(()),
        n => Err(format!("{n} messages came out of their group's order or were received twice")),
    }
}

fn main() {
    let args = Args::parse();
    let endpoint = args.endpoint.clone().unwrap_or_else(|| args.target.default_endpoint().to_owned());
    // A FIFO run on Sluice checks each group's order across every consumer and core.
    let order = (args.fifo_groups > 0 && args.target == Target::Sluice).then(|| Arc::new(sluice::GroupOrder::default()));
    let outcome = validate(&args)
        .and_then(|()| run(&args, &endpoint, &order))
        .and_then(|(total, from, guarantee)| report(&args, &endpoint, &total, from, &guarantee, order.as_deref()));
    if let Err(error) = outcome {
        eprintln!("sluice-load: {error}");
        std::process::exit(1);
    }
}
