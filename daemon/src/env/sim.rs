//! The simulator's world: a virtual clock, timers, the executor of the current
//! incarnation of the simulated process, and its disk (`memory::Fs`).
//!
//! Time moves only when the simulator says (`advance_to`), so a test of timeouts takes no
//! wall-clock time and runs the same every time. Tasks run on a single-threaded executor
//! (`futures::executor::LocalPool`) the simulator drives until nothing can run; a crash
//! drops that executor with every task of the dead process in it.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll, Waker};
use std::time::Duration;

use futures::executor::LocalSpawner;
use futures::task::LocalSpawnExt;

use super::memory::{Faults, Fs};

/// Wall-clock time at the simulation's start (2026-12-05T00:00:00Z), in epoch milliseconds.
const EPOCH_START_MS: u64 = 1_796_428_800_000;

pub struct World {
    clock: Cell<Duration>,
    timers: RefCell<BTreeMap<(Duration, u64), Option<Waker>>>,
    next_timer: Cell<u64>,
    spawner: RefCell<Option<LocalSpawner>>,
    fs: Rc<Fs>,
}

impl World {
    pub fn new(seed: u64, faults: Faults) -> Rc<World> {
        Rc::new(World {
            clock: Cell::new(Duration::ZERO),
            timers: RefCell::default(),
            next_timer: Cell::new(0),
            spawner: RefCell::new(None),
            fs: Rc::new(Fs::new(seed, faults)),
        })
    }

    pub fn fs(&self) -> &Rc<Fs> {
        &self.fs
    }

    /// Virtual time since the simulation started.
    pub fn now(&self) -> Duration {
        self.clock.get()
    }

    pub fn epoch_ms(&self) -> u64 {
        EPOCH_START_MS + self.clock.get().as_millis() as u64
    }

    /// Sets the executor that `spawn` puts tasks on (that of the current incarnation).
    pub fn set_spawner(&self, spawner: LocalSpawner) {
        *self.spawner.borrow_mut() = Some(spawner);
    }

    pub fn spawn(&self, task: impl Future<Output = ()> + 'static) {
        if let Some(spawner) = self.spawner.borrow().as_ref() {
            // Fails only once the incarnation's executor is gone, and its tasks with it.
            let _ = spawner.spawn_local(task);
        }
    }

    pub fn sleep(self: &Rc<Self>, wait: Duration) -> Sleep {
        let id = self.next_timer.get();
        self.next_timer.set(id + 1);
        Sleep { world: self.clone(), deadline: self.now() + wait, id }
    }

    /// When the next timer is due, if any is armed.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.borrow().keys().next().map(|(deadline, _)| *deadline)
    }

    /// Moves time on to `to` (never back) and wakes the timers due by then, earliest first.
    pub fn advance_to(&self, to: Duration) {
        if to > self.clock.get() {
            self.clock.set(to);
        }
        let now = self.clock.get();
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let later = timers.split_off(&(now + Duration::from_nanos(1), 0));
            let due = std::mem::replace(&mut *timers, later);
            due.into_values().flatten().collect()
        };
        for waker in due {
            waker.wake();
        }
    }

    /// Forgets every armed timer (their tasks died with a crashed incarnation).
    pub fn clear_timers(&self) {
        self.timers.borrow_mut().clear();
    }
}

/// A virtual timer.
pub struct Sleep {
    world: Rc<World>,
    deadline: Duration,
    id: u64,
}

impl Future for Sleep {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.world.now() >= self.deadline {
            self.world.timers.borrow_mut().remove(&(self.deadline, self.id));
            return Poll::Ready(());
        }
        self.world.timers.borrow_mut().insert((self.deadline, self.id), Some(cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Ok(mut timers) = self.world.timers.try_borrow_mut() {
            timers.remove(&(self.deadline, self.id));
        }
    }
}
