//! Multiprocessing: bringing the other CPUs up, and inter-processor
//! interrupts — to one CPU, to all others, "run this on every CPU and
//! wait", and the remote TLB shootdown built on it.
//!
//! Cross-CPU calls are serialised by one lock, taken with interrupts *on*:
//! a CPU waiting for the lock (or for the other CPUs' answers) keeps
//! answering other CPUs' calls, so two CPUs calling each other cannot
//! deadlock. The rule that follows: never make a cross-CPU call with
//! interrupts disabled (it panics).

use core::ops::Range;
use core::sync::atomic::{AtomicPtr, AtomicUsize, Ordering};

use crate::arch::interrupts::{
    end_of_interrupt, interrupts_enabled, set_interrupt_handler, InterruptFrame,
};
use crate::arch::percpu::percpu_increment_u64;
use crate::arch::{ipi, smp_boot, VirtAddr};
use crate::boot_info::BootInfo;
use crate::cpu::{self, PreemptGuard};
use crate::sync::SpinLock;

static CPUS_LISTED_BY_FIRMWARE: AtomicUsize = AtomicUsize::new(0);

/// How many enabled processors the firmware lists (ACPI MADT on x86_64,
/// the device tree on aarch64).
pub fn cpus_listed_by_firmware() -> usize {
    CPUS_LISTED_BY_FIRMWARE.load(Ordering::Acquire)
}

/// Why SMP start-up failed: the arch's reason.
pub type SmpError = smp_boot::StartError;

/// Sets up the bootstrap CPU's interrupt controller, clocks and scheduler,
/// then starts every other CPU the firmware lists; returns with every CPU
/// online and interrupts enabled on this one.
pub fn init(boot_info: &BootInfo) -> Result<(), SmpError> {
    let bootstrap_hardware_id = smp_boot::init_bootstrap_cpu()?;
    cpu::set_hardware_id(0, bootstrap_hardware_id);
    set_interrupt_handler(ipi::CALL_VECTOR, on_call);
    crate::sched::init_bootstrap_cpu();
    cpu::mark_online(0);
    let listed = smp_boot::start_other_cpus(boot_info, bootstrap_hardware_id)?;
    CPUS_LISTED_BY_FIRMWARE.store(listed, Ordering::Release);
    Ok(())
}

/// The rest of an application processor's start-up, after the arch's own
/// (descriptor tables or exception vectors, paging): its interrupt
/// controller, scheduler, then idle.
pub fn application_cpu_main(cpu_index: usize) -> ! {
    let hardware_id = smp_boot::init_application_cpu();
    let expected = cpu::cpu(cpu_index).hardware_id();
    assert_eq!(
        hardware_id, expected,
        "CPU {cpu_index} reports hardware id {hardware_id:#x}, but it was started as {expected:#x}"
    );
    crate::sched::init_application_cpu(cpu_index)
}

/// Sends interrupt `vector` to CPU `cpu_index`.
pub fn send_ipi(cpu_index: usize, vector: u8) {
    let hardware_id = cpu::cpu(cpu_index).hardware_id();
    percpu_increment_u64!(core::mem::offset_of!(cpu::PerCpu, ipis_sent));
    ipi::send(hardware_id, vector);
}

/// Sends interrupt `vector` to every online CPU but this one (one IPI each).
pub fn send_ipi_all_others(vector: u8) {
    let guard = PreemptGuard::new();
    let me = cpu::this_cpu(&guard).index();
    for index in (0..cpu::cpu_count()).filter(|&index| index != me) {
        send_ipi(index, vector);
    }
}

/// IPIs sent by all CPUs so far.
pub fn ipis_sent() -> u64 {
    cpu::online_cpus()
        .map(|cpu| cpu.ipis_sent.load(Ordering::Relaxed))
        .sum()
}

/// The cross-CPU call in progress: set by the caller (holding `CALL_LOCK`)
/// for the duration of one call; the pointee lives on the caller's stack
/// until every target has answered.
struct Call<'a> {
    function: &'a (dyn Fn() + Sync),
    pending: AtomicUsize,
}

static CALL_LOCK: SpinLock<()> = SpinLock::new(());
static CURRENT_CALL: AtomicPtr<Call<'static>> = AtomicPtr::new(core::ptr::null_mut());

fn on_call(_frame: &mut InterruptFrame) {
    let call = CURRENT_CALL.load(Ordering::Acquire);
    assert!(!call.is_null(), "a call IPI arrived with no call pending");
    // SAFETY: the caller published `call` before sending this IPI and keeps
    // it alive (and CURRENT_CALL set) until `pending` reaches zero, which
    // needs this handler's decrement below; so it is valid here.
    let call = unsafe { &*call };
    (call.function)();
    cpu::this_cpu_unguarded()
        .calls_handled
        .fetch_add(1, Ordering::Relaxed);
    call.pending.fetch_sub(1, Ordering::AcqRel);
    end_of_interrupt();
}

/// Runs `function` on every online CPU (here too, first) and returns when
/// all have run it. The others run it in interrupt context: it must not
/// block.
///
/// # Panics
///
/// If interrupts are disabled: a CPU waiting here with interrupts off
/// could never answer another CPU's call, and both would wait forever.
pub fn run_on_all_cpus(function: impl Fn() + Sync) {
    run_on_cpus(&function, true);
}

/// Runs `function` on every online CPU except this one, and waits.
pub fn run_on_other_cpus(function: impl Fn() + Sync) {
    run_on_cpus(&function, false);
}

fn run_on_cpus(function: &(dyn Fn() + Sync), including_this_one: bool) {
    assert!(
        interrupts_enabled(),
        "cross-CPU calls need interrupts enabled (a CPU waiting with interrupts off cannot answer another CPU's call)"
    );
    // Pinned: "every other CPU" must mean the same CPUs throughout.
    let _guard = PreemptGuard::new();
    let _call_lock = CALL_LOCK.lock();
    let others = cpu::cpu_count() - 1;
    let call = Call {
        function,
        pending: AtomicUsize::new(others),
    };
    let call_pointer: *const Call<'_> = &call;
    CURRENT_CALL.store(call_pointer.cast_mut().cast(), Ordering::Release);
    send_ipi_all_others(ipi::CALL_VECTOR);
    if including_this_one {
        function();
    }
    while call.pending.load(Ordering::Acquire) != 0 {
        core::hint::spin_loop();
    }
    CURRENT_CALL.store(core::ptr::null_mut(), Ordering::Release);
}

/// Above this many pages a shootdown flushes whole TLBs instead.
const SHOOTDOWN_FULL_FLUSH_PAGES: u64 = 64;

/// Invalidates the kernel addresses `range` in every CPU's TLB (this one
/// included) and returns when all have done it: what changing a shared
/// kernel mapping costs without per-CPU windows.
///
/// # Panics
///
/// If interrupts are disabled (see [`run_on_all_cpus`]).
pub fn shootdown(range: Range<VirtAddr>) {
    run_on_all_cpus(|| invalidate_range_locally(&range));
}

/// Invalidates `range` in this CPU's TLB only.
pub fn invalidate_range_locally(range: &Range<VirtAddr>) {
    use crate::arch::paging::{invalidate_local, PAGE_SIZE};
    let start = range.start.align_down(PAGE_SIZE);
    let pages = (range.end.as_u64().saturating_sub(start.as_u64())).div_ceil(PAGE_SIZE);
    if pages > SHOOTDOWN_FULL_FLUSH_PAGES {
        crate::arch::paging::invalidate_all_local();
    } else {
        for page in 0..pages {
            invalidate_local(start + page * PAGE_SIZE);
        }
    }
}
