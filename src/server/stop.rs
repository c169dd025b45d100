//! A shard-local "stop" event: fired once when a graceful shutdown begins, awaited by the
//! acceptor and by idle connections.
//!
//! Waiters register their waker in a slab and take it out again when dropped, so a connection
//! that waits on the event before every request does not grow the waiter list.

use std::cell::{Cell, RefCell};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll, Waker};

use slab::Slab;

#[derive(Default)]
pub struct StopEvent {
    fired: Cell<bool>,
    waiters: RefCell<Slab<Waker>>,
}

impl StopEvent {
    pub fn fire(&self) {
        self.fired.set(true);
        let waiters: Vec<Waker> = self.waiters.borrow_mut().drain().collect();
        for w in waiters {
            w.wake();
        }
    }

    pub fn is_fired(&self) -> bool {
        self.fired.get()
    }

    /// Resolves once the event has fired.
    pub fn wait(&self) -> Wait<'_> {
        Wait {
            event: self,
            key: None,
        }
    }
}

pub struct Wait<'a> {
    event: &'a StopEvent,
    key: Option<usize>,
}

impl Future for Wait<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.event.fired.get() {
            return Poll::Ready(());
        }
        let mut waiters = self.event.waiters.borrow_mut();
        match self.key {
            Some(k) if waiters.contains(k) => waiters[k].clone_from(cx.waker()),
            _ => {
                let k = waiters.insert(cx.waker().clone());
                drop(waiters);
                self.key = Some(k);
            }
        }
        Poll::Pending
    }
}

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        if let Some(k) = self.key {
            let mut waiters = self.event.waiters.borrow_mut();
            if waiters.contains(k) {
                waiters.remove(k);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future;

    #[test]
    fn dropped_waiters_leave_no_trace_and_fire_wakes() {
        let ev = StopEvent::default();
        for _ in 0..100 {
            let mut w = Box::pin(ev.wait());
            assert!(future::block_on(future::poll_once(&mut w)).is_none());
        }
        assert_eq!(ev.waiters.borrow().len(), 0);
        ev.fire();
        future::block_on(ev.wait());
        assert!(ev.is_fired());
    }
}
