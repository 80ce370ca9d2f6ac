//! What quickmap asks of the kernel it runs in: which CPU this is, and a way to stay
//! on it.

use crate::rules;

/// The kernel's CPU identity and preemption control.
///
/// quickmap keeps its windows per CPU, so between `enter` and `remove` the caller must
/// stay on the CPU whose window it holds. The man page: *"it must disable preemption on
/// the local CPU. The corresponding call to pmap_quick_remove_page() then re-enables
/// preemption."* quickmap calls [`critical_enter`](Self::critical_enter) in the window
/// path of `enter` and [`critical_exit`](Self::critical_exit) in `remove`.
///
/// # Safety
///
/// Implementors promise:
/// 1. Between `critical_enter` and its matching `critical_exit` the calling context is
///    neither preempted by another thread nor migrated: every
///    [`current_cpu`](Self::current_cpu) in that span returns the same index.
///    Calls nest; preemption comes back only when the outermost section ends.
/// 2. `current_cpu` returns a distinct index for each CPU, smaller than the number of
///    CPUs the [`QuickMap`](crate::QuickMap) was built for.
/// 3. An interrupt handler that runs on a CPU finishes (returns) before the context it
///    interrupted resumes, so interrupt contexts on one CPU nest strictly. quickmap's
///    per-CPU state relies on this instead of atomic read-modify-write instructions.
pub unsafe trait Platform {
    /// Index of the CPU the caller runs on.
    fn current_cpu(&self) -> usize;

    /// Disable preemption (and migration) of the calling context; nestable.
    fn critical_enter(&self);

    /// Undo one [`critical_enter`](Self::critical_enter); when the outermost section
    /// ends, a preemption that became due inside it may happen now.
    fn critical_exit(&self);

    /// Which contexts may call `enter` and `remove`; a property of the kernel, fixed
    /// at compile time so that the default policy costs nothing on the fast path.
    const CONTEXT_POLICY: ContextPolicy = ContextPolicy::Anywhere;

    /// What the calling context is, for the checks of [`ContextPolicy::FreeBsd`].
    /// Kernels that cannot tell return [`ExecutionContext::UNKNOWN`] (the default).
    fn execution_context(&self) -> ExecutionContext {
        ExecutionContext::UNKNOWN
    }
}

/// What the calling context is doing, as far as the kernel can tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExecutionContext {
    /// Running in a primary interrupt handler (FreeBSD: an interrupt filter).
    pub in_primary_interrupt: bool,
    /// Spin locks (FreeBSD: spin mutexes) the calling context holds.
    pub spin_locks_held: u32,
}

impl ExecutionContext {
    /// Nothing known: plain thread context, no spin locks.
    pub const UNKNOWN: ExecutionContext = ExecutionContext {
        in_primary_interrupt: false,
        spin_locks_held: 0,
    };
}

/// Which contexts may call `enter` and `remove`.
///
/// The man page: *"It is safe to use these functions under all types of locks except
/// spin mutexes. It is also safe to use them in all thread contexts except primary
/// interrupt context."* FreeBSD needs those exclusions only because some of its
/// implementations take a lock inside (amd64's global `qframe_mtx` spin mutex, powerpc
/// oea64's per-CPU sleep mutex). quickmap takes no lock and keeps several windows per
/// CPU that an interrupt handler can claim while the thread it interrupted holds its
/// own, so by default it allows every context.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum ContextPolicy {
    /// Any context: under spin locks, with interrupts disabled, in interrupt handlers.
    #[default]
    Anywhere,
    /// The man page's rules word for word: panic when called while holding a spin lock
    /// or from primary interrupt context (as reported by
    /// [`Platform::execution_context`]). For code that must stay portable to FreeBSD.
    FreeBsd,
}

/// The calling CPU and its state in `cpus` (one entry per CPU the instance serves);
/// valid only while the caller cannot migrate. With `contract-checks`, a CPU index
/// the instance was not built for panics (`unknown CPU`).
#[inline(always)]
#[track_caller]
pub(crate) fn this_cpu<P: Platform, T>(platform: &P, cpus: &&'static [T]) -> (usize, &'static T) {
    let cpu = platform.current_cpu();
    #[cfg(feature = "contract-checks")]
    let state = match cpus.get(cpu) {
        Some(state) => state,
        None => rules::unknown_cpu(cpu, cpus.len()),
    };
    // SAFETY: `Platform`'s second promise: `current_cpu` is smaller than the number of
    // CPUs the instance was built for, which is `cpus.len()`.
    #[cfg(not(feature = "contract-checks"))]
    let state = unsafe { cpus.get_unchecked(cpu) };
    (cpu, state)
}

/// The checks of [`ContextPolicy::FreeBsd`]: out of line, called only by kernels that
/// chose that policy.
#[cold]
#[inline(never)]
#[track_caller]
pub(crate) fn check_freebsd_context<P: Platform>(platform: &P) {
    let context = platform.execution_context();
    if context.spin_locks_held > 0 {
        rules::under_spin_lock(context.spin_locks_held);
    }
    if context.in_primary_interrupt {
        rules::in_primary_interrupt();
    }
}
