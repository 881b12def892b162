//! What one core measured: HDR histograms per operation (whole run and the current second),
//! message counts, and the once-a-second ticks that feed the live line and the CSV.

use std::sync::mpsc;

use hdrhistogram::Histogram;

/// Operations with a latency histogram. Per-operation latencies are from the moment a
/// request was due (open loop: its intended time; closed loop: when it was sent) to its
/// answer; `EndToEnd` is from the time stamped in the body to the moment a consumer has it,
/// and `EndToEndQuiet` the same for the quiet tenants' messages alone (`--tenants`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    Send,
    Receive,
    Delete,
    EndToEnd,
    EndToEndQuiet,
}

impl Op {
    pub const ALL: [Op; 5] = [Op::Send, Op::Receive, Op::Delete, Op::EndToEnd, Op::EndToEndQuiet];

    pub fn name(self) -> &'static str {
        match self {
            Op::Send => "send",
            Op::Receive => "receive",
            Op::Delete => "delete",
            Op::EndToEnd => "end_to_end",
            Op::EndToEndQuiet => "end_to_end_quiet",
        }
    }
}

/// Latencies up to 10 minutes, 3 significant digits, in microseconds.
pub fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 600_000_000, 3).expect("histogram bounds")
}

/// One core's measurements. Nothing here is shared across threads while the run goes on:
/// the core's ticker sends a copy of the current second to the main thread.
pub struct Recorder {
    /// False during the warm-up; only then are the whole-run figures left alone.
    pub measuring: bool,
    total: [Histogram<u64>; Op::ALL.len()],
    second: [Histogram<u64>; Op::ALL.len()],
    pub sent: u64,
    pub received: u64,
    /// Requests that failed (the error is printed once per core).
    pub errors: u64,
    second_sent: u64,
    second_received: u64,
    /// When this core's workers finished (the end of the run at the latest).
    pub stopped: Option<std::time::Instant>,
}

impl Default for Recorder {
    fn default() -> Self {
        Recorder {
            measuring: false,
            total: std::array::from_fn(|_| histogram()),
            second: std::array::from_fn(|_| histogram()),
            sent: 0,
            received: 0,
            errors: 0,
            second_sent: 0,
            second_received: 0,
            stopped: None,
        }
    }
}

impl Recorder {
    pub fn record(&mut self, op: Op, micros: u64) {
        let i = op as usize;
        self.second[i].saturating_record(micros);
        if self.measuring {
            self.total[i].saturating_record(micros);
        }
    }

    pub fn sent(&mut self, messages: u64) {
        self.second_sent += messages;
        if self.measuring {
            self.sent += messages;
        }
    }

    pub fn received(&mut self, messages: u64) {
        self.second_received += messages;
        if self.measuring {
            self.received += messages;
        }
    }

    pub fn histogram(&self, op: Op) -> &Histogram<u64> {
        &self.total[op as usize]
    }

    /// The second just ended, handed over and started afresh.
    pub fn take_second(&mut self, second: u32) -> Tick {
        let tick = Tick {
            second,
            measuring: self.measuring,
            sent: self.second_sent,
            received: self.second_received,
            send: self.second[Op::Send as usize].clone(),
            end_to_end: self.second[Op::EndToEnd as usize].clone(),
        };
        for histogram in &mut self.second {
            histogram.reset();
        }
        self.second_sent = 0;
        self.second_received = 0;
        tick
    }

    pub fn merge(&mut self, other: &Recorder) {
        for (mine, theirs) in self.total.iter_mut().zip(&other.total) {
            mine.add(theirs).expect("histograms share their bounds");
        }
        self.sent += other.sent;
        self.received += other.received;
        self.errors += other.errors;
        self.stopped = self.stopped.max(other.stopped);
    }
}

/// One second of one core, sent to the main thread.
pub struct Tick {
    pub second: u32,
    pub measuring: bool,
    pub sent: u64,
    pub received: u64,
    pub send: Histogram<u64>,
    pub end_to_end: Histogram<u64>,
}

/// Gathers the cores' ticks second by second; prints the live line and keeps the CSV rows.
pub struct Live {
    cores: usize,
    message_size: usize,
    pending: Vec<(u32, usize, Tick)>,
    pub csv: String,
}

impl Live {
    pub const CSV_HEADER: &'static str =
        "second,phase,sent_per_second,received_per_second,received_mb_per_second,send_p50_us,send_p99_us,end_to_end_p50_us,end_to_end_p99_us\n";

    pub fn new(cores: usize, message_size: usize) -> Live {
        Live { cores, message_size, pending: Vec::new(), csv: Live::CSV_HEADER.to_owned() }
    }

    /// Takes every tick until the cores hang up, printing each second once all cores gave it.
    pub fn follow(&mut self, ticks: mpsc::Receiver<Tick>) {
        for tick in ticks {
            self.add(tick);
        }
        // Cores that finished early sent no tick for the last seconds: what is left is whole.
        for (_, _, tick) in std::mem::take(&mut self.pending) {
            self.emit(&tick);
        }
    }

    fn add(&mut self, tick: Tick) {
        match self.pending.iter_mut().find(|(second, _, _)| *second == tick.second) {
            Some((_, count, sum)) => {
                *count += 1;
                sum.sent += tick.sent;
                sum.received += tick.received;
                sum.send.add(&tick.send).expect("same bounds");
                sum.end_to_end.add(&tick.end_to_end).expect("same bounds");
                sum.measuring &= tick.measuring;
            }
            None => self.pending.push((tick.second, 1, tick)),
        }
        self.pending.sort_by_key(|(second, _, _)| *second);
        while self.pending.first().is_some_and(|(_, count, _)| *count == self.cores) {
            let (_, _, tick) = self.pending.remove(0);
            self.emit(&tick);
        }
    }

    fn emit(&mut self, tick: &Tick) {
        let phase = if tick.measuring { "run" } else { "warmup" };
        let mb = tick.received as f64 * self.message_size as f64 / 1e6;
        let p = |h: &Histogram<u64>, q: f64| if h.is_empty() { 0 } else { h.value_at_quantile(q) };
        eprintln!(
            "[{:>4}s {phase:<6}] sent {:>9}/s  received {:>9}/s  {:>7.1} MB/s  send p99 {:>8}us  end-to-end p99 {:>8}us",
            tick.second,
            tick.sent,
            tick.received,
            mb,
            p(&tick.send, 0.99),
            p(&tick.end_to_end, 0.99)
        );
        self.csv.push_str(&format!(
            "{},{phase},{},{},{mb:.3},{},{},{},{}\n",
            tick.second,
            tick.sent,
            tick.received,
            p(&tick.send, 0.5),
            p(&tick.send, 0.99),
            p(&tick.end_to_end, 0.5),
            p(&tick.end_to_end, 0.99)
        ));
    }
}

/// A histogram as HdrHistogram's percentile distribution text (`.hgrm`), values in microseconds.
pub fn hgrm(histogram: &Histogram<u64>) -> String {
    let mut out = String::from("       Value     Percentile TotalCount 1/(1-Percentile)\n\n");
    if histogram.is_empty() {
        return out;
    }
    let mut total = 0u64;
    for step in histogram.iter_quantiles(5) {
        total += step.count_since_last_iteration();
        let quantile = step.quantile_iterated_to();
        let inverse = if quantile < 1.0 { format!("{:.2}", 1.0 / (1.0 - quantile)) } else { "inf".into() };
        out.push_str(&format!("{:12.3} {:14.12} {:10} {:>14}\n", step.value_iterated_to() as f64, quantile, total, inverse));
    }
    out.push_str(&format!(
        "#[Mean    = {:12.3}, StdDeviation   = {:12.3}]\n#[Max     = {:12.3}, Total count    = {:12}]\n",
        histogram.mean(),
        histogram.stdev(),
        histogram.max() as f64,
        histogram.len()
    ));
    out
}
