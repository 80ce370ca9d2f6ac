//! Blocking: park/unpark with a wake permit, and wait queues.
//!
//! `park` blocks the running thread unless a wake permit is waiting;
//! `unpark` makes a parked thread ready, or leaves the permit for its next
//! park. Both decide under the scheduler lock, and the parking thread's
//! context is saved under that same lock, so a wake-up can neither be lost
//! (it is either seen by park or finds the thread parked) nor run a thread
//! twice. Every user loops on its own condition, since a permit left by an
//! earlier, unrelated wake-up can end a park early.

use alloc::collections::VecDeque;
use alloc::sync::Arc;

use super::thread::{current_thread, Thread};
use crate::sync::SpinLock;

/// Threads waiting for a condition that other threads make true.
pub struct WaitQueue {
    waiters: SpinLock<VecDeque<Arc<Thread>>>,
}

impl Default for WaitQueue {
    fn default() -> Self {
        Self::new()
    }
}

impl WaitQueue {
    /// An empty queue.
    pub const fn new() -> Self {
        Self {
            waiters: SpinLock::new(VecDeque::new()),
        }
    }

    /// Blocks until `condition` returns true. The waker must make the
    /// condition true *before* calling [`WaitQueue::wake_all`] or
    /// [`WaitQueue::wake_one`].
    pub fn wait_until(&self, mut condition: impl FnMut() -> bool) {
        super::might_sleep();
        if condition() {
            return;
        }
        let me = current_thread();
        loop {
            {
                let mut waiters = self.waiters.lock_irq();
                if !waiters.iter().any(|waiter| Arc::ptr_eq(waiter, &me)) {
                    waiters.push_back(me.clone());
                }
            }
            // Checked again after queueing: a wake-up between the first
            // check and the queueing would otherwise be missed.
            if condition() {
                break;
            }
            super::scheduler::park();
            if condition() {
                break;
            }
        }
        self.waiters
            .lock_irq()
            .retain(|waiter| !Arc::ptr_eq(waiter, &me));
    }

    /// Wakes every waiting thread.
    pub fn wake_all(&self) {
        let waiters = core::mem::take(&mut *self.waiters.lock_irq());
        for waiter in waiters {
            super::scheduler::unpark(&waiter);
        }
    }

    /// Wakes the longest-waiting thread, if any.
    pub fn wake_one(&self) {
        let waiter = self.waiters.lock_irq().pop_front();
        if let Some(waiter) = waiter {
            super::scheduler::unpark(&waiter);
        }
    }
}
