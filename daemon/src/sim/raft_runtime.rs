//! openraft's runtime on the simulator's world (`env::World`): tasks on the executor the
//! simulator is running (each simulated node its own, so a node's crash drops its tasks),
//! virtual time for sleeps, timeouts and the clock, and random numbers from the seed — so a
//! Raft group runs the same every time for a seed, and its timeouts take no wall-clock time.
//! Channels, oneshots and mutexes are tokio's runtime-free `sync` types, as on glommio;
//! watches are `SimWatch`: tokio's wakes its receivers in an order drawn from a random number
//! it seeds itself, which would make a run differ from its replay; this one draws the order
//! from the run's seed.
//!
//! The world is the thread's current one (`enter`): openraft's runtime is a type, its
//! functions take no handle.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Duration;

use openraft_rt::{AsyncRuntime, OptionalSend};
use rand::SeedableRng;

use sluice_raft::{Cancelled, Elapsed, Timeout};

use crate::env::sim::{Sleep as WorldSleep, World};

thread_local! {
    static WORLD: RefCell<Option<Rc<World>>> = const { RefCell::new(None) };
    static SEED: Cell<u64> = const { Cell::new(0) };
}

/// Makes `world` the one this thread's Raft groups run in, their random numbers drawn from `seed`.
pub fn enter(world: Rc<World>, seed: u64) {
    WORLD.with(|current| *current.borrow_mut() = Some(world));
    SEED.with(|current| current.set(seed));
}

/// Forgets the thread's world (at the end of a run).
pub fn leave() {
    WORLD.with(|current| *current.borrow_mut() = None);
}

fn world() -> Rc<World> {
    WORLD.with(|current| current.borrow().clone()).expect("a Raft group in the simulator runs inside `raft_runtime::enter`")
}

/// A point of the world's virtual time (since the simulation started).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct SimInstant(Duration);

impl std::ops::Add<Duration> for SimInstant {
    type Output = SimInstant;
    fn add(self, by: Duration) -> SimInstant {
        SimInstant(self.0 + by)
    }
}

impl std::ops::AddAssign<Duration> for SimInstant {
    fn add_assign(&mut self, by: Duration) {
        self.0 += by;
    }
}

impl std::ops::Sub<Duration> for SimInstant {
    type Output = SimInstant;
    fn sub(self, by: Duration) -> SimInstant {
        SimInstant(self.0.saturating_sub(by))
    }
}

impl std::ops::Sub<SimInstant> for SimInstant {
    type Output = Duration;
    fn sub(self, earlier: SimInstant) -> Duration {
        self.0.saturating_sub(earlier.0)
    }
}

impl std::ops::SubAssign<Duration> for SimInstant {
    fn sub_assign(&mut self, by: Duration) {
        self.0 = self.0.saturating_sub(by);
    }
}

impl openraft_rt::Instant for SimInstant {
    fn now() -> SimInstant {
        SimInstant(world().now())
    }
}

/// openraft's runtime on the simulator's world.
pub struct SimRuntime {
    pool: futures::executor::LocalPool,
}

impl fmt::Debug for SimRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SimRuntime")
    }
}

/// A task's outcome; `Cancelled` when its node crashed (the executor holding it was dropped).
pub struct JoinHandle<T>(futures::channel::oneshot::Receiver<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Cancelled>;
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|outcome| outcome.map_err(|_| Cancelled))
    }
}

fn sleep_until(deadline: SimInstant) -> WorldSleep {
    let world = world();
    let wait = deadline.0.saturating_sub(world.now());
    world.sleep(wait)
}

impl AsyncRuntime for SimRuntime {
    type JoinError = Cancelled;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = WorldSleep;
    type Instant = SimInstant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T, WorldSleep>;
    type ThreadLocalRng = rand::rngs::SmallRng;

    /// On the executor the simulator is running now: the node's whose task spawns.
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        let (sender, receiver) = futures::channel::oneshot::channel();
        world().spawn(async move {
            let _ = sender.send(future.await);
        });
        JoinHandle(receiver)
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        world().sleep(duration)
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        sleep_until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, world().sleep(duration))
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout::new(future, sleep_until(deadline))
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        false
    }

    /// Seeded from the run's seed, a new stream at each call.
    fn thread_rng() -> Self::ThreadLocalRng {
        let seed = SEED.with(|seed| {
            let next = seed.get().wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            seed.set(next);
            next
        });
        rand::rngs::SmallRng::seed_from_u64(seed)
    }

    type Mpsc = openraft_rt_tokio::TokioMpsc;
    type Watch = SimWatch;
    type Oneshot = openraft_rt_tokio::TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = openraft_rt_tokio::TokioMutex<T>;

    /// An executor of its own for openraft's tools; time moves only when a simulator moves it.
    fn new(_threads: usize) -> Self {
        SimRuntime { pool: futures::executor::LocalPool::new() }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.pool.run_until(future)
    }
}

/// A watch channel for one thread whose receivers wake in an order drawn from the run's seed.
pub struct SimWatch;

struct Shared<T> {
    value: RefCell<T>,
    version: Cell<u64>,
    senders: Cell<usize>,
    receivers: Cell<usize>,
    waiting: RefCell<Vec<std::task::Waker>>,
}

impl<T> Shared<T> {
    /// Wakes every waiting receiver, in an order drawn from the run's seed: as with tokio's,
    /// no receiver may count on being woken first, and runs explore the orders.
    fn wake(&self) {
        let mut waiting = std::mem::take(&mut *self.waiting.borrow_mut());
        if waiting.len() > 1 {
            use rand::seq::SliceRandom;
            waiting.shuffle(&mut <SimRuntime as AsyncRuntime>::thread_rng());
        }
        for waker in waiting {
            waker.wake();
        }
    }
}

pub struct WatchSender<T>(Rc<Shared<T>>);

pub struct WatchReceiver<T> {
    shared: Rc<Shared<T>>,
    seen: u64,
}

impl<T> Clone for WatchSender<T> {
    fn clone(&self) -> Self {
        self.0.senders.set(self.0.senders.get() + 1);
        WatchSender(self.0.clone())
    }
}

impl<T> Drop for WatchSender<T> {
    fn drop(&mut self) {
        self.0.senders.set(self.0.senders.get() - 1);
        if self.0.senders.get() == 0 {
            self.0.wake();
        }
    }
}

impl<T> Clone for WatchReceiver<T> {
    fn clone(&self) -> Self {
        self.shared.receivers.set(self.shared.receivers.get() + 1);
        WatchReceiver { shared: self.shared.clone(), seen: self.seen }
    }
}

impl<T> Drop for WatchReceiver<T> {
    fn drop(&mut self) {
        self.shared.receivers.set(self.shared.receivers.get() - 1);
    }
}

impl openraft_rt::Watch for SimWatch {
    type Sender<T: OptionalSend + openraft_rt::OptionalSync> = WatchSender<T>;
    type Receiver<T: OptionalSend + openraft_rt::OptionalSync> = WatchReceiver<T>;
    type Ref<'a, T: OptionalSend + 'a> = std::cell::Ref<'a, T>;

    fn channel<T: OptionalSend + openraft_rt::OptionalSync>(init: T) -> (WatchSender<T>, WatchReceiver<T>) {
        let shared = Rc::new(Shared {
            value: RefCell::new(init),
            version: Cell::new(0),
            senders: Cell::new(1),
            receivers: Cell::new(1),
            waiting: RefCell::default(),
        });
        (WatchSender(shared.clone()), WatchReceiver { shared, seen: 0 })
    }
}

impl<T: OptionalSend + openraft_rt::OptionalSync> openraft_rt::WatchSender<SimWatch, T> for WatchSender<T> {
    fn send(&self, value: T) -> Result<(), openraft_rt::watch::SendError<T>> {
        if self.0.receivers.get() == 0 {
            return Err(openraft_rt::watch::SendError(value));
        }
        *self.0.value.borrow_mut() = value;
        self.0.version.set(self.0.version.get() + 1);
        self.0.wake();
        Ok(())
    }

    fn send_if_modified<F>(&self, modify: F) -> bool
    where
        F: FnOnce(&mut T) -> bool,
    {
        let modified = modify(&mut self.0.value.borrow_mut());
        if modified {
            self.0.version.set(self.0.version.get() + 1);
            self.0.wake();
        }
        modified
    }

    fn borrow_watched(&self) -> std::cell::Ref<'_, T> {
        self.0.value.borrow()
    }

    fn subscribe(&self) -> WatchReceiver<T> {
        self.0.receivers.set(self.0.receivers.get() + 1);
        WatchReceiver { shared: self.0.clone(), seen: self.0.version.get() }
    }
}

impl<T: OptionalSend + openraft_rt::OptionalSync> openraft_rt::WatchReceiver<SimWatch, T> for WatchReceiver<T> {
    async fn changed(&mut self) -> Result<(), openraft_rt::RecvError> {
        std::future::poll_fn(|cx| {
            let shared = &self.shared;
            if shared.version.get() != self.seen {
                self.seen = shared.version.get();
                return Poll::Ready(Ok(()));
            }
            if shared.senders.get() == 0 {
                return Poll::Ready(Err(openraft_rt::RecvError(())));
            }
            shared.waiting.borrow_mut().push(cx.waker().clone());
            Poll::Pending
        })
        .await
    }

    fn borrow_watched(&self) -> std::cell::Ref<'_, T> {
        self.shared.value.borrow()
    }

    fn borrow_and_update(&mut self) -> std::cell::Ref<'_, T> {
        self.seen = self.shared.version.get();
        self.shared.value.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A change reaches every receiver; an unmodified value wakes none; the channel closes
    /// once every sender is gone.
    #[test]
    fn a_watch_reaches_every_receiver_and_closes_with_its_senders() {
        use openraft_rt::{WatchReceiver as _, WatchSender as _};
        let (tx, mut rx) = <SimWatch as openraft_rt::Watch>::channel(1u64);
        let mut pool = futures::executor::LocalPool::new();
        let mut other = rx.clone();
        assert!(tx.send(2).is_ok());
        pool.run_until(async {
            rx.changed().await.unwrap();
            assert_eq!(*rx.borrow_watched(), 2);
            other.changed().await.unwrap();
        });
        assert!(!tx.send_if_modified(|value| {
            *value += 0;
            false
        }));
        drop(tx);
        assert!(pool.run_until(rx.changed()).is_err(), "closed once every sender is gone");
    }
}
