//! The workload, the same for every broker: producers send batches (closed loop with
//! `--inflight` requests each, or open loop at `--rate`), consumers receive and acknowledge
//! in batches, and one ticker per core reports each second. A broker plugs in through
//! [`Broker`]; the runtime under it (glommio for Sluice, tokio for the peers' own clients)
//! only has to spawn a local task and sleep.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::rc::Rc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::{BufMut, Bytes, BytesMut};
use futures::future::{select, Either, LocalBoxFuture};
use futures::FutureExt;

use crate::record::{Op, Recorder, Tick};

/// Why a request failed, as the broker's client said it.
pub type Error = String;

/// A broker as the workload sees it. One value per core, made on that core.
pub trait Broker: 'static {
    type Connection;
    type Producer: Producer;
    type Consumer: Consumer;
    async fn connect(&self) -> Result<Self::Connection, Error>;
    async fn producer(&self, connection: &Self::Connection) -> Result<Self::Producer, Error>;
    /// `index` counts consumers across the run's cores (unique: a name for brokers that name
    /// their consumers; in the fan-out workload, which subscriber it drains).
    async fn consumer(&self, connection: &Self::Connection, index: usize) -> Result<Self::Consumer, Error>;
    /// The executor the broker's client runs on.
    type Executor: Executor;

    fn spawn(task: impl Future<Output = ()> + 'static) {
        Self::Executor::spawn(task)
    }

    fn sleep_until(deadline: Instant) -> impl Future<Output = ()> {
        <Self::Executor as Executor>::sleep_until(deadline)
    }
}

/// What the workload needs of an executor: spawn a local task, sleep until an instant.
pub trait Executor {
    fn spawn(task: impl Future<Output = ()> + 'static);
    fn sleep_until(deadline: Instant) -> impl Future<Output = ()>;
}

/// glommio, for Sluice's client.
pub struct Glommio;

impl Executor for Glommio {
    fn spawn(task: impl Future<Output = ()> + 'static) {
        glommio::spawn_local(task).detach();
    }

    async fn sleep_until(deadline: Instant) {
        let now = Instant::now();
        if deadline > now {
            glommio::timer::sleep(deadline - now).await;
        }
    }
}

/// A current-thread tokio runtime inside a `LocalSet`, for the peers' own clients.
pub struct Tokio;

impl Executor for Tokio {
    fn spawn(task: impl Future<Output = ()> + 'static) {
        tokio::task::spawn_local(task);
    }

    async fn sleep_until(deadline: Instant) {
        tokio::time::sleep_until(deadline.into()).await;
    }
}

pub trait Producer: Clone + 'static {
    /// Sends one batch; returns once the broker acknowledged every message in it
    /// (with the durability the broker gives at acknowledgement).
    async fn send(&self, bodies: Vec<Bytes>) -> Result<(), Error>;
}

pub trait Consumer: 'static {
    /// Whether `receive` is a request whose latency means something (a long poll), rather
    /// than the next messages a push subscription already has.
    const RECEIVE_IS_A_REQUEST: bool;
    /// Whether received messages are acknowledged (deleted); streams keep them.
    const ACKNOWLEDGES: bool = true;
    /// Waits for up to `max` messages; pushes the send time stamped in each body (µs since
    /// the epoch) to `stamps`. The consumer keeps what it needs to acknowledge them.
    async fn receive(&mut self, max: usize, stamps: &mut Vec<u64>) -> Result<(), Error>;
    /// Acknowledges (deletes) everything the last `receive` returned.
    async fn acknowledge(&mut self) -> Result<(), Error>;
    /// Moves the stamps of the last `receive`'s messages from quiet tenants (`--tenants`) to
    /// `stamps`; they were pushed to `receive`'s too.
    fn take_quiet(&mut self, _stamps: &mut Vec<u64>) {}
}

/// What each core does, from the command line.
#[derive(Debug, Clone)]
pub struct Plan {
    pub cores: usize,
    pub message_size: usize,
    pub batch: usize,
    pub connections: usize,
    pub producers: usize,
    pub consumers: usize,
    /// Closed loop: send requests each producer keeps in flight.
    pub inflight: usize,
    /// Open loop: messages per second across all cores.
    pub rate: Option<u64>,
    pub warmup: Duration,
    pub duration: Duration,
    /// Time a consumer spends on each received batch before acknowledging it.
    pub work: Duration,
    /// Messages in all before producers stop; shared by the cores.
    pub send_limit: Arc<SendLimit>,
}

/// `--send-limit`, shared by every core: what is left to send, and how many sends are
/// still waiting for their acknowledgement, so consumers know when nothing more can come.
#[derive(Debug, Default)]
pub struct SendLimit {
    left: AtomicU64,
    limited: bool,
    unacknowledged: AtomicU64,
}

impl SendLimit {
    /// `limit` messages in all; 0: no limit.
    pub fn new(limit: u64) -> SendLimit {
        SendLimit { left: AtomicU64::new(if limit == 0 { u64::MAX } else { limit }), limited: limit > 0, ..SendLimit::default() }
    }

    /// Takes up to `want` messages for one send; 0 once the limit is spent. A send taken
    /// must be [`finished`](Self::finished), whether it succeeded or not.
    fn take(&self, want: u64) -> u64 {
        let mut left = self.left.load(Ordering::Relaxed);
        loop {
            let granted = want.min(left);
            match self.left.compare_exchange_weak(left, left - granted, Ordering::SeqCst, Ordering::Relaxed) {
                Ok(_) => {
                    if granted > 0 {
                        self.unacknowledged.fetch_add(1, Ordering::SeqCst);
                    }
                    return granted;
                }
                Err(now) => left = now,
            }
        }
    }

    fn finished(&self) {
        self.unacknowledged.fetch_sub(1, Ordering::SeqCst);
    }

    /// Whether the limit is spent and every send has its answer: a consumer whose long poll
    /// began after this held and came back empty has nothing more to wait for.
    fn all_answered(&self) -> bool {
        self.limited && self.left.load(Ordering::SeqCst) == 0 && self.unacknowledged.load(Ordering::SeqCst) == 0
    }
}

/// Open-loop sends a core may have outstanding before its pacer waits: far beyond what any
/// broker answers in time, it only bounds memory when a broker stops answering altogether.
/// Latency still counts from each send's intended time, so a stall shows in full.
const OPEN_LOOP_OUTSTANDING_MAX: usize = 100_000;

pub fn now_us() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_micros() as u64).unwrap_or_default()
}

/// `count` bodies of `size` bytes in one buffer, each starting with `stamp_us` as 16 decimal
/// digits and a `|`, then `x`s (printable, so every broker takes it as text).
pub fn bodies(size: usize, count: usize, stamp_us: u64) -> Vec<Bytes> {
    let size = size.max(STAMP_BYTES);
    let mut digits = [0u8; 16];
    let mut value = stamp_us;
    for digit in digits.iter_mut().rev() {
        *digit = b'0' + (value % 10) as u8;
        value /= 10;
    }
    let mut buf = BytesMut::with_capacity(size * count);
    for _ in 0..count {
        buf.put_slice(&digits);
        buf.put_u8(b'|');
        buf.put_bytes(b'x', size - STAMP_BYTES);
    }
    let buf = buf.freeze();
    (0..count).map(|i| buf.slice(i * size..(i + 1) * size)).collect()
}

/// Bytes at the front of every body: the stamp and its separator.
pub const STAMP_BYTES: usize = 17;

pub fn stamp_of(body: &[u8]) -> Option<u64> {
    let digits = body.get(..16)?;
    digits.iter().try_fold(0u64, |n, &d| d.is_ascii_digit().then(|| n * 10 + u64::from(d - b'0')))
}

/// What the consumer numbered `index` drains: `base` in the queue workload (`subscribers`
/// 0), else subscriber `index % subscribers`, named `base-N`.
pub fn subscriber(base: &str, subscribers: usize, index: usize) -> String {
    if subscribers == 0 {
        base.to_owned()
    } else {
        format!("{base}-{}", index % subscribers)
    }
}

type Shared = Rc<RefCell<Recorder>>;

fn failed(recorder: &Shared, what: &str, error: &Error) {
    let mut recorder = recorder.borrow_mut();
    if recorder.errors == 0 {
        eprintln!("sluice-load: {what} failed: {error}");
    }
    recorder.errors += 1;
}

/// Runs one core's share of the plan; returns what it measured.
pub async fn run_core<B: Broker>(
    broker: B,
    plan: Plan,
    core: usize,
    started: Instant,
    ticks: mpsc::Sender<Tick>,
) -> Result<Recorder, Error> {
    let recorder: Shared = Rc::new(RefCell::new(Recorder::default()));
    recorder.borrow_mut().measuring = plan.warmup.is_zero();
    let end = started + plan.warmup + plan.duration;
    let mut connections = Vec::with_capacity(plan.connections);
    for _ in 0..plan.connections.max(1) {
        connections.push(broker.connect().await?);
    }
    let mut producers = Vec::with_capacity(plan.producers);
    for i in 0..plan.producers {
        producers.push(broker.producer(&connections[i % connections.len()]).await?);
    }
    let mut tasks: Vec<LocalBoxFuture<'static, ()>> = Vec::new();
    for i in 0..plan.consumers {
        let consumer = broker.consumer(&connections[i % connections.len()], core * plan.consumers + i).await?;
        tasks.push(consume::<B, _>(consumer, plan.batch, plan.work, plan.send_limit.clone(), recorder.clone(), end).boxed_local());
    }
    let plan = Rc::new(plan);
    if let Some(rate) = plan.rate {
        if !producers.is_empty() {
            tasks.push(pace::<B>(producers, plan.clone(), rate, core, recorder.clone(), started, end).boxed_local());
        }
    } else {
        for producer in producers {
            for _ in 0..plan.inflight {
                tasks.push(produce(producer.clone(), plan.clone(), recorder.clone(), end).boxed_local());
            }
        }
    }
    // Workers end at the end of the run, or sooner once a --send-limit is spent and there is
    // nothing left for them; the ticker reports each second until then.
    let workers = futures::future::join_all(tasks);
    let ticker = std::pin::pin!(tick::<B>(plan.clone(), recorder.clone(), started, end, ticks.clone()));
    match select(workers, ticker).await {
        Either::Left((_, _)) => {
            let second = started.elapsed().as_secs() as u32 + 1;
            let tick = recorder.borrow_mut().take_second(second);
            ticks.send(tick).ok();
        }
        Either::Right(((), workers)) => drop(workers.await),
    }
    drop(connections);
    let mut recorder = Rc::try_unwrap(recorder).map(RefCell::into_inner).unwrap_or_else(|shared| std::mem::take(&mut shared.borrow_mut()));
    recorder.stopped = Some(Instant::now().min(end));
    Ok(recorder)
}

/// Closed loop: send a batch, wait for its acknowledgement, send the next.
async fn produce<P: Producer>(producer: P, plan: Rc<Plan>, recorder: Shared, end: Instant) {
    while Instant::now() < end {
        let count = plan.send_limit.take(plan.batch as u64) as usize;
        if count == 0 {
            return;
        }
        let begun = Instant::now();
        let result = producer.send(bodies(plan.message_size, count, now_us())).await;
        plan.send_limit.finished();
        match result {
            Ok(()) => {
                let mut recorder = recorder.borrow_mut();
                recorder.record(Op::Send, begun.elapsed().as_micros() as u64);
                recorder.sent(count as u64);
            }
            Err(error) => {
                failed(&recorder, "send", &error);
                return;
            }
        }
    }
}

/// Open loop: each batch has an intended time on a fixed schedule, is sent then whatever the
/// earlier ones are doing, and its latency counts from that intended time. Bodies carry the
/// intended time too, so a late send shows in end-to-end latency as well.
async fn pace<B: Broker>(
    producers: Vec<B::Producer>,
    plan: Rc<Plan>,
    rate: u64,
    core: usize,
    recorder: Shared,
    started: Instant,
    end: Instant,
) {
    let per_core = rate as f64 / plan.cores as f64;
    let interval = Duration::from_secs_f64(plan.batch as f64 / per_core.max(1e-9));
    // Cores start staggered across one interval so their batches interleave.
    let first = started + interval.mul_f64(core as f64 / plan.cores as f64);
    let wall_start = now_us() as i64 - started.elapsed().as_micros() as i64;
    let outstanding = Rc::new(Cell::new(0usize));
    for k in 0u64.. {
        let intended = first + interval.mul_f64(k as f64);
        if intended >= end {
            break;
        }
        B::sleep_until(intended).await;
        while outstanding.get() >= OPEN_LOOP_OUTSTANDING_MAX {
            B::sleep_until(Instant::now() + Duration::from_millis(1)).await;
        }
        let count = plan.send_limit.take(plan.batch as u64) as usize;
        if count == 0 {
            break;
        }
        let stamp = (wall_start + intended.duration_since(started).as_micros() as i64) as u64;
        let producer = producers[k as usize % producers.len()].clone();
        let bodies = bodies(plan.message_size, count, stamp);
        let (recorder, outstanding, limit) = (recorder.clone(), outstanding.clone(), plan.send_limit.clone());
        outstanding.set(outstanding.get() + 1);
        B::spawn(async move {
            let result = producer.send(bodies).await;
            limit.finished();
            outstanding.set(outstanding.get() - 1);
            match result {
                Ok(()) => {
                    let mut recorder = recorder.borrow_mut();
                    recorder.record(Op::Send, intended.elapsed().as_micros() as u64);
                    recorder.sent(count as u64);
                }
                Err(error) => failed(&recorder, "send", &error),
            }
        });
    }
    // The last sends are waited for (a little past the end at most), so they are counted.
    let grace = end + Duration::from_secs(5);
    while outstanding.get() > 0 && Instant::now() < grace {
        B::sleep_until(Instant::now() + Duration::from_millis(1)).await;
    }
}

/// How long a consumer waits for more once every send of a `--send-limit` has its answer.
/// Everything sent is then already in the broker: a long poll (one second) that comes back
/// empty ends the consumer at once; a push subscription gets this long to deliver the rest.
const QUIET_BEFORE_DONE: Duration = Duration::from_secs(2);

/// Receives and acknowledges until the end of the run, or, under a `--send-limit`, until
/// nothing more can come: every send was answered before a receive began and that receive
/// came back empty, or a receive waited [`QUIET_BEFORE_DONE`] after every send was answered
/// (a push subscription has no empty answer).
async fn consume<B: Broker, C: Consumer>(
    mut consumer: C,
    batch: usize,
    work: Duration,
    limit: Arc<SendLimit>,
    recorder: Shared,
    end: Instant,
) {
    let mut stamps = Vec::with_capacity(batch);
    let mut quiet = Vec::with_capacity(batch);
    while Instant::now() < end {
        stamps.clear();
        let drained_if_empty = limit.all_answered();
        let begun = Instant::now();
        let received = {
            let mut receive = std::pin::pin!(consumer.receive(batch, &mut stamps));
            // While sends are unanswered, look again every QUIET_BEFORE_DONE.
            let mut answered_since = drained_if_empty.then_some(begun);
            loop {
                let until = end.min(answered_since.unwrap_or_else(Instant::now) + QUIET_BEFORE_DONE);
                match select(receive.as_mut(), std::pin::pin!(B::sleep_until(until))).await {
                    Either::Left((result, _)) => break result,
                    Either::Right(_) if answered_since.is_some() || Instant::now() >= end => return,
                    Either::Right(_) => answered_since = limit.all_answered().then(Instant::now),
                }
            }
        };
        if let Err(error) = received {
            failed(&recorder, "receive", &error);
            return;
        }
        let arrived = now_us();
        {
            let mut recorder = recorder.borrow_mut();
            if C::RECEIVE_IS_A_REQUEST {
                recorder.record(Op::Receive, begun.elapsed().as_micros() as u64);
            }
            recorder.received(stamps.len() as u64);
            for &stamp in &stamps {
                recorder.record(Op::EndToEnd, arrived.saturating_sub(stamp));
            }
            consumer.take_quiet(&mut quiet);
            for stamp in quiet.drain(..) {
                recorder.record(Op::EndToEndQuiet, arrived.saturating_sub(stamp));
            }
        }
        if stamps.is_empty() && drained_if_empty {
            return;
        }
        if stamps.is_empty() || !C::ACKNOWLEDGES {
            continue;
        }
        if !work.is_zero() {
            B::sleep_until(Instant::now() + work).await;
        }
        let begun = Instant::now();
        if let Err(error) = consumer.acknowledge().await {
            failed(&recorder, "acknowledge", &error);
            return;
        }
        recorder.borrow_mut().record(Op::Delete, begun.elapsed().as_micros() as u64);
    }
}

/// Every second: hand the second's figures to the main thread; start measuring after warm-up.
async fn tick<B: Broker>(plan: Rc<Plan>, recorder: Shared, started: Instant, end: Instant, ticks: mpsc::Sender<Tick>) {
    let warm = started + plan.warmup;
    for second in 1u32.. {
        let at = started + Duration::from_secs(u64::from(second));
        B::sleep_until(at.min(end)).await;
        let mut recorder = recorder.borrow_mut();
        let tick = recorder.take_second(second);
        if at >= warm {
            recorder.measuring = true;
        }
        drop(recorder);
        if ticks.send(tick).is_err() || at >= end {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bodies_carry_their_stamp_and_size() {
        let batch = bodies(100, 3, 1_732_000_000_123_456);
        assert_eq!(batch.len(), 3);
        for body in &batch {
            assert_eq!(body.len(), 100);
            assert_eq!(stamp_of(body), Some(1_732_000_000_123_456));
            assert!(body.iter().all(|b| b.is_ascii_graphic()));
        }
        assert_eq!(bodies(4, 1, 7)[0].len(), STAMP_BYTES, "a body is never shorter than its stamp");
        assert_eq!(stamp_of(b"12345678901234x6|"), None);
    }

    #[test]
    fn the_send_limit_is_shared_out_exactly() {
        let limit = SendLimit::new(25);
        assert_eq!([limit.take(10), limit.take(10), limit.take(10), limit.take(10)], [10, 10, 5, 0]);
        assert!(!limit.all_answered(), "three sends are out");
        for _ in 0..3 {
            limit.finished();
        }
        assert!(limit.all_answered());
        let unlimited = SendLimit::new(0);
        assert_eq!(unlimited.take(10), 10);
        unlimited.finished();
        assert!(!unlimited.all_answered(), "without a limit there is always more to come");
    }
}
