//! `sluice-load`: drives a Sluice broker with a closed-loop queue workload and
//! reports throughput and latency percentiles from HDR histograms.
//!
//! This first version runs the `queue` workload against Sluice only: producers
//! send batches, consumers receive (long polling) and delete in batches, all
//! pipelined over a few connections per core. The load-generator issue extends
//! it with fixed-rate (open-loop) runs, more workloads and peer brokers.

use std::cell::RefCell;
use std::path::PathBuf;
use std::rc::Rc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use glommio::{LocalExecutorPoolBuilder, PoolPlacement};
use hdrhistogram::serialization::Serializer;
use hdrhistogram::Histogram;
use sluice_client::{Client, DeleteEntry, ReceiveMessage, SendEntry};

#[derive(Debug, Clone, Parser)]
#[command(name = "sluice-load", version, about = "Closed-loop load generator for Sluice queues, with HDR latency histograms.")]
struct Args {
    /// Broker address (binary protocol).
    #[arg(long, env = "SLUICE_ENDPOINT", default_value = "127.0.0.1:9800")]
    endpoint: String,
    /// Queue to use; created if missing and purged of nothing (use a fresh name per run).
    #[arg(long, default_value = "sluice-load")]
    queue: String,
    /// Body size of each message, in bytes.
    #[arg(long, default_value_t = 100)]
    message_size: usize,
    /// Messages per SendMessageBatch (1–10); receives ask for this many too.
    #[arg(long, default_value_t = 10)]
    batch: usize,
    /// Connections per core, each carrying producers and consumers.
    #[arg(long, default_value_t = 2)]
    connections: usize,
    /// Producer loops per connection (send requests in flight on it).
    #[arg(long, default_value_t = 4)]
    producers: usize,
    /// Consumer loops per connection (receive + delete in flight on it). A receive and
    /// its delete cost two round trips per batch, so twice the producers keeps up.
    #[arg(long, default_value_t = 8)]
    consumers: usize,
    /// Seconds to run (the run stops by itself).
    #[arg(long, default_value_t = 10)]
    duration: u64,
    /// Stop producing after this many messages in all (0: no limit); the run still ends by
    /// --duration at the latest. With --consumers 0 this fills a queue with an exact backlog.
    #[arg(long, default_value_t = 0)]
    send_limit: u64,
    /// Executors (cores) the load generator uses.
    #[arg(long, default_value_t = 1)]
    cores: usize,
    /// Directory to write `summary.json` and `.hgrm` percentile files to.
    #[arg(long)]
    out: Option<PathBuf>,
}

/// Latency histograms of one executor, in microseconds.
struct Recorder {
    send: Histogram<u64>,
    receive: Histogram<u64>,
    delete: Histogram<u64>,
    end_to_end: Histogram<u64>,
    sent: u64,
    received: u64,
}

impl Recorder {
    fn new() -> Recorder {
        let histogram = || Histogram::new_with_bounds(1, 60_000_000, 3).expect("histogram bounds");
        Recorder { send: histogram(), receive: histogram(), delete: histogram(), end_to_end: histogram(), sent: 0, received: 0 }
    }

    fn merge(&mut self, other: &Recorder) {
        self.send.add(&other.send).ok();
        self.receive.add(&other.receive).ok();
        self.delete.add(&other.delete).ok();
        self.end_to_end.add(&other.end_to_end).ok();
        self.sent += other.sent;
        self.received += other.received;
    }
}

fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

/// A body of `size` bytes that starts with the send time, for end-to-end latency.
fn body(size: usize) -> bytes::Bytes {
    let mut text = format!("{:016}|", now_us());
    text.extend(std::iter::repeat_n('x', size.saturating_sub(text.len())));
    text.truncate(size.max(17));
    bytes::Bytes::from(text)
}

fn sent_at_us(body: &[u8]) -> Option<u64> {
    std::str::from_utf8(body.get(..16)?).ok()?.parse().ok()
}

async fn connect(endpoint: &str) -> Client {
    let stream = glommio::net::TcpStream::connect(endpoint).await.expect("connecting to the broker");
    stream.set_nodelay(true).ok();
    let (client, driver) = Client::connect(stream, "sluice-load").await.expect("Hello");
    glommio::spawn_local(async move {
        if let Err(error) = driver.run().await {
            eprintln!("sluice-load: connection ended: {error}");
        }
    })
    .detach();
    client
}

/// Messages the producers of every executor may still send (`u64::MAX` without --send-limit);
/// taken one batch at a time.
type Budget = std::sync::Arc<std::sync::atomic::AtomicU64>;

/// Takes up to `want` messages from the budget; 0 when it is spent.
fn take(budget: &Budget, want: u64) -> u64 {
    use std::sync::atomic::Ordering;
    let mut left = budget.load(Ordering::Relaxed);
    loop {
        let granted = want.min(left);
        match budget.compare_exchange_weak(left, left - granted, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return granted,
            Err(now) => left = now,
        }
    }
}

async fn producer(client: Client, args: Rc<Args>, recorder: Rc<RefCell<Recorder>>, until: Instant, budget: Budget) {
    while Instant::now() < until {
        let batch = take(&budget, args.batch as u64) as usize;
        if batch == 0 {
            return;
        }
        let entries = (0..batch).map(|i| SendEntry { id: i.to_string(), body: body(args.message_size), ..SendEntry::default() }).collect();
        let started = Instant::now();
        match client.send_message_batch(&args.queue, entries).await {
            Ok((ok, _)) => {
                let mut recorder = recorder.borrow_mut();
                recorder.send.saturating_record(started.elapsed().as_micros() as u64);
                recorder.sent += ok.len() as u64;
            }
            Err(error) => {
                eprintln!("sluice-load: send failed: {error}");
                return;
            }
        }
    }
}

async fn consumer(client: Client, args: Rc<Args>, recorder: Rc<RefCell<Recorder>>, until: Instant) {
    while Instant::now() < until {
        let request = ReceiveMessage {
            queue: args.queue.clone(),
            max_messages: Some(args.batch as i32),
            wait_time_seconds: Some(1),
            ..Default::default()
        };
        let started = Instant::now();
        let messages = match client.receive_message(request).await {
            Ok(messages) => messages,
            Err(error) => {
                eprintln!("sluice-load: receive failed: {error}");
                return;
            }
        };
        let arrived = now_us();
        {
            let mut recorder = recorder.borrow_mut();
            recorder.receive.saturating_record(started.elapsed().as_micros() as u64);
            recorder.received += messages.len() as u64;
            for message in &messages {
                if let Some(sent) = sent_at_us(&message.body) {
                    recorder.end_to_end.saturating_record(arrived.saturating_sub(sent));
                }
            }
        }
        if messages.is_empty() {
            continue;
        }
        let entries =
            messages.iter().enumerate().map(|(i, m)| DeleteEntry { id: i.to_string(), receipt_handle: m.receipt_handle.clone() }).collect();
        let started = Instant::now();
        if let Err(error) = client.delete_message_batch(&args.queue, entries).await {
            eprintln!("sluice-load: delete failed: {error}");
            return;
        }
        recorder.borrow_mut().delete.saturating_record(started.elapsed().as_micros() as u64);
    }
}

/// One executor's share of the load; returns its histograms as plain data.
async fn run_shard(args: Args, budget: Budget) -> Vec<u8> {
    let args = Rc::new(args);
    let recorder = Rc::new(RefCell::new(Recorder::new()));
    let until = Instant::now() + Duration::from_secs(args.duration);
    let mut tasks = Vec::new();
    for _ in 0..args.connections {
        let client = connect(&args.endpoint).await;
        for _ in 0..args.producers {
            tasks.push(glommio::spawn_local(producer(client.clone(), args.clone(), recorder.clone(), until, budget.clone())));
        }
        for _ in 0..args.consumers {
            tasks.push(glommio::spawn_local(consumer(client.clone(), args.clone(), recorder.clone(), until)));
        }
    }
    for task in tasks {
        task.await;
    }
    let recorder = recorder.borrow();
    // Histograms cross threads serialized (V2 format).
    let mut out = Vec::new();
    let mut serializer = hdrhistogram::serialization::V2Serializer::new();
    for histogram in [&recorder.send, &recorder.receive, &recorder.delete, &recorder.end_to_end] {
        let mut one = Vec::new();
        serializer.serialize(histogram, &mut one).expect("serialize histogram");
        out.extend((one.len() as u32).to_le_bytes());
        out.extend(one);
    }
    out.extend(recorder.sent.to_le_bytes());
    out.extend(recorder.received.to_le_bytes());
    out
}

fn decode(raw: &[u8]) -> Recorder {
    let mut recorder = Recorder::new();
    let mut at = 0;
    let mut deserializer = hdrhistogram::serialization::Deserializer::new();
    let mut next = || {
        let len = u32::from_le_bytes(raw[at..at + 4].try_into().unwrap()) as usize;
        let histogram: Histogram<u64> = deserializer.deserialize(&mut &raw[at + 4..at + 4 + len]).expect("histogram");
        at += 4 + len;
        histogram
    };
    recorder.send = next();
    recorder.receive = next();
    recorder.delete = next();
    recorder.end_to_end = next();
    recorder.sent = u64::from_le_bytes(raw[at..at + 8].try_into().unwrap());
    recorder.received = u64::from_le_bytes(raw[at + 8..at + 16].try_into().unwrap());
    recorder
}

fn line(name: &str, histogram: &Histogram<u64>) -> String {
    format!(
        "{name:<11} n={:<9} p50={:>7}us p99={:>7}us p99.9={:>7}us p99.99={:>7}us max={:>7}us",
        histogram.len(),
        histogram.value_at_quantile(0.5),
        histogram.value_at_quantile(0.99),
        histogram.value_at_quantile(0.999),
        histogram.value_at_quantile(0.9999),
        histogram.max()
    )
}

fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    let mut total = 0u64;
    for step in histogram.iter_quantiles(1) {
        let quantile = step.quantile_iterated_to();
        total += step.count_since_last_iteration();
        let inverse = if quantile < 1.0 { format!("{:.2}", 1.0 / (1.0 - quantile)) } else { "inf".into() };
        out.push_str(&format!("{:12.3} {:14.12} {:10} {:>14}\n", step.value_iterated_to() as f64, quantile, total, inverse));
    }
    out
}

fn main() {
    let args = Args::parse();
    let setup = create_queue(&args);
    if let Err(error) = setup {
        eprintln!("sluice-load: {error}");
        std::process::exit(1);
    }
    let started = Instant::now();
    let shard_args = args.clone();
    let budget: Budget =
        std::sync::Arc::new(std::sync::atomic::AtomicU64::new(if args.send_limit == 0 { u64::MAX } else { args.send_limit }));
    let handles = LocalExecutorPoolBuilder::new(PoolPlacement::Unbound(args.cores))
        .on_all_shards(move || run_shard(shard_args.clone(), budget.clone()))
        .expect("starting executors");
    let mut total = Recorder::new();
    for result in handles.join_all() {
        total.merge(&decode(&result.expect("executor failed")));
    }
    let seconds = started.elapsed().as_secs_f64();
    let sent_rate = total.sent as f64 / seconds;
    let received_rate = total.received as f64 / seconds;
    println!(
        "workload queue: {} B messages, batches of {}, {} core(s) x {} connection(s) x ({} producers + {} consumers), {:.1} s",
        args.message_size, args.batch, args.cores, args.connections, args.producers, args.consumers, seconds
    );
    println!("sent     {:>10} msgs  {:>10.0} msgs/s  {:>8.1} MB/s", total.sent, sent_rate, sent_rate * args.message_size as f64 / 1e6);
    println!(
        "received {:>10} msgs  {:>10.0} msgs/s  {:>8.1} MB/s",
        total.received,
        received_rate,
        received_rate * args.message_size as f64 / 1e6
    );
    for (name, histogram) in
        [("send", &total.send), ("receive", &total.receive), ("delete", &total.delete), ("end-to-end", &total.end_to_end)]
    {
        println!("{}", line(name, histogram));
    }
    if let Some(dir) = &args.out {
        std::fs::create_dir_all(dir).expect("creating --out directory");
        for (name, histogram) in
            [("send", &total.send), ("receive", &total.receive), ("delete", &total.delete), ("end_to_end", &total.end_to_end)]
        {
            std::fs::write(dir.join(format!("{name}.hgrm")), hgrm(histogram)).expect("writing .hgrm");
        }
        let percentiles = |h: &Histogram<u64>| {
            serde_json::json!({"count": h.len(), "p50_us": h.value_at_quantile(0.5), "p99_us": h.value_at_quantile(0.99),
                "p999_us": h.value_at_quantile(0.999), "p9999_us": h.value_at_quantile(0.9999), "max_us": h.max()})
        };
        let summary = serde_json::json!({
            "command": std::env::args().collect::<Vec<_>>().join(" "),
            "seconds": seconds,
            "message_size": args.message_size,
            "sent": total.sent, "received": total.received,
            "sent_per_second": sent_rate, "received_per_second": received_rate,
            "send": percentiles(&total.send), "receive": percentiles(&total.receive),
            "delete": percentiles(&total.delete), "end_to_end": percentiles(&total.end_to_end),
        });
        std::fs::write(dir.join("summary.json"), serde_json::to_string_pretty(&summary).unwrap()).expect("writing summary.json");
    }
}

/// Creates the queue before the executors start (blocking client).
fn create_queue(args: &Args) -> Result<(), String> {
    if !(1..=10).contains(&args.batch) {
        return Err("--batch must be from 1 to 10".into());
    }
    let connection = sluice_client::blocking::BlockingClient::connect(args.endpoint.as_str(), "sluice-load-setup")
        .map_err(|e| format!("cannot reach {}: {e}", args.endpoint))?;
    connection.block_on(connection.client().create_queue(&args.queue, vec![], vec![])).map_err(|e| e.to_string())?;
    Ok(())
}
