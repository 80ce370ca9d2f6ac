//! Kernel threads and the preemptive scheduler; critical sections.
//!
//! How the pieces fit:
//! - [`critical_enter`]/[`critical_exit`] (this file): FreeBSD's critical
//!   sections. A per-CPU nesting count that is per thread by construction
//!   (switches happen only at depth 0); a tick that arrives inside one sets
//!   "preemption owed", and `critical_exit` performs it at depth 0.
//! - `thread`: thread control blocks, [`spawn`], [`JoinHandle`], thread exit.
//! - `scheduler`: one run queue shared by all CPUs under one spin lock, so a
//!   preempted thread continues on whichever CPU asks next (threads
//!   migrate); per-CPU idle threads; sleeping; the timer tick. Every switch
//!   happens on the way out of an interrupt handler, by swapping the saved
//!   interrupted context for the next thread's (see `arch::interrupts`).
//! - `wait`: park/unpark with a wake permit (no lost wake-ups) and
//!   [`WaitQueue`], on which join and sleep are built.
//! - `migrate`: [`migrate_disable`]/[`migrate_enable`], a per-thread count
//!   that binds a thread to its CPU while it may still be preempted and
//!   block (what quickmap's thread-local mappings need).
//! - `switch_work`: the hook point in the context switch — per-thread
//!   [`SwitchWork`] bits and the [`SwitchHooks`] a switch calls for them,
//!   one branch when neither thread has any.
//! - [`might_sleep`] (this file): the check every blocking call makes.

mod migrate;
mod scheduler;
mod switch_work;
pub mod thread;
mod wait;

use core::sync::atomic::{AtomicUsize, Ordering};

use crate::arch::interrupts::{in_interrupt, interrupts_enabled};
use crate::arch::percpu::{
    percpu_decrement_u32_then_if_zero, percpu_increment_u32, percpu_read_u32,
};
use crate::cpu::offsets;

pub use migrate::{migrate_disable, migrate_disable_count, migrate_enable};
pub use scheduler::{
    init_application_cpu, init_bootstrap_cpu, interrupt_exit, kickable_idle_cpus,
    reschedule_ipis_received, set_tick_hook, sleep, yield_now, TICK_PERIOD_US,
};
pub use switch_work::{
    add_switch_work, migrate_disable_with_switch_work, remove_switch_work,
    remove_switch_work_and_migrate_enable, set_switch_hooks, SwitchHooks, SwitchWork,
};
pub use thread::{current_thread_id, spawn, spawn_pinned, JoinHandle, ThreadId};
pub use wait::WaitQueue;

/// Enters a critical section: until the matching [`critical_exit`], the
/// running thread is not preempted and so stays on this CPU. Nestable.
///
/// One instruction on x86_64 (`add dword ptr gs:[depth], 1`): no atomic
/// read-modify-write, no lock. Works in interrupt handlers and before the
/// scheduler runs.
#[inline]
pub fn critical_enter() {
    percpu_increment_u32!(offsets::CRITICAL_COUNT);
}

/// Leaves a critical section. When the count returns to zero and a tick
/// asked for a preemption meanwhile, the preemption happens here.
///
/// Two instructions when nothing is owed (`sub`, `jnz`; see
/// `percpu_decrement_u32_then_if_zero`): the owed preemption is folded into the
/// count ([`crate::cpu::PerCpu::critical_count`]), and every quickmap window
/// pair pays this.
#[inline]
pub fn critical_exit() {
    percpu_decrement_u32_then_if_zero!(offsets::CRITICAL_COUNT, {
        scheduler::perform_owed_preemption();
    });
}

/// The critical-section nesting of the running context.
#[inline]
pub fn critical_depth() -> u32 {
    percpu_read_u32!(offsets::CRITICAL_COUNT) & !crate::cpu::NOTHING_OWED
}

/// Most checks [`register_might_sleep_check`] accepts.
pub const MAX_MIGHT_SLEEP_CHECKS: usize = 8;
static MIGHT_SLEEP_CHECKS: [AtomicUsize; MAX_MIGHT_SLEEP_CHECKS] =
    [const { AtomicUsize::new(0) }; MAX_MIGHT_SLEEP_CHECKS];

/// Adds `check` to the functions [`might_sleep`] calls first (before its own
/// checks, so a subsystem's more specific message wins). A check panics to
/// report a violation. Registering the same function twice is a no-op.
///
/// # Panics
///
/// If [`MAX_MIGHT_SLEEP_CHECKS`] checks are registered already.
pub fn register_might_sleep_check(check: fn()) {
    let value = check as usize;
    for slot in &MIGHT_SLEEP_CHECKS {
        match slot.compare_exchange(0, value, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => return,
            Err(existing) if existing == value => return,
            Err(_) => {}
        }
    }
    panic!("register_might_sleep_check: all {MAX_MIGHT_SLEEP_CHECKS} slots are taken");
}

/// The check every blocking primitive (sleep, wait, join, blocking locks)
/// makes before it blocks: panics, naming the rule, when the caller may not
/// block — inside a critical section (including while holding a spin lock),
/// with interrupts disabled, in an interrupt handler, or before the
/// scheduler runs on this CPU. Registered checks run first.
#[track_caller]
pub fn might_sleep() {
    for slot in &MIGHT_SLEEP_CHECKS {
        let value = slot.load(Ordering::Acquire);
        if value != 0 {
            // SAFETY: non-zero slots only ever hold a `fn()` stored by
            // `register_might_sleep_check`.
            let check = unsafe { core::mem::transmute::<usize, fn()>(value) };
            check();
        }
    }
    if in_interrupt() {
        panic!("might_sleep: a blocking call in an interrupt handler (handlers must never block)");
    }
    let depth = critical_depth();
    if depth > 0 {
        panic!(
            "might_sleep: thread {} would block inside a critical section (critical depth {depth}, spin locks held {}); sleeping there would stall the CPU",
            current_thread_id(),
            crate::sync::spin_locks_held()
        );
    }
    if !interrupts_enabled() {
        panic!(
            "might_sleep: thread {} would block with interrupts disabled",
            current_thread_id()
        );
    }
    if !scheduler::is_running_here() {
        panic!("might_sleep: a blocking call before the scheduler runs on this CPU");
    }
}
