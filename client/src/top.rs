//! `sluice top`: the broker's queues, streams and shards, live in the terminal, from its
//! `/metrics` (the gateway's, or `--metrics-listen`'s). Rates are the change between two
//! scrapes over the time between them.

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// One scrape: every sample, by series (`name{labels}`), and when it was taken.
struct Scrape {
    at: Instant,
    samples: BTreeMap<String, f64>,
}

impl Scrape {
    fn get(&self, series: &str) -> Option<f64> {
        self.samples.get(series).copied()
    }

    /// The values of `label` in the series of family `name`, in order.
    fn label_values(&self, name: &str, label: &str) -> Vec<String> {
        let prefix = format!("{name}{{{label}=\"");
        let mut values: Vec<String> = self
            .samples
            .keys()
            .filter_map(|series| series.strip_prefix(&prefix)?.split_once('"').map(|(value, _)| value.to_owned()))
            .collect();
        values.dedup();
        values
    }
}

/// The body of a GET of `url` (`http://host:port/path`, or `https://` with `tls`).
fn fetch(url: &str, tls: Option<&sluice_client::tls::Tls>) -> Result<String, String> {
    let (secure, rest) = match (url.strip_prefix("https://"), url.strip_prefix("http://")) {
        (Some(rest), _) => (true, rest),
        (None, Some(rest)) => (false, rest),
        _ => return Err(format!("{url}: give an http:// or https:// URL")),
    };
    let (host, path) = match rest.split_once('/') {
        Some((host, path)) => (host, format!("/{path}")),
        None => (rest, "/metrics".to_owned()),
    };
    let request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nAccept: text/plain\r\nConnection: close\r\n\r\n");
    let mut stream = TcpStream::connect(host).map_err(|e| format!("cannot reach {host}: {e}"))?;
    let response = if secure {
        let tls = tls.ok_or_else(|| format!("{url}: no TLS settings"))?;
        async_io::block_on(fetch_tls(tls, host, stream, request.as_bytes())).map_err(|e| format!("{url}: {e}"))?
    } else {
        stream.set_read_timeout(Some(READ_TIMEOUT)).map_err(|e| e.to_string())?;
        stream.write_all(request.as_bytes()).map_err(|e| format!("{url}: {e}"))?;
        let mut response = Vec::new();
        stream.read_to_end(&mut response).map_err(|e| format!("{url}: {e}"))?;
        response
    };
    let response = String::from_utf8_lossy(&response);
    let (head, body) = response.split_once("\r\n\r\n").ok_or_else(|| format!("{url}: not an HTTP response"))?;
    if !head.starts_with("HTTP/1.1 200") {
        return Err(format!("{url}: {}", head.lines().next().unwrap_or_default()));
    }
    Ok(body.to_owned())
}

/// How long a scrape may take.
const READ_TIMEOUT: Duration = Duration::from_secs(10);

/// One request over TLS: the whole response (the server closes after it).
async fn fetch_tls(tls: &sluice_client::tls::Tls, host: &str, stream: TcpStream, request: &[u8]) -> Result<Vec<u8>, String> {
    use futures::{AsyncReadExt, AsyncWriteExt};
    let exchange = async {
        let stream = async_io::Async::new(stream).map_err(|e| e.to_string())?;
        let mut stream = tls.connect(sluice_client::tls::host_of(host), stream).await.map_err(|e| e.to_string())?;
        stream.write_all(request).await.map_err(|e| e.to_string())?;
        stream.flush().await.map_err(|e| e.to_string())?;
        let mut response = Vec::new();
        match stream.read_to_end(&mut response).await {
            Ok(_) => Ok(response),
            // A server that closes without TLS's close_notify after the whole answer.
            Err(error) if error.kind() == std::io::ErrorKind::UnexpectedEof && !response.is_empty() => Ok(response),
            Err(error) => Err(error.to_string()),
        }
    };
    let timeout = async {
        async_io::Timer::after(READ_TIMEOUT).await;
        Err(format!("no answer within {} s", READ_TIMEOUT.as_secs()))
    };
    futures::pin_mut!(exchange, timeout);
    match futures::future::select(exchange, timeout).await {
        futures::future::Either::Left((result, _)) | futures::future::Either::Right((result, _)) => result,
    }
}

fn parse(text: &str, at: Instant) -> Scrape {
    let samples = text
        .lines()
        .filter(|line| !line.starts_with('#') && !line.is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            Some((series.to_owned(), value.parse().ok()?))
        })
        .collect();
    Scrape { at, samples }
}

/// Per second, between two scrapes (`-` without the earlier one).
fn rate(before: Option<&Scrape>, now: &Scrape, series: &str) -> String {
    match (before, now.get(series)) {
        (Some(before), Some(value)) => {
            let seconds = now.at.duration_since(before.at).as_secs_f64().max(0.001);
            format!("{:.0}", (value - before.get(series).unwrap_or(0.0)).max(0.0) / seconds)
        }
        _ => "-".to_owned(),
    }
}

fn value(now: &Scrape, series: &str) -> String {
    now.get(series).map_or("-".to_owned(), |value| format!("{value}"))
}

fn table(before: Option<&Scrape>, now: &Scrape) -> String {
    let mut out = String::new();
    let q = |name: &str, queue: &str| format!("{name}{{queue=\"{queue}\"}}");
    out.push_str(&format!(
        "{:<32} {:>10} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9}\n",
        "QUEUE", "VISIBLE", "IN FLIGHT", "DELAYED", "OLDEST s", "SENT/s", "RECV/s", "DEL/s"
    ));
    for queue in now.label_values("sluice_queue_messages_visible", "queue") {
        out.push_str(&format!(
            "{:<32} {:>10} {:>10} {:>9} {:>10} {:>9} {:>9} {:>9}\n",
            queue,
            value(now, &q("sluice_queue_messages_visible", &queue)),
            value(now, &q("sluice_queue_messages_in_flight", &queue)),
            value(now, &q("sluice_queue_messages_delayed", &queue)),
            value(now, &q("sluice_queue_oldest_message_age_seconds", &queue)),
            rate(before, now, &q("sluice_queue_messages_sent_total", &queue)),
            rate(before, now, &q("sluice_queue_messages_received_total", &queue)),
            rate(before, now, &q("sluice_queue_messages_deleted_total", &queue)),
        ));
    }
    let s = |name: &str, stream: &str| format!("{name}{{stream=\"{stream}\"}}");
    out.push_str(&format!(
        "\n{:<32} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13}\n",
        "STREAM", "SHARDS", "IN rec/s", "IN B/s", "OUT rec/s", "OUT B/s", "ITER AGE ms"
    ));
    for stream in now.label_values("sluice_stream_open_shards", "stream") {
        out.push_str(&format!(
            "{:<32} {:>7} {:>10} {:>10} {:>10} {:>10} {:>13}\n",
            stream,
            value(now, &s("sluice_stream_open_shards", &stream)),
            rate(before, now, &s("sluice_stream_incoming_records_total", &stream)),
            rate(before, now, &s("sluice_stream_incoming_bytes_total", &stream)),
            rate(before, now, &s("sluice_stream_outgoing_records_total", &stream)),
            rate(before, now, &s("sluice_stream_outgoing_bytes_total", &stream)),
            value(now, &s("sluice_stream_iterator_age_milliseconds", &stream)),
        ));
    }
    let h = |name: &str, shard: &str| format!("{name}{{shard=\"{shard}\"}}");
    out.push_str(&format!(
        "\n{:<6} {:>6} {:>14} {:>14} {:>10} {:>12}\n",
        "SHARD", "CONNS", "MEMORY USED", "BUDGET", "COMMITS/s", "APPENDS/s"
    ));
    for shard in now.label_values("sluice_shard_connections", "shard") {
        out.push_str(&format!(
            "{:<6} {:>6} {:>14} {:>14} {:>10} {:>12}\n",
            shard,
            value(now, &h("sluice_shard_connections", &shard)),
            value(now, &h("sluice_shard_memory_used_bytes", &shard)),
            value(now, &h("sluice_shard_memory_budget_bytes", &shard)),
            rate(before, now, &h("sluice_shard_log_flushes_total", &shard)),
            rate(before, now, &h("sluice_shard_log_appends_total", &shard)),
        ));
    }
    out
}

/// Shows the table every `every` until interrupted, or once.
pub fn run(url: &str, every: Duration, once: bool, tls: Option<&sluice_client::tls::Tls>, out: &mut impl Write) -> Result<(), String> {
    let mut before: Option<Scrape> = None;
    loop {
        let now = parse(&fetch(url, tls)?, Instant::now());
        let text = table(before.as_ref(), &now);
        if once {
            out.write_all(text.as_bytes()).map_err(|e| e.to_string())?;
            return Ok(());
        }
        // Clear the screen and go home, then the table.
        write!(out, "\x1b[2J\x1b[H{url}  (every {:.1} s; Ctrl-C to stop)\n\n{text}", every.as_secs_f64()).map_err(|e| e.to_string())?;
        out.flush().map_err(|e| e.to_string())?;
        before = Some(now);
        std::thread::sleep(every);
    }
}
