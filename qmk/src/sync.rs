//! Spin locks that cooperate with the scheduler, and lock statistics.
//!
//! [`SpinLock::lock`] enters a critical section before it spins, so the
//! holder cannot be preempted (another thread on the same CPU would spin
//! until the next tick) and cannot migrate. [`SpinLock::lock_irq`] also
//! disables interrupts, which is required for any lock that an interrupt
//! handler takes: otherwise a handler interrupting the holder on the same
//! CPU spins forever. Every acquisition counts in a per-CPU counter (one
//! per-CPU increment; [`lock_acquisitions`] sums them) and in the per-CPU
//! number of spin locks held ([`spin_locks_held`]).

use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ops::{Deref, DerefMut};
use core::sync::atomic::{AtomicBool, Ordering};

use crate::arch::interrupts::{disable_interrupts, enable_interrupts, interrupts_enabled};
use crate::arch::percpu::{
    percpu_decrement_u32_is_zero, percpu_increment_u32, percpu_increment_u64, percpu_read_u32,
};
use crate::cpu::offsets;

/// A spin lock protecting a `T`.
pub struct SpinLock<T: ?Sized> {
    locked: AtomicBool,
    value: UnsafeCell<T>,
}

// SAFETY: the lock hands out access to `value` to one holder at a time, so
// sharing the lock between CPUs is sound when `T` may move between CPUs.
unsafe impl<T: ?Sized + Send> Sync for SpinLock<T> {}
// SAFETY: moving the lock moves the `T`.
unsafe impl<T: ?Sized + Send> Send for SpinLock<T> {}

impl<T> SpinLock<T> {
    /// An unlocked lock around `value`.
    pub const fn new(value: T) -> Self {
        Self {
            locked: AtomicBool::new(false),
            value: UnsafeCell::new(value),
        }
    }
}

impl<T: ?Sized> SpinLock<T> {
    /// Takes the lock with preemption disabled (interrupts stay as they are).
    /// For locks no interrupt handler takes.
    #[inline]
    pub fn lock(&self) -> SpinLockGuard<'_, T> {
        crate::sched::critical_enter();
        self.acquire();
        SpinLockGuard {
            lock: self,
            restore_interrupts: false,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock with interrupts disabled too (restored on release).
    /// For locks that interrupt handlers take as well.
    #[inline]
    pub fn lock_irq(&self) -> SpinLockGuard<'_, T> {
        let were_enabled = interrupts_enabled();
        disable_interrupts();
        crate::sched::critical_enter();
        self.acquire();
        SpinLockGuard {
            lock: self,
            restore_interrupts: were_enabled,
            _not_send: PhantomData,
        }
    }

    /// Takes the lock if it is free (preemption disabled while held).
    pub fn try_lock(&self) -> Option<SpinLockGuard<'_, T>> {
        crate::sched::critical_enter();
        if self
            .locked
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_ok()
        {
            percpu_increment_u32!(offsets::SPIN_LOCKS_HELD);
            percpu_increment_u64!(offsets::LOCK_ACQUISITIONS);
            Some(SpinLockGuard {
                lock: self,
                restore_interrupts: false,
                _not_send: PhantomData,
            })
        } else {
            crate::sched::critical_exit();
            None
        }
    }

    /// True while some context holds the lock (a snapshot, for assertions).
    pub fn is_locked(&self) -> bool {
        self.locked.load(Ordering::Relaxed)
    }

    #[inline]
    fn acquire(&self) {
        // Test-and-test-and-set: spin on a plain load so the waiting CPUs
        // share the cache line instead of bouncing it with failed writes.
        while self
            .locked
            .compare_exchange_weak(false, true, Ordering::Acquire, Ordering::Relaxed)
            .is_err()
        {
            while self.locked.load(Ordering::Relaxed) {
                core::hint::spin_loop();
            }
        }
        percpu_increment_u32!(offsets::SPIN_LOCKS_HELD);
        percpu_increment_u64!(offsets::LOCK_ACQUISITIONS);
    }
}

/// Access to a [`SpinLock`]'s value; releases the lock when dropped. Not
/// `Send`: the lock must be released on the CPU that took it.
#[must_use = "the lock is released as soon as the guard is dropped"]
pub struct SpinLockGuard<'a, T: ?Sized> {
    lock: &'a SpinLock<T>,
    restore_interrupts: bool,
    _not_send: PhantomData<*const ()>,
}

impl<T: ?Sized> Deref for SpinLockGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard exists only while this context holds the lock,
        // so no other reference to the value exists.
        unsafe { &*self.lock.value.get() }
    }
}

impl<T: ?Sized> DerefMut for SpinLockGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as in `deref`, and `&mut self` makes this the only access
        // through the guard.
        unsafe { &mut *self.lock.value.get() }
    }
}

impl<T: ?Sized> Drop for SpinLockGuard<'_, T> {
    #[inline]
    fn drop(&mut self) {
        self.lock.locked.store(false, Ordering::Release);
        let _ = percpu_decrement_u32_is_zero!(offsets::SPIN_LOCKS_HELD);
        // Interrupts back on before critical_exit, so that a preemption
        // owed to this section can be performed right there.
        if self.restore_interrupts {
            enable_interrupts();
        }
        crate::sched::critical_exit();
    }
}

/// Spin locks held by the context running on this CPU.
#[inline]
pub fn spin_locks_held() -> u32 {
    percpu_read_u32!(offsets::SPIN_LOCKS_HELD)
}

/// Spin-lock acquisitions on all CPUs so far (per-CPU counters, summed).
pub fn lock_acquisitions() -> u64 {
    crate::cpu::online_cpus()
        .map(|cpu| cpu.lock_acquisitions.load(Ordering::Relaxed))
        .sum()
}
