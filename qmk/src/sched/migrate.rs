//! Migration control: [`migrate_disable`]/[`migrate_enable`] (Linux's
//! names), for state that belongs to a CPU but must survive preemption and
//! blocking — quickmap's thread-local mappings (issue 12) are the user.
//!
//! While a thread's count is non-zero it may be preempted, may block and may
//! sleep, but it runs only on the CPU it was on when the count left zero.
//! The scheduler treats it as pinned to `Thread::last_cpu` (see
//! `scheduler::required_cpu`): the run-queue pick on any other CPU skips
//! it, and a wake-up made on any CPU kicks only that CPU. Unlike a critical
//! section this does not delay preemption, so it costs the other threads
//! nothing but the freedom to move this one.
//!
//! # Why a plain per-thread counter needs no lock
//!
//! The count lives in the [`Thread`](super::thread::Thread), not per CPU,
//! because the thread may be switched out while it is set. Each call is a
//! load of the current-thread pointer (`gs:`) and a plain read-modify-write
//! of the count through it — no `lock` prefix, no scheduler lock:
//!
//! 1. Only the thread itself writes its count, so no two CPUs ever write it.
//!    The pointer it goes through names the thread on whichever CPU it runs,
//!    so a preemption between the pointer load and the update is harmless.
//! 2. An interrupt handler that runs on top of the thread and calls these
//!    functions changes the interrupted thread's count; it must leave it as
//!    it found it before it returns (a handler cannot be switched out, so it
//!    needs no migration control of its own). A balanced pair is harmless
//!    even in the middle of the thread's own read-modify-write: the thread's
//!    store writes back the value the handler restored.
//! 3. The scheduler reads the count only while the thread is not running:
//!    when it switches the thread out, on the CPU that just interrupted it
//!    (one CPU sees its own stores in program order, and interrupts are taken
//!    between instructions); and afterwards, in the run-queue pick and the
//!    wake-up paths, under the scheduler lock, which the switch-out held after
//!    the thread's last store (the lock's release and acquire carry the value
//!    to any other CPU).
//! 4. The count changes only while the thread runs, so the value the
//!    scheduler decides on is the value the thread resumes with.
//! 5. When the count leaves zero the thread runs on some CPU `c`, and
//!    `last_cpu == c` (the switch-in sets it before the thread resumes). From
//!    then on the thread is switched in only on `c`, so `last_cpu` stays `c`
//!    until the count is back at zero: no CPU has to be recorded here.
//!
//! The compiler must not move the caller's per-CPU accesses out of the
//! region: `migrate_disable` ends with a `compiler_fence` (no instruction; an
//! interrupt is to this code what a signal is to a process, and that fence
//! orders against it), and `migrate_enable`'s `asm!` is not `nomem`, which
//! makes it a compiler barrier too.

use core::sync::atomic::{compiler_fence, Ordering};

use super::thread::{current_thread, current_thread_pointer, Thread};

/// Disables migration of the running thread until the matching
/// [`migrate_enable`]: it may still be preempted, block and sleep, but it
/// resumes only on this CPU. Nestable.
///
/// A few instructions: the current-thread pointer, a null test, and one
/// `inc` on the thread's count (see the module docs for why no lock is
/// needed). Before the scheduler runs on this CPU the boot context cannot
/// migrate, so the call does nothing; a pair must not straddle the
/// scheduler's start on a CPU. An interrupt handler may call it, and must
/// call [`migrate_enable`] before it returns.
#[inline]
pub fn migrate_disable() {
    let thread = current_thread_pointer();
    if thread.is_null() {
        return;
    }
    // SAFETY: a non-null current pointer names the running thread (us, or
    // the thread this handler interrupted), which the scheduler keeps alive
    // while it is current; it stays current until we return.
    unsafe { migrate_disable_of(thread) }
}

/// [`migrate_disable`] of `thread`, the running one.
///
/// # Safety
///
/// `thread` names the running thread (or the one the calling handler
/// interrupted), which stays current until the caller returns.
#[inline(always)]
pub(super) unsafe fn migrate_disable_of(thread: *const Thread) {
    // SAFETY: the caller's contract.
    let count = unsafe { &(*thread).migrate_disable_count };
    // Only this thread writes its count (module docs, point 1): a plain
    // read-modify-write, which compiles to one `inc` on memory.
    count.store(
        count.load(Ordering::Relaxed).wrapping_add(1),
        Ordering::Relaxed,
    );
    compiler_fence(Ordering::SeqCst);
}

/// Ends a [`migrate_disable`]: at count zero the thread may migrate again
/// (at its next switch; nothing is owed).
///
/// A few instructions: the current-thread pointer, a null test, and the
/// decrement of the thread's count with a branch on its borrow to the panic
/// (`arch::counters::decrement_u32_or_on_borrow`; on x86_64 `sub` on memory
/// and `jb`).
///
/// # Panics
///
/// When the count is already zero: `migrate_enable without migrate_disable`
/// (the message names the caller's location).
#[inline]
#[track_caller]
pub fn migrate_enable() {
    let thread = current_thread_pointer();
    if thread.is_null() {
        return;
    }
    // SAFETY: as in `migrate_disable`.
    unsafe { migrate_enable_of(thread) }
}

/// [`migrate_enable`] of `thread`, the running one.
///
/// # Safety
///
/// As for [`migrate_disable_of`].
#[inline(always)]
#[track_caller]
pub(super) unsafe fn migrate_enable_of(thread: *const Thread) {
    // SAFETY:
    // 1. `thread` names the running thread (us, or the thread a handler
    //    interrupted), alive while it is current, which it stays until we
    //    return (the caller's contract); the offset is that of its `AtomicU32`
    //    count.
    // 2. Only this thread writes its count (module docs, point 1), and an
    //    interrupt handler leaves it as it found it (point 2), so no `lock`.
    // 3. A borrow (the count was 0) runs the block, which does not return.
    //    A compiler barrier, so the caller's per-CPU accesses stay before it.
    unsafe {
        crate::arch::counters::decrement_u32_or_on_borrow!(
            &raw const (*thread).migrate_disable_count,
            {
                // SAFETY: as in point 1. (`unused_unsafe`: on aarch64 the
                // block expands inside the enclosing `unsafe`, on x86_64 it
                // is an asm label block outside it.)
                #[allow(unused_unsafe)]
                enable_underflow(unsafe { &*thread });
            }
        );
    }
}

#[cold]
#[inline(never)]
#[track_caller]
fn enable_underflow(thread: &Thread) -> ! {
    // The `sub` wrapped it; leave it as it was before the call.
    thread.migrate_disable_count.store(0, Ordering::Relaxed);
    panic!(
        "migrate_enable without migrate_disable: thread {} ({}), count 0 before the call; every migrate_enable needs an earlier migrate_disable on the same thread",
        thread.id(),
        thread.name()
    );
}

/// The running thread's [`migrate_disable`] nesting (0 before the scheduler
/// runs on this CPU).
pub fn migrate_disable_count() -> u32 {
    let thread = current_thread_pointer();
    if thread.is_null() {
        return 0;
    }
    // SAFETY: as in `migrate_disable`.
    unsafe { (*thread).migrate_disable_count() }
}

/// Called by a thread that has finished its body, before it exits: a thread
/// must not leave with migration disabled (whatever it pinned itself for is
/// still held, and no one will ever call its `migrate_enable`).
pub(super) fn check_exit() {
    let thread = current_thread();
    let count = thread.migrate_disable_count();
    if count != 0 {
        panic!(
            "thread exited with migration disabled: thread {} ({}), count {count}; every migrate_disable needs its migrate_enable before the thread returns",
            thread.id(),
            thread.name()
        );
    }
}
