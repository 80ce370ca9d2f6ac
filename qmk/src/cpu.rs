//! CPUs: identity (dense index, hardware id), the count online, and per-CPU data.
//!
//! Each CPU owns one [`PerCpu`] block in a static array; a per-CPU base
//! register points there (see `arch::percpu`: GS on x86_64, where "this
//! CPU's field" is one `gs:`-relative instruction; TPIDR_EL1 on aarch64).
//! Fields that other CPUs read (counters, ids) are atomics; fields only the
//! owner touches are still atomics so the block is `Sync`, but the owner
//! updates them with the arch's `percpu_*` accessors — plain read-modify-
//! writes that an interrupt cannot split, no `lock` prefix, no cross-CPU
//! cache-line traffic.
//!
//! Reading per-CPU data is only meaningful while the thread cannot migrate:
//! [`this_cpu`] therefore borrows from a [`PreemptGuard`].

use core::marker::PhantomData;
use core::sync::atomic::{
    AtomicBool, AtomicPtr, AtomicU32, AtomicU64, AtomicU8, AtomicUsize, Ordering,
};

use crate::arch::percpu::percpu_read_u32_as_u64;
use crate::arch::VirtAddr;
use crate::sched::thread::Thread;

/// The most CPUs the kernel supports (per-CPU blocks are a static array).
pub const MAX_CPUS: usize = 64;

/// One CPU's private data. `repr(C)` with fixed field order: the offsets of
/// the hot fields are used by the arch's `percpu_*` assembly.
#[repr(C, align(128))]
pub struct PerCpu {
    /// Dense 0-based index (bootstrap CPU = 0), fixed before the per-CPU base is set.
    pub(crate) index: AtomicU32,
    /// Critical-section nesting of the thread running here, plus
    /// [`NOTHING_OWED`] while no preemption is owed (Linux's `preempt_count`
    /// with its inverted `PREEMPT_NEED_RESCHED`): the word is zero exactly when
    /// the outermost section ends with a preemption owed, so `critical_exit` is
    /// one decrement and one branch. The depth is per thread by construction: a
    /// context switch happens only at depth 0 (the scheduler asserts it), so
    /// nothing needs saving. Changed only by this CPU, each change one
    /// instruction (or an atomic one), so an interrupt never splits it.
    pub(crate) critical_count: AtomicU32,
    /// Spin locks held by the context running here.
    pub(crate) spin_locks_held: AtomicU32,
    /// Interrupt handlers (vectors 32–255) active on this CPU (0 or 1: they
    /// run with interrupts off).
    pub(crate) interrupt_nesting: AtomicU32,
    /// The CPU's hardware id: the local APIC id on x86_64, the MPIDR
    /// affinity on aarch64 (what `arch::ipi::send` addresses).
    pub(crate) hardware_id: AtomicU32,
    /// Spin-lock acquisitions on this CPU (summed by `sync::lock_acquisitions`).
    pub(crate) lock_acquisitions: AtomicU64,
    /// IPIs this CPU sent.
    pub(crate) ipis_sent: AtomicU64,
    /// Timer ticks this CPU handled.
    pub(crate) ticks: AtomicU64,
    /// The thread running here (null before the scheduler starts here).
    pub(crate) current_thread: AtomicPtr<Thread>,
    /// This CPU's idle thread.
    pub(crate) idle_thread: AtomicPtr<Thread>,
    /// What the running thread asked the scheduler for (see `sched::SwitchRequest`).
    pub(crate) switch_request: AtomicU8,
    /// True once this CPU is fully up (tables, APIC, timer, scheduler).
    pub(crate) online: AtomicBool,
    /// Deferred preemptions performed by `critical_exit` (statistics/tests).
    pub(crate) deferred_preemptions: AtomicU64,
    /// IPIs of the "call function" kind this CPU has handled.
    pub(crate) calls_handled: AtomicU64,
    /// This CPU's page-fault expectation (see `arch::fault_probe`).
    pub(crate) fault_expectation: crate::fault_expectation::FaultExpectation,
}

impl PerCpu {
    const fn new(index: u32) -> Self {
        Self {
            index: AtomicU32::new(index),
            critical_count: AtomicU32::new(NOTHING_OWED),
            spin_locks_held: AtomicU32::new(0),
            interrupt_nesting: AtomicU32::new(0),
            hardware_id: AtomicU32::new(0),
            lock_acquisitions: AtomicU64::new(0),
            ipis_sent: AtomicU64::new(0),
            ticks: AtomicU64::new(0),
            current_thread: AtomicPtr::new(core::ptr::null_mut()),
            idle_thread: AtomicPtr::new(core::ptr::null_mut()),
            switch_request: AtomicU8::new(0),
            online: AtomicBool::new(false),
            deferred_preemptions: AtomicU64::new(0),
            calls_handled: AtomicU64::new(0),
            fault_expectation: crate::fault_expectation::FaultExpectation::new(),
        }
    }

    /// The dense CPU index.
    pub fn index(&self) -> usize {
        self.index.load(Ordering::Relaxed) as usize
    }

    /// The hardware id (see [`PerCpu::hardware_id`]'s field).
    pub fn hardware_id(&self) -> u32 {
        self.hardware_id.load(Ordering::Relaxed)
    }

    /// Timer ticks handled so far.
    pub fn ticks(&self) -> u64 {
        self.ticks.load(Ordering::Relaxed)
    }

    /// Deferred preemptions that `critical_exit` performed on this CPU.
    pub fn deferred_preemptions(&self) -> u64 {
        self.deferred_preemptions.load(Ordering::Relaxed)
    }

    /// Whether a tick (or a reschedule IPI) asked for a preemption that has not
    /// happened yet.
    pub fn preemption_owed(&self) -> bool {
        self.critical_count.load(Ordering::Relaxed) & NOTHING_OWED == 0
    }

    /// Ask for a preemption at the next chance: the next interrupt exit
    /// outside a critical section, or the `critical_exit` that ends one. Only
    /// on this CPU (from its interrupt handlers).
    pub(crate) fn owe_preemption(&self) {
        self.critical_count
            .fetch_and(!NOTHING_OWED, Ordering::Relaxed);
    }

    /// The owed preemption is happening now. Only on this CPU.
    pub(crate) fn settle_owed_preemption(&self) {
        self.critical_count
            .fetch_or(NOTHING_OWED, Ordering::Relaxed);
    }
}

/// The bit of [`PerCpu::critical_count`] that is set while no preemption is
/// owed; the rest of the word is the critical-section depth.
pub(crate) const NOTHING_OWED: u32 = 1 << 31;

/// Field offsets for the arch's `percpu_*` accessors.
pub(crate) mod offsets {
    use super::PerCpu;
    pub const INDEX: usize = core::mem::offset_of!(PerCpu, index);
    pub const CRITICAL_COUNT: usize = core::mem::offset_of!(PerCpu, critical_count);
    pub const SPIN_LOCKS_HELD: usize = core::mem::offset_of!(PerCpu, spin_locks_held);
    pub const INTERRUPT_NESTING: usize = core::mem::offset_of!(PerCpu, interrupt_nesting);
    pub const LOCK_ACQUISITIONS: usize = core::mem::offset_of!(PerCpu, lock_acquisitions);
    pub const CURRENT_THREAD: usize = core::mem::offset_of!(PerCpu, current_thread);
}

static PER_CPU: [PerCpu; MAX_CPUS] = {
    let mut blocks = [const { PerCpu::new(0) }; MAX_CPUS];
    let mut index = 0;
    while index < MAX_CPUS {
        blocks[index] = PerCpu::new(index as u32);
        index += 1;
    }
    blocks
};

/// CPUs that have come online (their index is below this).
static CPUS_ONLINE: AtomicUsize = AtomicUsize::new(1);

/// Points this CPU's per-CPU base at block `index`. Called first thing on every
/// CPU, before any code that uses per-CPU data (spin locks, the console).
///
/// # Safety
///
/// 1. `index` is this CPU's dense index, and no other CPU uses that block.
/// 2. Called once per CPU, before anything reads per-CPU data on it.
pub unsafe fn install_this_cpu(index: usize) {
    let block = &PER_CPU[index];
    // SAFETY: the block is a static (valid for the whole run) and is this
    // CPU's alone (caller's contract 1); nothing relied on the old per-CPU base
    // (contract 2).
    unsafe { crate::arch::percpu::set_percpu_base(VirtAddr::from_ptr(block)) };
}

/// The dense 0-based index of the executing CPU (bootstrap CPU = 0).
///
/// Without a [`PreemptGuard`] the answer may be stale by the time it is
/// used (the thread may migrate); with one it is exact.
#[inline]
pub fn current_cpu_index() -> usize {
    percpu_read_u32_as_u64!(offsets::INDEX) as usize
}

/// How many CPUs are online. Indices `0..cpu_count()` are valid.
#[inline]
pub fn cpu_count() -> usize {
    CPUS_ONLINE.load(Ordering::Acquire)
}

/// Records the hardware id of CPU `index` (before it starts).
pub(crate) fn set_hardware_id(index: usize, hardware_id: u32) {
    PER_CPU[index]
        .hardware_id
        .store(hardware_id, Ordering::Relaxed);
}

/// Marks CPU `index` (the next one) online.
pub(crate) fn mark_online(index: usize) {
    PER_CPU[index].online.store(true, Ordering::Release);
    let previous = CPUS_ONLINE.fetch_max(index + 1, Ordering::AcqRel);
    assert!(
        previous <= index + 1,
        "CPUs come online in index order: CPU {index} after {previous} were online"
    );
}

/// The per-CPU block of CPU `index`, for reading its shared fields
/// (counters, ids) from anywhere.
///
/// # Panics
///
/// If `index >= MAX_CPUS`.
pub fn cpu(index: usize) -> &'static PerCpu {
    &PER_CPU[index]
}

/// Every per-CPU block of CPUs online.
pub fn online_cpus() -> impl Iterator<Item = &'static PerCpu> {
    PER_CPU[..cpu_count()].iter()
}

/// Holds off preemption (and so migration) while it lives: a
/// `critical_enter`/`critical_exit` pair as a value. Not `Send`: it belongs
/// to the CPU it was made on.
#[must_use = "preemption is enabled again as soon as the guard is dropped"]
pub struct PreemptGuard {
    _not_send: PhantomData<*const ()>,
}

impl PreemptGuard {
    /// Enters a critical section.
    #[inline]
    pub fn new() -> Self {
        crate::sched::critical_enter();
        Self {
            _not_send: PhantomData,
        }
    }
}

impl Default for PreemptGuard {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for PreemptGuard {
    #[inline]
    fn drop(&mut self) {
        crate::sched::critical_exit();
    }
}

/// This CPU's block, borrowed for as long as preemption stays disabled.
#[inline]
pub fn this_cpu(_guard: &PreemptGuard) -> &PerCpu {
    &PER_CPU[current_cpu_index()]
}

/// This CPU's block for code that cannot migrate by construction (interrupt
/// handlers, code with interrupts off, boot code before the scheduler).
pub(crate) fn this_cpu_unguarded() -> &'static PerCpu {
    &PER_CPU[current_cpu_index()]
}
