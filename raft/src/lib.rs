//! Sluice's consensus layer, on openraft (issue 26). Its first piece is here: openraft's
//! runtime abstraction (`openraft_rt::AsyncRuntime`) implemented for glommio, so that Raft
//! groups run on a shard's own executor — thread-per-core, no tokio runtime beside it.
//!
//! What a group needs from a runtime, and where it comes from on glommio:
//! - tasks: `glommio::spawn_local` (a group's tasks stay on the core that owns it; dropping
//!   a handle lets its task run on, as openraft expects);
//! - time: glommio's timers, `std::time::Instant` as the clock;
//! - channels, watches and mutexes: tokio's `sync` types as `openraft-rt-tokio` wraps them —
//!   they do not need tokio's runtime, only wakers, so they work on any executor;
//! - `new` and `block_on`: a `LocalExecutor` of its own (for tests and tools; the daemon's
//!   groups run on the shards' executors).
//!
//! openraft is built with its `single-threaded` feature: futures and values need not be
//! `Send`, as nothing on a shard is.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use openraft_rt::{AsyncRuntime, OptionalSend};

pub mod testing;

/// openraft's runtime on glommio.
pub struct GlommioRuntime {
    executor: glommio::LocalExecutor,
}

impl fmt::Debug for GlommioRuntime {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("GlommioRuntime").field("executor", &self.executor.id()).finish()
    }
}

/// Why a task's outcome never came: glommio cancelled it (its executor stopped). A panic in
/// a glommio task is not caught: it ends the executor's thread, as in the rest of Sluice.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cancelled;

impl fmt::Display for Cancelled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the task was cancelled before it finished")
    }
}

impl std::error::Error for Cancelled {}

/// A task's outcome (`glommio::task::JoinHandle`, its `None` as `Cancelled`).
pub struct JoinHandle<T>(glommio::task::JoinHandle<T>);

impl<T> Future for JoinHandle<T> {
    type Output = Result<T, Cancelled>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        Pin::new(&mut self.0).poll(cx).map(|outcome| outcome.ok_or(Cancelled))
    }
}

pin_project_lite::pin_project! {
    /// A glommio timer that resolves to `()`.
    pub struct Sleep {
        #[pin]
        timer: glommio::timer::Timer,
    }
}

impl Sleep {
    fn until(deadline: Instant) -> Sleep {
        Sleep { timer: glommio::timer::Timer::new(deadline.saturating_duration_since(Instant::now())) }
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        self.project().timer.poll(cx).map(|_| ())
    }
}

/// A future's deadline passed before it finished.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Elapsed;

impl fmt::Display for Elapsed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("the deadline passed")
    }
}

impl std::error::Error for Elapsed {}

pin_project_lite::pin_project! {
    /// `future` unless `deadline` comes first (the future is polled first: one that is ready
    /// when its deadline is too still counts). `S` is the runtime's sleep (glommio's timer
    /// here; the daemon's simulator has its own).
    pub struct Timeout<F, S = Sleep> {
        #[pin]
        future: F,
        #[pin]
        deadline: S,
    }
}

impl<F, S> Timeout<F, S> {
    /// `future`, given up at the end of `deadline`.
    pub fn new(future: F, deadline: S) -> Timeout<F, S> {
        Timeout { future, deadline }
    }
}

impl<F: Future, S: Future<Output = ()>> Future for Timeout<F, S> {
    type Output = Result<F::Output, Elapsed>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        if let Poll::Ready(output) = this.future.poll(cx) {
            return Poll::Ready(Ok(output));
        }
        this.deadline.poll(cx).map(|()| Err(Elapsed))
    }
}

impl AsyncRuntime for GlommioRuntime {
    type JoinError = Cancelled;
    type JoinHandle<T: OptionalSend + 'static> = JoinHandle<T>;
    type Sleep = Sleep;
    type Instant = Instant;
    type TimeoutError = Elapsed;
    type Timeout<R, T: Future<Output = R> + OptionalSend> = Timeout<T>;
    type ThreadLocalRng = rand::rngs::ThreadRng;

    /// Spawns on the current glommio executor (called outside one, it panics, as glommio does).
    fn spawn<T>(future: T) -> Self::JoinHandle<T::Output>
    where
        T: Future + OptionalSend + 'static,
        T::Output: OptionalSend + 'static,
    {
        JoinHandle(glommio::spawn_local(future).detach())
    }

    fn sleep(duration: Duration) -> Self::Sleep {
        Sleep { timer: glommio::timer::Timer::new(duration) }
    }

    fn sleep_until(deadline: Self::Instant) -> Self::Sleep {
        Sleep::until(deadline)
    }

    fn timeout<R, F: Future<Output = R> + OptionalSend>(duration: Duration, future: F) -> Self::Timeout<R, F> {
        Timeout { future, deadline: Self::sleep(duration) }
    }

    fn timeout_at<R, F: Future<Output = R> + OptionalSend>(deadline: Self::Instant, future: F) -> Self::Timeout<R, F> {
        Timeout { future, deadline: Sleep::until(deadline) }
    }

    fn is_panic(_: &Self::JoinError) -> bool {
        false
    }

    fn thread_rng() -> Self::ThreadLocalRng {
        rand::rng()
    }

    type Mpsc = openraft_rt_tokio::TokioMpsc;
    type Watch = openraft_rt_tokio::TokioWatch;
    type Oneshot = openraft_rt_tokio::TokioOneshot;
    type Mutex<T: OptionalSend + 'static> = openraft_rt_tokio::TokioMutex<T>;

    /// An executor of its own, on any CPU (`threads` is for multi-threaded runtimes: a glommio
    /// executor is one thread).
    fn new(_threads: usize) -> Self {
        let executor = glommio::LocalExecutorBuilder::new(glommio::Placement::Unbound)
            .name("sluice-raft")
            .make()
            .unwrap_or_else(|error| panic!("cannot start a glommio executor: {error}"));
        GlommioRuntime { executor }
    }

    fn block_on<F, T>(&mut self, future: F) -> T
    where
        F: Future<Output = T>,
    {
        self.executor.run(future)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use openraft_rt::OneshotSender;

    /// openraft's own conformance suite for runtimes: tasks, timers, timeouts, selects,
    /// channels, watches, mutexes, and its deterministic-RNG wrapper over this runtime.
    #[test]
    fn glommio_passes_openraft_runtime_suite() {
        openraft_rt::testing::Suite::<GlommioRuntime>::test_all();
    }

    #[test]
    fn a_timeout_fires_on_glommio_time_and_a_ready_future_beats_it() {
        let mut runtime = GlommioRuntime::new(1);
        runtime.block_on(async {
            let started = Instant::now();
            let late = GlommioRuntime::timeout(Duration::from_millis(20), std::future::pending::<()>()).await;
            assert_eq!(late, Err(Elapsed));
            assert!(started.elapsed() >= Duration::from_millis(20), "not before its deadline");
            let ready = GlommioRuntime::timeout(Duration::ZERO, async { 7 }).await;
            assert_eq!(ready, Ok(7));
        });
    }

    #[test]
    fn a_dropped_handle_lets_its_task_run_on() {
        let mut runtime = GlommioRuntime::new(1);
        let ran = runtime.block_on(async {
            let (sender, receiver) = futures_channel_oneshot();
            drop(GlommioRuntime::spawn(async move {
                GlommioRuntime::sleep(Duration::from_millis(5)).await;
                let _ = sender.send(true);
            }));
            receiver.await
        });
        assert_eq!(ran, Ok(true));
    }

    fn futures_channel_oneshot() -> (
        <openraft_rt_tokio::TokioOneshot as openraft_rt::Oneshot>::Sender<bool>,
        <openraft_rt_tokio::TokioOneshot as openraft_rt::Oneshot>::Receiver<bool>,
    ) {
        <openraft_rt_tokio::TokioOneshot as openraft_rt::Oneshot>::channel()
    }
}
