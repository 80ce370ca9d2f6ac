//! Switch hooks: work the context switch does for the threads that ask.
//!
//! quickmap's thread-local mappings (issue 12) must be taken down when
//! their thread is switched out and put back when it is switched in. Most
//! switches are between threads that need nothing, so the switch must not
//! pay for the few that do. Each thread carries a flag word,
//! `Thread::switch_work`, one [`SwitchWork`] bit per client; the switch
//! tests `outgoing.switch_work | incoming.switch_work` with one branch and
//! only when it is non-zero calls the hooks registered with
//! [`set_switch_hooks`] (out of line, `scheduler::run_switch_hooks`).
//!
//! # The hook point
//!
//! In `scheduler::switch`, with the scheduler lock held and interrupts off,
//! on the CPU doing the switch:
//! - the outgoing thread has stopped (its registers are saved) and is still
//!   this CPU's: no other CPU can pick it before the lock is released, and a
//!   thread with migration disabled only ever comes back here;
//! - the incoming thread is chosen and has not resumed (it resumes when the
//!   interrupt handler returns).
//!
//! For each bit of the outgoing thread's word its `switch_out` hook runs with
//! that thread, then for each bit of the incoming thread's word its
//! `switch_in` hook with that one. A thread that exits is switched out too.
//! Hooks run in interrupt context, must not block, must not take the
//! scheduler lock (or call anything that does: spawn, wake-ups, sleep), and
//! must use the thread they are given, not the current-thread functions
//! (during the hooks "current" is still the outgoing thread).
//!
//! # Setting the word
//!
//! Only the thread itself changes its word ([`add_switch_work`],
//! [`remove_switch_work`]), by the same argument as the migrate-disable
//! count (`migrate.rs`): one writer, read by the scheduler only while the
//! thread is switched out. Interrupt handlers may not change it: a handler
//! that set and then cleared a bit the thread already had would leave the
//! thread without it (and a handler is never switched out mid-way, so it
//! needs no hooks).

use core::sync::atomic::Ordering;

use super::thread::{current_thread_pointer, Thread};
use crate::arch::interrupts::in_interrupt;

/// Why a thread needs the switch hooks: one bit of `Thread::switch_work`
/// per client, each with its own pair of hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum SwitchWork {
    /// quickmap's thread-local mappings: the thread holds some, so they
    /// are taken down at switch-out and restored at switch-in.
    LocalMappings = 0,
    /// The kernel's own tests of this mechanism.
    KernelTest = 1,
}

impl SwitchWork {
    /// How many kinds there are (the hook table's length).
    pub(super) const COUNT: usize = 2;

    /// The kind's bit in `Thread::switch_work`.
    #[inline]
    pub const fn bit(self) -> u32 {
        1 << self as u32
    }
}

// The hook table has one slot per kind: keep `COUNT` in step.
const _: () = assert!(SwitchWork::KernelTest as usize == SwitchWork::COUNT - 1);

/// The functions a context switch calls for a thread whose word has a
/// [`SwitchWork`] bit: `switch_out` when that thread stops running on this
/// CPU, `switch_in` before it resumes. See the module docs for what a hook
/// may do.
#[derive(Clone, Copy, Debug)]
pub struct SwitchHooks {
    /// Called with the outgoing thread.
    pub switch_out: fn(&Thread),
    /// Called with the incoming thread.
    pub switch_in: fn(&Thread),
}

/// Registers (or with `None` removes) the hooks for `work`, replacing any
/// earlier ones.
///
/// Takes the scheduler lock, under which every switch reads the table: when
/// it returns, no CPU is still inside the previous hooks, and every later
/// switch sees the new ones.
pub fn set_switch_hooks(work: SwitchWork, hooks: Option<SwitchHooks>) {
    super::scheduler::set_switch_hooks(work, hooks);
}

/// Marks the running thread as needing `work`'s hooks at its switches, from
/// its next switch-out on. Idempotent.
///
/// # Panics
///
/// In an interrupt handler (see the module docs).
#[inline]
pub fn add_switch_work(work: SwitchWork) {
    update_switch_work(|word| word | work.bit());
}

/// Clears `work` from the running thread's word. Idempotent.
///
/// # Panics
///
/// In an interrupt handler.
#[inline]
pub fn remove_switch_work(work: SwitchWork) {
    update_switch_work(|word| word & !work.bit());
}

#[inline]
fn update_switch_work(update: impl FnOnce(u32) -> u32) {
    if in_interrupt() {
        handler_changes_switch_work();
    }
    let thread = current_thread_pointer();
    if thread.is_null() {
        // The boot context before the scheduler runs is never switched.
        return;
    }
    // SAFETY: a non-null current pointer names the running thread (us: not
    // in a handler, checked above), which the scheduler keeps alive while
    // it runs.
    let word = unsafe { &(*thread).switch_work };
    // One writer (this thread): a plain read-modify-write (module docs).
    word.store(update(word.load(Ordering::Relaxed)), Ordering::Relaxed);
}

#[cold]
#[inline(never)]
fn handler_changes_switch_work() -> ! {
    panic!(
        "switch work changed in an interrupt handler: only the thread itself sets or clears its switch-work bits (the handler would change the interrupted thread's)"
    );
}
