//! `LocalNotify`: wakes every task of one shard that listens for an event.
//!
//! It is `!Send` and uses no atomics or locks (shard-local state only). A
//! `Listener` taken before checking a condition cannot miss a notification that
//! comes after: it compares the notify generation it saw with the current one.
//! A listener polled many times keeps one registered waker, not one per poll.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::future::Future;
use std::hash::{BuildHasherDefault, Hasher};
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

/// Listener ids are sequential integers: one multiply spreads them well, where SipHash
/// would cost more than the rest of a registration.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for byte in bytes {
            self.0 = (self.0 ^ *byte as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, id: u64) {
        self.0 = id.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    }
}

type WakerMap = HashMap<u64, Waker, BuildHasherDefault<IdHasher>>;

#[derive(Default)]
pub struct LocalNotify {
    generation: Cell<u64>,
    next_listener: Cell<u64>,
    wakers: RefCell<WakerMap>,
    /// Swapped with `wakers` on notify so neither map ever gives up its capacity.
    waking: RefCell<WakerMap>,
}

impl LocalNotify {
    pub fn new() -> LocalNotify {
        LocalNotify::default()
    }

    /// Wakes every current listener.
    pub fn notify_all(&self) {
        self.generation.set(self.generation.get() + 1);
        if self.wakers.borrow().is_empty() {
            return;
        }
        let mut waking = self.waking.borrow_mut();
        std::mem::swap(&mut *self.wakers.borrow_mut(), &mut *waking);
        for (_, waker) in waking.drain() {
            waker.wake();
        }
    }

    /// A future that completes at the next `notify_all` after this call.
    pub fn listen(&self) -> Listener<'_> {
        let id = self.next_listener.get();
        self.next_listener.set(id + 1);
        Listener { notify: self, seen: self.generation.get(), id, registered: false }
    }
}

pub struct Listener<'a> {
    notify: &'a LocalNotify,
    seen: u64,
    id: u64,
    registered: bool,
}

impl Future for Listener<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.notify.generation.get() != self.seen {
            return Poll::Ready(());
        }
        self.registered = true;
        let mut wakers = self.notify.wakers.borrow_mut();
        match wakers.get_mut(&self.id) {
            Some(waker) if waker.will_wake(cx.waker()) => {}
            Some(waker) => waker.clone_from(cx.waker()),
            None => {
                wakers.insert(self.id, cx.waker().clone());
            }
        }
        Poll::Pending
    }
}

impl Drop for Listener<'_> {
    fn drop(&mut self) {
        if !self.registered {
            return;
        }
        if let Ok(mut wakers) = self.notify.wakers.try_borrow_mut() {
            wakers.remove(&self.id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::FutureExt;

    #[test]
    fn a_listener_completes_only_after_a_later_notify() {
        let notify = LocalNotify::new();
        notify.notify_all();
        let mut listener = notify.listen();
        assert!((&mut listener).now_or_never().is_none());
        assert!((&mut listener).now_or_never().is_none());
        assert_eq!(notify.wakers.borrow().len(), 1, "repeated polls keep one waker");
        notify.notify_all();
        assert!(listener.now_or_never().is_some());
        assert!(notify.wakers.borrow().is_empty());
    }

    #[test]
    fn dropped_listeners_leave_nothing_behind() {
        let notify = LocalNotify::new();
        for _ in 0..10 {
            let mut listener = notify.listen();
            assert!((&mut listener).now_or_never().is_none());
        }
        assert!(notify.wakers.borrow().is_empty());
    }
}
